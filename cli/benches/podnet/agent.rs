//! Section `agent`: the release `podnet agent` (the DaemonSet mode) following 110 and 1000
//! sandbox pods listed and watched through the stub API server. Per pod count: resident memory
//! after the first sync and a few scrapes, CPU per `/metrics` scrape (the agent's idle CPU over the
//! same wall time subtracted), time from a pod's ADDED event to its first counted packet, and the
//! API requests the agent makes in steady state, after a dropped watch and after a forced relist
//! (410 Gone), with the steady rate extrapolated to an hour.

use std::fmt::Write as _;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};

use podnet_testing::apiserver::{pod_json, RecordedRequest, StubApiServer};
use podnet_testing::sandbox::{
    new_container_id, new_uid, CgroupTree, Layout, NetNs, Qos, SandboxPod, Veth, Workload,
};
use podnet_testing::scrape::pod_metric as metric;

use crate::common::{median, ms, pod_objects, thousands, NODE};

/// Pod counts: a default kubelet's `maxPods`, and a dense node.
const PODS: [usize; 2] = [110, 1000];
/// Scrapes served before memory is read ("synced and served a few scrapes").
const WARM_SCRAPES: usize = 5;
/// Back-to-back scrapes whose CPU is divided among them.
const SCRAPES: usize = 50;
/// ADDED → first counted packet, repetitions per pod count.
const ADDS: usize = 10;
/// The steady-state window (no pod changes, no scrapes): idle CPU and API requests.
/// `PODNET_BENCH_AGENT_SECS` overrides it.
const STEADY_SECS: u64 = 60;
/// How long the agent gets to answer a dropped watch or a relist with its new requests.
const RECONNECT_WINDOW: Duration = Duration::from_secs(5);
/// The namespace of the benchmark's pods.
const NS: &str = "bench";
const TX_PACKETS: &str = "podnet_pod_network_transmit_packets_total";

/// What one pod count measured.
struct Row {
    pods: usize,
    ready: Duration,
    rss_kib: u64,
    hwm_kib: u64,
    hwm_end_kib: u64,
    metrics_bytes: usize,
    scrape_wall: Vec<f64>,
    scrapes_cpu_s: f64,
    scrapes_wall_s: f64,
    idle_cpu_s: f64,
    idle_wall_s: f64,
    /// ADDED → podnet's egress program attached to the pod's cgroup, ms; `None`: not within
    /// the bound.
    attached: Vec<Option<f64>>,
    /// ADDED → first counted packet in /metrics, ms; `None`: not within the bound.
    counted: Vec<Option<f64>>,
    api: ApiCounts,
}

/// Requests the stub served in each window.
#[derive(Default)]
struct ApiCounts {
    /// The start: discovery, the first list, the first watch.
    start: Split,
    steady: Split,
    /// `timeoutSeconds` of the agent's first watch (the server ends the watch after it and the
    /// agent opens a new one).
    watch_timeout_s: Option<u64>,
    dropped: Split,
    relist: Split,
    /// Pods tracked after the relist.
    after_relist: Option<u64>,
}

#[derive(Default, Clone, Copy)]
struct Split {
    list: usize,
    watch: usize,
    other: usize,
}

impl Split {
    fn of(reqs: &[RecordedRequest]) -> Split {
        let mut s = Split::default();
        for r in reqs {
            let watch = matches!(
                r.query_value("watch"),
                Some("1" | "t" | "T" | "true" | "TRUE" | "True")
            ) || r.path.contains("/watch/");
            if watch {
                s.watch += 1;
            } else if r.path.ends_with("/pods") {
                s.list += 1;
            } else {
                s.other += 1;
            }
        }
        s
    }

    fn total(self) -> usize {
        self.list + self.watch + self.other
    }

    fn text(self) -> String {
        let mut t = format!("{} ({} list, {} watch", self.total(), self.list, self.watch);
        if self.other > 0 {
            write!(t, ", {} other", self.other).expect("writing to a String");
        }
        t.push(')');
        t
    }
}

