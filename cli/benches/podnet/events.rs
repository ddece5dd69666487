//! Section `events`: the cost per event of each BPF program (ns per run, from
//! `kernel.bpf_stats_enabled` and `/proc/self/fdinfo/<prog fd>`), under known loads between two
//! sandbox pods followed by a `Tracker` as `podnet stats` makes it, and for `openat` outside any
//! pod at several cgroup depths. podnet's cgroup_skb programs are compared with their floor,
//! measured over the same packets: empty cgroup_skb programs (`bpf-src/floor.bpf.c`) attached
//! beside them on the same pod cgroups.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::fs;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};

use anyhow::{anyhow, ensure, Context, Result};

use podnet::resolve::{Mounts, ResolvedPod};
use podnet_loader::{Link, Object, ObjectSpec};
use podnet_testing::sandbox::new_container_id;

use crate::common::{attached_tracker, finish, thousands, workload, PodPair, DEFAULT_MAX_PODS};

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

/// The floor's object (`bpf-src/floor.bpf.c`, compiled by `cli/build.rs`): `floor_egress` and
/// `floor_ingress`, cgroup_skb programs that only let the packet pass. Only the benchmark has it.
const FLOOR_OBJECT: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/floor.bpf.o"));

/// Each of podnet's cgroup_skb programs with the empty program attached beside it.
const FLOOR_PAIRS: [(&str, &str); 2] = [
    ("podnet_egress", "floor_egress"),
    ("podnet_ingress", "floor_ingress"),
];

/// Issue 8's goal for podnet's skb programs: at most this many ns per run above the floor.
const FLOOR_GOAL_NS: f64 = 15.0;

/// Loads the floor's object and attaches both its programs to each pod's cgroup directory, the
/// directory `Tracker::follow` attaches podnet's programs to. cgroup links are multi-attach, so
/// every packet of a pod runs podnet's program and then the floor's. The links detach on drop.
fn attach_floor(pods: &[ResolvedPod]) -> Result<(Object, Vec<Link>)> {
    let spec = ObjectSpec::parse(FLOOR_OBJECT).context("parsing floor.bpf.o")?;
    let object = Object::load(&spec).context("loading floor.bpf.o")?;
    let mut links = Vec::new();
    for pod in pods {
        for (_, floor) in FLOOR_PAIRS {
            let link = object
                .program(floor)?
                .attach_cgroup(&pod.dir)
                .with_context(|| format!("attaching {floor} to {}", pod.dir.display()))?;
            links.push(link);
        }
    }
    Ok((object, links))
}

/// Every program's run statistics, read from the fds of the loaded objects: the programs
/// `Tracker::load` chose for this kernel, attached by the tracker itself, and the floor's.
fn program_stats(objects: &[&Object]) -> Result<BTreeMap<String, ProgStats>> {
    objects
        .iter()
        .flat_map(|o| o.programs())
        .map(|p| Ok((p.name().to_string(), ProgStats::read(p.fd().as_raw_fd())?)))
        .collect()
}

