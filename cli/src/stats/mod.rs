//! `podnet stats`: sets up the pipeline (discover → resolve → attach) and runs its loop — wait an
//! interval, sample, aggregate, print, refresh the pods — once or every interval (`--watch`).

mod args;
mod pods;
mod report;

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use anyhow::{anyhow, Context, Result};
use log::{debug, info};

use crate::attach::Tracker;
use crate::discover::{DiscoverOptions, PodsFrom};
use crate::model::CounterScope;
use crate::render::screen::Screen;
use crate::render::{self, Output, TableOptions};
use crate::resolve::Mounts;
use crate::sample::Snapshot;

pub use args::{parse_duration, StatsArgs};
pub use pods::{REFRESH_FAILED, REFRESH_RECOVERED};
pub use report::rfc3339;

use args::table_options;
use pods::{outage_step, refresh_pods, Outage, RefreshError, State};
use report::{print_report, report, Printed};

/// The exit statuses of `podnet stats`, shown by `podnet stats --help`.
pub const EXIT_STATUS_HELP: &str = "\
Exit status:
  0    success; also when Ctrl-C ends --watch, and when the reader of standard output goes
       away (EPIPE, as in `podnet stats --watch | head -1`): podnet detaches and ends quietly
  1    error, with one message naming the fix; nothing is left attached
  2    usage error (a bad flag or value)
  130  interrupted by Ctrl-C (SIGINT) before a one-shot run printed its report
  143  terminated by SIGTERM (one-shot or --watch); nothing is left attached";

