//! `podnet stats`: the whole pipeline, discover → resolve → attach → sample → aggregate → render,
//! once or every interval (`--watch`).

use std::collections::HashMap;
use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant, SystemTime};

use anyhow::{anyhow, Context, Result};
use clap::Args;
use log::{debug, info};

use crate::aggregate::{aggregate, TrackedPod, Window};
use crate::attach::Tracker;
use crate::discover::{self, DiscoverOptions, Discovery, PodsFrom, Source};
use crate::model::{CounterScope, PodStatsList};
use crate::render::screen::Screen;
use crate::render::{self, Output, SortKey, TableOptions};
use crate::resolve::{self, Mounts};
use crate::sample::{self, Snapshot};

/// Options of `podnet stats`. Flags follow kubectl where one exists.
#[derive(Args, Debug, Clone)]
pub struct StatsArgs {
    /// Sampling interval: `1s`, `500ms`, `1.5s`, `2m`, `1m30s`, `1h`, or plain seconds (`2`,
    /// `0.5`); from 10ms to 24h.
    #[arg(long, default_value = "1s", value_parser = parse_duration, allow_hyphen_values = true)]
    pub interval: Duration,

    /// Keep sampling and redraw every interval until Ctrl-C or `q`, like top. In a terminal: a
    /// full screen sorted by the current rate (keys: q quit, p pause, < and > move the sort
    /// column, n r o m s f sort by name, rate, opens, memory, sockets, fds); when standard
    /// output is not a terminal (or TERM=dumb): one table after another. With `-o json`: JSON
    /// Lines, one complete document per interval. Counters count since podnet started.
    #[arg(short, long)]
    pub watch: bool,

    /// With --watch, stop after this many intervals (at least 1).
    #[arg(long, value_name = "N", requires = "watch", value_parser = clap::value_parser!(u64).range(1..))]
    pub iterations: Option<u64>,

    /// Output format: `table`, `wide` (more columns), or `json` (schema podnet/v1).
    #[arg(short, long, value_enum, default_value = "table")]
    pub output: Output,

    /// Sort rows, and `-o json` items, by this column (largest first; `name` sorts by
    /// namespace/pod; `rate` is receive plus send rate) [default: `net` for a table, `rate`
    /// with --watch, `name` for JSON].
    #[arg(long, value_enum, value_name = "KEY")]
    pub sort: Option<SortKey>,

    /// Also show one row per container under its pod (a CONTAINER column; every row carries its
    /// namespace and pod).
    #[arg(long)]
    pub containers: bool,

    /// Leave out the table's header row (as kubectl's --no-headers).
    #[arg(long)]
    pub no_headers: bool,

    /// Add a last row, `TOTAL`, summing every pod (as kubectl top's --sum).
    #[arg(long)]
    pub sum: bool,

    /// Only pods in this namespace.
    #[arg(short, long, conflicts_with = "all_namespaces")]
    pub namespace: Option<String>,

    /// Pods in every namespace (the default).
    #[arg(short = 'A', long)]
    pub all_namespaces: bool,

    /// Label selector, as kubectl takes it: `app=web`, `tier!=db,env in (prod,staging)`.
    #[arg(short = 'l', long)]
    pub selector: Option<String>,

    /// This node's name, as the API server knows it [default: $NODE_NAME, else the hostname].
    #[arg(long)]
    pub node: Option<String>,

    /// Path to a kubeconfig file [default: $KUBECONFIG, in-cluster service account,
    /// ~/.kube/config, or under sudo the invoking user's ~/.kube/config].
    #[arg(long, value_name = "FILE")]
    pub kubeconfig: Option<PathBuf>,

    /// The kubeconfig context to use.
    #[arg(long)]
    pub context: Option<String>,

    /// Read pods from the output of `kubectl get pods -o json` (a file, or `-` for stdin) instead
    /// of asking the API server.
    #[arg(long, value_name = "FILE|-")]
    pub pods_from: Option<String>,

    /// Capacity: the most pods podnet tracks at once (its BPF maps are sized from this, 8
    /// cgroups per pod). Pods beyond it are reported in warnings, never counted wrong.
    #[arg(long, default_value_t = 1024, value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    pub max_pods: u32,

