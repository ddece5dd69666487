//! Section `attach`: how long `Tracker::load`, `attach_file_tracepoints()`, the first `follow()`
//! of 10, 100 and 500 pods, a refresh, detaching the pods and unloading take, and where the
//! unload time goes (closing the syscall tracepoint links, one after the other or in parallel).

use std::fmt::Write as _;
use std::time::Instant;

use anyhow::{ensure, Result};

use podnet::attach::{attached_programs, Tracker, CGROUP_PROGRAMS};
use podnet::resolve::Mounts;
use podnet_testing::sandbox::{new_container_id, new_uid, CgroupTree, Layout, Qos, SandboxPod};

use crate::common::{follow_all, median, ms, resolve_pods, thousands, DEFAULT_MAX_PODS};

/// Runs the section; returns its part of the report.
pub fn bench() -> Result<String> {
    let mut md = String::new();
    writeln!(
        md,
        "\n## 4. Attach and detach time\n\n\
         N sandbox pods with one container each (all kubelet layouts and QoS classes mixed). \
         *Load* is `Tracker::load({DEFAULT_MAX_PODS})` (the object into the kernel; the kernel \
         probes before it are answered once per process, so only a run's first load pays \
         them), *tracepoints* `attach_file_tracepoints()`, *follow* the first `follow()` \
         (5 cgroup links per pod, pod and container registered), *refresh* a second `follow()` \
         with the same pods (what `--watch` does every 10 s), *detach pods* `follow(&[])` \
         (every pod's links closed and its cgroups unregistered: what happens to pods that are \
         gone), *unload* dropping the tracker afterwards (tracepoint links, programs, maps). \
         *Scan + resolve* is the cgroup walk and matching that precedes `follow()`.\n"
    )?;
    writeln!(
        md,
        "| pods | links | scan + resolve | load | tracepoints | follow | per pod | refresh | detach pods | unload |"
    )?;
    writeln!(md, "|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|")?;
    let layouts = Layout::all();
    for n in [10usize, 100, 500] {
        let tree = CgroupTree::new("bench-attach")?;
        let mut pods = Vec::with_capacity(n);
        for i in 0..n {
            pods.push(SandboxPod::create(
                &tree,
                layouts[i % layouts.len()].clone(),
                &new_uid(),
                Qos::ALL[i % 3],
                &[("app", &new_container_id())],
            )?);
        }
        let refs: Vec<&SandboxPod> = pods.iter().collect();
        let t = Instant::now();
        let resolved = resolve_pods(&tree, &refs)?;
        let scan = t.elapsed();
        let mounts = Mounts::detect()?;

        let t = Instant::now();
        let mut tracker = Tracker::load(DEFAULT_MAX_PODS)?;
        let load = t.elapsed();
        let t = Instant::now();
        tracker.attach_file_opens(podnet::attach::OpenProbe::Auto)?;
        let tps = t.elapsed();
        let t = Instant::now();
        let (tracked, warnings) = tracker.follow(&resolved, &mounts);
        let follow = t.elapsed();
        let mut note = String::new();
        if !warnings.is_empty() {
            // Transient ENOMEM from the counters map: finish the job, mark the row.
            let (_, more) = follow_all(&mut tracker, &resolved, &mounts)?;
            ensure!(
                warnings.iter().all(|w| w.contains("os error 12")),
                "follow: {warnings:?}"
            );
            note = format!(" (ENOMEM ×{}, retried)", warnings.len() + more);
        } else {
            ensure!(tracked.len() == n, "followed {} of {n}", tracked.len());
        }
        let ends = [&pods[0].dir, &pods[n - 1].dir];
        for d in ends {
            ensure!(attached_programs(d) == 5, "{} not attached", d.display());
        }
        let t = Instant::now();
        let (again, _) = tracker.follow(&resolved, &mounts);
        let refresh = t.elapsed();
        ensure!(again.len() == n, "refresh followed {} of {n}", again.len());
        let t = Instant::now();
        let (none, _) = tracker.follow(&[], &mounts);
        let detach_pods = t.elapsed();
        ensure!(none.is_empty(), "still following {} pods", none.len());
        for d in ends {
            ensure!(attached_programs(d) == 0, "{} still attached", d.display());
        }
        let t = Instant::now();
        drop(tracker);
        let unload = t.elapsed();
        writeln!(
            md,
            "| {n} | {} | {:.1} ms | {:.1} ms | {:.1} ms | {:.1} ms{note} | {:.3} ms | {:.2} ms | {:.1} ms | {:.1} ms |",
            thousands((n * CGROUP_PROGRAMS.len()) as u64),
            ms(scan),
            ms(load),
            ms(tps),
            ms(follow),
            ms(follow) / n as f64,
            ms(refresh),
            ms(detach_pods),
            ms(unload)
        )?;
    }
    // Where the unload time goes: a tracker with no pods, without and with the tracepoints.
    let (mut bare, mut with_tps) = (Vec::new(), Vec::new());
    for _ in 0..3 {
        let tracker = Tracker::load(DEFAULT_MAX_PODS)?;
        let t = Instant::now();
        drop(tracker);
        bare.push(ms(t.elapsed()));
        let mut tracker = Tracker::load(DEFAULT_MAX_PODS)?;
        tracker.attach_file_opens(podnet::attach::OpenProbe::Auto)?;
        let t = Instant::now();
        drop(tracker);
        with_tps.push(ms(t.elapsed()));
    }
    // The same links closed from one thread each at once, to see whether the waits overlap.
    let (mut parallel, mut tracepoint_links) = (Vec::new(), 0);
    for _ in 0..3 {
        let mut tracker = Tracker::load(DEFAULT_MAX_PODS)?;
        tracker.attach_file_opens(podnet::attach::OpenProbe::Auto)?;
        let links = tracker.take_open_links();
        tracepoint_links = links.len();
        let t = Instant::now();
        std::thread::scope(|scope| {
            for link in links {
                scope.spawn(move || drop(link));
            }
        });
        parallel.push(ms(t.elapsed()));
        drop(tracker);
    }
    writeln!(
        md,
        "\nUnloading a tracker that follows no pods: {:.1} ms without tracepoints, {:.1} ms with \
         its {tracepoint_links} syscall tracepoint links (medians of 3): closing the \
         tracepoint links one after the other is the unload cost, and a process exit closes \
         them the same way. Closing the same {tracepoint_links} links from one thread each at \
         once takes {:.1} ms.",
        median(bare),
        median(with_tps),
        median(parallel)
    )?;
    Ok(md)
}
