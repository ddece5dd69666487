//! How `podnet stats` fails: each missing piece gets one clear message naming the fix, a non-zero
//! exit, and nothing left attached.

mod common;

use std::io::BufRead;
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use common::{attached_programs, podnet_bin, wait_detached, Cluster, NODE};
use podnet_testing::sandbox::{require_privileges, Layout, Qos};

/// The fallback scan attaches to every pod directory on the machine, including other tests'
/// sandbox pods; the tests of this binary run one at a time so none sees another's programs.
static SERIAL: Mutex<()> = Mutex::new(());

fn serial() -> MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

#[test]
fn without_capabilities_it_says_which_and_how() {
    if !require_privileges("without_capabilities_it_says_which_and_how") {
        return;
    }
    let _serial = serial();
    // Run as `nobody` with no capabilities at all.
    let out = Command::new("setpriv")
        .args([
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            "--inh-caps=-all",
        ])
        .arg(podnet_bin())
        .args(["stats", "--pods-from", "/dev/null"])
        .output()
        .expect("running setpriv (util-linux)");
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    for needle in [
        "CAP_BPF",
        "CAP_PERFMON",
        "CAP_NET_ADMIN",
        "sudo podnet stats",
    ] {
        assert!(err.contains(needle), "{needle} not in: {err}");
    }
    assert!(out.stdout.is_empty());
}

#[test]
fn api_errors_name_the_fix_and_leave_nothing_attached() {
    if !require_privileges("api_errors_name_the_fix_and_leave_nothing_attached") {
        return;
    }
    let _serial = serial();
    let mut c = Cluster::new("apierr");
    let pod = c.pod(
        "shop",
        "web-0",
        Layout::SystemdContainerd,
        Qos::Burstable,
        &["web"],
    );
    for (code, needle) in [(401, "credentials"), (403, "RBAC"), (500, "500")] {
        c.api.set_status(code);
        let (status, out) = c.podnet(&["-o", "json"]).finish_with_stderr();
        assert_eq!(status.code(), Some(1), "HTTP {code}");
        assert!(
            out.contains(needle),
            "HTTP {code}: `{needle}` not in: {out}"
        );
        assert_eq!(attached_programs(&pod.dir), 0);
    }
}

