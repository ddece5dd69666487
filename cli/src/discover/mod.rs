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

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::fmt;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::model::{ContainerInfo, PodInfo};
use crate::resolve::{self, Mounts};

/// How long to wait for a TCP (and TLS) connection to the API server before falling back to the
/// cgroup scan.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// How long the whole list request may take before podnet gives up on the API server and falls
/// back to the cgroup scan.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// The time bounds of one API request.
#[derive(Debug, Clone, Copy)]
struct Timeouts {
    connect: Duration,
    request: Duration,
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

/// The parts of the process environment that decide the client configuration. Tests build one by
/// hand; [`discover`] uses [`ConfigEnv::from_process`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ConfigEnv {
    /// `KUBECONFIG` (a `:`-separated list).
    pub kubeconfig: Option<OsString>,
    /// `KUBERNETES_SERVICE_HOST` is set: running in a pod.
    pub in_cluster: bool,
    /// `HOME`.
    pub home: Option<PathBuf>,
    /// Under `sudo` as root: the invoking user (`SUDO_USER`) and their home directory from the
    /// passwd database.
    pub sudo_user: Option<(String, PathBuf)>,
}

impl ConfigEnv {
    /// Reads the environment of this process.
    pub fn from_process() -> ConfigEnv {
        let sudo_user = std::env::var("SUDO_USER").ok();
        let is_root = nix::unistd::geteuid().is_root();
        let sudo = sudo_user_home(sudo_user.as_deref(), is_root, home_from_passwd);
        ConfigEnv {
            kubeconfig: std::env::var_os("KUBECONFIG"),
            in_cluster: std::env::var_os("KUBERNETES_SERVICE_HOST").is_some_and(|v| !v.is_empty()),
            home: std::env::var_os("HOME")
                .filter(|h| !h.is_empty())
                .map(PathBuf::from),
            sudo_user: sudo.map(|h| (sudo_user.unwrap_or_default(), h)),
        }
    }
}

/// A user's home directory from the passwd database (`getpwnam`, so NSS sources count too).
pub fn home_from_passwd(user: &str) -> Option<PathBuf> {
    nix::unistd::User::from_name(user)
        .ok()
        .flatten()
        .map(|u| u.dir)
}

/// Under `sudo` (we are root and `SUDO_USER` names someone else), the invoking user's home
/// directory, looked up with `home_of`.
pub fn sudo_user_home(
    sudo_user: Option<&str>,
    is_root: bool,
    home_of: impl Fn(&str) -> Option<PathBuf>,
) -> Option<PathBuf> {
    let user = sudo_user.filter(|u| !u.is_empty() && *u != "root")?;
    if !is_root {
        return None;
    }
    home_of(user).filter(|h| !h.as_os_str().is_empty())
}

/// Which client configuration discovery uses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConfigChoice {
    /// `--kubeconfig FILE`.
    Flag(PathBuf),
    /// The files listed in `KUBECONFIG` (merged like kubectl merges them).
    EnvList(Vec<PathBuf>),
    /// The pod's service account.
    InCluster,
    /// `$HOME/.kube/config`.
    Home(PathBuf),
    /// The `sudo` invoker's `~/.kube/config`.
    SudoUser {
        /// `SUDO_USER`.
        user: String,
        /// Their kubeconfig.
        path: PathBuf,
    },
    /// Nothing configured.
    Nothing,
}

