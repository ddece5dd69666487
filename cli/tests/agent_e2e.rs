//! `podnet agent` end to end, on the real kernel: sandbox pods served by the stub API server
//! (which speaks the real watch protocol), the real binary, exact counts read from `/metrics`
//! and `/stats`, and the kernel asked what is attached (BPF_PROG_QUERY).

mod common;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use common::agent::{metric, pair, registered, Agent, PinDir};
use common::{attached_programs, podnet_bin, Cluster, NODE};
use podnet_testing::sandbox::{new_container_id, require_privileges};
use serde_json::Value;

/// The five cgroup programs podnet attaches to each pod directory.
const PROGRAMS: usize = 5;

fn pinned_files(dir: &Path) -> usize {
    fn walk(d: &Path, n: &mut usize) {
        if let Ok(rd) = std::fs::read_dir(d) {
            for e in rd.flatten() {
                if e.file_type().map(|t| t.is_dir()).unwrap_or(false) {
                    walk(&e.path(), n);
                } else {
                    *n += 1;
                }
            }
        }
    }
    let mut n = 0;
    walk(dir, &mut n);
    n
}

#[test]
fn metrics_count_udp_exactly_and_uninstall_leaves_nothing() {
    if !require_privileges("metrics_count_udp_exactly_and_uninstall_leaves_nothing") {
        return;
    }
    let mut c = Cluster::new("agent-udp");
    let p = pair(&mut c, "audp");
    let pins = PinDir::new("udp");
    let mut agent = Agent::start(&c, &pins);
    agent.wait_ready();
    assert_eq!(attached_programs(&p.a.dir), PROGRAMS);
    assert_eq!(attached_programs(&p.b.dir), PROGRAMS);

    let (n, size) = (41u64, 700u64);
    p.udp(9300, n, size);
    let text = agent.wait_metrics("a's datagrams", |t| {
        metric(
            t,
            "podnet_pod_network_transmit_packets_total",
            "shop",
            "audp-a",
        ) == Some(n)
    });
    assert_eq!(
        metric(
            &text,
            "podnet_pod_network_transmit_bytes_total",
            "shop",
            "audp-a"
        ),
        Some(n * (size + 28))
    );
    assert_eq!(
        metric(
            &text,
            "podnet_pod_network_receive_packets_total",
            "shop",
            "audp-b"
        ),
        Some(n)
    );
    assert_eq!(
        metric(
            &text,
            "podnet_pod_network_receive_bytes_total",
            "shop",
            "audp-b"
        ),
        Some(n * (size + 28))
    );
    // One socket created and closed on each side.
    assert_eq!(
        metric(&text, "podnet_pod_sockets_created_total", "shop", "audp-a"),
        Some(1)
    );
    assert_eq!(
        metric(&text, "podnet_pod_sockets_closed_total", "shop", "audp-a"),
        Some(1)
    );
    assert!(text.contains("podnet_tracked_pods 2\n"), "{text}");
    // One series per live pod per metric.
    let series = text
        .lines()
        .filter(|l| l.starts_with("podnet_pod_network_transmit_bytes_total{"))
        .count();
    assert_eq!(series, 2, "{text}");

    // /stats says the same, in the podnet/v1 schema.
    let (status, body) = agent.get("/stats");
    assert_eq!(status, 200);
    let doc: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(doc["apiVersion"], "podnet/v1");
    // The start's warnings last as long as the agent: with the syscall tracepoints (kernels
    // without kprobes, like this one may be) it keeps saying what they cost.
    if doc["fileOpenProbe"] == "tracepoint" {
        assert!(
            doc["warnings"].as_array().unwrap().iter().any(|w| w
                .as_str()
                .unwrap()
                .starts_with(podnet::attach::TRACEPOINT_OPENS_WARNING)),
            "{:#}",
            doc["warnings"]
        );
    }
    let item = common::item(&doc, "audp-a");
    assert_eq!(common::n(item, "/network/txPackets"), n);
    assert_eq!(common::n(item, "/network/txBytes"), n * (size + 28));
    let (status, _) = agent.get("/healthz");
    assert_eq!(status, 200);
    let (status, _) = agent.get("/nope");
    assert_eq!(status, 404);

    // SIGTERM: exit 0, everything stays pinned and attached.
    assert_eq!(agent.stop(nix::sys::signal::Signal::SIGTERM), Some(0));
    assert_eq!(attached_programs(&p.a.dir), PROGRAMS);
    assert!(pinned_files(&pins.0) > 0);

    // --uninstall: exit 0, nothing pinned, nothing attached.
    let out = Command::new(podnet_bin())
        .args(["agent", "--uninstall", "--pin-dir"])
        .arg(&pins.0)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!pins.0.exists());
    common::wait_detached(&p.a.dir);
    common::wait_detached(&p.b.dir);
}

