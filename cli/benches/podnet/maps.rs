//! Section `maps`: reading the counters map with 1k and 10k registered cgroups:
//! `Tracker::snapshot()` (what `podnet stats` does each interval) against a batch lookup and
//! against key iteration plus one lookup per key of the same map, and the `follow()` that
//! registered them.

use std::fmt::Write as _;
use std::fs;
use std::time::Instant;

use anyhow::{ensure, Context, Result};

use podnet::attach::{Tracker, CGROUPS_PER_POD};
use podnet::resolve::Mounts;
use podnet_testing::sandbox::{
    new_container_id, new_uid, CgroupTree, Layout, Qos, SandboxContainer, SandboxPod,
};

use crate::common::{follow_all, median, ms, resolve_pods, thousands};

/// Runs the section; returns its part of the report.
pub fn bench() -> Result<String> {
    const PODS: usize = 10;
    let mut md = String::new();
    writeln!(
        md,
        "\n## 3. Reading the counters map\n\n\
         {PODS} sandbox pods whose container directories add up to N registered cgroups, \
         followed by a `Tracker` whose counters map is sized for exactly N \
         (`--max-pods` N/8). `snapshot()` is what `podnet stats` does each interval (one batch \
         lookup, per-CPU sums, the misses map). The two other columns read the same tracker's \
         counters map (`Tracker::object()`) with its N keys: batch lookup plus sums, and key \
         iteration (`BPF_MAP_GET_NEXT_KEY`) plus one lookup per key plus sums. {} possible \
         CPUs. *Registering N* is the `follow()` that inserted the N zeroed entries (10 pods' \
         links included); *ENOMEM retried* counts inserts that failed with ENOMEM and were \
         retried by calling `follow()` again, a transient failure of the kernel's per-CPU \
         allocator under a burst of inserts.\n",
        podnet_loader::possible_cpus()?
    )?;
    writeln!(
        md,
        "| cgroups | `snapshot()` | batch lookup | keys + lookups | keys+lookups / batch | reads \
         | registering N | ENOMEM retried |"
    )?;
    writeln!(md, "|--:|--:|--:|--:|--:|--:|--:|--:|")?;
    for n in [1_000usize, 10_000] {
        let reps = if n <= 1_000 { 50 } else { 10 };
        let tree = CgroupTree::new("bench-map")?;
        let mut pods = Vec::new();
        for _ in 0..PODS {
            let mut pod = SandboxPod::create(
                &tree,
                Layout::SystemdContainerd,
                &new_uid(),
                Qos::Burstable,
                &[],
            )?;
            // v2 directories only (no v1 memory twins): these cgroups exist to be counted.
            for j in 0..n / PODS - 1 {
                let id = new_container_id();
                let name = pod.layout.container_dir_name(&id);
                let dir = pod.dir.join(&name);
                fs::create_dir(&dir).with_context(|| format!("creating {}", dir.display()))?;
                pod.containers.push(SandboxContainer {
                    name: format!("c{j}"),
                    id,
                    runtime: pod.layout.runtime_scheme(),
                    rel: format!("{}/{name}", pod.rel),
                    dir,
                    memcg: None,
                    conmon_dir: None,
                });
            }
            pods.push(pod);
        }
        let refs: Vec<&SandboxPod> = pods.iter().collect();
        let resolved = resolve_pods(&tree, &refs)?;
        let capacity_pods = u32::try_from(n)?.div_ceil(CGROUPS_PER_POD);
        let mut tracker = Tracker::load(capacity_pods)?;
        let t = Instant::now();
        let (tracked, enomem) = follow_all(&mut tracker, &resolved, &Mounts::detect()?)?;
        let register_time = t.elapsed();
        let ids: Vec<u64> = tracked.iter().flat_map(|p| p.cgroup_ids()).collect();
        ensure!(ids.len() == n, "registered {} of {n} cgroups", ids.len());
        let mut snap = Vec::new();
        for _ in 0..reps {
            let t = Instant::now();
            let s = podnet::sample::Snapshot::read(tracker.object())?;
            snap.push(ms(t.elapsed()));
            ensure!(
                s.counters.len() == n,
                "snapshot read {} of {n}",
                s.counters.len()
            );
        }
        // The map `snapshot()` just read, read the two other ways.
        let map = tracker.object().map("counters")?;
        let (mut batch, mut keys) = (Vec::new(), Vec::new());
        for _ in 0..reps {
            let t = Instant::now();
            let mut read = 0usize;
            for (_, v) in map.lookup_batch()? {
                map.sum_percpu_u64(&v)?;
                read += 1;
            }
            batch.push(ms(t.elapsed()));
            ensure!(read == n, "batch lookup read {read} of {n}");

            let t = Instant::now();
            let mut read = 0usize;
            for key in map.keys() {
                if let Some(v) = map.lookup(&key?)? {
                    map.sum_percpu_u64(&v)?;
                    read += 1;
                }
            }
            keys.push(ms(t.elapsed()));
            ensure!(read == n, "key iteration read {read} of {n}");
        }
        let (s, b, k) = (median(snap), median(batch), median(keys));
        writeln!(
            md,
            "| {} | {s:.2} ms | {b:.2} ms | {k:.2} ms | {:.1}× | {reps} | {:.0} ms | {} |",
            thousands(n as u64),
            k / b,
            ms(register_time),
            enomem
        )?;
    }
    Ok(md)
}
