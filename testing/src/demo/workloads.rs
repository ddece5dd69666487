//! The five long-running `podnet-sandbox demo` workloads: their command lines and their load in words.

use std::net::Ipv4Addr;

use anyhow::{anyhow, Result};
use podnet::render::human_rate;

use super::{
    DemoPod, AGENT_UDP_RATE, AGENT_UDP_SIZE, DB_UDP_RATE, DB_UDP_SIZE, REPORT_MISSING,
    REPORT_OPENS, ROUND_PERIOD, TCP_REPLY, WEB_UDP_RATE, WEB_UDP_SIZE,
};
use crate::sandbox::{NetNs, SandboxContainer, SandboxPod};

/// IP and UDP header bytes on top of a UDP/IPv4 payload, as podnet counts bytes.
const UDP_IP_OVERHEAD: u64 = 28;

/// Ports used inside the sandbox.
const DB_UDP_PORT: u16 = 9000;
const WEB_UDP_PORT: u16 = 9001;
const SIDECAR_UDP_PORT: u16 = 9100;
pub(super) const DB_TCP_PORT: u16 = 5432;

/// The sandbox addresses.
#[derive(Debug, Clone, Copy)]
pub(super) struct Addrs {
    pub(super) web: Ipv4Addr,
    pub(super) db: Ipv4Addr,
    pub(super) web_from_host: Ipv4Addr,
    pub(super) db_from_report: Ipv4Addr,
}

/// The four pods of the demo, before they are described.
pub(super) struct Pods {
    pub(super) web: SandboxPod,
    pub(super) db: SandboxPod,
    pub(super) report: SandboxPod,
    pub(super) agent: SandboxPod,
}

/// The network namespaces of web-0, db-0 and report-7d9f (node-agent is in the host's).
#[derive(Clone, Copy)]
pub(super) struct Namespaces<'a> {
    pub(super) web: &'a NetNs,
    pub(super) db: &'a NetNs,
    pub(super) report: &'a NetNs,
}

/// One workload to start: `namespace/pod/container`, the `podnet-sandbox` arguments, the network
/// namespace (`None`: the host's) and the container it joins.
pub(super) type Spec<'a> = (String, Vec<String>, Option<&'a NetNs>, SandboxContainer);

/// The container `name` of `pod`.
pub(super) fn container(pod: &SandboxPod, name: &str) -> Result<SandboxContainer> {
    pod.container(name)
        .cloned()
        .ok_or_else(|| anyhow!("internal error: no container {name}"))
}

/// The five workloads, one per container, each running for `secs` seconds.
pub(super) fn specs<'a>(
    secs: &str,
    open_path: &str,
    addrs: &Addrs,
    ns: Namespaces<'a>,
    pods: &Pods,
) -> Result<Vec<Spec<'a>>> {
    let n = |v: u64| v.to_string();
    Ok(vec![
        (
            "shop/web-0/web".into(),
            demo_args(
                secs,
                &[
                    ("to", format!("{}:{DB_UDP_PORT}", addrs.db)),
                    ("rate", n(WEB_UDP_RATE)),
                    ("size", n(WEB_UDP_SIZE)),
                    ("bind", format!("{}:{WEB_UDP_PORT}", addrs.web)),
                    ("sockets-per-sec", "10".into()),
                    ("opens-per-sec", "20".into()),
                    ("open-path", open_path.into()),
                    ("mib", "24".into()),
                ],
            ),
            Some(ns.web),
            container(&pods.web, "web")?,
        ),
        (
            "shop/web-0/sidecar".into(),
            demo_args(
                secs,
                &[
                    (
                        "bind",
                        format!("{}:{SIDECAR_UDP_PORT}", addrs.web_from_host),
                    ),
                    ("sockets-per-sec", "0".into()),
                    ("opens-per-sec", "5".into()),
                    ("open-path", open_path.into()),
                    ("mib", "8".into()),
                ],
            ),
            Some(ns.web),
            container(&pods.web, "sidecar")?,
        ),
        (
            "shop/db-0/postgres".into(),
            demo_args(
                secs,
                &[
                    ("to", format!("{}:{WEB_UDP_PORT}", addrs.web)),
                    ("rate", n(DB_UDP_RATE)),
                    ("size", n(DB_UDP_SIZE)),
                    ("bind", format!("{}:{DB_UDP_PORT}", addrs.db)),
                    ("sockets-per-sec", "2".into()),
                    ("opens-per-sec", "50".into()),
                    ("open-path", open_path.into()),
                    ("mib", "64".into()),
                ],
            ),
            Some(ns.db),
            container(&pods.db, "postgres")?,
        ),
        (
            "batch/report-7d9f/report".into(),
            demo_args(
                secs,
                &[
                    ("sockets-per-sec", "0".into()),
                    ("opens-per-sec", "0".into()),
                    ("mib", "48".into()),
                ],
            ),
            Some(ns.report),
            container(&pods.report, "report")?,
        ),
        (
            "kube-system/node-agent/agent".into(),
            demo_args(
                secs,
                &[
                    ("to", format!("{}:{SIDECAR_UDP_PORT}", addrs.web_from_host)),
                    ("rate", n(AGENT_UDP_RATE)),
                    ("size", n(AGENT_UDP_SIZE)),
                    ("sockets-per-sec", "1".into()),
                    ("opens-per-sec", "100".into()),
                    ("open-path", "/proc/self/status".into()),
                    ("mib", "12".into()),
                ],
            ),
            None,
            container(&pods.agent, "agent")?,
        ),
    ])
}