/// A pin directory of the benchmark's own on bpffs, uninstalled with `podnet agent --uninstall`
/// on drop (everything pinned there detaches), or removed when that fails.
struct Pins {
    dir: PathBuf,
    bin: PathBuf,
}

impl Drop for Pins {
    fn drop(&mut self) {
        if !self.dir.exists() {
            return;
        }
        let out = Command::new(&self.bin)
            .args(["agent", "--uninstall", "--pin-dir"])
            .arg(&self.dir)
            .output();
        if !out.as_ref().is_ok_and(|o| o.status.success()) {
            eprintln!(
                "bench agent: podnet agent --uninstall --pin-dir {}: {out:?}",
                self.dir.display()
            );
            let _ = fs::remove_dir_all(&self.dir);
        }
    }
}

/// The running agent; killed on drop (SIGTERM first: a clean exit keeps nothing but the pins,
/// which [`Pins`] removes).
struct AgentProc {
    child: Child,
    port: u16,
    log: tempfile::NamedTempFile,
}

impl AgentProc {
    fn pid(&self) -> u32 {
        self.child.id()
    }

    fn log_tail(&self) -> String {
        let text = fs::read_to_string(self.log.path()).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(20)..].join("\n")
    }

    fn get(&self, path: &str) -> Result<(u16, String)> {
        Ok(podnet_testing::scrape::get(self.port, path, None)?)
    }

    fn metrics(&self) -> Result<String> {
        let (status, body) = self.get(podnet::agent::http::METRICS)?;
        if status != 200 {
            bail!("/metrics answered {status}: {body}");
        }
        Ok(body)
    }

    fn alive(&mut self) -> Result<()> {
        if let Some(st) = self.child.try_wait()? {
            bail!("the agent exited ({st}):\n{}", self.log_tail());
        }
        Ok(())
    }
}

impl Drop for AgentProc {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let pid = nix::unistd::Pid::from_raw(self.child.id() as i32);
            let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
            let deadline = Instant::now() + Duration::from_secs(10);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = self.child.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = self.child.kill();
        }
        let _ = self.child.wait();
    }
}

/// `podnet_tracked_pods` in a /metrics text.
fn tracked(text: &str) -> Option<u64> {
    text.lines()
        .find_map(|l| l.strip_prefix("podnet_tracked_pods "))
        .and_then(|v| v.trim().parse().ok())
}

/// A `kB` field of `/proc/<pid>/status`.
fn status_kib(pid: u32, key: &str) -> Result<u64> {
    let text = fs::read_to_string(format!("/proc/{pid}/status"))?;
    text.lines()
        .find_map(|l| l.strip_prefix(key))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .ok_or_else(|| anyhow!("no {key} in /proc/{pid}/status"))
}

/// utime + stime of a process (all its threads), in seconds.
fn cpu_s(pid: u32) -> Result<f64> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat"))?;
    let rest = stat
        .rfind(')')
        .map(|i| &stat[i + 2..])
        .ok_or_else(|| anyhow!("unreadable /proc/{pid}/stat"))?;
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks: u64 = f[11].parse::<u64>()? + f[12].parse::<u64>()?;
    Ok(ticks as f64 / clock_ticks())
}

fn clock_ticks() -> f64 {
    nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK)
        .ok()
        .flatten()
        .unwrap_or(100) as f64
}

fn free_port() -> Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

