//! The sandbox behind `make demo`: four pods in four different kubelet cgroup layouts, joined by
//! network namespaces and veth pairs, with load running in their containers, served to podnet by a
//! stub API server.
//!
//! | pod | QoS | cgroup layout | network |
//! |---|---|---|---|
//! | `shop/web-0` (containers `web`, `sidecar`) | Burstable | systemd driver + containerd | own netns |
//! | `shop/db-0` (container `postgres`) | Guaranteed | cgroupfs driver + containerd | own netns |
//! | `batch/report-7d9f` (container `report`) | BestEffort | systemd driver + CRI-O (with conmon) | own netns |
//! | `kube-system/node-agent` (container `agent`) | Burstable | systemd driver + Docker | hostNetwork |
//!
//! `web-0` and `db-0` exchange UDP datagrams; `report-7d9f` runs one TCP query against `db-0` and
//! a batch of file opens (some failing) every second; `node-agent` runs in the host network
//! namespace and pushes datagrams to `web-0`'s sidecar through a veth pair whose other end is in
//! the host. Every container also churns sockets, opens files and holds memory (see
//! [`DemoSandbox::describe`] for the rates). Everything stops by itself after
//! [`DemoConfig::traffic`], and [`DemoSandbox`]'s `Drop` removes it all earlier.
//!
//! The API server also lists a Pending pod scheduled to the node (no cgroup yet: podnet warns about
//! it) and a pod on another node (podnet must not ask for it).
//!
//! ```no_run
//! use podnet_testing::demo::{DemoConfig, DemoSandbox};
//! # fn main() -> anyhow::Result<()> {
//! let demo = DemoSandbox::setup(&DemoConfig::default())?;
//! println!("{}", demo.describe());
//! // run `podnet stats --kubeconfig <demo.kubeconfig()> --node demo-node` ...
//! let made = demo.resources().clone();
//! drop(demo);
//! assert!(made.existing().is_empty());
//! # Ok(()) }
//! ```

mod driver;
mod resources;
mod sandbox;
mod tempdir;
mod workloads;

use std::time::Duration;

use crate::sandbox::SandboxPod;

pub use driver::DriverReport;
pub use resources::{LinkRef, Resources};
pub use sandbox::DemoSandbox;

/// The node the demo's pods are scheduled to.
pub const DEMO_NODE: &str = "demo-node";

/// The node of the pod podnet must filter out.
pub const OTHER_NODE: &str = "other-node";

/// `web`: UDP datagrams per second to `db-0`, and their payload size.
pub const WEB_UDP_RATE: u64 = 200;
/// Payload bytes of each datagram `web` sends.
pub const WEB_UDP_SIZE: u64 = 512;
/// `postgres`: UDP datagrams per second back to `web-0`.
pub const DB_UDP_RATE: u64 = 100;
/// Payload bytes of each datagram `postgres` sends.
pub const DB_UDP_SIZE: u64 = 1400;
/// `agent` (hostNetwork): datagrams per second to `web-0`'s sidecar.
pub const AGENT_UDP_RATE: u64 = 20;
/// Payload bytes of each datagram `agent` sends.
pub const AGENT_UDP_SIZE: u64 = 1200;
/// Bytes of each TCP query `report` sends to `db-0`.
pub const TCP_REQUEST: u64 = 2048;
/// Bytes of each TCP answer `db-0` sends back.
pub const TCP_REPLY: u64 = 256 * 1024;
/// Successful file opens per round of `report`.
pub const REPORT_OPENS: u64 = 100;
/// Failing file opens (ENOENT) per round of `report`.
pub const REPORT_MISSING: u64 = 10;
/// How often `report` runs its TCP query and its file opens.
pub const ROUND_PERIOD: Duration = Duration::from_secs(1);

/// What the demo sandbox looks like.
#[derive(Debug, Clone)]
pub struct DemoConfig {
    /// The node name the pods are scheduled to (`spec.nodeName`).
    pub node: String,
    /// How long the load runs; every workload stops by itself after this, even when the process
    /// that set the sandbox up was killed.
    pub traffic: Duration,
}

impl Default for DemoConfig {
    fn default() -> Self {
        DemoConfig {
            node: DEMO_NODE.to_string(),
            traffic: Duration::from_secs(60),
        }
    }
}

/// One pod of the demo.
#[derive(Debug, Clone)]
pub struct DemoPod {
    /// `metadata.namespace`.
    pub namespace: &'static str,
    /// `metadata.name`.
    pub name: &'static str,
    /// The cgroup layout in words, e.g. `systemd driver + containerd`.
    pub setup: &'static str,
    /// The pod's network namespace (`None`: hostNetwork, the host's namespace).
    pub netns: Option<String>,
    /// The pod's cgroup directories.
    pub sandbox: SandboxPod,
    /// One line per container: its name and the load it generates.
    pub load: Vec<(String, String)>,
}
