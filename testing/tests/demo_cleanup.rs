//! The demo sandbox (`make demo`) generates the load it says it does, and leaves nothing behind:
//! no network namespace, veth, cgroup directory (v2 or v1 memory), workload process or temporary
//! file — after a normal end, after podnet failed, after SIGINT, and when dropped mid-load.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use serde_json::Value;

use podnet_testing::demo::{
    DemoConfig, DemoSandbox, Resources, AGENT_UDP_RATE, DB_UDP_RATE, DEMO_NODE, REPORT_MISSING,
    REPORT_OPENS, WEB_UDP_RATE,
};
use podnet_testing::sandbox::{netns_snmp, require_privileges};

const MIB: u64 = 1 << 20;

/// GET `path` from the stub API server and parse the JSON body.
fn get(addr: std::net::SocketAddr, path: &str) -> Value {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(5)).expect("connect to stub");
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nAccept: application/json\r\n\r\n"
    )
    .unwrap();
    let mut r = BufReader::new(s);
    let mut status = String::new();
    r.read_line(&mut status).unwrap();
    assert!(status.starts_with("HTTP/1.1 200"), "{status}");
    let mut len = 0usize;
    loop {
        let mut line = String::new();
        r.read_line(&mut line).unwrap();
        let line = line.trim_end();
        if line.is_empty() {
            break;
        }
        if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
            len = v.trim().parse().unwrap();
        }
    }
    let mut body = vec![0u8; len];
    r.read_exact(&mut body).unwrap();
    serde_json::from_slice(&body).unwrap()
}

fn names(list: &Value) -> Vec<String> {
    let mut v: Vec<String> = list["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            format!(
                "{}/{}",
                p["metadata"]["namespace"].as_str().unwrap(),
                p["metadata"]["name"].as_str().unwrap()
            )
        })
        .collect();
    v.sort();
    v
}

fn result_of<'a>(results: &'a [(String, Value)], label: &str) -> &'a Value {
    &results
        .iter()
        .find(|(l, _)| l == label)
        .unwrap_or_else(|| panic!("no result for {label}"))
        .1
}

/// Seconds of demo load in the test that checks it.
const TRAFFIC_SECS: u64 = 20;

