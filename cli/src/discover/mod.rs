//! Discover the pods on this node.
//!
//! Three sources, in this order of preference:
//! 1. `--pods-from FILE|-`: the output of `kubectl get pods -o json`, filtered here by node,
//!    namespace and label selector exactly as the API server would.
//! 2. The Kubernetes API server: one node-scoped list (`fieldSelector=spec.nodeName=<node>`, plus
//!    the label selector, in the namespace when `-n` is given). The client configuration is found
//!    like kubectl finds it: `--kubeconfig` (with `--context`), `KUBECONFIG`, the in-cluster service
//!    account, `~/.kube/config`, and under `sudo` the invoking user's `~/.kube/config`. Plain-http
//!    servers (`kubectl proxy`) work.
//! 3. When no API is configured at all, or the server cannot be reached: a scan of the local cgroup
//!    tree, which knows pods by UID only. A warning says what happened and how to fix it.
//!
//! Server answers that mean a misconfiguration (401, 403, 5xx, a bad kubeconfig) are errors, not
//! fallbacks: each [`DiscoverError`] names its fix.
//!
//! One file per job: `kubeconfig` chooses and loads the client configuration, `api` lists the
//! pods and classifies its failures, `pods_from` reads `--pods-from`, `selector` parses and
//! matches label selectors, `wire` is the Pod JSON both sources share, and `fallback` scans the
//! cgroup tree. This file holds the public entry points and the order the sources are tried in.

mod api;
mod fallback;
mod kubeconfig;
mod pods_from;
mod selector;
mod wire;

use std::path::PathBuf;
use std::time::Duration;

pub use kubeconfig::{
    check_credential_plugins, choose_config, credential_plugins, home_from_passwd,
    sudo_invoker_uid, sudo_user_home, ConfigChoice, ConfigEnv, CredentialPlugin,
};
pub use pods_from::{filter_pods, parse_pod_list, ListedPod};
pub use selector::LabelSelector;
pub use wire::split_container_id;

use crate::model::PodInfo;
use api::{classify_fatal, list_from_api, tune, ApiFailure};
use fallback::fallback;
use kubeconfig::load_config;
use pods_from::from_file;

/// How long to wait for a TCP (and TLS) connection to the API server before falling back to the
/// cgroup scan.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// How long the whole list request may take before podnet gives up on the API server and falls
/// back to the cgroup scan.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// The time bounds of one API request.
#[derive(Debug, Clone, Copy)]
struct Timeouts {
    pub(super) connect: Duration,
    pub(super) request: Duration,
}

const TIMEOUTS: Timeouts = Timeouts {
    connect: CONNECT_TIMEOUT,
    request: REQUEST_TIMEOUT,
};

/// Where `--pods-from` reads from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PodsFrom {
    /// A file holding `kubectl get pods -o json` output.
    File(PathBuf),
    /// Standard input (`--pods-from -`).
    Stdin,
}

/// What to discover and how.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DiscoverOptions {
    /// `--kubeconfig FILE`.
    pub kubeconfig: Option<PathBuf>,
    /// `--context NAME` (a context of the kubeconfig in use).
    pub context: Option<String>,
    /// This node's name (`--node`, default [`default_node_name`]).
    pub node: String,
    /// `-n NAMESPACE`; `None` is every namespace.
    pub namespace: Option<String>,
    /// `-l SELECTOR`, kubectl syntax.
    pub selector: Option<String>,
    /// `--pods-from FILE|-`: read pods instead of asking the API server.
    pub pods_from: Option<PodsFrom>,
    /// The cgroup2 mount to scan in the fallback; `None` finds it in `/proc/self/mountinfo`.
    pub cgroup2: Option<PathBuf>,
}

/// Which node this is and how to reach its API server: the flags `podnet stats` and
/// `podnet agent` share (one declaration, so their help cannot drift apart).
#[derive(clap::Args, Debug, Clone, Default, PartialEq, Eq)]
pub struct ClusterArgs {
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
}