/// The four pods with their layout, network and the load of each container in words.
pub(super) fn describe(pods: Pods, ns: Namespaces<'_>) -> Vec<DemoPod> {
    let load = |v: &[(&str, String)]| -> Vec<(String, String)> {
        v.iter().map(|(c, l)| (c.to_string(), l.clone())).collect()
    };
    let udp = |rate: u64, size: u64| rate_text(rate * (size + UDP_IP_OVERHEAD));
    let tcp_reply = rate_text(tcp_wire_bytes(TCP_REPLY) / ROUND_PERIOD.as_secs().max(1));
    vec![
        DemoPod {
            namespace: "shop",
            name: "web-0",
            setup: "systemd driver + containerd",
            netns: Some(ns.web.name().to_string()),
            load: load(&[
                (
                    "web",
                    format!(
                        "sends {WEB_UDP_RATE} UDP datagrams/s of {WEB_UDP_SIZE} B to db-0 ({} out), \
                         gets db-0's answers ({} in)\n10 new sockets/s, 20 file opens/s, holds 24 MiB",
                        udp(WEB_UDP_RATE, WEB_UDP_SIZE),
                        udp(DB_UDP_RATE, DB_UDP_SIZE)
                    ),
                ),
                (
                    "sidecar",
                    format!(
                        "receives node-agent's {AGENT_UDP_RATE} datagrams/s of {AGENT_UDP_SIZE} B ({} in)\n\
                         5 file opens/s, holds 8 MiB",
                        udp(AGENT_UDP_RATE, AGENT_UDP_SIZE)
                    ),
                ),
            ]),
            sandbox: pods.web,
        },
        DemoPod {
            namespace: "shop",
            name: "db-0",
            setup: "cgroupfs driver + containerd",
            netns: Some(ns.db.name().to_string()),
            load: load(&[(
                "postgres",
                format!(
                    "answers web-0 with {DB_UDP_RATE} UDP datagrams/s of {DB_UDP_SIZE} B ({} out)\n\
                     accepts 1 TCP connection/s from report-7d9f and sends {} KiB back (about {tcp_reply} out)\n\
                     2 new sockets/s, 50 file opens/s, holds 64 MiB",
                    udp(DB_UDP_RATE, DB_UDP_SIZE),
                    TCP_REPLY / 1024
                ),
            )]),
            sandbox: pods.db,
        },
        DemoPod {
            namespace: "batch",
            name: "report-7d9f",
            setup: "systemd driver + CRI-O",
            netns: Some(ns.report.name().to_string()),
            load: load(&[(
                "report",
                format!(
                    "opens 1 TCP connection/s to db-0 and reads {} KiB (about {tcp_reply} in)\n\
                     {} file opens/s of which {} fail (no such file), holds 48 MiB",
                    TCP_REPLY / 1024,
                    REPORT_OPENS + REPORT_MISSING,
                    REPORT_MISSING
                ),
            )]),
            sandbox: pods.report,
        },
        DemoPod {
            namespace: "kube-system",
            name: "node-agent",
            setup: "systemd driver + Docker",
            netns: None,
            load: load(&[(
                "agent",
                format!(
                    "sends {AGENT_UDP_RATE} UDP datagrams/s of {AGENT_UDP_SIZE} B to web-0's sidecar \
                     through the host ({} out)\n1 new socket/s, 100 file opens/s, holds 12 MiB",
                    udp(AGENT_UDP_RATE, AGENT_UDP_SIZE)
                ),
            )]),
            sandbox: pods.agent,
        },
    ]
}

fn demo_args(secs: &str, opts: &[(&str, String)]) -> Vec<String> {
    let mut v = vec![
        "demo".to_string(),
        "--seconds".to_string(),
        secs.to_string(),
    ];
    for (k, val) in opts {
        v.push(format!("--{k}"));
        v.push(val.clone());
    }
    v
}

/// `105.5 KiB/s`, `1.2 MiB/s`: podnet's own rate formatter, so the demo's words match its table.
fn rate_text(bytes_per_sec: u64) -> String {
    human_rate(bytes_per_sec as f64)
}

/// Roughly what `payload` bytes of one TCP transfer over a 1500-byte MTU veth amount to with
/// TCP/IP headers (1448-byte segments with timestamps, 52 header bytes each).
fn tcp_wire_bytes(payload: u64) -> u64 {
    payload + payload.div_ceil(1448) * 52
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_are_formatted_in_binary_units_like_podnet() {
        assert_eq!(rate_text(999), "999 B/s");
        assert_eq!(
            rate_text(WEB_UDP_RATE * (WEB_UDP_SIZE + UDP_IP_OVERHEAD)),
            "105.5 KiB/s"
        );
        assert_eq!(rate_text(3 * 1024 * 1024 / 2), "1.5 MiB/s");
        assert_eq!(tcp_wire_bytes(TCP_REPLY), 262_144 + 182 * 52);
    }

    #[test]
    fn demo_args_are_flag_value_pairs() {
        assert_eq!(
            demo_args("2.000", &[("rate", "5".into()), ("mib", "1".into())]),
            ["demo", "--seconds", "2.000", "--rate", "5", "--mib", "1"]
        );
    }
}
