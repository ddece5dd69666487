//! Shared fixture for the end-to-end tests: sandbox pods in real cgroup directories, a stub API
//! server on 127.0.0.1 that lists them, and the real `podnet` binary run against both.

#![allow(dead_code)] // each test binary uses a different part of the fixture

pub mod agent;

use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc::{self, Receiver};
use std::time::{Duration, Instant};

pub use podnet::attach::attached_programs;
use podnet_testing::apiserver::StubApiServer;
use podnet_testing::sandbox::{new_container_id, new_uid, CgroupTree, Layout, Qos, SandboxPod};
use serde_json::Value;

pub const NODE: &str = "podnet-test-node";

/// Sandbox pods plus the stub API server that lists them.
pub struct Cluster {
    pub tree: CgroupTree,
    pub api: StubApiServer,
    pub kubeconfig: tempfile::NamedTempFile,
    pods: Vec<Value>,
}

impl Cluster {
    pub fn new(label: &str) -> Cluster {
        let tree = CgroupTree::new(label).expect("creating the sandbox cgroup tree");
        let api = StubApiServer::start(Vec::new());
        let kubeconfig = tempfile::NamedTempFile::new().unwrap();
        api.write_kubeconfig(kubeconfig.path(), None).unwrap();
        Cluster {
            tree,
            api,
            kubeconfig,
            pods: Vec::new(),
        }
    }

    /// Creates a pod with one container per name, in `layout`, scheduled on [`NODE`].
    pub fn pod(
        &mut self,
        ns: &str,
        name: &str,
        layout: Layout,
        qos: Qos,
        containers: &[&str],
    ) -> SandboxPod {
        let ids: Vec<(String, String)> = containers
            .iter()
            .map(|c| (c.to_string(), new_container_id()))
            .collect();
        let refs: Vec<(&str, &str)> = ids.iter().map(|(n, i)| (n.as_str(), i.as_str())).collect();
        let pod = SandboxPod::create(&self.tree, layout, &new_uid(), qos, &refs).unwrap();
        self.serve(pod.pod_json(ns, name, NODE, &[("app", name)]));
        pod
    }

    /// Adds a Pod object to what the stub API server lists.
    pub fn serve(&mut self, pod: Value) {
        self.pods.push(pod);
        self.api.set_pods(self.pods.clone());
    }

    /// Deletes the Pod object `ns/name` from what the stub API server lists (watches get
    /// DELETED); the deletion's resourceVersion. Its cgroup directories stay until the test
    /// removes them (`tree.remove`) or the tree is dropped.
    pub fn delete(&mut self, ns: &str, name: &str) -> u64 {
        self.pods
            .retain(|p| !(p["metadata"]["namespace"] == ns && p["metadata"]["name"] == name));
        self.api.delete_pod(ns, name)
    }

    /// Starts `podnet stats` against this cluster with extra arguments.
    pub fn podnet(&self, args: &[&str]) -> Podnet {
        Podnet::start(self.kubeconfig.path(), args)
    }

    /// Like [`Cluster::podnet`], with extra environment variables.
    pub fn podnet_with_env(&self, args: &[&str], env: &[(&str, &str)]) -> Podnet {
        Podnet::start_with_env(self.kubeconfig.path(), args, env)
    }
}

/// A running `podnet` process with its output collected.
pub struct Podnet {
    child: Child,
    lines: Receiver<String>,
    stderr: std::sync::Arc<std::sync::Mutex<String>>,
    /// The thread copying stderr, joined once podnet has exited.
    stderr_reader: Option<std::thread::JoinHandle<()>>,
}

pub fn podnet_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_podnet"))
}

impl Podnet {
    pub fn start(kubeconfig: &Path, args: &[&str]) -> Podnet {
        Podnet::start_with_env(kubeconfig, args, &[])
    }