#[test]
fn unreachable_api_falls_back_to_the_cgroup_scan() {
    if !require_privileges("unreachable_api_falls_back_to_the_cgroup_scan") {
        return;
    }
    let _serial = serial();
    let mut c = Cluster::new("noapi");
    let pod = c.pod(
        "shop",
        "web-0",
        Layout::SystemdContainerd,
        Qos::Burstable,
        &["web"],
    );
    // A kubeconfig naming a port where nothing listens.
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let kc = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(
        kc.path(),
        podnet_testing::apiserver::kubeconfig_yaml(
            &format!("http://127.0.0.1:{port}"),
            "gone",
            None,
        ),
    )
    .unwrap();
    let doc = common::Podnet::start(kc.path(), &["-o", "json", "--interval", "200ms"]).json();
    assert_eq!(doc["node"], NODE);
    // Known by UID only: the scan finds the pod directory (and others on this machine, if any).
    let found = doc["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["uid"] == pod.uid.as_str())
        .unwrap_or_else(|| panic!("pod {} not found by the scan: {doc:#}", pod.uid));
    // Unknown names are null (they were "" before "podnet stats feels like top").
    assert_eq!(found["pod"], serde_json::Value::Null);
    assert_eq!(found["namespace"], serde_json::Value::Null);
    assert_eq!(found["cgroupPath"], pod.rel.as_str());
    let warnings = doc["warnings"].to_string();
    assert!(
        warnings.contains("--pods-from") || warnings.contains("--kubeconfig"),
        "{warnings}"
    );
}

/// `podnet stats` against `c`'s stub API server, with `RUST_LOG` unset and stderr in `err`.
fn podnet_cmd(c: &Cluster, args: &[&str], err: &tempfile::NamedTempFile) -> Command {
    let mut cmd = Command::new(podnet_bin());
    cmd.arg("stats")
        .arg("--kubeconfig")
        .arg(c.kubeconfig.path())
        .args(["--node", NODE])
        .args(args)
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .stderr(err.reopen().unwrap());
    cmd
}

/// Waits up to 20 s for `child` to exit; kills it and fails if it is still running.
fn exit_within_20s(child: &mut Child, err: &Path) -> ExitStatus {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Some(st) = child.try_wait().unwrap() {
            return st;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "podnet still running 20 s on:\n{}",
                std::fs::read_to_string(err).unwrap_or_default()
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn watch_into_a_pipe_whose_reader_left_exits_0_and_detaches() {
    if !require_privileges("watch_into_a_pipe_whose_reader_left_exits_0_and_detaches") {
        return;
    }
    let _serial = serial();
    let mut c = Cluster::new("epipe");
    let pod = c.pod(
        "shop",
        "web-0",
        Layout::SystemdContainerd,
        Qos::Burstable,
        &["web"],
    );
    let err = tempfile::NamedTempFile::new().unwrap();
    let mut child = podnet_cmd(&c, &["--watch", "--interval", "200ms", "-o", "json"], &err)
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    // `| head -1`: read one line, then close the read end.
    let out = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut line = String::new();
        let _ = std::io::BufReader::new(out).read_line(&mut line);
        let _ = tx.send(line);
    });
    let line = rx
        .recv_timeout(Duration::from_secs(20))
        .unwrap_or_else(|_| {
            let _ = child.kill();
            panic!(
                "no line from podnet:\n{}",
                std::fs::read_to_string(err.path()).unwrap()
            )
        });
    let doc: serde_json::Value = serde_json::from_str(&line).unwrap();
    assert_eq!(doc["items"][0]["pod"], "web-0", "{doc:#}");
    let status = exit_within_20s(&mut child, err.path());
    let stderr = std::fs::read_to_string(err.path()).unwrap();
    assert_eq!(status.code(), Some(0), "{status}:\n{stderr}");
    assert_eq!(stderr, "", "a reader going away is not worth a message");
    wait_detached(&pod.dir);
}

#[test]
fn watch_with_stdout_closed_is_one_clear_error() {
    if !require_privileges("watch_with_stdout_closed_is_one_clear_error") {
        return;
    }
    let _serial = serial();
    let mut c = Cluster::new("ebadf");
    let pod = c.pod(
        "shop",
        "web-0",
        Layout::SystemdContainerd,
        Qos::Burstable,
        &["web"],
    );
    let err = tempfile::NamedTempFile::new().unwrap();
    // `podnet stats --watch ... >&-`
    let mut child = Command::new("sh")
        .args(["-c", "exec \"$0\" \"$@\" >&-"])
        .arg(podnet_bin())
        .arg("stats")
        .arg("--kubeconfig")
        .arg(c.kubeconfig.path())
        .args([
            "--node",
            NODE,
            "--watch",
            "--interval",
            "200ms",
            "-o",
            "json",
        ])
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .stderr(err.reopen().unwrap())
        .spawn()
        .unwrap();
    let status = exit_within_20s(&mut child, err.path());
    let stderr = std::fs::read_to_string(err.path()).unwrap();
    assert_eq!(status.code(), Some(1), "{status}:\n{stderr}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(
        stderr.starts_with("error: ") && stderr.contains("standard output is closed"),
        "{stderr}"
    );
    assert_eq!(attached_programs(&pod.dir), 0);
}

#[test]
fn sigterm_exits_143_and_detaches() {
    if !require_privileges("sigterm_exits_143_and_detaches") {
        return;
    }
    let _serial = serial();
    let mut c = Cluster::new("sigterm");
    let pod = c.pod(
        "shop",
        "web-0",
        Layout::SystemdContainerd,
        Qos::Burstable,
        &["web"],
    );
    let mut p = c.podnet(&["-o", "json", "--interval", "60s"]);
    p.wait_attached(&[&pod.dir]);
    // podnet catches SIGTERM from just after attaching; before that the default action kills it.
    // Wait until the handler is there (SigCgt in /proc/<pid>/status has SIGTERM's bit).
    let term_bit = 1u64 << (nix::sys::signal::Signal::SIGTERM as i32 - 1);
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let status = std::fs::read_to_string(format!("/proc/{}/status", p.pid())).unwrap();
        let caught = status
            .lines()
            .find_map(|l| l.strip_prefix("SigCgt:"))
            .map(|m| u64::from_str_radix(m.trim(), 16).unwrap())
            .unwrap();
        if caught & term_bit != 0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "podnet did not catch SIGTERM within 20 s:\n{}",
            p.stderr()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    p.signal(nix::sys::signal::Signal::SIGTERM);
    let (status, err) = p.finish_with_stderr();
    assert_eq!(status.code(), Some(143), "{status}:\n{err}");
    wait_detached(&pod.dir);
}

#[test]
fn watch_iterations_zero_is_a_usage_error() {
    // Argument parsing rejects it before podnet needs any privilege.
    let pods = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(
        pods.path(),
        r#"{"apiVersion":"v1","kind":"PodList","items":[]}"#,
    )
    .unwrap();
    let out = Command::new(podnet_bin())
        .arg("stats")
        .arg("--pods-from")
        .arg(pods.path())
        .args(["--watch", "--iterations", "0", "--interval", "10ms"])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("--iterations"), "{err}");
    assert!(out.stdout.is_empty());
}

#[test]
fn without_rust_log_only_podnets_own_error_is_printed() {
    if !require_privileges("without_rust_log_only_podnets_own_error_is_printed") {
        return;
    }
    let _serial = serial();
    let mut c = Cluster::new("quietlog");
    let pod = c.pod(
        "shop",
        "web-0",
        Layout::SystemdContainerd,
        Qos::Burstable,
        &["web"],
    );
    c.api.set_status(500);
    let err = tempfile::NamedTempFile::new().unwrap();
    let out = podnet_cmd(&c, &["-o", "json", "--interval", "200ms"], &err)
        .output()
        .unwrap();
    let stderr = std::fs::read_to_string(err.path()).unwrap();
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(!stderr.contains("kube_client"), "{stderr}");
    assert!(
        !stderr
            .lines()
            .any(|l| l.contains("ERROR ") || l.contains("WARN ")),
        "{stderr}"
    );
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(
        stderr.starts_with("error: ") && stderr.contains("500"),
        "{stderr}"
    );
    assert_eq!(attached_programs(&pod.dir), 0);
}
