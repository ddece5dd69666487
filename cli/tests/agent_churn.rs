//! `podnet agent` under pod churn (issue 7), on the real kernel: while the agent runs against the
//! stub API server, 100 sandbox pods are added (cgroup directories made, then an ADDED event each)
//! and deleted again (DELETED events, cgroup directories removed, half in each order). Where the
//! state is settled, what the agent exports and what it keeps in the kernel are compared, as
//! sets, with the pods that are live: the series of every per-pod metric family in /metrics, the
//! keys of the pinned counters map (the cgroups it registered), the pod directories under the pin
//! directory, and the programs attached to each pod's cgroup (BPF_PROG_QUERY).

mod common;

use std::collections::BTreeSet;
use std::time::Instant;

use common::agent::{registered, Agent, PinDir};
use common::{attached_programs, Cluster};
use podnet_testing::sandbox::{require_privileges, Layout, Qos, SandboxPod};
use serde_json::Value;

/// The five cgroup programs podnet attaches to each pod directory.
const PROGRAMS: usize = 5;
/// How many pods come and go.
const CHURN: usize = 100;
/// How long the agent may take to follow all of them (generous: the kernel matrix runs this
/// under TCG, where attaching 500 links takes far longer than here).
const SETTLE_SECS: u64 = 120;
/// The namespace of the churning pods; the pods present throughout are in `base`.
const NS: &str = "churn";

/// A pod the test made: its Pod object's namespace and name, and its cgroup directories.
struct Live {
    ns: String,
    name: String,
    pod: SandboxPod,
}

impl Live {
    fn key(&self) -> (String, String) {
        (self.ns.clone(), self.name.clone())
    }

    /// The cgroups the agent registers for this pod: its own and each container's.
    fn cgroup_ids(&self) -> Vec<u64> {
        let mut ids = vec![self.pod.cgroup_id().unwrap()];
        ids.extend(self.pod.containers.iter().map(|c| c.cgroup_id().unwrap()));
        ids
    }
}

/// The per-pod metric families the agent exports.
fn pod_families() -> Vec<&'static str> {
    podnet::agent::metrics::metric_names()
        .into_iter()
        .filter(|n| n.starts_with("podnet_pod_"))
        .collect()
}

/// Families with no series for a pod whose value podnet could not read (a memory limit the pod
/// does not have, file opens where no probe attached, fds /proc would not show), with the field
/// of the pod's `/stats` item that is null then.
const MAYBE_ABSENT: [(&str, &str); 5] = [
    ("podnet_pod_file_opens_total", "/files/opens"),
    ("podnet_pod_file_open_errors_total", "/files/openErrors"),
    ("podnet_pod_open_fds", "/files/openFds"),
    ("podnet_pod_open_sockets", "/sockets/open"),
    ("podnet_pod_memory_limit_bytes", "/memory/limitBytes"),
];

/// The `(namespace, pod)` of every series of `family` in a /metrics text.
fn series(text: &str, family: &str) -> Vec<(String, String)> {
    let prefix = format!("{family}{{");
    text.lines()
        .filter_map(|l| l.strip_prefix(&prefix))
        .map(|rest| {
            let labels = rest.split_once("} ").expect("a sample line").0;
            let label = |key: &str| {
                labels
                    .split(',')
                    .find_map(|kv| kv.strip_prefix(&format!("{key}=\"")))
                    .and_then(|v| v.strip_suffix('"'))
                    .unwrap_or_else(|| panic!("no {key} label in {family}{{{labels}}}"))
                    .to_string()
            };
            (label("namespace"), label("pod"))
        })
        .collect()
}

/// `podnet_tracked_pods` in a /metrics text.
fn tracked_pods(text: &str) -> Option<usize> {
    text.lines()
        .find_map(|l| l.strip_prefix("podnet_tracked_pods "))
        .map(|v| v.trim().parse().unwrap())
}

/// Has the agent caught up with `live`? Its pod count, and one series per live pod (no other)
/// in a family every pod has.
fn settled(text: &str, live: &BTreeSet<(String, String)>) -> bool {
    let mut s = series(text, "podnet_pod_network_transmit_bytes_total");
    s.sort();
    tracked_pods(text) == Some(live.len())
        && s.len() == live.len()
        && s.into_iter().eq(live.iter().cloned())
}

/// The pod uids with links pinned under the pin directory.
fn pinned_pods(pins: &PinDir) -> BTreeSet<String> {
    podnet::pins::pod_uids(&pins.0).into_iter().collect()
}

