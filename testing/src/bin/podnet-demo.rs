//! `podnet-demo`: what `sudo make demo` runs.
//!
//! ```text
//! podnet-demo [--podnet PATH] [--seconds N] [--keep] [--manifest FILE]   (--help explains each)
//! ```
//!
//! Sets up sandbox pods with load in four kubelet cgroup layouts, a stub API server listing them
//! (see `podnet_testing::demo`), then runs the real `podnet` binary against them four ways — a
//! table, `-o wide --containers`, `-o json -n batch`, `--watch --iterations 3` — each under a
//! `$ sudo podnet stats ...` header, with podnet's output passed through. Then it removes
//! everything and checks that nothing is left.
//!
//! Ctrl-C (SIGINT), SIGTERM and SIGHUP are caught without `unsafe`: the signals are blocked in every
//! thread and read from a signalfd by one thread, which asks the main loop to stop; the running
//! podnet gets SIGINT (it detaches by itself), and the sandbox is removed by `Drop` as on a normal
//! exit. Child processes start with an empty signal mask (std resets it), so podnet still sees its
//! own Ctrl-C. If the demo is killed outright (SIGKILL), its workloads still stop by themselves
//! after the demo's duration, and the next run sweeps the leftovers.
//!
//! Exit status: 0 when every podnet run succeeded and nothing was left behind, 1 otherwise, 2 for
//! bad arguments, 128+N when stopped by signal N.

use std::io::{BufRead, IsTerminal};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, ExitStatus, Stdio};
use std::sync::atomic::{AtomicI32, Ordering};
use std::sync::mpsc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use clap::Parser;
use nix::sys::signal::{kill, SigSet, Signal};
use nix::sys::signalfd::SignalFd;
use nix::unistd::Pid;

use podnet_testing::demo::{DemoConfig, DemoSandbox, Resources, DEMO_NODE};

/// How long the load runs with --keep (the sandbox is removed earlier when Enter is pressed).
const KEEP_TRAFFIC: Duration = Duration::from_secs(3600);

/// The command line.
#[derive(Debug, Parser)]
#[command(
    name = "podnet-demo",
    about = "Run podnet against sandbox pods with known load, then remove everything (needs root)",
    long_about = "Sets up sandbox pods (cgroups in four kubelet layouts, network namespaces, veth pairs in \
        198.18.0.0/15, processes generating UDP/TCP traffic, socket churn, file opens and memory use) and a \
        stub Kubernetes API server listing them, runs `podnet stats` against them four ways (a table, \
        -o wide --containers, -o json -n batch, --watch --iterations 3), then removes everything and checks \
        that nothing is left. Needs root. `sudo make demo` builds everything and runs this.\n\n\
        Ctrl-C stops it at any point and still removes everything.\n\n\
        Exit status: 0 when every podnet run succeeded and nothing was left behind, 1 otherwise, 2 for bad \
        arguments, 128+N when stopped by signal N.",
    after_help = "Examples:\n  \
        sudo podnet-demo                          # the four runs, 2 s intervals\n  \
        sudo podnet-demo --seconds 1 --keep       # then keep the sandbox up to explore it by hand\n  \
        sudo podnet-demo --podnet target/debug/podnet --manifest /tmp/made.json"
)]
struct Cli {
    /// The podnet binary [default: `podnet` next to this program, else target/release/podnet in
    /// the repository]
    #[arg(long, value_name = "PATH")]
    podnet: Option<PathBuf>,
    /// podnet's sampling interval in seconds, from 0.1 to 60
    #[arg(long, value_name = "N", default_value_t = 2.0, value_parser = interval_seconds)]
    seconds: f64,
    /// After the runs, keep the sandbox (and its load) up until Enter is pressed, and print the
    /// command line to explore it with podnet by hand
    #[arg(long)]
    keep: bool,
    /// Write the names of everything created (netns, veths, cgroups, pids) to FILE as JSON once
    /// set up (used by the cleanup tests)
    #[arg(long, value_name = "FILE")]
    manifest: Option<PathBuf>,
}

fn interval_seconds(v: &str) -> Result<f64, String> {
    v.parse::<f64>()
        .ok()
        .filter(|s| (0.1..=60.0).contains(s))
        .ok_or_else(|| format!("{v:?}: give a number of seconds from 0.1 to 60"))
}

#[derive(Debug)]
struct Opts {
    podnet: PathBuf,
    seconds: f64,
    keep: bool,
    manifest: Option<PathBuf>,
}

