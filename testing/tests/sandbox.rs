//! Privileged tests of the sandbox itself: cgroup layouts, workloads landing where they should,
//! exact datagram and segment counts against the kernel's SNMP counters, and nothing left behind.

use std::collections::HashMap;
use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use podnet_testing::sandbox::*;

fn delta(after: &HashMap<String, u64>, before: &HashMap<String, u64>, key: &str) -> u64 {
    let a = after
        .get(key)
        .unwrap_or_else(|| panic!("{key} missing from /proc/net/snmp"));
    a - before.get(key).copied().unwrap_or(0)
}

fn link_exists(netns: Option<&str>, dev: &str) -> bool {
    let mut cmd = Command::new("ip");
    if let Some(ns) = netns {
        cmd.args(["-n", ns]);
    }
    cmd.args(["link", "show", "dev", dev])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .expect("run ip")
        .success()
}

fn netns_listed(name: &str) -> bool {
    let out = Command::new("ip")
        .args(["netns", "list"])
        .output()
        .expect("run ip netns list");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .any(|l| l.split_whitespace().next() == Some(name))
}

/// The cgroup path of `pid` in the v2 hierarchy and, if present, the v1 memory hierarchy.
fn proc_cgroups(pid: u32) -> (String, Option<String>) {
    let text = fs::read_to_string(format!("/proc/{pid}/cgroup")).expect("read /proc/pid/cgroup");
    let mut v2 = None;
    let mut mem = None;
    for line in text.lines() {
        let mut f = line.splitn(3, ':');
        let (id, ctrls, path) = (f.next().unwrap(), f.next().unwrap(), f.next().unwrap());
        if id == "0" && ctrls.is_empty() {
            v2 = Some(path.to_string());
        }
        if ctrls.split(',').any(|c| c == "memory") {
            mem = Some(path.to_string());
        }
    }
    (v2.expect("no cgroup v2 line"), mem)
}

/// The path of a v1 memory cgroup directory relative to the hierarchy root, as /proc/pid/cgroup shows it.
fn memcg_rel(dir: &Path) -> String {
    let mount = memory_v1_mount().expect("v1 memory mount");
    format!("/{}", dir.strip_prefix(&mount).unwrap().display())
}

