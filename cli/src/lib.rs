//! podnet: per-pod network, socket, file and memory accounting for Kubernetes nodes.
//!
//! The pipeline, one module per stage: [`discover`] → [`resolve`] → [`attach`] → [`sample`] →
//! [`aggregate`] → [`render`]. The `podnet` binary wires them together.

pub mod agent;
pub mod aggregate;
pub mod attach;
pub mod discover;
pub mod model;
pub mod pins;
pub mod privileges;
pub mod render;
pub mod resolve;
pub mod sample;
pub mod stats;