    pub fn start_with_env(kubeconfig: &Path, args: &[&str], env: &[(&str, &str)]) -> Podnet {
        let mut child = Command::new(podnet_bin())
            .arg("stats")
            .arg("--kubeconfig")
            .arg(kubeconfig)
            .arg("--node")
            .arg(NODE)
            .args(args)
            .env("RUST_LOG", "debug")
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("starting podnet");
        let out = child.stdout.take().unwrap();
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let stderr = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
        let sink = stderr.clone();
        let mut err = child.stderr.take().unwrap();
        let stderr_reader = std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n) = err.read(&mut buf) {
                if n == 0 {
                    break;
                }
                sink.lock()
                    .unwrap()
                    .push_str(&String::from_utf8_lossy(&buf[..n]));
            }
        });
        Podnet {
            child,
            lines,
            stderr,
            stderr_reader: Some(stderr_reader),
        }
    }

    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    pub fn stderr(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }

    /// Waits (60 s at most) until podnet's first counting window has started: what happens after
    /// this is in the window.
    pub fn wait_window(&self) {
        let deadline = Instant::now() + Duration::from_secs(60);
        while !self.stderr().contains(podnet::stats::WINDOW_STARTS) {
            assert!(Instant::now() < deadline, "no window:\n{}", self.stderr());
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Waits until every program podnet attaches to a pod directory is attached to each of `dirs`.
    pub fn wait_attached(&mut self, dirs: &[&Path]) {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if dirs.iter().all(|d| attached_programs(d) == 5) {
                return;
            }
            if let Ok(Some(st)) = self.child.try_wait() {
                panic!("podnet exited ({st}) before attaching:\n{}", self.stderr());
            }
            assert!(
                Instant::now() < deadline,
                "podnet did not attach within 20 s:\n{}",
                self.stderr()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The next line of standard output (bounded wait).
    pub fn next_line(&mut self, timeout: Duration) -> String {
        let line = self
            .lines
            .recv_timeout(timeout)
            .unwrap_or_else(|e| panic!("no output from podnet ({e}):\n{}", self.stderr()));
        validate_output(&line);
        line
    }

    /// Waits for podnet to exit (bounded) and returns its status and all remaining stdout.
    pub fn finish(mut self) -> (ExitStatus, String) {
        let deadline = Instant::now() + Duration::from_secs(60);
        let status = loop {
            if let Some(st) = self.child.try_wait().unwrap() {
                break st;
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                panic!("podnet did not exit within 60 s:\n{}", self.stderr());
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        // All of stderr is in once its reader has seen the end of the pipe.
        if let Some(reader) = self.stderr_reader.take() {
            let _ = reader.join();
        }
        let mut out = String::new();
        while let Ok(l) = self.lines.recv_timeout(Duration::from_secs(2)) {
            out.push_str(&l);
            out.push('\n');
        }
        validate_output(&out);
        (status, out)
    }

    /// Waits for podnet to exit (bounded) and returns its status and everything it wrote to
    /// standard error.
    pub fn finish_with_stderr(self) -> (ExitStatus, String) {
        let stderr = self.stderr.clone();
        let (status, _) = self.finish();
        let err = stderr.lock().unwrap().clone();
        (status, err)
    }

    /// Waits for a one-shot `-o json` run to end successfully and parses its document.
    pub fn json(self) -> Value {
        let stderr = self.stderr.clone();
        let (status, out) = self.finish();
        let err = stderr.lock().unwrap().clone();
        assert!(status.success(), "podnet failed ({status}):\n{err}");
        serde_json::from_str(&out).unwrap_or_else(|e| panic!("bad JSON ({e}):\n{out}\n{err}"))
    }

    pub fn signal(&self, sig: nix::sys::signal::Signal) {
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(self.pid()), sig).unwrap();
    }
}

impl Drop for Podnet {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Waits (bounded) until nothing is attached to `dir`.
pub fn wait_detached(dir: &Path) {
    wait_detached_to(dir, 0);
}

/// Waits (10 s at most) until exactly `left` programs remain attached to `dir`: the others'
/// links are gone.
pub fn wait_detached_to(dir: &Path, left: usize) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while attached_programs(dir) != left {
        assert!(
            Instant::now() < deadline,
            "{} programs attached to {} 10 s after podnet ended, expected {left}",
            attached_programs(dir),
            dir.display()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// `schema/podnet-v1.json`, the checked-in JSON Schema of `podnet/v1`.
pub fn schema_path() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../schema/podnet-v1.json")
}

/// Why `doc` does not validate against the checked-in schema (empty when it does).
pub fn schema_errors(doc: &Value) -> Vec<String> {
    static VALIDATOR: std::sync::OnceLock<jsonschema::Validator> = std::sync::OnceLock::new();
    let v = VALIDATOR.get_or_init(|| {
        let text = std::fs::read_to_string(schema_path()).expect("reading schema/podnet-v1.json");
        let schema: Value = serde_json::from_str(&text).expect("schema/podnet-v1.json is JSON");
        jsonschema::validator_for(&schema).expect("schema/podnet-v1.json is a valid JSON Schema")
    });
    v.iter_errors(doc)
        .map(|e| format!("{} at {}", e, e.instance_path()))
        .collect()
}

/// Fails unless `doc` validates against the checked-in `podnet/v1` schema.
pub fn validate(doc: &Value) {
    let errors = schema_errors(doc);
    assert!(
        errors.is_empty(),
        "the document does not follow schema/podnet-v1.json:\n{}\n{doc:#}",
        errors.join("\n")
    );
}

/// Validates `text` when it is a `podnet/v1` document (a pretty one, or JSON Lines of them):
/// every document podnet prints in these tests is checked against the schema.
fn validate_output(text: &str) {
    let docs: Vec<Value> = match serde_json::from_str::<Value>(text) {
        Ok(v) => vec![v],
        Err(_) => text
            .lines()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .collect(),
    };
    for d in docs.iter().filter(|d| d["apiVersion"] == "podnet/v1") {
        validate(d);
    }
}

/// The item for pod `name` in a podnet/v1 document.
pub fn item<'a>(doc: &'a Value, name: &str) -> &'a Value {
    doc["items"]
        .as_array()
        .expect("items is an array")
        .iter()
        .find(|i| i["pod"] == name)
        .unwrap_or_else(|| panic!("pod {name} not in the report:\n{doc:#}"))
}

/// A u64 at a JSON pointer such as `/network/txBytes`.
pub fn n(v: &Value, pointer: &str) -> u64 {
    v.pointer(pointer)
        .and_then(Value::as_u64)
        .unwrap_or_else(|| panic!("no number at {pointer} in {v:#}"))
}

/// Can the file-open programs podnet used for `doc` (its `fileOpenProbe`) walk up the cgroup tree
/// on this kernel? Where they cannot (5.10), opens in cgroups podnet has not registered reach no
/// pod, and podnet says so in a warning instead.
pub fn opens_walk_up(doc: &Value) -> bool {
    use podnet_loader::probe::{helper_available, Helper};
    let kind = match doc["fileOpenProbe"].as_str() {
        Some("fexit") => podnet_loader::ProgramKind::Tracing {
            function: podnet::attach::OPEN_FUNCTION.into(),
            exit: true,
        },
        Some("kprobe") => podnet_loader::ProgramKind::Kprobe {
            function: podnet::attach::OPEN_FUNCTION.into(),
            retprobe: false,
        },
        Some("tracepoint") => podnet_loader::ProgramKind::Tracepoint {
            category: "syscalls".into(),
            event: "sys_exit_openat".into(),
        },
        other => panic!("no file-open probe in the document: {other:?}"),
    };
    helper_available(&kind, Helper::GetCurrentAncestorCgroupId).unwrap()
}

/// Does `doc` warn that opens in unregistered cgroups are not counted?
pub fn warns_unregistered_opens(doc: &Value) -> bool {
    doc["warnings"].as_array().unwrap().iter().any(|w| {
        w.as_str()
            .unwrap()
            .starts_with(podnet::attach::UNREGISTERED_OPENS_WARNING)
    })
}
