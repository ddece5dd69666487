//! Section `rss`: peak resident set (VmHWM polled, and GNU time's maximum RSS) and wall time of
//! the release `podnet stats` binary, one shot over 10, 100 and 500 sandbox pods.

use std::fmt::Write as _;
use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, ensure, Context, Result};
use serde_json::{json, Value};

use podnet_testing::sandbox::CgroupTree;

use crate::common::{pod_objects, NODE};

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

/// Runs the section; returns its part of the report.
pub fn bench() -> Result<String> {
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
        let items = pod_objects(&tree, pods_n, "bench")?;
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