#[test]
fn setup_generates_the_stated_load_and_drop_leaves_nothing() {
    if !require_privileges("demo setup generates the stated load and drop leaves nothing") {
        return;
    }
    // Long enough that the workloads are still running when the checks after setup look for
    // them, even on a kernel emulated by qemu (TCG) on a busy machine, where setup alone has
    // taken over 8 s.
    let config = DemoConfig {
        node: DEMO_NODE.into(),
        traffic: Duration::from_secs(TRAFFIC_SECS),
    };
    let mut demo = DemoSandbox::setup(&config).expect("demo setup");
    let made = demo.resources().clone();
    let v1 = demo.tree().memcg_root().is_some();
    // 3 netns, 3 veth pairs, v2 root (+ v1 twin), 5 workloads, 1 temp dir: all there.
    assert_eq!(made.netns.len(), 3);
    assert_eq!(made.links.len(), 6);
    assert_eq!(made.cgroup_dirs.len(), if v1 { 2 } else { 1 });
    assert_eq!(made.pids.len(), 5);
    assert_eq!(made.existing().len(), made.count(), "{:?}", made.existing());
    assert!(demo.kubeconfig().is_file());

    // Each long-running workload sits in its container's cgroup.
    let containers: Vec<_> = demo
        .pods()
        .iter()
        .flat_map(|p| p.sandbox.containers.iter())
        .collect();
    assert_eq!(
        containers
            .iter()
            .map(|c| c.name.as_str())
            .collect::<Vec<_>>(),
        ["web", "sidecar", "postgres", "report", "agent"]
    );
    for (c, pid) in containers.iter().zip(&made.pids) {
        let procs = std::fs::read_to_string(c.dir.join("cgroup.procs")).unwrap();
        assert!(
            procs.lines().any(|l| l == pid.to_string()),
            "{pid} not in {}: {procs}",
            c.dir.display()
        );
    }

    // The API server lists the 4 pods plus the Pending one for this node, and 6 in all.
    let addr = demo.api_server().addr();
    let mine = get(
        addr,
        &format!("/api/v1/pods?fieldSelector=spec.nodeName%3D{DEMO_NODE}"),
    );
    assert_eq!(
        names(&mine),
        [
            "batch/report-7d9f",
            "kube-system/node-agent",
            "shop/db-0",
            "shop/web-0",
            "shop/web-1"
        ]
    );
    assert_eq!(names(&get(addr, "/api/v1/pods")).len(), 6);
    let kubeconfig = std::fs::read_to_string(demo.kubeconfig()).unwrap();
    assert!(
        kubeconfig.contains(&format!("server: {}", demo.api_server().url())),
        "{kubeconfig}"
    );

    let (driver, results) = demo.wait_traffic().expect("the load runs to its end");
    assert_eq!(driver.errors, Vec::<String>::new());
    let web = result_of(&results, "shop/web-0/web");
    assert_eq!(web["udpSent"], WEB_UDP_RATE * TRAFFIC_SECS);
    assert_eq!(web["socketsCreated"], 10 * TRAFFIC_SECS);
    assert_eq!(web["opens"], 20 * TRAFFIC_SECS);
    assert_eq!(web["bytesHeld"], 24 * MIB);
    let sidecar = result_of(&results, "shop/web-0/sidecar");
    assert_eq!(sidecar["udpSent"], 0);
    assert_eq!(sidecar["opens"], 5 * TRAFFIC_SECS);
    assert_eq!(sidecar["bytesHeld"], 8 * MIB);
    let db = result_of(&results, "shop/db-0/postgres");
    assert_eq!(db["udpSent"], DB_UDP_RATE * TRAFFIC_SECS);
    assert_eq!(db["socketsCreated"], 2 * TRAFFIC_SECS);
    assert_eq!(db["opens"], 50 * TRAFFIC_SECS);
    assert_eq!(db["bytesHeld"], 64 * MIB);
    let report = result_of(&results, "batch/report-7d9f/report");
    assert_eq!(
        (report["udpSent"].as_u64(), report["opens"].as_u64()),
        (Some(0), Some(0))
    );
    assert_eq!(report["bytesHeld"], 48 * MIB);
    let agent = result_of(&results, "kube-system/node-agent/agent");
    assert_eq!(agent["udpSent"], AGENT_UDP_RATE * TRAFFIC_SECS);
    assert_eq!(agent["socketsCreated"], TRAFFIC_SECS);
    assert_eq!(agent["opens"], 100 * TRAFFIC_SECS);
    assert_eq!(agent["bytesHeld"], 12 * MIB);

    // The kernel saw exactly that on the wire: every datagram sent in web-0's and db-0's
    // namespaces, and one TCP connection per completed query.
    let ns = demo.netns();
    let (web_ns, db_ns, report_ns) = (netns_snmp(ns[0]), netns_snmp(ns[1]), netns_snmp(ns[2]));
    assert_eq!(web_ns["UdpOutDatagrams"], WEB_UDP_RATE * TRAFFIC_SECS);
    assert_eq!(db_ns["UdpOutDatagrams"], DB_UDP_RATE * TRAFFIC_SECS);
    assert_eq!(report_ns["UdpOutDatagrams"], 0);
    assert!(
        driver.tcp_queries >= 1,
        "no TCP query completed in {TRAFFIC_SECS} s: {driver:?}"
    );
    assert_eq!(report_ns["TcpActiveOpens"], driver.tcp_queries);
    assert_eq!(db_ns["TcpPassiveOpens"], driver.tcp_queries);
    assert_eq!(db_ns["TcpActiveOpens"], 0);
    // A round does its query, then its opens; the deadline may fall in between.
    assert!(
        driver.open_batches == driver.tcp_queries || driver.open_batches + 1 == driver.tcp_queries,
        "{driver:?}"
    );
    assert_eq!((REPORT_OPENS, REPORT_MISSING), (100, 10));

    drop(ns);
    drop(demo);
    assert_eq!(made.existing(), Vec::<String>::new());
}

