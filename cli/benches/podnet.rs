//! podnet's benchmarks: what podnet costs on a real kernel, measured (never asserted).
//!
//! ```text
//! sudo cargo bench -p podnet --bench podnet [-- SECTION...]     # or: sudo make bench
//! ```
//!
//! Sections (all by default, in this order):
//! - `events`: nanoseconds per run of each BPF program, from `run_time_ns`/`run_cnt` in
//!   `/proc/self/fdinfo/<prog fd>` with `kernel.bpf_stats_enabled` on (restored afterwards), under
//!   known loads between two sandbox pods: UDP datagrams over a veth between two network
//!   namespaces, socket churn, TCP connections, `openat` inside a pod and outside any pod (the
//!   ancestor walk every `openat` on the node pays).
//! - `throughput`: TCP bulk (with and without GSO) and UDP packets/s between the two pods, with
//!   `podnet` attached (a [`Tracker`] following both pods) and without, trials alternated.
//! - `maps`: reading 1k and 10k registered cgroups: [`Tracker::snapshot`] (batch lookup) against
//!   key iteration plus one lookup per key.
//! - `attach`: [`Tracker::follow`] for 10, 100 and 500 pods, and detaching (dropping the tracker).
//! - `rss`: peak resident set of the release `podnet stats` binary, one shot over 100 pods.
//!
//! Everything lives in sandbox objects (cgroup trees, network namespaces, veth pairs with
//! addresses in 198.18.0.0/15) that are removed on drop. Needs root; the whole run takes about a
//! minute on 2 vCPUs. The report is printed and written to `target/bench-report.md` (or to
//! `$PODNET_BENCH_REPORT`).
//!
//! The throughput loops run in helper processes: this executable started again with
//! `PODNET_BENCH_HELPER` set, which joins a pod's cgroup and a network namespace and times its own
//! send/receive loop (see [`helper`]).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::fs;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, Stdio};
use std::sync::mpsc::{self, Receiver};
use std::time::{Duration, Instant, SystemTime};

use anyhow::{anyhow, bail, ensure, Context, Result};
use serde_json::{json, Value};

use podnet::attach::{attached_programs, cgroup_id, Tracker, BPF_OBJECT, CGROUPS_PER_POD};
use podnet::discover::parse_pod_list;
use podnet::resolve::{self, Mounts, ResolvedPod};
use podnet_loader::{tracepoint_exists, Link, Map, Object, ObjectSpec, BPF_ANY, BPF_NOEXIST};
use podnet_testing::sandbox::{
    new_container_id, new_uid, require_privileges, CgroupTree, Layout, NetNs, Qos,
    SandboxContainer, SandboxPod, Veth, Workload,
};

/// The sections, in the order they run.
const SECTIONS: [&str; 5] = ["events", "throughput", "maps", "attach", "rss"];

/// The node name the generated pods are scheduled on.
const NODE: &str = "podnet-bench-node";

// The programs and tracepoints are attached exactly as the tracker attaches them.
use podnet::attach::{CGROUP_PROGRAMS, OPEN_SYSCALLS};

/// Environment variables of the helper processes.
const HELPER_ROLE: &str = "PODNET_BENCH_HELPER";
const HELPER_NETNS: &str = "PODNET_BENCH_NETNS";
const HELPER_CGROUP: &str = "PODNET_BENCH_CGROUP";
const HELPER_ADDR: &str = "PODNET_BENCH_ADDR";
const HELPER_SECONDS: &str = "PODNET_BENCH_SECONDS";
const HELPER_SIZE: &str = "PODNET_BENCH_SIZE";

