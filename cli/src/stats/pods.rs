//! The pods a `podnet stats` run follows: discovered, resolved and attached at the start, listed
//! again every refresh interval while watching, with one warning when refreshing starts failing
//! and one note when it works again.

use std::time::{Duration, Instant};

use anyhow::{anyhow, Result};
use log::debug;

use crate::aggregate::TrackedPod;
use crate::attach::Tracker;
use crate::discover::{self, DiscoverOptions, Discovery, PodsFrom, Source};
use crate::resolve::{self, Mounts};

pub(super) struct State {
    pub(super) node: String,
    pub(super) pods: Vec<TrackedPod>,
    /// Warnings that hold for the whole run (missing tracepoints, the fd limit).
    pub(super) lasting: Vec<String>,
    /// Warnings of the last successful refresh (pods not followed, fallbacks).
    pub(super) warnings: Vec<String>,
    /// Said in the next report only: a refresh outage starting or ending.
    pub(super) notices: Vec<String>,
    /// Where the first list came from.
    pub(super) source: Option<Source>,
    /// `--pods-from -`: standard input is read once; later refreshes re-resolve these pods.
    pub(super) stdin_pods: Option<Discovery>,
    /// The last list was empty under -n/-l: what to say instead of an empty table.
    pub(super) empty: Option<String>,
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
pub(super) enum RefreshError {
    /// Asking again cannot help (a malformed kubeconfig, a bad selector): the run ends.
    Permanent(anyhow::Error),
    /// The server, the network or a file may recover: keep the last known pods.
    Transient(anyhow::Error),
}

impl RefreshError {
    pub(super) fn into_inner(self) -> anyhow::Error {
        match self {
            RefreshError::Permanent(e) | RefreshError::Transient(e) => e,
        }
    }
}

/// A run of failed refreshes.
#[derive(Debug, PartialEq, Eq)]
pub(super) struct Outage {
    failures: u64,
}

/// The phrase that starts the warning of a refresh outage.
pub const REFRESH_FAILED: &str = "refreshing the pod list failed";
/// The phrase that starts the note of its end.
pub const REFRESH_RECOVERED: &str = "refreshing the pod list works again";

/// Folds one refresh's result into the outage state. Returns what to say once (the first failure
/// of an outage, or its end); a permanent failure ends the run.
pub(super) fn outage_step(
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
pub(super) async fn refresh_pods(
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

#[cfg(test)]
mod tests {
    use super::*;

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
}
