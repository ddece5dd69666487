//! Contract tests of discovery against a stub API server that speaks the real wire format.
//! No privileges needed: the fallback scans a plain directory tree laid out like cgroups.

use std::ffi::OsString;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use podnet::discover::{
    discover_with_env, ConfigEnv, DiscoverError, DiscoverOptions, PodsFrom, Source,
};
use podnet::model::{ContainerInfo, PodInfo};
use podnet_testing::apiserver::{kubeconfig_yaml, pod_json, StubApiServer};
use serde_json::{json, Value};

const CID_WEB: &str = "1111111111111111111111111111111111111111111111111111111111111111";
const CID_DB: &str = "2222222222222222222222222222222222222222222222222222222222222222";
const UID_WEB: &str = "0a000000-0000-4000-8000-000000000001";
const UID_DB: &str = "0a000000-0000-4000-8000-000000000002";
const UID_OTHER: &str = "0a000000-0000-4000-8000-000000000003";
const UID_NEW: &str = "0a000000-0000-4000-8000-000000000004";
const UID_DNS: &str = "0a000000-0000-4000-8000-000000000005";

fn pods() -> Vec<Value> {
    vec![
        pod_json(
            "shop",
            "web-0",
            UID_WEB,
            "node-a",
            "Running",
            "Burstable",
            false,
            &[("app", "web"), ("tier", "fe")],
            &[("web", &format!("containerd://{CID_WEB}"))],
        ),
        pod_json(
            "shop",
            "db-0",
            UID_DB,
            "node-a",
            "Running",
            "Guaranteed",
            false,
            &[("app", "db")],
            &[("db", &format!("cri-o://{CID_DB}"))],
        ),
        pod_json(
            "shop",
            "web-1",
            UID_OTHER,
            "node-b",
            "Running",
            "Burstable",
            false,
            &[("app", "web")],
            &[("web", "containerd://3333")],
        ),
        pod_json(
            "shop",
            "web-2",
            UID_NEW,
            "node-a",
            "Pending",
            "Burstable",
            false,
            &[("app", "web")],
            &[("web", "")],
        ),
        pod_json(
            "kube-system",
            "dns",
            UID_DNS,
            "node-a",
            "Running",
            "BestEffort",
            true,
            &[],
            &[("dns", "docker://4444")],
        ),
    ]
}

/// A scratch directory removed on drop.
struct Scratch(PathBuf);

impl Scratch {
    fn new(tag: &str) -> Scratch {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let p = std::env::temp_dir().join(format!(
            "podnet-discover-{tag}-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::SeqCst)
        ));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).unwrap();
        Scratch(p)
    }
    fn path(&self, rel: &str) -> PathBuf {
        self.0.join(rel)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// An environment with nothing configured (no KUBECONFIG, no home kubeconfig, not in a pod).
fn bare_env() -> ConfigEnv {
    ConfigEnv::default()
}

fn opts(node: &str) -> DiscoverOptions {
    DiscoverOptions {
        node: node.to_string(),
        ..DiscoverOptions::default()
    }
}

fn names(pods: &[PodInfo]) -> Vec<String> {
    pods.iter()
        .map(|p| format!("{}/{}", p.namespace, p.name))
        .collect()
}

/// A loopback port with nothing listening.
fn dead_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    drop(l);
    port
}

/// A cgroup-like tree with one systemd-layout pod holding one container.
fn fake_cgroup_tree(s: &Scratch) -> PathBuf {
    let root = s.path("cgroup");
    let pod = root.join(format!(
        "kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{}.slice",
        UID_WEB.replace('-', "_")
    ));
    std::fs::create_dir_all(pod.join(format!("cri-containerd-{CID_WEB}.scope"))).unwrap();
    root
}

