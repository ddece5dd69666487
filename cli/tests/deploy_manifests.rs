//! The Kubernetes manifests under k8s/ against the agent they deploy: every manifest
//! deserializes into the k8s-openapi types (and says nothing those types do not know), the
//! DaemonSet's probes, port, arguments and capabilities match `podnet agent`, the RBAC grants
//! exactly `get, list, watch` on pods, the dashboard queries only metrics the agent exports.
//!
//! Then podnet runs as the DaemonSet would, as far as this machine allows: with exactly the
//! manifest's capabilities (and nothing else, no privilege escalation) against the stub API
//! server and a sandbox pod pair, first directly (setpriv), then as the image built by
//! k8s/build-image.sh in a podman container with the manifest's mounts, and counts exact UDP
//! datagrams through /metrics.

mod common;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::agent::{free_port, metric, pair, try_get, unique, Agent, Pair, PinDir};
use common::{podnet_bin, Cluster, NODE};
use k8s_openapi::api::apps::v1::DaemonSet;
use k8s_openapi::api::core::v1::{Container, Namespace, ServiceAccount};
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use podnet_testing::sandbox::{require_privileges, skip, Layout, Qos};
use serde_json::Value;

/// The capabilities the DaemonSet adds (after dropping ALL), and why each:
/// BPF, PERFMON, NET_ADMIN load and attach the programs (design.md, "Agent mode"); SYS_PTRACE
/// reads /proc/<pid>/fd of the pods' processes for the open-fd and open-socket gauges (without
/// it those two are absent, and everything else is counted). Not SYS_ADMIN: this host, like any
/// systemd host, has tracefs mounted, and the manifest brings it in as a volume.
const CAPABILITIES: [&str; 4] = ["BPF", "NET_ADMIN", "PERFMON", "SYS_PTRACE"];

fn k8s_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../k8s")
}

/// Every YAML document of every manifest under k8s/, with the file it came from.
fn documents() -> Vec<(String, Value)> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(k8s_dir())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml" || e == "yml"))
        .collect();
    files.sort();
    assert!(
        !files.is_empty(),
        "no manifests under {}",
        k8s_dir().display()
    );
    let mut docs = Vec::new();
    for f in files {
        let text = std::fs::read_to_string(&f).unwrap();
        let name = f.file_name().unwrap().to_string_lossy().into_owned();
        for de in serde_yaml::Deserializer::from_str(&text) {
            let v: Value = serde::Deserialize::deserialize(de)
                .unwrap_or_else(|e| panic!("{name}: not YAML: {e}"));
            if !v.is_null() {
                docs.push((name.clone(), v));
            }
        }
    }
    docs
}

/// Deserializes `v` into `T` and checks that serializing it back gives `v` again: a misspelt or
/// misplaced field (which serde would silently drop) fails here.
fn typed<T: serde::de::DeserializeOwned + serde::Serialize>(file: &str, v: &Value) -> T {
    let t: T = serde_json::from_value(v.clone())
        .unwrap_or_else(|e| panic!("{file}: {} does not deserialize: {e}", v["kind"]));
    let back = serde_json::to_value(&t).unwrap();
    assert_eq!(
        strip_nulls(back),
        strip_nulls(v.clone()),
        "{file}: {} has fields the Kubernetes API does not know (compare the two)",
        v["kind"]
    );
    t
}

fn strip_nulls(v: Value) -> Value {
    match v {
        Value::Object(m) => Value::Object(
            m.into_iter()
                .filter(|(_, v)| !v.is_null())
                .map(|(k, v)| (k, strip_nulls(v)))
                .collect(),
        ),
        Value::Array(a) => Value::Array(a.into_iter().map(strip_nulls).collect()),
        v => v,
    }
}

/// The manifests, typed.
struct Manifests {
    daemonset: DaemonSet,
    service_accounts: Vec<ServiceAccount>,
    roles: Vec<ClusterRole>,
    bindings: Vec<ClusterRoleBinding>,
    pod_monitors: Vec<Value>,
}