fn steady_window() -> Duration {
    let secs = std::env::var("PODNET_BENCH_AGENT_SECS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(STEADY_SECS);
    Duration::from_secs(secs)
}

fn load_average() -> String {
    fs::read_to_string("/proc/loadavg")
        .unwrap_or_default()
        .split_whitespace()
        .take(3)
        .collect::<Vec<_>>()
        .join(" ")
}

/// Everything one pod count needs; field order is drop order: the agent stops, its pins are
/// uninstalled, the namespaces go, the stub stops, the cgroup tree is removed.
struct Setup {
    agent: AgentProc,
    _pins: Pins,
    veth: Veth,
    na: NetNs,
    _nb: NetNs,
    api: StubApiServer,
    _kubeconfig: tempfile::NamedTempFile,
    tree: CgroupTree,
}

/// Runs the section; returns its part of the report.
pub fn bench() -> Result<String> {
    let bin = PathBuf::from(env!("CARGO_BIN_EXE_podnet"));
    let steady = steady_window();
    let load_before = load_average();
    let mut rows = Vec::new();
    for pods in PODS {
        let t = Instant::now();
        rows.push(measure(&bin, pods, steady).with_context(|| format!("{pods} pods"))?);
        eprintln!(
            "[agent: {pods} pods measured in {:.1} s]",
            t.elapsed().as_secs_f64()
        );
    }
    report(&rows, steady, &load_before)
}

fn measure(bin: &Path, pods_n: usize, steady: Duration) -> Result<Row> {
    // The pods: one container each, every kubelet layout and QoS class.
    let tree = CgroupTree::new("bench-agent")?;
    let created = Instant::now();
    let items = pod_objects(&tree, pods_n, NS)?;
    eprintln!(
        "[agent: {pods_n} sandbox pods created in {:.2} s]",
        created.elapsed().as_secs_f64()
    );
    let api = StubApiServer::start(items);
    let kubeconfig = tempfile::NamedTempFile::new()?;
    api.write_kubeconfig(kubeconfig.path(), None)?;
    let na = NetNs::new("bag-a")?;
    let nb = NetNs::new("bag-b")?;
    let veth = Veth::between(&na, &nb)?;
    let pins = Pins {
        dir: PathBuf::from(format!(
            "/sys/fs/bpf/podnet-bench-agent-{}-{pods_n}",
            std::process::id()
        )),
        bin: bin.to_path_buf(),
    };
    let port = free_port()?;
    let log = tempfile::NamedTempFile::new()?;
    let started = Instant::now();
    let child = Command::new(bin)
        .args(["agent", "--node", NODE, "--listen"])
        .arg(format!("127.0.0.1:{port}"))
        .arg("--kubeconfig")
        .arg(kubeconfig.path())
        .arg("--pin-dir")
        .arg(&pins.dir)
        .env("RUST_LOG", "podnet=info")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log.reopen()?)
        .spawn()
        .context("starting podnet agent")?;
    let mut s = Setup {
        agent: AgentProc { child, port, log },
        _pins: pins,
        veth,
        na,
        _nb: nb,
        api,
        _kubeconfig: kubeconfig,
        tree,
    };

    // Synced: /readyz answers 200 and every pod is tracked.
    let deadline = started + Duration::from_secs(120);
    loop {
        s.agent.alive()?;
        if let Ok((200, _)) = s.agent.get(podnet::agent::http::READYZ) {
            if let Ok(text) = s.agent.metrics() {
                if tracked(&text) == Some(pods_n as u64) {
                    break;
                }
            }
        }
        if Instant::now() > deadline {
            bail!(
                "the agent did not track {pods_n} pods within 120 s:\n{}",
                s.agent.log_tail()
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let ready = started.elapsed();
    let pid = s.agent.pid();
    let at_start = s.api.requests().len();

    let mut metrics_bytes = 0;
    for _ in 0..WARM_SCRAPES {
        metrics_bytes = s.agent.metrics()?.len();
    }
    let rss_kib = status_kib(pid, "VmRSS:")?;
    let hwm_kib = status_kib(pid, "VmHWM:")?;

    // Steady state: no scrapes, no pod changes. Idle CPU and the API requests made.
    let (c0, t0) = (cpu_s(pid)?, Instant::now());
    std::thread::sleep(steady);
    let (idle_cpu_s, idle_wall_s) = (cpu_s(pid)? - c0, t0.elapsed().as_secs_f64());
    s.agent.alive()?;
    let reqs = s.api.requests();
    let mut api = ApiCounts {
        start: Split::of(&reqs[..at_start]),
        steady: Split::of(&reqs[at_start..]),
        watch_timeout_s: reqs
            .iter()
            .find(|r| Split::of(std::slice::from_ref(r)).watch == 1)
            .and_then(|r| r.query_value("timeoutSeconds")?.parse().ok()),
        ..ApiCounts::default()
    };

    // CPU per scrape: K scrapes back to back.
    let mut scrape_wall = Vec::with_capacity(SCRAPES);
    let (c0, t0) = (cpu_s(pid)?, Instant::now());
    for _ in 0..SCRAPES {
        let t = Instant::now();
        metrics_bytes = s.agent.metrics()?.len();
        scrape_wall.push(ms(t.elapsed()));
    }
    let (scrapes_cpu_s, scrapes_wall_s) = (cpu_s(pid)? - c0, t0.elapsed().as_secs_f64());

    let (attached, counted) = added_to_first_packet(&mut s, pods_n)?;

    // A dropped watch: the agent resumes from its resourceVersion (one watch request).
    let before = s.api.requests().len();
    s.api.drop_watches();
    std::thread::sleep(RECONNECT_WINDOW);
    api.dropped = Split::of(&s.api.requests()[before..]);

    // A forced relist: a change the agent's watch does not match (a pod of another node) moves
    // the latest resourceVersion past the agent's, the history is compacted, and the watch is
    // dropped: the agent's resumed watch gets 410 Gone and it lists again.
    s.api.add_pod(pod_json(
        NS,
        "elsewhere",
        &new_uid(),
        "another-node",
        "Running",
        "BestEffort",
        false,
        &[],
        &[("app", &format!("containerd://{}", new_container_id()))],
    ));
    s.api.compact();
    let before = s.api.requests().len();
    s.api.drop_watches();
    std::thread::sleep(RECONNECT_WINDOW);
    api.relist = Split::of(&s.api.requests()[before..]);
    api.after_relist = tracked(&s.agent.metrics()?);
    s.agent.alive()?;
    let hwm_end_kib = status_kib(pid, "VmHWM:")?;

    Ok(Row {
        pods: pods_n,
        ready,
        rss_kib,
        hwm_kib,
        hwm_end_kib,
        metrics_bytes,
        scrape_wall,
        scrapes_cpu_s,
        scrapes_wall_s,
        idle_cpu_s,
        idle_wall_s,
        attached,
        counted,
        api,
    })
}

/// [`ADDS`] times: a new pod's cgroup is created and a workload in it starts sending UDP
/// datagrams (one per millisecond, 64 bytes) over the veth into the other network namespace;
/// then the pod is added to the stub (the agent's watch gets ADDED). First the kernel is asked
/// every millisecond whether podnet's egress program is attached to the pod's cgroup
/// (BPF_PROG_QUERY, which costs the agent nothing); then /metrics is polled until the pod's tx
/// packets are above 0. The pod is deleted again (and its series awaited gone) before the next
/// one. Returns ADDED → egress program attached and ADDED → first counted packet, in ms (`None`:
/// not within 10 s).
#[allow(clippy::type_complexity)]
fn added_to_first_packet(
    s: &mut Setup,
    pods_n: usize,
) -> Result<(Vec<Option<f64>>, Vec<Option<f64>>)> {
    let to = format!("{}:9400", s.veth.addr_b());
    let bound = Duration::from_secs(10);
    let (mut attached, mut counted) = (Vec::new(), Vec::new());
    for rep in 0..ADDS {
        let pod = SandboxPod::create(
            &s.tree,
            Layout::SystemdContainerd,
            &new_uid(),
            Qos::Burstable,
            &[("app", &new_container_id())],
        )?;
        let name = format!("added-{rep}");
        let job: Vec<String> =
            format!("udp-send --to {to} --count 30000 --size 64 --interval-us 1000")
                .split_whitespace()
                .map(String::from)
                .collect();
        let mut sender = Workload::spawn_in(&job, Some(&s.na), &pod.containers[0])?;
        sender.wait_ready()?;
        sender.go()?;
        // The agent syncs every 500 ms: spread the ADDED writes over that period.
        std::thread::sleep(Duration::from_millis(20 + (rep as u64 * 53) % 500));
        let t0 = Instant::now();
        s.api
            .add_pod(pod.pod_json(NS, &name, NODE, &[("app", "added")]));
        let mut first_attached = None;
        while t0.elapsed() < bound {
            let egress = podnet_loader::query_cgroup_programs(
                &pod.dir,
                podnet_loader::AttachType::CgroupInetEgress,
            )?;
            if !egress.is_empty() {
                first_attached = Some(ms(t0.elapsed()));
                break;
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        let mut first_packet = None;
        while first_attached.is_some() && t0.elapsed() < bound {
            let text = s.agent.metrics()?;
            if metric(&text, TX_PACKETS, NS, &name).is_some_and(|v| v > 0) {
                first_packet = Some(ms(t0.elapsed()));
                break;
            }
            std::thread::sleep(Duration::from_millis(2));
        }
        attached.push(first_attached);
        counted.push(first_packet);
        drop(sender);
        s.api.delete_pod(NS, &name);
        let deadline = Instant::now() + bound;
        loop {
            let text = s.agent.metrics()?;
            if metric(&text, TX_PACKETS, NS, &name).is_none()
                && tracked(&text) == Some(pods_n as u64)
            {
                break;
            }
            if Instant::now() > deadline {
                bail!(
                    "pod {name} still followed 10 s after its DELETED:\n{}",
                    s.agent.log_tail()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        s.tree.remove(&pod.tree_rel)?;
    }
    Ok((attached, counted))
}

fn mib(kib: u64) -> String {
    format!("{:.1} MiB", kib as f64 / 1024.0)
}

fn ms_list(v: &[Option<f64>]) -> (String, String, usize) {
    let seen: Vec<f64> = v.iter().flatten().copied().collect();
    let missed = v.len() - seen.len();
    let max = seen.iter().copied().fold(f64::NAN, f64::max);
    (
        format!("{:.0} ms", median(seen.clone())),
        format!("{max:.0} ms"),
        missed,
    )
}

fn report(rows: &[Row], steady: Duration, load_before: &str) -> Result<String> {
    let mut md = String::new();
    writeln!(
        md,
        "\n## 7. `podnet agent`\n\n\
         The release binary, `podnet agent --node … --kubeconfig <stub> --pin-dir <own dir>`, \
         following N sandbox pods (one container each, all layouts and QoS classes) that the stub \
         API server lists and watches. *Synced* is start until `/readyz` is 200 and \
         `podnet_tracked_pods` is N. Memory is `VmRSS`/`VmHWM` from `/proc/<pid>/status` after \
         the sync and {WARM_SCRAPES} scrapes; *peak at end* is `VmHWM` after everything below \
         (scrapes, pod adds and deletes, a relist). CPU is utime+stime from `/proc/<pid>/stat` \
         (all threads, {:.0} Hz ticks). *Idle* is the agent over a {} s window with no scrapes \
         and no pod changes (its cgroup-tree scan and resolve, every 5 s once settled). *Per scrape* is the CPU \
         of {SCRAPES} back-to-back `/metrics` scrapes less the idle rate over their wall time, \
         divided by {SCRAPES}. Load average when the section started: {load_before}.\n",
        clock_ticks(),
        steady.as_secs()
    )?;
    writeln!(
        md,
        "| pods | synced | VmRSS | VmHWM | peak at end | /metrics | scrape wall (median) | \
         CPU/scrape | CPU/scrape, idle not subtracted | idle CPU |"
    )?;
    writeln!(md, "|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|")?;
    for r in rows {
        let idle_rate = r.idle_cpu_s / r.idle_wall_s;
        let raw = r.scrapes_cpu_s / SCRAPES as f64;
        let net = (r.scrapes_cpu_s - idle_rate * r.scrapes_wall_s) / SCRAPES as f64;
        writeln!(
            md,
            "| {} | {:.2} s | {} | {} | {} | {} KB | {:.1} ms | {:.1} ms | {:.1} ms | {:.2} % of a core |",
            r.pods,
            r.ready.as_secs_f64(),
            mib(r.rss_kib),
            mib(r.hwm_kib),
            mib(r.hwm_end_kib),
            thousands(r.metrics_bytes as u64 / 1000),
            median(r.scrape_wall.clone()),
            net * 1e3,
            raw * 1e3,
            idle_rate * 100.0,
        )?;
    }

    writeln!(
        md,
        "\n**ADDED → first counted packet.** With the agent synced, {ADDS} times: a new pod's \
         cgroup is made and a workload in its container sends a 64-byte UDP datagram every \
         millisecond over a veth into another network namespace; then the pod is added to the \
         stub (the watch delivers ADDED). *Attached* is ADDED → podnet's egress program on the \
         pod's cgroup, from BPF_PROG_QUERY every millisecond (no scrapes meanwhile); *counted* is \
         ADDED → the pod's `{TX_PACKETS}` above 0 in `/metrics`, polled from then on with 2 ms \
         between scrapes (resolution: one scrape, see the scrape wall time above). The ADDED \
         writes are spread over the agent's 500 ms sync period. Each pod is deleted, and its \
         series awaited gone, before the next.\n"
    )?;
    writeln!(
        md,
        "| pods | attached: median | max | counted: median | max | not counted within 10 s |"
    )?;
    writeln!(md, "|--:|--:|--:|--:|--:|--:|")?;
    for r in rows {
        let (am, ax, _) = ms_list(&r.attached);
        let (cm, cx, missed) = ms_list(&r.counted);
        writeln!(
            md,
            "| {} | {am} | {ax} | {cm} | {cx} | {missed} of {ADDS} |",
            r.pods
        )?;
    }
    for r in rows {
        let each: Vec<String> = r
            .attached
            .iter()
            .zip(&r.counted)
            .map(|(a, c)| {
                let f = |v: &Option<f64>| v.map_or("—".to_string(), |v| format!("{v:.0}"));
                format!("{}/{}", f(a), f(c))
            })
            .collect();
        writeln!(
            md,
            "\n{} pods, each attached/counted (ms): {}.",
            r.pods,
            each.join(", ")
        )?;
    }

    writeln!(
        md,
        "\n**API requests.** Counted by the stub server and split by kind (*list*: a pod list; \
         *watch*: `watch=true`). *Start* is everything up to the sync. *Steady* is the {} s \
         window above, extrapolated to an hour. *Dropped watch*: the stub breaks the open watch \
         mid-stream; *relist*: the history is compacted past the agent's resourceVersion and the \
         watch broken, so the resumed watch gets 410 Gone; both count what came in the {} s \
         after. The watch's own `timeoutSeconds` ends it server-side and the agent opens a new \
         one: that alone makes 3600/timeoutSeconds watch requests an hour.\n",
        steady.as_secs(),
        RECONNECT_WINDOW.as_secs()
    )?;
    writeln!(
        md,
        "| pods | start | steady, {} s | per hour (steady, extrapolated) | watch timeoutSeconds → watches/h | dropped watch | relist (tracked after) |",
        steady.as_secs()
    )?;
    writeln!(md, "|--:|--|--|--:|--|--|--|")?;
    for r in rows {
        let a = &r.api;
        let per_hour = a.steady.total() as f64 * 3600.0 / steady.as_secs_f64();
        let timeout = a.watch_timeout_s.map_or("— (none sent)".to_string(), |t| {
            format!("{t} s → {:.1}", 3600.0 / t as f64)
        });
        writeln!(
            md,
            "| {} | {} | {} | {per_hour:.0} | {timeout} | {} | {} ({}) |",
            r.pods,
            a.start.text(),
            a.steady.text(),
            a.dropped.text(),
            a.relist.text(),
            a.after_relist
                .map_or("?".into(), |n| format!("{n} pods tracked")),
        )?;
    }
    Ok(md)
}