#[tokio::test]
async fn node_scoped_list_over_plain_http() {
    let stub = StubApiServer::start(pods());
    let s = Scratch::new("node");
    let cfg = s.path("kubeconfig");
    stub.write_kubeconfig(&cfg, Some("s3cret")).unwrap();
    let o = DiscoverOptions {
        kubeconfig: Some(cfg),
        ..opts("node-a")
    };
    let d = discover_with_env(&o, &bare_env()).await.unwrap();
    assert_eq!(d.source, Source::Api { server: stub.url() });
    assert_eq!(d.warnings, Vec::<String>::new());
    // web-1 runs on node-b: the server leaves it out because we asked for node-a only.
    assert_eq!(
        names(&d.pods),
        ["shop/web-0", "shop/db-0", "shop/web-2", "kube-system/dns"]
    );
    let reqs = stub.requests();
    assert_eq!(reqs.len(), 1);
    assert_eq!(reqs[0].method, "GET");
    assert_eq!(reqs[0].path, "/api/v1/pods");
    assert_eq!(
        reqs[0].query_value("fieldSelector"),
        Some("spec.nodeName=node-a")
    );
    assert_eq!(reqs[0].query_value("labelSelector"), None);
    assert_eq!(reqs[0].authorization.as_deref(), Some("Bearer s3cret"));
}

#[tokio::test]
async fn pods_are_mapped_from_the_wire_format() {
    let stub = StubApiServer::start(pods());
    let s = Scratch::new("map");
    let cfg = s.path("kubeconfig");
    stub.write_kubeconfig(&cfg, None).unwrap();
    let o = DiscoverOptions {
        kubeconfig: Some(cfg),
        ..opts("node-a")
    };
    let d = discover_with_env(&o, &bare_env()).await.unwrap();
    assert_eq!(
        d.pods[1],
        PodInfo {
            namespace: "shop".into(),
            name: "db-0".into(),
            uid: UID_DB.into(),
            qos_class: Some("Guaranteed".into()),
            node_name: Some("node-a".into()),
            phase: Some("Running".into()),
            host_network: false,
            containers: vec![ContainerInfo {
                name: "db".into(),
                id: Some(CID_DB.into()),
                runtime: Some("cri-o".into()),
            }],
        }
    );
    // Pending, container not started: kept, with no container id.
    assert_eq!(d.pods[2].phase.as_deref(), Some("Pending"));
    assert_eq!(
        d.pods[2].containers,
        vec![ContainerInfo {
            name: "web".into(),
            id: None,
            runtime: None
        }]
    );
    assert!(d.pods[3].host_network);
    assert_eq!(d.pods[3].containers[0].runtime.as_deref(), Some("docker"));
    assert_eq!(d.pods[3].containers[0].id.as_deref(), Some("4444"));
    assert!(stub.requests()[0].authorization.is_none());
}

#[tokio::test]
async fn namespace_and_selector_are_sent() {
    let stub = StubApiServer::start(pods());
    let s = Scratch::new("ns");
    let cfg = s.path("kubeconfig");
    stub.write_kubeconfig(&cfg, None).unwrap();
    let o = DiscoverOptions {
        kubeconfig: Some(cfg),
        namespace: Some("shop".into()),
        selector: Some("app=web,tier".into()),
        ..opts("node-a")
    };
    let d = discover_with_env(&o, &bare_env()).await.unwrap();
    assert_eq!(names(&d.pods), ["shop/web-0"]);
    let reqs = stub.requests();
    assert_eq!(reqs.len(), 1);
    assert_eq!(reqs[0].path, "/api/v1/namespaces/shop/pods");
    assert_eq!(
        reqs[0].query_value("fieldSelector"),
        Some("spec.nodeName=node-a")
    );
    assert_eq!(reqs[0].query_value("labelSelector"), Some("app=web,tier"));
}