/// One measured load: the programs' deltas while it ran.
struct Step {
    load: String,
    delta: BTreeMap<String, ProgStats>,
    /// Events of each program the load itself caused, when known exactly.
    caused: Vec<(&'static str, u64)>,
}

/// Runs `load` between two reads of the program statistics of `objects`.
fn measure(
    objects: &[&Object],
    load: String,
    caused: Vec<(&'static str, u64)>,
    f: impl FnOnce() -> Result<()>,
) -> Result<Step> {
    let before = program_stats(objects)?;
    f()?;
    let after = program_stats(objects)?;
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

/// One of podnet's skb programs against the floor's program beside it, over one load.
struct AgainstFloor {
    load: String,
    podnet: (&'static str, ProgStats),
    floor: (&'static str, ProgStats),
}

/// podnet's skb programs against the floor in `step`. Fails unless each floor program ran exactly
/// as often as podnet's beside it: attached to the same cgroups, they see the same packets.
fn against_floor(step: &Step) -> Result<Vec<AgainstFloor>> {
    FLOOR_PAIRS
        .iter()
        .map(|&(podnet, floor)| {
            let (p, f) = (step.delta[podnet], step.delta[floor]);
            ensure!(
                p.run_cnt == f.run_cnt,
                "{}: {floor} ran {} times, {podnet} {} times; they are attached to the same \
                 cgroups",
                step.load,
                f.run_cnt,
                p.run_cnt
            );
            Ok(AgainstFloor {
                load: step.load.clone(),
                podnet: (podnet, p),
                floor: (floor, f),
            })
        })
        .collect()
}

/// Runs the section; returns its part of the report.
pub fn bench() -> Result<String> {
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
    // The tracker `podnet stats` makes: `Tracker::load` probes the kernel and loads the program
    // variants this kernel runs, then file tracepoints, then both pods followed.
    let pods = pp.resolved()?;
    let tracker = attached_tracker(&pods)?;
    let variant = tracker.variant().clone();
    // The floor, beside podnet's skb programs on the same pod cgroups until the loads are done.
    let (floor, floor_links) = attach_floor(&pods)?;
    let measured = [tracker.object(), &floor];
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
    let udp = measure(
        &measured,
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
    )?;
    let mut floor_rows = against_floor(&udp)?;
    steps.push(udp);
    ensure!(
        udp_result.0 == UDP_N,
        "udp-send sent {} of {UDP_N}",
        udp_result.0
    );

    let w = workload(&format!("sockets --count {SOCKETS_N}"), None, &ca)?;
    steps.push(measure(
        &measured,
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

    let tcp = measure(
        &measured,
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
    )?;
    floor_rows.extend(against_floor(&tcp)?);
    steps.push(tcp);

    let open_job = format!("open --path /dev/null --count {OPENS_N} --missing {MISSING_N}");
    let open_caused = vec![("podnet_open_exit", OPENS_N + MISSING_N)];
    let w = workload(&open_job, None, &ca)?;
    steps.push(measure(
        &measured,
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
        &measured,
        format!(
            "openat in a container of pod A started after attach (depth {}, not registered: \
             walks up to the pod)",
            depth_of(&late_dir)
        ),
        open_caused.clone(),
        || finish(w).map(drop),
    )?);
    steps.push(measure(
        &measured,
        format!(
            "openat outside any pod: this process (cgroup depth {own_depth}), {} opens",
            thousands(OPENS_N)
        ),
        vec![("podnet_open_exit", OPENS_N)],
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
            &measured,
            format!("openat outside any pod, cgroup depth {depth}: same opens"),
            open_caused.clone(),
            || finish(w).map(drop),
        )?);
    }
    drop(stats_on);
    // Nothing stays attached: the floor's links and podnet's go before the pods are removed.
    drop(floor_links);
    drop(floor);
    drop(tracker);

    let mut md = String::new();
    writeln!(
        md,
        "\n## 1. Cost per event of each BPF program\n\n\
         `kernel.bpf_stats_enabled=1` while the loads ran (restored afterwards); each row is the \
         change of `run_cnt` and `run_time_ns` in `/proc/self/fdinfo/<prog fd>` over one load. \
         The programs are those of a `Tracker` as `podnet stats` makes it \
         (`Tracker::load({DEFAULT_MAX_PODS})`, file tracepoints, `follow()`) following two \
         sandbox pods (A: systemd/containerd layout, B: cgroupfs) in two network namespaces \
         joined by a veth; `Tracker::load` probed this kernel and chose the variant `{variant:?}` \
         (`PODNET_SOCKET_OWNER=cookie` measures the socket-cookie fallback). *Caused* is what the \
         load itself did; the cgroup programs see only the pods, so their runs equal it; the \
         file-open tracepoints see the whole node, so their runs also include every other \
         process's opens meanwhile. The statistics add the cost of two clock reads to every \
         run. The floor is an empty cgroup_skb program (`bpf-src/floor.bpf.c`: it only lets the \
         packet pass) attached beside `podnet_egress` and `podnet_ingress` on the same two pod \
         cgroups, so it runs on exactly the same packets: its ns/run is what the cgroup hook and \
         the clock reads cost by themselves, and podnet − floor is what podnet's own code adds \
         per packet (issue 8's goal: at most floor + {FLOOR_GOAL_NS:.0} ns).\n"
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
        "\nPer packet against the floor, over the same loads (the floor ran exactly as many times \
         as podnet's program beside it):\n"
    )?;
    writeln!(
        md,
        "| load | program | runs | podnet ns/run | floor ns/run | podnet − floor (ns) | ratio | \
         within floor + {FLOOR_GOAL_NS:.0} ns |"
    )?;
    writeln!(md, "|---|---|--:|--:|--:|--:|--:|---|")?;
    for row in &floor_rows {
        let (podnet_ns, floor_ns) = (row.podnet.1.ns_per_run(), row.floor.1.ns_per_run());
        let over = podnet_ns - floor_ns;
        writeln!(
            md,
            "| {} | `{}` vs `{}` | {} | {podnet_ns:.1} | {floor_ns:.1} | {over:.1} | {:.2}× | {} |",
            row.load,
            row.podnet.0,
            row.floor.0,
            thousands(row.podnet.1.run_cnt),
            podnet_ns / floor_ns,
            if over <= FLOOR_GOAL_NS { "yes" } else { "no" }
        )?;
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