#[test]
fn every_layout_creates_the_kubelet_directory_names() {
    if !require_privileges("every_layout_creates_the_kubelet_directory_names") {
        return;
    }
    let tree = CgroupTree::new("layouts").unwrap();
    let root = tree.root().to_path_buf();
    assert_eq!(
        root,
        cgroup2_mount()
            .unwrap()
            .join(tree.rel_root().trim_start_matches('/'))
    );
    let kind_prefix = "system.slice/docker-0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef.scope";
    let mut pods = 0;
    for layout in Layout::all() {
        for qos in Qos::ALL {
            let uid = new_uid();
            let u_ = uid.replace('-', "_");
            let (c1, c2) = (new_container_id(), new_container_id());
            let pod = SandboxPod::create(
                &tree,
                layout.clone(),
                &uid,
                qos,
                &[("app", &c1), ("side", &c2)],
            )
            .unwrap();
            let level = qos.level();
            let (pod_rel, leaf1, leaf2) = match (&layout, level) {
                (Layout::SystemdContainerd | Layout::SystemdCrio | Layout::SystemdDocker, Some(l)) => (
                    format!("kubepods.slice/kubepods-{l}.slice/kubepods-{l}-pod{u_}.slice"),
                    String::new(),
                    String::new(),
                ),
                (Layout::SystemdContainerd | Layout::SystemdCrio | Layout::SystemdDocker, None) => {
                    (format!("kubepods.slice/kubepods-pod{u_}.slice"), String::new(), String::new())
                }
                (Layout::Cgroupfs, Some(l)) => (format!("kubepods/{l}/pod{uid}"), c1.clone(), c2.clone()),
                (Layout::Cgroupfs, None) => (format!("kubepods/pod{uid}"), c1.clone(), c2.clone()),
                (Layout::KindNested { .. }, Some(l)) => (
                    format!(
                        "{kind_prefix}/kubelet.slice/kubelet-kubepods.slice/kubelet-kubepods-{l}.slice/kubelet-kubepods-{l}-pod{u_}.slice"
                    ),
                    String::new(),
                    String::new(),
                ),
                (Layout::KindNested { .. }, None) => (
                    format!("{kind_prefix}/kubelet.slice/kubelet-kubepods.slice/kubelet-kubepods-pod{u_}.slice"),
                    String::new(),
                    String::new(),
                ),
            };
            let (leaf1, leaf2) = match &layout {
                Layout::SystemdContainerd | Layout::KindNested { .. } => (
                    format!("cri-containerd-{c1}.scope"),
                    format!("cri-containerd-{c2}.scope"),
                ),
                Layout::SystemdCrio => (format!("crio-{c1}.scope"), format!("crio-{c2}.scope")),
                Layout::SystemdDocker => {
                    (format!("docker-{c1}.scope"), format!("docker-{c2}.scope"))
                }
                Layout::Cgroupfs => (leaf1, leaf2),
            };
            assert_eq!(pod.dir, root.join(&pod_rel), "{layout:?} {qos:?}");
            assert!(pod.dir.is_dir());
            assert_eq!(pod.rel, format!("{}/{pod_rel}", tree.rel_root()));
            assert_eq!(pod.containers.len(), 2);
            assert_eq!(pod.containers[0].dir, root.join(&pod_rel).join(&leaf1));
            assert_eq!(pod.containers[1].dir, root.join(&pod_rel).join(&leaf2));
            assert_eq!(
                pod.containers[0].rel,
                format!("{}/{pod_rel}/{leaf1}", tree.rel_root())
            );
            for c in &pod.containers {
                assert!(c.dir.is_dir(), "{}", c.dir.display());
                assert_eq!(c.cgroup_id().unwrap(), fs::metadata(&c.dir).unwrap().ino());
            }
            // The pod directory holds exactly the container directories (and CRI-O's conmon siblings).
            let mut children: Vec<String> = fs::read_dir(&pod.dir)
                .unwrap()
                .flatten()
                .filter(|e| e.file_type().unwrap().is_dir())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect();
            children.sort();
            let mut expected = vec![leaf1.clone(), leaf2.clone()];
            if layout == Layout::SystemdCrio {
                expected.push(format!("crio-conmon-{c1}.scope"));
                expected.push(format!("crio-conmon-{c2}.scope"));
                assert_eq!(
                    pod.containers[0].conmon_dir.as_deref(),
                    Some(&*pod.dir.join(format!("crio-conmon-{c1}.scope")))
                );
            } else {
                assert_eq!(pod.containers[0].conmon_dir, None);
            }
            expected.sort();
            assert_eq!(children, expected, "{layout:?} {qos:?}");
            let scheme = match layout {
                Layout::SystemdCrio => "cri-o",
                Layout::SystemdDocker => "docker",
                _ => "containerd",
            };
            assert_eq!(pod.containers[1].container_id(), format!("{scheme}://{c2}"));
            if let Some(mem) = memory_v1_mount() {
                let memcg = pod.containers[0]
                    .memcg
                    .as_ref()
                    .expect("memcg twin on a hybrid host");
                assert!(memcg.starts_with(&mem));
                assert!(memcg.ends_with(Path::new(&pod_rel).join(&leaf1)));
                assert!(memcg.is_dir());
            }
            let json = pod.pod_json("ns1", "p1", "node1", &[("app", "web")]);
            assert_eq!(json["metadata"]["uid"], uid.as_str());
            assert_eq!(json["status"]["qosClass"], qos.as_str());
            assert_eq!(
                json["status"]["containerStatuses"][0]["containerID"],
                format!("{scheme}://{c1}")
            );
            pods += 1;
        }
    }
    assert_eq!(pods, 15);
    let memcg_root = tree.memcg_root().map(Path::to_path_buf);
    drop(tree);
    assert!(!root.exists(), "{} left behind", root.display());
    if let Some(m) = memcg_root {
        assert!(!m.exists(), "{} left behind", m.display());
    }
}