#[test]
fn a_restarted_agent_adopts_its_pins_and_counts_what_came_while_it_was_down() {
    if !require_privileges(
        "a_restarted_agent_adopts_its_pins_and_counts_what_came_while_it_was_down",
    ) {
        return;
    }
    let mut c = Cluster::new("agent-restart");
    let p = pair(&mut c, "arst");
    let pins = PinDir::new("restart");
    let mut agent = Agent::start(&c, &pins);
    agent.wait_ready();
    let (n1, n2, size) = (13u64, 29u64, 400u64);
    p.udp(9301, n1, size);
    agent.wait_metrics("the first datagrams", |t| {
        metric(
            t,
            "podnet_pod_network_transmit_packets_total",
            "shop",
            "arst-a",
        ) == Some(n1)
    });

    // kill -9: the pinned programs stay attached and keep counting while no agent runs.
    agent.stop(nix::sys::signal::Signal::SIGKILL);
    assert_eq!(attached_programs(&p.a.dir), PROGRAMS);
    p.udp(9302, n2, size);

    // A new agent adopts the pins: no second program on any hook, and the counters go on.
    let mut again = Agent::start(&c, &pins);
    again.wait_ready();
    assert!(again.stderr().contains("adopted"), "{}", again.stderr());
    assert_eq!(attached_programs(&p.a.dir), PROGRAMS);
    assert_eq!(attached_programs(&p.b.dir), PROGRAMS);
    let text = again.get("/metrics").1;
    assert_eq!(
        metric(
            &text,
            "podnet_pod_network_transmit_packets_total",
            "shop",
            "arst-a"
        ),
        Some(n1 + n2),
        "{text}"
    );
    assert_eq!(
        metric(
            &text,
            "podnet_pod_network_receive_bytes_total",
            "shop",
            "arst-b"
        ),
        Some((n1 + n2) * (size + 28))
    );
}

