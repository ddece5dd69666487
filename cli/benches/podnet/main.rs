//! podnet's benchmarks: what podnet costs on a real kernel, measured (never asserted). This file
//! handles the arguments, prints the machine header and writes the report; each section is a
//! module of its own.
//!
//! ```text
//! sudo cargo bench -p podnet --bench podnet [-- SECTION...]     # or: sudo make bench
//! ```
//!
//! Sections (all by default, in this order):
//! - `events` ([`events`]): nanoseconds per run of each BPF program, from `run_time_ns`/`run_cnt`
//!   in `/proc/self/fdinfo/<prog fd>` with `kernel.bpf_stats_enabled` on (restored afterwards),
//!   under known loads between two sandbox pods: UDP datagrams over a veth between two network
//!   namespaces, socket churn, TCP connections, `openat` inside a pod and outside any pod (the
//!   ancestor walk every `openat` on the node pays).
//! - `throughput` ([`throughput`]): TCP bulk (with and without GSO) and UDP packets/s between the
//!   two pods, with `podnet` attached (a `Tracker` following both pods) and without, trials
//!   alternated.
//! - `maps` ([`maps`]): reading 1k and 10k registered cgroups: `Tracker::snapshot` (batch lookup)
//!   against key iteration plus one lookup per key.
//! - `attach` ([`attach`]): `Tracker::load`, `Tracker::follow` for 10, 100 and 500 pods, a
//!   refresh, detaching pods, unloading.
//! - `rss` ([`rss`]): peak resident set of the release `podnet stats` binary, one shot over 10,
//!   100 and 500 pods.
//! - `overhead` ([`overhead`]): what processes outside every pod pay per `getpid` and `openat`
//!   at several cgroup depths, detached and attached, and the one-shot's exit time.
//! - `agent` ([`agent`]): the release `podnet agent` following 110 and 1000 sandbox pods listed
//!   and watched through the stub API server: VmRSS/VmHWM after sync, CPU per `/metrics` scrape
//!   (idle CPU subtracted), ADDED → first counted packet of a new pod, and the API requests it
//!   makes in steady state, after a dropped watch and after a forced relist, per hour.
//!
//! Every section measures podnet's own code paths: `Tracker::load` (which probes the kernel and
//! picks the program variants users get), `follow()`, `attach_file_tracepoints()`, and the
//! programs' fds through `Tracker::object()`; the benchmark never loads or attaches podnet's
//! object itself. The one object it loads is the `events` section's floor (`bpf-src/floor.bpf.c`):
//! empty cgroup_skb programs beside podnet's, whose cost per packet is the baseline.
//!
//! Everything lives in sandbox objects (cgroup trees, network namespaces, veth pairs with
//! addresses in 198.18.0.0/15) that are removed on drop; the `agent` section's pins are
//! uninstalled with `podnet agent --uninstall`. Needs root; the whole run takes about a minute on
//! 2 vCPUs, plus about 2.5 minutes for `agent` (two 60 s steady windows;
//! `PODNET_BENCH_AGENT_SECS` changes them). The report is printed and written to
//! `target/bench-report.md` (or to `$PODNET_BENCH_REPORT`).
//!
//! The throughput loops run in helper processes: this executable started again with
//! `PODNET_BENCH_HELPER` set, which joins a pod's cgroup and a network namespace and times its own
//! send/receive loop (see [`helper`]).

mod agent;
mod attach;
mod common;
mod events;
mod helper;
mod maps;
mod overhead;
mod rss;
mod throughput;

use std::fs;
use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, ExitCode};
use std::time::{Instant, SystemTime};

use anyhow::{Context, Result};

use podnet_testing::sandbox::require_privileges;

/// The sections, in the order they run.
const SECTIONS: [&str; 7] = [
    "events",
    "throughput",
    "maps",
    "attach",
    "rss",
    "overhead",
    "agent",
];

fn main() -> ExitCode {
    if let Ok(spec) = std::env::var(overhead::LOOP_ENV) {
        return overhead::loop_main(&spec);
    }
    if let Ok(role) = std::env::var(throughput::HELPER_ROLE) {
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
            "events" => events::bench()?,
            "throughput" => throughput::bench()?,
            "maps" => maps::bench()?,
            "attach" => attach::bench()?,
            "rss" => rss::bench()?,
            "overhead" => overhead::bench()?,
            "agent" => agent::bench()?,
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