#[test]
fn workload_lands_in_its_cgroups_and_netns() {
    if !require_privileges("workload_lands_in_its_cgroups_and_netns") {
        return;
    }
    let tree = CgroupTree::new("landing").unwrap();
    let pod = SandboxPod::create(
        &tree,
        Layout::SystemdContainerd,
        &new_uid(),
        Qos::Burstable,
        &[("app", &new_container_id())],
    )
    .unwrap();
    let ns = NetNs::new("landing").unwrap();
    let c = &pod.containers[0];
    let mut w = Workload::spawn_in(&["idle"], Some(&ns), c).unwrap();
    w.wait_ready().unwrap();
    let pid = w.pid();
    let (v2, mem) = proc_cgroups(pid);
    assert_eq!(v2, c.rel);
    assert_eq!(
        tree.procs(&format!("{}/cri-containerd-{}.scope", pod.tree_rel, c.id))
            .unwrap(),
        vec![pid]
    );
    if let Some(memcg) = &c.memcg {
        assert_eq!(mem.as_deref(), Some(memcg_rel(memcg).as_str()));
        let tasks = fs::read_to_string(memcg.join("cgroup.procs")).unwrap();
        assert_eq!(tasks.trim(), pid.to_string());
    }
    let ns_ino = fs::metadata(ns.path()).unwrap().ino();
    let link = fs::read_link(format!("/proc/{pid}/ns/net")).unwrap();
    assert_eq!(link, PathBuf::from(format!("net:[{ns_ino}]")));
    assert_eq!(ns.pids(), vec![pid]);
    w.go().unwrap();
    assert_eq!(w.result().unwrap(), serde_json::json!({"job": "idle"}));
    w.release().unwrap();
    assert!(ns.pids().is_empty());
    assert!(tree.procs(&pod.tree_rel).unwrap().is_empty());

    // A container restart: a new container directory appears under the same pod directory.
    let mut pod = pod;
    let restarted = new_container_id();
    let c2 = pod.add_container(&tree, "app", &restarted).unwrap().clone();
    assert_eq!(
        c2.dir,
        pod.dir.join(format!("cri-containerd-{restarted}.scope"))
    );
    let mut w = Workload::spawn_in(&["idle"], None, &c2).unwrap();
    w.wait_ready().unwrap();
    assert_eq!(proc_cgroups(w.pid()).0, c2.rel);
    // Deleting the pod kills what runs in it and removes its directories, in both hierarchies.
    tree.remove(&pod.tree_rel).unwrap();
    assert!(!w.wait_exit().unwrap().success());
    assert!(!pod.dir.exists());
    assert!(pod.dir.parent().unwrap().is_dir());
    if let Some(memcg) = &pod.memcg {
        assert!(!memcg.exists());
    }
}

#[test]
fn udp_between_two_netns_delivers_exactly_n_datagrams() {
    if !require_privileges("udp_between_two_netns_delivers_exactly_n_datagrams") {
        return;
    }
    const N: u64 = 300;
    const SIZE: u64 = 512;
    let tree = CgroupTree::new("udp").unwrap();
    let pod = SandboxPod::create(
        &tree,
        Layout::Cgroupfs,
        &new_uid(),
        Qos::BestEffort,
        &[("tx", &new_container_id())],
    )
    .unwrap();
    let peer = SandboxPod::create(
        &tree,
        Layout::SystemdCrio,
        &new_uid(),
        Qos::Guaranteed,
        &[("rx", &new_container_id())],
    )
    .unwrap();
    let (a, b) = (NetNs::new("udp-a").unwrap(), NetNs::new("udp-b").unwrap());
    let veth = Veth::between(&a, &b).unwrap();
    let to = format!("{}:7000", veth.addr_b());
    let (n, size) = (N.to_string(), SIZE.to_string());
    let mut rx = Workload::spawn_in(
        &[
            "udp-recv",
            "--bind",
            &to,
            "--count",
            &n,
            "--timeout-ms",
            "15000",
        ],
        Some(&b),
        &peer.containers[0],
    )
    .unwrap();
    let mut tx = Workload::spawn_in(
        &[
            "udp-send",
            "--to",
            &to,
            "--count",
            &n,
            "--size",
            &size,
            "--interval-us",
            "200",
        ],
        Some(&a),
        &pod.containers[0],
    )
    .unwrap();
    rx.wait_ready().unwrap();
    tx.wait_ready().unwrap();
    let (a0, b0) = (netns_snmp(&a), netns_snmp(&b));
    rx.go().unwrap();
    tx.go().unwrap();
    let sent = tx.result().unwrap();
    let got = rx.result().unwrap();
    assert_eq!(sent["sent"], N);
    assert_eq!(sent["errors"], 0);
    assert_eq!(sent["bytes"], N * SIZE);
    assert_eq!(got["received"], N);
    assert_eq!(got["bytes"], N * SIZE);
    assert_eq!(got["timedOut"], false);
    tx.wait_exit().unwrap();
    rx.wait_exit().unwrap();
    let (a1, b1) = (netns_snmp(&a), netns_snmp(&b));
    assert_eq!(delta(&a1, &a0, "UdpOutDatagrams"), N);
    assert_eq!(delta(&b1, &b0, "UdpInDatagrams"), N);
    assert_eq!(delta(&b1, &b0, "UdpRcvbufErrors"), 0);
    // Nothing else crossed the veth at the IP level: no ARP-triggered or IPv6 side traffic either.
    assert_eq!(delta(&a1, &a0, "IpOutRequests"), N);
    assert_eq!(delta(&b1, &b0, "IpInDelivers"), N);
    assert_eq!(delta(&a1, &a0, "UdpInDatagrams"), 0);
}