#[test]
fn pins_of_another_build_are_replaced_by_the_agent_and_not_read_by_stats() {
    if !require_privileges("pins_of_another_build_are_replaced_by_the_agent_and_not_read_by_stats")
    {
        return;
    }
    let mut c = Cluster::new("agent-build");
    let p = pair(&mut c, "abld");
    let pins = PinDir::new("build");
    let mut agent = Agent::start(&c, &pins);
    agent.wait_ready();
    let size = 300u64;
    p.udp(9306, 7, size);
    agent.wait_metrics("the first datagrams", |t| {
        metric(
            t,
            "podnet_pod_network_transmit_packets_total",
            "shop",
            "abld-a",
        ) == Some(7)
    });
    agent.stop(nix::sys::signal::Signal::SIGTERM);
    assert!(podnet::pins::same_build(&pins.0).unwrap());

    // What an agent of another podnet version leaves: its fingerprint differs from this build's.
    let build = podnet_loader::Map::from_pin(pins.0.join("maps/build")).unwrap();
    let other = podnet::attach::object_fingerprint() ^ 1;
    build
        .update(
            &0u32.to_ne_bytes(),
            &other.to_ne_bytes(),
            podnet_loader::BPF_ANY,
        )
        .unwrap();
    drop(build);
    assert!(!podnet::pins::same_build(&pins.0).unwrap());

    // The one-shot does not read those maps: it counts its window with programs of its own,
    // beside the other build's, and says why.
    let pin_dir = pins.0.to_string_lossy().to_string();
    let stats = c.podnet(&["-o", "json", "--interval", "3s", "--pin-dir", &pin_dir]);
    stats.wait_window();
    assert_eq!(attached_programs(&p.a.dir), 2 * PROGRAMS);
    let n = 11u64;
    p.udp(9307, n, size);
    let doc = stats.json();
    let item = common::item(&doc, "abld-a");
    assert_eq!(common::n(item, "/network/txPackets"), n, "{item:#}");
    let warned = doc["warnings"]
        .as_array()
        .unwrap()
        .iter()
        .any(|w| w.as_str().unwrap().starts_with(podnet::attach::OTHER_BUILD));
    assert!(warned, "{:#}", doc["warnings"]);
    common::wait_detached_to(&p.a.dir, PROGRAMS);

    // The agent removes the other build's pins (their programs detach) and starts again from 0.
    let mut again = Agent::start(&c, &pins);
    again.wait_ready();
    assert!(
        again.stderr().contains(podnet::attach::OTHER_BUILD),
        "{}",
        again.stderr()
    );
    assert!(podnet::pins::same_build(&pins.0).unwrap());
    assert_eq!(attached_programs(&p.a.dir), PROGRAMS);
    assert_eq!(attached_programs(&p.b.dir), PROGRAMS);
    let m = 5u64;
    p.udp(9308, m, size);
    again.wait_metrics("the datagrams after the replacement", |t| {
        metric(
            t,
            "podnet_pod_network_receive_packets_total",
            "shop",
            "abld-b",
        ) == Some(m)
    });
    let text = again.get("/metrics").1;
    assert_eq!(
        metric(
            &text,
            "podnet_pod_network_transmit_packets_total",
            "shop",
            "abld-a"
        ),
        Some(m),
        "{text}"
    );
}

#[test]
fn pods_come_and_go_through_the_watch() {
    if !require_privileges("pods_come_and_go_through_the_watch") {
        return;
    }
    let mut c = Cluster::new("agent-watch");
    let pins = PinDir::new("watch");
    let mut agent = Agent::start(&c, &pins);
    agent.wait_ready();
    let (status, body) = agent.get("/metrics");
    assert_eq!(status, 200);
    assert!(body.contains("podnet_tracked_pods 0\n"), "{body}");

    // Pods added after the agent started arrive through the watch (ADDED events) and are
    // attached and counted exactly.
    let p = pair(&mut c, "awat");
    let (n, size) = (17u64, 100u64);
    agent.wait_metrics("the added pods", |t| t.contains("podnet_tracked_pods 2\n"));
    assert_eq!(attached_programs(&p.a.dir), PROGRAMS);
    p.udp(9303, n, size);
    agent.wait_metrics("the added pod's datagrams", |t| {
        metric(
            t,
            "podnet_pod_network_transmit_packets_total",
            "shop",
            "awat-a",
        ) == Some(n)
    });

    // An API outage (failed requests and dropped watches) is survived: the pods stay counted.
    c.api.fail_next(3, 500);
    c.api.drop_watches();
    let text = agent.wait_metrics("the pods during the outage", |t| {
        t.contains("podnet_tracked_pods 2\n")
    });
    assert_eq!(
        metric(
            &text,
            "podnet_pod_network_transmit_packets_total",
            "shop",
            "awat-a"
        ),
        Some(n)
    );

    // A deleted pod (DELETED event) is detached, its pins removed and its series gone.
    c.api.delete_pod("shop", "awat-a");
    let text = agent.wait_metrics("the deleted pod gone", |t| {
        t.contains("podnet_tracked_pods 1\n")
    });
    assert_eq!(
        metric(
            &text,
            "podnet_pod_network_transmit_packets_total",
            "shop",
            "awat-a"
        ),
        None,
        "{text}"
    );
    assert!(metric(
        &text,
        "podnet_pod_network_receive_packets_total",
        "shop",
        "awat-b"
    )
    .is_some());
    common::wait_detached(&p.a.dir);
    assert_eq!(attached_programs(&p.b.dir), PROGRAMS);
    assert_eq!(
        std::fs::read_dir(pins.0.join("pods")).unwrap().count(),
        1,
        "only the live pod's links stay pinned"
    );
}

