//! `podnet stats` under bad conditions: an API server or a `--pods-from` file failing in the
//! middle of `--watch`, containers coming and going, degraded privileges. Each count asserted is
//! one the test caused.

mod common;

use std::time::Duration;

use common::{item, n, Cluster, NODE};
use podnet::stats::{REFRESH_FAILED, REFRESH_RECOVERED};
use podnet_testing::sandbox::{require_privileges, Layout, Qos, SandboxPod, Workload};
use serde_json::{json, Value};

fn args(s: &str) -> Vec<String> {
    s.split_whitespace().map(String::from).collect()
}

/// Runs a workload in `pod`'s container `container` to its end and returns its report.
fn run_in(pod: &SandboxPod, container: usize, a: &str) -> Value {
    let mut w = Workload::spawn_in(&args(a), None, &pod.containers[container]).unwrap();
    w.wait_ready().unwrap();
    w.go().unwrap();
    let r = w.result().unwrap();
    w.wait_exit().unwrap();
    r
}

/// Whether any warning of `doc` contains `needle`.
fn warns(doc: &Value, needle: &str) -> bool {
    doc["warnings"]
        .as_array()
        .unwrap()
        .iter()
        .any(|w| w.as_str().unwrap().contains(needle))
}

/// Reads JSON Lines from `p` until one satisfies `done` (bounded); returns every line read.
fn read_until(p: &mut common::Podnet, done: impl Fn(&Value) -> bool) -> Vec<Value> {
    let mut docs = Vec::new();
    for _ in 0..200 {
        let doc: Value = serde_json::from_str(&p.next_line(Duration::from_secs(20))).unwrap();
        let stop = done(&doc);
        docs.push(doc);
        if stop {
            return docs;
        }
    }
    panic!(
        "no matching report in 200 lines:\n{:#}",
        docs.last().unwrap()
    );
}

/// The outage checks shared by the API and the file tests: every report after the workload
/// shows the pod with exactly its 17 opens, one report warns of the outage, a later one notes
/// the recovery, and nothing else mentions either.
fn assert_outage_reported(docs: &[Value], from: usize) {
    for d in &docs[from..] {
        let i = item(d, "web-0");
        assert_eq!(n(i, "/files/opens"), 17, "{d:#}");
        assert_eq!(n(i, "/files/openErrors"), 2, "{d:#}");
    }
    let failed: Vec<usize> = (0..docs.len())
        .filter(|&k| warns(&docs[k], REFRESH_FAILED))
        .collect();
    let recovered: Vec<usize> = (0..docs.len())
        .filter(|&k| warns(&docs[k], REFRESH_RECOVERED))
        .collect();
    assert_eq!(failed.len(), 1, "one outage warning: {failed:?}");
    assert_eq!(recovered.len(), 1, "one recovery note: {recovered:?}");
    assert!(failed[0] >= from && recovered[0] > failed[0]);
}

#[test]
fn api_outage_during_watch_keeps_the_pods_and_says_so_once() {
    if !require_privileges("api_outage_during_watch_keeps_the_pods_and_says_so_once") {
        return;
    }
    let mut c = Cluster::new("outage");
    let pod = c.pod(
        "shop",
        "web-0",
        Layout::SystemdContainerd,
        Qos::Burstable,
        &["web"],
    );
    let iterations = 16;
    let mut p = c.podnet(&[
        "--watch",
        "-o",
        "json",
        "--interval",
        "300ms",
        "--refresh-interval",
        "300ms",
        "--iterations",
        &iterations.to_string(),
    ]);
    p.wait_attached(&[&pod.dir]);
    let r = run_in(&pod, 0, "open --path /etc/hostname --count 15 --missing 2");
    assert_eq!(r["opened"], 15);
    let mut docs = read_until(&mut p, |d| n(item(d, "web-0"), "/files/opens") == 17);
    let from = docs.len() - 1;
    // Each report is followed by one refresh (one list request): the next three fail.
    let lists_before = c.api.requests().len();
    c.api.fail_next(3, 500);
    let (status, out) = p.finish();
    assert!(status.success(), "{status}");
    docs.extend(
        out.lines()
            .map(|l| serde_json::from_str::<Value>(l).unwrap()),
    );
    assert_eq!(docs.len(), iterations);
    assert_outage_reported(&docs, from);
    // Three failed lists, then at least the one that recovered.
    assert!(c.api.requests().len() >= lists_before + 4);
    let failed = docs.iter().find(|d| warns(d, REFRESH_FAILED)).unwrap();
    assert!(warns(failed, "500"), "{failed:#}");
}

