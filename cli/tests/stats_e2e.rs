//! End-to-end tests of `podnet stats` on the real kernel: sandbox pods in kubelet's cgroup layouts,
//! network namespaces joined by veth pairs, workloads moved into container cgroups, a stub API
//! server listing the pods, and the real binary. Ground truth is what the workloads did, so the
//! assertions are equalities.

mod common;

use std::time::Duration;

use common::{item, n, wait_detached, Cluster, NODE};
use nix::sys::signal::Signal;
use podnet_testing::sandbox::{
    new_container_id, new_uid, require_privileges, Layout, NetNs, Qos, SandboxPod, Veth, Workload,
};
use serde_json::{json, Value};

/// One-shot interval long enough for a workload started after attach to finish inside it.
const WINDOW: &str = "4s";

fn run(w: &mut Workload) -> Value {
    w.go().unwrap();
    w.result().unwrap()
}

fn spawn(args: &[String], ns: Option<&NetNs>, pod: &SandboxPod, container: usize) -> Workload {
    let mut w = Workload::spawn_in(args, ns, &pod.containers[container]).unwrap();
    w.wait_ready().unwrap();
    w
}

/// Packets (skbs) and bytes a device in a namespace has transmitted, as `ip -s link` counts
/// them: bytes include each frame's 14-byte Ethernet header.
fn tx_dev(ns: &NetNs, dev: &str) -> (u64, u64) {
    let out = std::process::Command::new("ip")
        .args(["-n", ns.name(), "-j", "-s", "link", "show", "dev", dev])
        .output()
        .unwrap();
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    let tx = &v[0]["stats64"]["tx"];
    (
        tx["packets"].as_u64().unwrap(),
        tx["bytes"].as_u64().unwrap(),
    )
}

fn args(s: &str) -> Vec<String> {
    s.split_whitespace().map(String::from).collect()
}

#[test]
fn udp_both_directions_exact() {
    if !require_privileges("udp_both_directions_exact") {
        return;
    }
    let mut c = Cluster::new("udp");
    let a = c.pod(
        "shop",
        "client",
        Layout::SystemdContainerd,
        Qos::Burstable,
        &["app"],
    );
    let b = c.pod(
        "shop",
        "server",
        Layout::Cgroupfs,
        Qos::Guaranteed,
        &["app"],
    );
    let (na, nb) = (NetNs::new("udp-a").unwrap(), NetNs::new("udp-b").unwrap());
    let veth = Veth::between(&na, &nb).unwrap();
    let (ip_a, ip_b) = (veth.addr_a(), veth.addr_b());

    let mut p = c.podnet(&["-o", "json", "--interval", WINDOW]);
    p.wait_attached(&[&a.dir, &b.dir]);

    let (n_ab, s_ab, n_ba, s_ba) = (37u64, 1000u64, 11u64, 333u64);
    let mut recv_b = spawn(
        &args(&format!(
            "udp-recv --bind {ip_b}:9000 --count {n_ab} --timeout-ms 5000"
        )),
        Some(&nb),
        &b,
        0,
    );
    let mut recv_a = spawn(
        &args(&format!(
            "udp-recv --bind {ip_a}:9001 --count {n_ba} --timeout-ms 5000"
        )),
        Some(&na),
        &a,
        0,
    );
    let mut send_a = spawn(
        &args(&format!(
            "udp-send --to {ip_b}:9000 --count {n_ab} --size {s_ab}"
        )),
        Some(&na),
        &a,
        0,
    );
    let mut send_b = spawn(
        &args(&format!(
            "udp-send --to {ip_a}:9001 --count {n_ba} --size {s_ba}"
        )),
        Some(&nb),
        &b,
        0,
    );
    recv_b.go().unwrap();
    recv_a.go().unwrap();
    assert_eq!(run(&mut send_a)["sent"], n_ab);
    assert_eq!(run(&mut send_b)["sent"], n_ba);
    assert_eq!(recv_b.result().unwrap()["received"], n_ab);
    assert_eq!(recv_a.result().unwrap()["received"], n_ba);
    for w in [&mut recv_a, &mut recv_b, &mut send_a, &mut send_b] {
        w.wait_exit().unwrap();
    }

    let doc = p.json();
    let (ia, ib) = (item(&doc, "client"), item(&doc, "server"));
    // A UDP/IPv4 datagram of S payload bytes is one packet of S + 28 bytes (IP + UDP headers).
    assert_eq!(n(ia, "/network/txPackets"), n_ab);
    assert_eq!(n(ia, "/network/txBytes"), n_ab * (s_ab + 28));
    assert_eq!(n(ia, "/network/rxPackets"), n_ba);
    assert_eq!(n(ia, "/network/rxBytes"), n_ba * (s_ba + 28));
    assert_eq!(n(ib, "/network/rxPackets"), n_ab);
    assert_eq!(n(ib, "/network/rxBytes"), n_ab * (s_ab + 28));
    assert_eq!(n(ib, "/network/txPackets"), n_ba);
    assert_eq!(n(ib, "/network/txBytes"), n_ba * (s_ba + 28));
    // The same numbers at container level: the container is where the sockets live.
    assert_eq!(
        n(&ia["containers"][0], "/network/txBytes"),
        n_ab * (s_ab + 28)
    );
    assert_eq!(
        n(&ib["containers"][0], "/network/rxBytes"),
        n_ab * (s_ab + 28)
    );
    // Each pod made two UDP sockets (one to send, one to receive) and closed both on exit.
    for i in [ia, ib] {
        assert_eq!(n(i, "/sockets/created"), 2, "{i:#}");
        assert_eq!(n(i, "/sockets/closed"), 2, "{i:#}");
        assert_eq!(n(i, "/sockets/open"), 0, "{i:#}");
    }
    let rate = ia["network"]["txBytesPerSec"].as_f64().unwrap();
    let secs = doc["intervalSeconds"].as_f64().unwrap();
    assert!(
        (rate * secs - (n_ab * (s_ab + 28)) as f64).abs() < 1.0,
        "rate {rate} over {secs}s"
    );
}