fn manifests() -> Manifests {
    let mut daemonsets = Vec::new();
    let mut m = Manifests {
        daemonset: DaemonSet::default(),
        service_accounts: Vec::new(),
        roles: Vec::new(),
        bindings: Vec::new(),
        pod_monitors: Vec::new(),
    };
    for (file, v) in documents() {
        let api = v["apiVersion"].as_str().unwrap_or_default();
        let kind = v["kind"].as_str().unwrap_or_default();
        match (api, kind) {
            ("apps/v1", "DaemonSet") => daemonsets.push(typed::<DaemonSet>(&file, &v)),
            ("v1", "Namespace") => {
                typed::<Namespace>(&file, &v);
            }
            ("v1", "ServiceAccount") => m.service_accounts.push(typed(&file, &v)),
            ("rbac.authorization.k8s.io/v1", "ClusterRole") => m.roles.push(typed(&file, &v)),
            ("rbac.authorization.k8s.io/v1", "ClusterRoleBinding") => {
                m.bindings.push(typed(&file, &v))
            }
            ("batch/v1", "Job") => {
                let job: k8s_openapi::api::batch::v1::Job = typed(&file, &v);
                check_uninstall_job(&job);
            }
            // The Prometheus Operator's CRD: no k8s-openapi type; checked field by field.
            ("monitoring.coreos.com/v1", "PodMonitor") => m.pod_monitors.push(v),
            // kind's own cluster configuration, not a Kubernetes object.
            ("kind.x-k8s.io/v1alpha4", "Cluster") => {}
            _ => panic!("{file}: unexpected manifest {api} {kind}: teach this test what it is"),
        }
    }
    assert_eq!(daemonsets.len(), 1, "exactly one DaemonSet under k8s/");
    m.daemonset = daemonsets.pop().unwrap();
    m
}

/// The port of `podnet::agent::DEFAULT_LISTEN`.
fn agent_port() -> i32 {
    podnet::agent::DEFAULT_LISTEN
        .parse::<std::net::SocketAddr>()
        .unwrap()
        .port()
        .into()
}

fn agent_container(ds: &DaemonSet) -> &Container {
    let pod = ds.spec.as_ref().unwrap().template.spec.as_ref().unwrap();
    assert_eq!(pod.containers.len(), 1, "one container: the agent");
    &pod.containers[0]
}

/// The value after `flag` in `args`.
fn flag<'a>(args: &'a [String], flag: &str) -> Option<&'a str> {
    args.iter()
        .position(|a| a == flag)
        .and_then(|i| args.get(i + 1))
        .map(String::as_str)
}

