//! The stub API server's watch protocol, proven with the client podnet's coming agent uses:
//! `kube::runtime::watcher` sees adds, modifications, deletions, a dropped connection it resumes
//! from its last resourceVersion, a 410 Gone it answers by listing again, forced failures, and
//! streaming lists; and the wire format itself, read off a raw socket.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use futures::{Stream, StreamExt};
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, ResourceExt};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::runtime::watcher::{self, Event};
use kube::{Client, Config};
use podnet_testing::apiserver::{pod_json, StubApiServer};
use serde_json::Value;

fn pod(ns: &str, name: &str, node: &str, app: &str) -> Value {
    pod_json(
        ns,
        name,
        &format!(
            "00000000-0000-4000-8000-{:012x}",
            name.len() * 7919 + ns.len()
        ),
        node,
        "Running",
        "Burstable",
        false,
        &[("app", app)],
        &[(app, "containerd://0123")],
    )
}

async fn client(server: &StubApiServer) -> Client {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("kubeconfig");
    server.write_kubeconfig(&path, Some("watch-token")).unwrap();
    let kc = Kubeconfig::read_from(&path).unwrap();
    let config = Config::from_custom_kubeconfig(kc, &KubeConfigOptions::default())
        .await
        .unwrap();
    Client::try_from(config).unwrap()
}

/// One watcher item in words, with the resourceVersion of applied and deleted objects.
fn describe(item: Result<Event<Pod>, watcher::Error>) -> String {
    let obj = |p: &Pod| {
        format!(
            "{}/{}@{}",
            p.namespace().unwrap_or_default(),
            p.name_any(),
            p.resource_version().unwrap_or_default()
        )
    };
    let code = |e: &kube::Error| match e {
        kube::Error::Api(s) => s.code.to_string(),
        other => other.to_string(),
    };
    match item {
        Ok(Event::Init) => "Init".into(),
        Ok(Event::InitApply(p)) => format!("InitApply {}", obj(&p)),
        Ok(Event::InitDone) => "InitDone".into(),
        Ok(Event::Apply(p)) => format!("Apply {}", obj(&p)),
        Ok(Event::Delete(p)) => format!("Delete {}", obj(&p)),
        Err(watcher::Error::WatchError(s)) => format!("WatchError {} {}", s.code, s.reason),
        Err(watcher::Error::WatchFailed(_)) => "WatchFailed".into(),
        Err(watcher::Error::InitialListFailed(e)) => format!("InitialListFailed {}", code(&e)),
        Err(watcher::Error::WatchStartFailed(e)) => format!("WatchStartFailed {}", code(&e)),
        Err(e) => format!("other error: {e}"),
    }
}

/// The next `n` watcher items, described; each must come within 10 s.
async fn next_n<S>(stream: &mut S, n: usize) -> Vec<String>
where
    S: Stream<Item = Result<Event<Pod>, watcher::Error>> + Unpin,
{
    let mut out = Vec::new();
    for _ in 0..n {
        match tokio::time::timeout(Duration::from_secs(10), stream.next()).await {
            Ok(Some(item)) => out.push(describe(item)),
            Ok(None) => panic!("the watcher ended after {out:?}"),
            Err(_) => panic!("no watcher item within 10 s after {out:?}"),
        }
    }
    out
}

/// Nothing more arrives within `d`.
async fn quiet<S>(stream: &mut S, d: Duration)
where
    S: Stream<Item = Result<Event<Pod>, watcher::Error>> + Unpin,
{
    if let Ok(item) = tokio::time::timeout(d, stream.next()).await {
        panic!("unexpected watcher item {:?}", item.map(describe));
    }
}

