//! The data that flows through podnet's pipeline.
//!
//! `PodInfo` is what discovery learns about a pod; `PodStatsList` is the `podnet/v1` document that
//! rendering prints. Field names of the serialized types are part of the public contract
//! (design.md, "Output schema podnet/v1"): add fields, never rename them.

use serde::Serialize;

/// A pod as discovery found it (API server, `--pods-from`, or the cgroup-tree fallback).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PodInfo {
    pub namespace: String,
    pub name: String,
    /// `metadata.uid`, with dashes (as the API server gives it).
    pub uid: String,
    /// `status.qosClass`: `Guaranteed`, `Burstable` or `BestEffort`, when known.
    pub qos_class: Option<String>,
    /// `spec.nodeName`, when known.
    pub node_name: Option<String>,
    /// `status.phase` (`Pending`, `Running`, ...), when known.
    pub phase: Option<String>,
    pub host_network: bool,
    pub containers: Vec<ContainerInfo>,
}

/// A container of a pod, from `status.containerStatuses[]`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ContainerInfo {
    pub name: String,
    /// The runtime's container id without the `containerd://`-style prefix.
    pub id: Option<String>,
    /// The runtime named by the id's prefix (`containerd`, `cri-o`, `docker`), when known.
    pub runtime: Option<String>,
}

/// Network counters for one interval (or since attach).
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Network {
    pub rx_bytes: u64,
    pub rx_packets: u64,
    pub tx_bytes: u64,
    pub tx_packets: u64,
    pub rx_bytes_per_sec: f64,
    pub tx_bytes_per_sec: f64,
}

/// Socket counters; `open` is a gauge read from /proc at sample time.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Sockets {
    pub created: u64,
    pub closed: u64,
    pub open: u64,
    pub tcp_active_opens: u64,
    pub tcp_passive_opens: u64,
    pub tcp_retransmits: u64,
}

/// File-open counters; `open_fds` is a gauge read from /proc at sample time.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Files {
    pub opens: u64,
    pub open_errors: u64,
    pub open_fds: u64,
}

/// Memory gauges read at sample time.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Memory {
    pub usage_bytes: u64,
    /// `None` (JSON `null`) when the cgroup has no limit or none could be read.
    pub limit_bytes: Option<u64>,
    pub rss_bytes: u64,
    pub oom_kills: u64,
}

/// One container's statistics.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ContainerStats {
    pub name: String,
    pub id: String,
    pub cgroup_path: String,
    pub network: Network,
    pub sockets: Sockets,
    pub files: Files,
    pub memory: Memory,
}

/// One pod's statistics: the sum of its containers plus anything counted in the pod cgroup itself
/// (including container cgroups created after attach that podnet did not know by name yet).
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PodStats {
    pub namespace: String,
    pub pod: String,
    pub uid: String,
    pub qos_class: Option<String>,
    pub cgroup_path: String,
    pub network: Network,
    pub sockets: Sockets,
    pub files: Files,
    pub memory: Memory,
    pub containers: Vec<ContainerStats>,
}

/// The `podnet/v1` document.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PodStatsList {
    pub api_version: &'static str,
    pub kind: &'static str,
    pub node: String,
    /// RFC 3339 UTC, second precision: `2026-11-21T10:00:00Z`.
    pub timestamp: String,
    pub interval_seconds: f64,
    pub warnings: Vec<String>,
    pub items: Vec<PodStats>,
}

pub const API_VERSION: &str = "podnet/v1";
pub const KIND: &str = "PodStatsList";

impl PodStatsList {
    pub fn new(node: String, timestamp: String, interval_seconds: f64) -> Self {
        PodStatsList {
            api_version: API_VERSION,
            kind: KIND,
            node,
            timestamp,
            interval_seconds,
            warnings: Vec::new(),
            items: Vec::new(),
        }
    }
}