#[test]
fn drop_while_the_load_runs_leaves_nothing() {
    if !require_privileges("demo dropped while its load runs leaves nothing") {
        return;
    }
    let config = DemoConfig {
        node: DEMO_NODE.into(),
        traffic: Duration::from_secs(60),
    };
    let demo = DemoSandbox::setup(&config).expect("demo setup");
    let made = demo.resources().clone();
    // Let the periodic TCP queries and open batches get going.
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(made.existing().len(), made.count(), "{:?}", made.existing());
    let t = Instant::now();
    drop(demo);
    let took = t.elapsed();
    assert_eq!(made.existing(), Vec::<String>::new());
    // The load had 60 s to run: a teardown that waited for it would take that long. (A wide
    // margin, since emulated kernels are slow: this proves it does not wait, not a speed.)
    assert!(took < Duration::from_secs(45), "teardown took {took:?}");
}

/// A fake `podnet` that logs its arguments (and whether the kubeconfig it was given exists) to
/// `log`, then runs `then`.
fn fake_podnet(dir: &Path, name: &str, log: &Path, then: &str) -> PathBuf {
    let path = dir.join(name);
    let script = format!(
        "#!/bin/sh\necho \"$*\" >> {log}\nif [ -f \"$3\" ]; then echo kubeconfig-present >> {log}; fi\n{then}\n",
        log = log.display()
    );
    std::fs::write(&path, script).unwrap();
    Command::new("chmod")
        .arg("755")
        .arg(&path)
        .status()
        .unwrap();
    path
}

fn read_lines(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(str::to_string)
        .collect()
}