#[test]
fn stats_reads_the_agents_maps_and_leaves_its_programs_alone() {
    if !require_privileges("stats_reads_the_agents_maps_and_leaves_its_programs_alone") {
        return;
    }
    let mut c = Cluster::new("agent-stats");
    let p = pair(&mut c, "asts");
    let pins = PinDir::new("stats");
    let mut agent = Agent::start(&c, &pins);
    agent.wait_ready();
    // Traffic before the window: in the agent's counters, not in the one-shot's window.
    let (before, n, size) = (5u64, 23u64, 250u64);
    p.udp(9304, before, size);

    let pin_dir = pins.0.to_string_lossy().to_string();
    let stats = c.podnet(&["-o", "json", "--interval", "3s", "--pin-dir", &pin_dir]);
    stats.wait_window();
    p.udp(9305, n, size);
    let doc = stats.json();
    let item = common::item(&doc, "asts-a");
    assert_eq!(common::n(item, "/network/txPackets"), n, "{item:#}");
    assert_eq!(common::n(item, "/network/txBytes"), n * (size + 28));
    // The agent's programs are the only ones, before, during and after.
    assert_eq!(attached_programs(&p.a.dir), PROGRAMS);
    let text = agent.get("/metrics").1;
    assert_eq!(
        metric(
            &text,
            "podnet_pod_network_transmit_packets_total",
            "shop",
            "asts-a"
        ),
        Some(before + n)
    );
}

#[test]
fn a_failed_start_pins_nothing() {
    if !require_privileges("a_failed_start_pins_nothing") {
        return;
    }
    let pins = PinDir::new("fail");
    let out = Command::new(podnet_bin())
        .args([
            "agent",
            "--node",
            NODE,
            "--listen",
            "127.0.0.1:0",
            "--kubeconfig",
        ])
        .arg("/nonexistent/kubeconfig")
        .arg("--pin-dir")
        .arg(&pins.0)
        .env_remove("RUST_LOG")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("/nonexistent/kubeconfig"), "{stderr}");
    assert!(!pins.0.exists(), "a failed start left {}", pins.0.display());
}

/// A container that starts in a pod the agent already follows (a restart) is registered while
/// nothing else changes: the agent, settled, still looks at the cgroup tree (every few seconds),
/// and the pod's counts stay exact throughout.
#[test]
fn a_restarted_container_is_registered_while_the_agent_is_settled() {
    if !require_privileges("a_restarted_container_is_registered_while_the_agent_is_settled") {
        return;
    }
    let mut c = Cluster::new("agent-restart");
    let mut p = pair(&mut c, "arst");
    let pins = PinDir::new("restart");
    let mut agent = Agent::start(&c, &pins);
    agent.wait_ready();
    let first = p.a.cgroup_id().unwrap();
    assert!(registered(&pins).contains(&first));
    let restarted =
        p.a.add_container(&c.tree, "app-restarted", &new_container_id())
            .unwrap()
            .cgroup_id()
            .unwrap();
    c.api
        .update_pod(p.a.pod_json("shop", "arst-a", NODE, &[("app", "arst-a")]));
    let deadline = Instant::now() + Duration::from_secs(60);
    while !registered(&pins).contains(&restarted) {
        assert!(
            Instant::now() < deadline,
            "the restarted container's cgroup was not registered within 60 s:\n{}",
            agent.stderr()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    // Both the first container's and the new one's cgroups stay registered, with the pod's.
    let ids = registered(&pins);
    assert!(ids.contains(&first) && ids.contains(&p.a.containers[0].cgroup_id().unwrap()));
    let n = 23u64;
    p.udp(9310, n, 300);
    agent.wait_metrics("a's datagrams", |t| {
        metric(
            t,
            "podnet_pod_network_transmit_packets_total",
            "shop",
            "arst-a",
        ) == Some(n)
    });
}