#[tokio::test]
async fn invalid_selector_is_an_error_before_any_request() {
    let stub = StubApiServer::start(pods());
    let s = Scratch::new("badsel");
    let cfg = s.path("kubeconfig");
    stub.write_kubeconfig(&cfg, None).unwrap();
    let o = DiscoverOptions {
        kubeconfig: Some(cfg),
        selector: Some("app in (web".into()),
        ..opts("node-a")
    };
    let e = discover_with_env(&o, &bare_env()).await.unwrap_err();
    assert!(matches!(e, DiscoverError::Selector { .. }), "{e:?}");
    assert!(
        e.to_string()
            .contains("invalid label selector `app in (web`"),
        "{e}"
    );
    assert!(stub.requests().is_empty());
}

async fn status_error(code: u16) -> DiscoverError {
    let stub = StubApiServer::start(pods());
    stub.set_status(code);
    let s = Scratch::new(&format!("status{code}"));
    let cfg = s.path("kubeconfig");
    stub.write_kubeconfig(&cfg, Some("expired")).unwrap();
    let o = DiscoverOptions {
        kubeconfig: Some(cfg),
        ..opts("node-a")
    };
    let e = discover_with_env(&o, &bare_env()).await.unwrap_err();
    // One request: errors are not retried and never fall back.
    assert_eq!(stub.requests().len(), 1, "{e}");
    e
}

#[tokio::test]
async fn unauthorized_names_the_credentials() {
    let e = status_error(401).await;
    assert!(matches!(e, DiscoverError::Unauthorized { .. }), "{e:?}");
    let msg = e.to_string();
    assert!(msg.contains("rejected our credentials"), "{msg}");
    assert!(msg.contains("check the kubeconfig user / token"), "{msg}");
}

#[tokio::test]
async fn forbidden_names_rbac() {
    let e = status_error(403).await;
    assert!(matches!(e, DiscoverError::Forbidden { .. }), "{e:?}");
    let msg = e.to_string();
    assert!(msg.contains("RBAC forbids listing pods"), "{msg}");
    assert!(
        msg.contains("grant list on pods, see k8s/rbac.yaml"),
        "{msg}"
    );
    assert!(
        msg.contains("cannot list resource \"pods\""),
        "the server's message is kept: {msg}"
    );
}

#[tokio::test]
async fn server_error_carries_its_message() {
    let e = status_error(500).await;
    match &e {
        DiscoverError::ServerError { code, message, .. } => {
            assert_eq!(*code, 500);
            assert_eq!(
                message,
                "Internal error occurred: etcdserver: request timed out"
            );
        }
        other => panic!("expected ServerError, got {other:?}"),
    }
}

#[tokio::test]
async fn unreachable_server_falls_back_to_the_cgroup_scan() {
    let s = Scratch::new("unreach");
    let port = dead_port();
    let server = format!("http://127.0.0.1:{port}");
    let cfg = s.path("kubeconfig");
    std::fs::write(&cfg, kubeconfig_yaml(&server, "dead", None)).unwrap();
    let root = fake_cgroup_tree(&s);
    let o = DiscoverOptions {
        kubeconfig: Some(cfg),
        cgroup2: Some(root.clone()),
        namespace: Some("shop".into()),
        ..opts("node-a")
    };
    // A refused connection falls back at once; the outer bound only keeps a broken build from
    // hanging the suite (no speed assertion: emulated kernels take seconds to set up a client).
    let d = tokio::time::timeout(Duration::from_secs(120), discover_with_env(&o, &bare_env()))
        .await
        .expect("discovery gives up on a refused connection")
        .unwrap();
    assert_eq!(d.source, Source::CgroupScan { root: root.clone() });
    assert_eq!(
        d.pods,
        vec![PodInfo {
            uid: UID_WEB.into(),
            qos_class: Some("Burstable".into()),
            containers: vec![ContainerInfo {
                name: String::new(),
                id: Some(CID_WEB.into()),
                runtime: Some("containerd".into()),
            }],
            ..PodInfo::default()
        }]
    );
    assert_eq!(d.warnings.len(), 2, "{:?}", d.warnings);
    let w = &d.warnings[0];
    assert!(
        w.starts_with(&format!(
            "cannot reach the Kubernetes API server at {server} (connection refused)"
        )),
        "{w}"
    );
    assert!(w.contains("pods are known by UID only"), "{w}");
    assert!(
        w.contains("--kubeconfig") && w.contains("--pods-from"),
        "{w}"
    );
    assert!(d.warnings[1].contains("-n/--namespace and -l/--selector cannot be applied"));
}

