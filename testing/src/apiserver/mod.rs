//! A stub Kubernetes API server on 127.0.0.1 for podnet's discovery tests and demo.
//!
//! It speaks the real wire format over plain HTTP/1.1 (on hyper, as kube's client does):
//! `GET /api/v1/pods` and `GET /api/v1/namespaces/<ns>/pods` answer a `PodList` filtered by
//! `fieldSelector` (`spec.nodeName`, `metadata.namespace`, `metadata.name`, `status.phase`, with
//! `=`, `==`, `!=`) and `labelSelector` (equality, inequality and existence requirements joined by
//! commas), exactly as the real server filters, so a client that forgets to send a selector sees
//! pods it should not. Discovery (`/version`, `/api`, `/api/v1`, `/apis`) is enough for
//! `kubectl get pods`.
//!
//! **Watch.** With `watch=true` (or `1`) the same paths stream newline-delimited JSON events
//! (`{"type":"ADDED|MODIFIED|DELETED|BOOKMARK|ERROR","object":{...}}`, chunked), honouring
//! `resourceVersion` (unset or `0`: an ADDED event per existing pod first; `N`: every change after
//! N, replayed from a bounded history), `timeoutSeconds` (the stream then ends; default 30
//! minutes), `allowWatchBookmarks` (a BOOKMARK before a timeout ends the stream, and on
//! [`StubApiServer::bookmark`]), `sendInitialEvents` and both selectors; a pod that starts or stops
//! matching a watch's selectors is ADDED or DELETED to it, as on the real server. Every write
//! ([`StubApiServer::add_pod`], [`update_pod`](StubApiServer::update_pod),
//! [`delete_pod`](StubApiServer::delete_pod), [`set_pods`](StubApiServer::set_pods)) takes the next
//! `resourceVersion`; objects carry it in `metadata.resourceVersion`, lists carry the latest. A
//! watch from a version older than the history kept ([`StubApiServer::compact`],
//! [`set_history_limit`](StubApiServer::set_history_limit)) gets one `ERROR` event holding a
//! `Status` 410 `Expired`, as the real server sends it.
//!
//! **Failures.** [`StubApiServer::set_status`] answers every request with a `kind: Status`
//! failure (401, 403, 500, ...), [`StubApiServer::fail_next`] only the next N requests,
//! [`StubApiServer::answer_lists_with`] answers pod lists 200 with any object but a `PodList`, and
//! [`StubApiServer::drop_watches`] breaks every open watch connection mid-stream. Every request is
//! recorded ([`StubApiServer::requests`]) with its query decoded.
//!
//! ```no_run
//! use podnet_testing::apiserver::{pod_json, StubApiServer};
//! let pod = pod_json("shop", "web-0", "8d3e2f4a-1b2c-4d5e-8f90-a1b2c3d4e5f6", "node-1", "Running",
//!                    "Burstable", false, &[("app", "web")], &[("web", "containerd://0123")]);
//! let server = StubApiServer::start(vec![pod]);
//! server.write_kubeconfig(std::path::Path::new("/tmp/kubeconfig"), Some("t0ken")).unwrap();
//! // ... run the client, then:
//! assert_eq!(server.requests()[0].query_value("fieldSelector"), Some("spec.nodeName=node-1"));
//! ```

mod http;
mod selector;
mod store;

use std::io;
use std::net::{SocketAddr, TcpListener};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use serde_json::{json, Map, Value};
use tokio::sync::oneshot;

use store::Store;

/// One request the stub received.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordedRequest {
    /// `GET`, `POST`, ...
    pub method: String,
    /// The path without the query, percent-decoded.
    pub path: String,
    /// Query parameters in order, percent-decoded (`+` is a space).
    pub query: Vec<(String, String)>,
    /// The `Authorization` header, when sent.
    pub authorization: Option<String>,
}

impl RecordedRequest {
    /// The value of the first query parameter named `key`.
    pub fn query_value(&self, key: &str) -> Option<&str> {
        self.query
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }
}

/// Which requests fail, and how.
#[derive(Debug, Default)]
struct Failures {
    /// Every request, until cleared.
    always: Option<u16>,
    /// The next `.0` requests (before `always` applies).
    next: (usize, u16),
}