impl From<Cli> for Opts {
    fn from(c: Cli) -> Opts {
        Opts {
            podnet: c.podnet.unwrap_or_else(default_podnet),
            seconds: c.seconds,
            keep: c.keep,
            manifest: c.manifest,
        }
    }
}

/// `podnet` next to this executable (both are built into `target/<profile>/`), else
/// `<repo>/target/release/podnet`.
fn default_podnet() -> PathBuf {
    let sibling = std::env::current_exe()
        .ok()
        .and_then(|e| e.parent().map(|d| d.join("podnet")));
    match sibling {
        Some(p) if p.is_file() => p,
        _ => Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/release/podnet"),
    }
}

/// `2s`, `500ms`: how the interval is written on podnet's command line.
fn interval_arg(seconds: f64) -> String {
    if seconds.fract() == 0.0 {
        format!("{}s", seconds as u64)
    } else {
        format!("{}ms", (seconds * 1000.0).round() as u64)
    }
}

/// The four podnet runs: what each shows, and the flags after the common ones.
fn runs() -> Vec<(&'static str, Vec<&'static str>)> {
    vec![
        ("One interval, every pod on this node, busiest network first:", vec![]),
        ("More columns, and a row per container under its pod:", vec!["-o", "wide", "--containers"]),
        (
            "The same numbers as JSON (schema podnet/v1) for jq and scripts, here for one namespace:",
            vec!["-o", "json", "-n", "batch"],
        ),
        (
            "Redraw every interval like top (until Ctrl-C; here for 3 intervals):",
            vec!["--watch", "--iterations", "3"],
        ),
    ]
}

/// Blocks SIGINT, SIGTERM and SIGHUP in this thread (and so in every thread started later) and
/// starts a thread that reads them from a signalfd. The returned cell holds the number of the
/// last signal received, 0 while none.
fn catch_signals() -> Result<Arc<AtomicI32>> {
    let mut mask = SigSet::empty();
    for s in [Signal::SIGINT, Signal::SIGTERM, Signal::SIGHUP] {
        mask.add(s);
    }
    mask.thread_block()
        .context("cannot block SIGINT/SIGTERM/SIGHUP")?;
    let fd = SignalFd::new(&mask).context("cannot create a signalfd")?;
    let got = Arc::new(AtomicI32::new(0));
    let cell = Arc::clone(&got);
    std::thread::Builder::new()
        .name("signals".into())
        .spawn(move || loop {
            match fd.read_signal() {
                Ok(Some(info)) => cell.store(
                    i32::try_from(info.ssi_signo).unwrap_or(15),
                    Ordering::SeqCst,
                ),
                Ok(None) => {}
                Err(_) => break,
            }
        })
        .context("cannot start the signal thread")?;
    Ok(got)
}

/// Bold in a terminal, plain otherwise.
fn bold(s: &str) -> String {
    if std::io::stdout().is_terminal() {
        format!("\x1b[1m{s}\x1b[0m")
    } else {
        s.to_string()
    }
}

fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("Uid:"))
                .and_then(|u| u.split_whitespace().nth(1).map(|e| e == "0"))
        })
        .unwrap_or(false)
}

/// How one podnet run ended.
enum Run {
    Exited(ExitStatus),
    Interrupted,
}