#[tokio::test]
async fn nothing_configured_falls_back_with_a_warning() {
    let s = Scratch::new("nothing");
    let root = fake_cgroup_tree(&s);
    // HOME without a kubeconfig.
    let env = ConfigEnv {
        home: Some(s.path("home")),
        ..bare_env()
    };
    let o = DiscoverOptions {
        cgroup2: Some(root.clone()),
        ..opts("node-a")
    };
    let d = discover_with_env(&o, &env).await.unwrap();
    assert_eq!(d.source, Source::CgroupScan { root });
    assert_eq!(d.pods.len(), 1);
    assert_eq!(d.pods[0].uid, UID_WEB);
    assert_eq!(d.warnings.len(), 1);
    assert!(
        d.warnings[0].starts_with("no Kubernetes API configured"),
        "{}",
        d.warnings[0]
    );
    assert!(d.warnings[0].contains("(1 found)"), "{}", d.warnings[0]);
}

#[tokio::test]
async fn fallback_without_a_scannable_tree_is_an_error() {
    let s = Scratch::new("noscan");
    let o = DiscoverOptions {
        cgroup2: Some(s.path("does-not-exist")),
        ..opts("node-a")
    };
    let e = discover_with_env(&o, &bare_env()).await.unwrap_err();
    assert!(matches!(e, DiscoverError::NoSource { .. }), "{e:?}");
    assert!(
        e.to_string().starts_with("no Kubernetes API configured"),
        "{e}"
    );
}

#[tokio::test]
async fn kubeconfig_env_list_is_used() {
    let stub = StubApiServer::start(pods());
    let s = Scratch::new("envlist");
    let cfg = s.path("kubeconfig");
    stub.write_kubeconfig(&cfg, None).unwrap();
    let mut list = OsString::from(s.path("missing").as_os_str());
    list.push(":");
    list.push(cfg.as_os_str());
    let env = ConfigEnv {
        kubeconfig: Some(list),
        ..bare_env()
    };
    let d = discover_with_env(&opts("node-a"), &env).await.unwrap();
    assert_eq!(d.source, Source::Api { server: stub.url() });
    assert_eq!(stub.requests().len(), 1);

    let env = ConfigEnv {
        kubeconfig: Some(s.path("missing").into_os_string()),
        ..bare_env()
    };
    let e = discover_with_env(&opts("node-a"), &env).await.unwrap_err();
    assert!(
        matches!(e, DiscoverError::KubeconfigUnreadable { .. }),
        "{e:?}"
    );
    assert!(
        e.to_string().contains("KUBECONFIG names no existing file"),
        "{e}"
    );
}

#[tokio::test]
async fn flag_wins_over_kubeconfig_env() {
    let stub = StubApiServer::start(pods());
    let s = Scratch::new("flagwins");
    let good = s.path("good");
    stub.write_kubeconfig(&good, None).unwrap();
    let env = ConfigEnv {
        kubeconfig: Some(s.path("missing").into_os_string()),
        ..bare_env()
    };
    let o = DiscoverOptions {
        kubeconfig: Some(good),
        ..opts("node-a")
    };
    let d = discover_with_env(&o, &env).await.unwrap();
    assert_eq!(d.source, Source::Api { server: stub.url() });
}

/// A kubeconfig whose current context points at a dead port and whose `stub` context points at
/// the stub server.
fn two_context_kubeconfig(stub: &StubApiServer, dead: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Config\ncurrent-context: dead\n\
         clusters:\n- name: dead\n  cluster:\n    server: {dead}\n- name: stub\n  cluster:\n    server: {}\n\
         users:\n- name: u\n  user:\n    token: abc\n\
         contexts:\n- name: dead\n  context:\n    cluster: dead\n    user: u\n- name: stub\n  context:\n    cluster: stub\n    user: u\n    namespace: ignored\n",
        stub.url()
    )
}