impl Failures {
    /// The code the request being answered fails with, if any.
    fn take(&mut self) -> Option<u16> {
        if self.next.0 > 0 {
            self.next.0 -= 1;
            return Some(self.next.1);
        }
        self.always
    }
}

/// What the server's connections share with the [`StubApiServer`] handle.
struct Shared {
    store: Arc<Mutex<Store>>,
    requests: Mutex<Vec<RecordedRequest>>,
    failures: Mutex<Failures>,
    /// When set, pod lists (not watches) are answered 200 with this body instead of a PodList.
    list_body: Mutex<Option<Value>>,
}

/// The stub server. It stops when dropped, closing every connection.
pub struct StubApiServer {
    addr: SocketAddr,
    shared: Arc<Shared>,
    shutdown: Option<oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl StubApiServer {
    /// Starts serving `pods` (v1 Pod objects, e.g. from [`pod_json`]) on `127.0.0.1:<free port>`.
    /// They get resourceVersions up to 4242, the version of the first list; the history of
    /// changes starts after it.
    ///
    /// # Panics
    /// When no loopback port can be bound (a broken test machine).
    pub fn start(pods: Vec<Value>) -> StubApiServer {
        let listener = TcpListener::bind("127.0.0.1:0").expect("binding a port on 127.0.0.1");
        let addr = listener
            .local_addr()
            .expect("local address of the stub listener");
        listener
            .set_nonblocking(true)
            .expect("a non-blocking stub listener");
        let shared = Arc::new(Shared {
            store: Arc::new(Mutex::new(Store::new(pods))),
            requests: Mutex::new(Vec::new()),
            failures: Mutex::new(Failures::default()),
            list_body: Mutex::new(None),
        });
        let (shutdown, stop) = oneshot::channel();
        let s = Arc::clone(&shared);
        let thread = std::thread::Builder::new()
            .name("stub-apiserver".into())
            .spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .expect("a tokio runtime for the stub API server");
                rt.block_on(http::serve(listener, s, stop));
                // Dropping the runtime here ends every connection task.
            })
            .expect("spawning the stub apiserver thread");
        StubApiServer {
            addr,
            shared,
            shutdown: Some(shutdown),
            thread: Some(thread),
        }
    }

    /// `http://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The listening address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Every request received so far, in order.
    pub fn requests(&self) -> Vec<RecordedRequest> {
        self.shared.requests.lock().unwrap().clone()
    }

    /// Answers every later request with a `kind: Status` failure of this HTTP code (401, 403,
    /// 500, ...), as the real API server does.
    pub fn set_status(&self, code: u16) {
        self.shared.failures.lock().unwrap().always = Some(code);
    }

    /// Answers requests normally again (after [`StubApiServer::set_status`] or
    /// [`StubApiServer::fail_next`]).
    pub fn clear_status(&self) {
        *self.shared.failures.lock().unwrap() = Failures::default();
    }

    /// Answers the next `count` requests, whatever they ask, with a `kind: Status` failure of
    /// this HTTP code; then normally again. Replaces an earlier `fail_next` not used up.
    pub fn fail_next(&self, count: usize, code: u16) {
        self.shared.failures.lock().unwrap().next = (count, code);
    }

    /// Answers every later pod list (not watches) with `200 OK` and `body` instead of a
    /// `PodList`, as a proxy or another service at the server's URL would (`None`: PodLists
    /// again).
    pub fn answer_lists_with(&self, body: Option<Value>) {
        *self.shared.list_body.lock().unwrap() = body;
    }

    /// Replaces the pods served by what a client would see written: pods no longer in `pods`
    /// are deleted, new ones added, changed ones modified (in the order of `pods`), each write
    /// with its own resourceVersion and watch event. Unchanged pods keep theirs.
    pub fn set_pods(&self, pods: Vec<Value>) {
        self.store().replace_all(pods);
    }

    /// Adds a pod (watches get ADDED) and returns its resourceVersion.
    ///
    /// # Panics
    /// When a pod of that namespace and name exists (use [`StubApiServer::update_pod`]).
    pub fn add_pod(&self, pod: Value) -> u64 {
        self.store()
            .add(pod)
            .unwrap_or_else(|name| panic!("add_pod: pod {name} exists already"))
    }

    /// Replaces the pod of the same namespace and name (watches get MODIFIED, or ADDED/DELETED
    /// when it starts/stops matching their selectors) and returns its new resourceVersion.
    ///
    /// # Panics
    /// When there is no such pod.
    pub fn update_pod(&self, pod: Value) -> u64 {
        self.store()
            .update(pod)
            .unwrap_or_else(|name| panic!("update_pod: no pod {name}"))
    }

    /// Deletes a pod (watches get DELETED with its last state) and returns the deletion's
    /// resourceVersion.
    ///
    /// # Panics
    /// When there is no such pod.
    pub fn delete_pod(&self, namespace: &str, name: &str) -> u64 {
        self.store()
            .delete(namespace, name)
            .unwrap_or_else(|| panic!("delete_pod: no pod {namespace}/{name}"))
    }

    /// The pods served now, as stored (with `kind`, `apiVersion` and `metadata.resourceVersion`).
    pub fn pods(&self) -> Vec<Value> {
        self.store().pods().to_vec()
    }

    /// The latest resourceVersion (that of a list made now).
    pub fn resource_version(&self) -> u64 {
        self.store().resource_version()
    }

    /// Forgets the history of changes: a watch from any resourceVersion older than the latest
    /// gets an `ERROR` event with a 410 `Expired` `Status`, and must list again.
    pub fn compact(&self) {
        self.store().compact();
    }

    /// Keeps at most `limit` changes for watches that resume (1000 unless set); a watch from
    /// before the oldest one kept gets 410 `Expired`.
    pub fn set_history_limit(&self, limit: usize) {
        self.store().set_history_limit(limit);
    }

    /// Sends a BOOKMARK event with the latest resourceVersion to every open watch that allowed
    /// bookmarks.
    pub fn bookmark(&self) {
        self.store().bookmark();
    }

    /// Breaks every open watch connection mid-response, as a network failure or a restarting
    /// server would (the client sees the chunked body end without its last chunk). Returns how
    /// many were open. Clients that resume from their last resourceVersion get what they missed.
    pub fn drop_watches(&self) -> usize {
        self.store().drop_watches()
    }

    /// How many watch connections are open now.
    pub fn open_watches(&self) -> usize {
        self.store().open_watches()
    }

    /// Waits until at least `count` watches are open; false if `timeout` passed first.
    pub fn wait_for_watches(&self, count: usize, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        loop {
            if self.open_watches() >= count {
                return true;
            }
            if Instant::now() >= deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    fn store(&self) -> std::sync::MutexGuard<'_, Store> {
        self.shared.store.lock().unwrap()
    }

    /// A kubeconfig document with one cluster, user and context, all named `name`, pointing at
    /// this server; the user has a bearer `token` when given.
    pub fn kubeconfig_yaml(&self, name: &str, token: Option<&str>) -> String {
        kubeconfig_yaml(&self.url(), name, token)
    }

    /// Writes a kubeconfig file (context `podnet-stub`) pointing at this server over plain http.
    pub fn write_kubeconfig(&self, path: &Path, token: Option<&str>) -> io::Result<()> {
        std::fs::write(path, self.kubeconfig_yaml("podnet-stub", token))
    }
}

