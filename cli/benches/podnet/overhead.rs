//! Section `overhead`: what processes outside every pod pay while podnet runs, and how late a
//! one-shot `podnet stats` exits. `getpid` and `openat`+`close` loops in forked children placed in
//! cgroups outside every pod at depth 0 (the root), 6 and 12, with nothing loaded (detached) and
//! with a `Tracker` as `podnet stats` makes it (attached, for each file-open probe this kernel
//! has). Every figure is also given as a ratio to a *floor* measured in the same run: the same
//! loop at depth 0 with nothing loaded.

use std::fmt::Write as _;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

use anyhow::{bail, ensure, Context, Result};
use podnet::attach::{OpenProbe, Tracker};
use podnet::resolve::Mounts;
use serde_json::json;

use crate::common::{follow_all, median, PodPair, DEFAULT_MAX_PODS, NODE};

const TRIALS: usize = 5;
const GETPIDS: u64 = 2_000_000;
const OPENS: u64 = 200_000;

/// Set (to `<getpid|open> <count> <cgroup dir>`) in the loop process: this executable started
/// again, which joins the cgroup, times its loop and prints the ns per call.
pub const LOOP_ENV: &str = "PODNET_BENCH_LOOP";

/// The loop process's main.
pub fn loop_main(spec: &str) -> std::process::ExitCode {
    let run = || -> Result<f64> {
        let mut parts = spec.splitn(3, ' ');
        let (Some(op), Some(n), Some(dir)) = (parts.next(), parts.next(), parts.next()) else {
            bail!("bad {LOOP_ENV}: {spec:?}");
        };
        let n: u64 = n.parse()?;
        fs::write(
            Path::new(dir).join("cgroup.procs"),
            std::process::id().to_string(),
        )
        .with_context(|| format!("joining {dir}"))?;
        let t = Instant::now();
        let mut sink = 0u64;
        for _ in 0..n {
            match op {
                // glibc does not cache getpid: one system call each.
                "getpid" => sink = sink.wrapping_add(u64::from(std::process::id())),
                _ => drop(fs::File::open("/dev/null")?),
            }
        }
        std::hint::black_box(sink);
        Ok(t.elapsed().as_nanos() as f64 / n as f64)
    };
    match run() {
        Ok(ns) => {
            println!("{ns}");
            std::process::ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("{e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

/// ns per call of `op` (`getpid` or `open`) in a process started in cgroup `dir`.
fn ns_per_op(op: &str, dir: &Path) -> Result<f64> {
    let n = if op == "getpid" { GETPIDS } else { OPENS };
    let out = Command::new(std::env::current_exe()?)
        .env(LOOP_ENV, format!("{op} {n} {}", dir.display()))
        .stderr(Stdio::piped())
        .output()?;
    ensure!(
        out.status.success(),
        "loop process in {}: {}",
        dir.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(String::from_utf8_lossy(&out.stdout).trim().parse()?)
}

/// Runs the section; returns its part of the report.
pub fn bench() -> Result<String> {
    let mounts = Mounts::detect()?;
    let Some(mount) = mounts.cgroup2.clone() else {
        bail!("no cgroup2 mount");
    };
    let pp = PodPair::new("bench-oh")?;
    let resolved = pp.resolved()?;
    // Cgroups outside every pod: depth 0 is the root; 6 and 12 below a subtree of their own.
    let mut places: Vec<(usize, PathBuf)> = vec![(0, mount.clone())];
    let outside_root = mount.join(format!("podnet-bench-outside-{}", std::process::id()));
    let mut dir = outside_root.clone();
    let mut made: Vec<PathBuf> = Vec::new();
    for depth in 1..=12usize {
        if depth > 1 {
            dir = dir.join(format!("d{depth}"));
        }
        fs::create_dir(&dir).with_context(|| format!("creating {}", dir.display()))?;
        made.push(dir.clone());
        if depth == 6 || depth == 12 {
            places.push((depth, dir.clone()));
        }
    }
    let mut probes = vec![OpenProbe::Tracepoint];
    if podnet_loader::kernel_function_exists(podnet::attach::OPEN_FUNCTION)?
        && Path::new("/sys/bus/event_source/devices/kprobe/type").exists()
    {
        probes.push(OpenProbe::Kprobe);
    }
    if podnet_loader::probe::tracing_loads(podnet::attach::OPEN_FUNCTION, true).is_ok() {
        probes.push(OpenProbe::Fexit);
    }
    // results[(mode, depth, op)] = trials
    let mut results: std::collections::BTreeMap<(String, usize, &str), Vec<f64>> =
        Default::default();
    let measure = |mode: &str, results: &mut std::collections::BTreeMap<_, Vec<f64>>| {
        for (depth, dir) in &places {
            for name in ["getpid", "open"] {
                let v = ns_per_op(name, dir)?;
                results
                    .entry((mode.to_string(), *depth, name))
                    .or_default()
                    .push(v);
            }
        }
        anyhow::Ok(())
    };
    for _ in 0..TRIALS {
        measure("detached", &mut results)?;
        for probe in &probes {
            let mut tracker = Tracker::load(DEFAULT_MAX_PODS)?;
            tracker.attach_file_opens(*probe)?;
            follow_all(&mut tracker, &resolved, &mounts)?;
            measure(&format!("{probe:?}").to_lowercase(), &mut results)?;
            drop(tracker);
        }
    }
    for d in made.iter().rev() {
        let _ = fs::remove_dir(d);
    }

    let mut md = String::new();
    writeln!(
        md,
        "\n## 6. What processes outside every pod pay, and the one-shot's exit\n\n\
         `getpid` ({GETPIDS} calls) and `openat`+`close` of /dev/null ({OPENS} pairs) in a \
         child process forked into a cgroup outside every pod, at depth 0 (the root), 6 and 12. \
         *Detached*: nothing loaded; *tracepoint* / *kprobe* / *fexit* (where the kernel takes \
         them): a `Tracker` as `podnet stats` \
         makes it with that `--open-probe` (two pods followed). Medians of {TRIALS} trials, ns \
         per call, and in brackets the ratio to the *floor*: the same loop at depth 0 with \
         nothing loaded, measured in the same run.\n"
    )?;
    let floor = |op: &str| median(results[&("detached".to_string(), 0, op)].clone());
    let modes: Vec<String> = std::iter::once("detached".to_string())
        .chain(probes.iter().map(|p| format!("{p:?}").to_lowercase()))
        .collect();
    write!(md, "| call | depth |")?;
    for m in &modes {
        write!(md, " {m} |")?;
    }
    writeln!(md)?;
    writeln!(md, "|---|--:|{}", "--:|".repeat(modes.len()))?;
    for op in ["getpid", "open"] {
        for (depth, _) in &places {
            write!(
                md,
                "| {} | {depth} |",
                if op == "open" { "openat+close" } else { op }
            )?;
            for m in &modes {
                let v = median(results[&(m.clone(), *depth, op)].clone());
                write!(md, " {v:.0} ns ({:.2}×) |", v / floor(op))?;
            }
            writeln!(md)?;
        }
    }

    // The one-shot's exit: wall time minus the interval.
    let bin = PathBuf::from(env!("CARGO_BIN_EXE_podnet"));
    let list = tempfile::NamedTempFile::new()?;
    let items: Vec<_> = [(&pp.a, "a"), (&pp.b, "b")]
        .iter()
        .map(|(p, n)| p.pod_json("bench", n, NODE, &[]))
        .collect();
    fs::write(
        list.path(),
        json!({"apiVersion": "v1", "kind": "List", "items": items}).to_string(),
    )?;
    writeln!(
        md,
        "\n`podnet stats --interval 1 -o json --pods-from <2 pods>` (release binary), wall time \
         from start to exit minus the 1 s interval, medians of 3 runs:\n\n| `--open-probe` | wall − \
         interval |\n|---|--:|"
    )?;
    for probe in probes.iter().map(|p| format!("{p:?}").to_lowercase()) {
        let mut extra = Vec::new();
        for _ in 0..3 {
            let t = Instant::now();
            let out = Command::new(&bin)
                .args(["stats", "--interval", "1", "-o", "json", "--node", NODE])
                .arg("--pods-from")
                .arg(list.path())
                .args(["--open-probe", &probe])
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .output()?;
            ensure!(
                out.status.success(),
                "podnet stats failed: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            extra.push(t.elapsed().as_secs_f64() - 1.0);
        }
        writeln!(md, "| {probe} | {:.2} s |", median(extra))?;
    }
    Ok(md)
}