#[tokio::test]
async fn context_selects_the_cluster() {
    let stub = StubApiServer::start(pods());
    let s = Scratch::new("ctx");
    let dead = format!("http://127.0.0.1:{}", dead_port());
    let cfg = s.path("kubeconfig");
    std::fs::write(&cfg, two_context_kubeconfig(&stub, &dead)).unwrap();
    let root = fake_cgroup_tree(&s);

    let o = DiscoverOptions {
        kubeconfig: Some(cfg.clone()),
        context: Some("stub".into()),
        cgroup2: Some(root.clone()),
        ..opts("node-a")
    };
    let d = discover_with_env(&o, &bare_env()).await.unwrap();
    assert_eq!(d.source, Source::Api { server: stub.url() });
    assert_eq!(d.pods.len(), 4);
    // The context's namespace does not narrow a node-wide list.
    assert_eq!(stub.requests()[0].path, "/api/v1/pods");
    assert_eq!(
        stub.requests()[0].authorization.as_deref(),
        Some("Bearer abc")
    );

    // Without --context, the current context (dead) is used.
    let o = DiscoverOptions { context: None, ..o };
    let d = discover_with_env(&o, &bare_env()).await.unwrap();
    assert_eq!(d.source, Source::CgroupScan { root });
    assert!(d.warnings[0].contains(&dead), "{:?}", d.warnings);
    assert_eq!(stub.requests().len(), 1);

    let o = DiscoverOptions {
        context: Some("nope".into()),
        ..o
    };
    let e = discover_with_env(&o, &bare_env()).await.unwrap_err();
    match &e {
        DiscoverError::ContextNotFound { path, context } => {
            assert_eq!(path, &cfg);
            assert_eq!(context, "nope");
        }
        other => panic!("expected ContextNotFound, got {other:?}"),
    }
    assert!(e.to_string().contains("kubectl config get-contexts"), "{e}");
}

#[tokio::test]
async fn bad_kubeconfig_files_are_errors() {
    let s = Scratch::new("badcfg");
    let missing = s.path("nope");
    let o = DiscoverOptions {
        kubeconfig: Some(missing.clone()),
        ..opts("node-a")
    };
    let e = discover_with_env(&o, &bare_env()).await.unwrap_err();
    match &e {
        DiscoverError::KubeconfigUnreadable { path, .. } => assert_eq!(path, &missing),
        other => panic!("expected KubeconfigUnreadable, got {other:?}"),
    }
    assert!(e.to_string().contains("--kubeconfig"), "{e}");

    let garbage = s.path("garbage");
    std::fs::write(&garbage, "clusters: [this is: not: valid\n").unwrap();
    let o = DiscoverOptions {
        kubeconfig: Some(garbage.clone()),
        ..opts("node-a")
    };
    let e = discover_with_env(&o, &bare_env()).await.unwrap_err();
    match &e {
        DiscoverError::KubeconfigInvalid { path, .. } => assert_eq!(path, &garbage),
        other => panic!("expected KubeconfigInvalid, got {other:?}"),
    }
}

#[tokio::test]
async fn home_then_sudo_user_kubeconfig() {
    let stub = StubApiServer::start(pods());
    let s = Scratch::new("sudo");
    let root_home = s.path("root");
    let alice_home = s.path("alice");
    std::fs::create_dir_all(alice_home.join(".kube")).unwrap();
    std::fs::create_dir_all(&root_home).unwrap();
    stub.write_kubeconfig(&alice_home.join(".kube/config"), Some("alice-token"))
        .unwrap();
    let env = ConfigEnv {
        home: Some(root_home.clone()),
        sudo_user: Some(("alice".into(), alice_home)),
        ..bare_env()
    };
    let d = discover_with_env(&opts("node-a"), &env).await.unwrap();
    assert_eq!(d.source, Source::Api { server: stub.url() });
    assert_eq!(
        stub.requests()[0].authorization.as_deref(),
        Some("Bearer alice-token")
    );

    // root's own ~/.kube/config comes first.
    std::fs::create_dir_all(root_home.join(".kube")).unwrap();
    stub.write_kubeconfig(&root_home.join(".kube/config"), Some("root-token"))
        .unwrap();
    discover_with_env(&opts("node-a"), &env).await.unwrap();
    assert_eq!(
        stub.requests()[1].authorization.as_deref(),
        Some("Bearer root-token")
    );
}