#[test]
fn pods_from_file_failing_during_watch_keeps_the_pods() {
    if !require_privileges("pods_from_file_failing_during_watch_keeps_the_pods") {
        return;
    }
    let c = Cluster::new("filegone");
    let pod = SandboxPod::create(
        &c.tree,
        Layout::Cgroupfs,
        &podnet_testing::sandbox::new_uid(),
        Qos::BestEffort,
        &[("web", &podnet_testing::sandbox::new_container_id())],
    )
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("pods.json");
    let list = json!({"apiVersion": "v1", "kind": "List",
                      "items": [pod.pod_json("shop", "web-0", NODE, &[])]});
    std::fs::write(&file, list.to_string()).unwrap();
    let mut p = c.podnet(&[
        "--watch",
        "-o",
        "json",
        "--interval",
        "200ms",
        "--refresh-interval",
        "200ms",
        "--pods-from",
        file.to_str().unwrap(),
    ]);
    p.wait_attached(&[&pod.dir]);
    run_in(&pod, 0, "open --path /etc/hostname --count 15 --missing 2");
    let mut docs = read_until(&mut p, |d| n(item(d, "web-0"), "/files/opens") == 17);
    let from = docs.len() - 1;
    // The file disappears (a config map being rewritten): the refreshes fail until it is back.
    let aside = dir.path().join("aside.json");
    std::fs::rename(&file, &aside).unwrap();
    docs.extend(read_until(&mut p, |d| warns(d, REFRESH_FAILED)));
    // Some more reports during the outage, then the file comes back.
    for _ in 0..3 {
        docs.push(serde_json::from_str(&p.next_line(Duration::from_secs(20))).unwrap());
    }
    std::fs::rename(&aside, &file).unwrap();
    docs.extend(read_until(&mut p, |d| warns(d, REFRESH_RECOVERED)));
    // And one after the recovery, which says nothing more.
    docs.push(serde_json::from_str(&p.next_line(Duration::from_secs(20))).unwrap());
    p.signal(nix::sys::signal::Signal::SIGINT);
    let (status, out) = p.finish();
    assert!(status.success(), "{status}");
    docs.extend(
        out.lines()
            .map(|l| serde_json::from_str::<Value>(l).unwrap()),
    );
    assert_outage_reported(&docs, from);
    let failed = docs.iter().find(|d| warns(d, REFRESH_FAILED)).unwrap();
    assert!(warns(failed, "pods.json"), "{failed:#}");
}

