//! `podnet-sandbox`: the workload process of podnet's sandbox pods.
//!
//! ```text
//! podnet-sandbox [--netns NAME|PATH] [--cgroup DIR] [--memcg DIR] [--hold] <job> [job options]
//! ```
//!
//! Order of events, which is what makes exact counts possible:
//! 1. parse everything and check the job's inputs;
//! 2. `setns(CLONE_NEWNET)` into `--netns` (a name under /run/netns, or a path);
//! 3. open `cgroup.procs` of `--memcg` (v1 memory hierarchy) and `--cgroup` (v2), then write the
//!    own pid to them: from here on the process is in the container's cgroups, and it opens no
//!    file and no socket other than its job;
//! 4. prepare what peers need before they start (bind/listen sockets of `udp-recv`, `tcp-server`,
//!    `demo --bind`), print `{"ready":true,"pid":N}` and wait for a line on stdin (EOF: exit 0);
//! 5. do the job, close everything the job opened (except what a holding job holds), print one JSON
//!    result line (`{"error":"..."}` and exit status 1 on failure);
//! 6. holding jobs (`tcp-server`, `tcp-client`, `hold-memory`, `idle`, any job with `--hold`) wait
//!    for another line or EOF, then close what they hold and exit 0.
//!
//! Jobs and their result fields:
//! - `udp-send --to A:P --count N --size S [--interval-us U]`: one socket, exactly N datagrams of S
//!   payload bytes (`sent`, `bytes`, `errors`).
//! - `udp-recv --bind A:P --count N --timeout-ms T`: receives until N datagrams or T ms after go
//!   (`received`, `bytes`, `timedOut`).
//! - `tcp-server --bind A:P --reply B [--expect N] [--timeout-ms T]`: accepts one connection, reads
//!   N bytes (or until EOF without `--expect`), writes B bytes, holds the connection
//!   (`received`, `sent`, `peer`).
//! - `tcp-client --to A:P --bytes B --expect R [--shutdown] [--timeout-ms T]`: connects, writes B
//!   bytes (then half-closes with `--shutdown`), reads R bytes, holds the connection
//!   (`sent`, `received`, `local`).
//! - `open --path P --count N [--missing K] [--missing-path Q]`: exactly N successful opens of P
//!   and K failing opens of Q (default `P.podnet-missing`, which must not exist), each closed
//!   (`opened`, `failed`, `openErrors` = failed opens of P, `unexpectedOpens` = successful opens of Q).
//! - `sockets --count N`: creates and closes N UDP sockets (`created`, `closed`).
//! - `hold-memory --mib M`: allocates and touches M MiB, holds it (`bytes`).
//! - `demo --seconds S [--to A:P] [--rate R] [--size B] [--bind A:P] [--sockets-per-sec N]
//!   [--opens-per-sec N] [--open-path P] [--mib M]`: a mixed load for S seconds: R datagrams/s of
//!   B bytes to A:P, receiving whatever arrives at `--bind`, socket churn, file opens, M MiB held
//!   (`udpSent`, `udpReceived`, `socketsCreated`, `opens`, `bytesHeld`, `seconds`).
//! - `idle`: nothing; holds until released.

mod args;
mod jobs;

use std::fs::{File, OpenOptions};
use std::io::{self, BufRead, Write};
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{bail, Context, Result};
use clap::error::{ContextKind, ContextValue, ErrorKind};
use clap::{CommandFactory, Parser};
use nix::sched::{setns, CloneFlags};
use serde_json::{json, Value};

use args::{Cli, Global, Job};
use jobs::{holds, prepare, run_job, Prepared};

/// Checks of the job's inputs that touch the file system, done before joining the cgroup.
fn precheck(job: &Job) -> Result<()> {
    let exists = |p: &Path| p.symlink_metadata().is_ok();
    match job {
        Job::Open {
            path,
            missing,
            missing_path,
            ..
        } => {
            if !exists(path) {
                bail!("open: --path {} does not exist", path.display());
            }
            if *missing > 0 && exists(missing_path) {
                bail!(
                    "open: the path for failing opens {} exists; pass --missing-path",
                    missing_path.display()
                );
            }
        }
        Job::Demo(d) if d.opens_per_sec > 0 && !exists(&d.open_path) => {
            bail!("demo: --open-path {} does not exist", d.open_path.display());
        }
        _ => {}
    }
    Ok(())
}