#[tokio::test]
async fn empty_node_name_is_an_error() {
    let stub = StubApiServer::start(pods());
    let s = Scratch::new("nonode");
    let cfg = s.path("kubeconfig");
    stub.write_kubeconfig(&cfg, None).unwrap();
    let o = DiscoverOptions {
        kubeconfig: Some(cfg),
        ..opts("")
    };
    let e = discover_with_env(&o, &bare_env()).await.unwrap_err();
    assert!(matches!(e, DiscoverError::NoNode), "{e:?}");
    assert!(stub.requests().is_empty());
}

/// `kubectl get pods -A -o json` output: a v1 List of Pods with kind/apiVersion on each item.
fn kubectl_list(items: Vec<Value>) -> String {
    json!({"apiVersion": "v1", "kind": "List", "metadata": {"resourceVersion": ""}, "items": items})
        .to_string()
}

async fn from_file(
    path: &Path,
    node: &str,
    ns: Option<&str>,
    sel: Option<&str>,
) -> Result<podnet::discover::Discovery, DiscoverError> {
    let o = DiscoverOptions {
        pods_from: Some(PodsFrom::File(path.to_path_buf())),
        namespace: ns.map(str::to_string),
        selector: sel.map(str::to_string),
        // Must not be used: --pods-from never talks to a server.
        kubeconfig: Some(PathBuf::from("/nonexistent/kubeconfig")),
        ..opts(node)
    };
    discover_with_env(&o, &bare_env()).await
}

#[tokio::test]
async fn pods_from_file_with_every_filter() {
    let s = Scratch::new("file");
    let mut items = pods();
    // A Pending pod not scheduled yet.
    items.push(pod_json(
        "shop",
        "queued",
        "0a000000-0000-4000-8000-000000000009",
        "",
        "Pending",
        "BestEffort",
        false,
        &[("app", "web")],
        &[("web", "")],
    ));
    let path = s.path("pods.json");
    std::fs::write(&path, kubectl_list(items)).unwrap();

    let d = from_file(&path, "node-a", None, None).await.unwrap();
    assert_eq!(
        d.source,
        Source::File {
            path: path.display().to_string()
        }
    );
    assert_eq!(
        names(&d.pods),
        ["shop/web-0", "shop/db-0", "shop/web-2", "kube-system/dns"]
    );
    assert_eq!(
        d.warnings,
        vec!["pod shop/queued is Pending and not scheduled to a node yet: left out"]
    );
    assert_eq!(d.pods[0].containers[0].id.as_deref(), Some(CID_WEB));

    // (node, namespace, selector, expected pods)
    type Case<'a> = (&'a str, Option<&'a str>, Option<&'a str>, &'a [&'a str]);
    let cases: &[Case] = &[
        ("node-b", None, None, &["shop/web-1"]),
        ("node-a", Some("kube-system"), None, &["kube-system/dns"]),
        (
            "node-a",
            Some("shop"),
            Some("app=web"),
            &["shop/web-0", "shop/web-2"],
        ),
        ("node-a", None, Some("app==web,tier=fe"), &["shop/web-0"]),
        (
            "node-a",
            None,
            Some("app!=web"),
            &["shop/db-0", "kube-system/dns"],
        ),
        ("node-a", None, Some("!app"), &["kube-system/dns"]),
        ("node-a", None, Some("tier"), &["shop/web-0"]),
        (
            "node-a",
            None,
            Some("app in (db, web),!tier"),
            &["shop/db-0", "shop/web-2"],
        ),
        (
            "node-a",
            None,
            Some("app notin (web)"),
            &["shop/db-0", "kube-system/dns"],
        ),
        ("node-c", None, None, &[]),
    ];
    for (node, ns, sel, want) in cases {
        let d = from_file(&path, node, *ns, *sel).await.unwrap();
        assert_eq!(
            names(&d.pods),
            *want,
            "node {node} ns {ns:?} selector {sel:?}"
        );
    }

    let e = from_file(&path, "node-a", None, Some("app="))
        .await
        .map(|d| names(&d.pods));
    assert_eq!(
        e.unwrap(),
        Vec::<String>::new(),
        "app= selects pods whose app label is empty"
    );
    let e = from_file(&path, "node-a", None, Some("app in ()"))
        .await
        .unwrap_err();
    assert!(matches!(e, DiscoverError::Selector { .. }), "{e:?}");
}

