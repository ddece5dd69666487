//! Stage 5, aggregate: container counters → pod counters, counters → per-second rates, plus the
//! gauges read at sample time, into the `podnet/v1` items.
//!
//! Every tracked cgroup has its own entry in the BPF counters map. A pod's numbers are its own
//! entry (events from cgroups podnet did not know by name, such as a container restarted after
//! attach) plus the entries of all its known containers.

use std::collections::HashMap;
use std::time::Instant;

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
    /// Set when the container's cgroup directory went away (a restart, a finished init
    /// container) and its entry was removed from the counters map to free the slot.
    pub retired: Option<Retired>,
}

/// The last counters of a container whose cgroup is gone. Its counts stay in the pod's totals:
/// snapshots taken after `at` read these instead of the (deleted) map entry.
#[derive(Debug, Clone, Copy)]
pub struct Retired {
    pub at: Instant,
    pub counters: Counters,
}

impl TrackedContainer {
    /// The container's counters in `s`: its map entry, or its last counters in a snapshot
    /// taken after it was retired.
    fn counters_in(&self, s: &Snapshot) -> Counters {
        match &self.retired {
            Some(r) if s.at >= r.at => r.counters,
            _ => s.get(self.cgroup_id),
        }
    }

    /// Counts between two snapshots.
    fn delta(&self, later: &Snapshot, earlier: &Snapshot) -> Counters {
        self.counters_in(later).since(&self.counters_in(earlier))
    }
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

    /// The cgroup ids with an entry in the counters map now (retired containers have none).
    pub fn registered_ids(&self) -> impl Iterator<Item = u64> + '_ {
        std::iter::once(self.cgroup_id).chain(
            self.containers
                .iter()
                .filter(|c| c.retired.is_none())
                .map(|c| c.cgroup_id),
        )
    }

    /// Counts of the pod (its own entry and every container's, retired ones included) between
    /// two snapshots.
    fn delta(&self, later: &Snapshot, earlier: &Snapshot) -> Counters {
        let own = later
            .get(self.cgroup_id)
            .since(&earlier.get(self.cgroup_id));
        self.containers
            .iter()
            .fold(own, |acc, c| acc.add(&c.delta(later, earlier)))
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
        open_unknown: g.fds_unreadable,
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
        open_fds_unknown: g.fds_unreadable,
        opens_unknown: false,
    }
}

/// Reads every tracked cgroup's gauges now (memory, open fds and sockets) and builds one
/// `PodStats` per pod over `w`: what `podnet stats` prints and the agent serves.
pub fn items(pods: &[TrackedPod], w: &Window<'_>) -> Vec<PodStats> {
    let gauges: HashMap<u64, Gauges> = pods
        .iter()
        .flat_map(|p| {
            std::iter::once((p.cgroup_id, &p.files, &p.cgroup_path)).chain(
                p.containers
                    .iter()
                    .map(|c| (c.cgroup_id, &c.files, &c.cgroup_path)),
            )
        })
        .map(|(id, files, rel)| (id, crate::sample::read_gauges(files, rel)))
        .collect();
    aggregate(pods, w, &gauges)
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
            let total = p.delta(w.now, w.base);
            let last = p.delta(w.now, w.prev);
            let g = gauges.get(&p.cgroup_id).unwrap_or(&zero);
            let containers = p
                .containers
                .iter()
                // A retired container is no row of its own; its counts are in the pod's.
                .filter(|c| c.retired.is_none())
                .map(|c| {
                    let total = c.delta(w.now, w.base);
                    let last = c.delta(w.now, w.prev);
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
                    retired: None,
                },
                TrackedContainer {
                    name: "sidecar".into(),
                    id: "c2".into(),
                    cgroup_id: 12,
                    cgroup_path: "/kubepods.slice/p/c2".into(),
                    files: files_at("/p/c2"),
                    retired: None,
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
                fds_unreadable: false,
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
    fn a_retired_container_stays_in_its_pods_totals_and_rates() {
        let t0 = Instant::now();
        let base = snap(t0, &[]);
        let prev = snap(
            t0 + Duration::from_secs(1),
            &[(10, 100, 1), (11, 1000, 2), (12, 40, 1)],
        );
        // Container 12 counted 60 more bytes, then its cgroup went away: its entry is deleted
        // and its last counters kept.
        let mut p = pod();
        p.containers[1].retired = Some(Retired {
            at: t0 + Duration::from_secs(2),
            counters: Counters {
                rx_bytes: 100,
                rx_packets: 2,
                file_opens: 1,
                ..Default::default()
            },
        });
        let now = snap(t0 + Duration::from_secs(3), &[(10, 300, 1), (11, 5000, 7)]);
        let w = Window {
            base: &base,
            prev: &prev,
            now: &now,
        };
        let out = aggregate(std::slice::from_ref(&p), &w, &HashMap::new());
        let o = &out[0];
        assert_eq!(o.network.rx_bytes, 300 + 5000 + 100);
        assert_eq!(o.network.rx_packets, 3 + 50 + 2);
        // (200 + 4000 + 60) bytes over 2 s.
        assert_eq!(o.network.rx_bytes_per_sec, 2130.0);
        assert_eq!(o.containers.len(), 1);
        assert_eq!(o.containers[0].name, "web");
        assert_eq!(p.registered_ids().collect::<Vec<_>>(), [10, 11]);
        // Later intervals: the retired counts stay in the total and add nothing to the rate.
        let later = snap(t0 + Duration::from_secs(5), &[(10, 300, 1), (11, 5000, 7)]);
        let w = Window {
            base: &base,
            prev: &now,
            now: &later,
        };
        let out = aggregate(&[p], &w, &HashMap::new());
        assert_eq!(out[0].network.rx_bytes, 5400);
        assert_eq!(out[0].network.rx_bytes_per_sec, 0.0);
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