/// Chooses the client configuration: `--kubeconfig`, `KUBECONFIG`, in-cluster,
/// `~/.kube/config`, the `sudo` invoker's `~/.kube/config`, in that order. Home files count only
/// when they exist; `--kubeconfig` and `KUBECONFIG` count whenever given (a missing file is then
/// an error, not a silent fallback).
pub fn choose_config(flag: Option<&Path>, env: &ConfigEnv) -> ConfigChoice {
    if let Some(p) = flag {
        return ConfigChoice::Flag(p.to_path_buf());
    }
    if let Some(list) = &env.kubeconfig {
        let paths: Vec<PathBuf> = std::env::split_paths(list)
            .filter(|p| !p.as_os_str().is_empty())
            .collect();
        if !paths.is_empty() {
            return ConfigChoice::EnvList(paths);
        }
    }
    if env.in_cluster {
        return ConfigChoice::InCluster;
    }
    let home_cfg = env.home.as_ref().map(|h| h.join(".kube").join("config"));
    if let Some(p) = &home_cfg {
        if p.is_file() {
            return ConfigChoice::Home(p.clone());
        }
    }
    if let Some((user, home)) = &env.sudo_user {
        let p = home.join(".kube").join("config");
        if Some(&p) != home_cfg.as_ref() && p.is_file() {
            return ConfigChoice::SudoUser {
                user: user.clone(),
                path: p,
            };
        }
    }
    ConfigChoice::Nothing
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
    let config = match load_config(&choice, opts.context.as_deref(), &mut warnings).await? {
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
    match list_from_api(config, opts, timeouts.request).await {
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
    }
}

async fn load_config(
    choice: &ConfigChoice,
    context: Option<&str>,
    warnings: &mut Vec<String>,
) -> Result<Option<kube::Config>, DiscoverError> {
    let (files, label): (Vec<PathBuf>, PathBuf) = match choice {
        ConfigChoice::Nothing => return Ok(None),
        ConfigChoice::InCluster => {
            if let Some(c) = context {
                warnings.push(format!(
                    "--context {c} ignored: using the in-cluster service account (pass --kubeconfig to use a kubeconfig)"
                ));
            }
            let config = kube::Config::incluster().map_err(|e| DiscoverError::InCluster {
                reason: error_chain(&e),
            })?;
            return Ok(Some(config));
        }
        ConfigChoice::Flag(p) | ConfigChoice::Home(p) | ConfigChoice::SudoUser { path: p, .. } => {
            (vec![p.clone()], p.clone())
        }
        ConfigChoice::EnvList(ps) => {
            let existing: Vec<PathBuf> = ps.iter().filter(|p| p.exists()).cloned().collect();
            if existing.is_empty() {
                return Err(DiscoverError::KubeconfigUnreadable {
                    path: std::env::join_paths(ps)
                        .map(PathBuf::from)
                        .unwrap_or_else(|_| ps[0].clone()),
                    reason: "KUBECONFIG names no existing file".into(),
                });
            }
            let label = std::env::join_paths(&existing)
                .map(PathBuf::from)
                .unwrap_or_else(|_| existing[0].clone());
            (existing, label)
        }
    };
    if let ConfigChoice::SudoUser { user, path } = choice {
        log::debug!("using {user}'s kubeconfig {} (SUDO_USER)", path.display());
    }
    let mut merged: Option<kube::config::Kubeconfig> = None;
    for f in &files {
        let kc = kube::config::Kubeconfig::read_from(f).map_err(|e| kubeconfig_error(f, e))?;
        merged = Some(match merged {
            None => kc,
            Some(m) => m.merge(kc).map_err(|e| kubeconfig_error(&label, e))?,
        });
    }
    let kc = merged.unwrap_or_default();
    let options = kube::config::KubeConfigOptions {
        context: context.map(str::to_string),
        ..Default::default()
    };
    let config = kube::Config::from_custom_kubeconfig(kc, &options)
        .await
        .map_err(|e| match e {
            kube::config::KubeconfigError::LoadContext(name) => DiscoverError::ContextNotFound {
                path: label.clone(),
                context: name,
            },
            e => kubeconfig_error(&label, e),
        })?;
    Ok(Some(config))
}

fn kubeconfig_error(path: &Path, e: kube::config::KubeconfigError) -> DiscoverError {
    match e {
        kube::config::KubeconfigError::ReadConfig(io, p) => DiscoverError::KubeconfigUnreadable {
            path: p,
            reason: io.to_string(),
        },
        e => DiscoverError::KubeconfigInvalid {
            path: path.to_path_buf(),
            reason: error_chain(&e),
        },
    }
}

/// Bounded timeouts, and no automatic retries: a fallback must come quickly.
fn tune(config: &mut kube::Config, t: Timeouts) {
    config.connect_timeout = Some(t.connect);
    // The whole request is bounded by `t.request` around it (see `list_from_api`).
    config.read_timeout = None;
    config.write_timeout = None;
    config.default_retry = false;
}

enum ApiFailure {
    /// Connection refused, DNS failure, timeout: fall back.
    Unreachable(String),
    /// Anything else: an error.
    Fatal(kube::Error),
}

/// The subset of a v1 Pod podnet reads. Lenient on purpose: hand-written `--pods-from` files
/// and older servers omit fields the full schema requires.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
struct WirePod {
    kind: Option<String>,
    metadata: WireMeta,
    spec: WireSpec,
    status: WireStatus,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
struct WireMeta {
    name: String,
    namespace: Option<String>,
    uid: String,
    labels: BTreeMap<String, String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
struct WireSpec {
    node_name: Option<String>,
    host_network: bool,
    containers: Vec<WireName>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct WireName {
    name: String,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
struct WireStatus {
    phase: Option<String>,
    qos_class: Option<String>,
    container_statuses: Vec<WireContainerStatus>,
    init_container_statuses: Vec<WireContainerStatus>,
    ephemeral_container_statuses: Vec<WireContainerStatus>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
struct WireContainerStatus {
    name: String,
    #[serde(rename = "containerID")]
    container_id: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct WirePodList {
    items: Vec<WirePod>,
}

async fn list_from_api(
    config: kube::Config,
    opts: &DiscoverOptions,
    request_timeout: Duration,
) -> Result<Vec<PodInfo>, ApiFailure> {
    let client = kube::Client::try_from(config).map_err(ApiFailure::Fatal)?;
    let path = match &opts.namespace {
        Some(ns) => format!("/api/v1/namespaces/{ns}/pods"),
        None => "/api/v1/pods".to_string(),
    };
    let mut lp = kube::api::ListParams::default().fields(&format!("spec.nodeName={}", opts.node));
    if let Some(sel) = opts.selector.as_deref().filter(|s| !s.trim().is_empty()) {
        lp = lp.labels(sel);
    }
    let request = kube::core::Request::new(path)
        .list(&lp)
        .map_err(|e| ApiFailure::Fatal(kube::Error::BuildRequest(e)))?;
    let list: WirePodList =
        match tokio::time::timeout(request_timeout, client.request(request)).await {
            Err(_) => {
                return Err(ApiFailure::Unreachable(format!(
                    "no answer within {request_timeout:?}"
                )))
            }
            Ok(Err(e)) => {
                return Err(match unreachable_reason(&e) {
                    Some(r) => ApiFailure::Unreachable(r),
                    None => ApiFailure::Fatal(e),
                })
            }
            Ok(Ok(l)) => l,
        };
    let node = opts.node.as_str();
    Ok(list
        .items
        .iter()
        // The server filtered already; this guards against proxies that drop the selector.
        .filter(|p| p.spec.node_name.as_deref() == Some(node))
        .map(pod_info)
        .collect())
}

/// The whole `source()` chain of an error, `: `-separated.
fn error_chain(e: &dyn std::error::Error) -> String {
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

/// `Some(reason)` when the error means the server could not be reached at all.
fn unreachable_reason(e: &kube::Error) -> Option<String> {
    if !matches!(e, kube::Error::HyperError(_) | kube::Error::Service(_)) {
        return None;
    }
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(c) = cur {
        if let Some(io) = c.downcast_ref::<std::io::Error>() {
            use std::io::ErrorKind::*;
            match io.kind() {
                ConnectionRefused => return Some("connection refused".into()),
                TimedOut => return Some(format!("timed out: {io}")),
                HostUnreachable | NetworkUnreachable | NetworkDown | AddrNotAvailable => {
                    return Some(io.to_string())
                }
                _ => {}
            }
        }
        let text = c.to_string();
        if text.contains("dns error") || text.contains("failed to lookup address") {
            return Some(format!("DNS lookup failed: {}", error_chain(c)));
        }
        if c.is::<tokio::time::error::Elapsed>() {
            return Some("timed out".into());
        }
        cur = c.source();
    }
    None
}

fn classify_fatal(e: kube::Error, server: &str) -> DiscoverError {
    let server = server.to_string();
    match e {
        kube::Error::Api(status) => {
            let code = status.code;
            let message = if status.message.is_empty() {
                status.reason.clone()
            } else {
                status.message.clone()
            };
            match code {
                401 => DiscoverError::Unauthorized { server, message },
                403 => DiscoverError::Forbidden { server, message },
                500..=599 => DiscoverError::ServerError {
                    server,
                    code,
                    message,
                },
                _ => DiscoverError::Api {
                    server,
                    code,
                    message,
                },
            }
        }
        kube::Error::Auth(_) | kube::Error::RustlsTls(_) | kube::Error::TlsRequired => {
            DiscoverError::Client {
                server,
                reason: error_chain(&e),
            }
        }
        e => DiscoverError::Transport {
            server,
            reason: error_chain(&e),
        },
    }
}

fn fallback(
    opts: &DiscoverOptions,
    why: String,
    mut warnings: Vec<String>,
) -> Result<Discovery, DiscoverError> {
    let root = match &opts.cgroup2 {
        Some(r) => r.clone(),
        None => {
            let mounts = Mounts::detect().map_err(|e| DiscoverError::NoSource {
                why: why.clone(),
                reason: e.to_string(),
            })?;
            mounts
                .require_cgroup2()
                .map_err(|e| DiscoverError::NoSource {
                    why: why.clone(),
                    reason: e.to_string(),
                })?
                .to_path_buf()
        }
    };
    let index = resolve::scan(&root).map_err(|e| DiscoverError::NoSource {
        why: why.clone(),
        reason: format!("cannot scan the cgroup v2 tree at {}: {e}", root.display()),
    })?;
    let pods = resolve::pods_from_index(&index);
    warnings.push(format!(
        "{why}: pods are known by UID only, from the cgroup tree at {} ({} found); to see names \
         pass --kubeconfig FILE (and --context), or --pods-from FILE with the output of \
         `kubectl get pods -o json`",
        root.display(),
        pods.len()
    ));
    if opts.namespace.is_some() || opts.selector.is_some() {
        warnings.push(
            "-n/--namespace and -l/--selector cannot be applied to pods known by UID only: \
             showing every pod in the cgroup tree"
                .to_string(),
        );
    }
    Ok(Discovery {
        pods,
        warnings,
        source: Source::CgroupScan { root },
    })
}

fn from_file(
    opts: &DiscoverOptions,
    from: &PodsFrom,
    selector: Option<&LabelSelector>,
) -> Result<Discovery, DiscoverError> {
    let (path, text) = match from {
        PodsFrom::Stdin => {
            let mut s = String::new();
            std::io::stdin()
                .read_to_string(&mut s)
                .map_err(|e| DiscoverError::PodsFrom {
                    path: "-".into(),
                    reason: format!("reading standard input: {e}"),
                })?;
            ("-".to_string(), s)
        }
        PodsFrom::File(p) => {
            let s = std::fs::read_to_string(p).map_err(|e| DiscoverError::PodsFrom {
                path: p.display().to_string(),
                reason: e.to_string(),
            })?;
            (p.display().to_string(), s)
        }
    };
    let (pods, mut warnings) = parse_pod_list(&text).map_err(|reason| DiscoverError::PodsFrom {
        path: path.clone(),
        reason,
    })?;
    let (pods, w) = filter_pods(pods, &opts.node, opts.namespace.as_deref(), selector);
    warnings.extend(w);
    Ok(Discovery {
        pods,
        warnings,
        source: Source::File { path },
    })
}

/// A pod read from `--pods-from`, with what client-side filtering needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListedPod {
    /// The pod.
    pub info: PodInfo,
    /// `metadata.labels`.
    pub labels: BTreeMap<String, String>,
}

/// Parses `kubectl get pods -o json` output: a `v1 List`, a `PodList`, or a single `Pod`. Items of
/// other kinds in a List are skipped with a warning.
pub fn parse_pod_list(text: &str) -> Result<(Vec<ListedPod>, Vec<String>), String> {
    let value: serde_json::Value = serde_json::from_str(text).map_err(|e| {
        format!("not JSON ({e}); podnet reads `kubectl get pods -o json`, not YAML or a table")
    })?;
    let kind = value.get("kind").and_then(|k| k.as_str()).unwrap_or("");
    let items: Vec<serde_json::Value> = match kind {
        "List" | "PodList" => match value.get("items") {
            None | Some(serde_json::Value::Null) => Vec::new(),
            Some(serde_json::Value::Array(a)) => a.clone(),
            Some(_) => return Err("`items` is not an array".into()),
        },
        "Pod" => vec![value],
        "" => return Err("no `kind`: expected a List, PodList or Pod".into()),
        other => {
            return Err(format!(
                "expected a List, PodList or Pod, found kind `{other}`"
            ))
        }
    };
    let mut pods = Vec::new();
    let mut warnings = Vec::new();
    for (i, item) in items.into_iter().enumerate() {
        let pod: WirePod = serde_json::from_value(item)
            .map_err(|e| format!("item {i} is not a valid Pod: {e}"))?;
        if let Some(k) = pod.kind.as_deref().filter(|k| *k != "Pod") {
            warnings.push(format!(
                "--pods-from: item {i} ({}) is a {k}, not a Pod: skipped",
                pod.metadata.name
            ));
            continue;
        }
        if pod.metadata.uid.is_empty() {
            return Err(format!(
                "item {i} ({}) has no metadata.uid",
                pod.metadata.name
            ));
        }
        pods.push(ListedPod {
            info: pod_info(&pod),
            labels: pod.metadata.labels.clone(),
        });
    }
    Ok((pods, warnings))
}

/// Applies the API server's filters client-side: `spec.nodeName == node`, the namespace, the label
/// selector. Pods not scheduled yet are left out; Pending ones with a warning.
pub fn filter_pods(
    pods: Vec<ListedPod>,
    node: &str,
    namespace: Option<&str>,
    selector: Option<&LabelSelector>,
) -> (Vec<PodInfo>, Vec<String>) {
    let mut warnings = Vec::new();
    let mut out = Vec::new();
    for p in pods {
        if namespace.is_some_and(|ns| ns != p.info.namespace) {
            continue;
        }
        if selector.is_some_and(|s| !s.matches(&p.labels)) {
            continue;
        }
        match p.info.node_name.as_deref() {
            Some(n) if n == node => out.push(p.info),
            Some(_) => {}
            None => {
                if p.info.phase.as_deref() == Some("Pending") {
                    warnings.push(format!(
                        "pod {}/{} is Pending and not scheduled to a node yet: left out",
                        p.info.namespace, p.info.name
                    ));
                }
            }
        }
    }
    (out, warnings)
}

/// Splits a `containerStatuses[].containerID` (`containerd://<id>`) into the runtime and the id.
pub fn split_container_id(s: &str) -> (Option<String>, Option<String>) {
    match s.split_once("://") {
        Some((rt, id)) => (
            Some(rt.to_string()).filter(|r| !r.is_empty()),
            Some(id.to_string()).filter(|i| !i.is_empty()),
        ),
        None => (None, Some(s.to_string()).filter(|i| !i.is_empty())),
    }
}

fn pod_info(p: &WirePod) -> PodInfo {
    let mut containers: Vec<ContainerInfo> = Vec::new();
    let statuses = p
        .status
        .container_statuses
        .iter()
        .chain(&p.status.init_container_statuses)
        .chain(&p.status.ephemeral_container_statuses);
    for s in statuses {
        let (runtime, id) = s
            .container_id
            .as_deref()
            .map(split_container_id)
            .unwrap_or((None, None));
        containers.push(ContainerInfo {
            name: s.name.clone(),
            id,
            runtime,
        });
    }
    // Containers with no status yet (Pending pods) are listed without an id.
    for c in &p.spec.containers {
        if !containers.iter().any(|k| k.name == c.name) {
            containers.push(ContainerInfo {
                name: c.name.clone(),
                id: None,
                runtime: None,
            });
        }
    }
    PodInfo {
        namespace: p
            .metadata
            .namespace
            .clone()
            .unwrap_or_else(|| "default".into()),
        name: p.metadata.name.clone(),
        uid: p.metadata.uid.clone(),
        qos_class: p.status.qos_class.clone(),
        node_name: p.spec.node_name.clone().filter(|n| !n.is_empty()),
        phase: p.status.phase.clone(),
        host_network: p.spec.host_network,
        containers,
    }
}

/// A parsed label selector (kubectl syntax): `k=v`, `k==v`, `k!=v`, `k`, `!k`, `k in (a,b)`,
/// `k notin (a,b)`, joined by commas (AND).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct LabelSelector {
    requirements: Vec<Requirement>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Requirement {
    Equals(String, String),
    NotEquals(String, String),
    Exists(String),
    NotExists(String),
    In(String, Vec<String>),
    NotIn(String, Vec<String>),
}

impl LabelSelector {
    /// Parses a selector; an empty one matches everything.
    pub fn parse(s: &str) -> Result<LabelSelector, String> {
        let mut requirements = Vec::new();
        if s.trim().is_empty() {
            return Ok(LabelSelector { requirements });
        }
        let mut depth = 0i32;
        let mut start = 0;
        let mut terms = Vec::new();
        for (i, c) in s.char_indices() {
            match c {
                '(' => depth += 1,
                ')' => {
                    depth -= 1;
                    if depth < 0 {
                        return Err("unbalanced `)`".into());
                    }
                }
                ',' if depth == 0 => {
                    terms.push(&s[start..i]);
                    start = i + 1;
                }
                _ => {}
            }
        }
        if depth != 0 {
            return Err("unbalanced `(`".into());
        }
        terms.push(&s[start..]);
        for term in terms {
            requirements.push(parse_requirement(term.trim())?);
        }
        Ok(LabelSelector { requirements })
    }

    /// Whether a pod with these labels is selected.
    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        self.requirements.iter().all(|r| match r {
            Requirement::Equals(k, v) => labels.get(k) == Some(v),
            Requirement::NotEquals(k, v) => labels.get(k) != Some(v),
            Requirement::Exists(k) => labels.contains_key(k),
            Requirement::NotExists(k) => !labels.contains_key(k),
            Requirement::In(k, vs) => labels.get(k).is_some_and(|v| vs.contains(v)),
            Requirement::NotIn(k, vs) => !labels.get(k).is_some_and(|v| vs.contains(v)),
        })
    }
}

impl fmt::Display for LabelSelector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let parts: Vec<String> = self
            .requirements
            .iter()
            .map(|r| match r {
                Requirement::Equals(k, v) => format!("{k}={v}"),
                Requirement::NotEquals(k, v) => format!("{k}!={v}"),
                Requirement::Exists(k) => k.clone(),
                Requirement::NotExists(k) => format!("!{k}"),
                Requirement::In(k, vs) => format!("{k} in ({})", vs.join(",")),
                Requirement::NotIn(k, vs) => format!("{k} notin ({})", vs.join(",")),
            })
            .collect();
        f.write_str(&parts.join(","))
    }
}

fn parse_requirement(term: &str) -> Result<Requirement, String> {
    if term.is_empty() {
        return Err("empty requirement (a stray comma?)".into());
    }
    if let Some(k) = term.strip_prefix('!') {
        let k = k.trim();
        check_key(k)?;
        return Ok(Requirement::NotExists(k.to_string()));
    }
    if let Some(open) = term.find('(') {
        let head = term[..open].trim();
        let (key, op) = head
            .rsplit_once(char::is_whitespace)
            .map(|(k, o)| (k.trim(), o.trim()))
            .ok_or_else(|| {
                format!("`{term}`: expected `key in (values)` or `key notin (values)`")
            })?;
        check_key(key)?;
        let inner = term[open + 1..]
            .trim_end()
            .strip_suffix(')')
            .ok_or_else(|| format!("`{term}`: missing `)`"))?;
        let values: Vec<String> = inner.split(',').map(|v| v.trim().to_string()).collect();
        if values.iter().all(String::is_empty) {
            return Err(format!("`{term}`: the set of values is empty"));
        }
        for v in &values {
            check_value(v)?;
        }
        return match op {
            "in" => Ok(Requirement::In(key.to_string(), values)),
            "notin" => Ok(Requirement::NotIn(key.to_string(), values)),
            other => Err(format!(
                "`{term}`: unknown operator `{other}` (use in or notin)"
            )),
        };
    }
    let (k, v, req): (&str, &str, fn(String, String) -> Requirement) =
        if let Some((k, v)) = term.split_once("!=") {
            (k, v, Requirement::NotEquals)
        } else if let Some((k, v)) = term.split_once("==") {
            (k, v, Requirement::Equals)
        } else if let Some((k, v)) = term.split_once('=') {
            (k, v, Requirement::Equals)
        } else {
            check_key(term)?;
            return Ok(Requirement::Exists(term.to_string()));
        };
    let (k, v) = (k.trim(), v.trim());
    check_key(k)?;
    check_value(v)?;
    Ok(req(k.to_string(), v.to_string()))
}

/// A label name: 1–63 characters, alphanumeric at both ends, `-`, `_`, `.` inside.
fn check_name(n: &str, what: &str) -> Result<(), String> {
    let ok_inner = n
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
    let ok_ends = n.bytes().next().is_some_and(|b| b.is_ascii_alphanumeric())
        && n.bytes().last().is_some_and(|b| b.is_ascii_alphanumeric());
    if n.len() > 63 || !ok_inner || !ok_ends {
        return Err(format!(
            "invalid {what} `{n}`: 1-63 characters, alphanumeric at both ends, `-`, `_` or `.` inside"
        ));
    }
    Ok(())
}

fn check_key(k: &str) -> Result<(), String> {
    if k.is_empty() {
        return Err("empty label key".into());
    }
    let name = match k.split_once('/') {
        Some((prefix, name)) => {
            let ok = !prefix.is_empty()
                && prefix.len() <= 253
                && prefix.bytes().all(|b| {
                    b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.'
                });
            if !ok {
                return Err(format!(
                    "invalid label key prefix `{prefix}`: a DNS subdomain"
                ));
            }
            name
        }
        None => k,
    };
    check_name(name, "label key")
}

fn check_value(v: &str) -> Result<(), String> {
    if v.is_empty() {
        return Ok(());
    }
    check_name(v, "label value")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(kv: &[(&str, &str)]) -> BTreeMap<String, String> {
        kv.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn selector_equality_and_existence() {
        let web = labels(&[("app", "web"), ("tier", "fe")]);
        let db = labels(&[("app", "db")]);
        let none = labels(&[]);
        let cases: &[(&str, [bool; 3])] = &[
            ("app=web", [true, false, false]),
            ("app==web", [true, false, false]),
            ("app!=web", [false, true, true]),
            ("tier", [true, false, false]),
            ("!tier", [false, true, true]),
            ("app=web,tier=fe", [true, false, false]),
            ("app=web,tier=be", [false, false, false]),
            ("app in (web,db)", [true, true, false]),
            ("app in(db)", [false, true, false]),
            ("app notin (web)", [false, true, true]),
            ("app notin (web, db), !tier", [false, false, true]),
            (" app = web ", [true, false, false]),
            ("", [true, true, true]),
            ("example.com/role=x", [false, false, false]),
        ];
        for (sel, want) in cases {
            let s = LabelSelector::parse(sel).unwrap_or_else(|e| panic!("{sel}: {e}"));
            let got = [s.matches(&web), s.matches(&db), s.matches(&none)];
            assert_eq!(&got, want, "selector {sel:?}");
        }
    }

    #[test]
    fn selector_errors() {
        for bad in [
            "app=web,",
            ",app",
            "app in (a",
            "app in ()",
            "app between (a,b)",
            "app=-web",
            "=web",
            "bad key=1",
            "a/b/c=1",
            "Upper.Case/x=1",
            "app in (a,b))",
            "!",
        ] {
            assert!(
                LabelSelector::parse(bad).is_err(),
                "{bad:?} should be rejected"
            );
        }
    }

    #[test]
    fn selector_display_round_trips() {
        let s = LabelSelector::parse("app=web, tier!=db,env in (a, b),!x,y").unwrap();
        assert_eq!(s.to_string(), "app=web,tier!=db,env in (a,b),!x,y");
        assert_eq!(LabelSelector::parse(&s.to_string()).unwrap(), s);
    }

    #[test]
    fn container_ids() {
        assert_eq!(
            split_container_id("containerd://abc"),
            (Some("containerd".into()), Some("abc".into()))
        );
        assert_eq!(
            split_container_id("cri-o://def"),
            (Some("cri-o".into()), Some("def".into()))
        );
        assert_eq!(
            split_container_id("docker://0a"),
            (Some("docker".into()), Some("0a".into()))
        );
        assert_eq!(split_container_id(""), (None, None));
        assert_eq!(split_container_id("bare"), (None, Some("bare".into())));
    }

    const LIST: &str = r#"{
      "apiVersion": "v1", "kind": "List", "metadata": {"resourceVersion": ""},
      "items": [
        {"apiVersion": "v1", "kind": "Pod",
         "metadata": {"name": "web-0", "namespace": "shop", "uid": "u1", "labels": {"app": "web"}},
         "spec": {"nodeName": "n1", "containers": [{"name": "web"}, {"name": "side"}]},
         "status": {"phase": "Running", "qosClass": "Burstable",
           "containerStatuses": [{"name": "web", "containerID": "containerd://aaa", "image": "i", "imageID": "", "ready": true, "restartCount": 0}],
           "initContainerStatuses": [{"name": "init", "containerID": "containerd://iii"}]}},
        {"apiVersion": "v1", "kind": "Pod",
         "metadata": {"name": "db-0", "namespace": "shop", "uid": "u2", "labels": {"app": "db"}},
         "spec": {"nodeName": "n2", "hostNetwork": true, "containers": [{"name": "db"}]},
         "status": {"phase": "Running", "qosClass": "Guaranteed"}},
        {"apiVersion": "v1", "kind": "Pod",
         "metadata": {"name": "new-0", "namespace": "shop", "uid": "u3", "labels": {"app": "web"}},
         "spec": {"containers": [{"name": "c"}]},
         "status": {"phase": "Pending", "qosClass": "BestEffort"}},
        {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web", "namespace": "shop", "uid": "s1"}},
        {"apiVersion": "v1", "kind": "Pod",
         "metadata": {"name": "dns", "namespace": "kube-system", "uid": "u4"},
         "spec": {"nodeName": "n1", "hostNetwork": true, "containers": [{"name": "dns"}]},
         "status": {"phase": "Running", "qosClass": "BestEffort",
           "containerStatuses": [{"name": "dns", "containerID": "cri-o://ddd"}]}}
      ]}"#;

    #[test]
    fn parse_kubectl_list() {
        let (pods, warnings) = parse_pod_list(LIST).unwrap();
        assert_eq!(
            warnings,
            vec!["--pods-from: item 3 (web) is a Service, not a Pod: skipped"]
        );
        let names: Vec<&str> = pods.iter().map(|p| p.info.name.as_str()).collect();
        assert_eq!(names, ["web-0", "db-0", "new-0", "dns"]);
        let web = &pods[0].info;
        assert_eq!(
            *web,
            PodInfo {
                namespace: "shop".into(),
                name: "web-0".into(),
                uid: "u1".into(),
                qos_class: Some("Burstable".into()),
                node_name: Some("n1".into()),
                phase: Some("Running".into()),
                host_network: false,
                containers: vec![
                    ContainerInfo {
                        name: "web".into(),
                        id: Some("aaa".into()),
                        runtime: Some("containerd".into())
                    },
                    ContainerInfo {
                        name: "init".into(),
                        id: Some("iii".into()),
                        runtime: Some("containerd".into())
                    },
                    ContainerInfo {
                        name: "side".into(),
                        id: None,
                        runtime: None
                    },
                ],
            }
        );
        assert!(pods[1].info.host_network);
        assert_eq!(pods[0].labels, labels(&[("app", "web")]));
    }

    #[test]
    fn filters_client_side() {
        let run = |node: &str, ns: Option<&str>, sel: Option<&str>| {
            let (pods, _) = parse_pod_list(LIST).unwrap();
            let sel = sel.map(|s| LabelSelector::parse(s).unwrap());
            let (out, w) = filter_pods(pods, node, ns, sel.as_ref());
            (out.into_iter().map(|p| p.name).collect::<Vec<_>>(), w)
        };
        let (names, w) = run("n1", None, None);
        assert_eq!(names, ["web-0", "dns"]);
        assert_eq!(
            w,
            vec!["pod shop/new-0 is Pending and not scheduled to a node yet: left out"]
        );
        assert_eq!(run("n2", None, None).0, ["db-0"]);
        assert_eq!(run("n1", Some("shop"), None).0, ["web-0"]);
        assert_eq!(run("n1", Some("kube-system"), None).0, ["dns"]);
        assert_eq!(run("n1", None, Some("app=web")).0, ["web-0"]);
        assert_eq!(run("n1", None, Some("app notin (web)")).0, ["dns"]);
        assert_eq!(run("n1", None, Some("!app")).0, ["dns"]);
        assert_eq!(run("n3", None, None).0, Vec::<String>::new());
        // Not-selected Pending pods are not warned about.
        assert!(run("n1", Some("kube-system"), None).1.is_empty());
    }

    #[test]
    fn parse_single_pod_and_podlist() {
        let pod = r#"{"apiVersion":"v1","kind":"Pod","metadata":{"name":"a","uid":"u"},"spec":{"nodeName":"n"}}"#;
        let (pods, w) = parse_pod_list(pod).unwrap();
        assert!(w.is_empty());
        assert_eq!(pods.len(), 1);
        assert_eq!(pods[0].info.namespace, "default");
        let list = r#"{"apiVersion":"v1","kind":"PodList","metadata":{},"items":[{"metadata":{"name":"a","namespace":"x","uid":"u"}}]}"#;
        let (pods, _) = parse_pod_list(list).unwrap();
        assert_eq!(pods[0].info.namespace, "x");
        let empty = r#"{"apiVersion":"v1","kind":"List","items":[]}"#;
        assert!(parse_pod_list(empty).unwrap().0.is_empty());
    }

    #[test]
    fn parse_errors() {
        assert!(parse_pod_list("NAME READY STATUS")
            .unwrap_err()
            .starts_with("not JSON"));
        assert!(parse_pod_list("apiVersion: v1\nkind: List\n")
            .unwrap_err()
            .contains("not YAML"));
        assert_eq!(
            parse_pod_list(r#"{"kind":"Service"}"#).unwrap_err(),
            "expected a List, PodList or Pod, found kind `Service`"
        );
        assert_eq!(
            parse_pod_list(r#"{"items":[]}"#).unwrap_err(),
            "no `kind`: expected a List, PodList or Pod"
        );
        assert_eq!(
            parse_pod_list(r#"{"kind":"List","items":[{"kind":"Pod","metadata":{"name":"x"}}]}"#)
                .unwrap_err(),
            "item 0 (x) has no metadata.uid"
        );
        assert!(
            parse_pod_list(r#"{"kind":"List","items":[{"kind":"Pod","metadata":"x"}]}"#)
                .unwrap_err()
                .starts_with("item 0 is not a valid Pod")
        );
    }

    #[test]
    fn sudo_home_lookup() {
        let lookup = |u: &str| (u == "alice").then(|| PathBuf::from("/home/alice"));
        assert_eq!(
            sudo_user_home(Some("alice"), true, lookup),
            Some(PathBuf::from("/home/alice"))
        );
        // Not root: sudo to another user, or SUDO_USER left over in the environment.
        assert_eq!(sudo_user_home(Some("alice"), false, lookup), None);
        assert_eq!(sudo_user_home(Some("bob"), true, lookup), None);
        assert_eq!(
            sudo_user_home(Some("root"), true, |_| Some(PathBuf::from("/root"))),
            None
        );
        assert_eq!(sudo_user_home(Some(""), true, lookup), None);
        assert_eq!(sudo_user_home(None, true, lookup), None);
        // The real passwd database knows root.
        assert_eq!(home_from_passwd("root"), Some(PathBuf::from("/root")));
        assert_eq!(home_from_passwd("podnet-no-such-user"), None);
    }

    /// A server that accepts connections and never answers: discovery gives up within the
    /// request timeout and falls back to the cgroup scan.
    #[tokio::test]
    async fn silent_server_times_out_into_the_fallback() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let stop2 = stop.clone();
        listener.set_nonblocking(true).unwrap();
        let holder = std::thread::spawn(move || {
            let mut held = Vec::new();
            while !stop2.load(std::sync::atomic::Ordering::SeqCst) {
                if let Ok((conn, _)) = listener.accept() {
                    held.push(conn);
                }
                std::thread::sleep(Duration::from_millis(10));
            }
        });
        let tmp = std::env::temp_dir().join(format!("podnet-silent-{}", std::process::id()));
        std::fs::create_dir_all(tmp.join("cg")).unwrap();
        let cfg = tmp.join("kubeconfig");
        std::fs::write(
            &cfg,
            format!(
                "apiVersion: v1\nkind: Config\ncurrent-context: c\nclusters:\n- name: c\n  cluster:\n    server: http://127.0.0.1:{port}\ncontexts:\n- name: c\n  context:\n    cluster: c\n    user: u\nusers:\n- name: u\n  user: {{}}\n"
            ),
        )
        .unwrap();
        let opts = DiscoverOptions {
            kubeconfig: Some(cfg),
            node: "n".into(),
            cgroup2: Some(tmp.join("cg")),
            ..DiscoverOptions::default()
        };
        let t = Timeouts {
            connect: Duration::from_millis(500),
            request: Duration::from_millis(500),
        };
        // Without the request timeout this would wait forever; the outer bound only keeps a
        // broken build from hanging the suite (it is no speed assertion: slow emulated kernels
        // take seconds to set the client up).
        let d = tokio::time::timeout(
            Duration::from_secs(120),
            discover_inner(&opts, &ConfigEnv::default(), t),
        )
        .await
        .expect("discovery is bounded by its request timeout");
        stop.store(true, std::sync::atomic::Ordering::SeqCst);
        holder.join().unwrap();
        let _ = std::fs::remove_dir_all(&tmp);
        let d = d.unwrap();
        assert_eq!(
            d.source,
            Source::CgroupScan {
                root: tmp.join("cg")
            }
        );
        assert!(d.pods.is_empty());
        assert!(
            d.warnings[0].starts_with(&format!(
                "cannot reach the Kubernetes API server at http://127.0.0.1:{port} ("
            )),
            "{}",
            d.warnings[0]
        );
        assert!(
            d.warnings[0].contains("timed out") || d.warnings[0].contains("no answer within"),
            "{}",
            d.warnings[0]
        );
    }

    #[test]
    fn config_choice_order() {
        let tmp = std::env::temp_dir().join(format!("podnet-choice-{}", std::process::id()));
        let home = tmp.join("root");
        let alice = tmp.join("alice");
        for h in [&home, &alice] {
            std::fs::create_dir_all(h.join(".kube")).unwrap();
            std::fs::write(h.join(".kube/config"), "").unwrap();
        }
        let full = ConfigEnv {
            kubeconfig: Some(OsString::from("/a:/b")),
            in_cluster: true,
            home: Some(home.clone()),
            sudo_user: Some(("alice".into(), alice.clone())),
        };
        let flag = Path::new("/flag");
        assert_eq!(
            choose_config(Some(flag), &full),
            ConfigChoice::Flag(flag.into())
        );
        assert_eq!(
            choose_config(None, &full),
            ConfigChoice::EnvList(vec!["/a".into(), "/b".into()])
        );
        let env = ConfigEnv {
            kubeconfig: Some(OsString::from("")),
            ..full.clone()
        };
        assert_eq!(choose_config(None, &env), ConfigChoice::InCluster);
        let env = ConfigEnv {
            in_cluster: false,
            ..env
        };
        assert_eq!(
            choose_config(None, &env),
            ConfigChoice::Home(home.join(".kube/config"))
        );
        std::fs::remove_file(home.join(".kube/config")).unwrap();
        assert_eq!(
            choose_config(None, &env),
            ConfigChoice::SudoUser {
                user: "alice".into(),
                path: alice.join(".kube/config")
            }
        );
        std::fs::remove_file(alice.join(".kube/config")).unwrap();
        assert_eq!(choose_config(None, &env), ConfigChoice::Nothing);
        let _ = std::fs::remove_dir_all(&tmp);
    }
}