#[test]
fn daemonset_matches_the_agent() {
    let m = manifests();
    let ds = &m.daemonset;
    let spec = ds.spec.as_ref().unwrap();
    let template = &spec.template;
    let pod = template.spec.as_ref().unwrap();
    let c = agent_container(ds);
    let port = agent_port();

    // `podnet agent`, listening on the port the probes and the scrape use.
    let args = c.args.clone().unwrap_or_default();
    assert_eq!(
        args.first().map(String::as_str),
        Some("agent"),
        "args: {args:?}"
    );
    assert!(
        c.command.is_none(),
        "the image's entrypoint is podnet; args choose the mode"
    );
    if let Some(listen) = flag(&args, "--listen") {
        let addr: std::net::SocketAddr = listen.parse().unwrap();
        assert_eq!(i32::from(addr.port()), port, "--listen {listen}");
        assert!(
            addr.ip().is_unspecified(),
            "--listen {listen}: the kubelet probes the pod IP"
        );
    }
    let pin_dir = flag(&args, "--pin-dir").unwrap_or(podnet::pins::DEFAULT_DIR);
    assert!(
        pin_dir.starts_with("/sys/fs/bpf/"),
        "--pin-dir {pin_dir} must be on the host's bpffs"
    );

    let ports = c.ports.clone().unwrap_or_default();
    assert_eq!(ports.len(), 1);
    assert_eq!(ports[0].container_port, port);
    assert_eq!(ports[0].name.as_deref(), Some("metrics"));

    let probe_of = |p: &Option<k8s_openapi::api::core::v1::Probe>, what: &str| {
        let get = p
            .as_ref()
            .and_then(|p| p.http_get.clone())
            .unwrap_or_else(|| panic!("no {what} httpGet probe"));
        (get.path.unwrap_or_default(), get.port)
    };
    assert_eq!(
        probe_of(&c.readiness_probe, "readiness"),
        (
            podnet::agent::http::READYZ.to_string(),
            IntOrString::Int(port)
        )
    );
    assert_eq!(
        probe_of(&c.liveness_probe, "liveness"),
        (
            podnet::agent::http::HEALTHZ.to_string(),
            IntOrString::Int(port)
        )
    );

    // Scrape annotations on the pods.
    let ann = template
        .metadata
        .as_ref()
        .unwrap()
        .annotations
        .clone()
        .unwrap_or_default();
    assert_eq!(
        ann.get("prometheus.io/scrape").map(String::as_str),
        Some("true")
    );
    assert_eq!(ann.get("prometheus.io/port"), Some(&port.to_string()));
    assert_eq!(
        ann.get("prometheus.io/path").map(String::as_str),
        Some(podnet::agent::http::METRICS)
    );

    // Not privileged: exactly the capabilities above, no escalation.
    let sc = c.security_context.as_ref().expect("a securityContext");
    assert_eq!(sc.privileged, Some(false));
    assert_eq!(sc.allow_privilege_escalation, Some(false));
    let caps = sc.capabilities.as_ref().expect("capabilities");
    assert_eq!(
        caps.drop.clone().unwrap_or_default(),
        vec!["ALL".to_string()]
    );
    let added: BTreeSet<String> = caps.add.clone().unwrap_or_default().into_iter().collect();
    let want: BTreeSet<String> = CAPABILITIES.iter().map(|s| s.to_string()).collect();
    assert_eq!(added, want);
    assert_eq!(
        caps.add.as_ref().unwrap().len(),
        CAPABILITIES.len(),
        "no duplicates"
    );
    let pod_sc = pod.security_context.clone().unwrap_or_default();
    assert!(pod_sc.sysctls.is_none() && pod_sc.run_as_user.unwrap_or(0) == 0);

    // The host's pids, cgroup tree, bpffs and tracefs; the node's name.
    assert_eq!(pod.host_pid, Some(true));
    assert_ne!(
        pod.host_network,
        Some(true),
        "the agent needs no host network"
    );
    let volumes = pod.volumes.clone().unwrap_or_default();
    let mounts = c.volume_mounts.clone().unwrap_or_default();
    let host_mount = |host: &str| {
        let v = volumes
            .iter()
            .find(|v| v.host_path.as_ref().is_some_and(|h| h.path == host))
            .unwrap_or_else(|| panic!("no hostPath volume for {host}"));
        mounts
            .iter()
            .find(|m| m.name == v.name)
            .unwrap_or_else(|| panic!("volume {} is not mounted", v.name))
            .clone()
    };
    let cg = host_mount("/sys/fs/cgroup");
    assert_eq!(cg.mount_path, "/sys/fs/cgroup");
    let bpf = host_mount("/sys/fs/bpf");
    assert_eq!(bpf.mount_path, "/sys/fs/bpf");
    assert_ne!(
        bpf.read_only,
        Some(true),
        "the agent pins under /sys/fs/bpf"
    );
    // Bidirectional needs a privileged container; the pins land in the host's bpffs anyway.
    assert_eq!(bpf.mount_propagation.as_deref(), Some("HostToContainer"));
    assert_eq!(
        host_mount("/sys/kernel/tracing").mount_path,
        "/sys/kernel/tracing"
    );
    let env = c.env.clone().unwrap_or_default();
    let node = env
        .iter()
        .find(|e| e.name == "NODE_NAME")
        .expect("NODE_NAME");
    assert_eq!(
        node.value_from
            .as_ref()
            .unwrap()
            .field_ref
            .as_ref()
            .unwrap()
            .field_path,
        "spec.nodeName"
    );

    // Sized: requests and a memory limit.
    let res = c.resources.as_ref().expect("resources");
    let req = res.requests.clone().unwrap_or_default();
    assert!(
        req.contains_key("cpu") && req.contains_key("memory"),
        "{req:?}"
    );
    assert!(res
        .limits
        .clone()
        .unwrap_or_default()
        .contains_key("memory"));

    // The service account the RBAC binds.
    let sa = pod
        .service_account_name
        .clone()
        .expect("serviceAccountName");
    let ns = ds.metadata.namespace.clone().expect("a namespace");
    assert!(m
        .service_accounts
        .iter()
        .any(|s| s.metadata.name.as_deref() == Some(&sa)
            && s.metadata.namespace.as_deref() == Some(&ns)));
    assert!(m.bindings.iter().any(|b| b
        .subjects
        .iter()
        .flatten()
        .any(|s| s.kind == "ServiceAccount"
            && s.name == sa
            && s.namespace.as_deref() == Some(&ns))));

    // The PodMonitor, if any, selects these pods' metrics port.
    let labels = template
        .metadata
        .as_ref()
        .unwrap()
        .labels
        .clone()
        .unwrap_or_default();
    for pm in &m.pod_monitors {
        let want: std::collections::BTreeMap<String, String> =
            serde_json::from_value(pm["spec"]["selector"]["matchLabels"].clone()).unwrap();
        assert!(want.iter().all(|(k, v)| labels.get(k) == Some(v)), "{pm}");
        let ep = &pm["spec"]["podMetricsEndpoints"][0];
        assert_eq!(ep["port"], "metrics");
        assert_eq!(ep["path"], podnet::agent::http::METRICS);
        assert_eq!(
            pm["spec"]["namespaceSelector"]["matchNames"][0],
            ns.as_str()
        );
    }
}