#[test]
fn tcp_exchange_matches_the_kernel_segment_counters() {
    if !require_privileges("tcp_exchange_matches_the_kernel_segment_counters") {
        return;
    }
    let tree = CgroupTree::new("tcp").unwrap();
    let pod = SandboxPod::create(
        &tree,
        Layout::SystemdDocker,
        &new_uid(),
        Qos::Burstable,
        &[("c", &new_container_id()), ("s", &new_container_id())],
    )
    .unwrap();
    let (a, b) = (NetNs::new("tcp-a").unwrap(), NetNs::new("tcp-b").unwrap());
    let veth = Veth::between(&a, &b).unwrap();
    let to = format!("{}:8080", veth.addr_b());
    let mut server = Workload::spawn_in(
        &[
            "tcp-server",
            "--bind",
            &to,
            "--reply",
            "70000",
            "--expect",
            "100000",
        ],
        Some(&b),
        pod.container("s").unwrap(),
    )
    .unwrap();
    let mut client = Workload::spawn_in(
        &[
            "tcp-client",
            "--to",
            &to,
            "--bytes",
            "100000",
            "--expect",
            "70000",
        ],
        Some(&a),
        pod.container("c").unwrap(),
    )
    .unwrap();
    server.wait_ready().unwrap();
    client.wait_ready().unwrap();
    let (a0, b0) = (netns_snmp(&a), netns_snmp(&b));
    server.go().unwrap();
    client.go().unwrap();
    let s = server.result().unwrap();
    let c = client.result().unwrap();
    assert_eq!(
        (s["received"].as_u64(), s["sent"].as_u64()),
        (Some(100_000), Some(70_000))
    );
    assert_eq!(
        (c["sent"].as_u64(), c["received"].as_u64()),
        (Some(100_000), Some(70_000))
    );
    assert_eq!(s["peer"], c["local"]);
    client.release().unwrap();
    server.release().unwrap();
    // Every segment one side put on the wire, the other side received: a veth loses nothing.
    // TcpOutSegs leaves out retransmissions (RFC 1213), which a loaded machine can cause through
    // early loss probes; the receiver's TcpInSegs counts them, so they are added back. Wait
    // (bounded) for the closing handshake to finish.
    let wire = |out: &HashMap<String, u64>, out0: &HashMap<String, u64>| {
        delta(out, out0, "TcpOutSegs") + delta(out, out0, "TcpRetransSegs")
    };
    let deadline = Instant::now() + Duration::from_secs(5);
    let (a1, b1) = loop {
        let (a1, b1) = (netns_snmp(&a), netns_snmp(&b));
        let settled = wire(&a1, &a0) == delta(&b1, &b0, "TcpInSegs")
            && wire(&b1, &b0) == delta(&a1, &a0, "TcpInSegs")
            && a1["TcpCurrEstab"] == 0
            && b1["TcpCurrEstab"] == 0;
        if settled || Instant::now() > deadline {
            break (a1, b1);
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let show = |m: &HashMap<String, u64>, m0: &HashMap<String, u64>| {
        let mut v: Vec<String> = m
            .keys()
            .filter(|k| k.starts_with("Tcp"))
            .map(|k| {
                format!(
                    "{k}={}",
                    m[k] as i64 - m0.get(k).copied().unwrap_or(0) as i64
                )
            })
            .collect();
        v.sort();
        v.join(" ")
    };
    let why = format!("client: {}\nserver: {}", show(&a1, &a0), show(&b1, &b0));
    assert_eq!(wire(&a1, &a0), delta(&b1, &b0, "TcpInSegs"), "{why}");
    assert_eq!(wire(&b1, &b0), delta(&a1, &a0, "TcpInSegs"), "{why}");
    assert_eq!(delta(&a1, &a0, "TcpActiveOpens"), 1);
    assert_eq!(delta(&b1, &b0, "TcpPassiveOpens"), 1);
    assert_eq!(a1["TcpCurrEstab"], 0);
    assert_eq!(b1["TcpCurrEstab"], 0);
}

#[test]
fn host_network_end_reaches_the_namespace() {
    if !require_privileges("host_network_end_reaches_the_namespace") {
        return;
    }
    let tree = CgroupTree::new("hostnet").unwrap();
    let pod = SandboxPod::create(
        &tree,
        Layout::KindNested {
            prefix: "kind-node".into(),
        },
        &new_uid(),
        Qos::Burstable,
        &[("h", &new_container_id())],
    )
    .unwrap();
    let ns = NetNs::new("hostnet").unwrap();
    let veth = Veth::to_host(&ns).unwrap();
    assert_eq!(veth.netns_b(), None);
    assert!(link_exists(None, veth.name_b()));
    assert!(link_exists(Some(ns.name()), veth.name_a()));
    // A hostNetwork pod: its workload stays in the root namespace, but in the pod's cgroup.
    let bind = format!("{}:7100", veth.addr_b());
    let mut rx = Workload::spawn_in(
        &[
            "udp-recv",
            "--bind",
            &bind,
            "--count",
            "25",
            "--timeout-ms",
            "10000",
        ],
        None,
        &pod.containers[0],
    )
    .unwrap();
    let mut tx = Workload::spawn(
        &["udp-send", "--to", &bind, "--count", "25", "--size", "64"],
        Some(&ns),
        None,
        None,
    )
    .unwrap();
    rx.wait_ready().unwrap();
    tx.wait_ready().unwrap();
    let a0 = netns_snmp(&ns);
    rx.go().unwrap();
    tx.go().unwrap();
    assert_eq!(tx.result().unwrap()["sent"], 25);
    assert_eq!(rx.result().unwrap()["received"], 25);
    tx.wait_exit().unwrap();
    assert_eq!(delta(&netns_snmp(&ns), &a0, "UdpOutDatagrams"), 25);
    assert_eq!(proc_cgroups(rx.pid()).0, pod.containers[0].rel);
}

#[test]
fn drop_leaves_no_cgroup_netns_or_veth_behind() {
    if !require_privileges("drop_leaves_no_cgroup_netns_or_veth_behind") {
        return;
    }
    let tree = CgroupTree::new("leftovers").unwrap();
    let pod = SandboxPod::create(
        &tree,
        Layout::SystemdCrio,
        &new_uid(),
        Qos::Burstable,
        &[("app", &new_container_id())],
    )
    .unwrap();
    let (a, b) = (NetNs::new("left-a").unwrap(), NetNs::new("left-b").unwrap());
    let pair = Veth::between(&a, &b).unwrap();
    let host = Veth::to_host(&a).unwrap();
    // A holding workload still running inside the pod and the namespace when everything is dropped.
    let mut w =
        Workload::spawn_in(&["hold-memory", "--mib", "4"], Some(&a), &pod.containers[0]).unwrap();
    w.go().unwrap();
    assert_eq!(w.result().unwrap()["bytes"], 4u64 << 20);
    let pid = w.pid();
    let (root, memcg_root) = (
        tree.root().to_path_buf(),
        tree.memcg_root().map(Path::to_path_buf),
    );
    let (na, nb) = (a.name().to_string(), b.name().to_string());
    let host_dev = host.name_b().to_string();
    let pair_dev = pair.name_a().to_string();
    assert!(netns_listed(&na) && netns_listed(&nb) && link_exists(None, &host_dev));
    assert!(link_exists(Some(&na), &pair_dev));
    // The tree goes first: it must kill the workload itself.
    drop(tree);
    assert!(!root.exists(), "{} left behind", root.display());
    if let Some(m) = &memcg_root {
        assert!(!m.exists(), "{} left behind", m.display());
    }
    let status = w.wait_exit().unwrap();
    assert!(
        !status.success(),
        "the workload should have been killed, got {status}"
    );
    drop(w);
    assert!(!Path::new(&format!("/proc/{pid}")).exists());
    drop(host);
    drop(pair);
    assert!(!link_exists(None, &host_dev));
    assert!(!link_exists(Some(&na), &pair_dev));
    drop(a);
    drop(b);
    assert!(!netns_listed(&na) && !netns_listed(&nb));
    assert!(!Path::new("/run/netns").join(&na).exists());
}

#[test]
fn dropping_a_namespace_first_takes_its_veths_and_processes_along() {
    if !require_privileges("dropping_a_namespace_first_takes_its_veths_and_processes_along") {
        return;
    }
    let a = NetNs::new("early").unwrap();
    let host = Veth::to_host(&a).unwrap();
    let dev = host.name_b().to_string();
    let mut w = Workload::spawn(&["idle"], Some(&a), None, None).unwrap();
    w.wait_ready().unwrap();
    let name = a.name().to_string();
    drop(a);
    assert!(!netns_listed(&name));
    assert!(!w.wait_exit().unwrap().success());
    drop(host);
    assert!(!link_exists(None, &dev));
}

#[test]
fn memory_is_charged_to_the_container() {
    if !require_privileges("memory_is_charged_to_the_container") {
        return;
    }
    let tree = CgroupTree::new("memory").unwrap();
    let pod = SandboxPod::create(
        &tree,
        Layout::SystemdContainerd,
        &new_uid(),
        Qos::Guaranteed,
        &[("m", &new_container_id())],
    )
    .unwrap();
    let c = &pod.containers[0];
    let usage_file = match (&c.memcg, c.dir.join("memory.current")) {
        (Some(memcg), _) => memcg.join("memory.usage_in_bytes"),
        (None, current) if current.exists() => current,
        _ => {
            podnet_testing::sandbox::skip(
                "memory_is_charged_to_the_container",
                "no memory controller for sandbox cgroups on this host (enable it with \
                 `echo +memory > <cgroup2 mount>/cgroup.subtree_control`)",
            );
            return;
        }
    };
    let read = || {
        fs::read_to_string(&usage_file)
            .unwrap()
            .trim()
            .parse::<u64>()
            .unwrap()
    };
    let mut w = Workload::spawn_in(&["hold-memory", "--mib", "32"], None, c).unwrap();
    w.wait_ready().unwrap();
    let before = read();
    w.go().unwrap();
    assert_eq!(w.result().unwrap()["bytes"], 32u64 << 20);
    let after = read();
    let grown = after - before;
    // The 32 MiB touched after joining are charged here. The charge counter is batched per CPU
    // (64 pages at a time), so allow that much either way, plus a little bookkeeping above.
    assert!(
        ((32 << 20) - (1 << 20)..(32 << 20) + (4 << 20)).contains(&grown),
        "grew by {grown} bytes"
    );
    w.release().unwrap();
}

/// Runs `job` under strace (attached after ready, before go) and returns the traced syscall lines.
fn strace_job(
    args: &[&str],
    syscalls: &str,
    test: &str,
) -> Option<(serde_json::Value, Vec<String>)> {
    if Command::new("strace")
        .arg("-V")
        .stdout(Stdio::null())
        .status()
        .is_err()
    {
        assert!(
            std::env::var_os("CI").is_none(),
            "{test}: strace is needed in CI"
        );
        eprintln!("SKIP {test}: strace is not installed");
        return None;
    }
    let tree = CgroupTree::new("strace").unwrap();
    let pod = SandboxPod::create(
        &tree,
        Layout::SystemdContainerd,
        &new_uid(),
        Qos::Burstable,
        &[("s", &new_container_id())],
    )
    .unwrap();
    // Inside a namespace of its own, so any traffic stays there.
    let ns = NetNs::new("strace").unwrap();
    let mut w = Workload::spawn_in(args, Some(&ns), &pod.containers[0]).unwrap();
    w.wait_ready().unwrap();
    let out =
        std::env::temp_dir().join(format!("podnet-strace-{}-{}", std::process::id(), w.pid()));
    let mut strace = Command::new("strace")
        .args(["-f", "-qq", "-e", &format!("trace={syscalls}"), "-o"])
        .arg(&out)
        .args(["-p", &w.pid().to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let status = fs::read_to_string(format!("/proc/{}/status", w.pid())).unwrap();
        let tracer = status
            .lines()
            .find_map(|l| l.strip_prefix("TracerPid:"))
            .unwrap()
            .trim()
            .to_string();
        if tracer != "0" {
            break;
        }
        assert!(Instant::now() < deadline, "strace did not attach");
        std::thread::sleep(Duration::from_millis(10));
    }
    w.go().unwrap();
    let result = w.result().unwrap();
    w.release().unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while strace.try_wait().unwrap().is_none() {
        assert!(Instant::now() < deadline, "strace did not finish");
        std::thread::sleep(Duration::from_millis(10));
    }
    let text = fs::read_to_string(&out).unwrap();
    let _ = fs::remove_file(&out);
    let lines = text
        .lines()
        .filter(|l| !l.contains("+++ exited") && !l.contains("--- SIG") && !l.contains("resumed>"))
        .map(String::from)
        .collect();
    Some((result, lines))
}

#[test]
fn open_job_makes_exactly_the_openat_calls_asked() {
    let test = "open_job_makes_exactly_the_openat_calls_asked";
    if !require_privileges(test) {
        return;
    }
    let path = "/proc/self/status";
    let Some((result, lines)) = strace_job(
        &[
            "open",
            "--path",
            path,
            "--count",
            "17",
            "--missing",
            "5",
            "--missing-path",
            "/proc/self/podnet-missing",
        ],
        "open,openat,openat2,creat",
        test,
    ) else {
        return;
    };
    assert_eq!(result["opened"], 17);
    assert_eq!(result["failed"], 5);
    assert_eq!(result["openErrors"], 0);
    let ok = lines
        .iter()
        .filter(|l| l.contains(&format!("\"{path}\"")) && !l.contains("= -1"))
        .count();
    let failed = lines
        .iter()
        .filter(|l| l.contains("podnet-missing") && l.contains("= -1 ENOENT"))
        .count();
    assert_eq!((ok, failed, lines.len()), (17, 5, 22), "{lines:#?}");
}

#[test]
fn socket_jobs_create_exactly_the_sockets_asked() {
    let test = "socket_jobs_create_exactly_the_sockets_asked";
    if !require_privileges(test) {
        return;
    }
    let Some((result, lines)) =
        strace_job(&["sockets", "--count", "9"], "socket,openat,open", test)
    else {
        return;
    };
    assert_eq!(result["created"], 9);
    assert_eq!(
        lines
            .iter()
            .filter(|l| l.starts_with("socket(") || l.contains(" socket("))
            .count(),
        9
    );
    assert_eq!(lines.len(), 9, "{lines:#?}");
    // udp-send: one socket, exactly N datagrams, no file opened.
    let Some((result, lines)) = strace_job(
        &[
            "udp-send",
            "--to",
            "127.0.0.1:9",
            "--count",
            "12",
            "--size",
            "33",
        ],
        "socket,sendto,sendmsg,openat,open",
        test,
    ) else {
        return;
    };
    assert_eq!(result["sent"], 12);
    let sockets = lines.iter().filter(|l| l.contains("socket(")).count();
    let sends = lines
        .iter()
        .filter(|l| l.contains("sendto(") && l.ends_with("= 33"))
        .count();
    assert_eq!((sockets, sends, lines.len()), (1, 12, 13), "{lines:#?}");
}

#[test]
fn workload_failures_are_reported_with_the_reason() {
    // Needs no privileges: the workload fails before touching any namespace or cgroup.
    let mut w = Workload::spawn(
        &["open", "--path", "/nonexistent/podnet-x", "--count", "1"],
        None,
        None,
        None,
    )
    .unwrap();
    let err = w.wait_ready().unwrap_err().to_string();
    assert!(
        err.contains("/nonexistent/podnet-x does not exist"),
        "{err}"
    );
    let mut w = Workload::spawn(&["dance"], None, None, None).unwrap();
    let err = w.wait_ready().unwrap_err().to_string();
    assert!(err.contains("unknown job \"dance\""), "{err}");
    assert!(!w.wait_exit().unwrap().success());
}

#[test]
fn leftovers_of_dead_test_processes_are_removed() {
    if !require_privileges("leftovers_of_dead_test_processes_are_removed") {
        return;
    }
    // A pid that surely belongs to no live process any more.
    let mut child = Command::new("true").spawn().unwrap();
    let dead = child.id();
    child.wait().unwrap();
    let probe = CgroupTree::new("probe").unwrap();
    let name = format!("podnet-test-stale-{dead}-0");
    let v2 = probe.mount().join(&name);
    fs::create_dir_all(v2.join("kubepods/pod1")).unwrap();
    let v1 = probe.memcg_root().map(|r| r.parent().unwrap().join(&name));
    if let Some(v1) = &v1 {
        fs::create_dir_all(v1.join("kubepods/pod1")).unwrap();
    }
    let ns = format!("podnet-stale-{dead}-0");
    assert!(Command::new("ip")
        .args(["netns", "add", &ns])
        .status()
        .unwrap()
        .success());
    // Not stale: the owner (this process) is alive.
    let live = NetNs::new("alive").unwrap();
    remove_stale().unwrap();
    assert!(!v2.exists(), "{} left behind", v2.display());
    if let Some(v1) = &v1 {
        assert!(!v1.exists(), "{} left behind", v1.display());
    }
    assert!(!netns_listed(&ns));
    assert!(netns_listed(live.name()));
    assert!(probe.root().is_dir());
}

#[test]
fn demo_job_runs_its_mixed_load_for_the_given_time() {
    if !require_privileges("demo_job_runs_its_mixed_load_for_the_given_time") {
        return;
    }
    let tree = CgroupTree::new("demo").unwrap();
    let pod = SandboxPod::create(
        &tree,
        Layout::SystemdContainerd,
        &new_uid(),
        Qos::Burstable,
        &[("a", &new_container_id()), ("b", &new_container_id())],
    )
    .unwrap();
    let (a, b) = (NetNs::new("demo-a").unwrap(), NetNs::new("demo-b").unwrap());
    let veth = Veth::between(&a, &b).unwrap();
    let peer = format!("{}:7300", veth.addr_b());
    // The receiver runs longer than the sender, so it sees every datagram.
    let mut rx = Workload::spawn_in(
        &[
            "demo",
            "--seconds",
            "2",
            "--bind",
            &peer,
            "--sockets-per-sec",
            "0",
            "--opens-per-sec",
            "0",
            "--mib",
            "1",
        ],
        Some(&b),
        pod.container("b").unwrap(),
    )
    .unwrap();
    let mut tx = Workload::spawn_in(
        &[
            "demo",
            "--seconds",
            "1",
            "--to",
            &peer,
            "--rate",
            "150",
            "--size",
            "300",
            "--sockets-per-sec",
            "10",
            "--opens-per-sec",
            "30",
            "--mib",
            "2",
        ],
        Some(&a),
        pod.container("a").unwrap(),
    )
    .unwrap();
    rx.wait_ready().unwrap();
    tx.wait_ready().unwrap();
    let b0 = netns_snmp(&b);
    let started = Instant::now();
    rx.go().unwrap();
    tx.go().unwrap();
    let t = tx.result().unwrap();
    assert!(started.elapsed() >= Duration::from_secs(1));
    let r = rx.result().unwrap();
    assert!(started.elapsed() >= Duration::from_secs(2));
    assert_eq!(t["udpSent"], 150);
    assert_eq!(t["socketsCreated"], 10);
    assert_eq!(t["opens"], 30);
    assert_eq!(t["bytesHeld"], 2u64 << 20);
    assert_eq!(r["udpReceived"], 150);
    assert_eq!(r["udpSent"], 0);
    assert_eq!(delta(&netns_snmp(&b), &b0, "UdpInDatagrams"), 150);
    tx.wait_exit().unwrap();
    rx.wait_exit().unwrap();
}