impl ClusterArgs {
    /// Discovery of this node's pods through the API these flags name; namespace, selector and
    /// the rest left at their defaults.
    pub fn discover_options(&self) -> DiscoverOptions {
        DiscoverOptions {
            kubeconfig: self.kubeconfig.clone(),
            context: self.context.clone(),
            node: self.node.clone().unwrap_or_else(default_node_name),
            ..DiscoverOptions::default()
        }
    }
}

/// Where the pods came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// The API server at this URL.
    Api {
        /// The server URL, e.g. `https://10.0.0.1:6443` or `http://127.0.0.1:8001`.
        server: String,
    },
    /// `--pods-from`; `path` is `-` for standard input.
    File {
        /// The file read, or `-`.
        path: String,
    },
    /// The fallback scan of the cgroup tree rooted here (pods known by UID only).
    CgroupScan {
        /// The cgroup2 mount scanned.
        root: PathBuf,
    },
}

/// The pods found on this node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Discovery {
    /// Pods, Pending ones included (resolve turns "no cgroup yet" into a warning).
    pub pods: Vec<PodInfo>,
    /// Things the user should know (fallbacks, pods left out); never fatal.
    pub warnings: Vec<String>,
    /// Where the pods came from.
    pub source: Source,
}

/// Why discovery failed. Every message names the fix.
#[derive(Debug, thiserror::Error)]
pub enum DiscoverError {
    /// The node name is empty.
    #[error("the node name is empty: pass --node NAME or set NODE_NAME")]
    NoNode,
    /// The label selector does not parse.
    #[error("invalid label selector `{selector}`: {reason} (examples: app=web, tier!=db, env in (prod,staging), !canary)")]
    Selector {
        /// The selector as given.
        selector: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A kubeconfig file does not exist or cannot be read.
    #[error("cannot read kubeconfig {path}: {reason}: pass an existing file with --kubeconfig, or fix/unset KUBECONFIG")]
    KubeconfigUnreadable {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        reason: String,
    },
    /// A kubeconfig file is not valid.
    #[error("kubeconfig {path} is not valid: {reason}: fix the file (kubectl config view --kubeconfig {path} shows what kubectl makes of it)")]
    KubeconfigInvalid {
        /// The file (or `KUBECONFIG` list).
        path: PathBuf,
        /// The parse or load error.
        reason: String,
    },
    /// `--context` names a context the kubeconfig does not have.
    #[error("context `{context}` not found in kubeconfig {path}: list them with `kubectl config get-contexts`")]
    ContextNotFound {
        /// The kubeconfig.
        path: PathBuf,
        /// The context asked for.
        context: String,
    },
    /// `KUBERNETES_SERVICE_HOST` is set but the service account cannot be loaded.
    #[error("in-cluster configuration failed (KUBERNETES_SERVICE_HOST is set): {reason}: mount the service account token (automountServiceAccountToken: true, see k8s/daemonset.yaml) or pass --kubeconfig")]
    InCluster {
        /// The loader's error.
        reason: String,
    },
    /// The client could not be built from the configuration (TLS material, auth plugin, ...).
    #[error("cannot build a Kubernetes client for {server}: {reason}: check the kubeconfig's cluster and user entries")]
    Client {
        /// The server URL.
        server: String,
        /// The error.
        reason: String,
    },
    /// HTTP 401.
    #[error("the API server {server} rejected our credentials (401 Unauthorized: {message}): check the kubeconfig user / token (an expired token? `kubectl auth whoami` tells)")]
    Unauthorized {
        /// The server URL.
        server: String,
        /// The server's message.
        message: String,
    },
    /// HTTP 403.
    #[error("RBAC forbids listing pods on {server} (403 Forbidden: {message}): grant list on pods, see k8s/rbac.yaml")]
    Forbidden {
        /// The server URL.
        server: String,
        /// The server's message.
        message: String,
    },
    /// HTTP 5xx.
    #[error("the API server {server} failed with {code}: {message}: the server is unhealthy; retry, or pass --pods-from FILE meanwhile")]
    ServerError {
        /// The server URL.
        server: String,
        /// The HTTP status.
        code: u16,
        /// The server's message.
        message: String,
    },
    /// Any other HTTP failure (400, 404, ...).
    #[error("the API server {server} answered {code}: {message}: check the selector (-l) and namespace (-n), and that {server} is a Kubernetes API server")]
    Api {
        /// The server URL.
        server: String,
        /// The HTTP status.
        code: u16,
        /// The server's message.
        message: String,
    },
    /// Under sudo, a kubeconfig whose user runs a credential plugin, which would run as root.
    #[error("refusing the `{kind}` credential plugin ({what}) of user `{user}` in kubeconfig {path}: podnet runs as root under sudo, and so would the plugin, so whoever can edit that file could run anything as root. {why}")]
    CredentialPluginUnderSudo {
        /// The kubeconfig (or `KUBECONFIG` list).
        path: PathBuf,
        /// The kubeconfig user.
        user: String,
        /// `exec` or `auth-provider`.
        kind: &'static str,
        /// The command or provider.
        what: String,
        /// Why it was refused and the fix.
        why: String,
    },
    /// A 200 answer that is not a `PodList`: a proxy or another service at the server URL.
    #[error("{server}{path} answered 200 OK with an object of kind `{kind}`, not a PodList: {server} is not a Kubernetes API server (or a proxy in front of it answers for it); check the kubeconfig's server URL")]
    NotAPodList {
        /// The server URL.
        server: String,
        /// The path asked.
        path: String,
        /// The `kind` of what it answered (or `no kind`).
        kind: String,
    },
    /// The server was reached but the exchange failed (TLS, a bad response).
    #[error("talking to the API server {server} failed: {reason}: check the kubeconfig's server URL and certificate authority")]
    Transport {
        /// The server URL.
        server: String,
        /// The error chain.
        reason: String,
    },
    /// `--pods-from` could not be read or parsed.
    #[error("--pods-from {path}: {reason}: pass the output of `kubectl get pods -o json` (add -A for every namespace)")]
    PodsFrom {
        /// The file, or `-`.
        path: String,
        /// What is wrong.
        reason: String,
    },
    /// The fallback needed a cgroup scan and it was impossible.
    #[error("{why}, and the cgroup tree cannot be scanned instead: {reason}")]
    NoSource {
        /// Why the API was not used.
        why: String,
        /// Why the scan failed (it names its own fix).
        reason: String,
    },
}

impl DiscoverError {
    /// Whether asking again can never succeed without the user changing something: a bad
    /// selector or node name, a kubeconfig that does not parse or lacks the context. A long
    /// `--watch` ends on these; every other failure (a 5xx, a 401 while a token rotates, a file
    /// being rewritten) may heal, and a refresh keeps the last known pods meanwhile.
    pub fn is_permanent(&self) -> bool {
        matches!(
            self,
            DiscoverError::NoNode
                | DiscoverError::Selector { .. }
                | DiscoverError::KubeconfigInvalid { .. }
                | DiscoverError::ContextNotFound { .. }
                | DiscoverError::CredentialPluginUnderSudo { .. }
        )
    }
}

/// The default node name: `NODE_NAME` (a DaemonSet sets it from the downward API), else this
/// machine's hostname in lower case (as the kubelet names its node by default).
pub fn default_node_name() -> String {
    if let Ok(n) = std::env::var("NODE_NAME") {
        let n = n.trim();
        if !n.is_empty() {
            return n.to_string();
        }
    }
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|h| h.trim().to_ascii_lowercase())
        .filter(|h| !h.is_empty())
        .or_else(|| {
            nix::unistd::gethostname()
                .ok()
                .and_then(|h| h.into_string().ok())
                .map(|h| h.to_ascii_lowercase())
        })
        .unwrap_or_default()
}