impl Drop for StubApiServer {
    fn drop(&mut self) {
        if let Some(s) = self.shutdown.take() {
            let _ = s.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// A kubeconfig document with one cluster, user and context, all named `name`, for `server`.
pub fn kubeconfig_yaml(server: &str, name: &str, token: Option<&str>) -> String {
    let user = match token {
        Some(t) => format!("    token: \"{t}\"\n"),
        None => "    {}\n".to_string(),
    };
    format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: {name}\n  cluster:\n    server: {server}\n\
         contexts:\n- name: {name}\n  context:\n    cluster: {name}\n    user: {name}\n\
         current-context: {name}\nusers:\n- name: {name}\n  user:\n{user}"
    )
}

/// A realistic v1 Pod as `kubectl get pod -o json` shows it.
///
/// `node` empty means not scheduled (no `spec.nodeName`); a container id empty means the
/// container has not started (no `containerID`, state `waiting`). `qos` is the
/// `status.qosClass` (`Guaranteed`, `Burstable`, `BestEffort`).
#[allow(clippy::too_many_arguments)]
pub fn pod_json(
    ns: &str,
    name: &str,
    uid: &str,
    node: &str,
    phase: &str,
    qos: &str,
    host_network: bool,
    labels: &[(&str, &str)],
    containers: &[(&str, &str)],
) -> Value {
    let labels: Map<String, Value> = labels
        .iter()
        .map(|(k, v)| (k.to_string(), Value::String(v.to_string())))
        .collect();
    let spec_containers: Vec<Value> = containers
        .iter()
        .map(|(n, _)| {
            json!({
                "name": n,
                "image": format!("registry.example/{n}:1.0"),
                "imagePullPolicy": "IfNotPresent",
                "resources": {},
                "terminationMessagePath": "/dev/termination-log",
                "terminationMessagePolicy": "File",
            })
        })
        .collect();
    let statuses: Vec<Value> = containers
        .iter()
        .map(|(n, id)| {
            let mut s = json!({
                "name": n,
                "image": format!("registry.example/{n}:1.0"),
                "imageID": format!("registry.example/{n}@sha256:{}", "0".repeat(64)),
                "ready": !id.is_empty(),
                "restartCount": 0,
                "started": !id.is_empty(),
            });
            if id.is_empty() {
                s["state"] = json!({"waiting": {"reason": "ContainerCreating"}});
            } else {
                s["containerID"] = json!(id);
                s["state"] = json!({"running": {"startedAt": "2026-11-21T09:59:00Z"}});
            }
            s
        })
        .collect();
    let mut spec = json!({
        "containers": spec_containers,
        "dnsPolicy": "ClusterFirst",
        "restartPolicy": "Always",
        "schedulerName": "default-scheduler",
        "serviceAccountName": "default",
        "terminationGracePeriodSeconds": 30,
    });
    if !node.is_empty() {
        spec["nodeName"] = json!(node);
    }
    if host_network {
        spec["hostNetwork"] = json!(true);
    }
    let mut status = json!({
        "phase": phase,
        "qosClass": qos,
    });
    if !node.is_empty() {
        status["hostIP"] = json!("198.18.0.1");
        status["podIP"] = json!(if host_network {
            "198.18.0.1"
        } else {
            "198.19.0.5"
        });
        status["startTime"] = json!("2026-11-21T09:58:00Z");
        status["containerStatuses"] = Value::Array(statuses);
    }
    json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": name,
            "namespace": ns,
            "uid": uid,
            "resourceVersion": "1001",
            "creationTimestamp": "2026-11-21T09:58:00Z",
            "labels": labels,
        },
        "spec": spec,
        "status": status,
    })
}

