//! Sandbox pods for podnet's privileged tests and its demo.
//!
//! Everything here creates real kernel objects (cgroup directories, network namespaces, veth pairs)
//! under unique names, and removes them on `Drop`, including when a test fails.

pub mod apiserver;
pub mod demo;
pub mod sandbox;
pub mod scrape;