/// Waits (bounded) for the demo to exit; returns its exit code (None: killed by a signal).
fn wait_demo(child: &mut Child, within: Duration) -> Option<i32> {
    let deadline = Instant::now() + within;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status.code();
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("podnet-demo did not exit within {within:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn wait_for(what: &str, within: Duration, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + within;
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn manifest(path: &Path) -> Resources {
    let v: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    Resources::from_json(&v).unwrap()
}

/// Scratch directory for one test, removed on drop.
struct Scratch(PathBuf);

impl Scratch {
    fn new(label: &str) -> Scratch {
        let dir =
            std::env::temp_dir().join(format!("podnet-demo-test-{label}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        Scratch(dir)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn demo_cmd(podnet: &Path, manifest: &Path) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_podnet-demo"));
    cmd.arg("--podnet")
        .arg(podnet)
        .arg("--seconds")
        .arg("1")
        .arg("--manifest")
        .arg(manifest)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    cmd
}

/// Collects a child's pipe on a thread, line by line.
fn lines_of(pipe: impl Read + Send + 'static) -> mpsc::Receiver<String> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(pipe).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    rx
}

fn drain(rx: &mpsc::Receiver<String>) -> String {
    rx.try_iter().collect::<Vec<_>>().join("\n")
}

#[test]
fn podnet_demo_runs_podnet_four_ways_and_cleans_up_after_success_failure_sigint_and_keep() {
    if !require_privileges("podnet-demo cleans up after success, failure, SIGINT and --keep") {
        return;
    }
    let scratch = Scratch::new("bin");
    let dir = &scratch.0;

    // 1. podnet succeeds: four runs with the documented flags, exit 0, nothing left.
    let log = dir.join("ok.log");
    let ok = fake_podnet(dir, "ok.sh", &log, "exit 0");
    let m = dir.join("ok.json");
    let out = demo_cmd(&ok, &m).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let made = manifest(&m);
    let kubeconfig = made.paths[0].join("kubeconfig");
    let common = format!(
        "stats --kubeconfig {} --node {DEMO_NODE} --interval 1s",
        kubeconfig.display()
    );
    let expected: Vec<String> = [
        "",
        " -o wide --containers",
        " -o json -n batch",
        " --watch --iterations 3",
    ]
    .iter()
    .flat_map(|extra| [format!("{common}{extra}"), "kubeconfig-present".to_string()])
    .collect();
    assert_eq!(read_lines(&log), expected);
    for extra in [
        "",
        " -o wide --containers",
        " -o json -n batch",
        " --watch --iterations 3",
    ] {
        assert!(
            stdout.contains(&format!("$ sudo podnet {common}{extra}\n")),
            "{stdout}"
        );
    }
    assert!(stdout.contains("Nothing is left behind."), "{stdout}");
    assert_eq!(
        (made.netns.len(), made.links.len(), made.pids.len()),
        (3, 6, 5)
    );
    assert_eq!(made.existing(), Vec::<String>::new());

    // 2. podnet fails: the demo stops after the first run, exits 1, nothing left.
    let log = dir.join("fail.log");
    let fail = fake_podnet(
        dir,
        "fail.sh",
        &log,
        "echo 'error: no BPF today' >&2; exit 3",
    );
    let m = dir.join("fail.json");
    let out = demo_cmd(&fail, &m).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("error: no BPF today"), "{stderr}");
    assert!(stderr.contains("failed (exit status: 3)"), "{stderr}");
    assert_eq!(read_lines(&log).len(), 2, "{:?}", read_lines(&log));
    let made = manifest(&m);
    assert_eq!(made.existing(), Vec::<String>::new());

    // 3. SIGINT while podnet runs: podnet is stopped, the sandbox removed, exit 130.
    let log = dir.join("int.log");
    let slow = fake_podnet(dir, "slow.sh", &log, "exec sleep 60");
    let m = dir.join("int.json");
    let mut child = demo_cmd(&slow, &m).spawn().unwrap();
    let stdout = lines_of(child.stdout.take().unwrap());
    wait_for("the fake podnet to start", Duration::from_secs(60), || {
        read_lines(&log).len() == 2
    });
    let made = manifest(&m);
    assert_eq!(made.existing().len(), made.count(), "{:?}", made.existing());
    let pid = Pid::from_raw(i32::try_from(child.id()).unwrap());
    let t = Instant::now();
    kill(pid, Signal::SIGINT).unwrap();
    let code = wait_demo(&mut child, Duration::from_secs(30));
    let out = drain(&stdout);
    assert_eq!(code, Some(130), "{out}");
    assert!(
        t.elapsed() < Duration::from_secs(20),
        "took {:?}",
        t.elapsed()
    );
    assert_eq!(
        read_lines(&log).len(),
        2,
        "no further podnet run after SIGINT"
    );
    assert!(out.contains("Nothing is left behind."), "{out}");
    assert_eq!(made.existing(), Vec::<String>::new());

    // 4. --keep: everything stays up after the runs until a line arrives on stdin.
    let log = dir.join("keep.log");
    let ok = fake_podnet(dir, "keep.sh", &log, "exit 0");
    let m = dir.join("keep.json");
    let mut child = demo_cmd(&ok, &m)
        .arg("--keep")
        .stdin(Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = lines_of(child.stdout.take().unwrap());
    let mut seen = String::new();
    wait_for("the --keep prompt", Duration::from_secs(60), || {
        seen.push_str(&drain(&stdout));
        seen.push('\n');
        seen.contains("Press Enter here to remove everything.")
    });
    assert!(
        seen.contains(&format!(
            "--kubeconfig {}",
            manifest(&m).paths[0].join("kubeconfig").display()
        )),
        "{seen}"
    );
    assert_eq!(read_lines(&log).len(), 8);
    let made = manifest(&m);
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(made.existing().len(), made.count(), "{:?}", made.existing());
    child.stdin.take().unwrap().write_all(b"\n").unwrap();
    assert_eq!(wait_demo(&mut child, Duration::from_secs(30)), Some(0));
    assert_eq!(made.existing(), Vec::<String>::new());
}