#[cfg(test)]
mod tests {
    use std::io::{Read, Write};
    use std::net::{Shutdown, TcpStream};

    use super::*;

    fn get(server: &StubApiServer, target: &str) -> (u16, Value) {
        let mut s = TcpStream::connect(server.addr()).unwrap();
        write!(
            s,
            "GET {target} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer abc\r\nConnection: close\r\n\r\n"
        )
        .unwrap();
        s.shutdown(Shutdown::Write).unwrap();
        let mut text = String::new();
        s.read_to_string(&mut text).unwrap();
        let code: u16 = text.split_whitespace().nth(1).unwrap().parse().unwrap();
        let body = text.split_once("\r\n\r\n").unwrap().1;
        (code, serde_json::from_str(body).unwrap())
    }

    fn names(v: &Value) -> Vec<&str> {
        v["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["metadata"]["name"].as_str().unwrap())
            .collect()
    }

    fn server() -> StubApiServer {
        StubApiServer::start(vec![
            pod_json(
                "shop",
                "web-0",
                "u1",
                "n1",
                "Running",
                "Burstable",
                false,
                &[("app", "web"), ("tier", "fe")],
                &[("web", "containerd://aa")],
            ),
            pod_json(
                "shop",
                "db-0",
                "u2",
                "n1",
                "Running",
                "Guaranteed",
                false,
                &[("app", "db")],
                &[("db", "containerd://bb")],
            ),
            pod_json(
                "shop",
                "web-1",
                "u3",
                "n2",
                "Running",
                "Burstable",
                false,
                &[("app", "web")],
                &[("web", "containerd://cc")],
            ),
            pod_json(
                "kube-system",
                "dns",
                "u4",
                "n1",
                "Running",
                "BestEffort",
                true,
                &[],
                &[("dns", "")],
            ),
        ])
    }

    #[test]
    fn filters_like_the_real_server() {
        let s = server();
        let (code, all) = get(&s, "/api/v1/pods");
        assert_eq!(code, 200);
        assert_eq!(all["kind"], "PodList");
        assert_eq!(all["apiVersion"], "v1");
        assert_eq!(all["metadata"]["resourceVersion"], "4242");
        assert_eq!(names(&all), ["web-0", "db-0", "web-1", "dns"]);
        assert_eq!(all["items"][0].get("kind"), None);
        let (_, n1) = get(&s, "/api/v1/pods?fieldSelector=spec.nodeName%3Dn1");
        assert_eq!(names(&n1), ["web-0", "db-0", "dns"]);
        let (_, web) = get(
            &s,
            "/api/v1/namespaces/shop/pods?fieldSelector=spec.nodeName%3Dn1&labelSelector=app%3Dweb",
        );
        assert_eq!(names(&web), ["web-0"]);
        let (_, not_web) = get(&s, "/api/v1/pods?labelSelector=app!%3Dweb,!tier");
        assert_eq!(names(&not_web), ["db-0", "dns"]);
        let (_, has_tier) = get(&s, "/api/v1/pods?labelSelector=tier");
        assert_eq!(names(&has_tier), ["web-0"]);
        let (code, bad) = get(&s, "/api/v1/pods?fieldSelector=spec.bogus%3D1");
        assert_eq!(code, 400);
        assert_eq!(bad["kind"], "Status");
        let reqs = s.requests();
        assert_eq!(reqs.len(), 6);
        assert_eq!(reqs[2].path, "/api/v1/namespaces/shop/pods");
        assert_eq!(
            reqs[2].query_value("fieldSelector"),
            Some("spec.nodeName=n1")
        );
        assert_eq!(reqs[2].query_value("labelSelector"), Some("app=web"));
        assert_eq!(reqs[2].authorization.as_deref(), Some("Bearer abc"));
    }

    #[test]
    fn forced_status() {
        let s = server();
        for code in [401u16, 403, 500] {
            s.set_status(code);
            let (got, body) = get(&s, "/api/v1/pods");
            assert_eq!(got, code);
            assert_eq!(body["kind"], "Status");
            assert_eq!(body["status"], "Failure");
            assert_eq!(body["code"], code);
        }
        s.clear_status();
        assert_eq!(get(&s, "/api/v1/pods").0, 200);
    }

    #[test]
    fn pod_json_shape() {
        let p = pod_json(
            "ns",
            "p",
            "u",
            "",
            "Pending",
            "BestEffort",
            false,
            &[],
            &[("c", "")],
        );
        assert_eq!(p["spec"].get("nodeName"), None);
        assert_eq!(p["status"].get("containerStatuses"), None);
        let p = pod_json(
            "ns",
            "p",
            "u",
            "n",
            "Running",
            "Burstable",
            true,
            &[("a", "b")],
            &[("c", "cri-o://12"), ("d", "")],
        );
        assert_eq!(p["spec"]["nodeName"], "n");
        assert_eq!(p["spec"]["hostNetwork"], true);
        assert_eq!(p["metadata"]["labels"]["a"], "b");
        assert_eq!(
            p["status"]["containerStatuses"][0]["containerID"],
            "cri-o://12"
        );
        assert_eq!(p["status"]["containerStatuses"][1].get("containerID"), None);
    }

    #[test]
    fn kubeconfig_text() {
        let y = kubeconfig_yaml("http://127.0.0.1:1", "c", Some("tok"));
        assert!(y.contains("    server: http://127.0.0.1:1\n"));
        assert!(y.contains("current-context: c\n"));
        assert!(y.ends_with("    token: \"tok\"\n"));
    }
}