#[test]
fn rbac_is_get_list_watch_on_pods_only() {
    let m = manifests();
    assert_eq!(m.roles.len(), 1);
    let role = &m.roles[0];
    let rules = role.rules.clone().unwrap_or_default();
    assert_eq!(rules.len(), 1, "{rules:?}");
    let r = &rules[0];
    assert_eq!(
        r.api_groups.clone().unwrap_or_default(),
        vec![String::new()]
    );
    assert_eq!(
        r.resources.clone().unwrap_or_default(),
        vec!["pods".to_string()]
    );
    let verbs: BTreeSet<&str> = r.verbs.iter().map(String::as_str).collect();
    assert_eq!(verbs, BTreeSet::from(["get", "list", "watch"]));
    assert_eq!(r.verbs.len(), 3);
    assert!(r.resource_names.is_none() && r.non_resource_urls.is_none());
    assert_eq!(m.bindings.len(), 1);
    let b = &m.bindings[0];
    assert_eq!(b.role_ref.kind, "ClusterRole");
    assert_eq!(Some(&b.role_ref.name), role.metadata.name.as_ref());
}

/// A Job that uninstalls (k8s/uninstall.yaml): `podnet agent --uninstall` on the pin directory
/// the DaemonSet uses, with no capability at all (removing its own files on bpffs needs none).
fn check_uninstall_job(job: &k8s_openapi::api::batch::v1::Job) {
    let pod = job.spec.as_ref().unwrap().template.spec.as_ref().unwrap();
    for c in &pod.containers {
        let args = c.args.clone().unwrap_or_default();
        assert_eq!(args.first().map(String::as_str), Some("agent"), "{args:?}");
        assert!(args.iter().any(|a| a == "--uninstall"), "{args:?}");
        let sc = c.security_context.as_ref().expect("securityContext");
        assert_eq!(sc.privileged, Some(false));
        assert_eq!(sc.allow_privilege_escalation, Some(false));
        let caps = sc.capabilities.as_ref().unwrap();
        assert_eq!(
            caps.drop.clone().unwrap_or_default(),
            vec!["ALL".to_string()]
        );
        assert!(caps.add.is_none(), "--uninstall needs no capability");
    }
}

/// Every PromQL expression in the dashboard (Grafana `targets[].expr` and template queries).
fn dashboard_exprs(v: &Value, out: &mut Vec<String>) {
    match v {
        Value::Object(m) => {
            for (k, v) in m {
                match (k.as_str(), v) {
                    ("expr", Value::String(s)) => out.push(s.clone()),
                    ("query", Value::String(s)) if s.contains("podnet_") => out.push(s.clone()),
                    ("query", Value::Object(q)) => {
                        if let Some(Value::String(s)) = q.get("query") {
                            out.push(s.clone());
                        }
                    }
                    _ => dashboard_exprs(v, out),
                }
            }
        }
        Value::Array(a) => a.iter().for_each(|v| dashboard_exprs(v, out)),
        _ => {}
    }
}