/// Discovers the pods on `opts.node`, reading the environment of this process.
pub async fn discover(opts: &DiscoverOptions) -> Result<Discovery, DiscoverError> {
    discover_with_env(opts, &ConfigEnv::from_process()).await
}

/// [`discover`] with an explicit environment (for tests, and for callers that already read it).
pub async fn discover_with_env(
    opts: &DiscoverOptions,
    env: &ConfigEnv,
) -> Result<Discovery, DiscoverError> {
    discover_inner(opts, env, TIMEOUTS).await
}

async fn discover_inner(
    opts: &DiscoverOptions,
    env: &ConfigEnv,
    timeouts: Timeouts,
) -> Result<Discovery, DiscoverError> {
    let selector = match opts.selector.as_deref() {
        Some(s) => Some(
            LabelSelector::parse(s).map_err(|reason| DiscoverError::Selector {
                selector: s.to_string(),
                reason,
            })?,
        ),
        None => None,
    };
    if let Some(from) = &opts.pods_from {
        if opts.node.trim().is_empty() {
            return Err(DiscoverError::NoNode);
        }
        return from_file(opts, from, selector.as_ref());
    }
    let mut warnings = Vec::new();
    let choice = choose_config(opts.kubeconfig.as_deref(), env);
    let config = match load_config(
        &choice,
        opts.context.as_deref(),
        env.sudo_uid,
        &mut warnings,
    )
    .await?
    {
        Some(mut c) => {
            tune(&mut c, timeouts);
            c
        }
        None => {
            let why = "no Kubernetes API configured (no --kubeconfig, KUBECONFIG, in-cluster \
                       service account or ~/.kube/config)"
                .to_string();
            return fallback(opts, why, warnings);
        }
    };
    if opts.node.trim().is_empty() {
        return Err(DiscoverError::NoNode);
    }
    let server = config
        .cluster_url
        .to_string()
        .trim_end_matches('/')
        .to_string();
    match list_from_api(config, opts, timeouts).await {
        Ok(pods) => Ok(Discovery {
            pods,
            warnings,
            source: Source::Api { server },
        }),
        Err(ApiFailure::Unreachable(reason)) => {
            let why = format!("cannot reach the Kubernetes API server at {server} ({reason})");
            fallback(opts, why, warnings)
        }
        Err(ApiFailure::Fatal(e)) => Err(classify_fatal(e, &server)),
        Err(ApiFailure::NotAPodList(kind)) => Err(DiscoverError::NotAPodList {
            server,
            path: match &opts.namespace {
                Some(ns) => format!("/api/v1/namespaces/{ns}/pods"),
                None => "/api/v1/pods".into(),
            },
            kind,
        }),
    }
}