fn main() -> ExitCode {
    if let Ok(role) = std::env::var(HELPER_ROLE) {
        return helper::main(&role);
    }
    let args: Vec<String> = std::env::args().skip(1).collect();
    // `cargo bench` passes --bench; `cargo test --benches` does not: then only say how to run.
    if !args.iter().any(|a| a == "--bench") {
        println!(
            "podnet benchmarks: run them as root with `cargo bench -p podnet --bench podnet` \
             (or `make bench`)"
        );
        return ExitCode::SUCCESS;
    }
    let wanted: Vec<&str> = args
        .iter()
        .map(String::as_str)
        .filter(|a| !a.starts_with('-'))
        .collect();
    if let Some(bad) = wanted.iter().find(|w| !SECTIONS.contains(w)) {
        eprintln!(
            "unknown benchmark section {bad:?}: choose from {}",
            SECTIONS.join(", ")
        );
        return ExitCode::from(2);
    }
    if !require_privileges("podnet benchmarks") {
        eprintln!(
            "podnet benchmarks need root (BPF, cgroups, network namespaces): \
             run `sudo make bench`"
        );
        return ExitCode::from(1);
    }
    let sections: Vec<&str> = SECTIONS
        .iter()
        .copied()
        .filter(|s| wanted.is_empty() || wanted.contains(s))
        .collect();
    match run(&sections) {
        Ok(path) => {
            println!("\nreport written to {}", path.display());
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("benchmark failed: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(sections: &[&str]) -> Result<PathBuf> {
    let started = Instant::now();
    let mut report = Report::default();
    report.add(&machine_header()?);
    for s in sections {
        let t = Instant::now();
        let md = match *s {
            "events" => bench_events()?,
            "throughput" => bench_throughput()?,
            "maps" => bench_maps()?,
            "attach" => bench_attach()?,
            "rss" => bench_rss()?,
            _ => unreachable!("checked in main"),
        };
        report.add(&md);
        eprintln!("[{s}: {:.1} s]", t.elapsed().as_secs_f64());
    }
    report.add(&format!(
        "\nWhole run: {:.1} s.\n",
        started.elapsed().as_secs_f64()
    ));
    let path = report_path();
    if let Some(dir) = path.parent() {
        fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    fs::write(&path, &report.text).with_context(|| format!("writing {}", path.display()))?;
    Ok(path)
}

/// The markdown report, printed as it grows.
#[derive(Default)]
struct Report {
    text: String,
}

impl Report {
    fn add(&mut self, md: &str) {
        print!("{md}");
        let _ = std::io::stdout().flush();
        self.text.push_str(md);
    }
}

/// `$PODNET_BENCH_REPORT`, else `bench-report.md` in the target directory this executable was
/// built in (`<target>/release/deps/podnet-<hash>`).
fn report_path() -> PathBuf {
    if let Some(p) = std::env::var_os("PODNET_BENCH_REPORT") {
        return PathBuf::from(p);
    }
    let exe = std::env::current_exe().unwrap_or_default();
    exe.ancestors()
        .nth(3)
        .map(|target| target.join("bench-report.md"))
        .unwrap_or_else(|| PathBuf::from("bench-report.md"))
}

fn machine_header() -> Result<String> {
    let cpuinfo = fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find_map(|l| l.strip_prefix("model name"))
        .map(|l| l.trim_start_matches([' ', '\t', ':']).to_string())
        .unwrap_or_else(|| "unknown CPU".into());
    let cpus = std::thread::available_parallelism().map_or(0, |n| n.get());
    let kernel = fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    let mem_kib: u64 = fs::read_to_string("/proc/meminfo")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0);
    let rev = Command::new("git")
        .args(["rev-parse", "--short", "HEAD"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_else(|| "unknown".into());
    // Code that is built into what is measured but not committed yet.
    let dirty = Command::new("git")
        .args([
            "diff",
            "--quiet",
            "HEAD",
            "--",
            "bpf-src",
            "cli/src",
            "loader/src",
        ])
        .current_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/.."))
        .status()
        .is_ok_and(|s| s.code() == Some(1));
    let rev = if dirty {
        format!("{rev} (with uncommitted changes)")
    } else {
        rev
    };
    Ok(format!(
        "# podnet benchmarks\n\n\
         {} — {cpus} CPUs ({model}), {:.1} GiB RAM, Linux {}, podnet at git {rev}.\n\
         Numbers are medians of the trials shown; other processes on the machine share the CPUs.\n",
        podnet::stats::rfc3339(SystemTime::now()),
        mem_kib as f64 / (1024.0 * 1024.0),
        kernel.trim(),
    ))
}

// ---------------------------------------------------------------------------------------------
// Shared fixture pieces

/// Two sandbox pods with one container each, in two network namespaces joined by a veth pair.
struct PodPair {
    // Field order is drop order: workloads are gone, then the veth, the namespaces, the tree.
    veth: Veth,
    na: NetNs,
    nb: NetNs,
    a: SandboxPod,
    b: SandboxPod,
    tree: CgroupTree,
}

impl PodPair {
    fn new(label: &str) -> Result<PodPair> {
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

    fn resolved(&self) -> Result<Vec<ResolvedPod>> {
        resolve_pods(&self.tree, &[&self.a, &self.b])
    }
}

/// Resolves sandbox pods the way `podnet stats` does: their PodList JSON through discovery's
/// parser, a scan of the cgroup tree, and [`resolve::resolve`].
fn resolve_pods(tree: &CgroupTree, pods: &[&SandboxPod]) -> Result<Vec<ResolvedPod>> {
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
fn follow_all(
    tracker: &mut Tracker,
    pods: &[ResolvedPod],
    mounts: &Mounts,
) -> Result<(Vec<podnet::aggregate::TrackedPod>, usize)> {
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
fn attached_tracker(pods: &[ResolvedPod]) -> Result<Tracker> {
    let mut tracker = Tracker::load(1024)?;
    tracker.attach_file_tracepoints()?;
    follow_all(&mut tracker, pods, &Mounts::detect()?)?;
    Ok(tracker)
}

fn words(s: &str) -> Vec<String> {
    s.split_whitespace().map(String::from).collect()
}

/// Starts a podnet-sandbox job and waits until it is ready (in its cgroup and namespace).
fn workload(job: &str, ns: Option<&NetNs>, cgroup: &Path) -> Result<Workload> {
    let mut w = Workload::spawn(&words(job), ns, Some(cgroup), None)?;
    w.wait_ready()?;
    Ok(w)
}

/// Runs a ready workload's job to its result and waits for it to exit.
fn finish(mut w: Workload) -> Result<Value> {
    w.go()?;
    let v = w.result()?;
    w.release()?;
    Ok(v)
}

fn median(mut v: Vec<f64>) -> f64 {
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

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// `12345678` → `12,345,678`.
fn thousands(n: u64) -> String {
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

// ---------------------------------------------------------------------------------------------
// 1. Cost per event

/// `run_time_ns` and `run_cnt` of one program, from `/proc/self/fdinfo/<fd>`.
#[derive(Debug, Clone, Copy, Default)]
struct ProgStats {
    run_time_ns: u64,
    run_cnt: u64,
}

impl ProgStats {
    fn read(fd: i32) -> Result<ProgStats> {
        let path = format!("/proc/self/fdinfo/{fd}");
        let text = fs::read_to_string(&path).with_context(|| format!("reading {path}"))?;
        let field = |name: &str| -> Result<u64> {
            text.lines()
                .find_map(|l| l.strip_prefix(name))
                .and_then(|v| v.trim_start_matches(':').trim().parse().ok())
                .ok_or_else(|| {
                    anyhow!("{path} has no {name}: this kernel does not report BPF run statistics")
                })
        };
        Ok(ProgStats {
            run_time_ns: field("run_time_ns")?,
            run_cnt: field("run_cnt")?,
        })
    }

    fn since(self, before: ProgStats) -> ProgStats {
        ProgStats {
            run_time_ns: self.run_time_ns - before.run_time_ns,
            run_cnt: self.run_cnt - before.run_cnt,
        }
    }

    fn ns_per_run(self) -> f64 {
        if self.run_cnt == 0 {
            f64::NAN
        } else {
            self.run_time_ns as f64 / self.run_cnt as f64
        }
    }
}

/// `kernel.bpf_stats_enabled` switched on; the previous value is written back on drop.
struct BpfStatsOn {
    previous: String,
}

const BPF_STATS_SYSCTL: &str = "/proc/sys/kernel/bpf_stats_enabled";

impl BpfStatsOn {
    fn enable() -> Result<BpfStatsOn> {
        let previous = fs::read_to_string(BPF_STATS_SYSCTL)
            .with_context(|| format!("reading {BPF_STATS_SYSCTL} (kernel.bpf_stats_enabled)"))?
            .trim()
            .to_string();
        fs::write(BPF_STATS_SYSCTL, "1")
            .with_context(|| format!("enabling {BPF_STATS_SYSCTL}: needs root"))?;
        Ok(BpfStatsOn { previous })
    }
}

impl Drop for BpfStatsOn {
    fn drop(&mut self) {
        if let Err(e) = fs::write(BPF_STATS_SYSCTL, &self.previous) {
            eprintln!(
                "could not restore kernel.bpf_stats_enabled to {}: {e}: run `sysctl -w \
                 kernel.bpf_stats_enabled={}`",
                self.previous, self.previous
            );
        }
    }
}

/// podnet's embedded object loaded and attached exactly as [`Tracker`] does it (cgroup programs
/// on each pod directory, the pod named in its attach-point storage, pod and container cgroups
/// registered zeroed, file-open programs on every open-family tracepoint), keeping the program
/// fds that [`Tracker`] does not expose.
struct Probe {
    _links: Vec<Link>,
    object: Object,
}

impl Probe {
    fn attach(pods: &[&SandboxPod]) -> Result<Probe> {
        let object = load_object(64 * CGROUPS_PER_POD)?;
        let mut links = Vec::new();
        let counters = object.map("counters")?;
        for pod in pods {
            let pod_id = cgroup_id(&pod.dir)?;
            for name in CGROUP_PROGRAMS {
                links.push(
                    object
                        .program(name)?
                        .attach_cgroup(&pod.dir)
                        .with_context(|| format!("attaching {name}"))?,
                );
            }
            object.map("attach_pod")?.update(
                &pod_id.to_ne_bytes(),
                &pod_id.to_ne_bytes(),
                BPF_ANY,
            )?;
            register(counters, pod_id)?;
            for c in &pod.containers {
                register(counters, c.cgroup_id()?)?;
            }
        }
        links.extend(tracepoint_links_of(&object)?);
        Ok(Probe {
            _links: links,
            object,
        })
    }

    fn stats(&self) -> Result<BTreeMap<String, ProgStats>> {
        self.object
            .programs()
            .map(|p| Ok((p.name().to_string(), ProgStats::read(p.fd().as_raw_fd())?)))
            .collect()
    }
}

/// The file-open programs of `object` attached to every open-family tracepoint there is.
fn tracepoint_links_of(object: &Object) -> Result<Vec<Link>> {
    let mut links = Vec::new();
    for (name, phase) in [("podnet_open_enter", "enter"), ("podnet_open_exit", "exit")] {
        for syscall in OPEN_SYSCALLS {
            let event = format!("sys_{phase}_{syscall}");
            if tracepoint_exists("syscalls", &event)? {
                links.push(
                    object
                        .program(name)?
                        .attach_tracepoint("syscalls", &event)
                        .with_context(|| format!("attaching {name} to syscalls/{event}"))?,
                );
            }
        }
    }
    Ok(links)
}

/// The embedded object loaded with a counters map for `capacity` cgroups.
fn load_object(capacity: u32) -> Result<Object> {
    let mut spec = ObjectSpec::parse(BPF_OBJECT).context("parsing the embedded object")?;
    spec.map_mut("counters")?.max_entries = capacity;
    Object::load(&spec).context("loading podnet's BPF programs")
}

/// Registers a cgroup's zeroed counters, as the tracker does.
fn register(counters: &Map, id: u64) -> Result<()> {
    let zeros = vec![0u8; counters.value_len()];
    counters
        .update(&id.to_ne_bytes(), &zeros, BPF_NOEXIST)
        .with_context(|| format!("registering cgroup {id}"))
}

/// One measured load: the programs' deltas while it ran.
struct Step {
    load: String,
    delta: BTreeMap<String, ProgStats>,
    /// Events of each program the load itself caused, when known exactly.
    caused: Vec<(&'static str, u64)>,
}

/// Runs `load` between two reads of the probe's statistics.
fn measure(
    probe: &Probe,
    load: String,
    caused: Vec<(&'static str, u64)>,
    f: impl FnOnce() -> Result<()>,
) -> Result<Step> {
    let before = probe.stats()?;
    f()?;
    let after = probe.stats()?;
    let delta = after
        .iter()
        .map(|(name, a)| (name.clone(), a.since(before[name])))
        .collect();
    Ok(Step {
        load,
        delta,
        caused,
    })
}

fn bench_events() -> Result<String> {
    const UDP_N: u64 = 50_000;
    const UDP_SIZE: u64 = 200;
    const SOCKETS_N: u64 = 50_000;
    const TCP_CONNS: u64 = 20;
    const TCP_BYTES: u64 = 1 << 20;
    const OPENS_N: u64 = 100_000;
    const MISSING_N: u64 = 10_000;

    let mut pp = PodPair::new("bench-ev")?;
    // Leave GSO on, as the kernel does by default: TCP rows then show per-skb costs of real
    // (multi-segment) skbs.
    pp.veth.set_gso_max_segs(65535)?;
    let probe = Probe::attach(&[&pp.a, &pp.b])?;
    // A container that appears after attach is not registered: its events walk up to the pod.
    let late_id = new_container_id();
    let late_dir = pp.a.add_container(&pp.tree, "late", &late_id)?.dir.clone();
    // Untracked cgroups at several depths below the cgroup2 root (the tree root is at depth 1,
    // its child `outside` at 2).
    let mut outside: Vec<(usize, PathBuf)> = Vec::new();
    for depth in [2usize, 6, 12] {
        let mut rel = vec!["outside".to_string()];
        rel.extend((3..=depth).map(|d| format!("d{d}")));
        outside.push((depth, pp.tree.create(&rel.join("/"))?));
    }
    let ip_b = pp.veth.addr_b();
    let (ca, cb) = (
        pp.a.containers[0].dir.clone(),
        pp.b.containers[0].dir.clone(),
    );
    let own_depth = own_cgroup_depth();

    let stats_on = BpfStatsOn::enable()?;
    let mut steps = Vec::new();

    let rx = workload(
        &format!("udp-recv --bind {ip_b}:9000 --count {UDP_N} --timeout-ms 10000"),
        Some(&pp.nb),
        &cb,
    )?;
    let tx = workload(
        &format!("udp-send --to {ip_b}:9000 --count {UDP_N} --size {UDP_SIZE}"),
        Some(&pp.na),
        &ca,
    )?;
    let mut udp_result = (0, 0);
    steps.push(measure(
        &probe,
        format!(
            "UDP: {} datagrams of {UDP_SIZE} B, pod A → pod B over veth",
            thousands(UDP_N)
        ),
        vec![
            ("podnet_egress", UDP_N),
            ("podnet_ingress", UDP_N),
            // The receiver's socket is bound before it is ready, so before the load.
            ("podnet_sock_create", 1),
            ("podnet_sock_release", 2),
        ],
        || {
            let mut rx = rx;
            rx.go()?;
            let sent = finish(tx)?["sent"].as_u64().unwrap_or(0);
            let received = rx.result()?["received"].as_u64().unwrap_or(0);
            rx.release()?;
            udp_result = (sent, received);
            Ok(())
        },
    )?);
    ensure!(
        udp_result.0 == UDP_N,
        "udp-send sent {} of {UDP_N}",
        udp_result.0
    );

    let w = workload(&format!("sockets --count {SOCKETS_N}"), None, &ca)?;
    steps.push(measure(
        &probe,
        format!(
            "Sockets: {} UDP sockets created and closed in pod A",
            thousands(SOCKETS_N)
        ),
        vec![
            ("podnet_sock_create", SOCKETS_N),
            ("podnet_sock_release", SOCKETS_N),
        ],
        || finish(w).map(drop),
    )?);

    steps.push(measure(
        &probe,
        format!("TCP: {TCP_CONNS} connections pod A → pod B, 1 MiB each (GSO on)"),
        vec![
            // Listener and client are created; listener, accepted and client sockets released.
            ("podnet_sock_create", 2 * TCP_CONNS),
            ("podnet_sock_release", 3 * TCP_CONNS),
        ],
        || {
            for i in 0..TCP_CONNS {
                let port = 9100 + i;
                let srv = workload(
                    &format!("tcp-server --bind {ip_b}:{port} --reply 0 --expect {TCP_BYTES}"),
                    Some(&pp.nb),
                    &cb,
                )?;
                let cli = workload(
                    &format!("tcp-client --to {ip_b}:{port} --bytes {TCP_BYTES} --expect 0"),
                    Some(&pp.na),
                    &ca,
                )?;
                let mut srv = srv;
                srv.go()?;
                finish(cli)?;
                let got = srv.result()?["received"].as_u64().unwrap_or(0);
                srv.release()?;
                ensure!(got == TCP_BYTES, "tcp-server received {got} of {TCP_BYTES}");
            }
            Ok(())
        },
    )?);

    let open_job = format!("open --path /dev/null --count {OPENS_N} --missing {MISSING_N}");
    let open_caused = vec![
        ("podnet_open_enter", OPENS_N + MISSING_N),
        ("podnet_open_exit", OPENS_N + MISSING_N),
    ];
    let w = workload(&open_job, None, &ca)?;
    steps.push(measure(
        &probe,
        format!(
            "openat in pod A's registered container (depth {}): {} opens + {} failing",
            depth_of(&ca),
            thousands(OPENS_N),
            thousands(MISSING_N)
        ),
        open_caused.clone(),
        || finish(w).map(drop),
    )?);
    let w = workload(&open_job, None, &late_dir)?;
    steps.push(measure(
        &probe,
        format!(
            "openat in a container of pod A started after attach (depth {}, not registered: \
             walks up to the pod)",
            depth_of(&late_dir)
        ),
        open_caused.clone(),
        || finish(w).map(drop),
    )?);
    steps.push(measure(
        &probe,
        format!(
            "openat outside any pod: this process (cgroup depth {own_depth}), {} opens",
            thousands(OPENS_N)
        ),
        vec![
            ("podnet_open_enter", OPENS_N),
            ("podnet_open_exit", OPENS_N),
        ],
        || {
            for _ in 0..OPENS_N {
                drop(fs::File::open("/dev/null")?);
            }
            Ok(())
        },
    )?);
    for (depth, dir) in &outside {
        let w = workload(&open_job, None, dir)?;
        steps.push(measure(
            &probe,
            format!("openat outside any pod, cgroup depth {depth}: same opens"),
            open_caused.clone(),
            || finish(w).map(drop),
        )?);
    }
    drop(stats_on);
    drop(probe);

    let mut md = String::new();
    writeln!(
        md,
        "\n## 1. Cost per event of each BPF program\n\n\
         `kernel.bpf_stats_enabled=1` while the loads ran (restored afterwards); each row is the \
         change of `run_cnt` and `run_time_ns` in `/proc/self/fdinfo/<prog fd>` over one load. \
         The object is podnet's embedded one, attached as `Tracker` attaches it, to two sandbox \
         pods (A: systemd/containerd layout, B: cgroupfs) in two network namespaces joined by a \
         veth. *Caused* is what the load itself did; the cgroup programs see only the pods, so \
         their runs equal it; the file-open tracepoints see the whole node, so their runs also \
         include every other process's opens meanwhile. The statistics add the cost of two clock \
         reads to every run.\n"
    )?;
    writeln!(md, "| load | program | runs | caused | ns/run |")?;
    writeln!(md, "|---|---|--:|--:|--:|")?;
    for step in &steps {
        for (prog, caused) in &step.caused {
            let d = step.delta[*prog];
            writeln!(
                md,
                "| {} | `{}` | {} | {} | {:.0} |",
                step.load,
                prog,
                thousands(d.run_cnt),
                thousands(*caused),
                d.ns_per_run()
            )?;
        }
        if step.load.starts_with("TCP") {
            for prog in ["podnet_sockops", "podnet_egress", "podnet_ingress"] {
                let d = step.delta[prog];
                writeln!(
                    md,
                    "| {} | `{}` | {} | — | {:.0} |",
                    step.load,
                    prog,
                    thousands(d.run_cnt),
                    d.ns_per_run()
                )?;
            }
        }
    }
    writeln!(
        md,
        "\nUDP receiver got {} of {} datagrams.",
        thousands(udp_result.1),
        thousands(udp_result.0)
    )?;
    Ok(md)
}

/// Depth below the cgroup2 root of this process's cgroup (`0::/` is 0).
fn own_cgroup_depth() -> usize {
    fs::read_to_string("/proc/self/cgroup")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("0::"))
        .map_or(0, |p| p.split('/').filter(|c| !c.is_empty()).count())
}

/// Depth below the cgroup2 root of a cgroup directory.
fn depth_of(dir: &Path) -> usize {
    let mount = Mounts::detect()
        .ok()
        .and_then(|m| m.cgroup2)
        .unwrap_or_default();
    dir.strip_prefix(&mount)
        .map_or(0, |rel| rel.components().count())
}

// ---------------------------------------------------------------------------------------------
// 2. Throughput

/// What one helper reported.
#[derive(Debug, Clone, Copy, Default)]
struct Flow {
    /// Bytes or datagrams.
    count: u64,
    seconds: f64,
    /// On-CPU time of the helper's thread during its loop.
    cpu_ns: u64,
}

impl Flow {
    fn rate(self) -> f64 {
        self.count as f64 / self.seconds
    }
}

/// A helper process (this executable with [`HELPER_ROLE`] set).
struct Helper {
    child: Child,
    lines: Receiver<String>,
    role: &'static str,
}

impl Helper {
    fn spawn(
        role: &'static str,
        ns: &NetNs,
        cgroup: &Path,
        addr: SocketAddr,
        seconds: f64,
        size: usize,
    ) -> Result<Helper> {
        let exe = std::env::current_exe().context("finding this executable")?;
        let mut child = Command::new(exe)
            .env(HELPER_ROLE, role)
            .env(HELPER_NETNS, ns.path())
            .env(HELPER_CGROUP, cgroup)
            .env(HELPER_ADDR, addr.to_string())
            .env(HELPER_SECONDS, seconds.to_string())
            .env(HELPER_SIZE, size.to_string())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .with_context(|| format!("starting the {role} helper"))?;
        let out = child.stdout.take().expect("piped");
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Ok(Helper { child, lines, role })
    }

    fn line(&mut self, timeout: Duration) -> Result<Value> {
        let line = self
            .lines
            .recv_timeout(timeout)
            .map_err(|e| anyhow!("the {} helper said nothing ({e})", self.role))?;
        let v: Value = serde_json::from_str(&line)
            .with_context(|| format!("{} helper printed {line:?}", self.role))?;
        if let Some(e) = v.get("error") {
            bail!("{} helper failed: {e}", self.role);
        }
        Ok(v)
    }

    fn ready(mut self) -> Result<Helper> {
        let v = self.line(Duration::from_secs(10))?;
        ensure!(v["ready"] == true, "{} helper: {v}", self.role);
        Ok(self)
    }

    fn flow(mut self) -> Result<Flow> {
        let v = self.line(Duration::from_secs(30))?;
        let _ = self.child.wait();
        Ok(Flow {
            count: v["count"].as_u64().unwrap_or(0),
            seconds: v["seconds"].as_f64().unwrap_or(f64::NAN),
            cpu_ns: v["cpuNs"].as_u64().unwrap_or(0),
        })
    }
}

impl Drop for Helper {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
        }
        let _ = self.child.wait();
    }
}

/// On-CPU nanoseconds of the calling thread so far (`/proc/thread-self/schedstat`). With
/// `CONFIG_IRQ_TIME_ACCOUNTING` off (as here), softirq work done in the thread's context, such as
/// the veth receive path run on the sender's way out, is included.
fn thread_cpu_ns() -> u64 {
    fs::read_to_string("/proc/thread-self/schedstat")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

/// One measured trial: operations per second of wall time, and on-CPU ns per operation.
#[derive(Debug, Clone, Copy)]
struct Trial {
    rate: f64,
    cpu_per_op: f64,
}

/// One TCP bulk transfer pod A → pod B for `seconds`: bytes/s as the receiver saw them, and the
/// CPU time of both ends per byte.
fn tcp_flow(pp: &PodPair, port: u16, seconds: f64) -> Result<Trial> {
    let addr = SocketAddr::new(pp.veth.addr_b().into(), port);
    let sink = Helper::spawn(
        "tcp-sink",
        &pp.nb,
        &pp.b.containers[0].dir,
        addr,
        seconds,
        0,
    )?
    .ready()?;
    let source = Helper::spawn(
        "tcp-source",
        &pp.na,
        &pp.a.containers[0].dir,
        addr,
        seconds,
        0,
    )?;
    let sent = source.flow()?;
    let got = sink.flow()?;
    ensure!(
        got.count == sent.count,
        "TCP sink got {} of {} bytes",
        got.count,
        sent.count
    );
    Ok(Trial {
        rate: got.rate(),
        cpu_per_op: (sent.cpu_ns + got.cpu_ns) as f64 / got.count as f64,
    })
}

/// One UDP blast pod A → pod B for `seconds`: datagrams/s sent, CPU of both ends per datagram
/// sent, and (sent, received).
fn udp_flow(pp: &PodPair, port: u16, seconds: f64, size: usize) -> Result<(Trial, u64, u64)> {
    let addr = SocketAddr::new(pp.veth.addr_b().into(), port);
    let sink = Helper::spawn(
        "udp-sink",
        &pp.nb,
        &pp.b.containers[0].dir,
        addr,
        seconds,
        size,
    )?
    .ready()?;
    let source = Helper::spawn(
        "udp-source",
        &pp.na,
        &pp.a.containers[0].dir,
        addr,
        seconds,
        size,
    )?;
    let sent = source.flow()?;
    let got = sink.flow()?;
    let trial = Trial {
        rate: sent.rate(),
        cpu_per_op: (sent.cpu_ns + got.cpu_ns) as f64 / sent.count as f64,
    };
    Ok((trial, sent.count, got.count))
}

/// Runs `op` (which does 256 operations) in this thread for `seconds`.
fn local_loop(seconds: f64, mut op: impl FnMut() -> Result<()>) -> Result<Trial> {
    let cpu = thread_cpu_ns();
    let t = Instant::now();
    let mut n = 0u64;
    while t.elapsed().as_secs_f64() < seconds {
        op()?;
        n += 256;
    }
    let wall = t.elapsed().as_secs_f64();
    Ok(Trial {
        rate: n as f64 / wall,
        cpu_per_op: (thread_cpu_ns() - cpu) as f64 / n as f64,
    })
}

/// Opens and closes /dev/null in this process (outside any pod).
fn open_trial(seconds: f64) -> Result<Trial> {
    local_loop(seconds, || {
        for _ in 0..256 {
            drop(fs::File::open("/dev/null")?);
        }
        Ok(())
    })
}

/// getpid(2) in this process: no podnet program runs for it, but enabled syscall tracepoints
/// send every syscall on the node through the traced entry and exit path.
fn getpid_trial(seconds: f64) -> Result<Trial> {
    let mut sink = 0u64;
    let t = local_loop(seconds, || {
        for _ in 0..256 {
            sink = sink.wrapping_add(u64::from(std::process::id()));
        }
        Ok(())
    })?;
    std::hint::black_box(sink);
    Ok(t)
}

fn bench_throughput() -> Result<String> {
    const TRIALS: usize = 5;
    const SECONDS: f64 = 0.6;
    const UDP_SIZE: usize = 64;

    let load_before = fs::read_to_string("/proc/loadavg").unwrap_or_default();
    let pp = PodPair::new("bench-tp")?;
    let resolved = pp.resolved()?;
    let a_container = cgroup_id(&pp.a.containers[0].dir)?;
    // trials[load][attached]
    let mut trials: BTreeMap<&str, [Vec<Trial>; 2]> = BTreeMap::new();
    let mut counted = Vec::new();
    let mut port = 20_000u16;
    for trial in 0..TRIALS {
        // Alternate which mode goes first so slow drifts of the machine do not favour one.
        let order = if trial % 2 == 0 { [0, 1] } else { [1, 0] };
        for attached in order {
            let tracker = if attached == 1 {
                Some(attached_tracker(&resolved)?)
            } else {
                None
            };
            let mut push = |load, t| trials.entry(load).or_default()[attached].push(t);
            pp.veth.set_gso_max_segs(65535)?;
            port += 1;
            push("tcp-gso", tcp_flow(&pp, port, SECONDS)?);
            pp.veth.set_gso_max_segs(1)?;
            port += 1;
            push("tcp-nogso", tcp_flow(&pp, port, SECONDS)?);
            port += 1;
            let before = match &tracker {
                Some(t) => t.snapshot()?.get(a_container).tx_packets,
                None => 0,
            };
            let (t, sent, received) = udp_flow(&pp, port, SECONDS, UDP_SIZE)?;
            push("udp", t);
            if let Some(t) = &tracker {
                let tx = t.snapshot()?.get(a_container).tx_packets - before;
                counted.push((sent, received, tx));
            }
            push("open", open_trial(SECONDS)?);
            push("getpid", getpid_trial(SECONDS)?);
        }
    }
    let load_after = fs::read_to_string("/proc/loadavg").unwrap_or_default();

    let mut md = String::new();
    writeln!(
        md,
        "\n## 2. Throughput with and without podnet attached\n\n\
         Pod A → pod B over a veth between two network namespaces, in helper processes that \
         joined the pods' container cgroups; TCP rates are what the receiver got, UDP rates \
         what the sender sent. The `openat` and `getpid` rows are this benchmark process (in no \
         pod) opening and closing /dev/null (every file-open tracepoint run sees it) and making \
         a syscall no podnet program handles (enabled syscall tracepoints still route every \
         syscall through the traced path). *Attached* = a `Tracker` as `podnet stats` makes it \
         (capacity 1024 pods, file tracepoints, both pods followed); *detached* = nothing \
         loaded. {TRIALS} trials of {SECONDS} s per mode and load, modes alternating; medians. \
         *CPU/op* is on-CPU time (`/proc/thread-self/schedstat`) of the looping threads — \
         sender and receiver for TCP and UDP, softirq work done in their context included — per \
         MiB, datagram or call: unlike the rates, it barely moves when other processes compete \
         for the CPUs. Load average before/after: {} / {}.\n",
        load_before
            .split_whitespace()
            .take(3)
            .collect::<Vec<_>>()
            .join(" "),
        load_after
            .split_whitespace()
            .take(3)
            .collect::<Vec<_>>()
            .join(" "),
    )?;
    writeln!(
        md,
        "| load | rate detached | rate attached | ratio | CPU/op detached | CPU/op attached | \
         CPU/op added |"
    )?;
    writeln!(md, "|---|--:|--:|--:|--:|--:|--:|")?;
    let rows = [
        (
            "tcp-gso",
            "TCP bulk, GSO on (kernel default)",
            ("Gbit/s", 8e-9),
            ("µs/MiB", 1e-3 * 1_048_576.0),
        ),
        (
            "tcp-nogso",
            "TCP bulk, GSO off (one skb per segment: worst case)",
            ("Gbit/s", 8e-9),
            ("µs/MiB", 1e-3 * 1_048_576.0),
        ),
        ("udp", "UDP, 64 B datagrams", ("kpps", 1e-3), ("ns", 1.0)),
        (
            "open",
            "`openat` + `close` of /dev/null outside any pod",
            ("k/s", 1e-3),
            ("ns", 1.0),
        ),
        (
            "getpid",
            "`getpid` outside any pod",
            ("M/s", 1e-6),
            ("ns", 1.0),
        ),
    ];
    let mut raw = String::new();
    for (load, label, (unit, scale), (cpu_unit, cpu_scale)) in rows {
        let [off, on] = &trials[load];
        let rate = |v: &[Trial]| median(v.iter().map(|t| t.rate).collect());
        let cpu = |v: &[Trial]| median(v.iter().map(|t| t.cpu_per_op).collect());
        let (r_off, r_on, c_off, c_on) = (rate(off), rate(on), cpu(off), cpu(on));
        writeln!(
            md,
            "| {label} | {:.2} {unit} | {:.2} {unit} | {:.3} | {:.0} {cpu_unit} | {:.0} {cpu_unit} \
             | {:+.0} {cpu_unit} ({:+.1} %) |",
            r_off * scale,
            r_on * scale,
            r_on / r_off,
            c_off * cpu_scale,
            c_on * cpu_scale,
            (c_on - c_off) * cpu_scale,
            (c_on / c_off - 1.0) * 100.0
        )?;
        let list = |v: &[Trial]| {
            v.iter()
                .map(|t| format!("{:.2}", t.rate * scale))
                .collect::<Vec<_>>()
                .join(", ")
        };
        writeln!(
            raw,
            "- {label}, rates of each trial ({unit}): detached {}; attached {}",
            list(off),
            list(on)
        )?;
    }
    writeln!(md, "\n{raw}")?;
    for (sent, received, tx) in counted {
        writeln!(
            md,
            "- attached UDP trial: {} datagrams sent, {} received, podnet counted {} tx packets \
             for pod A's container{}",
            thousands(sent),
            thousands(received),
            thousands(tx),
            if tx == sent {
                " (exact)"
            } else {
                " (MISMATCH)"
            }
        )?;
    }
    Ok(md)
}

// ---------------------------------------------------------------------------------------------
// 3. Map reads

fn bench_maps() -> Result<String> {
    const PODS: usize = 10;
    let mut md = String::new();
    writeln!(
        md,
        "\n## 3. Reading the counters map\n\n\
         {PODS} sandbox pods whose container directories add up to N registered cgroups, \
         followed by a `Tracker` whose counters map is sized for exactly N \
         (`--max-pods` N/8). `snapshot()` is what `podnet stats` does each interval (one batch \
         lookup, per-CPU sums, the misses map). The two other columns read a second copy of the \
         map holding the same N keys: batch lookup plus sums, and key iteration \
         (`BPF_MAP_GET_NEXT_KEY`) plus one lookup per key plus sums. {} possible CPUs. \
         *Registering N* is the `follow()` that inserted the N zeroed entries (10 pods' links \
         included); *ENOMEM retried* counts inserts that failed with ENOMEM and were retried \
         (in `follow()` or in filling the copy), a transient failure of the kernel's per-CPU \
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
            let s = tracker.snapshot()?;
            snap.push(ms(t.elapsed()));
            ensure!(
                s.counters.len() == n,
                "snapshot read {} of {n}",
                s.counters.len()
            );
        }
        drop(tracker);

        let copy = load_object(u32::try_from(n)?)?;
        let map = copy.map("counters")?;
        let mut copy_enomem = 0;
        for id in &ids {
            // Same transient ENOMEM as above: retry after a moment.
            let mut tries = 0;
            while let Err(e) = register(map, *id) {
                let enomem = e
                    .downcast_ref::<podnet_loader::Error>()
                    .and_then(podnet_loader::Error::raw_os_error)
                    == Some(libc::ENOMEM);
                ensure!(enomem && tries < 100, "{e:#}");
                copy_enomem += 1;
                tries += 1;
                std::thread::sleep(Duration::from_micros(100));
            }
        }
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
            enomem + copy_enomem
        )?;
    }
    Ok(md)
}

// ---------------------------------------------------------------------------------------------
// 4. Attach and detach

fn bench_attach() -> Result<String> {
    let mut md = String::new();
    writeln!(
        md,
        "\n## 4. Attach and detach time\n\n\
         N sandbox pods with one container each (all kubelet layouts and QoS classes mixed). \
         *Load* is `Tracker::load(1024)` (the object into the kernel), *tracepoints* \
         `attach_file_tracepoints()`, *follow* the first `follow()` (5 cgroup links per pod, \
         pod and container registered), *refresh* a second `follow()` with the same pods (what \
         `--watch` does every 10 s), *detach pods* `follow(&[])` (every pod's links closed and \
         its cgroups unregistered: what happens to pods that are gone), *unload* dropping the \
         tracker afterwards (tracepoint links, programs, maps). *Scan + resolve* is the cgroup \
         walk and matching that precedes `follow()`.\n"
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
        let mut tracker = Tracker::load(1024)?;
        let load = t.elapsed();
        let t = Instant::now();
        tracker.attach_file_tracepoints()?;
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
    let tracepoint_links = OPEN_SYSCALLS
        .iter()
        .map(|sc| {
            Ok(["enter", "exit"]
                .iter()
                .filter(|ph| {
                    tracepoint_exists("syscalls", &format!("sys_{ph}_{sc}")).unwrap_or(false)
                })
                .count())
        })
        .sum::<Result<usize>>()?;
    let (mut bare, mut with_tps) = (Vec::new(), Vec::new());
    for _ in 0..3 {
        let tracker = Tracker::load(1024)?;
        let t = Instant::now();
        drop(tracker);
        bare.push(ms(t.elapsed()));
        let mut tracker = Tracker::load(1024)?;
        tracker.attach_file_tracepoints()?;
        let t = Instant::now();
        drop(tracker);
        with_tps.push(ms(t.elapsed()));
    }
    // The same links closed from one thread each at once, to see whether the waits overlap.
    let mut parallel = Vec::new();
    for _ in 0..3 {
        let object = load_object(64)?;
        let links = tracepoint_links_of(&object)?;
        let t = Instant::now();
        std::thread::scope(|scope| {
            for link in links {
                scope.spawn(move || drop(link));
            }
        });
        parallel.push(ms(t.elapsed()));
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

// ---------------------------------------------------------------------------------------------
// 5. Peak RSS

/// `VmHWM` of a live process in KiB.
fn vm_hwm_kib(pid: u32) -> Option<u64> {
    fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()?
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// Runs `cmd` to completion with stdout collected; polls `VmHWM` every millisecond and returns
/// the last value seen (the high-water mark only grows, so that is the peak but for the last
/// millisecond of the process's life).
fn run_polling_hwm(cmd: &mut Command) -> Result<(String, u64)> {
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .context("starting podnet")?;
    let mut out = child.stdout.take().expect("piped");
    let mut err = child.stderr.take().expect("piped");
    let reader = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = out.read_to_string(&mut s);
        s
    });
    let err_reader = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = err.read_to_string(&mut s);
        s
    });
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut hwm = 0;
    let status = loop {
        if let Some(h) = vm_hwm_kib(child.id()) {
            hwm = h;
        }
        if let Some(st) = child.try_wait()? {
            break st;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            bail!("podnet did not exit within 60 s");
        }
        std::thread::sleep(Duration::from_millis(1));
    };
    let stdout = reader.join().unwrap_or_default();
    let stderr = err_reader.join().unwrap_or_default();
    ensure!(status.success(), "podnet failed ({status}): {stderr}");
    Ok((stdout, hwm))
}

fn bench_rss() -> Result<String> {
    let bin = PathBuf::from(env!("CARGO_BIN_EXE_podnet"));
    let gnu_time = Path::new("/usr/bin/time");
    let mut md = String::new();
    writeln!(
        md,
        "\n## 5. Peak memory of `podnet stats`\n\n\
         The release binary, one shot: `podnet stats --pods-from <list> --node … -o json \
         --interval 1s` over N sandbox pods with one container each (all layouts and QoS \
         classes); every run listed all N pods. *VmHWM* is the last `/proc/<pid>/status` value, \
         polled every millisecond until the process exits; *max RSS* is GNU time's `%M` \
         (getrusage) of a second, identical run. The 100-pod row is the target; the others show \
         how memory grows with pods. *Wall time* is start to exit of the first run (the \
         interval is 1 s).\n"
    )?;
    writeln!(
        md,
        "| pods | VmHWM | max RSS (GNU time) | wall time of the run |"
    )?;
    writeln!(md, "|--:|--:|--:|--:|")?;
    for pods_n in [10usize, 100, 500] {
        let tree = CgroupTree::new("bench-rss")?;
        let layouts = Layout::all();
        let mut items = Vec::new();
        for i in 0..pods_n {
            let pod = SandboxPod::create(
                &tree,
                layouts[i % layouts.len()].clone(),
                &new_uid(),
                Qos::ALL[i % 3],
                &[("app", &new_container_id())],
            )?;
            items.push(pod.pod_json("bench", &format!("pod-{i}"), NODE, &[("app", "bench")]));
        }
        let list = tempfile::NamedTempFile::new()?;
        fs::write(
            list.path(),
            json!({"apiVersion": "v1", "kind": "List", "items": items}).to_string(),
        )?;
        let args = |cmd: &mut Command| {
            cmd.arg("stats").arg("--pods-from").arg(list.path()).args([
                "--node",
                NODE,
                "-o",
                "json",
                "--interval",
                "1s",
            ]);
        };

        let mut cmd = Command::new(&bin);
        args(&mut cmd);
        let t = Instant::now();
        let (out, hwm) = run_polling_hwm(&mut cmd)?;
        let wall = t.elapsed();
        let doc: Value = serde_json::from_str(&out).context("podnet's JSON output")?;
        let shown = doc["items"].as_array().map_or(0, Vec::len);
        ensure!(shown == pods_n, "podnet reported {shown} of {pods_n} pods");

        let maxrss = if gnu_time.is_file() {
            let sink = tempfile::NamedTempFile::new()?;
            let mut cmd = Command::new(gnu_time);
            cmd.args(["-f", "%M", "-o"]).arg(sink.path()).arg(&bin);
            args(&mut cmd);
            run_polling_hwm(&mut cmd)?;
            let kib: u64 = fs::read_to_string(sink.path())?
                .lines()
                .last()
                .and_then(|l| l.trim().parse().ok())
                .ok_or_else(|| anyhow!("/usr/bin/time printed no maximum RSS"))?;
            format!("{:.1} MiB", kib as f64 / 1024.0)
        } else {
            "— (/usr/bin/time not installed: `apt-get install time`)".to_string()
        };
        writeln!(
            md,
            "| {pods_n} | {:.1} MiB | {maxrss} | {:.2} s |",
            hwm as f64 / 1024.0,
            wall.as_secs_f64()
        )?;
    }
    Ok(md)
}

// ---------------------------------------------------------------------------------------------

/// The throughput loops, run in a separate process that joins a pod's container cgroup (before
/// opening any socket) and a network namespace. Prints `{"ready":true}` when its socket is
/// bound (sinks), then one result line `{"count":N,"seconds":S,"cpuNs":C}` (bytes for TCP,
/// datagrams for UDP; C the thread's on-CPU time during the loop), or `{"error":"..."}`.
mod helper {
    use super::*;
    use std::io::ErrorKind;
    use std::net::{TcpListener, TcpStream, UdpSocket};

    pub fn main(role: &str) -> ExitCode {
        match run(role) {
            Ok(v) => {
                println!("{v}");
                ExitCode::SUCCESS
            }
            Err(e) => {
                println!("{}", json!({"error": format!("{e:#}")}));
                ExitCode::FAILURE
            }
        }
    }

    fn env(name: &str) -> Result<String> {
        std::env::var(name).with_context(|| format!("{name} is not set"))
    }

    fn say(v: Value) {
        println!("{v}");
        let _ = std::io::stdout().flush();
    }

    fn run(role: &str) -> Result<Value> {
        let cgroup = PathBuf::from(env(HELPER_CGROUP)?);
        let procs = cgroup.join("cgroup.procs");
        fs::write(&procs, std::process::id().to_string())
            .with_context(|| format!("joining {}", procs.display()))?;
        let netns = env(HELPER_NETNS)?;
        let ns = fs::File::open(&netns).with_context(|| format!("opening {netns}"))?;
        nix::sched::setns(&ns, nix::sched::CloneFlags::CLONE_NEWNET)
            .with_context(|| format!("setns into {netns}"))?;
        drop(ns);
        let addr: SocketAddr = env(HELPER_ADDR)?.parse()?;
        let seconds: f64 = env(HELPER_SECONDS)?.parse()?;
        let size: usize = env(HELPER_SIZE)?.parse()?;
        let duration = Duration::from_secs_f64(seconds);
        let limit = Duration::from_secs(20);
        match role {
            "tcp-sink" => {
                let listener = TcpListener::bind(addr).context("bind")?;
                listener.set_nonblocking(true)?;
                say(json!({"ready": true}));
                let deadline = Instant::now() + limit;
                let mut stream = loop {
                    match listener.accept() {
                        Ok((s, _)) => break s,
                        Err(e) if e.kind() == ErrorKind::WouldBlock => {
                            ensure!(Instant::now() < deadline, "no connection within {limit:?}");
                            std::thread::sleep(Duration::from_millis(1));
                        }
                        Err(e) => return Err(e).context("accept"),
                    }
                };
                stream.set_nonblocking(false)?;
                stream.set_read_timeout(Some(limit))?;
                let cpu = thread_cpu_ns();
                let mut buf = vec![0u8; 1 << 20];
                let mut got = 0u64;
                let mut first = None;
                loop {
                    let n = stream.read(&mut buf).context("read")?;
                    if n == 0 {
                        break;
                    }
                    first.get_or_insert_with(Instant::now);
                    got += n as u64;
                }
                let secs = first.map_or(f64::NAN, |t| t.elapsed().as_secs_f64());
                Ok(json!({"count": got, "seconds": secs, "cpuNs": thread_cpu_ns() - cpu}))
            }
            "tcp-source" => {
                let mut stream = TcpStream::connect_timeout(&addr, limit).context("connect")?;
                let buf = vec![0x3cu8; 1 << 20];
                let cpu = thread_cpu_ns();
                let t = Instant::now();
                let mut sent = 0u64;
                while t.elapsed() < duration {
                    stream.write_all(&buf).context("write")?;
                    sent += buf.len() as u64;
                }
                stream.shutdown(std::net::Shutdown::Write)?;
                // Wait for the peer's close so every byte was delivered before reporting.
                stream.set_read_timeout(Some(limit))?;
                let _ = stream.read(&mut [0u8; 1]);
                Ok(json!({"count": sent, "seconds": t.elapsed().as_secs_f64(),
                          "cpuNs": thread_cpu_ns() - cpu}))
            }
            "udp-sink" => {
                let sock = UdpSocket::bind(addr).context("bind")?;
                say(json!({"ready": true}));
                let mut buf = vec![0u8; 65_536];
                let cpu = thread_cpu_ns();
                let start = Instant::now();
                let mut got = 0u64;
                let (mut first, mut last) = (None, None);
                // Until 300 ms without a datagram after the first, or the time limit.
                sock.set_read_timeout(Some(Duration::from_millis(300)))?;
                loop {
                    match sock.recv(&mut buf) {
                        Ok(_) => {
                            got += 1;
                            let now = Instant::now();
                            first.get_or_insert(now);
                            last = Some(now);
                        }
                        Err(e)
                            if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) =>
                        {
                            if got > 0 || start.elapsed() > limit {
                                break;
                            }
                        }
                        Err(e) => return Err(e).context("recv"),
                    }
                }
                let secs = match (first, last) {
                    (Some(f), Some(l)) => (l - f).as_secs_f64(),
                    _ => f64::NAN,
                };
                Ok(json!({"count": got, "seconds": secs, "cpuNs": thread_cpu_ns() - cpu}))
            }
            "udp-source" => {
                let sock = UdpSocket::bind("0.0.0.0:0").context("socket")?;
                sock.connect(addr).context("connect")?;
                let buf = vec![0x5au8; size];
                let cpu = thread_cpu_ns();
                let t = Instant::now();
                let mut sent = 0u64;
                // Check the clock every 256 datagrams.
                while t.elapsed() < duration {
                    for _ in 0..256 {
                        if sock.send(&buf).is_ok() {
                            sent += 1;
                        }
                    }
                }
                Ok(json!({"count": sent, "seconds": t.elapsed().as_secs_f64(),
                          "cpuNs": thread_cpu_ns() - cpu}))
            }
            other => bail!("unknown helper role {other}"),
        }
    }
}