/// The metric names in a PromQL expression: every `podnet_...` identifier.
fn metric_names_in(expr: &str) -> Vec<String> {
    let mut names = Vec::new();
    let b = expr.as_bytes();
    let mut i = 0;
    while let Some(at) = expr[i..].find("podnet_") {
        let start = i + at;
        let prev_ok = start == 0 || !(b[start - 1].is_ascii_alphanumeric() || b[start - 1] == b'_');
        let mut end = start;
        while end < b.len() && (b[end].is_ascii_alphanumeric() || b[end] == b'_') {
            end += 1;
        }
        if prev_ok {
            names.push(expr[start..end].to_string());
        }
        i = end;
    }
    names
}

pub fn dashboard() -> Value {
    let text = std::fs::read_to_string(k8s_dir().join("dashboard.json")).unwrap();
    serde_json::from_str(&text).expect("k8s/dashboard.json is JSON")
}

#[test]
fn dashboard_queries_only_metrics_the_agent_exports() {
    let d = dashboard();
    let mut exprs = Vec::new();
    dashboard_exprs(&d, &mut exprs);
    assert!(exprs.len() >= 6, "{exprs:?}");
    let known = podnet::agent::metrics::metric_names();
    let mut used = BTreeSet::new();
    for e in &exprs {
        let names = metric_names_in(e);
        assert!(!names.is_empty(), "a query on no podnet metric: {e}");
        for n in names {
            assert!(
                known.contains(&n.as_str()),
                "{n} (in {e}) is not a metric the agent exports: {known:?}"
            );
            used.insert(n);
        }
    }
    // What the dashboard is for: traffic, sockets, opens, memory against its limit.
    for m in [
        "podnet_pod_network_receive_bytes_total",
        "podnet_pod_network_transmit_bytes_total",
        "podnet_pod_open_sockets",
        "podnet_pod_file_opens_total",
        "podnet_pod_memory_usage_bytes",
        "podnet_pod_memory_limit_bytes",
    ] {
        assert!(used.contains(m), "the dashboard does not show {m}");
    }
    assert_eq!(
        metric_names_in("rate(podnet_a_total[1m]) / xpodnet_b"),
        vec!["podnet_a_total"]
    );
}

// ---- running podnet as the DaemonSet would ----

/// The manifest's container args with --listen, --pin-dir, --node and --kubeconfig pointing at
/// this test's own.
fn agent_args(port: u16, pins: &Path, kubeconfig: &Path) -> Vec<String> {
    let ds = manifests().daemonset;
    let mut args = agent_container(&ds).args.clone().unwrap();
    let mut set = |flag: &str, value: String| match args.iter().position(|a| a == flag) {
        Some(i) => args[i + 1] = value,
        None => args.extend([flag.to_string(), value]),
    };
    set("--listen", format!("127.0.0.1:{port}"));
    set("--pin-dir", pins.display().to_string());
    set("--node", NODE.to_string());
    set("--kubeconfig", kubeconfig.display().to_string());
    args
}

/// Waits (bounded) until the agent is ready, and checks that it says it is alive too (the
/// DaemonSet's two probes).
fn wait_ready_and_live(agent: &mut Agent) {
    agent.wait_ready();
    let (status, _) = try_get(agent.port, podnet::agent::http::HEALTHZ).unwrap();
    assert_eq!(status, 200);
}