#[test]
fn tcp_tx_equals_peer_rx_and_segments_match_the_kernel() {
    if !require_privileges("tcp_tx_equals_peer_rx_and_segments_match_the_kernel") {
        return;
    }
    tcp_exchange_is_counted_exactly(&[]);
}

/// The same exchange with the socket-owner variant that kernels before 6.4 load (sock_create
/// records owners by socket cookie), so the host's suite runs that code too.
#[test]
fn tcp_counts_with_socket_cookie_owners() {
    if !require_privileges("tcp_counts_with_socket_cookie_owners") {
        return;
    }
    tcp_exchange_is_counted_exactly(&[("PODNET_SOCKET_OWNER", "cookie")]);
}

fn tcp_exchange_is_counted_exactly(env: &[(&str, &str)]) {
    let mut c = Cluster::new("tcp");
    let a = c.pod(
        "shop",
        "tcp-client",
        Layout::SystemdCrio,
        Qos::BestEffort,
        &["app"],
    );
    let b = c.pod(
        "shop",
        "tcp-server",
        Layout::SystemdDocker,
        Qos::Burstable,
        &["app"],
    );
    let (na, nb) = (NetNs::new("tcp-a").unwrap(), NetNs::new("tcp-b").unwrap());
    let veth = Veth::between(&na, &nb).unwrap();
    // Let the stack build GSO skbs of many segments: podnet must count wire segments, not skbs.
    veth.set_gso_max_segs(65535).unwrap();
    let ip_b = veth.addr_b();
    let (snmp_a0, snmp_b0) = (na.snmp().unwrap(), nb.snmp().unwrap());
    let dev_a0 = tx_dev(&na, veth.name_a());

    let mut p = c.podnet_with_env(&["-o", "json", "--interval", WINDOW], env);
    p.wait_attached(&[&a.dir, &b.dir]);

    // Large enough for TSO/GSO skbs of many segments.
    let (up, down) = (3_000_000u64, 200_000u64);
    let mut server = spawn(
        &args(&format!(
            "tcp-server --bind {ip_b}:9100 --reply {down} --expect {up}"
        )),
        Some(&nb),
        &b,
        0,
    );
    server.go().unwrap();
    let mut client = spawn(
        &args(&format!(
            "tcp-client --to {ip_b}:9100 --bytes {up} --expect {down}"
        )),
        Some(&na),
        &a,
        0,
    );
    let r = run(&mut client);
    assert_eq!(r["received"], down);
    assert_eq!(server.result().unwrap()["received"], up);

    // The connection stays open (held by both workloads) until podnet has reported.
    let doc = p.json();
    let (snmp_a1, snmp_b1) = (na.snmp().unwrap(), nb.snmp().unwrap());
    let dev_a1 = tx_dev(&na, veth.name_a());
    client.release().unwrap();
    server.release().unwrap();

    let (ia, ib) = (item(&doc, "tcp-client"), item(&doc, "tcp-server"));
    for dir in ["Bytes", "Packets"] {
        assert_eq!(
            n(ia, &format!("/network/tx{dir}")),
            n(ib, &format!("/network/rx{dir}")),
            "client tx {dir} = server rx"
        );
        assert_eq!(
            n(ib, &format!("/network/tx{dir}")),
            n(ia, &format!("/network/rx{dir}")),
            "server tx {dir} = client rx"
        );
    }
    // Packets are wire segments, as the kernel's own TCP MIB counts what each side sent
    // (OutSegs leaves out retransmissions, which are on the wire too).
    type Mib = std::collections::HashMap<String, u64>;
    let sent = |m1: &Mib, m0: &Mib| {
        m1["TcpOutSegs"] - m0["TcpOutSegs"] + m1["TcpRetransSegs"] - m0["TcpRetransSegs"]
    };
    let (sent_a, sent_b) = (sent(&snmp_a1, &snmp_a0), sent(&snmp_b1, &snmp_b0));
    assert_eq!(n(ia, "/network/txPackets"), sent_a);
    assert_eq!(n(ib, "/network/txPackets"), sent_b);
    // ...and the device saw fewer skbs than segments: GSO was really in play.
    let (skbs, frame_bytes) = (dev_a1.0 - dev_a0.0, dev_a1.1 - dev_a0.1);
    assert!(skbs < sent_a, "no GSO: {skbs} skbs for {sent_a} segments");
    // Bytes are skb->len (IP header and payload as the socket layer sees it; a GSO skb carries
    // one header for all its segments): exactly what the device sent less Ethernet headers.
    assert_eq!(n(ia, "/network/txBytes"), frame_bytes - 14 * skbs);
    // Every byte of payload is in the count, plus at least one 40-byte header per skb.
    assert!(n(ia, "/network/txBytes") >= up + 40 * skbs);
    assert!(n(ib, "/network/txBytes") >= down);
    assert_eq!(n(ia, "/sockets/tcpActiveOpens"), 1);
    assert_eq!(n(ia, "/sockets/tcpPassiveOpens"), 0);
    assert_eq!(n(ib, "/sockets/tcpPassiveOpens"), 1);
    assert_eq!(n(ib, "/sockets/tcpActiveOpens"), 0);
    // ...and each to the container that owns the socket, not only to its pod.
    let (ca, cb) = (&ia["containers"][0], &ib["containers"][0]);
    assert_eq!(n(ca, "/sockets/tcpActiveOpens"), 1, "{ca:#}");
    assert_eq!(n(cb, "/sockets/tcpPassiveOpens"), 1, "{cb:#}");
    assert_eq!(n(cb, "/sockets/created"), 2, "{cb:#}");
    let retrans = |m1: &Mib, m0: &Mib| m1["TcpRetransSegs"] - m0["TcpRetransSegs"];
    assert_eq!(
        n(ia, "/sockets/tcpRetransmits"),
        retrans(&snmp_a1, &snmp_a0)
    );
    assert_eq!(
        n(ib, "/sockets/tcpRetransmits"),
        retrans(&snmp_b1, &snmp_b0)
    );
    // While podnet samples, each side holds its one connected socket (the server closed its
    // listener after accepting). The server created two sockets: its listener and the
    // connection it accepted (counted when established; it never passes through sock_create).
    assert_eq!(n(ia, "/sockets/open"), 1);
    assert_eq!(n(ib, "/sockets/open"), 1);
    assert_eq!(
        (n(ia, "/sockets/created"), n(ia, "/sockets/closed")),
        (1, 0)
    );
    assert_eq!(
        (n(ib, "/sockets/created"), n(ib, "/sockets/closed")),
        (2, 1)
    );
}

