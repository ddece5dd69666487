//! `podnet agent` end to end, on the real kernel: sandbox pods served by the stub API server
//! (which speaks the real watch protocol), the real binary, exact counts read from `/metrics`
//! and `/stats`, and the kernel asked what is attached (BPF_PROG_QUERY).

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use common::{attached_programs, podnet_bin, Cluster, NODE};
use podnet_testing::sandbox::{require_privileges, Layout, NetNs, Qos, SandboxPod, Veth, Workload};
use serde_json::Value;

/// The five cgroup programs podnet attaches to each pod directory.
const PROGRAMS: usize = 5;

static NEXT: AtomicU32 = AtomicU32::new(0);

/// A pin directory of this test's own on bpffs, uninstalled (everything detached) on drop.
struct PinDir(PathBuf);

impl PinDir {
    fn new(label: &str) -> PinDir {
        let dir = PathBuf::from(format!(
            "/sys/fs/bpf/podnet-test-{label}-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        PinDir(dir)
    }
}

impl Drop for PinDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A running `podnet agent` with its stderr collected.
struct Agent {
    child: Child,
    port: u16,
    log: PathBuf,
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl Agent {
    fn start(c: &Cluster, pins: &PinDir) -> Agent {
        let port = free_port();
        let log =
            std::env::temp_dir().join(format!("podnet-agent-{}-{port}.log", std::process::id()));
        let child = Command::new(podnet_bin())
            .args(["agent", "--node", NODE, "--listen"])
            .arg(format!("127.0.0.1:{port}"))
            .arg("--kubeconfig")
            .arg(c.kubeconfig.path())
            .arg("--pin-dir")
            .arg(&pins.0)
            .env("RUST_LOG", "podnet=debug")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .expect("starting podnet agent");
        Agent { child, port, log }
    }

    fn stderr(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn get(&self, path: &str) -> (u16, String) {
        get(self.port, path)
    }

    /// Waits (bounded) until /readyz answers 200.
    fn wait_ready(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                panic!(
                    "the agent exited ({status}) before it was ready:\n{}",
                    self.stderr()
                );
            }
            if let Ok((200, _)) = try_get(self.port, "/readyz") {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "the agent was not ready within 60 s:\n{}",
                self.stderr()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Waits (bounded) until `check` holds for the /metrics text.
    fn wait_metrics(&self, what: &str, check: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let (status, body) = self.get("/metrics");
            assert_eq!(status, 200, "{body}");
            if check(&body) {
                return body;
            }
            assert!(
                Instant::now() < deadline,
                "{what}: not seen in /metrics within 30 s:\n{body}\n{}",
                self.stderr()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Sends `sig` and waits for the exit; returns its code.
    fn stop(mut self, sig: nix::sys::signal::Signal) -> Option<i32> {
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(self.child.id() as i32), sig).unwrap();
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status.code();
            }
            assert!(
                Instant::now() < deadline,
                "the agent did not exit within 20 s"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_file(&self.log);
    }
}

fn try_get(port: u16, path: &str) -> std::io::Result<(u16, String)> {
    let mut s = TcpStream::connect(("127.0.0.1", port))?;
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
    )?;
    let mut raw = String::new();
    s.read_to_string(&mut raw)?;
    let status = raw
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = raw.split_once("\r\n\r\n").map(|(_, b)| b).unwrap_or("");
    Ok((status, body.to_string()))
}

fn get(port: u16, path: &str) -> (u16, String) {
    try_get(port, path).unwrap_or_else(|e| panic!("GET {path} on 127.0.0.1:{port}: {e}"))
}

/// The value of `metric` for the pod `ns/pod` in a /metrics text.
fn metric(text: &str, metric: &str, ns: &str, pod: &str) -> Option<u64> {
    let prefix = format!("{metric}{{namespace=\"{ns}\",pod=\"{pod}\"}} ");
    text.lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .map(|v| v.trim().parse().unwrap())
}

fn args(s: &str) -> Vec<String> {
    s.split_whitespace().map(String::from).collect()
}

/// Sends `count` datagrams of `size` bytes from `from` (in `ns_from`) to `to_addr` in `ns_to`,
/// received by a process of `to`; both workloads report what they did.
fn udp(
    from: (&SandboxPod, &NetNs),
    to: (&SandboxPod, &NetNs),
    to_addr: &str,
    count: u64,
    size: u64,
) {
    let mut recv = Workload::spawn_in(
        &args(&format!(
            "udp-recv --bind {to_addr} --count {count} --timeout-ms 10000"
        )),
        Some(to.1),
        &to.0.containers[0],
    )
    .unwrap();
    recv.wait_ready().unwrap();
    let mut send = Workload::spawn_in(
        &args(&format!(
            "udp-send --to {to_addr} --count {count} --size {size}"
        )),
        Some(from.1),
        &from.0.containers[0],
    )
    .unwrap();
    send.wait_ready().unwrap();
    recv.go().unwrap();
    send.go().unwrap();
    assert_eq!(send.result().unwrap()["sent"], count);
    assert_eq!(recv.result().unwrap()["received"], count);
}

/// Two pods on two namespaces joined by a veth pair.
struct Pair {
    a: SandboxPod,
    b: SandboxPod,
    na: NetNs,
    nb: NetNs,
    _veth: Veth,
    addr_b: String,
}

fn pair(c: &mut Cluster, label: &str) -> Pair {
    let a = c.pod(
        "shop",
        &format!("{label}-a"),
        Layout::SystemdContainerd,
        Qos::Burstable,
        &["app"],
    );
    let b = c.pod(
        "shop",
        &format!("{label}-b"),
        Layout::Cgroupfs,
        Qos::BestEffort,
        &["app"],
    );
    let (na, nb) = (
        NetNs::new(&format!("{label}-a")).unwrap(),
        NetNs::new(&format!("{label}-b")).unwrap(),
    );
    let veth = Veth::between(&na, &nb).unwrap();
    let addr_b = veth.addr_b().to_string();
    Pair {
        a,
        b,
        na,
        nb,
        _veth: veth,
        addr_b,
    }
}

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
    udp(
        (&p.a, &p.na),
        (&p.b, &p.nb),
        &format!("{}:9300", p.addr_b),
        n,
        size,
    );
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
    udp(
        (&p.a, &p.na),
        (&p.b, &p.nb),
        &format!("{}:9301", p.addr_b),
        n1,
        size,
    );
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
    udp(
        (&p.a, &p.na),
        (&p.b, &p.nb),
        &format!("{}:9302", p.addr_b),
        n2,
        size,
    );

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
    udp(
        (&p.a, &p.na),
        (&p.b, &p.nb),
        &format!("{}:9303", p.addr_b),
        n,
        size,
    );
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
    udp(
        (&p.a, &p.na),
        (&p.b, &p.nb),
        &format!("{}:9304", p.addr_b),
        before,
        size,
    );

    let pin_dir = pins.0.to_string_lossy().to_string();
    let stats = c.podnet(&["-o", "json", "--interval", "3s", "--pin-dir", &pin_dir]);
    let deadline = Instant::now() + Duration::from_secs(60);
    while !stats.stderr().contains(podnet::stats::WINDOW_STARTS) {
        assert!(Instant::now() < deadline, "no window:\n{}", stats.stderr());
        std::thread::sleep(Duration::from_millis(20));
    }
    udp(
        (&p.a, &p.na),
        (&p.b, &p.nb),
        &format!("{}:9305", p.addr_b),
        n,
        size,
    );
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