/// Waits (bounded) until /metrics shows exactly the `live` pods, then checks that every per-pod
/// family has one series per live pod and no other, the pinned counters map holds exactly the
/// live pods' cgroups, exactly the live pods have pinned links, and each has every program
/// attached.
fn check_settled(agent: &Agent, pins: &PinDir, live: &[&Live], when: &str) {
    let names: BTreeSet<(String, String)> = live.iter().map(|l| l.key()).collect();
    assert_eq!(names.len(), live.len(), "pod names are unique");
    let started = Instant::now();
    let text = agent.wait_metrics_within(SETTLE_SECS, when, |t| settled(t, &names));
    eprintln!(
        "{when}: {} pods followed after {:.1} s",
        live.len(),
        started.elapsed().as_secs_f64()
    );

    // Which gauges podnet could read for which pod, from the same state.
    let (status, body) = agent.get("/stats");
    assert_eq!(status, 200, "{body}");
    let doc: Value = serde_json::from_str(&body).unwrap();
    let items = doc["items"].as_array().expect("items");
    let in_stats: BTreeSet<(String, String)> = items
        .iter()
        .map(|i| {
            (
                i["namespace"].as_str().unwrap().to_string(),
                i["pod"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert_eq!(items.len(), live.len(), "{when}: /stats items");
    assert_eq!(in_stats, names, "{when}: /stats items");

    assert_eq!(tracked_pods(&text), Some(live.len()), "{when}");
    for family in pod_families() {
        let got = series(&text, family);
        let want: BTreeSet<(String, String)> = match MAYBE_ABSENT.iter().find(|m| m.0 == family) {
            Some((_, field)) => items
                .iter()
                .filter(|i| !i.pointer(field).expect(field).is_null())
                .map(|i| {
                    (
                        i["namespace"].as_str().unwrap().to_string(),
                        i["pod"].as_str().unwrap().to_string(),
                    )
                })
                .collect(),
            None => names.clone(),
        };
        assert_eq!(got.len(), want.len(), "{when}: series of {family}");
        assert_eq!(
            got.into_iter().collect::<BTreeSet<_>>(),
            want,
            "{when}: series of {family}"
        );
    }
    let cgroups: BTreeSet<u64> = live.iter().flat_map(|l| l.cgroup_ids()).collect();
    let registered = registered(pins);
    eprintln!(
        "{when}: {} cgroups registered, series per family: {:?}",
        registered.len(),
        pod_families()
            .iter()
            .map(|f| series(&text, f).len())
            .collect::<Vec<_>>()
    );
    assert_eq!(
        registered.len(),
        cgroups.len(),
        "{when}: counters map entries"
    );
    assert_eq!(registered, cgroups, "{when}: counters map keys");

    let uids: BTreeSet<String> = live.iter().map(|l| l.pod.uid.clone()).collect();
    assert_eq!(pinned_pods(pins), uids, "{when}: pods with pinned links");
    for l in live {
        assert_eq!(
            attached_programs(&l.pod.dir),
            PROGRAMS,
            "{when}: programs on {}/{}",
            l.ns,
            l.name
        );
    }
}

#[test]
fn a_hundred_pods_come_and_go_and_nothing_stays_behind() {
    if !require_privileges("a_hundred_pods_come_and_go_and_nothing_stays_behind") {
        return;
    }
    let mut c = Cluster::new("agent-churn");
    // Two pods present throughout, listed before the agent starts.
    let base: Vec<Live> = [
        ("base-0", Layout::SystemdContainerd, Qos::Burstable),
        ("base-1", Layout::Cgroupfs, Qos::BestEffort),
    ]
    .into_iter()
    .map(|(name, layout, qos)| Live {
        ns: "base".into(),
        name: name.into(),
        pod: c.pod("base", name, layout, qos, &["app"]),
    })
    .collect();
    let pins = PinDir::new("churn");
    let mut agent = Agent::start(&c, &pins);
    agent.wait_ready();
    check_settled(
        &agent,
        &pins,
        &base.iter().collect::<Vec<_>>(),
        "before the churn",
    );

    // 100 pods arrive: cgroup directories first, as the kubelet makes them, then the ADDED
    // event. Every layout and QoS class in turn; every fourth pod has a sidecar.
    let layouts = Layout::all();
    let qos = [Qos::Burstable, Qos::BestEffort, Qos::Guaranteed];
    let mut churn = Vec::with_capacity(CHURN);
    for i in 0..CHURN {
        let name = format!("churn-{i:03}");
        let containers: &[&str] = if i % 4 == 0 {
            &["app", "sidecar"]
        } else {
            &["app"]
        };
        let pod = c.pod(
            NS,
            &name,
            layouts[i % layouts.len()].clone(),
            qos[i % qos.len()],
            containers,
        );
        churn.push(Live {
            ns: NS.into(),
            name,
            pod,
        });
    }
    let everyone: Vec<&Live> = base.iter().chain(&churn).collect();
    check_settled(&agent, &pins, &everyone, "after the adds");

    // They go again. Even pods: the Pod object is deleted first (a force delete), the cgroup
    // directories stay until the agent has let go of them. Odd pods: the cgroup directories go
    // first (the kubelet tore the pod down), then the DELETED event.
    for (i, l) in churn.iter().enumerate() {
        if i % 2 == 1 {
            c.tree.remove(&l.pod.tree_rel).unwrap();
        }
        c.delete(&l.ns, &l.name);
    }
    check_settled(
        &agent,
        &pins,
        &base.iter().collect::<Vec<_>>(),
        "after the deletes",
    );
    for l in churn.iter().step_by(2) {
        // Detached: the agent removed the links' pins, and it holds no other reference.
        common::wait_detached(&l.pod.dir);
        c.tree.remove(&l.pod.tree_rel).unwrap();
    }
    for l in &churn {
        assert!(!l.pod.dir.exists(), "{} is left", l.pod.dir.display());
    }
    // Removing the last directories changes nothing the agent follows.
    check_settled(
        &agent,
        &pins,
        &base.iter().collect::<Vec<_>>(),
        "after the rmdirs",
    );
    let (status, _) = agent.get(podnet::agent::http::READYZ);
    assert_eq!(status, 200);
}