    /// Where `podnet agent` pins its state: when it holds an agent's maps, podnet reads them for
    /// the window instead of attaching programs of its own.
    #[arg(long, default_value = crate::pins::DEFAULT_DIR, value_name = "DIR")]
    pub pin_dir: PathBuf,

    /// With --watch, how often to list the pods again (attach to new ones, let go of deleted
    /// ones, register restarted containers); never more often than --interval. A failed
    /// refresh keeps the pods known before: one warning when it starts failing, one note when it
    /// works again.
    #[arg(long, value_name = "DURATION", default_value = "10s", value_parser = parse_duration)]
    pub refresh_interval: Duration,

    /// How file opens are counted: `kprobe` (on the open path, only opens pay), `tracepoint`
    /// (the syscall tracepoints: every syscall on the node pays while podnet runs), or `auto`
    /// (kprobes where the kernel has them, else tracepoints with a warning).
    #[arg(long, value_enum, default_value = "auto", value_name = "PROBE")]
    pub open_probe: crate::attach::OpenProbe,
}

/// Parses `1s`, `500ms`, `1.5s`, `2m`, `1m30s`, `1h`, `1.5` (plain seconds); from 10ms to 24h.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let t = s.trim();
    let bad = || format!("interval `{t}` is not a duration like 1s, 500ms, 1m30s or 1h");
    let (negative, body) = match t.strip_prefix('-') {
        Some(b) => (true, b),
        None => (false, t.strip_prefix('+').unwrap_or(t)),
    };
    let number = |c: char| c.is_ascii_digit() || c == '.';
    let secs = if !body.is_empty() && body.chars().all(number) {
        body.parse::<f64>().map_err(|_| bad())?
    } else {
        let mut secs = 0.0;
        let mut rest = body;
        if rest.is_empty() {
            return Err(bad());
        }
        while !rest.is_empty() {
            let n = rest.find(|c: char| !number(c)).unwrap_or(rest.len());
            let (num, tail) = rest.split_at(n);
            let u = tail
                .find(|c: char| !c.is_ascii_alphabetic())
                .unwrap_or(tail.len());
            let (unit, tail) = tail.split_at(u);
            let v: f64 = num.parse().map_err(|_| bad())?;
            let scale = match unit {
                "ms" => 0.001,
                "s" => 1.0,
                "m" => 60.0,
                "h" => 3600.0,
                "" => return Err(bad()),
                _ => {
                    return Err(format!(
                        "interval `{t}`: unknown unit `{unit}` (use ms, s, m or h)"
                    ))
                }
            };
            secs += v * scale;
            rest = tail;
        }
        secs
    };
    let secs = if negative { -secs } else { secs };
    if !(0.01..=86_400.0).contains(&secs) {
        return Err(format!("interval `{t}` must be between 10ms and 24h"));
    }
    Ok(Duration::from_secs_f64(secs))
}

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
    let agent = crate::pins::exists(&args.pin_dir);
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

    let node = args
        .node
        .clone()
        .unwrap_or_else(discover::default_node_name);
    let opts = DiscoverOptions {
        kubeconfig: args.kubeconfig.clone(),
        context: args.context.clone(),
        node: node.clone(),
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

/// The sort when `--sort` is not given: the busiest network first in a table, the current
/// rate on a watch screen, namespace/pod for JSON (stable from one document to the next).
fn effective_sort(args: &StatsArgs) -> SortKey {
    args.sort.unwrap_or(match (args.output, args.watch) {
        (Output::Json, _) => SortKey::Name,
        (_, true) => SortKey::Rate,
        (_, false) => SortKey::Net,
    })
}

fn table_options(args: &StatsArgs) -> TableOptions {
    TableOptions {
        wide: args.output == Output::Wide,
        containers: args.containers,
        sort: effective_sort(args),
        no_headers: args.no_headers,
        sum: args.sum,
        rates_only: false,
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

struct State {
    node: String,
    pods: Vec<TrackedPod>,
    /// Warnings that hold for the whole run (missing tracepoints, the fd limit).
    lasting: Vec<String>,
    /// Warnings of the last successful refresh (pods not followed, fallbacks).
    warnings: Vec<String>,
    /// Said in the next report only: a refresh outage starting or ending.
    notices: Vec<String>,
    /// Where the first list came from.
    source: Option<Source>,
    /// `--pods-from -`: standard input is read once; later refreshes re-resolve these pods.
    stdin_pods: Option<Discovery>,
    /// The last list was empty under -n/-l: what to say instead of an empty table.
    empty: Option<String>,
}

/// What an empty list under `-n`/`-l` means, in kubectl's words ("No resources found in shop
/// namespace.").
fn no_pods_found(opts: &DiscoverOptions) -> String {
    let mut s = format!("No pods found on node {}", opts.node);
    match &opts.namespace {
        Some(ns) => s.push_str(&format!(" in namespace {ns}")),
        None => s.push_str(" in any namespace"),
    }
    if let Some(sel) = &opts.selector {
        s.push_str(&format!(" matching -l {sel}"));
    }
    s.push('.');
    s
}

/// The warning for a source that lists no pod on the node while the cgroup tree holds pod
/// directories: the node name is the usual culprit (a hostname that is not the node's name).
fn node_name_warning(source: &Source, node: &str, pod_dirs: usize) -> String {
    let from = match source {
        Source::Api { server } => format!("the API server {server}"),
        Source::File { path } => format!("--pods-from {path}"),
        Source::CgroupScan { .. } => "the cgroup scan".into(),
    };
    format!(
        "{from} lists no pods on node `{node}`, but this machine's cgroup tree holds {pod_dirs} pod \
         directories: is `{node}` this node's name as the cluster knows it? Pass --node NAME or \
         set NODE_NAME (`kubectl get nodes` lists the names; podnet defaults to NODE_NAME, else \
         the hostname)"
    )
}

/// Why a refresh of the pod list failed.
#[derive(Debug)]
enum RefreshError {
    /// Asking again cannot help (a malformed kubeconfig, a bad selector): the run ends.
    Permanent(anyhow::Error),
    /// The server, the network or a file may recover: keep the last known pods.
    Transient(anyhow::Error),
}

impl RefreshError {
    fn into_inner(self) -> anyhow::Error {
        match self {
            RefreshError::Permanent(e) | RefreshError::Transient(e) => e,
        }
    }
}

/// A run of failed refreshes.
#[derive(Debug, PartialEq, Eq)]
struct Outage {
    failures: u64,
}

/// The phrase that starts the warning of a refresh outage.
pub const REFRESH_FAILED: &str = "refreshing the pod list failed";
/// The phrase that starts the note of its end.
pub const REFRESH_RECOVERED: &str = "refreshing the pod list works again";

/// Folds one refresh's result into the outage state. Returns what to say once (the first failure
/// of an outage, or its end); a permanent failure ends the run.
fn outage_step(
    outage: &mut Option<Outage>,
    result: Result<(), RefreshError>,
    state: &State,
    every: Duration,
) -> Result<Option<String>> {
    match result {
        Ok(()) => Ok(outage.take().map(|o| {
            format!(
                "{REFRESH_RECOVERED} after {} failed attempt{}: the pods reported are current again",
                o.failures,
                if o.failures == 1 { "" } else { "s" }
            )
        })),
        Err(RefreshError::Permanent(e)) => Err(e),
        Err(RefreshError::Transient(e)) => {
            debug!("{REFRESH_FAILED}: {e:#}");
            match outage {
                Some(o) => {
                    o.failures += 1;
                    Ok(None)
                }
                None => {
                    *outage = Some(Outage { failures: 1 });
                    Ok(Some(format!(
                        "{REFRESH_FAILED}: {e:#}; still reporting the {} pods known before and \
                         retrying every {:.1}s (said once; a note follows when it works again)",
                        state.pods.len(),
                        every.as_secs_f64()
                    )))
                }
            }
        }
    }
}

/// Discovers and resolves the pods, then makes the tracker follow them. On failure the state
/// (pods and their warnings) is left as it was.
async fn refresh_pods(
    opts: &DiscoverOptions,
    mounts: &Mounts,
    tracker: &mut Tracker,
    state: &mut State,
) -> Result<(), RefreshError> {
    let t = Instant::now();
    let found = match (&opts.pods_from, &state.stdin_pods) {
        (Some(PodsFrom::Stdin), Some(d)) => d.clone(),
        _ => discover::discover(opts).await.map_err(|e| {
            if e.is_permanent() {
                RefreshError::Permanent(e.into())
            } else {
                RefreshError::Transient(e.into())
            }
        })?,
    };
    debug!(
        "discovered {} pods from {:?} in {:?}",
        found.pods.len(),
        found.source,
        t.elapsed()
    );
    if opts.pods_from == Some(PodsFrom::Stdin) {
        state.stdin_pods = Some(found.clone());
    }
    // An API server that answered the first list and is unreachable now: the cgroup scan would
    // replace named pods by UIDs. That is an outage, not a new source.
    if matches!(found.source, Source::CgroupScan { .. })
        && matches!(state.source, Some(Source::Api { .. }))
    {
        let why = found
            .warnings
            .iter()
            .find(|w| w.starts_with("cannot reach"))
            .map(|w| w.split(": pods are known by UID only").next().unwrap_or(w))
            .unwrap_or("the API server cannot be reached");
        return Err(RefreshError::Transient(anyhow!("{why}")));
    }
    // Also looks in the v1 hierarchy when the v2 tree has no pods, to say so plainly.
    let index = resolve::scan_mounts(mounts).map_err(|e| RefreshError::Transient(e.into()))?;
    let mut warnings = found.warnings;
    let filtered = opts.namespace.is_some() || opts.selector.is_some();
    let listed = matches!(found.source, Source::Api { .. } | Source::File { .. });
    state.empty = None;
    if found.pods.is_empty() && listed {
        if filtered {
            state.empty = Some(no_pods_found(opts));
        } else if !index.pods.is_empty() {
            warnings.push(node_name_warning(
                &found.source,
                &opts.node,
                index.pods.len(),
            ));
        }
    }
    let resolved = resolve::resolve(&found.pods, &index);
    warnings.extend(resolved.warnings);
    let (pods, mut w) = tracker.follow(&resolved.pods, mounts);
    warnings.append(&mut w);
    for w in &warnings {
        // Printed with the report (stderr for tables, `warnings` in JSON); logged for RUST_LOG.
        debug!("warning: {w}");
    }
    state.source.get_or_insert(found.source);
    state.warnings = warnings;
    state.pods = pods;
    Ok(())
}

fn report(
    state: &State,
    base: &Snapshot,
    prev: &Snapshot,
    now: &Snapshot,
    tracker: &Tracker,
) -> PodStatsList {
    let cgroups = state.pods.iter().flat_map(|p| {
        std::iter::once((p.cgroup_id, &p.files, &p.cgroup_path)).chain(
            p.containers
                .iter()
                .filter(|c| c.retired.is_none())
                .map(|c| (c.cgroup_id, &c.files, &c.cgroup_path)),
        )
    });
    let gauges: HashMap<_, _> = cgroups
        .map(|(id, files, rel)| (id, sample::read_gauges(files, rel)))
        .collect();
    let window = Window { base, prev, now };
    let mut doc = PodStatsList::new(
        state.node.clone(),
        rfc3339(SystemTime::now()),
        now.at.duration_since(prev.at).as_secs_f64(),
    );
    doc.items = aggregate(&state.pods, &window, &gauges);
    doc.warnings = tracker.variant().warnings();
    doc.file_open_probe = tracker.file_open_probe().map(|p| p.name());
    if doc.file_open_probe.is_none() {
        doc.opens_unknown();
    }
    doc.warnings.extend(state.lasting.iter().cloned());
    doc.warnings.extend(state.warnings.iter().cloned());
    doc.warnings.extend(state.notices.iter().cloned());
    doc.warnings
        .extend(sample::miss_warnings(tracker.capacity(), base, now));
    doc.warnings.extend(sample::gauge_warnings(gauges.values()));
    doc
}

/// What became of a report written to stdout.
#[derive(Debug, PartialEq, Eq)]
enum Printed {
    Written,
    /// Stdout is a pipe whose read end is closed (EPIPE): there is no one left to print for.
    ReaderGone,
}

fn print_report(doc: &PodStatsList, args: &StatsArgs, empty: Option<&str>) -> Result<Printed> {
    let mut out = std::io::stdout().lock();
    let text = match args.output {
        Output::Json => {
            let mut doc = doc.clone();
            render::sort_items(&mut doc, effective_sort(args));
            if args.watch {
                render::render_json_line(&doc)
            } else {
                render::render_json(&doc)
            }
        }
        Output::Table | Output::Wide => {
            let table = render::render_table_with(doc, &table_options(args));
            if args.watch {
                // Not a terminal (or TERM=dumb): one frame after another, line by line.
                let mut s = format!(
                    "{} · {} UTC\n\n{table}",
                    render::screen::header_line(doc, args.interval),
                    render::screen::time_of(doc)
                );
                for w in &doc.warnings {
                    s.push_str(&format!("warning: {w}\n"));
                }
                if let Some(e) = empty {
                    s.push_str(&format!("{e}\n"));
                }
                s
            } else {
                for w in &doc.warnings {
                    eprintln!("warning: {w}");
                }
                if let Some(e) = empty {
                    // Like kubectl's "No resources found": on stderr, the table stays parseable.
                    eprintln!("{e}");
                }
                table
            }
        }
    };
    if text.is_empty() {
        // --no-headers and no pods: nothing at all, as kubectl prints.
        return write_report(&mut out, "");
    }
    let text = if text.ends_with('\n') {
        text
    } else {
        text + "\n"
    };
    write_report(&mut out, &text)
}

/// Writes one report. A closed pipe (`podnet stats | head`) is not an error worth a message, but
/// it ends the run: see [`Printed::ReaderGone`]. Any other failure is an error.
fn write_report(out: &mut impl Write, text: &str) -> Result<Printed> {
    match out.write_all(text.as_bytes()).and_then(|_| out.flush()) {
        Ok(()) => Ok(Printed::Written),
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(Printed::ReaderGone),
        Err(e) => Err(e).context("writing the report to standard output"),
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

/// Formats a time as RFC 3339 UTC with millisecond precision (`2026-11-21T10:00:00.123Z`).
pub fn rfc3339(t: SystemTime) -> String {
    let since = t.duration_since(SystemTime::UNIX_EPOCH).unwrap_or_default();
    let (secs, ms) = (since.as_secs(), since.subsec_millis());
    let (days, rem) = (secs / 86_400, secs % 86_400);
    // Civil date from days since 1970-01-01 (proleptic Gregorian calendar).
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{ms:03}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("1s").unwrap(), Duration::from_secs(1));
        assert_eq!(parse_duration("250ms").unwrap(), Duration::from_millis(250));
        assert_eq!(parse_duration("2m").unwrap(), Duration::from_secs(120));
        assert_eq!(parse_duration("1.5").unwrap(), Duration::from_millis(1500));
        assert!(parse_duration("0s").is_err());
        // `3h` became valid with hours (1h, 1m30s); an unknown unit is still named.
        assert!(parse_duration("3d").unwrap_err().contains("unknown unit"));
        assert!(parse_duration("x").is_err());
        assert_eq!(parse_duration("1h").unwrap(), Duration::from_secs(3600));
        assert_eq!(parse_duration("1m30s").unwrap(), Duration::from_secs(90));
        assert_eq!(parse_duration("1.5s").unwrap(), Duration::from_millis(1500));
        assert_eq!(
            parse_duration("1s500ms").unwrap(),
            Duration::from_millis(1500)
        );
        for bad in ["-1s", "-1", "-1m30s", "25h", "5ms"] {
            let e = parse_duration(bad).unwrap_err();
            assert!(e.contains("between 10ms and 24h"), "{bad}: {e}");
        }
        for bad in ["", "s", "1.2.3s", "1 s x", "1s-2s"] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn exit_codes() {
        assert_eq!(Outcome::Done.exit_code(), 0);
        assert_eq!(Outcome::Interrupted.exit_code(), 130);
        assert_eq!(Outcome::Terminated.exit_code(), 143);
    }

    /// A writer that fails every write with `kind`.
    struct Failing(std::io::ErrorKind);

    impl Write for Failing {
        fn write(&mut self, _: &[u8]) -> std::io::Result<usize> {
            Err(self.0.into())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Err(self.0.into())
        }
    }

    #[test]
    fn a_closed_pipe_ends_the_run_and_other_write_errors_are_errors() {
        let mut buf = Vec::new();
        assert_eq!(write_report(&mut buf, "x\n").unwrap(), Printed::Written);
        assert_eq!(buf, b"x\n");
        let gone = write_report(&mut Failing(std::io::ErrorKind::BrokenPipe), "x\n").unwrap();
        assert_eq!(gone, Printed::ReaderGone);
        let e = write_report(&mut Failing(std::io::ErrorKind::StorageFull), "x\n").unwrap_err();
        assert!(format!("{e:#}").contains("standard output"), "{e:#}");
    }

    fn state() -> State {
        State {
            node: "n".into(),
            pods: Vec::new(),
            lasting: Vec::new(),
            warnings: Vec::new(),
            notices: Vec::new(),
            source: None,
            stdin_pods: None,
            empty: None,
        }
    }

    #[test]
    fn a_refresh_outage_is_said_once_and_its_end_once() {
        let st = state();
        let every = Duration::from_secs(10);
        let transient = || {
            Err(RefreshError::Transient(anyhow!(
                "the API server failed with 500"
            )))
        };
        let mut outage = None;
        let said = outage_step(&mut outage, transient(), &st, every).unwrap();
        let said = said.expect("the first failure is said");
        assert!(said.starts_with(REFRESH_FAILED), "{said}");
        assert!(
            said.contains("500") && said.contains("every 10.0s"),
            "{said}"
        );
        for _ in 0..4 {
            assert_eq!(
                outage_step(&mut outage, transient(), &st, every).unwrap(),
                None
            );
        }
        assert_eq!(outage, Some(Outage { failures: 5 }));
        let note = outage_step(&mut outage, Ok(()), &st, every)
            .unwrap()
            .unwrap();
        assert!(note.starts_with(REFRESH_RECOVERED), "{note}");
        assert!(note.contains("after 5 failed attempts"), "{note}");
        assert_eq!(outage, None);
        assert_eq!(outage_step(&mut outage, Ok(()), &st, every).unwrap(), None);
        // A failure that cannot heal ends the run, in or out of an outage.
        let permanent = Err(RefreshError::Permanent(anyhow!("kubeconfig is not valid")));
        assert!(outage_step(&mut outage, permanent, &st, every).is_err());
    }

    #[test]
    fn only_errors_that_cannot_heal_are_permanent() {
        use crate::discover::DiscoverError as E;
        let server = "http://s".to_string();
        assert!(E::KubeconfigInvalid {
            path: "/k".into(),
            reason: "bad".into()
        }
        .is_permanent());
        assert!(E::NoNode.is_permanent());
        for e in [
            E::ServerError {
                server: server.clone(),
                code: 500,
                message: String::new(),
            },
            E::Unauthorized {
                server: server.clone(),
                message: String::new(),
            },
            E::Forbidden {
                server,
                message: String::new(),
            },
            E::PodsFrom {
                path: "/p".into(),
                reason: "gone".into(),
            },
        ] {
            assert!(!e.is_permanent(), "{e}");
        }
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

    #[test]
    fn empty_lists_say_why_like_kubectl() {
        let mut opts = DiscoverOptions {
            node: "n1".into(),
            namespace: Some("shop".into()),
            ..DiscoverOptions::default()
        };
        assert_eq!(
            no_pods_found(&opts),
            "No pods found on node n1 in namespace shop."
        );
        opts.namespace = None;
        opts.selector = Some("app=web".into());
        assert_eq!(
            no_pods_found(&opts),
            "No pods found on node n1 in any namespace matching -l app=web."
        );
        let api = Source::Api {
            server: "https://10.0.0.1:6443".into(),
        };
        let w = node_name_warning(&api, "laptop", 3);
        assert!(
            w.starts_with("the API server https://10.0.0.1:6443 lists no pods on node `laptop`"),
            "{w}"
        );
        assert!(
            w.contains("holds 3 pod directories") && w.contains("--node NAME"),
            "{w}"
        );
        assert!(w.contains("NODE_NAME"), "{w}");
    }

    #[test]
    fn timestamps() {
        let at = |s| SystemTime::UNIX_EPOCH + Duration::from_secs(s);
        // Millisecond precision since the issue "podnet stats feels like top": the expectations
        // gained `.000`.
        assert_eq!(rfc3339(at(0)), "1970-01-01T00:00:00.000Z");
        // 2026-11-21T10:00:00Z
        assert_eq!(rfc3339(at(1_795_255_200)), "2026-11-21T10:00:00.000Z");
        // A leap day: 2024-02-29T23:59:59Z
        assert_eq!(rfc3339(at(1_709_251_199)), "2024-02-29T23:59:59.000Z");
        let ms = at(1_709_251_199) + Duration::from_micros(123_999);
        assert_eq!(rfc3339(ms), "2024-02-29T23:59:59.123Z");
    }
}
