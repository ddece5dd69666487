//! `podnet agent`: the always-on mode, one per node (the DaemonSet).
//!
//! Pods come from a kube watch scoped to this node (never from periodic lists). The pods known
//! are resolved against the cgroup tree and followed every half second while anything is
//! unsettled (the watch changed the pod set, or a running pod has no cgroup yet), so a pod whose
//! directory appears after its watch event is attached within a second; once every pod is
//! followed, every five seconds, enough to register restarted containers (whose traffic counts
//! in their pod's totals meanwhile) without rescanning a large node's tree twice a second. The
//! loaded object and every attachment are pinned under `--pin-dir` ([`crate::pins`]): a restarted
//! agent adopts them and the counters go on, also while no agent runs. An HTTP server serves
//! `/metrics`, `/stats`, `/healthz` and `/readyz`.

pub mod http;
pub mod metrics;
mod watch;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use anyhow::{Context, Result};
use log::{debug, info, warn};

use crate::aggregate::{TrackedPod, Window};
use crate::attach::Tracker;
use crate::discover;
use crate::model::{PodInfo, PodStatsList};
use crate::pins;
use crate::resolve::{self, Mounts};
use crate::sample::{self, Snapshot};

/// Where the agent listens by default.
pub const DEFAULT_LISTEN: &str = "0.0.0.0:9983";
/// How often the known pods are resolved against the cgroup tree and followed while something is
/// unsettled.
const SYNC_EVERY: Duration = Duration::from_millis(500);
/// How often when every running pod the watch reported is followed. Each sync walks the whole
/// cgroup tree: at 1000 pods, twice a second cost about 9 % of a core (testing/BENCHMARKS.md).
const SETTLED_SYNC_EVERY: Duration = Duration::from_secs(5);

/// `podnet agent`.
#[derive(clap::Args, Debug, Clone)]
#[command(after_help = "\
Endpoints:
  GET /metrics   Prometheus text format (OpenMetrics when asked), one series per live pod
  GET /stats     a podnet/v1 PodStatsList, counters cumulative since the pods were attached
  GET /healthz   200 once the programs are loaded
  GET /readyz    200 once the first complete list of pods has been attached

State is pinned under --pin-dir and survives restarts: a new agent adopts it and the counters go
on (traffic while no agent runs is still counted). Pins from another podnet build (one whose BPF
object differs) are removed instead, and the counters start again from 0. `podnet agent
--uninstall` removes it all.
SIGTERM or SIGINT: exit 0 with everything left pinned.")]
pub struct AgentArgs {
    /// Address to serve /metrics, /stats, /healthz and /readyz on.
    #[arg(long, default_value = DEFAULT_LISTEN, value_name = "ADDR:PORT")]
    pub listen: SocketAddr,
    #[command(flatten)]
    pub cluster: discover::ClusterArgs,
    /// Where to pin maps, programs and links (a bpffs directory, made with mode 0700).
    #[arg(long, default_value = pins::DEFAULT_DIR, value_name = "DIR")]
    pub pin_dir: PathBuf,
    /// Detach everything the agent pinned under --pin-dir, remove the pins, and exit 0.
    #[arg(long)]
    pub uninstall: bool,
    /// Capacity of the counters map, in pods (8 cgroups each); read once, when the pins are
    /// made.
    #[arg(long, default_value_t = 1024, value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    pub max_pods: u32,
    /// Export per-container series (label `container`) instead of per-pod ones.
    #[arg(long)]
    pub containers: bool,
}

/// What the HTTP server and the sync loop share.
pub struct Shared {
    /// The loaded (or adopted) object and the pods it follows.
    pub tracker: Tracker,
    /// The pods the watch reported, by uid.
    pub known: BTreeMap<String, PodInfo>,
    /// The pods followed after the last sync.
    pub tracked: Vec<TrackedPod>,
    /// Warnings of the last sync (pods without a cgroup yet, ...).
    pub warnings: Vec<String>,
    /// Warnings of the start that hold as long as the agent runs (file opens not counted or
    /// not pinned, ...).
    pub lasting: Vec<String>,
    /// Why /readyz says no; `None` once the first complete list of pods is attached.
    pub not_ready: Option<String>,
    /// The watch delivered a complete list that the next sync has not yet followed.
    pub listed: bool,
    /// The watch changed the known pods since the last sync read the cgroup tree (a complete
    /// list sets it too, beside `listed`).
    pub changed: bool,
    /// At the last sync every known pod that is not finished (Succeeded, Failed) had a cgroup.
    pub settled: bool,
    /// When the agent first attached its pod set (for `intervalSeconds`).
    pub since: Instant,
    pub node: String,
    pub containers: bool,
}

impl Shared {
    /// The cumulative `podnet/v1` document (counters since attach, gauges read now) and the
    /// snapshot it was made from.
    pub fn stats(&self) -> Result<(PodStatsList, Snapshot)> {
        let now = Snapshot::read(self.tracker.object())?;
        let zero = Snapshot::zero(self.since);
        let window = Window {
            base: &zero,
            prev: &zero,
            now: &now,
        };
        let mut doc = PodStatsList::new(
            self.node.clone(),
            crate::stats::rfc3339(SystemTime::now()),
            now.at.duration_since(self.since).as_secs_f64(),
        );
        doc.items = crate::aggregate::items(&self.tracked, &window);
        doc.counters = crate::model::CounterScope::Cumulative;
        doc.warnings = self.tracker.variant().warnings();
        doc.file_open_probe = self.tracker.file_open_probe().map(|p| p.name());
        if doc.file_open_probe.is_none() {
            doc.opens_unknown();
        }
        doc.warnings.extend(self.lasting.iter().cloned());
        doc.warnings.extend(self.warnings.iter().cloned());
        doc.warnings
            .extend(sample::miss_warnings(self.tracker.capacity(), &zero, &now));
        Ok((doc, now))
    }
}

