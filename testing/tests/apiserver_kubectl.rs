//! The stub API server against the real `kubectl`: `get pods -o json` and `get pods --watch`,
//! with a kubeconfig from `write_kubeconfig`.

use std::io::Read;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use podnet_testing::apiserver::{pod_json, StubApiServer};
use serde_json::Value;

fn pod(ns: &str, name: &str, uid_n: u64, app: &str) -> Value {
    pod_json(
        ns,
        name,
        &format!("00000000-0000-4000-8000-{uid_n:012x}"),
        "node-1",
        "Running",
        "Burstable",
        false,
        &[("app", app)],
        &[(app, "containerd://0123")],
    )
}

/// Whether `kubectl` runs here. Without it the test is skipped, except in CI (`CI` set), where
/// a skip is a failure.
fn have_kubectl(test: &str) -> bool {
    let ok = Command::new("kubectl")
        .args(["version", "--client"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !ok {
        if std::env::var_os("CI").is_some() {
            panic!("{test}: kubectl is not installed");
        }
        eprintln!("SKIP {test}: kubectl is not installed");
    }
    ok
}

/// `kubectl --kubeconfig <kc> --cache-dir <dir>/cache <args>`, with a HOME of its own.
fn kubectl(dir: &Path, args: &[&str]) -> Command {
    let mut c = Command::new("kubectl");
    c.env("HOME", dir)
        .env_remove("KUBECONFIG")
        .arg("--kubeconfig")
        .arg(dir.join("kubeconfig"))
        .arg("--cache-dir")
        .arg(dir.join("cache"))
        .args(args);
    c
}

/// Reads the JSON documents a child prints, one after another, into a channel.
fn documents(child: &mut Child) -> mpsc::Receiver<Value> {
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for v in serde_json::Deserializer::from_reader(stdout).into_iter::<Value>() {
            match v {
                Ok(v) => {
                    if tx.send(v).is_err() {
                        break;
                    }
                }
                Err(_) => break,
            }
        }
    });
    rx
}

fn event(v: &Value) -> String {
    format!(
        "{} {}/{}",
        v["type"].as_str().unwrap_or("?"),
        v["object"]["metadata"]["namespace"].as_str().unwrap_or("?"),
        v["object"]["metadata"]["name"].as_str().unwrap_or("?"),
    )
}

#[test]
fn kubectl_lists_and_watches_pods() {
    if !have_kubectl("kubectl_lists_and_watches_pods") {
        return;
    }
    let server = StubApiServer::start(vec![
        pod("shop", "web-0", 1, "web"),
        pod("kube-system", "dns", 2, "dns"),
    ]);
    let dir = tempfile::tempdir().unwrap();
    server
        .write_kubeconfig(&dir.path().join("kubeconfig"), None)
        .unwrap();

    // A list: every pod, as kubectl prints a List, each item with its kind and resourceVersion.
    let out = kubectl(dir.path(), &["get", "pods", "-A", "-o", "json"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let list: Value = serde_json::from_slice(&out.stdout).unwrap();
    let items: Vec<(String, String, String)> = list["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            assert_eq!(
                (p["kind"].as_str(), p["apiVersion"].as_str()),
                (Some("Pod"), Some("v1"))
            );
            let m = &p["metadata"];
            (
                m["namespace"].as_str().unwrap().to_string(),
                m["name"].as_str().unwrap().to_string(),
                m["resourceVersion"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    let expected: Vec<(String, String, String)> =
        [("shop", "web-0", "4241"), ("kube-system", "dns", "4242")]
            .iter()
            .map(|(a, b, c)| (a.to_string(), b.to_string(), c.to_string()))
            .collect();
    assert_eq!(items, expected);
    // Discovery, then the list.
    let paths: Vec<String> = server.requests().iter().map(|r| r.path.clone()).collect();
    assert_eq!(paths.last().map(String::as_str), Some("/api/v1/pods"));
    assert!(paths.iter().any(|p| p == "/api/v1"), "{paths:?}");

    // A watch: the pods that exist, then exactly the add and the delete made while it watches.
    let mut child = kubectl(
        dir.path(),
        &[
            "get",
            "pods",
            "-A",
            "--watch",
            "-o",
            "json",
            "--output-watch-events",
        ],
    )
    .stdout(Stdio::piped())
    .stderr(Stdio::piped())
    .spawn()
    .unwrap();
    let docs = documents(&mut child);
    let watching = server.wait_for_watches(1, Duration::from_secs(20));
    let mut seen = Vec::new();
    if watching {
        server.add_pod(pod("shop", "web-1", 3, "web"));
        server.delete_pod("kube-system", "dns");
        let deadline = Instant::now() + Duration::from_secs(20);
        while seen.len() < 4 && Instant::now() < deadline {
            if let Ok(v) = docs.recv_timeout(Duration::from_millis(100)) {
                seen.push(v);
            }
        }
        // Anything else it would print comes now.
        while let Ok(v) = docs.recv_timeout(Duration::from_millis(500)) {
            seen.push(v);
        }
    }
    let _ = child.kill();
    let status = child.wait().unwrap();
    let mut stderr = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();
    assert!(watching, "kubectl never watched ({status}): {stderr}");
    let events: Vec<String> = seen.iter().map(event).collect();
    assert_eq!(
        events,
        [
            "ADDED shop/web-0",
            "ADDED kube-system/dns",
            "ADDED shop/web-1",
            "DELETED kube-system/dns"
        ],
        "{stderr}"
    );
    assert_eq!(seen[2]["object"]["metadata"]["resourceVersion"], "4243");
    assert_eq!(seen[3]["object"]["metadata"]["resourceVersion"], "4244");
    let watch = server
        .requests()
        .into_iter()
        .find(|r| r.query_value("watch").is_some())
        .unwrap();
    assert_eq!(watch.path, "/api/v1/pods");
    assert_eq!(watch.query_value("resourceVersion"), Some("4242"));
}