/// Runs podnet with stdout/stderr passed through, until it exits or a signal arrives; then it
/// gets SIGINT, 3 s later SIGTERM, 3 s later SIGKILL, until it has exited.
fn run_podnet(podnet: &Path, args: &[String], signal: &AtomicI32) -> Result<Run> {
    let mut child = Command::new(podnet)
        .args(args)
        .stdin(Stdio::null())
        .spawn()
        .with_context(|| format!("cannot run {}", podnet.display()))?;
    loop {
        if let Some(status) = child.try_wait().context("waiting for podnet")? {
            return Ok(if signal.load(Ordering::SeqCst) != 0 {
                Run::Interrupted
            } else {
                Run::Exited(status)
            });
        }
        if signal.load(Ordering::SeqCst) != 0 {
            // Ask nicely first (podnet detaches and exits on either), then insist.
            let pid = i32::try_from(child.id()).map(Pid::from_raw).ok();
            for sig in [Signal::SIGINT, Signal::SIGTERM] {
                if let Some(pid) = pid {
                    let _ = kill(pid, sig);
                }
                let deadline = Instant::now() + Duration::from_secs(3);
                while Instant::now() < deadline {
                    if child.try_wait().context("waiting for podnet")?.is_some() {
                        return Ok(Run::Interrupted);
                    }
                    std::thread::sleep(Duration::from_millis(20));
                }
            }
            let _ = child.kill();
            let _ = child.wait();
            return Ok(Run::Interrupted);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Waits for Enter (or EOF) on stdin, or a signal.
fn wait_for_enter(signal: &AtomicI32) {
    let (tx, rx) = mpsc::channel();
    let _ = std::thread::Builder::new()
        .name("stdin".into())
        .spawn(move || {
            let mut line = String::new();
            let _ = std::io::stdin().lock().read_line(&mut line);
            let _ = tx.send(());
        });
    while signal.load(Ordering::SeqCst) == 0 {
        match rx.recv_timeout(Duration::from_millis(50)) {
            Err(mpsc::RecvTimeoutError::Timeout) => {}
            _ => return,
        }
    }
}

/// What the main part decided the exit status should be.
struct Outcome {
    podnet_failed: bool,
}

fn demo(opts: &Opts, signal: &AtomicI32, made: &mut Option<Resources>) -> Result<Outcome> {
    let interval = interval_arg(opts.seconds);
    let runs = runs();
    // Every interval plus generous room for podnet's start-up: the load stops by itself after
    // this, even if this process is killed.
    let traffic = if opts.keep {
        KEEP_TRAFFIC
    } else {
        Duration::from_secs_f64(opts.seconds * 6.0 + 60.0)
    };
    println!("Setting up the demo sandbox (cgroups, network namespaces, veth pairs, load, stub API server)...");
    let config = DemoConfig {
        node: DEMO_NODE.to_string(),
        traffic,
    };
    let mut sandbox = DemoSandbox::setup(&config).context("setting up the demo sandbox")?;
    *made = Some(sandbox.resources().clone());
    if let Some(path) = &opts.manifest {
        let text = serde_json::to_string_pretty(&sandbox.resources().to_json())?;
        std::fs::write(path, text).with_context(|| format!("cannot write {}", path.display()))?;
    }
    print!("{}", sandbox.describe());

    let kubeconfig = sandbox.kubeconfig().display().to_string();
    let common = [
        "stats",
        "--kubeconfig",
        kubeconfig.as_str(),
        "--node",
        sandbox.node(),
        "--interval",
        interval.as_str(),
    ];
    let mut podnet_failed = false;
    for (what, extra) in &runs {
        if signal.load(Ordering::SeqCst) != 0 {
            break;
        }
        let args: Vec<String> = common.iter().chain(extra).map(|s| s.to_string()).collect();
        println!("\n# {what}");
        println!("{}", bold(&format!("$ sudo podnet {}", args.join(" "))));
        match run_podnet(&opts.podnet, &args, signal)? {
            Run::Interrupted => break,
            Run::Exited(status) if status.success() => {}
            Run::Exited(status) => {
                eprintln!(
                    "\npodnet-demo: `podnet {}` failed ({status}); see its message above. \
                     Stopping the demo and removing the sandbox.",
                    args.join(" ")
                );
                podnet_failed = true;
                break;
            }
        }
    }

    if opts.keep && !podnet_failed && signal.load(Ordering::SeqCst) == 0 {
        let podnet = std::fs::canonicalize(&opts.podnet).unwrap_or_else(|_| opts.podnet.clone());
        println!(
            "\nThe sandbox stays up, with its load running for up to {} minutes. Explore it, e.g.:\n  \
             sudo {} stats --kubeconfig {kubeconfig} --node {} --watch\n  \
             sudo {} stats --kubeconfig {kubeconfig} --node {} -n shop -o wide --containers --sort tx\n\
             Press Enter here to remove everything.",
            KEEP_TRAFFIC.as_secs() / 60,
            podnet.display(),
            sandbox.node(),
            podnet.display(),
            sandbox.node(),
        );
        wait_for_enter(signal);
    }

    if !opts.keep && !podnet_failed && signal.load(Ordering::SeqCst) == 0 {
        println!(
            "\nTip: `sudo scripts/demo.sh --keep` leaves the sandbox up to explore it with podnet by hand."
        );
    }
    let report = sandbox.stop_driver();
    if !report.errors.is_empty() && signal.load(Ordering::SeqCst) == 0 {
        eprintln!(
            "podnet-demo: {} of {} rounds of the periodic load failed; first: {}",
            report.errors.len(),
            report.errors.len() as u64 + report.tcp_queries + report.open_batches,
            report.errors[0]
        );
    }
    println!("\nRemoving the sandbox...");
    drop(sandbox);
    Ok(Outcome { podnet_failed })
}

fn main() -> ExitCode {
    // Help goes to stdout with status 0; a usage error to stderr with status 2.
    let opts = Opts::from(Cli::parse());
    if !is_root() {
        eprintln!(
            "podnet-demo: needs root: it creates cgroups, network namespaces and veth pairs, and podnet \
             loads eBPF programs. Run: sudo make demo"
        );
        return ExitCode::FAILURE;
    }
    if !opts.podnet.is_file() {
        eprintln!(
            "podnet-demo: no podnet binary at {}: build it with `make build` (cargo build --release -p podnet), \
             or pass --podnet PATH",
            opts.podnet.display()
        );
        return ExitCode::FAILURE;
    }
    // Before any other thread exists, so that every thread inherits the blocked mask.
    let signal = match catch_signals() {
        Ok(s) => s,
        Err(e) => {
            eprintln!("podnet-demo: {e:#}");
            return ExitCode::FAILURE;
        }
    };

    let mut made = None;
    let result = demo(&opts, &signal, &mut made);
    let mut failed = false;
    match &result {
        Ok(outcome) => failed |= outcome.podnet_failed,
        Err(e) => {
            eprintln!("podnet-demo: {e:#}");
            failed = true;
        }
    }
    if let Some(made) = made {
        let left = made.existing();
        if left.is_empty() {
            println!(
                "Removed: {} network namespaces, {} veth pairs, the pods' cgroups, {} load processes, the stub \
                 API server and its kubeconfig. Nothing is left behind.",
                made.netns.len(),
                made.links.len() / 2,
                made.pids.len()
            );
        } else {
            eprintln!(
                "podnet-demo: could not remove everything; left behind: {}",
                left.join(", ")
            );
            failed = true;
        }
    }
    match signal.load(Ordering::SeqCst) {
        0 if failed => ExitCode::FAILURE,
        0 => ExitCode::SUCCESS,
        n => {
            eprintln!("podnet-demo: stopped by signal {n}");
            ExitCode::from(u8::try_from(128 + n).unwrap_or(130))
        }
    }
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::*;

    /// `Some(options)`, or `None` for --help.
    fn parse_args(args: &[String]) -> Result<Option<Opts>, clap::Error> {
        let argv = std::iter::once("podnet-demo").chain(args.iter().map(String::as_str));
        match Cli::try_parse_from(argv) {
            Ok(c) => Ok(Some(c.into())),
            Err(e) if e.kind() == clap::error::ErrorKind::DisplayHelp => Ok(None),
            Err(e) => Err(e),
        }
    }

    #[test]
    fn the_command_line_is_well_formed() {
        Cli::command().debug_assert();
    }

    fn args(s: &str) -> Vec<String> {
        s.split_whitespace().map(String::from).collect()
    }

    #[test]
    fn parses_options() {
        let o = parse_args(&args(
            "--podnet /x/podnet --seconds 0.5 --keep --manifest /tmp/m.json",
        ))
        .unwrap()
        .unwrap();
        assert_eq!(o.podnet, Path::new("/x/podnet"));
        assert_eq!(o.seconds, 0.5);
        assert!(o.keep);
        assert_eq!(o.manifest.as_deref(), Some(Path::new("/tmp/m.json")));
        let d = parse_args(&[]).unwrap().unwrap();
        assert_eq!((d.seconds, d.keep, d.manifest), (2.0, false, None));
        assert!(parse_args(&args("--help")).unwrap().is_none());
        assert!(parse_args(&args("--seconds 0")).is_err());
        assert!(parse_args(&args("--seconds x")).is_err());
        assert!(parse_args(&args("--podnet")).is_err());
        assert!(parse_args(&args("--bogus")).is_err());
    }

    #[test]
    fn interval_is_written_like_podnet_takes_it() {
        assert_eq!(interval_arg(2.0), "2s");
        assert_eq!(interval_arg(0.5), "500ms");
        assert_eq!(interval_arg(1.25), "1250ms");
    }

    #[test]
    fn four_runs_in_tutorial_order() {
        let flags: Vec<String> = runs().iter().map(|(_, f)| f.join(" ")).collect();
        assert_eq!(
            flags,
            [
                "",
                "-o wide --containers",
                "-o json -n batch",
                "--watch --iterations 3"
            ]
        );
    }
}
