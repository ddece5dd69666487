//! A stub Kubernetes API server on 127.0.0.1 for podnet's discovery tests and demo.
//!
//! It speaks the real wire format over plain HTTP/1.1: `GET /api/v1/pods` and
//! `GET /api/v1/namespaces/<ns>/pods` answer a `PodList` filtered by `fieldSelector`
//! (`spec.nodeName`, `metadata.namespace`, `metadata.name`, with `=`, `==`, `!=`) and
//! `labelSelector` (equality, inequality and existence requirements joined by commas), exactly as
//! the real server filters, so a client that forgets to send a selector sees pods it should not.
//! Every request is recorded ([`StubApiServer::requests`]) with its query decoded, and
//! [`StubApiServer::set_status`] makes it answer every request with a `kind: Status` failure
//! (401, 403, 500, ...).
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

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use serde_json::{json, Map, Value};

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

struct Shared {
    pods: Mutex<Vec<Value>>,
    requests: Mutex<Vec<RecordedRequest>>,
    status: Mutex<Option<u16>>,
    stop: AtomicBool,
}

/// The stub server. It stops when dropped.
pub struct StubApiServer {
    addr: SocketAddr,
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
}

impl StubApiServer {
    /// Starts serving `pods` (v1 Pod objects, e.g. from [`pod_json`]) on `127.0.0.1:<free port>`.
    ///
    /// # Panics
    /// When no loopback port can be bound (a broken test machine).
    pub fn start(pods: Vec<Value>) -> StubApiServer {
        let listener = TcpListener::bind("127.0.0.1:0").expect("binding a port on 127.0.0.1");
        let addr = listener
            .local_addr()
            .expect("local address of the stub listener");
        let shared = Arc::new(Shared {
            pods: Mutex::new(pods),
            requests: Mutex::new(Vec::new()),
            status: Mutex::new(None),
            stop: AtomicBool::new(false),
        });
        let s = Arc::clone(&shared);
        let thread = std::thread::Builder::new()
            .name("stub-apiserver".into())
            .spawn(move || {
                for conn in listener.incoming() {
                    if s.stop.load(Ordering::SeqCst) {
                        break;
                    }
                    let Ok(conn) = conn else { continue };
                    let s = Arc::clone(&s);
                    std::thread::spawn(move || serve_connection(conn, &s));
                }
            })
            .expect("spawning the stub apiserver thread");
        StubApiServer {
            addr,
            shared,
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
        *self.shared.status.lock().unwrap() = Some(code);
    }

    /// Answers requests normally again.
    pub fn clear_status(&self) {
        *self.shared.status.lock().unwrap() = None;
    }

    /// Replaces the pods served.
    pub fn set_pods(&self, pods: Vec<Value>) {
        *self.shared.pods.lock().unwrap() = pods;
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
        self.shared.stop.store(true, Ordering::SeqCst);
        // Wake the accept loop so it sees the flag.
        let _ = TcpStream::connect_timeout(&self.addr, Duration::from_secs(1));
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

// ---------------------------------------------------------------------------------------------
// HTTP

fn serve_connection(conn: TcpStream, shared: &Shared) {
    let _ = conn.set_read_timeout(Some(Duration::from_secs(10)));
    let Ok(write_half) = conn.try_clone() else {
        return;
    };
    let mut reader = BufReader::new(conn);
    let mut writer = write_half;
    // Keep-alive: serve requests until the client closes.
    while let Some(req) = read_request(&mut reader) {
        if shared.stop.load(Ordering::SeqCst) {
            break;
        }
        let (code, body) = respond(&req, shared);
        shared.requests.lock().unwrap().push(req);
        let reason = reason_phrase(code);
        let head = format!(
            "HTTP/1.1 {code} {reason}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\
             Cache-Control: no-cache, private\r\n\r\n",
            body.len()
        );
        if writer.write_all(head.as_bytes()).is_err() || writer.write_all(body.as_bytes()).is_err()
        {
            break;
        }
        let _ = writer.flush();
    }
    let _ = writer.shutdown(Shutdown::Both);
}

fn read_request(reader: &mut BufReader<TcpStream>) -> Option<RecordedRequest> {
    let mut line = String::new();
    if reader.read_line(&mut line).ok()? == 0 {
        return None;
    }
    let mut parts = line.split_whitespace();
    let method = parts.next()?.to_string();
    let target = parts.next()?.to_string();
    let mut content_length = 0usize;
    let mut authorization = None;
    loop {
        let mut h = String::new();
        if reader.read_line(&mut h).ok()? == 0 {
            return None;
        }
        let h = h.trim_end();
        if h.is_empty() {
            break;
        }
        if let Some((k, v)) = h.split_once(':') {
            let v = v.trim();
            if k.eq_ignore_ascii_case("content-length") {
                content_length = v.parse().unwrap_or(0);
            } else if k.eq_ignore_ascii_case("authorization") {
                authorization = Some(v.to_string());
            }
        }
    }
    if content_length > 0 {
        let mut body = vec![0u8; content_length.min(1 << 20)];
        reader.read_exact(&mut body).ok()?;
    }
    let (path, query) = match target.split_once('?') {
        Some((p, q)) => (p, q),
        None => (target.as_str(), ""),
    };
    let query = query
        .split('&')
        .filter(|kv| !kv.is_empty())
        .map(|kv| {
            let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
            (percent_decode(k), percent_decode(v))
        })
        .collect();
    Some(RecordedRequest {
        method,
        path: percent_decode(path),
        query,
        authorization,
    })
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < b.len() => {
                let hex = std::str::from_utf8(&b[i + 1..i + 3]).ok();
                match hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
                    Some(v) => {
                        out.push(v);
                        i += 3;
                        continue;
                    }
                    None => out.push(b'%'),
                }
            }
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn reason_phrase(code: u16) -> &'static str {
    match code {
        200 => "OK",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        500 => "Internal Server Error",
        503 => "Service Unavailable",
        _ => "Error",
    }
}

/// The Kubernetes `Status` object for a failure.
fn status_object(code: u16, reason: &str, message: &str) -> String {
    json!({
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": reason,
        "code": code,
    })
    .to_string()
}

fn forced_failure(code: u16, req: &RecordedRequest) -> (u16, String) {
    let (reason, message) = match code {
        401 => ("Unauthorized", "Unauthorized".to_string()),
        403 => (
            "Forbidden",
            format!(
                "pods is forbidden: User \"system:serviceaccount:default:default\" cannot list \
                 resource \"pods\" in API group \"\" at the cluster scope (path {})",
                req.path
            ),
        ),
        404 => (
            "NotFound",
            "the server could not find the requested resource".into(),
        ),
        429 => (
            "TooManyRequests",
            "too many requests, please try again later".into(),
        ),
        500 => (
            "InternalError",
            "Internal error occurred: etcdserver: request timed out".into(),
        ),
        503 => (
            "ServiceUnavailable",
            "the server is currently unable to handle the request".into(),
        ),
        _ => ("Unknown", format!("stub failure {code}")),
    };
    (code, status_object(code, reason, &message))
}

fn respond(req: &RecordedRequest, shared: &Shared) -> (u16, String) {
    if let Some(code) = *shared.status.lock().unwrap() {
        return forced_failure(code, req);
    }
    if req.method != "GET" {
        return (
            405,
            status_object(405, "MethodNotAllowed", "the stub only serves GET"),
        );
    }
    let segs: Vec<&str> = req.path.trim_matches('/').split('/').collect();
    let namespace = match segs.as_slice() {
        ["version"] => {
            return (
                200,
                json!({"major": "1", "minor": "33", "gitVersion": "v1.33.0", "platform": "linux/amd64"})
                    .to_string(),
            )
        }
        ["api"] => {
            return (
                200,
                json!({"kind": "APIVersions", "versions": ["v1"], "serverAddressByClientCIDRs": []})
                    .to_string(),
            )
        }
        ["api", "v1", "pods"] => None,
        ["api", "v1", "namespaces", ns, "pods"] => Some(ns.to_string()),
        _ => {
            return (
                404,
                status_object(404, "NotFound", "the server could not find the requested resource"),
            )
        }
    };
    let field = match req.query_value("fieldSelector").map(parse_field_selector) {
        None => Vec::new(),
        Some(Ok(f)) => f,
        Some(Err(e)) => return (400, status_object(400, "BadRequest", &e)),
    };
    let labels = match req.query_value("labelSelector").map(parse_label_selector) {
        None => Vec::new(),
        Some(Ok(l)) => l,
        Some(Err(e)) => return (400, status_object(400, "BadRequest", &e)),
    };
    let pods = shared.pods.lock().unwrap().clone();
    let items: Vec<Value> = pods
        .into_iter()
        .filter(|p| match namespace.as_deref() {
            Some(ns) => p["metadata"]["namespace"] == ns,
            None => true,
        })
        .filter(|p| field.iter().all(|f| f.matches(p)))
        .filter(|p| labels.iter().all(|l| l.matches(p)))
        .map(|mut p| {
            // List items on the wire carry no kind/apiVersion.
            if let Some(o) = p.as_object_mut() {
                o.remove("kind");
                o.remove("apiVersion");
            }
            p
        })
        .collect();
    let body = json!({
        "kind": "PodList",
        "apiVersion": "v1",
        "metadata": {"resourceVersion": "4242"},
        "items": items,
    });
    (200, body.to_string())
}

struct FieldReq {
    path: [&'static str; 2],
    value: String,
    negate: bool,
}

impl FieldReq {
    fn matches(&self, pod: &Value) -> bool {
        let actual = pod[self.path[0]][self.path[1]].as_str().unwrap_or("");
        (actual == self.value) != self.negate
    }
}

fn parse_field_selector(s: &str) -> Result<Vec<FieldReq>, String> {
    s.split(',')
        .filter(|t| !t.is_empty())
        .map(|term| {
            let (key, value, negate) = if let Some((k, v)) = term.split_once("!=") {
                (k, v, true)
            } else if let Some((k, v)) = term.split_once("==") {
                (k, v, false)
            } else if let Some((k, v)) = term.split_once('=') {
                (k, v, false)
            } else {
                return Err(format!(
                    "invalid selector: '{s}'; can't understand '{term}'"
                ));
            };
            let path = match key.trim() {
                "spec.nodeName" => ["spec", "nodeName"],
                "metadata.namespace" => ["metadata", "namespace"],
                "metadata.name" => ["metadata", "name"],
                "status.phase" => ["status", "phase"],
                other => return Err(format!("field label not supported: {other}")),
            };
            Ok(FieldReq {
                path,
                value: value.trim().to_string(),
                negate,
            })
        })
        .collect()
}

enum LabelReq {
    Equals(String, String),
    NotEquals(String, String),
    Exists(String),
    NotExists(String),
}

impl LabelReq {
    fn matches(&self, pod: &Value) -> bool {
        let labels = &pod["metadata"]["labels"];
        match self {
            LabelReq::Equals(k, v) => labels[k].as_str() == Some(v.as_str()),
            LabelReq::NotEquals(k, v) => labels[k].as_str() != Some(v.as_str()),
            LabelReq::Exists(k) => labels.get(k).is_some(),
            LabelReq::NotExists(k) => labels.get(k).is_none(),
        }
    }
}

/// Equality-based selectors only; set-based ones (`in`, `notin`) are answered with 400 so a test
/// never believes the stub filtered what it did not.
fn parse_label_selector(s: &str) -> Result<Vec<LabelReq>, String> {
    if s.contains('(') {
        return Err(format!(
            "unable to parse requirement: the podnet stub API server does not implement set-based selectors: {s}"
        ));
    }
    s.split(',')
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .map(|term| {
            let r = if let Some((k, v)) = term.split_once("!=") {
                LabelReq::NotEquals(k.trim().into(), v.trim().into())
            } else if let Some((k, v)) = term.split_once("==") {
                LabelReq::Equals(k.trim().into(), v.trim().into())
            } else if let Some((k, v)) = term.split_once('=') {
                LabelReq::Equals(k.trim().into(), v.trim().into())
            } else if let Some(k) = term.strip_prefix('!') {
                LabelReq::NotExists(k.trim().into())
            } else {
                LabelReq::Exists(term.into())
            };
            let key = match &r {
                LabelReq::Equals(k, _)
                | LabelReq::NotEquals(k, _)
                | LabelReq::Exists(k)
                | LabelReq::NotExists(k) => k,
            };
            if key.is_empty() || key.contains(char::is_whitespace) {
                return Err(format!(
                    "unable to parse requirement: invalid label key \"{key}\""
                ));
            }
            Ok(r)
        })
        .collect()
}

#[cfg(test)]
mod tests {
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
    fn decoding() {
        assert_eq!(percent_decode("a%3Db+c%2C%28x%29"), "a=b c,(x)");
        assert_eq!(percent_decode("100%"), "100%");
        assert_eq!(percent_decode("%zz"), "%zz");
    }

    #[test]
    fn kubeconfig_text() {
        let y = kubeconfig_yaml("http://127.0.0.1:1", "c", Some("tok"));
        assert!(y.contains("    server: http://127.0.0.1:1\n"));
        assert!(y.contains("current-context: c\n"));
        assert!(y.ends_with("    token: \"tok\"\n"));
    }
}
