//! Shared by the sections: the sandbox pod pair, resolving sandbox pods as `podnet stats` does, a
//! `Tracker` as `podnet stats` makes it, podnet-sandbox workloads, medians and number formatting.
//! Measures nothing itself.

use std::path::Path;
use std::time::Duration;

use anyhow::{anyhow, bail, ensure, Context, Result};
use serde_json::{json, Value};

use podnet::aggregate::TrackedPod;
use podnet::attach::Tracker;
use podnet::discover::parse_pod_list;
use podnet::resolve::{self, Mounts, ResolvedPod};
use podnet_testing::sandbox::{
    new_container_id, new_uid, CgroupTree, Layout, NetNs, Qos, SandboxPod, Veth, Workload,
};

/// `n` sandbox pods in `tree`, one container each, taking every kubelet layout and QoS class in
/// turn, as the Pod objects a stub API server lists: `namespace/pod-<i>` on [`NODE`].
pub fn pod_objects(tree: &CgroupTree, n: usize, namespace: &str) -> Result<Vec<Value>> {
    let layouts = Layout::all();
    let mut items = Vec::with_capacity(n);
    for i in 0..n {
        let pod = SandboxPod::create(
            tree,
            layouts[i % layouts.len()].clone(),
            &new_uid(),
            Qos::ALL[i % 3],
            &[("app", &new_container_id())],
        )?;
        items.push(pod.pod_json(namespace, &format!("pod-{i}"), NODE, &[("app", "bench")]));
    }
    Ok(items)
}

/// The node name the generated pods are scheduled on.
pub const NODE: &str = "podnet-bench-node";

/// `podnet stats`' default `--max-pods`: the capacity of the trackers that stand for it.
pub const DEFAULT_MAX_PODS: u32 = 1024;

/// Two sandbox pods with one container each, in two network namespaces joined by a veth pair.
pub struct PodPair {
    // Field order is drop order: workloads are gone, then the veth, the namespaces, the tree.
    pub veth: Veth,
    pub na: NetNs,
    pub nb: NetNs,
    pub a: SandboxPod,
    pub b: SandboxPod,
    pub tree: CgroupTree,
}

impl PodPair {
    pub fn new(label: &str) -> Result<PodPair> {
        let tree = CgroupTree::new(label)?;
        let a = SandboxPod::create(
            &tree,
            Layout::SystemdContainerd,
            &new_uid(),
            Qos::Burstable,
            &[("app", &new_container_id())],
        )?;
        let b = SandboxPod::create(
            &tree,
            Layout::Cgroupfs,
            &new_uid(),
            Qos::Guaranteed,
            &[("app", &new_container_id())],
        )?;
        let na = NetNs::new(&format!("{label}-a"))?;
        let nb = NetNs::new(&format!("{label}-b"))?;
        let veth = Veth::between(&na, &nb)?;
        Ok(PodPair {
            veth,
            na,
            nb,
            a,
            b,
            tree,
        })
    }

    pub fn resolved(&self) -> Result<Vec<ResolvedPod>> {
        resolve_pods(&self.tree, &[&self.a, &self.b])
    }
}

/// Resolves sandbox pods the way `podnet stats` does: their PodList JSON through discovery's
/// parser, a scan of the cgroup tree, and [`resolve::resolve`].
pub fn resolve_pods(tree: &CgroupTree, pods: &[&SandboxPod]) -> Result<Vec<ResolvedPod>> {
    let items: Vec<Value> = pods
        .iter()
        .enumerate()
        .map(|(i, p)| p.pod_json("bench", &format!("pod-{i}"), NODE, &[]))
        .collect();
    let text = json!({"apiVersion": "v1", "kind": "PodList", "items": items}).to_string();
    let (listed, _) = parse_pod_list(&text).map_err(|e| anyhow!("generated PodList: {e}"))?;
    let infos: Vec<_> = listed.into_iter().map(|l| l.info).collect();
    let index = resolve::scan(tree.root())
        .with_context(|| format!("scanning {}", tree.root().display()))?;
    let resolved = resolve::resolve(&infos, &index);
    ensure!(
        resolved.pods.len() == pods.len() && resolved.warnings.is_empty(),
        "resolved {} of {} sandbox pods: {:?}",
        resolved.pods.len(),
        pods.len(),
        resolved.warnings
    );
    Ok(resolved.pods)
}

/// `follow()` repeated (at most 5 times) while its only warnings are ENOMEM from registering
/// cgroups: inserting thousands of entries into the per-CPU counters map in a burst sometimes
/// fails transiently (see testing/BENCHMARKS.md), and a later `follow()` picks those pods up.
/// Returns the followed pods and how many ENOMEM warnings were retried.
pub fn follow_all(
    tracker: &mut Tracker,
    pods: &[ResolvedPod],
    mounts: &Mounts,
) -> Result<(Vec<TrackedPod>, usize)> {
    let mut enomem = 0;
    for _ in 0..5 {
        let (tracked, warnings) = tracker.follow(pods, mounts);
        if warnings.is_empty() {
            ensure!(
                tracked.len() == pods.len(),
                "followed {} of {} pods",
                tracked.len(),
                pods.len()
            );
            return Ok((tracked, enomem));
        }
        ensure!(
            warnings.iter().all(|w| w.contains("os error 12")),
            "follow: {warnings:?}"
        );
        enomem += warnings.len();
        std::thread::sleep(Duration::from_millis(10));
    }
    bail!("pods still not followed after 5 rounds of ENOMEM")
}

/// A tracker like `podnet stats` makes: default capacity, file tracepoints, following `pods`.
pub fn attached_tracker(pods: &[ResolvedPod]) -> Result<Tracker> {
    let mut tracker = Tracker::load(DEFAULT_MAX_PODS)?;
    tracker.attach_file_opens(podnet::attach::OpenProbe::Auto)?;
    follow_all(&mut tracker, pods, &Mounts::detect()?)?;
    Ok(tracker)
}

fn words(s: &str) -> Vec<String> {
    s.split_whitespace().map(String::from).collect()
}

/// Starts a podnet-sandbox job and waits until it is ready (in its cgroup and namespace).
pub fn workload(job: &str, ns: Option<&NetNs>, cgroup: &Path) -> Result<Workload> {
    let mut w = Workload::spawn(&words(job), ns, Some(cgroup), None)?;
    w.wait_ready()?;
    Ok(w)
}

/// Runs a ready workload's job to its result and waits for it to exit.
pub fn finish(mut w: Workload) -> Result<Value> {
    w.go()?;
    let v = w.result()?;
    w.release()?;
    Ok(v)
}

pub fn median(mut v: Vec<f64>) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

pub fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// `12345678` → `12,345,678`.
pub fn thousands(n: u64) -> String {
    let s = n.to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}
