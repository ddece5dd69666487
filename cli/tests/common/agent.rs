//! The `podnet agent` fixture shared by the agent's end-to-end tests: a pin directory of the
//! test's own on bpffs, the agent process (started against the stub API server, or from a command
//! the test prepared: setpriv, podman), its readiness, `/metrics` scrapes, its stop, and a pair of
//! sandbox pods in two network namespaces that send each other exact UDP datagrams.

#![allow(dead_code)] // each test binary uses a different part of the fixture

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use podnet_testing::sandbox::{Layout, NetNs, Qos, SandboxPod, Veth, Workload};

use super::{podnet_bin, Cluster, NODE};

static NEXT: AtomicU32 = AtomicU32::new(0);

/// A unique name for this process's `label`: `<label>-<pid>-<n>`.
pub fn unique(label: &str) -> String {
    format!(
        "{label}-{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

/// A pin directory of this test's own on bpffs (`/sys/fs/bpf/podnet-test-<label>-<pid>-<n>`),
/// uninstalled with `podnet agent --uninstall` on drop (everything the agent pinned there
/// detaches), or removed when that fails.
pub struct PinDir(pub PathBuf);

impl PinDir {
    pub fn new(label: &str) -> PinDir {
        PinDir(PathBuf::from(format!(
            "/sys/fs/bpf/podnet-test-{}",
            unique(label)
        )))
    }
}

impl Drop for PinDir {
    fn drop(&mut self) {
        if !self.0.exists() {
            return;
        }
        let out = Command::new(podnet_bin())
            .args(["agent", "--uninstall", "--pin-dir"])
            .arg(&self.0)
            .output();
        if !out.as_ref().is_ok_and(|o| o.status.success()) {
            eprintln!(
                "podnet agent --uninstall --pin-dir {}: {out:?}",
                self.0.display()
            );
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// GET over HTTP/1.0 (no chunked answers, from the agent or from a Prometheus) with an optional
/// `Accept` header; the status and the body.
pub fn try_get_accepting(
    port: u16,
    path: &str,
    accept: Option<&str>,
) -> std::io::Result<(u16, String)> {
    podnet_testing::scrape::get(port, path, accept)
}

/// GET `path` on 127.0.0.1:`port`; the status and the body.
pub fn try_get(port: u16, path: &str) -> std::io::Result<(u16, String)> {
    try_get_accepting(port, path, None)
}

/// Like [`try_get`], failing the test when the server does not answer.
pub fn get(port: u16, path: &str) -> (u16, String) {
    try_get(port, path).unwrap_or_else(|e| panic!("GET {path} on 127.0.0.1:{port}: {e}"))
}

// Not every test binary that compiles this module reads metrics.
#[allow(unused_imports)]
pub use podnet_testing::scrape::pod_metric as metric;

pub fn args(s: &str) -> Vec<String> {
    s.split_whitespace().map(String::from).collect()
}

/// A running `podnet agent` (a process, or a podman container) with its stderr in a log file to
/// show when it fails; killed (the container removed) on drop.
pub struct Agent {
    pub child: Child,
    pub port: u16,
    log: PathBuf,
    /// The podman container to remove on drop.
    container: Option<String>,
}

impl Agent {
    /// `podnet agent` against `c`'s stub API server, pinning under `pins`, listening on a free
    /// port of 127.0.0.1.
    pub fn start(c: &Cluster, pins: &PinDir) -> Agent {
        let port = free_port();
        Agent::spawn(
            Command::new(podnet_bin())
                .args(["agent", "--node", NODE, "--listen"])
                .arg(format!("127.0.0.1:{port}"))
                .arg("--kubeconfig")
                .arg(c.kubeconfig.path())
                .arg("--pin-dir")
                .arg(&pins.0)
                .env("RUST_LOG", "podnet=debug"),
            port,
            None,
        )
    }

    /// Starts `cmd`, an agent that listens on 127.0.0.1:`port` (in podman `container`, removed
    /// on drop, if any).
    pub fn spawn(cmd: &mut Command, port: u16, container: Option<String>) -> Agent {
        let log = std::env::temp_dir().join(format!("podnet-agent-{}.log", unique("log")));
        let child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap_or_else(|e| panic!("starting {:?}: {e}", cmd.get_program()));
        Agent {
            child,
            port,
            log,
            container,
        }
    }

    pub fn stderr(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub fn get(&self, path: &str) -> (u16, String) {
        get(self.port, path)
    }

    /// Waits (bounded) until /readyz answers 200.
    pub fn wait_ready(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(90);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                panic!(
                    "the agent exited ({status}) before it was ready:\n{}",
                    self.stderr()
                );
            }
            if let Ok((200, _)) = try_get(self.port, podnet::agent::http::READYZ) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "the agent was not ready within 90 s:\n{}",
                self.stderr()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Waits (bounded) until `check` holds for the /metrics text.
    pub fn wait_metrics(&self, what: &str, check: impl Fn(&str) -> bool) -> String {
        self.wait_metrics_within(30, what, check)
    }

    /// [`Agent::wait_metrics`] with a deadline of `secs` seconds.
    pub fn wait_metrics_within(
        &self,
        secs: u64,
        what: &str,
        check: impl Fn(&str) -> bool,
    ) -> String {
        let deadline = Instant::now() + Duration::from_secs(secs);
        loop {
            let (status, body) = self.get(podnet::agent::http::METRICS);
            assert_eq!(status, 200, "{body}");
            if check(&body) {
                return body;
            }
            assert!(
                Instant::now() < deadline,
                "{what}: not seen in /metrics within {secs} s:\n{body}\n{}",
                self.stderr()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Sends `sig` and waits for the exit; returns its code.
    pub fn stop(mut self, sig: nix::sys::signal::Signal) -> Option<i32> {
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
        if let Some(name) = &self.container {
            let _ = Command::new("podman")
                .args(["rm", "-f", "-t", "2", name])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_file(&self.log);
    }
}

/// Two sandbox pods, `<label>-a` and `<label>-b` in namespace `shop`, in two network namespaces
/// joined by a veth pair.
pub struct Pair {
    pub a: SandboxPod,
    pub b: SandboxPod,
    pub na: NetNs,
    pub nb: NetNs,
    _veth: Veth,
    pub addr_b: String,
}

pub fn pair(c: &mut Cluster, label: &str) -> Pair {
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
    let na = NetNs::new(&format!("{label}-a")).unwrap();
    let nb = NetNs::new(&format!("{label}-b")).unwrap();
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

impl Pair {
    /// Sends `count` datagrams of `size` bytes from pod a to b's `port`, received by a process
    /// of b; both workloads report what they did.
    pub fn udp(&self, port: u16, count: u64, size: u64) {
        self.exchange("", port, count, size);
    }

    /// Like [`Pair::udp`], and the receiver holds its socket afterwards (until the returned
    /// workload is dropped), so that the open-socket gauge has one to see.
    pub fn udp_holding(&self, port: u16, count: u64, size: u64) -> Workload {
        self.exchange("--hold ", port, count, size)
    }

    fn exchange(&self, recv_opts: &str, port: u16, count: u64, size: u64) -> Workload {
        let to = format!("{}:{port}", self.addr_b);
        let mut recv = Workload::spawn_in(
            &args(&format!(
                "{recv_opts}udp-recv --bind {to} --count {count} --timeout-ms 10000"
            )),
            Some(&self.nb),
            &self.b.containers[0],
        )
        .unwrap();
        recv.wait_ready().unwrap();
        let mut send = Workload::spawn_in(
            &args(&format!("udp-send --to {to} --count {count} --size {size}")),
            Some(&self.na),
            &self.a.containers[0],
        )
        .unwrap();
        send.wait_ready().unwrap();
        recv.go().unwrap();
        send.go().unwrap();
        assert_eq!(send.result().unwrap()["sent"], count);
        assert_eq!(recv.result().unwrap()["received"], count);
        recv
    }
}

/// The keys of the agent's pinned counters map: the cgroup ids it has registered.
pub fn registered(pins: &PinDir) -> std::collections::BTreeSet<u64> {
    let map = podnet_loader::Map::from_pin(pins.0.join("maps").join("counters"))
        .expect("opening the agent's pinned counters map");
    map.keys()
        .map(|k| {
            let k = k.expect("iterating the counters map");
            u64::from_ne_bytes(k[..8].try_into().expect("8-byte keys"))
        })
        .collect()
}
