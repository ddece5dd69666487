//! Stage 5, aggregate: container counters → pod counters, counters → per-second rates, plus the
//! gauges read at sample time, into the `podnet/v1` items.
//!
//! Every tracked cgroup has its own entry in the BPF counters map. A pod's numbers are its own
//! entry (events from cgroups podnet did not know by name, such as a container restarted after
//! attach) plus the entries of all its known containers.

use std::collections::HashMap;

use crate::model::{ContainerStats, Files, Network, PodInfo, PodStats, Sockets};
use crate::sample::{CgroupFiles, Counters, Gauges, Snapshot};

/// A container whose cgroup is registered in the counters map.
#[derive(Debug, Clone)]
pub struct TrackedContainer {
    pub name: String,
    pub id: String,
    pub cgroup_id: u64,
    /// Path relative to the cgroup2 mount, starting with `/`.
    pub cgroup_path: String,
    pub files: CgroupFiles,
}

/// A pod whose cgroup directory has podnet's programs attached.
#[derive(Debug, Clone)]
pub struct TrackedPod {
    pub info: PodInfo,
    pub cgroup_id: u64,
    pub cgroup_path: String,
    pub files: CgroupFiles,
    pub containers: Vec<TrackedContainer>,
}

impl TrackedPod {
    /// Every cgroup id whose counters belong to this pod.
    pub fn cgroup_ids(&self) -> impl Iterator<Item = u64> + '_ {
        std::iter::once(self.cgroup_id).chain(self.containers.iter().map(|c| c.cgroup_id))
    }
}

/// The three snapshots a report needs.
pub struct Window<'a> {
    /// Taken right after the cgroups were registered (counts "since attach" start here).
    pub base: &'a Snapshot,
    /// The start of the last interval (rates are computed over `prev` → `now`).
    pub prev: &'a Snapshot,
    pub now: &'a Snapshot,
}

impl Window<'_> {
    fn seconds(&self) -> f64 {
        self.now.at.duration_since(self.prev.at).as_secs_f64()
    }
}

fn sum(ids: impl Iterator<Item = u64>, later: &Snapshot, earlier: &Snapshot) -> Counters {
    ids.fold(Counters::default(), |acc, id| {
        acc.add(&later.get(id).since(&earlier.get(id)))
    })
}

fn rate(bytes: u64, seconds: f64) -> f64 {
    if seconds > 0.0 {
        bytes as f64 / seconds
    } else {
        0.0
    }
}

fn network(total: &Counters, last: &Counters, seconds: f64) -> Network {
    Network {
        rx_bytes: total.rx_bytes,
        rx_packets: total.rx_packets,
        tx_bytes: total.tx_bytes,
        tx_packets: total.tx_packets,
        rx_bytes_per_sec: rate(last.rx_bytes, seconds),
        tx_bytes_per_sec: rate(last.tx_bytes, seconds),
    }
}

fn sockets(total: &Counters, g: &Gauges) -> Sockets {
    Sockets {
        created: total.sock_created,
        closed: total.sock_closed,
        open: g.open_sockets,
        tcp_active_opens: total.tcp_active_opens,
        tcp_passive_opens: total.tcp_passive_opens,
        tcp_retransmits: total.tcp_retransmits,
    }
}

fn files(total: &Counters, g: &Gauges) -> Files {
    Files {
        opens: total.file_opens,
        open_errors: total.file_open_errors,
        open_fds: g.open_fds,
    }
}