/// podnet's stderr once `done` holds for it, or after 20 s (the caller asserts what it needs).
fn stderr_until(p: &common::Podnet, done: impl Fn(&str) -> bool) -> String {
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let err = p.stderr();
        if done(&err) || std::time::Instant::now() > deadline {
            return err;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The last `read N counter entries` podnet logged (RUST_LOG=debug): how many entries its
/// counters map held at its latest read.
fn last_map_count(stderr: &str) -> Option<usize> {
    stderr.lines().rev().find_map(|l| {
        let rest = &l[l.find("] read ")? + "] read ".len()..];
        rest.split(" counter entries").next()?.parse().ok()
    })
}

#[test]
fn a_container_whose_cgroup_is_gone_leaves_the_map_and_stays_in_its_pod() {
    if !require_privileges("a_container_whose_cgroup_is_gone_leaves_the_map_and_stays_in_its_pod") {
        return;
    }
    let mut c = Cluster::new("retire");
    let pod = c.pod(
        "shop",
        "web-0",
        Layout::SystemdContainerd,
        Qos::Burstable,
        &["app", "init"],
    );
    let mut p = c.podnet(&[
        "--watch",
        "-o",
        "json",
        "--interval",
        "200ms",
        "--refresh-interval",
        "200ms",
    ]);
    p.wait_attached(&[&pod.dir]);
    run_in(&pod, 1, "open --path /etc/hostname --count 5");
    run_in(&pod, 0, "open --path /etc/hostname --count 3");
    let opens = |d: &Value| n(item(d, "web-0"), "/files/opens");
    read_until(&mut p, |d| opens(d) == 8);
    // The pod and its two containers. (podnet's stderr reaches the test through a reader
    // thread that may trail its stdout: wait for the log line, bounded.)
    let err = stderr_until(&p, |e| last_map_count(e).is_some());
    assert_eq!(last_map_count(&err), Some(3), "{err}");
    // The init container finished: the runtime removes its cgroup.
    let init = &pod.containers[1];
    std::fs::remove_dir(&init.dir).unwrap();
    if let Some(memcg) = &init.memcg {
        std::fs::remove_dir(memcg).unwrap();
    }
    let docs = read_until(&mut p, |d| {
        item(d, "web-0")["containers"].as_array().unwrap().len() == 1
    });
    // One more report, read after the entry was deleted.
    let after: Value = serde_json::from_str(&p.next_line(Duration::from_secs(20))).unwrap();
    // The read behind `after` was logged before `after` was printed.
    let err = stderr_until(&p, |e| {
        e.contains("unregistered container shop/web-0/init (cgroup ")
            && last_map_count(e) == Some(2)
    });
    assert!(
        err.contains("unregistered container shop/web-0/init (cgroup "),
        "{err}"
    );
    assert_eq!(last_map_count(&err), Some(2), "{err}");
    for d in docs.iter().chain([&after]) {
        // The pod's totals keep the gone container's opens.
        assert_eq!(opens(d), 8, "{d:#}");
    }
    let i = item(&after, "web-0");
    assert_eq!(i["containers"].as_array().unwrap().len(), 1, "{i:#}");
    assert_eq!(i["containers"][0]["name"], "app");
    assert_eq!(n(&i["containers"][0], "/files/opens"), 3);
    p.signal(nix::sys::signal::Signal::SIGINT);
    let (status, _) = p.finish();
    assert!(status.success(), "{status}");
}

/// `podnet stats` run through `setpriv` with `setpriv_args`, against `c`, one 200 ms window.
fn podnet_via_setpriv(c: &Cluster, setpriv_args: &[&str], extra: &[&str]) -> std::process::Output {
    std::process::Command::new("setpriv")
        .args(setpriv_args)
        .arg(common::podnet_bin())
        .arg("stats")
        .arg("--kubeconfig")
        .arg(c.kubeconfig.path())
        .args(["--node", NODE, "--interval", "200ms"])
        .args(extra)
        .env_remove("RUST_LOG")
        .stdin(std::process::Stdio::null())
        .output()
        .expect("running setpriv (util-linux)")
}

#[test]
fn without_cap_sys_ptrace_fd_gauges_are_null_and_named() {
    if !require_privileges("without_cap_sys_ptrace_fd_gauges_are_null_and_named") {
        return;
    }
    let mut c = Cluster::new("noptrace");
    let pod = c.pod(
        "shop",
        "web-0",
        Layout::SystemdContainerd,
        Qos::Burstable,
        &["app"],
    );
    // A root process holding descriptors in the pod (as a container's would).
    let mut w = Workload::spawn_in(&args("hold-memory --mib 1"), None, &pod.containers[0]).unwrap();
    w.wait_ready().unwrap();
    w.go().unwrap();
    w.result().unwrap();
    // Root without CAP_SYS_PTRACE: /proc/PID/fd of processes with more capabilities is denied.
    let out = podnet_via_setpriv(
        &c,
        &["--bounding-set=-sys_ptrace", "--inh-caps=-sys_ptrace"],
        &["-o", "json"],
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{}: {err}", out.status);
    let doc: Value = serde_json::from_slice(&out.stdout).unwrap();
    let i = item(&doc, "web-0");
    assert_eq!(i["sockets"]["open"], Value::Null, "{i:#}");
    assert_eq!(i["files"]["openFds"], Value::Null, "{i:#}");
    assert_eq!(i["containers"][0]["files"]["openFds"], Value::Null, "{i:#}");
    let named: Vec<&Value> = doc["warnings"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|w| w.as_str().unwrap().contains("CAP_SYS_PTRACE"))
        .collect();
    assert_eq!(named.len(), 1, "{:#}", doc["warnings"]);
    // The table shows dashes, the warning goes to stderr.
    let out = podnet_via_setpriv(
        &c,
        &["--bounding-set=-sys_ptrace", "--inh-caps=-sys_ptrace"],
        &[],
    );
    let table = String::from_utf8_lossy(&out.stdout);
    let row: Vec<&str> = table
        .lines()
        .find(|l| l.contains("web-0"))
        .unwrap()
        .split_whitespace()
        .collect();
    // Cells have no spaces (SOCKETS and FDS are the 7th and 9th words; they were the 11th and
    // 13th while rates and sizes were two words each).
    assert_eq!((row[6], row[8]), ("-", "-"), "{table}");
    assert!(String::from_utf8_lossy(&out.stderr).contains("CAP_SYS_PTRACE"));
    // With every capability the same process's descriptors are counted, and nothing is said.
    let doc = c.podnet(&["-o", "json", "--interval", "200ms"]).json();
    let i = item(&doc, "web-0");
    assert!(n(i, "/files/openFds") >= 3, "{i:#}");
    assert!(i["sockets"]["open"].is_u64(), "{i:#}");
    assert!(!warns(&doc, "CAP_SYS_PTRACE"), "{:#}", doc["warnings"]);
    w.release().unwrap();
}

#[test]
fn tracefs_it_may_not_read_is_permission_denied_with_the_fix() {
    if !require_privileges("tracefs_it_may_not_read_is_permission_denied_with_the_fix") {
        return;
    }
    use std::os::unix::fs::PermissionsExt;
    let tracefs = podnet_loader::tracefs_dir().unwrap();
    let mode = std::fs::metadata(&tracefs).unwrap().permissions().mode();
    let c = Cluster::new("tracefs");
    // podnet's capabilities as `setcap` would give them to a non-root user: no
    // CAP_DAC_READ_SEARCH. Only the syscall tracepoints need tracefs: where the kernel takes
    // fexit, `--open-probe auto` never reads it, so the tracepoints are asked for.
    let caps = "+bpf,+perfmon,+net_admin";
    let out = podnet_via_setpriv(
        &c,
        &[
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            &format!("--inh-caps={caps}"),
            &format!("--ambient-caps={caps}"),
        ],
        &["-o", "json", "--open-probe", "tracepoint"],
    );
    let err = String::from_utf8_lossy(&out.stderr);
    if mode & 0o005 == 0o005 {
        // A tracefs everyone may read (mounted with mode=755): no complaint about it.
        assert!(!err.contains("tracefs"), "{err}");
        return;
    }
    // The default tracefs mode (0700).
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.contains(&format!(
            "permission denied reading tracefs at {}",
            tracefs.display()
        )),
        "{err}"
    );
    for fix in [
        "CAP_DAC_READ_SEARCH",
        "cap_dac_read_search",
        "mode=755",
        "root",
    ] {
        assert!(err.contains(fix), "{fix} not in: {err}");
    }
    assert!(!err.contains("not found"), "{err}");
}

#[test]
fn a_container_beyond_the_map_still_counts_in_its_pod_and_the_warning_says_so() {
    if !require_privileges(
        "a_container_beyond_the_map_still_counts_in_its_pod_and_the_warning_says_so",
    ) {
        return;
    }
    let mut c = Cluster::new("maxpods");
    // --max-pods 1 holds 8 cgroups: the pod and its first 7 containers.
    let names: Vec<String> = (0..8).map(|i| format!("c{i}")).collect();
    let refs: Vec<&str> = names.iter().map(String::as_str).collect();
    let pod = c.pod("shop", "big", Layout::Cgroupfs, Qos::Burstable, &refs);
    let mut p = c.podnet(&["-o", "json", "--interval", "4s", "--max-pods", "1"]);
    p.wait_attached(&[&pod.dir]);
    let r = run_in(&pod, 7, "open --path /etc/hostname --count 6");
    assert_eq!(r["opened"], 6);
    let r = run_in(&pod, 7, "sockets --count 4");
    assert_eq!(r["created"], 4);
    let doc = p.json();
    let i = item(&doc, "big");
    // The eighth container is not registered: its opens reach the pod by walking up the cgroup
    // tree, which the file-open programs can do where the kernel lets them (not 5.10); there
    // podnet must say so.
    let walks = common::opens_walk_up(&doc);
    assert_eq!(
        common::warns_unregistered_opens(&doc),
        !walks,
        "{:#}",
        doc["warnings"]
    );
    if walks {
        assert_eq!(n(i, "/files/opens"), 6, "{i:#}");
    }
    assert_eq!(n(i, "/sockets/created"), 4, "{i:#}");
    let rows: Vec<&str> = i["containers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(rows, &refs[..7]);
    let w: Vec<&str> = doc["warnings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| w.as_str().unwrap())
        .filter(|w| w.contains("shop/big/c7"))
        .collect();
    assert_eq!(w.len(), 1, "{:#}", doc["warnings"]);
    assert!(
        w[0].contains("per-container attribution")
            && w[0].contains("still count in its pod's totals")
            && w[0].contains("--max-pods")
            && !w[0].contains("is not counted"),
        "{}",
        w[0]
    );
}

/// `podnet stats` against `c` with exactly `a` after `--kubeconfig` (no `--node` of its own).
fn podnet_output(c: &Cluster, a: &[&str]) -> std::process::Output {
    std::process::Command::new(common::podnet_bin())
        .arg("stats")
        .arg("--kubeconfig")
        .arg(c.kubeconfig.path())
        .args(a)
        .env_remove("RUST_LOG")
        .env_remove("NODE_NAME")
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap()
}

/// The lines of `stderr` that are not warnings.
fn said(stderr: &str) -> Vec<String> {
    stderr
        .lines()
        .filter(|l| !l.starts_with("warning: "))
        .map(String::from)
        .collect()
}

#[test]
fn empty_results_say_why() {
    if !require_privileges("empty_results_say_why") {
        return;
    }
    let mut c = Cluster::new("empty");
    let pod = c.pod(
        "shop",
        "web-0",
        Layout::SystemdContainerd,
        Qos::Burstable,
        &["web"],
    );
    // A namespace with no pods: kubectl's "No resources found", on stderr; the table is the
    // header alone.
    let out = podnet_output(
        &c,
        &["--node", NODE, "--interval", "200ms", "-n", "nothing"],
    );
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert!(out.status.success(), "{stderr}");
    assert_eq!(stdout.lines().count(), 1, "{stdout}");
    assert!(stdout.starts_with("NAMESPACE"), "{stdout}");
    // Besides warnings about the machine, exactly that line.
    assert_eq!(
        said(&stderr),
        [format!(
            "No pods found on node {NODE} in namespace nothing."
        )]
    );
    // A selector that matches nothing, in every namespace.
    let out = podnet_output(
        &c,
        &["--node", NODE, "--interval", "200ms", "-l", "app=none"],
    );
    assert_eq!(
        said(&String::from_utf8_lossy(&out.stderr)),
        [format!(
            "No pods found on node {NODE} in any namespace matching -l app=none."
        )]
    );
    // The wrong node name: the API lists nothing, the cgroup tree holds pods.
    let out = podnet_output(
        &c,
        &[
            "--node",
            "not-this-node",
            "--interval",
            "200ms",
            "-o",
            "json",
        ],
    );
    let doc: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(doc["items"], json!([]));
    let w: Vec<&str> = doc["warnings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| w.as_str().unwrap())
        .filter(|w| w.contains("lists no pods on node `not-this-node`"))
        .collect();
    assert_eq!(w.len(), 1, "{:#}", doc["warnings"]);
    assert!(
        w[0].contains("--node") && w[0].contains("NODE_NAME"),
        "{}",
        w[0]
    );
    // The right node: no such warning.
    let doc = c.podnet(&["-o", "json", "--interval", "200ms"]).json();
    assert!(!warns(&doc, "lists no pods"), "{:#}", doc["warnings"]);
    assert_eq!(item(&doc, "web-0")["cgroupPath"], pod.rel.as_str());
}

#[test]
fn a_200_answer_that_is_not_a_pod_list_is_an_error() {
    if !require_privileges("a_200_answer_that_is_not_a_pod_list_is_an_error") {
        return;
    }
    let mut c = Cluster::new("notlist");
    let pod = c.pod(
        "shop",
        "web-0",
        Layout::SystemdContainerd,
        Qos::Burstable,
        &["web"],
    );
    // What a web server or a misrouted proxy at the server URL might answer.
    c.api.answer_lists_with(Some(
        json!({"kind": "NodeList", "apiVersion": "v1", "items": []}),
    ));
    let out = podnet_output(&c, &["--node", NODE, "--interval", "200ms", "-o", "json"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(out.stdout.is_empty());
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.contains("answered 200 OK with an object of kind `NodeList`, not a PodList"),
        "{err}"
    );
    c.api.answer_lists_with(Some(json!({"hello": "world"})));
    let out = podnet_output(&c, &["--node", NODE, "--interval", "200ms"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("kind `(none)`, not a PodList"), "{err}");
    assert_eq!(common::attached_programs(&pod.dir), 0);
    // PodLists again: the pod is there.
    c.api.answer_lists_with(None);
    let doc = c.podnet(&["-o", "json", "--interval", "200ms"]).json();
    item(&doc, "web-0");
}

#[test]
fn under_sudo_a_found_kubeconfigs_exec_plugin_is_refused() {
    if !require_privileges("under_sudo_a_found_kubeconfigs_exec_plugin_is_refused") {
        return;
    }
    use std::os::unix::fs::PermissionsExt;
    let mut c = Cluster::new("sudoexec");
    let pod = c.pod(
        "shop",
        "web-0",
        Layout::SystemdContainerd,
        Qos::Burstable,
        &["web"],
    );
    let dir = tempfile::tempdir().unwrap();
    let marker = dir.path().join("plugin-ran");
    // A credential plugin that leaves a mark, then hands out a token.
    let plugin = dir.path().join("plugin.sh");
    std::fs::write(
        &plugin,
        format!(
            "#!/bin/sh\ntouch {}\necho '{{\"apiVersion\":\"client.authentication.k8s.io/v1beta1\",\
             \"kind\":\"ExecCredential\",\"status\":{{\"token\":\"t0ken\"}}}}'\n",
            marker.display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&plugin, std::fs::Permissions::from_mode(0o755)).unwrap();
    let kc = dir.path().join("config");
    std::fs::write(
        &kc,
        format!(
            "apiVersion: v1\nkind: Config\ncurrent-context: c\nclusters:\n- name: c\n  cluster:\n    \
             server: {}\ncontexts:\n- name: c\n  context:\n    cluster: c\n    user: u\nusers:\n- \
             name: u\n  user:\n    exec:\n      apiVersion: client.authentication.k8s.io/v1beta1\n      \
             command: {}\n      interactiveMode: Never\n",
            c.api.url(),
            plugin.display()
        ),
    )
    .unwrap();
    // `sudo podnet stats` by uid 65534, whose KUBECONFIG names that file.
    let run = |explicit: bool| {
        let mut cmd = std::process::Command::new(common::podnet_bin());
        cmd.arg("stats");
        if explicit {
            cmd.arg("--kubeconfig").arg(&kc);
        }
        cmd.args(["--node", NODE, "--interval", "200ms", "-o", "json"])
            .env("KUBECONFIG", &kc)
            .env("SUDO_USER", "nobody")
            .env("SUDO_UID", "65534")
            .env("SUDO_GID", "65534")
            .env_remove("RUST_LOG")
            .stdin(std::process::Stdio::null())
            .output()
            .unwrap()
    };
    let out = run(false);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
    for needle in [
        "refusing the `exec` credential plugin",
        "as root",
        "KUBECONFIG",
        &format!("--kubeconfig {}", kc.display()),
    ] {
        assert!(err.contains(needle), "{needle} not in: {err}");
    }
    assert!(!marker.exists(), "the plugin ran");
    assert_eq!(common::attached_programs(&pod.dir), 0);
    // Given explicitly, owned by root: the plugin runs and the token reaches the server.
    let out = run(true);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    let doc: Value = serde_json::from_slice(&out.stdout).unwrap();
    item(&doc, "web-0");
    assert!(marker.exists());
    assert!(c
        .api
        .requests()
        .iter()
        .any(|r| r.authorization.as_deref() == Some("Bearer t0ken")));
    // Given explicitly but owned by someone else: refused, and the plugin does not run.
    std::fs::remove_file(&marker).unwrap();
    std::os::unix::fs::chown(&kc, Some(12345), None).unwrap();
    let out = run(true);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("owned by uid 12345"), "{err}");
    assert!(!marker.exists(), "the plugin ran");
}