/// Sends datagrams between the pair and checks /metrics counts them exactly, and that the
/// capabilities were enough for the open-socket gauge too.
fn counts_exactly(agent: &Agent, p: &Pair, label: &str, port: u16) {
    let (n, size) = (23u64, 555u64);
    let (a, b) = (format!("{label}-a"), format!("{label}-b"));
    let _held = p.udp_holding(port, n, size);
    let text = agent.wait_metrics("the datagrams", |t| {
        metric(t, "podnet_pod_network_receive_packets_total", "shop", &b) == Some(n)
    });
    let bytes = n * (size + 28);
    assert_eq!(
        metric(
            &text,
            "podnet_pod_network_transmit_packets_total",
            "shop",
            &a
        ),
        Some(n)
    );
    assert_eq!(
        metric(&text, "podnet_pod_network_transmit_bytes_total", "shop", &a),
        Some(bytes)
    );
    assert_eq!(
        metric(&text, "podnet_pod_network_receive_bytes_total", "shop", &b),
        Some(bytes)
    );
    assert_eq!(
        metric(&text, "podnet_pod_sockets_created_total", "shop", &a),
        Some(1)
    );
    // SYS_PTRACE: /proc/<pid>/fd of the (root, fully capable) receiver is readable, so its
    // open fds are counted (without it the gauge is absent).
    let fds = metric(&text, "podnet_pod_open_fds", "shop", &b);
    assert!(
        fds.is_some_and(|n| n > 0),
        "open fds of {b}: {fds:?}\n{text}"
    );
    assert!(text.contains("podnet_tracked_pods 2\n"), "{text}");
    // File opens through fexit need no perf event (CAP_BPF and CAP_PERFMON load and attach it).
    // Kprobes and tracepoints do, and kernels patched to let only CAP_SYS_ADMIN open perf events
    // (kernel.perf_event_paranoid above 2: Debian's and Ubuntu's) refuse the manifest's
    // CAP_PERFMON: where fexit is refused too, the agent counts everything else, leaves the opens
    // absent and says so.
    let fexit = podnet_loader::probe::tracing_loads(podnet::attach::OPEN_FUNCTION, true).is_ok();
    let restricted = !fexit && podnet::attach::perf_event_paranoid().is_some_and(|n| n > 2);
    let opens = metric(&text, "podnet_pod_file_opens_total", "shop", &a);
    let (_, stats) = try_get(agent.port, "/stats").unwrap();
    let doc: serde_json::Value = serde_json::from_str(&stats).unwrap();
    let warned = doc["warnings"].as_array().unwrap().iter().any(|w| {
        w.as_str()
            .unwrap()
            .starts_with(podnet::attach::NO_FILE_OPENS)
    });
    assert_eq!(warned, restricted, "{:#}", doc["warnings"]);
    assert_eq!(opens.is_none(), restricted, "{text}");
}

/// The stub's kubeconfig, readable by the agent wherever it runs (the fixture's is 0600).
fn kubeconfig_copy(c: &Cluster) -> tempfile::TempDir {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let f = dir.path().join("kubeconfig");
    std::fs::copy(c.kubeconfig.path(), &f).unwrap();
    std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o644)).unwrap();
    dir
}

fn cap_list(prefix: &str) -> String {
    let mut s = String::from("-all");
    for c in CAPABILITIES {
        s.push_str(&format!(",+{prefix}{}", c.to_ascii_lowercase()));
    }
    s
}

/// `podnet agent` with exactly the manifest's capabilities: setpriv makes them the bounding,
/// inheritable, permitted and effective set of a process with no_new_privs (the DaemonSet's
/// allowPrivilegeEscalation: false), no supplementary groups, and uid/gid 0 like the DaemonSet.
/// (Not uid 65534: Kubernetes gives a non-root container no effective capabilities, and the
/// host's tracefs is 0700 root, which the DaemonSet's uid 0 reads as its owner.)
#[test]
fn agent_with_exactly_the_manifests_capabilities_counts_exactly() {
    if !require_privileges("agent_with_exactly_the_manifests_capabilities_counts_exactly") {
        return;
    }
    let mut c = Cluster::new("deploy-caps");
    let p = pair(&mut c, "dcap");
    let kc = kubeconfig_copy(&c);
    let pins = PinDir::new("deploy-caps");
    let port = free_port();
    let caps = cap_list("");
    let mut agent = Agent::spawn(
        Command::new("setpriv")
            .args(["--reuid=0", "--regid=0", "--clear-groups", "--no-new-privs"])
            .arg(format!("--inh-caps={caps}"))
            .arg(format!("--ambient-caps={caps}"))
            .arg(format!("--bounding-set={caps}"))
            .arg("--")
            .arg(podnet_bin())
            .args(agent_args(port, &pins.0, &kc.path().join("kubeconfig")))
            .env("RUST_LOG", "podnet=debug"),
        port,
        None,
    );
    wait_ready_and_live(&mut agent);
    // What the agent actually held.
    let status = std::fs::read_to_string(format!("/proc/{}/status", agent.child.id())).unwrap();
    let eff = status
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))
        .unwrap()
        .trim()
        .to_string();
    let bnd = status
        .lines()
        .find_map(|l| l.strip_prefix("CapBnd:"))
        .unwrap()
        .trim()
        .to_string();
    let want = CAPABILITIES
        .iter()
        .map(|c| match *c {
            "NET_ADMIN" => 1u64 << 12,
            "SYS_PTRACE" => 1 << 19,
            "PERFMON" => 1 << 38,
            "BPF" => 1 << 39,
            other => panic!("teach the test the number of CAP_{other}"),
        })
        .fold(0, |a, b| a | b);
    assert_eq!(u64::from_str_radix(&eff, 16).unwrap(), want, "CapEff");
    assert_eq!(u64::from_str_radix(&bnd, 16).unwrap(), want, "CapBnd");
    assert!(status
        .lines()
        .any(|l| l.starts_with("NoNewPrivs:") && l.ends_with('1')));
    counts_exactly(&agent, &p, "dcap", 9410);
    drop(agent);
}