/// Waits (without blocking the runtime) until `n` watches are open.
async fn watches_open(server: &StubApiServer, n: usize) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while server.open_watches() < n {
        assert!(Instant::now() < deadline, "{n} watches never opened");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

fn watch_requests(server: &StubApiServer) -> Vec<(String, String)> {
    server
        .requests()
        .iter()
        .filter(|r| r.query_value("watch") == Some("true"))
        .map(|r| {
            (
                r.path.clone(),
                r.query_value("resourceVersion").unwrap_or("").to_string(),
            )
        })
        .collect()
}

#[tokio::test]
async fn watcher_sees_add_modify_delete_then_resumes_after_a_drop_and_relists_after_410() {
    let server = StubApiServer::start(vec![pod("shop", "a", "n1", "web")]);
    assert_eq!(server.resource_version(), 4242);
    let api: Api<Pod> = Api::all(client(&server).await);
    let mut w = watcher::watcher(api, watcher::Config::default()).boxed();

    // The initial list, then a watch from the list's resourceVersion.
    assert_eq!(
        next_n(&mut w, 3).await,
        ["Init", "InitApply shop/a@4242", "InitDone"]
    );
    let list = &server.requests()[0];
    assert_eq!(list.path, "/api/v1/pods");
    assert_eq!(list.authorization.as_deref(), Some("Bearer watch-token"));

    // Add, modify, delete.
    let added = server.add_pod(pod("shop", "b", "n1", "web"));
    let modified = server.update_pod(pod("shop", "b", "n2", "web"));
    let deleted = server.delete_pod("shop", "b");
    assert_eq!((added, modified, deleted), (4243, 4244, 4245));
    assert_eq!(
        next_n(&mut w, 3).await,
        [
            "Apply shop/b@4243",
            "Apply shop/b@4244",
            "Delete shop/b@4245"
        ]
    );
    assert_eq!(
        watch_requests(&server),
        [("/api/v1/pods".to_string(), "4242".to_string())]
    );
    let watch = server
        .requests()
        .into_iter()
        .find(|r| r.query_value("watch").is_some())
        .unwrap();
    assert_eq!(watch.query_value("allowWatchBookmarks"), Some("true"));
    assert!(watch.query_value("timeoutSeconds").is_some());

    // The connection breaks mid-stream (kube's client takes the truncated chunked body for
    // the end of the watch, without an error); a pod is added while the watcher is away. It
    // watches again from the last resourceVersion it saw and gets the add from the server's
    // history, without a relist.
    assert_eq!(server.drop_watches(), 1);
    let c = server.add_pod(pod("shop", "c", "n1", "web"));
    assert_eq!(next_n(&mut w, 1).await, [format!("Apply shop/c@{c}")]);
    assert_eq!(
        watch_requests(&server).last().unwrap(),
        &("/api/v1/pods".to_string(), deleted.to_string())
    );

    // Broken again; the first request after it fails with a forced 500, and by the time the
    // watcher tries again the history it would resume from is compacted away: the server says
    // 410 Expired, and the watcher lists again.
    watches_open(&server, 1).await;
    assert_eq!(server.drop_watches(), 1);
    let d = server.add_pod(pod("kube-system", "d", "n1", "dns"));
    server.compact();
    server.fail_next(1, 500);
    assert_eq!(
        next_n(&mut w, 7).await,
        [
            "WatchStartFailed 500".to_string(),
            "WatchError 410 Expired".to_string(),
            "Init".to_string(),
            "InitApply shop/a@4242".to_string(),
            format!("InitApply shop/c@{c}"),
            format!("InitApply kube-system/d@{d}"),
            "InitDone".to_string(),
        ]
    );
    let watches = watch_requests(&server);
    let rv = |v: u64| ("/api/v1/pods".to_string(), v.to_string());
    assert_eq!(watches[watches.len() - 3..], [rv(deleted), rv(c), rv(c)]);
    // After the relist, it watches from the list's resourceVersion.
    quiet(&mut w, Duration::from_millis(300)).await;
    assert_eq!(watch_requests(&server).last(), Some(&rv(d)));
}

#[tokio::test]
async fn namespaced_watch_with_selectors_sees_pods_enter_and_leave_them() {
    let server = StubApiServer::start(vec![
        pod("shop", "web-0", "n1", "web"),
        pod("shop", "db-0", "n1", "db"),
        pod("batch", "web-9", "n1", "web"),
    ]);
    let api: Api<Pod> = Api::namespaced(client(&server).await, "shop");
    let config = watcher::Config::default()
        .labels("app=web")
        .fields("spec.nodeName=n1");
    let mut w = watcher::watcher(api, config).boxed();
    assert_eq!(
        next_n(&mut w, 3).await,
        ["Init", "InitApply shop/web-0@4240", "InitDone"]
    );
    // db-0 becomes a web pod: it enters the selection (ADDED); web-0 moves to another node:
    // it leaves it (DELETED); a pod in another namespace is never seen.
    let entered = server.update_pod(pod("shop", "db-0", "n1", "web"));
    let left = server.update_pod(pod("shop", "web-0", "n2", "web"));
    server.add_pod(pod("batch", "web-10", "n1", "web"));
    let added = server.add_pod(pod("shop", "web-1", "n1", "web"));
    assert_eq!(
        next_n(&mut w, 3).await,
        [
            format!("Apply shop/db-0@{entered}"),
            format!("Delete shop/web-0@{left}"),
            format!("Apply shop/web-1@{added}"),
        ]
    );
    let watch = server
        .requests()
        .into_iter()
        .find(|r| r.query_value("watch").is_some())
        .unwrap();
    assert_eq!(watch.path, "/api/v1/namespaces/shop/pods");
    assert_eq!(watch.query_value("labelSelector"), Some("app=web"));
    assert_eq!(watch.query_value("fieldSelector"), Some("spec.nodeName=n1"));
    quiet(&mut w, Duration::from_millis(300)).await;
}

#[tokio::test]
async fn set_pods_is_seen_as_the_writes_that_make_the_difference() {
    let server = StubApiServer::start(vec![
        pod("shop", "a", "n1", "web"),
        pod("shop", "b", "n1", "web"),
    ]);
    let api: Api<Pod> = Api::all(client(&server).await);
    let mut w = watcher::watcher(api, watcher::Config::default()).boxed();
    assert_eq!(
        next_n(&mut w, 4).await,
        [
            "Init",
            "InitApply shop/a@4241",
            "InitApply shop/b@4242",
            "InitDone"
        ]
    );
    // a is gone, b changed, c is new; b's unchanged twin would not be an event.
    server.set_pods(vec![
        pod("shop", "c", "n1", "web"),
        pod("shop", "b", "n2", "web"),
    ]);
    assert_eq!(
        next_n(&mut w, 3).await,
        [
            "Delete shop/a@4243",
            "Apply shop/c@4244",
            "Apply shop/b@4245"
        ]
    );
    server.set_pods(server.pods());
    quiet(&mut w, Duration::from_millis(300)).await;
    let names: Vec<String> = server
        .pods()
        .iter()
        .map(|p| p["metadata"]["name"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(names, ["c", "b"]);
}

#[tokio::test]
async fn streaming_list_ends_its_initial_events_with_a_bookmark() {
    let server = StubApiServer::start(vec![pod("shop", "a", "n1", "web")]);
    let api: Api<Pod> = Api::all(client(&server).await);
    let mut w = watcher::watcher(api, watcher::Config::default().streaming_lists()).boxed();
    assert_eq!(
        next_n(&mut w, 3).await,
        ["Init", "InitApply shop/a@4242", "InitDone"]
    );
    let b = server.add_pod(pod("shop", "b", "n1", "web"));
    assert_eq!(next_n(&mut w, 1).await, [format!("Apply shop/b@{b}")]);
    let first = &server.requests()[0];
    assert_eq!(first.query_value("watch"), Some("true"));
    assert_eq!(first.query_value("sendInitialEvents"), Some("true"));
}

#[tokio::test]
async fn a_watch_that_times_out_is_resumed_from_its_last_bookmark() {
    let server = StubApiServer::start(vec![pod("shop", "a", "n1", "web")]);
    let api: Api<Pod> = Api::all(client(&server).await);
    let mut w = watcher::watcher(api, watcher::Config::default().timeout(1)).boxed();
    assert_eq!(
        next_n(&mut w, 3).await,
        ["Init", "InitApply shop/a@4242", "InitDone"]
    );
    // Writes to a pod the watch does not see would not move its resourceVersion; the BOOKMARK
    // the server sends before ending the watch does.
    let b = server.add_pod(pod("shop", "b", "n1", "web"));
    assert_eq!(next_n(&mut w, 1).await, [format!("Apply shop/b@{b}")]);
    let started = Instant::now();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let c = server.add_pod(pod("shop", "c", "n1", "web"));
    assert_eq!(next_n(&mut w, 1).await, [format!("Apply shop/c@{c}")]);
    let watches = watch_requests(&server);
    assert!(
        watches.len() >= 2,
        "{watches:?} after {:?}",
        started.elapsed()
    );
    assert_eq!(watches[1].1, b.to_string());
    assert_eq!(
        server.requests()[1].query_value("timeoutSeconds"),
        Some("1")
    );
}

// ---------------------------------------------------------------------------------------------
// The wire format, off a raw socket.

/// `GET target` with `Connection: close`: the status code, the headers (lower-cased names) and
/// the body, de-chunked.
fn raw_get(server: &StubApiServer, target: &str) -> (u16, Vec<(String, String)>, String) {
    let mut s = TcpStream::connect(server.addr()).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(
        s,
        "GET {target} HTTP/1.1\r\nHost: stub\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).unwrap();
    let text = String::from_utf8(raw).unwrap();
    let (head, mut rest) = text.split_once("\r\n\r\n").unwrap();
    let mut lines = head.lines();
    let code = lines.next().unwrap().split_whitespace().nth(1).unwrap();
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    let chunked = headers
        .iter()
        .any(|(k, v)| k == "transfer-encoding" && v == "chunked");
    let body = if chunked {
        let mut body = String::new();
        loop {
            let (size, after) = rest.split_once("\r\n").expect("a chunk size line");
            let size = usize::from_str_radix(size.trim(), 16).unwrap();
            if size == 0 {
                break;
            }
            body.push_str(&after[..size]);
            rest = &after[size + 2..];
        }
        body
    } else {
        rest.to_string()
    };
    (code.parse().unwrap(), headers, body)
}

fn events(body: &str) -> Vec<(String, Value)> {
    body.lines()
        .map(|l| {
            let v: Value = serde_json::from_str(l).unwrap();
            (v["type"].as_str().unwrap().to_string(), v["object"].clone())
        })
        .collect()
}

#[test]
fn watch_wire_format_timeout_bookmark_and_410() {
    let server = StubApiServer::start(vec![pod("shop", "a", "n1", "web")]);
    server.add_pod(pod("shop", "b", "n1", "web"));
    server.delete_pod("shop", "a");

    // A list carries its resourceVersion, and the items theirs.
    let (code, headers, body) = raw_get(&server, "/api/v1/pods");
    assert_eq!(code, 200);
    assert!(headers.iter().any(|(k, _)| k == "content-length"));
    let list: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(list["metadata"]["resourceVersion"], "4244");
    assert_eq!(list["items"][0]["metadata"]["resourceVersion"], "4243");

    // From 4242: the add and the delete that followed, then after timeoutSeconds a BOOKMARK
    // (asked for) and the end of the chunked stream.
    let started = Instant::now();
    let (code, headers, body) = raw_get(
        &server,
        "/api/v1/pods?watch=1&resourceVersion=4242&timeoutSeconds=1&allowWatchBookmarks=true",
    );
    let took = started.elapsed();
    assert_eq!(code, 200);
    assert!(headers
        .iter()
        .any(|(k, v)| k == "transfer-encoding" && v == "chunked"));
    assert!(headers
        .iter()
        .any(|(k, v)| k == "content-type" && v == "application/json"));
    assert!(
        (Duration::from_millis(900)..Duration::from_secs(5)).contains(&took),
        "{took:?}"
    );
    let ev = events(&body);
    let kinds: Vec<&str> = ev.iter().map(|(t, _)| t.as_str()).collect();
    assert_eq!(kinds, ["ADDED", "DELETED", "BOOKMARK"]);
    for (_, o) in &ev {
        assert_eq!(
            (o["kind"].as_str(), o["apiVersion"].as_str()),
            (Some("Pod"), Some("v1"))
        );
    }
    assert_eq!(ev[0].1["metadata"]["name"], "b");
    assert_eq!(ev[0].1["metadata"]["resourceVersion"], "4243");
    assert_eq!(ev[1].1["metadata"]["name"], "a");
    assert_eq!(ev[1].1["metadata"]["resourceVersion"], "4244");
    assert_eq!(ev[2].1["metadata"]["resourceVersion"], "4244");

    // Without a resourceVersion: the pods that exist, as ADDED; a namespaced path filters.
    let (_, _, body) = raw_get(
        &server,
        "/api/v1/namespaces/shop/pods?watch=true&timeoutSeconds=1",
    );
    let ev = events(&body);
    assert_eq!(ev.len(), 1, "{body}");
    assert_eq!(ev[0].0, "ADDED");
    assert_eq!(ev[0].1["metadata"]["name"], "b");
    let (_, _, body) = raw_get(
        &server,
        "/api/v1/namespaces/other/pods?watch=true&timeoutSeconds=1",
    );
    assert_eq!(body, "");

    // Older than the history kept: one ERROR event with a 410 Expired Status.
    server.set_history_limit(1);
    let (code, _, body) = raw_get(
        &server,
        "/api/v1/pods?watch=true&resourceVersion=4242&timeoutSeconds=5",
    );
    assert_eq!(code, 200);
    let ev = events(&body);
    assert_eq!(ev.len(), 1, "{body}");
    assert_eq!(ev[0].0, "ERROR");
    let status = &ev[0].1;
    assert_eq!(status["kind"], "Status");
    assert_eq!(status["status"], "Failure");
    assert_eq!(status["code"], 410);
    assert_eq!(status["reason"], "Expired");
    assert_eq!(status["message"], "too old resource version: 4242 (4243)");

    // Forced failures answer watches too, as a Status with that code.
    server.fail_next(2, 503);
    for _ in 0..2 {
        let (code, _, body) = raw_get(&server, "/api/v1/pods?watch=true&timeoutSeconds=1");
        assert_eq!(code, 503);
        assert_eq!(serde_json::from_str::<Value>(&body).unwrap()["code"], 503);
    }
    assert_eq!(raw_get(&server, "/api/v1/pods").0, 200);
}
