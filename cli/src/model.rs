//! The data that flows through podnet's pipeline.
//!
//! `PodInfo` is what discovery learns about a pod; `PodStatsList` is the `podnet/v1` document that
//! rendering prints. Field names of the serialized types are part of the public contract
//! (design.md, "Output schema podnet/v1"): add fields, never rename them.

use schemars::JsonSchema;
use serde::ser::{SerializeStruct, Serializer};
use serde::Serialize;

/// Rates are serialized to 0.1 B/s: the digits beyond say nothing a byte counter can back.
fn round_rate<S: Serializer>(v: &f64, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_f64(round_to_tenth(*v))
}

/// `v` rounded to one decimal (non-finite values, which no rate should be, become 0).
pub fn round_to_tenth(v: f64) -> f64 {
    if v.is_finite() {
        (v * 10.0).round() / 10.0
    } else {
        0.0
    }
}

/// A name podnet could not learn (pods found by the cgroup scan are known by UID only) is JSON
/// `null`, not `""`.
fn name_or_null<S: Serializer>(v: &str, s: S) -> Result<S::Ok, S::Error> {
    if v.is_empty() {
        s.serialize_none()
    } else {
        s.serialize_some(v)
    }
}

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
#[derive(Debug, Clone, Default, PartialEq, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(deny_unknown_fields)]
pub struct Network {
    pub rx_bytes: u64,
    pub rx_packets: u64,
    pub tx_bytes: u64,
    pub tx_packets: u64,
    /// Bytes received per second over the last interval, rounded to 0.1.
    #[serde(serialize_with = "round_rate")]
    pub rx_bytes_per_sec: f64,
    /// Bytes sent per second over the last interval, rounded to 0.1.
    #[serde(serialize_with = "round_rate")]
    pub tx_bytes_per_sec: f64,
}

/// Socket counters; `open` is a gauge read from /proc at sample time.
///
/// Serialized by hand (`open` is `null` when unknown); the schema attributes describe that form.
#[derive(Debug, Clone, Default, PartialEq, Eq, JsonSchema)]
#[schemars(rename_all = "camelCase")]
#[schemars(deny_unknown_fields)]
pub struct Sockets {
    pub created: u64,
    pub closed: u64,
    /// Socket descriptors the pod's processes hold now; `null` when /proc/PID/fd is unreadable.
    #[schemars(with = "NullableU64")]
    pub open: u64,
    pub tcp_active_opens: u64,
    pub tcp_passive_opens: u64,
    pub tcp_retransmits: u64,
    /// `open` could not be read (/proc/PID/fd unreadable without CAP_SYS_PTRACE): JSON `null`,
    /// `-` in tables, and `open` is 0.
    #[schemars(skip)]
    pub open_unknown: bool,
}

impl Serialize for Sockets {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut st = s.serialize_struct("Sockets", 6)?;
        st.serialize_field("created", &self.created)?;
        st.serialize_field("closed", &self.closed)?;
        st.serialize_field("open", &(!self.open_unknown).then_some(self.open))?;
        st.serialize_field("tcpActiveOpens", &self.tcp_active_opens)?;
        st.serialize_field("tcpPassiveOpens", &self.tcp_passive_opens)?;
        st.serialize_field("tcpRetransmits", &self.tcp_retransmits)?;
        st.end()
    }
}

/// File-open counters; `open_fds` is a gauge read from /proc at sample time.
#[derive(Debug, Clone, Default, PartialEq, Eq, JsonSchema)]
#[schemars(rename_all = "camelCase")]
#[schemars(deny_unknown_fields)]
pub struct Files {
    /// Opens counted; `null` where no file-open probe could be attached.
    #[schemars(with = "NullableU64")]
    pub opens: u64,
    /// Opens that failed; `null` with `opens`.
    #[schemars(with = "NullableU64")]
    pub open_errors: u64,
    /// File descriptors the pod's processes hold now; `null` when /proc/PID/fd is unreadable.
    #[schemars(with = "NullableU64")]
    pub open_fds: u64,
    /// `open_fds` could not be read (as [`Sockets::open_unknown`]).
    #[schemars(skip)]
    pub open_fds_unknown: bool,
    /// No file-open probe is attached: `opens` and `open_errors` are unknown, not 0.
    #[schemars(skip)]
    pub opens_unknown: bool,
}

impl Serialize for Files {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut st = s.serialize_struct("Files", 3)?;
        st.serialize_field("opens", &(!self.opens_unknown).then_some(self.opens))?;
        st.serialize_field(
            "openErrors",
            &(!self.opens_unknown).then_some(self.open_errors),
        )?;
        st.serialize_field(
            "openFds",
            &(!self.open_fds_unknown).then_some(self.open_fds),
        )?;
        st.end()
    }
}

/// Where memory gauges were read (`memory.source`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum MemorySource {
    /// The cgroup v2 directory's `memory.current`, `memory.max`, `memory.stat`.
    #[default]
    Cgroup2,
    /// The v1 memory cgroup of a hybrid host (`memory.usage_in_bytes`, ...).
    Cgroup1,
    /// No memory cgroup: the sum of the processes' VmRSS, which counts pages they share once
    /// per process (usage and RSS may exceed what the pod really uses; no limit).
    Proc,
}

/// Memory gauges read at sample time.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(deny_unknown_fields)]
pub struct Memory {
    pub usage_bytes: u64,
    /// `None` (JSON `null`) when the cgroup has no limit or none could be read.
    #[schemars(with = "NullableU64")]
    pub limit_bytes: Option<u64>,
    pub rss_bytes: u64,
    pub oom_kills: u64,
    /// Where these numbers come from: `cgroup2`, `cgroup1` or `proc`.
    pub source: MemorySource,
}