fn podman_ok() -> bool {
    Command::new("podman")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// The limit the container is given explicitly (podman's defaults are refused here with EPERM):
/// this process's hard limit, at most `max` (runc may lower a limit, never raise one; uid 0
/// without CAP_SYS_RESOURCE is held to RLIMIT_NPROC, so not too low either; and podman 4.3 with
/// runc refuses an nproc of 65536 here, measured, while 32768 works).
fn ulimit(res: nix::sys::resource::Resource, max: u64) -> u64 {
    let (_, hard) = nix::sys::resource::getrlimit(res).unwrap();
    hard.min(max)
}

/// The image (k8s/build-image.sh with this build's podnet) in a podman container with the
/// DaemonSet's capabilities, security settings and host mounts: ready, and exact counts.
#[test]
fn image_runs_with_the_manifests_capabilities_and_counts_exactly() {
    if !require_privileges("image_runs_with_the_manifests_capabilities_and_counts_exactly") {
        return;
    }
    if !podman_ok() {
        skip(
            "image_runs_with_the_manifests_capabilities_and_counts_exactly",
            "podman is not installed: `make deps` installs it (DEB_PKGS)",
        );
        return;
    }
    let id = unique("image");
    let image = Image(format!("localhost/podnet-test:{id}"));
    let out = Command::new(k8s_dir().join("build-image.sh"))
        .env("IMAGE", &image.0)
        .env("PODNET", podnet_bin())
        .env("ENGINE", "podman")
        .env("STAGE_NAME", format!("test-{id}"))
        // A staging directory of the test's own, also where the repository is read-only (the
        // kernel matrix's guests); removed with the image.
        .env("STAGE_DIR", std::env::temp_dir().join("podnet-image-stage"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "k8s/build-image.sh failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );

    let mut c = Cluster::new("deploy-image");
    let p = pair(&mut c, "dimg");
    let kc = kubeconfig_copy(&c);
    let pins = PinDir::new("deploy-image");
    let port = free_port();
    let name = format!("podnet-test-{id}");
    let caps: Vec<String> = CAPABILITIES
        .iter()
        .map(|c| c.to_ascii_lowercase())
        .collect();
    let nofile = ulimit(nix::sys::resource::Resource::RLIMIT_NOFILE, 65536);
    let nproc = ulimit(nix::sys::resource::Resource::RLIMIT_NPROC, 16384);
    let mut podman = Command::new("podman");
    podman
        .args(["run", "--rm", "--name", &name])
        // Debian's crun refuses this hybrid cgroup host; runc runs it.
        .args(["--runtime", "runc"])
        .arg(format!("--ulimit=nofile={nofile}:{nofile}"))
        .arg(format!("--ulimit=nproc={nproc}:{nproc}"))
        // The DaemonSet's securityContext.
        .args(["--cap-drop=all", &format!("--cap-add={}", caps.join(","))])
        .args([
            "--security-opt",
            "no-new-privileges",
            "--security-opt",
            "seccomp=unconfined",
        ])
        .args(["--read-only", "--user", "0:0"])
        // hostPID, the host's cgroup tree, bpffs and tracefs (the pod network is the host's
        // here: the stub API server and the probes are on 127.0.0.1).
        .args(["--pid=host", "--network=host"])
        .args(["-v", "/sys/fs/cgroup:/sys/fs/cgroup:ro"])
        .args(["-v", "/sys/fs/bpf:/sys/fs/bpf"])
        .args(["-v", "/sys/kernel/tracing:/sys/kernel/tracing:ro"])
        .arg("-v")
        .arg(format!("{}:/kube:ro", kc.path().display()))
        .args([
            "-e",
            &format!("NODE_NAME={NODE}"),
            "-e",
            "RUST_LOG=podnet=debug",
        ])
        .arg(&image.0)
        .args(agent_args(port, &pins.0, Path::new("/kube/kubeconfig")));
    let mut agent = Agent::spawn(&mut podman, port, Some(name));
    wait_ready_and_live(&mut agent);
    counts_exactly(&agent, &p, "dimg", 9411);
    drop(agent);
}

/// A podman image removed on drop.
struct Image(String);

impl Drop for Image {
    fn drop(&mut self) {
        let _ = Command::new("podman")
            .args(["rmi", "-f", &self.0])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        let _ = std::fs::remove_dir_all(std::env::temp_dir().join("podnet-image-stage"));
    }
}

/// The measurement the DaemonSet's requests and limits come from (k8s/README.md, "Sizing"):
/// `PODS` sandbox pods (one container each, every layout in turn) listed by the stub API server,
/// the agent as the DaemonSet runs it, /metrics scraped every second; after it is ready, its
/// peak RSS (VmHWM), RSS and CPU time (utime + stime from /proc/<pid>/stat) over 60 s.
/// `PODS=100 PODNET=target/release/podnet cargo test -p podnet --test deploy_manifests --
/// --ignored --nocapture measure_agent_footprint`
#[test]
#[ignore = "a measurement, not a check: run it by hand to re-size the DaemonSet"]
fn measure_agent_footprint() {
    if !require_privileges("measure_agent_footprint") {
        return;
    }
    let pods: usize = std::env::var("PODS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100);
    let mut c = Cluster::new("deploy-measure");
    let layouts = Layout::all();
    let mut held = Vec::new();
    for i in 0..pods {
        let layout = layouts[i % layouts.len()].clone();
        held.push(c.pod("load", &format!("m{i}"), layout, Qos::Burstable, &["app"]));
    }
    let kc = kubeconfig_copy(&c);
    let pins = PinDir::new("deploy-measure");
    let port = free_port();
    // PODNET=target/release/podnet measures the build the image ships.
    let bin = std::env::var_os("PODNET")
        .map(PathBuf::from)
        .unwrap_or_else(podnet_bin);
    let started = Instant::now();
    let mut agent = Agent::spawn(
        Command::new(bin)
            .args(agent_args(port, &pins.0, &kc.path().join("kubeconfig")))
            .env("RUST_LOG", "podnet=info"),
        port,
        None,
    );
    wait_ready_and_live(&mut agent);
    let ready_after = started.elapsed();
    agent.wait_metrics("every pod", |t| {
        t.contains(&format!("podnet_tracked_pods {pods}\n"))
    });
    let pid = agent.child.id();
    let ticks = |pid: u32| -> u64 {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
        let rest = &stat[stat.rfind(')').unwrap() + 2..];
        let f: Vec<&str> = rest.split_whitespace().collect();
        f[11].parse::<u64>().unwrap() + f[12].parse::<u64>().unwrap()
    };
    let kib = |pid: u32, key: &str| -> u64 {
        std::fs::read_to_string(format!("/proc/{pid}/status"))
            .unwrap()
            .lines()
            .find_map(|l| l.strip_prefix(key))
            .unwrap()
            .trim()
            .trim_end_matches(" kB")
            .parse()
            .unwrap()
    };
    let hz = nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK)
        .unwrap()
        .unwrap() as f64;
    let (t0, c0) = (Instant::now(), ticks(pid));
    let mut bytes = 0;
    while t0.elapsed() < Duration::from_secs(60) {
        bytes = try_get(port, podnet::agent::http::METRICS).unwrap().1.len();
        std::thread::sleep(Duration::from_secs(1));
    }
    let cpu = (ticks(pid) - c0) as f64 / hz / t0.elapsed().as_secs_f64();
    eprintln!(
        "MEASURE pods={pods} ready_after={ready_after:?} rss={} KiB hwm={} KiB cpu={:.2}% of a core \
         (scraped every 1 s, /metrics {bytes} B)",
        kib(pid, "VmRSS:"),
        kib(pid, "VmHWM:"),
        cpu * 100.0
    );
}