#[tokio::test]
async fn pods_from_single_pod_and_bad_files() {
    let s = Scratch::new("file2");
    let one = s.path("one.json");
    std::fs::write(&one, pods()[1].to_string()).unwrap();
    let d = from_file(&one, "node-a", None, None).await.unwrap();
    assert_eq!(names(&d.pods), ["shop/db-0"]);

    let table = s.path("table.txt");
    std::fs::write(&table, "NAME    READY   STATUS\nweb-0   1/1     Running\n").unwrap();
    let e = from_file(&table, "node-a", None, None).await.unwrap_err();
    assert!(matches!(e, DiscoverError::PodsFrom { .. }), "{e:?}");
    assert!(e.to_string().contains("kubectl get pods -o json"), "{e}");

    let e = from_file(&s.path("absent.json"), "node-a", None, None)
        .await
        .unwrap_err();
    assert!(matches!(e, DiscoverError::PodsFrom { .. }), "{e:?}");
}

#[tokio::test]
async fn https_to_a_dead_port_falls_back() {
    // Also proves the TLS stack initialises (no missing crypto provider).
    let s = Scratch::new("https-dead");
    let server = format!("https://127.0.0.1:{}", dead_port());
    let cfg = s.path("kubeconfig");
    std::fs::write(&cfg, kubeconfig_yaml(&server, "tls", Some("t"))).unwrap();
    let root = fake_cgroup_tree(&s);
    let o = DiscoverOptions {
        kubeconfig: Some(cfg),
        cgroup2: Some(root.clone()),
        ..opts("node-a")
    };
    let d = discover_with_env(&o, &bare_env()).await.unwrap();
    assert_eq!(d.source, Source::CgroupScan { root });
    assert!(
        d.warnings[0].starts_with(&format!(
            "cannot reach the Kubernetes API server at {server} (connection refused)"
        )),
        "{}",
        d.warnings[0]
    );
}

#[tokio::test]
async fn tls_to_a_plain_http_server_is_an_error_not_a_fallback() {
    let stub = StubApiServer::start(pods());
    let s = Scratch::new("tls-mismatch");
    let server = stub.url().replace("http://", "https://");
    let cfg = s.path("kubeconfig");
    std::fs::write(&cfg, kubeconfig_yaml(&server, "tls", None)).unwrap();
    let o = DiscoverOptions {
        kubeconfig: Some(cfg),
        cgroup2: Some(fake_cgroup_tree(&s)),
        ..opts("node-a")
    };
    let e = discover_with_env(&o, &bare_env()).await.unwrap_err();
    match &e {
        DiscoverError::Transport {
            server: got,
            reason,
        } => {
            assert_eq!(got, &server);
            assert!(reason.contains("tls handshake"), "{reason}");
        }
        other => panic!("expected Transport, got {other:?}"),
    }
    assert!(
        e.to_string()
            .contains("check the kubeconfig's server URL and certificate authority"),
        "{e}"
    );
}