/// Retransmissions counted per pod equal the kernel's own `TcpRetransSegs` of each side, with real
/// loss: each namespace drops every 25th TCP segment it receives (after the handshake), so both
/// senders retransmit. What was dropped on input never reached the receiving pod's socket, so a
/// pod's rx is its peer's tx less exactly what the loss rule dropped.
#[test]
fn tcp_retransmissions_under_loss_match_the_kernel() {
    if !require_privileges("tcp_retransmissions_under_loss_match_the_kernel") {
        return;
    }
    const LOSS_EVERY: u32 = 25;
    // The exchange must settle (every loss repaired) inside the window, so podnet samples after
    // the last retransmission; 8 s leaves room for a slow emulated guest.
    const LOSSY_WINDOW: Duration = Duration::from_secs(8);
    let mut c = Cluster::new("loss");
    let a = c.pod(
        "shop",
        "lossy-client",
        Layout::SystemdContainerd,
        Qos::Burstable,
        &["app"],
    );
    let b = c.pod(
        "shop",
        "lossy-server",
        Layout::Cgroupfs,
        Qos::BestEffort,
        &["app"],
    );
    let (na, nb) = (NetNs::new("loss-a").unwrap(), NetNs::new("loss-b").unwrap());
    let veth = Veth::between(&na, &nb).unwrap();
    na.lose_tcp_segments(LOSS_EVERY).unwrap();
    nb.lose_tcp_segments(LOSS_EVERY).unwrap();
    let ip_b = veth.addr_b();
    let (snmp_a0, snmp_b0) = (na.snmp().unwrap(), nb.snmp().unwrap());

    let window = format!("{}s", LOSSY_WINDOW.as_secs());
    let mut p = c.podnet(&["-o", "json", "--interval", &window]);
    p.wait_attached(&[&a.dir, &b.dir]);
    let attached = std::time::Instant::now();

    let (up, down) = (600_000u64, 200_000u64);
    let mut server = spawn(
        &args(&format!(
            "tcp-server --bind {ip_b}:9200 --reply {down} --expect {up}"
        )),
        Some(&nb),
        &b,
        0,
    );
    server.go().unwrap();
    let mut client = spawn(
        &args(&format!(
            "tcp-client --to {ip_b}:9200 --bytes {up} --expect {down}"
        )),
        Some(&na),
        &a,
        0,
    );
    assert_eq!(run(&mut client)["received"], down);
    assert_eq!(server.result().unwrap()["received"], up);
    // Lost ACKs can still make a sender repeat its tail after both applications have their data.
    let deadline = attached + LOSSY_WINDOW - Duration::from_secs(1);
    while !(na.tcp_settled().unwrap() && nb.tcp_settled().unwrap()) {
        assert!(
            std::time::Instant::now() < deadline,
            "the lossy exchange did not settle a second before podnet's {window} window ended"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let doc = p.json();
    let (snmp_a1, snmp_b1) = (na.snmp().unwrap(), nb.snmp().unwrap());
    let (lost_in_a, lost_in_b) = (na.tcp_dropped().unwrap(), nb.tcp_dropped().unwrap());
    client.release().unwrap();
    server.release().unwrap();

    let (ia, ib) = (item(&doc, "lossy-client"), item(&doc, "lossy-server"));
    let delta = |m1: &std::collections::HashMap<String, u64>,
                 m0: &std::collections::HashMap<String, u64>,
                 k: &str| m1[k] - m0[k];
    let retrans_a = delta(&snmp_a1, &snmp_a0, "TcpRetransSegs");
    let retrans_b = delta(&snmp_b1, &snmp_b0, "TcpRetransSegs");
    eprintln!(
        "retransmitted: client {retrans_a}, server {retrans_b}; dropped (packets, bytes): \
         into client {lost_in_a:?}, into server {lost_in_b:?}"
    );
    assert_eq!(n(ia, "/sockets/tcpRetransmits"), retrans_a);
    assert_eq!(n(ib, "/sockets/tcpRetransmits"), retrans_b);
    assert_eq!(
        n(&ia["containers"][0], "/sockets/tcpRetransmits"),
        retrans_a
    );
    // The loss was real on both paths: the upload and the download each lost segments.
    assert!(retrans_a > 0, "the client retransmitted nothing");
    assert!(retrans_b > 0, "the server retransmitted nothing");
    assert!(
        lost_in_a.0 > 0 && lost_in_b.0 > 0,
        "{lost_in_a:?} {lost_in_b:?}"
    );
    // Segments on the wire, retransmissions included, as each side's kernel counts them.
    for (i, m1, m0) in [(ia, &snmp_a1, &snmp_a0), (ib, &snmp_b1, &snmp_b0)] {
        assert_eq!(
            n(i, "/network/txPackets"),
            delta(m1, m0, "TcpOutSegs") + delta(m1, m0, "TcpRetransSegs")
        );
    }
    // What each side received is what its peer sent less what its own loss rule dropped
    // (veth segments here are one per skb: `gso_max_segs` 1).
    assert_eq!(
        n(ib, "/network/rxPackets"),
        n(ia, "/network/txPackets") - lost_in_b.0
    );
    assert_eq!(
        n(ib, "/network/rxBytes"),
        n(ia, "/network/txBytes") - lost_in_b.1
    );
    assert_eq!(
        n(ia, "/network/rxPackets"),
        n(ib, "/network/txPackets") - lost_in_a.0
    );
    assert_eq!(
        n(ia, "/network/rxBytes"),
        n(ib, "/network/txBytes") - lost_in_a.1
    );
}

#[test]
fn host_network_pod_gets_its_own_traffic() {
    if !require_privileges("host_network_pod_gets_its_own_traffic") {
        return;
    }
    let mut c = Cluster::new("hostnet");
    let h = c.pod(
        "kube-system",
        "node-agent",
        Layout::SystemdContainerd,
        Qos::Burstable,
        &["agent"],
    );
    let peer = c.pod(
        "kube-system",
        "peer",
        Layout::SystemdContainerd,
        Qos::BestEffort,
        &["app"],
    );
    let np = NetNs::new("hostnet-peer").unwrap();
    let veth = Veth::to_host(&np).unwrap();
    let (ip_peer, ip_host) = (veth.addr_a(), veth.addr_b());

    let mut p = c.podnet(&["-o", "json", "--interval", WINDOW]);
    p.wait_attached(&[&h.dir, &peer.dir]);
    let (count, size) = (21u64, 512u64);
    let mut recv = spawn(
        &args(&format!(
            "udp-recv --bind {ip_peer}:9200 --count {count} --timeout-ms 5000"
        )),
        Some(&np),
        &peer,
        0,
    );
    recv.go().unwrap();
    // No --netns: the workload stays in the host's network namespace, like a hostNetwork pod.
    let mut send = spawn(
        &args(&format!(
            "udp-send --to {ip_peer}:9200 --count {count} --size {size}"
        )),
        None,
        &h,
        0,
    );
    assert_eq!(run(&mut send)["sent"], count);
    assert_eq!(recv.result().unwrap()["received"], count);
    let _ = ip_host;
    let doc = p.json();
    let ih = item(&doc, "node-agent");
    assert_eq!(n(ih, "/network/txPackets"), count);
    assert_eq!(n(ih, "/network/txBytes"), count * (size + 28));
    assert_eq!(n(ih, "/network/rxPackets"), 0);
    assert_eq!(
        n(item(&doc, "peer"), "/network/rxBytes"),
        count * (size + 28)
    );
}

/// Can this kernel place kprobes on the open path (what `--open-probe auto` looks for)?
fn kernel_has_open_kprobes() -> bool {
    // Cached: reading /proc/kallsyms is slow on emulated kernels, and other tests' windows run.
    static HAS: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *HAS.get_or_init(|| {
        std::path::Path::new("/sys/bus/event_source/devices/kprobe/type").exists()
            && podnet_loader::kernel_function_exists(podnet::attach::OPEN_FUNCTION).unwrap()
    })
}

/// Does this kernel load fexit programs on the open path (what `--open-probe auto` tries first)?
/// Asked the way podnet asks, by loading one: the kernel may have BTF and the function and still
/// refuse them (this development VM's does, with EPERM).
fn kernel_has_open_fexit() -> bool {
    static HAS: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *HAS.get_or_init(|| {
        podnet_loader::probe::tracing_loads(podnet::attach::OPEN_FUNCTION, true).is_ok()
    })
}

/// What `fileOpenProbe` says for `--open-probe probe` on this kernel.
fn expected_open_probe(probe: &str) -> &'static str {
    match probe {
        "fexit" => "fexit",
        "kprobe" => "kprobe",
        "tracepoint" => "tracepoint",
        _ if kernel_has_open_fexit() => "fexit",
        _ if kernel_has_open_kprobes() => "kprobe",
        _ => "tracepoint",
    }
}

/// Kprobes on the open function left in tracefs `kprobe_events` (podnet makes its kprobes through
/// perf_event_open, which never lists them there; nothing of podnet's may appear).
pub fn kprobe_leftovers() -> Vec<String> {
    std::fs::read_to_string("/sys/kernel/tracing/kprobe_events")
        .unwrap_or_default()
        .lines()
        .filter(|l| l.contains(podnet::attach::OPEN_FUNCTION) || l.contains("podnet"))
        .map(String::from)
        .collect()
}

#[test]
fn file_opens_and_sockets_exact() {
    file_opens_and_sockets_exact_with("auto");
}

#[test]
fn file_opens_exact_with_tracepoints() {
    file_opens_and_sockets_exact_with("tracepoint");
}

#[test]
fn file_opens_exact_with_kprobes() {
    if !kernel_has_open_kprobes() {
        // The kernel cannot: podnet says so, fails, and leaves nothing attached.
        if !require_privileges("file_opens_exact_with_kprobes") {
            return;
        }
        let mut c = Cluster::new("nokprobe");
        let pod = c.pod("batch", "k", Layout::Cgroupfs, Qos::BestEffort, &["main"]);
        let p = c.podnet(&["-o", "json", "--interval", "1s", "--open-probe", "kprobe"]);
        let (status, err) = p.finish_with_stderr();
        assert!(!status.success(), "{err}");
        assert!(
            err.contains("--open-probe kprobe") && err.contains("CONFIG_KPROBES"),
            "{err}"
        );
        wait_detached(&pod.dir);
        return;
    }
    file_opens_and_sockets_exact_with("kprobe");
}

#[test]
fn file_opens_exact_with_fexit() {
    if !require_privileges("file_opens_exact_with_fexit") {
        return;
    }
    if !kernel_has_open_fexit() {
        // The kernel cannot: podnet says so and why, fails, and leaves nothing attached.
        let mut c = Cluster::new("nofexit");
        let pod = c.pod("batch", "f", Layout::Cgroupfs, Qos::BestEffort, &["main"]);
        let p = c.podnet(&["-o", "json", "--interval", "1s", "--open-probe", "fexit"]);
        let (status, err) = p.finish_with_stderr();
        assert!(!status.success(), "{err}");
        let why = match podnet_loader::probe::tracing_loads(podnet::attach::OPEN_FUNCTION, true) {
            Err(podnet_loader::Error::NoTracing(why)) => why,
            other => panic!("expected the kernel's reason, got {other:?}"),
        };
        assert!(
            err.contains("--open-probe fexit") && err.contains(&why),
            "{err}\nexpected the reason: {why}"
        );
        wait_detached(&pod.dir);
        return;
    }
    file_opens_and_sockets_exact_with("fexit");
}

fn file_opens_and_sockets_exact_with(probe: &str) {
    if !require_privileges(&format!("file_opens_and_sockets_exact ({probe})")) {
        return;
    }
    let mut c = Cluster::new(&format!("files-{probe}"));
    let pod = c.pod(
        "batch",
        "opener",
        Layout::SystemdContainerd,
        Qos::Burstable,
        &["main", "helper"],
    );
    let mut p = c.podnet(&["-o", "json", "--interval", WINDOW, "--open-probe", probe]);
    p.wait_attached(&[&pod.dir]);
    let (ok, missing, socks) = (123u64, 17u64, 9u64);
    let r = run(&mut spawn(
        &args(&format!(
            "open --path /etc/hostname --count {ok} --missing {missing}"
        )),
        None,
        &pod,
        0,
    ));
    assert_eq!(r["opened"], ok);
    assert_eq!(r["failed"], missing);
    let r = run(&mut spawn(
        &args(&format!("sockets --count {socks}")),
        None,
        &pod,
        1,
    ));
    assert_eq!(r["created"], socks);
    let doc = p.json();
    let used = expected_open_probe(probe);
    assert_eq!(doc["fileOpenProbe"], used, "{doc:#}");
    let degraded = doc["warnings"].as_array().unwrap().iter().any(|w| {
        w.as_str()
            .unwrap()
            .starts_with(podnet::attach::TRACEPOINT_OPENS_WARNING)
    });
    // Degrading is warned about (naming the cost); asking for tracepoints is not.
    assert_eq!(
        degraded,
        probe == "auto" && used == "tracepoint",
        "{:#}",
        doc["warnings"]
    );
    let i = item(&doc, "opener");
    assert_eq!(n(i, "/files/opens"), ok + missing);
    assert_eq!(n(i, "/files/openErrors"), missing);
    assert_eq!(n(i, "/sockets/created"), socks);
    assert_eq!(n(i, "/sockets/closed"), socks);
    let main = &i["containers"][0];
    let helper = &i["containers"][1];
    assert_eq!(main["name"], "main");
    assert_eq!(n(main, "/files/opens"), ok + missing);
    assert_eq!(n(main, "/sockets/created"), 0);
    assert_eq!(n(helper, "/sockets/created"), socks);
    assert_eq!(n(helper, "/files/opens"), 0);
}

#[test]
fn memory_is_at_least_what_a_process_touched() {
    if !require_privileges("memory_is_at_least_what_a_process_touched") {
        return;
    }
    let mut c = Cluster::new("mem");
    let pod = c.pod(
        "shop",
        "cache",
        Layout::Cgroupfs,
        Qos::Burstable,
        &["redis"],
    );
    // A limit only the cgroup files know: reading it back proves podnet read them (the RSS
    // fallback has no limit). v1 memory hierarchy on hybrid hosts, v2 memory.max elsewhere.
    let limit = 512u64 << 20;
    match &pod.memcg {
        Some(memcg) => std::fs::write(memcg.join("memory.limit_in_bytes"), limit.to_string()),
        None => std::fs::write(pod.dir.join("memory.max"), limit.to_string()),
    }
    .unwrap();
    let mib = 64u64;
    let mut w = spawn(&args(&format!("hold-memory --mib {mib}")), None, &pod, 0);
    assert_eq!(run(&mut w)["bytes"], mib << 20);
    let doc = c.podnet(&["-o", "json", "--interval", "200ms"]).json();
    let i = item(&doc, "cache");
    assert_eq!(n(i, "/memory/limitBytes"), limit, "{i:#}");
    assert!(n(i, "/memory/usageBytes") >= mib << 20, "{i:#}");
    // Before 6.2 a thread's RSS reaches /proc in batches of up to 64 pages (SPLIT_RSS_COUNTING):
    // VmRSS may lag what was touched by that much per thread (measured on 5.10: 29 pages).
    const RSS_LAG: u64 = 64 * 4096 * 2;
    assert!(n(i, "/memory/rssBytes") + RSS_LAG >= mib << 20, "{i:#}");
    assert!(
        n(&i["containers"][0], "/memory/rssBytes") + RSS_LAG >= mib << 20,
        "{i:#}"
    );
    // Where podnet read it: the v1 memory hierarchy on hybrid hosts (this VM), else cgroup v2.
    let source = if pod.memcg.is_some() {
        "cgroup1"
    } else {
        "cgroup2"
    };
    assert_eq!(i["memory"]["source"], source, "{i:#}");
    assert_eq!(i["containers"][0]["memory"]["source"], source, "{i:#}");
    w.release().unwrap();
}

#[test]
fn every_layout_resolves_and_counts_its_own_opens() {
    if !require_privileges("every_layout_resolves_and_counts_its_own_opens") {
        return;
    }
    let mut c = Cluster::new("layouts");
    let pods: Vec<(String, SandboxPod)> = Layout::all()
        .into_iter()
        .enumerate()
        .map(|(i, layout)| {
            let name = format!("pod-{i}");
            let qos = [Qos::Burstable, Qos::BestEffort, Qos::Guaranteed][i % 3];
            let pod = c.pod("layouts", &name, layout, qos, &["app"]);
            (name, pod)
        })
        .collect();
    let dirs: Vec<&std::path::Path> = pods.iter().map(|(_, p)| p.dir.as_path()).collect();
    // The workloads start (and wait) before podnet does: starting a process takes seconds on an
    // emulated kernel, and five of them in the window left the last one's opens outside it.
    let mut workloads: Vec<Workload> = pods
        .iter()
        .enumerate()
        .map(|(i, (_, pod))| {
            spawn(
                &args(&format!("open --path /etc/hostname --count {}", 10 + i)),
                None,
                pod,
                0,
            )
        })
        .collect();
    let mut p = c.podnet(&["-o", "json", "--interval", WINDOW]);
    p.wait_attached(&dirs);
    for w in &mut workloads {
        w.go().unwrap();
    }
    for w in &mut workloads {
        w.result().unwrap();
    }
    let doc = p.json();
    assert_eq!(doc["items"].as_array().unwrap().len(), pods.len());
    for (i, (name, pod)) in pods.iter().enumerate() {
        let it = item(&doc, name);
        assert_eq!(it["cgroupPath"], pod.rel.as_str(), "{:?}", pod.layout);
        assert_eq!(
            it["containers"][0]["cgroupPath"],
            pod.containers[0].rel.as_str()
        );
        assert_eq!(n(it, "/files/opens"), 10 + i as u64, "{:?}", pod.layout);
    }
}

#[test]
fn other_node_left_out_and_pending_pod_warned() {
    if !require_privileges("other_node_left_out_and_pending_pod_warned") {
        return;
    }
    let mut c = Cluster::new("nodes");
    let here = c.pod(
        "shop",
        "here",
        Layout::SystemdContainerd,
        Qos::Burstable,
        &["app"],
    );
    // A pod with a real cgroup directory here but scheduled elsewhere: the API server's node
    // filter leaves it out, so podnet must not report it.
    let elsewhere = SandboxPod::create(
        &c.tree,
        Layout::SystemdContainerd,
        &new_uid(),
        Qos::Burstable,
        &[("app", &new_container_id())],
    )
    .unwrap();
    c.serve(elsewhere.pod_json("shop", "elsewhere", "another-node", &[]));
    // A Pending pod on this node has no cgroup yet.
    let pending_uid = new_uid();
    c.serve(json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "pending", "namespace": "shop", "uid": pending_uid},
        "spec": {"nodeName": NODE, "containers": [{"name": "app", "image": "x"}]},
        "status": {"phase": "Pending", "qosClass": "BestEffort"}
    }));
    let doc = c.podnet(&["-o", "json", "--interval", "200ms"]).json();
    let names: Vec<&str> = doc["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["pod"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["here"]);
    assert_eq!(item(&doc, "here")["cgroupPath"], here.rel.as_str());
    let warnings = doc["warnings"].as_array().unwrap();
    assert!(
        warnings
            .iter()
            .any(|w| w.as_str().unwrap().contains("shop/pending")),
        "{warnings:?}"
    );
    let reqs = c.api.requests();
    assert!(
        reqs.iter()
            .any(|r| r.query_value("fieldSelector") == Some(&format!("spec.nodeName={NODE}"))),
        "{reqs:?}"
    );
}