/// One container's statistics.
#[derive(Debug, Clone, Default, PartialEq, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(deny_unknown_fields)]
pub struct ContainerStats {
    /// The container's name; `null` when unknown (pods found by the cgroup scan).
    #[serde(serialize_with = "name_or_null")]
    #[schemars(with = "NullableString")]
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
#[derive(Debug, Clone, Default, PartialEq, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(deny_unknown_fields)]
pub struct PodStats {
    /// `null` when unknown (pods found by the cgroup scan are known by UID only).
    #[serde(serialize_with = "name_or_null")]
    #[schemars(with = "NullableString")]
    pub namespace: String,
    /// `null` when unknown, as `namespace`.
    #[serde(serialize_with = "name_or_null")]
    #[schemars(with = "NullableString")]
    pub pod: String,
    pub uid: String,
    /// `Guaranteed`, `Burstable` or `BestEffort`; `null` when unknown.
    #[schemars(with = "NullableString")]
    pub qos_class: Option<String>,
    pub cgroup_path: String,
    pub network: Network,
    pub sockets: Sockets,
    pub files: Files,
    pub memory: Memory,
    pub containers: Vec<ContainerStats>,
}

/// What the counters of a document count.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum CounterScope {
    /// Over the last interval (`intervalSeconds`): a one-shot `podnet stats`.
    #[default]
    Interval,
    /// Since podnet attached: `podnet stats --watch` (since it started) and the agent's
    /// `/stats`. Rates are still over the last interval.
    Cumulative,
}

/// The `podnet/v1` document.
#[derive(Debug, Clone, PartialEq, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(deny_unknown_fields)]
#[schemars(title = "podnet/v1 PodStatsList")]
pub struct PodStatsList {
    /// Always `podnet/v1`.
    #[schemars(with = "ApiVersion")]
    pub api_version: &'static str,
    /// Always `PodStatsList`.
    #[schemars(with = "Kind")]
    pub kind: &'static str,
    pub node: String,
    /// RFC 3339 UTC, millisecond precision: `2026-11-21T10:00:00.123Z`.
    #[schemars(regex(pattern = r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$"))]
    pub timestamp: String,
    pub interval_seconds: f64,
    /// Whether the counters (not the rates, not the gauges) count over the last interval
    /// (`interval`) or since podnet attached (`cumulative`).
    pub counters: CounterScope,
    pub warnings: Vec<String>,
    /// What counts file opens: `kprobe` or `tracepoint` (absent when nothing does).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schemars(with = "Option<FileOpenProbe>")]
    pub file_open_probe: Option<&'static str>,
    /// What podnet cannot see by design, whatever the machine (for instance retransmits of
    /// connections established before attach): notes, not warnings.
    pub coverage: Vec<String>,
    pub items: Vec<PodStats>,
}

pub const API_VERSION: &str = "podnet/v1";
pub const KIND: &str = "PodStatsList";

/// Schema only: an unsigned integer that is always present and may be `null`.
struct NullableU64;

impl JsonSchema for NullableU64 {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "NullableU64".into()
    }
    fn inline_schema() -> bool {
        true
    }
    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({"type": ["integer", "null"], "format": "uint64", "minimum": 0})
    }
}

/// Schema only: a string that is always present and may be `null`.
struct NullableString;

impl JsonSchema for NullableString {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "NullableString".into()
    }
    fn inline_schema() -> bool {
        true
    }
    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({"type": ["string", "null"]})
    }
}

/// The schema of `apiVersion`: the one constant.
#[derive(JsonSchema)]
#[allow(dead_code)]
enum ApiVersion {
    #[serde(rename = "podnet/v1")]
    V1,
}

/// The schema of `kind`: the one constant.
#[derive(JsonSchema)]
#[allow(dead_code)]
enum Kind {
    PodStatsList,
}

/// The schema of `fileOpenProbe`.
#[derive(JsonSchema)]
#[serde(rename_all = "lowercase")]
#[allow(dead_code)]
enum FileOpenProbe {
    Fexit,
    Kprobe,
    Tracepoint,
}

/// The JSON Schema of the `podnet/v1` document, generated from these types (checked in as
/// `schema/podnet-v1.json`).
pub fn json_schema() -> serde_json::Value {
    serde_json::to_value(schemars::schema_for!(PodStatsList)).expect("a schema serializes to JSON")
}

/// The `coverage` notes of every document: what the counters cannot include by design.
pub const COVERAGE: &[&str] = &[
    "sockets.tcpRetransmits counts only connections established after podnet attached (the \
     sockops program enables retransmit callbacks per connection when it is set up); retransmits \
     on older connections are not counted",
];

impl PodStatsList {
    /// Marks every pod's and container's file-open counts unknown (`null`): no file-open probe
    /// could be attached.
    pub fn opens_unknown(&mut self) {
        for p in &mut self.items {
            p.files.opens_unknown = true;
            for c in &mut p.containers {
                c.files.opens_unknown = true;
            }
        }
    }

    pub fn new(node: String, timestamp: String, interval_seconds: f64) -> Self {
        PodStatsList {
            api_version: API_VERSION,
            kind: KIND,
            node,
            timestamp,
            interval_seconds,
            counters: CounterScope::Interval,
            warnings: Vec::new(),
            file_open_probe: None,
            coverage: COVERAGE.iter().map(|s| s.to_string()).collect(),
            items: Vec::new(),
        }
    }
}