/// Runs `podnet agent`; the exit code.
pub fn main(args: AgentArgs) -> ExitCode {
    // One thread: the work between awaits is short (map reads, a cgroup scan), and the state is
    // behind one mutex anyway.
    let result = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")
        .and_then(|rt| rt.block_on(run(args)));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(args: AgentArgs) -> Result<()> {
    if args.uninstall {
        let n = pins::uninstall(&args.pin_dir)?;
        println!(
            "removed {n} pins under {}: nothing of podnet's is attached any more",
            args.pin_dir.display()
        );
        return Ok(());
    }
    crate::privileges::check_privileges()?;
    if let Some(w) = crate::stats::raise_fd_limit() {
        warn!("{w}");
    }
    let mounts = Mounts::detect().context("reading /proc/self/mountinfo")?;
    mounts.require_cgroup2()?;
    let opts = args.cluster.discover_options();
    let node = opts.node.clone();
    let mut config_warnings = Vec::new();
    let config = discover::watch_config(&opts, &mut config_warnings)
        .await?
        .context(
            "no Kubernetes API configured: the agent watches the API for this node's pods \
             (run it in-cluster, or pass --kubeconfig FILE)",
        )?;
    for w in config_warnings {
        warn!("{w}");
    }
    let client = kube::Client::try_from(config).context("building the Kubernetes client")?;
    // Everything that can fail for want of configuration is checked before anything is pinned:
    // a failed start must leave nothing attached.
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("listening on {} (--listen)", args.listen))?;
    let (mut tracker, adopted) = Tracker::load_pinned(args.max_pods, &args.pin_dir)?;
    let mut warnings = match tracker.attach_file_opens(crate::attach::OpenProbe::Auto) {
        Ok(w) => w,
        Err(e) => {
            if !adopted {
                // Nothing of this start may stay attached.
                drop(tracker);
                let _ = pins::uninstall(&args.pin_dir);
            }
            return Err(e);
        }
    };
    info!(
        "{} the BPF object under {}; node {node}",
        if adopted {
            "adopted"
        } else {
            "loaded and pinned"
        },
        args.pin_dir.display()
    );
    for w in &warnings {
        warn!("{w}");
    }
    let shared = Arc::new(Mutex::new(Shared {
        tracker,
        known: BTreeMap::new(),
        tracked: Vec::new(),
        warnings: Vec::new(),
        lasting: std::mem::take(&mut warnings),
        not_ready: Some("the first list of pods has not arrived yet".into()),
        listed: false,
        changed: true,
        settled: false,
        since: Instant::now(),
        node: node.clone(),
        containers: args.containers,
    }));

    info!(
        "serving /metrics, /stats, /healthz and /readyz on {}",
        args.listen
    );
    tokio::spawn(http::serve(listener, shared.clone()));

    tokio::spawn(watch::run(client, node, shared.clone()));

    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .context("installing a SIGTERM handler")?;
    let mut int = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt())
        .context("installing a SIGINT handler")?;
    let mut tick = tokio::time::interval(SYNC_EVERY);
    let mut last_sync: Option<Instant> = None;
    loop {
        tokio::select! {
            _ = tick.tick() => {
                let due = {
                    let s = shared.lock().expect("agent state");
                    s.changed || !s.settled
                        || last_sync.is_none_or(|t| t.elapsed() >= SETTLED_SYNC_EVERY)
                };
                if due {
                    sync(&shared, &mounts);
                    last_sync = Some(Instant::now());
                }
            }
            _ = term.recv() => break,
            _ = int.recv() => break,
        }
    }
    info!(
        "stopping; everything stays pinned under {}",
        args.pin_dir.display()
    );
    Ok(())
}

/// Resolves the known pods against the cgroup tree and follows them: attaches new ones (pinned),
/// registers new containers, detaches and forgets deleted ones.
fn sync(shared: &Mutex<Shared>, mounts: &Mounts) {
    let mut s = shared.lock().expect("agent state");
    let pods: Vec<PodInfo> = s.known.values().cloned().collect();
    let index = match resolve::scan_mounts(mounts) {
        Ok(i) => i,
        Err(e) => {
            warn!("scanning the cgroup tree: {e}");
            return;
        }
    };
    // The tree was read: what the watch changed up to now is followed below (a failed scan
    // leaves it to the next tick).
    s.changed = false;
    let resolved = resolve::resolve(&pods, &index);
    let found: std::collections::HashSet<&str> =
        resolved.pods.iter().map(|p| p.info.uid.as_str()).collect();
    let settled = pods.iter().all(|p| {
        matches!(p.phase.as_deref(), Some("Succeeded" | "Failed")) || found.contains(p.uid.as_str())
    });
    let (tracked, mut warnings) = s.tracker.follow(&resolved.pods, mounts);
    warnings.splice(0..0, resolved.warnings);
    if tracked.len() != s.tracked.len() {
        debug!("following {} pods", tracked.len());
    }
    s.tracked = tracked;
    s.warnings = warnings;
    s.settled = settled;
    if s.listed {
        s.listed = false;
        if s.not_ready.is_some() {
            // The first complete list is attached: what an earlier agent pinned for pods that
            // are gone now can go.
            s.tracker.forget_unknown();
            s.not_ready = None;
            info!("ready: following {} pods", s.tracked.len());
        }
    }
}