fn join_netns(ns: &str) -> Result<()> {
    let path = if ns.contains('/') {
        PathBuf::from(ns)
    } else {
        Path::new("/run/netns").join(ns)
    };
    let file =
        File::open(&path).with_context(|| format!("cannot open netns {}", path.display()))?;
    setns(file.as_fd(), CloneFlags::CLONE_NEWNET).with_context(|| {
        format!(
            "setns({}, CLONE_NEWNET): needs CAP_SYS_ADMIN",
            path.display()
        )
    })
}

/// Moves this process into the given cgroups. Both files are opened first, so every open happens
/// while still outside.
fn join_cgroups(g: &Global) -> Result<()> {
    let open = |dir: &Path| {
        let file = dir.join("cgroup.procs");
        OpenOptions::new()
            .write(true)
            .open(&file)
            .with_context(|| format!("cannot open {}", file.display()))
            .map(|f| (f, file))
    };
    let memcg = g.memcg.as_deref().map(open).transpose()?;
    let cgroup = g.cgroup.as_deref().map(open).transpose()?;
    let pid = std::process::id().to_string();
    for (mut f, name) in memcg.into_iter().chain(cgroup) {
        f.write_all(pid.as_bytes())
            .with_context(|| format!("cannot move pid {pid} into {}", name.display()))?;
    }
    Ok(())
}

/// The job named on the command line when clap knows no such subcommand.
fn unknown_job(e: &clap::Error) -> Option<String> {
    if e.kind() != ErrorKind::InvalidSubcommand {
        return None;
    }
    match e.get(ContextKind::InvalidSubcommand) {
        Some(ContextValue::String(job)) => Some(job.clone()),
        _ => None,
    }
}

/// Prints one line on stdout and flushes it.
fn say(v: &Value) -> io::Result<()> {
    let mut out = io::stdout().lock();
    writeln!(out, "{v}")?;
    out.flush()
}

/// Reads one line from stdin; false on EOF.
fn wait_line() -> bool {
    let mut line = String::new();
    matches!(io::stdin().lock().read_line(&mut line), Ok(n) if n > 0)
}

fn main() -> ExitCode {
    // Help goes to stdout with status 0; a usage error to stderr with status 2.
    let (global, job) = match Cli::try_parse() {
        Ok(cli) => cli.into_parts(),
        Err(e) => {
            if let Some(job) = unknown_job(&e) {
                let jobs: Vec<String> = Cli::command()
                    .get_subcommands()
                    .map(|c| c.get_name().to_string())
                    .filter(|n| n != "help")
                    .collect();
                eprintln!(
                    "podnet-sandbox: unknown job {job:?} ({}); see podnet-sandbox --help",
                    jobs.join(", ")
                );
                return ExitCode::from(2);
            }
            e.exit()
        }
    };
    let setup = (|| -> Result<Prepared> {
        precheck(&job)?;
        if let Some(ns) = &global.netns {
            join_netns(ns)?;
        }
        join_cgroups(&global)?;
        prepare(&job)
    })();
    let prepared = match setup {
        Ok(p) => p,
        Err(e) => {
            eprintln!("podnet-sandbox: {e:#}");
            return ExitCode::from(1);
        }
    };
    if say(&json!({"ready": true, "pid": std::process::id()})).is_err() || !wait_line() {
        return ExitCode::SUCCESS;
    }
    let (result, held) = match run_job(&job, prepared) {
        Ok(r) => r,
        Err(e) => {
            let _ = say(&json!({"error": format!("{e:#}")}));
            eprintln!("podnet-sandbox: {e:#}");
            return ExitCode::from(1);
        }
    };
    if say(&result).is_err() {
        return ExitCode::from(1);
    }
    if holds(&job) || global.hold {
        wait_line();
    }
    drop(held);
    ExitCode::SUCCESS
}
