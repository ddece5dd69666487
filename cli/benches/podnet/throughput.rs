//! Section `throughput`: TCP bulk (GSO on and off), UDP packets/s between two sandbox pods, and
//! `openat` and `getpid` loops outside any pod, with a `Tracker` as `podnet stats` makes it
//! attached and with nothing loaded, trials alternated: rates and on-CPU time per operation.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::fs;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{self, Receiver};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, ensure, Context, Result};
use serde_json::Value;

use podnet::attach::cgroup_id;
use podnet_testing::sandbox::NetNs;

use crate::common::{attached_tracker, median, thousands, PodPair};

/// Environment variables of the helper processes (see [`crate::helper`]).
pub const HELPER_ROLE: &str = "PODNET_BENCH_HELPER";
pub const HELPER_NETNS: &str = "PODNET_BENCH_NETNS";
pub const HELPER_CGROUP: &str = "PODNET_BENCH_CGROUP";
pub const HELPER_ADDR: &str = "PODNET_BENCH_ADDR";
pub const HELPER_SECONDS: &str = "PODNET_BENCH_SECONDS";
pub const HELPER_SIZE: &str = "PODNET_BENCH_SIZE";

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
pub fn thread_cpu_ns() -> u64 {
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

/// Runs the section; returns its part of the report.
pub fn bench() -> Result<String> {
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
                Some(t) => {
                    podnet::sample::Snapshot::read(t.object())?
                        .get(a_container)
                        .tx_packets
                }
                None => 0,
            };
            let (t, sent, received) = udp_flow(&pp, port, SECONDS, UDP_SIZE)?;
            push("udp", t);
            if let Some(t) = &tracker {
                let tx = podnet::sample::Snapshot::read(t.object())?
                    .get(a_container)
                    .tx_packets
                    - before;
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
