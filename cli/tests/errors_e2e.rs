//! How `podnet stats` fails: each missing piece gets one clear message naming the fix, a non-zero
//! exit, and nothing left attached.

mod common;

use std::process::Command;
use std::sync::{Mutex, MutexGuard};

use common::{attached_programs, podnet_bin, Cluster, NODE};
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
    assert_eq!(found["pod"], "");
    assert_eq!(found["cgroupPath"], pod.rel.as_str());
    let warnings = doc["warnings"].to_string();
    assert!(
        warnings.contains("--pods-from") || warnings.contains("--kubeconfig"),
        "{warnings}"
    );
}