#[test]
fn container_created_after_attach_is_counted() {
    container_created_after_attach_is_counted_with("tracepoint");
}

#[test]
fn container_created_after_attach_is_counted_with_kprobes() {
    if kernel_has_open_kprobes() {
        container_created_after_attach_is_counted_with("kprobe");
    }
}

#[test]
fn container_created_after_attach_is_counted_with_fexit() {
    if kernel_has_open_fexit() {
        container_created_after_attach_is_counted_with("fexit");
    }
}

fn container_created_after_attach_is_counted_with(probe: &str) {
    if !require_privileges("container_created_after_attach_is_counted") {
        return;
    }
    let mut c = Cluster::new(&format!("restart-{probe}"));
    let mut pod = c.pod(
        "shop",
        "restarts",
        Layout::SystemdContainerd,
        Qos::Burstable,
        &["app"],
    );
    let mut p = c.podnet(&["-o", "json", "--interval", WINDOW, "--open-probe", probe]);
    p.wait_attached(&[&pod.dir]);
    // The container restarts: a new cgroup under the same pod, unknown to podnet.
    pod.add_container(&c.tree, "app-restarted", &new_container_id())
        .unwrap();
    let r = run(&mut spawn(
        &args("open --path /etc/hostname --count 42 --missing 3"),
        None,
        &pod,
        1,
    ));
    assert_eq!(r["opened"], 42);
    let r = run(&mut spawn(&args("sockets --count 5"), None, &pod, 1));
    assert_eq!(r["created"], 5);
    let doc = p.json();
    let i = item(&doc, "restarts");
    assert_eq!(n(i, "/sockets/created"), 5);
    // Opens in the unknown cgroup reach the pod by walking up the tree from the task's cgroup,
    // which tracepoint and kprobe programs can do only where the kernel gives them the helper
    // (not 5.10). Where it cannot, podnet must say so instead of reporting a silent 0.
    assert_eq!(doc["fileOpenProbe"], probe);
    let walks = common::opens_walk_up(&doc);
    assert_eq!(
        common::warns_unregistered_opens(&doc),
        !walks,
        "{:#}",
        doc["warnings"]
    );
    if walks {
        assert_eq!(n(i, "/files/opens"), 45);
        assert_eq!(n(i, "/files/openErrors"), 3);
    }
    // The known container did nothing.
    assert_eq!(n(&i["containers"][0], "/files/opens"), 0);
}