/// The whole `source()` chain of an error, `: `-separated.
pub(super) fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        let t = c.to_string();
        if !s.contains(&t) {
            s.push_str(": ");
            s.push_str(&t);
        }
        cur = c.source();
    }
    s
}

/// The API client configuration podnet uses for `opts` (the same kubeconfig choice as
/// [`discover`]: `--kubeconfig`, `KUBECONFIG`, in-cluster, `~/.kube/config`, the sudo user's),
/// for a long-running watch: a bounded connect timeout, no read timeout (a watch is quiet for
/// minutes). `Ok(None)` when no API server is configured.
pub async fn watch_config(
    opts: &DiscoverOptions,
    warnings: &mut Vec<String>,
) -> Result<Option<kube::Config>, DiscoverError> {
    let env = ConfigEnv::from_process();
    let choice = choose_config(opts.kubeconfig.as_deref(), &env);
    let config = load_config(&choice, opts.context.as_deref(), env.sudo_uid, warnings).await?;
    Ok(config.map(|mut c| {
        c.connect_timeout = Some(TIMEOUTS.connect);
        c.read_timeout = None;
        c.write_timeout = None;
        c
    }))
}

/// A Pod as the API serves it (JSON), as podnet's [`PodInfo`].
pub fn pod_info_from_json(pod: serde_json::Value) -> Result<PodInfo, serde_json::Error> {
    let wire: wire::WirePod = serde_json::from_value(pod)?;
    Ok(wire::pod_info(&wire))
}