/// Builds one `PodStats` per tracked pod. `gauges` is keyed by cgroup id; a missing entry reads
/// as zero (the cgroup vanished between registration and sampling).
pub fn aggregate(
    pods: &[TrackedPod],
    w: &Window<'_>,
    gauges: &HashMap<u64, Gauges>,
) -> Vec<PodStats> {
    let secs = w.seconds();
    let zero = Gauges::default();
    pods.iter()
        .map(|p| {
            let total = sum(p.cgroup_ids(), w.now, w.base);
            let last = sum(p.cgroup_ids(), w.now, w.prev);
            let g = gauges.get(&p.cgroup_id).unwrap_or(&zero);
            let containers = p
                .containers
                .iter()
                .map(|c| {
                    let ids = std::iter::once(c.cgroup_id);
                    let total = sum(ids.clone(), w.now, w.base);
                    let last = sum(ids, w.now, w.prev);
                    let g = gauges.get(&c.cgroup_id).unwrap_or(&zero);
                    ContainerStats {
                        name: c.name.clone(),
                        id: c.id.clone(),
                        cgroup_path: c.cgroup_path.clone(),
                        network: network(&total, &last, secs),
                        sockets: sockets(&total, g),
                        files: files(&total, g),
                        memory: g.memory.clone(),
                    }
                })
                .collect();
            PodStats {
                namespace: p.info.namespace.clone(),
                pod: p.info.name.clone(),
                uid: p.info.uid.clone(),
                qos_class: p.info.qos_class.clone(),
                cgroup_path: p.cgroup_path.clone(),
                network: network(&total, &last, secs),
                sockets: sockets(&total, g),
                files: files(&total, g),
                memory: g.memory.clone(),
                containers,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Memory;
    use std::path::PathBuf;
    use std::time::{Duration, Instant};

    fn files_at(p: &str) -> CgroupFiles {
        CgroupFiles {
            v2_dir: PathBuf::from(p),
            memory_v1_mount: None,
        }
    }

    fn snap(at: Instant, entries: &[(u64, u64, u64)]) -> Snapshot {
        Snapshot {
            at,
            counters: entries
                .iter()
                .map(|&(id, rx, opens)| {
                    (
                        id,
                        Counters {
                            rx_bytes: rx,
                            rx_packets: rx / 100,
                            file_opens: opens,
                            ..Default::default()
                        },
                    )
                })
                .collect(),
            misses: Default::default(),
        }
    }

    fn pod() -> TrackedPod {
        TrackedPod {
            info: PodInfo {
                namespace: "shop".into(),
                name: "web-0".into(),
                uid: "u1".into(),
                qos_class: Some("Burstable".into()),
                ..Default::default()
            },
            cgroup_id: 10,
            cgroup_path: "/kubepods.slice/p".into(),
            files: files_at("/p"),
            containers: vec![
                TrackedContainer {
                    name: "web".into(),
                    id: "c1".into(),
                    cgroup_id: 11,
                    cgroup_path: "/kubepods.slice/p/c1".into(),
                    files: files_at("/p/c1"),
                },
                TrackedContainer {
                    name: "sidecar".into(),
                    id: "c2".into(),
                    cgroup_id: 12,
                    cgroup_path: "/kubepods.slice/p/c2".into(),
                    files: files_at("/p/c2"),
                },
            ],
        }
    }

    #[test]
    fn pod_is_its_own_entry_plus_its_containers() {
        let t0 = Instant::now();
        let base = snap(t0, &[(10, 0, 0), (11, 0, 0), (12, 0, 0)]);
        let prev = snap(
            t0 + Duration::from_secs(1),
            &[(10, 100, 1), (11, 1000, 2), (12, 0, 0)],
        );
        let now = snap(
            t0 + Duration::from_secs(3),
            &[(10, 300, 1), (11, 5000, 7), (12, 200, 1)],
        );
        let mut gauges = HashMap::new();
        gauges.insert(
            10,
            Gauges {
                memory: Memory {
                    usage_bytes: 42,
                    ..Default::default()
                },
                open_fds: 9,
                open_sockets: 2,
            },
        );
        let w = Window {
            base: &base,
            prev: &prev,
            now: &now,
        };
        let out = aggregate(&[pod()], &w, &gauges);
        assert_eq!(out.len(), 1);
        let p = &out[0];
        assert_eq!(p.network.rx_bytes, 300 + 5000 + 200);
        assert_eq!(p.network.rx_packets, 3 + 50 + 2);
        assert_eq!(p.files.opens, 1 + 7 + 1);
        // Rate over prev → now: (200 + 4000 + 200) bytes in 2 s.
        assert_eq!(p.network.rx_bytes_per_sec, 2200.0);
        assert_eq!(p.memory.usage_bytes, 42);
        assert_eq!(p.files.open_fds, 9);
        assert_eq!(p.sockets.open, 2);
        assert_eq!(p.containers[0].network.rx_bytes, 5000);
        assert_eq!(p.containers[0].files.opens, 7);
        assert_eq!(p.containers[1].network.rx_bytes_per_sec, 100.0);
        // A container with no gauges (its cgroup vanished) reads as zero.
        assert_eq!(p.containers[1].memory, Memory::default());
    }

    #[test]
    fn unregistered_entries_count_zero() {
        let t0 = Instant::now();
        let base = snap(t0, &[]);
        let now = snap(t0, &[(10, 7, 0)]);
        let w = Window {
            base: &base,
            prev: &base,
            now: &now,
        };
        let out = aggregate(&[pod()], &w, &HashMap::new());
        assert_eq!(out[0].network.rx_bytes, 7);
        // Zero-length interval: no division by zero.
        assert_eq!(out[0].network.rx_bytes_per_sec, 0.0);
    }
}