#[test]
fn sigkill_mid_window_leaves_nothing_attached() {
    if !require_privileges("sigkill_mid_window_leaves_nothing_attached") {
        return;
    }
    let mut c = Cluster::new("sigkill");
    let pod = c.pod(
        "shop",
        "victim",
        Layout::Cgroupfs,
        Qos::BestEffort,
        &["app"],
    );
    let mut p = c.podnet(&["-o", "json", "--interval", "60s"]);
    p.wait_attached(&[&pod.dir]);
    p.signal(Signal::SIGKILL);
    let (status, _) = p.finish();
    assert!(!status.success());
    wait_detached(&pod.dir);
    assert_eq!(kprobe_leftovers(), Vec::<String>::new());
}

#[test]
fn sigint_in_watch_detaches_and_exits_cleanly() {
    if !require_privileges("sigint_in_watch_detaches_and_exits_cleanly") {
        return;
    }
    let mut c = Cluster::new("sigint");
    let pod = c.pod(
        "shop",
        "watched",
        Layout::SystemdContainerd,
        Qos::Burstable,
        &["app"],
    );
    let mut p = c.podnet(&["--watch", "-o", "json", "--interval", "300ms"]);
    p.wait_attached(&[&pod.dir]);
    let first: Value = serde_json::from_str(&p.next_line(Duration::from_secs(10))).unwrap();
    assert_eq!(first["apiVersion"], "podnet/v1");
    p.signal(Signal::SIGINT);
    let (status, _) = p.finish();
    assert!(status.success(), "{status}");
    wait_detached(&pod.dir);
    assert_eq!(kprobe_leftovers(), Vec::<String>::new());
}