/// Runs `podnet stats`; prints errors as `error: ...` and maps them to the exit code.
pub fn main(args: StatsArgs) -> ExitCode {
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match rt.block_on(run(args)) {
        Ok(outcome) => ExitCode::from(outcome.exit_code()),
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// How a run ended without error.
#[derive(Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Every report was printed, Ctrl-C ended `--watch`, or the reader of stdout went away.
    Done,
    /// A one-shot run was interrupted (SIGINT) before its interval ended: nothing was printed.
    Interrupted,
    /// SIGTERM ended the run, one-shot or `--watch`.
    Terminated,
}

impl Outcome {
    /// The process exit status for this outcome (128 + the signal number for signals, as a shell
    /// reports a process the signal killed).
    pub fn exit_code(&self) -> u8 {
        match self {
            Outcome::Done => 0,
            Outcome::Interrupted => 130,
            Outcome::Terminated => 143,
        }
    }
}

/// Logged (debug) when the first counting window starts.
pub const WINDOW_STARTS: &str = "the counting window starts";

/// The pipeline. Everything attached is owned by the `Tracker` and detached when it drops, on
/// every return path.
pub async fn run(args: StatsArgs) -> Result<Outcome> {
    // With an agent on the node, read its pinned maps for the window: nothing to load, attach or
    // detach (and no CAP_NET_ADMIN needed).
    // An agent of another podnet build: its maps may be laid out differently, so podnet counts
    // with programs of its own beside the agent's (and says so).
    let pinned = crate::pins::exists(&args.pin_dir);
    let agent = pinned
        && crate::pins::same_build(&args.pin_dir).with_context(|| {
            format!(
                "reading which podnet build pinned the agent's state under {}",
                args.pin_dir.display()
            )
        })?;
    if !agent {
        crate::privileges::check_privileges()?;
    }
    let mounts = Mounts::detect().context("reading /proc/self/mountinfo")?;
    let cgroup2 = mounts.cgroup2.clone().ok_or_else(|| {
        anyhow!(
            "no cgroup v2 mount found in /proc/self/mountinfo: podnet attaches to pods' cgroup v2 \
             directories. Boot with systemd.unified_cgroup_hierarchy=1, or on a hybrid host mount \
             the v2 tree (mount -t cgroup2 none /sys/fs/cgroup/unified)"
        )
    })?;
    debug!(
        "cgroup2 at {}, v1 memory at {:?}",
        cgroup2.display(),
        mounts.memory_v1
    );

    let cluster = args.cluster.discover_options();
    let node = cluster.node.clone();
    let opts = DiscoverOptions {
        namespace: args.namespace.clone(),
        selector: args.selector.clone(),
        pods_from: args.pods_from.as_deref().map(|p| {
            if p == "-" {
                PodsFrom::Stdin
            } else {
                PodsFrom::File(PathBuf::from(p))
            }
        }),
        cgroup2: Some(cgroup2.clone()),
        ..cluster
    };

    let t = Instant::now();
    let mut tracker = if agent {
        info!(
            "reading the counters of the agent pinned under {}",
            args.pin_dir.display()
        );
        Tracker::open_pins(&args.pin_dir)?
    } else {
        Tracker::load(args.max_pods)?
    };
    let mut warnings = tracker.attach_file_opens(args.open_probe)?;
    if pinned && !agent {
        warnings.push(format!(
            "{} under {}: its counters are not read; podnet counts this window with programs \
             of its own",
            crate::attach::OTHER_BUILD,
            args.pin_dir.display()
        ));
    }
    warnings.extend(raise_fd_limit());
    debug!("loaded and attached tracepoints in {:?}", t.elapsed());

    let mut state = State {
        node,
        pods: Vec::new(),
        lasting: warnings,
        warnings: Vec::new(),
        notices: Vec::new(),
        source: None,
        stdin_pods: None,
        empty: None,
    };
    // The first list decides what podnet follows: any failure of it ends the run.
    refresh_pods(&opts, &mounts, &mut tracker, &mut state)
        .await
        .map_err(RefreshError::into_inner)?;

    // Entries are registered zeroed, and the misses map is new with this load: counting "since
    // attach" starts from zero, not from a read taken a moment after attaching (which would drop
    // whatever happened in between).
    // From here on Ctrl-C detaches cleanly (before, the default action kills podnet, and the
    // kernel detaches its links).
    let mut stop = Stop::install()?;
    // An agent's counters run since it attached: the window starts from a read now.
    let base = if agent {
        Snapshot::read(tracker.object())?
    } else {
        Snapshot::zero(Instant::now())
    };
    debug!("{WINDOW_STARTS}");
    let mut prev = base.clone();
    let mut shown = 0u64;
    let mut last_refresh = Instant::now();
    let refresh_every = args.interval.max(args.refresh_interval);
    let mut outage: Option<Outage> = None;
    let term = std::env::var("TERM").ok();
    let mut screen = if args.watch
        && args.output != Output::Json
        && render::screen::wanted(std::io::stdout().is_terminal(), term.as_deref())
    {
        let opts = TableOptions {
            rates_only: true,
            ..table_options(&args)
        };
        let view = render::screen::View::new(opts, args.interval);
        Some(Screen::enter(view).context("taking the terminal for the watch screen")?)
    } else {
        None
    };
    loop {
        let deadline = tokio::time::Instant::now() + args.interval;
        loop {
            match stop.wait(deadline, screen.as_mut()).await {
                Wake::Elapsed => break,
                Wake::Interrupt => {
                    info!("interrupted (SIGINT): detaching");
                    return Ok(if args.watch {
                        Outcome::Done
                    } else {
                        Outcome::Interrupted
                    });
                }
                Wake::Terminate => {
                    info!("terminated (SIGTERM): detaching");
                    return Ok(Outcome::Terminated);
                }
                Wake::Input(ev) => {
                    if let Some(scr) = screen.as_mut() {
                        if scr.handle(ev).context("drawing the watch screen")? {
                            info!("quit from the watch screen: detaching");
                            return Ok(Outcome::Done);
                        }
                    }
                }
            }
        }
        let registered = state.pods.iter().map(|p| p.registered_ids().count()).sum();
        let now = Snapshot::read_sized(tracker.object(), registered)?;
        let mut doc = report(&state, &base, &prev, &now, &tracker);
        if args.watch {
            doc.counters = CounterScope::Cumulative;
        }
        // Notices are said once.
        state.notices.clear();
        let empty = state.empty.clone();
        shown += 1;
        let last = !args.watch || args.iterations.is_some_and(|n| shown >= n);
        if let Some(scr) = screen.as_mut() {
            scr.show(doc, empty).context("drawing the watch screen")?;
            if last {
                // `--watch --iterations N` leaves its last frame on the normal screen.
                let (doc, empty) = scr.last().cloned().expect("a document was just shown");
                scr.restore();
                screen = None;
                if print_report(&doc, &args, empty.as_deref())? == Printed::ReaderGone {
                    return Ok(Outcome::Done);
                }
            }
        } else if print_report(&doc, &args, empty.as_deref())? == Printed::ReaderGone {
            // `podnet stats --watch | head -1`: nobody reads any more. Returning drops the
            // tracker, which detaches everything.
            info!("standard output is a closed pipe: detaching");
            return Ok(Outcome::Done);
        }
        if last {
            return Ok(Outcome::Done);
        }
        prev = now;
        if last_refresh.elapsed() >= refresh_every {
            // Pods come and go: attach to new ones, let go of deleted ones.
            let result = refresh_pods(&opts, &mounts, &mut tracker, &mut state).await;
            if let Some(notice) = outage_step(&mut outage, result, &state, refresh_every)? {
                state.notices.push(notice);
            }
            last_refresh = Instant::now();
        }
    }
}

/// Raises the soft limit on open files to the hard limit: every pod holds five BPF link fds
/// (and the sampling opens /proc files), so the usual soft limit of 1024 caps podnet near 200
/// pods. Returns a warning when the limit cannot be raised.
pub fn raise_fd_limit() -> Option<String> {
    use nix::sys::resource::{getrlimit, setrlimit, Resource};
    let (soft, hard) = match getrlimit(Resource::RLIMIT_NOFILE) {
        Ok(l) => l,
        Err(e) => {
            return Some(format!(
                "cannot read the open-files limit (RLIMIT_NOFILE): {e}"
            ))
        }
    };
    if soft >= hard {
        return None;
    }
    match setrlimit(Resource::RLIMIT_NOFILE, hard, hard) {
        Ok(()) => {
            debug!("raised the open-files limit from {soft} to {hard}");
            None
        }
        Err(e) => Some(format!(
            "cannot raise the open-files limit from {soft} to {hard} ({e}): each pod needs 5 \
             file descriptors; raise it with `ulimit -n` or LimitNOFILE="
        )),
    }
}

/// SIGINT and SIGTERM, listened to for the whole run: once podnet handles them they no longer
/// kill it, so a listener must exist at every moment, including while a report is rendered.
struct Stop {
    int: tokio::signal::unix::Signal,
    term: tokio::signal::unix::Signal,
}

impl Stop {
    fn install() -> Result<Stop> {
        use tokio::signal::unix::{signal, SignalKind};
        Ok(Stop {
            int: signal(SignalKind::interrupt()).context("installing a SIGINT handler")?,
            term: signal(SignalKind::terminate()).context("installing a SIGTERM handler")?,
        })
    }

    /// Waits until `deadline`, unless SIGINT or SIGTERM comes first (or came while podnet was
    /// busy since the last call), or the watch screen has a key or a resize.
    async fn wait(&mut self, deadline: tokio::time::Instant, screen: Option<&mut Screen>) -> Wake {
        let input = async {
            match screen {
                Some(s) => s.next_event().await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = tokio::time::sleep_until(deadline) => Wake::Elapsed,
            _ = self.int.recv() => Wake::Interrupt,
            _ = self.term.recv() => Wake::Terminate,
            ev = input => Wake::Input(ev),
        }
    }
}

/// What ended a [`Stop::wait`].
#[derive(Debug, PartialEq, Eq)]
enum Wake {
    Elapsed,
    /// A key or a resize on the watch screen.
    Input(crossterm::event::Event),
    /// SIGINT (Ctrl-C).
    Interrupt,
    /// SIGTERM (`kill`, or Kubernetes stopping the pod).
    Terminate,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_codes() {
        assert_eq!(Outcome::Done.exit_code(), 0);
        assert_eq!(Outcome::Interrupted.exit_code(), 130);
        assert_eq!(Outcome::Terminated.exit_code(), 143);
    }

    #[test]
    fn the_open_files_limit_is_raised_to_the_hard_limit() {
        use nix::sys::resource::{getrlimit, setrlimit, Resource};
        let (_, hard) = getrlimit(Resource::RLIMIT_NOFILE).unwrap();
        // Lower the soft limit (allowed without privileges), as a login shell's 1024 would be.
        setrlimit(Resource::RLIMIT_NOFILE, hard.min(256), hard).unwrap();
        assert_eq!(raise_fd_limit(), None);
        assert_eq!(getrlimit(Resource::RLIMIT_NOFILE).unwrap(), (hard, hard));
        // Already raised: nothing to do, nothing to say.
        assert_eq!(raise_fd_limit(), None);
    }
}