/// The document validates against the checked-in JSON Schema of podnet/v1
/// (`schema/podnet-v1.json`, generated from the model types): every key at every level, the
/// types, the nulls, the constants, the millisecond timestamp.
fn assert_schema(doc: &Value) {
    common::validate(doc);
    assert_eq!(doc["node"], NODE);
}

#[test]
fn json_and_json_lines_follow_the_schema() {
    if !require_privileges("json_and_json_lines_follow_the_schema") {
        return;
    }
    let mut c = Cluster::new("schema");
    let pod = c.pod(
        "shop",
        "web-0",
        Layout::SystemdContainerd,
        Qos::Burstable,
        &["web", "sidecar"],
    );
    let doc = c.podnet(&["-o", "json", "--interval", "200ms"]).json();
    assert_schema(&doc);
    assert_eq!(doc["counters"], "interval");
    assert_eq!(item(&doc, "web-0")["uid"], pod.uid.as_str());
    assert_eq!(item(&doc, "web-0")["qosClass"], "Burstable");

    let (status, out) = c
        .podnet(&[
            "--watch",
            "-o",
            "json",
            "--interval",
            "200ms",
            "--iterations",
            "3",
        ])
        .finish();
    assert!(status.success());
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 3, "{out}");
    for l in lines {
        let doc: Value = serde_json::from_str(l).unwrap();
        assert_schema(&doc);
        // --watch counts since it started.
        assert_eq!(doc["counters"], "cumulative");
    }
}
