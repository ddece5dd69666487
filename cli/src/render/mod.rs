//! Rendering of a [`PodStatsList`]: a kubectl-style table (`-o table`, `-o wide`), one pretty JSON
//! document (`-o json`), or one compact JSON line per interval (`--watch -o json`).
//!
//! Warnings are not part of the table; the binary prints them to stderr. In JSON they are the
//! document's `warnings` field.

use std::cmp::Ordering;
use std::fmt;
use std::str::FromStr;

use prettytable::format::{FormatBuilder, TableFormat};
use prettytable::{Cell, Row, Table};

use crate::model::{ContainerStats, Files, Memory, Network, PodStats, PodStatsList, Sockets};

/// The output format (`-o/--output`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum Output {
    /// A table of the main columns.
    #[default]
    Table,
    /// The table with every counter, QoS class and cgroup path.
    Wide,
    /// `podnet/v1` JSON: one document, or one line per interval with `--watch`.
    Json,
}

/// The column the table is sorted by (`--sort`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum SortKey {
    /// Namespace, then pod name, ascending.
    Name,
    /// Received bytes, descending.
    Rx,
    /// Sent bytes, descending.
    Tx,
    /// Received plus sent bytes, descending (the default).
    #[default]
    Net,
    /// Receive rate, descending.
    #[value(alias = "rxrate")]
    RxRate,
    /// Send rate, descending.
    #[value(alias = "txrate")]
    TxRate,
    /// Open sockets, descending.
    Sockets,
    /// File opens, descending.
    Opens,
    /// Open file descriptors, descending.
    Fds,
    /// Memory usage, descending.
    #[value(alias = "mem")]
    Memory,
}

impl SortKey {
    /// Every key as accepted on the command line.
    pub const NAMES: &'static [&'static str] = &[
        "name", "rx", "tx", "net", "rx-rate", "tx-rate", "sockets", "opens", "fds", "memory",
    ];
}

/// A `--sort` value that is not a [`SortKey`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnknownSortKey(pub String);

impl fmt::Display for UnknownSortKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "unknown sort key `{}`: use one of {}",
            self.0,
            SortKey::NAMES.join(", ")
        )
    }
}

impl std::error::Error for UnknownSortKey {}

impl FromStr for SortKey {
    type Err = UnknownSortKey;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        <SortKey as clap::ValueEnum>::from_str(s, true).map_err(|_| UnknownSortKey(s.to_string()))
    }
}

/// Bytes in binary units: `512 B`, `1.5 KiB`, `12.0 MiB`.
pub fn human_bytes(n: u64) -> String {
    if n < 1024 {
        return format!("{n} B");
    }
    scaled(n as f64, "")
}

/// A rate in binary units per second: `0 B/s`, `1.2 MiB/s`.
pub fn human_rate(bytes_per_sec: f64) -> String {
    if !bytes_per_sec.is_finite() || bytes_per_sec <= 0.0 {
        return "0 B/s".to_string();
    }
    if bytes_per_sec.round() < 1024.0 {
        return format!("{:.0} B/s", bytes_per_sec.round());
    }
    scaled(bytes_per_sec, "/s")
}

fn scaled(mut v: f64, suffix: &str) -> String {
    const UNITS: [&str; 7] = ["B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB"];
    let mut i = 0;
    // 1023.95 would print as "1024.0"; move it to the next unit instead.
    while v >= 1023.95 && i + 1 < UNITS.len() {
        v /= 1024.0;
        i += 1;
    }
    format!("{v:.1} {}{suffix}", UNITS[i])
}

fn memory_cell(m: &Memory) -> String {
    match m.limit_bytes {
        Some(limit) => format!("{} / {}", human_bytes(m.usage_bytes), human_bytes(limit)),
        None => human_bytes(m.usage_bytes),
    }
}

fn by_name(a: &PodStats, b: &PodStats) -> Ordering {
    a.namespace
        .cmp(&b.namespace)
        .then_with(|| a.pod.cmp(&b.pod))
        .then_with(|| a.uid.cmp(&b.uid))
}

/// The pods of `list` in the order of `sort`: descending by the key's value, ties by namespace
/// then pod name; [`SortKey::Name`] ascending by namespace then pod name.
pub fn sorted(list: &PodStatsList, sort: SortKey) -> Vec<&PodStats> {
    let mut items: Vec<&PodStats> = list.items.iter().collect();
    let value = |p: &PodStats| -> f64 {
        match sort {
            SortKey::Name => 0.0,
            SortKey::Rx => p.network.rx_bytes as f64,
            SortKey::Tx => p.network.tx_bytes as f64,
            SortKey::Net => p.network.rx_bytes as f64 + p.network.tx_bytes as f64,
            SortKey::RxRate => p.network.rx_bytes_per_sec,
            SortKey::TxRate => p.network.tx_bytes_per_sec,
            SortKey::Sockets => p.sockets.open as f64,
            SortKey::Opens => p.files.opens as f64,
            SortKey::Fds => p.files.open_fds as f64,
            SortKey::Memory => p.memory.usage_bytes as f64,
        }
    };
    items.sort_by(|a, b| {
        value(b)
            .partial_cmp(&value(a))
            .unwrap_or(Ordering::Equal)
            .then_with(|| by_name(a, b))
    });
    items
}

fn headers(wide: bool) -> Vec<&'static str> {
    if wide {
        vec![
            "NAMESPACE",
            "POD",
            "RX/S",
            "TX/S",
            "RX",
            "TX",
            "RX-PKTS",
            "TX-PKTS",
            "SOCKETS",
            "SOCK-CREATED",
            "SOCK-CLOSED",
            "TCP-ACTIVE",
            "TCP-PASSIVE",
            "TCP-RETRANS",
            "OPENS",
            "OPEN-ERRORS",
            "FDS",
            "MEMORY",
            "MEM-LIMIT",
            "OOM-KILLS",
            "QOS",
            "CGROUP",
        ]
    } else {
        vec![
            "NAMESPACE",
            "POD",
            "RX/S",
            "TX/S",
            "RX",
            "TX",
            "SOCKETS",
            "OPENS",
            "FDS",
            "MEMORY",
        ]
    }
}

/// The counter columns shared by pod and container rows.
struct Counters<'a> {
    network: &'a Network,
    sockets: &'a Sockets,
    files: &'a Files,
    memory: &'a Memory,
}

fn counter_cells(c: &Counters<'_>, wide: bool, qos: &str, cgroup: &str) -> Vec<String> {
    let n = c.network;
    let mut v = vec![
        human_rate(n.rx_bytes_per_sec),
        human_rate(n.tx_bytes_per_sec),
        human_bytes(n.rx_bytes),
        human_bytes(n.tx_bytes),
    ];
    if wide {
        v.extend([
            n.rx_packets.to_string(),
            n.tx_packets.to_string(),
            gauge(c.sockets.open, c.sockets.open_unknown),
            c.sockets.created.to_string(),
            c.sockets.closed.to_string(),
            c.sockets.tcp_active_opens.to_string(),
            c.sockets.tcp_passive_opens.to_string(),
            c.sockets.tcp_retransmits.to_string(),
            c.files.opens.to_string(),
            c.files.open_errors.to_string(),
            gauge(c.files.open_fds, c.files.open_fds_unknown),
            human_bytes(c.memory.usage_bytes),
            c.memory
                .limit_bytes
                .map(human_bytes)
                .unwrap_or_else(|| "-".to_string()),
            c.memory.oom_kills.to_string(),
            qos.to_string(),
            cgroup.to_string(),
        ]);
    } else {
        v.extend([
            gauge(c.sockets.open, c.sockets.open_unknown),
            c.files.opens.to_string(),
            gauge(c.files.open_fds, c.files.open_fds_unknown),
            memory_cell(c.memory),
        ]);
    }
    v
}

/// A gauge cell: `-` when it could not be read.
fn gauge(value: u64, unknown: bool) -> String {
    if unknown {
        "-".to_string()
    } else {
        value.to_string()
    }
}

fn pod_names(p: &PodStats) -> (String, String) {
    if p.pod.is_empty() {
        ("<unknown>".to_string(), format!("<unknown> ({})", p.uid))
    } else {
        (p.namespace.clone(), p.pod.clone())
    }
}

fn container_label(c: &ContainerStats) -> String {
    if c.name.is_empty() {
        let short: String = c.id.chars().take(12).collect();
        format!("  {short}")
    } else {
        format!("  {}", c.name)
    }
}

fn table_format() -> TableFormat {
    // Like kubectl: no borders, columns separated by three spaces.
    FormatBuilder::new().padding(0, 3).build()
}

/// Renders `list` as a kubectl-style table sorted by `sort`. `wide` adds packets, socket and TCP
/// counters, open errors, memory limit, OOM kills, QoS class and cgroup path; `containers` adds
/// one indented row per container under its pod. Always ends with a newline.
pub fn render_table(list: &PodStatsList, wide: bool, containers: bool, sort: SortKey) -> String {
    let mut table = Table::new();
    table.set_format(table_format());
    table.set_titles(Row::new(headers(wide).into_iter().map(Cell::new).collect()));
    for p in sorted(list, sort) {
        let (ns, pod) = pod_names(p);
        let counters = Counters {
            network: &p.network,
            sockets: &p.sockets,
            files: &p.files,
            memory: &p.memory,
        };
        let qos = p.qos_class.as_deref().unwrap_or("-");
        let mut cells = vec![ns, pod];
        cells.extend(counter_cells(&counters, wide, qos, &p.cgroup_path));
        table.add_row(Row::new(cells.iter().map(|s| Cell::new(s)).collect()));
        if containers {
            let mut cs: Vec<&ContainerStats> = p.containers.iter().collect();
            cs.sort_by(|a, b| a.name.cmp(&b.name).then_with(|| a.id.cmp(&b.id)));
            for c in cs {
                let counters = Counters {
                    network: &c.network,
                    sockets: &c.sockets,
                    files: &c.files,
                    memory: &c.memory,
                };
                let mut cells = vec![String::new(), container_label(c)];
                // Under its pod's row, a container's directory name is enough (the full path
                // is in -o json): kubelet's full container paths are 200+ characters.
                let dir = c.cgroup_path.rsplit('/').next().unwrap_or(&c.cgroup_path);
                cells.extend(counter_cells(&counters, wide, "", dir));
                table.add_row(Row::new(cells.iter().map(|s| Cell::new(s)).collect()));
            }
        }
    }
    let text = table.to_string();
    let mut out = String::with_capacity(text.len());
    for line in text.lines() {
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

/// Renders `list` as one pretty-printed `podnet/v1` JSON document, ending with a newline.
pub fn render_json(list: &PodStatsList) -> String {
    let mut s = serde_json::to_string_pretty(list).expect("PodStatsList serializes to JSON");
    s.push('\n');
    s
}

/// Renders `list` as one compact `podnet/v1` JSON document on a single line (JSON Lines), ending
/// with a newline.
pub fn render_json_line(list: &PodStatsList) -> String {
    let mut s = serde_json::to_string(list).expect("PodStatsList serializes to JSON");
    s.push('\n');
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::MemorySource;
    use serde_json::Value;

    fn pod(ns: &str, name: &str, uid: &str, rx: u64, tx: u64) -> PodStats {
        PodStats {
            namespace: ns.into(),
            pod: name.into(),
            uid: uid.into(),
            qos_class: Some("Burstable".into()),
            cgroup_path: format!("/kubepods.slice/{name}"),
            network: Network {
                rx_bytes: rx,
                rx_packets: rx / 100,
                tx_bytes: tx,
                tx_packets: tx / 100,
                rx_bytes_per_sec: rx as f64 / 2.0,
                tx_bytes_per_sec: tx as f64 / 2.0,
            },
            ..PodStats::default()
        }
    }

    fn sample_list() -> PodStatsList {
        let mut web = pod("shop", "web-0", "u-web", 3 * 1024 * 1024, 512);
        web.sockets = Sockets {
            created: 7,
            closed: 4,
            open: 3,
            tcp_active_opens: 2,
            tcp_passive_opens: 1,
            tcp_retransmits: 5,
            open_unknown: false,
        };
        web.files = Files {
            opens: 42,
            open_errors: 2,
            open_fds: 17,
            open_fds_unknown: false,
        };
        web.memory = Memory {
            usage_bytes: 100 * 1024 * 1024,
            limit_bytes: Some(256 * 1024 * 1024),
            rss_bytes: 90 * 1024 * 1024,
            oom_kills: 1,
            source: MemorySource::Cgroup2,
        };
        web.containers = vec![
            ContainerStats {
                name: "sidecar".into(),
                id: "bbbbbbbbbbbbbbbb".into(),
                cgroup_path: "/kubepods.slice/web-0/cri-containerd-bbbb.scope".into(),
                network: Network {
                    rx_bytes: 1024,
                    ..Network::default()
                },
                ..ContainerStats::default()
            },
            ContainerStats {
                name: "app".into(),
                id: "aaaaaaaaaaaaaaaa".into(),
                cgroup_path: "/kubepods.slice/web-0/cri-containerd-aaaa.scope".into(),
                network: Network {
                    rx_bytes: 3 * 1024 * 1024 - 1024,
                    ..Network::default()
                },
                ..ContainerStats::default()
            },
        ];
        let db = pod("shop", "db-0", "u-db", 1000, 4 * 1024 * 1024);
        let idle = pod("kube-system", "coredns", "u-dns", 0, 0);
        let mut unknown = pod("", "", "1234abcd-0000-0000-0000-000000000000", 2048, 0);
        unknown.qos_class = None;
        let mut list = PodStatsList::new("n1".into(), "2026-11-21T10:00:00Z".into(), 1.0);
        list.items = vec![idle, web, unknown, db];
        list.warnings = vec!["pod x/y (Pending): no cgroup".into()];
        list
    }

    /// Splits a rendered table into cells by the column offsets of its header (columns are
    /// left-aligned, so every cell starts where its header starts).
    fn rows(text: &str) -> Vec<Vec<String>> {
        let header = text.lines().next().unwrap();
        let mut starts = vec![0];
        let b = header.as_bytes();
        for i in 1..b.len() {
            if b[i] != b' ' && b[i - 1] == b' ' {
                starts.push(i);
            }
        }
        text.lines()
            .map(|l| {
                (0..starts.len())
                    .map(|c| {
                        let from = starts[c].min(l.len());
                        let to = starts.get(c + 1).copied().unwrap_or(l.len()).min(l.len());
                        l[from..to].trim().to_string()
                    })
                    .collect()
            })
            .collect()
    }

    #[test]
    fn units() {
        assert_eq!(human_bytes(0), "0 B");
        assert_eq!(human_bytes(1023), "1023 B");
        assert_eq!(human_bytes(1024), "1.0 KiB");
        assert_eq!(human_bytes(1536), "1.5 KiB");
        assert_eq!(human_bytes(1024 * 1024 - 1), "1.0 MiB");
        assert_eq!(human_bytes(5 * 1024 * 1024 * 1024), "5.0 GiB");
        assert_eq!(human_rate(0.0), "0 B/s");
        assert_eq!(human_rate(f64::NAN), "0 B/s");
        assert_eq!(human_rate(999.4), "999 B/s");
        assert_eq!(human_rate(1.2 * 1024.0 * 1024.0), "1.2 MiB/s");
    }

    #[test]
    fn table_default_columns_and_net_sort() {
        let t = render_table(&sample_list(), false, false, SortKey::Net);
        let r = rows(&t);
        assert_eq!(
            r[0],
            [
                "NAMESPACE",
                "POD",
                "RX/S",
                "TX/S",
                "RX",
                "TX",
                "SOCKETS",
                "OPENS",
                "FDS",
                "MEMORY"
            ]
        );
        // Net = rx + tx: db 4 MiB + 1000, web 3 MiB + 512, unknown 2048, coredns 0.
        assert_eq!(
            r[1],
            [
                "shop",
                "db-0",
                "500 B/s",
                "2.0 MiB/s",
                "1000 B",
                "4.0 MiB",
                "0",
                "0",
                "0",
                "0 B"
            ]
        );
        assert_eq!(
            r[2],
            [
                "shop",
                "web-0",
                "1.5 MiB/s",
                "256 B/s",
                "3.0 MiB",
                "512 B",
                "3",
                "42",
                "17",
                "100.0 MiB / 256.0 MiB"
            ]
        );
        assert_eq!(
            r[3],
            [
                "<unknown>",
                "<unknown> (1234abcd-0000-0000-0000-000000000000)",
                "1.0 KiB/s",
                "0 B/s",
                "2.0 KiB",
                "0 B",
                "0",
                "0",
                "0",
                "0 B"
            ]
        );
        assert_eq!(r[4][..2], ["kube-system", "coredns"]);
        assert_eq!(r.len(), 5);
        assert!(!t.contains("Pending"), "warnings are not in the table");
        assert!(t.ends_with('\n'));
        assert!(t.lines().all(|l| l == l.trim_end()));
    }

    #[test]
    fn sort_keys() {
        let list = sample_list();
        let order = |k: SortKey| -> Vec<String> {
            sorted(&list, k).iter().map(|p| p.pod.clone()).collect()
        };
        assert_eq!(order(SortKey::Name), ["", "coredns", "db-0", "web-0"]);
        assert_eq!(order(SortKey::Rx), ["web-0", "", "db-0", "coredns"]);
        assert_eq!(order(SortKey::Tx), ["db-0", "web-0", "", "coredns"]);
        assert_eq!(order(SortKey::RxRate), ["web-0", "", "db-0", "coredns"]);
        // Ties (all zero except web) fall back to namespace/pod.
        assert_eq!(order(SortKey::Opens), ["web-0", "", "coredns", "db-0"]);
        assert_eq!(order(SortKey::Memory), ["web-0", "", "coredns", "db-0"]);
    }

    #[test]
    fn sort_key_parsing() {
        assert_eq!("rx".parse::<SortKey>(), Ok(SortKey::Rx));
        assert_eq!("NET".parse::<SortKey>(), Ok(SortKey::Net));
        assert_eq!("tx-rate".parse::<SortKey>(), Ok(SortKey::TxRate));
        assert_eq!("mem".parse::<SortKey>(), Ok(SortKey::Memory));
        assert_eq!("memory".parse::<SortKey>(), Ok(SortKey::Memory));
        let err = "bogus".parse::<SortKey>().unwrap_err().to_string();
        assert_eq!(
            err,
            "unknown sort key `bogus`: use one of name, rx, tx, net, rx-rate, tx-rate, sockets, opens, fds, memory"
        );
        // Every listed name parses, and to a different key.
        let keys: std::collections::HashSet<String> = SortKey::NAMES
            .iter()
            .map(|n| format!("{:?}", n.parse::<SortKey>().unwrap()))
            .collect();
        assert_eq!(keys.len(), SortKey::NAMES.len());
        assert_eq!(SortKey::default(), SortKey::Net);
    }

    #[test]
    fn wide_and_container_rows() {
        let t = render_table(&sample_list(), true, true, SortKey::Name);
        let r = rows(&t);
        assert_eq!(r[0].len(), 22);
        assert_eq!(r[0][20..], ["QOS", "CGROUP"]);
        let web = r
            .iter()
            .position(|row| row.get(1).map(String::as_str) == Some("web-0"))
            .unwrap();
        assert_eq!(
            r[web],
            [
                "shop",
                "web-0",
                "1.5 MiB/s",
                "256 B/s",
                "3.0 MiB",
                "512 B",
                "31457",
                "5",
                "3",
                "7",
                "4",
                "2",
                "1",
                "5",
                "42",
                "2",
                "17",
                "100.0 MiB",
                "256.0 MiB",
                "1",
                "Burstable",
                "/kubepods.slice/web-0"
            ]
        );
        // Containers follow their pod, sorted by name, indented.
        assert_eq!(r[web + 1][..2], ["", "app"]);
        assert_eq!(r[web + 1][4], "3.0 MiB");
        // Under its pod, a container shows only its own directory name.
        assert_eq!(r[web + 1][21], "cri-containerd-aaaa.scope");
        assert_eq!(r[web + 2][..2], ["", "sidecar"]);
        assert_eq!(r[web + 2][4], "1.0 KiB");
        assert_eq!(r[web + 2][18], "-");
        assert!(t.lines().nth(web + 1).unwrap().contains("   app"));
        // Only web-0 has containers: header + 4 pods + 2 containers.
        assert_eq!(r.len(), 7);
        let unknown = r.iter().find(|row| row[0] == "<unknown>").unwrap();
        assert_eq!(unknown[20], "-");
    }

    #[test]
    fn empty_list_is_only_the_header() {
        let list = PodStatsList::new("n1".into(), "t".into(), 1.0);
        let t = render_table(&list, false, true, SortKey::Net);
        assert_eq!(t.lines().count(), 1);
    }

    fn keys(v: &Value) -> Vec<&str> {
        let mut k: Vec<&str> = v.as_object().unwrap().keys().map(String::as_str).collect();
        k.sort();
        k
    }

    #[test]
    fn json_schema_keys() {
        let list = sample_list();
        let doc: Value = serde_json::from_str(&render_json(&list)).unwrap();
        assert_eq!(
            keys(&doc),
            [
                "apiVersion",
                "coverage",
                "intervalSeconds",
                "items",
                "kind",
                "node",
                "timestamp",
                "warnings"
            ]
        );
        assert_eq!(doc["apiVersion"], "podnet/v1");
        assert_eq!(doc["kind"], "PodStatsList");
        assert_eq!(doc["warnings"][0], "pod x/y (Pending): no cgroup");
        let items = doc["items"].as_array().unwrap();
        assert_eq!(items.len(), 4);
        let web = items.iter().find(|i| i["pod"] == "web-0").unwrap();
        assert_eq!(
            keys(web),
            [
                "cgroupPath",
                "containers",
                "files",
                "memory",
                "namespace",
                "network",
                "pod",
                "qosClass",
                "sockets",
                "uid"
            ]
        );
        let network = [
            "rxBytes",
            "rxBytesPerSec",
            "rxPackets",
            "txBytes",
            "txBytesPerSec",
            "txPackets",
        ];
        let sockets = [
            "closed",
            "created",
            "open",
            "tcpActiveOpens",
            "tcpPassiveOpens",
            "tcpRetransmits",
        ];
        let files = ["openErrors", "openFds", "opens"];
        let memory = ["limitBytes", "oomKills", "rssBytes", "source", "usageBytes"];
        assert_eq!(keys(&web["network"]), network);
        assert_eq!(keys(&web["sockets"]), sockets);
        assert_eq!(keys(&web["files"]), files);
        assert_eq!(keys(&web["memory"]), memory);
        assert_eq!(web["memory"]["limitBytes"], 256 * 1024 * 1024);
        let c = &web["containers"][0];
        assert_eq!(
            keys(c),
            [
                "cgroupPath",
                "files",
                "id",
                "memory",
                "name",
                "network",
                "sockets"
            ]
        );
        assert_eq!(keys(&c["network"]), network);
        assert_eq!(keys(&c["sockets"]), sockets);
        assert_eq!(keys(&c["files"]), files);
        assert_eq!(keys(&c["memory"]), memory);
        assert_eq!(c["memory"]["limitBytes"], Value::Null);
        let unknown = items.iter().find(|i| i["pod"] == "").unwrap();
        assert_eq!(unknown["qosClass"], Value::Null);
    }

    #[test]
    fn unreadable_gauges_are_null_and_dashes_and_memory_says_its_source() {
        let mut list = sample_list();
        let web = list.items.iter_mut().find(|i| i.pod == "web-0").unwrap();
        web.sockets.open_unknown = true;
        web.files.open_fds_unknown = true;
        web.memory.source = MemorySource::Proc;
        let doc: Value = serde_json::from_str(&render_json(&list)).unwrap();
        let w = doc["items"]
            .as_array()
            .unwrap()
            .iter()
            .find(|i| i["pod"] == "web-0")
            .unwrap();
        assert_eq!(w["sockets"]["open"], Value::Null);
        assert_eq!(w["files"]["openFds"], Value::Null);
        assert_eq!(w["sockets"]["created"], 7);
        assert_eq!(w["memory"]["source"], "proc");
        let other = doc["items"]
            .as_array()
            .unwrap()
            .iter()
            .find(|i| i["pod"] != "web-0")
            .unwrap();
        assert_eq!(other["memory"]["source"], "cgroup2");
        assert!(other["sockets"]["open"].is_u64());
        assert_eq!(
            doc["coverage"][0],
            crate::model::COVERAGE[0],
            "every document carries the coverage notes"
        );
        assert!(crate::model::COVERAGE[0].contains("tcpRetransmits"));
        let table = render_table(&list, false, false, SortKey::Name);
        let row = table.lines().find(|l| l.contains("web-0")).unwrap();
        let cells: Vec<&str> = row.split_whitespace().collect();
        // NAMESPACE POD RX/S(2) TX/S(2) RX(2) TX(2) SOCKETS OPENS FDS MEMORY...
        let (sockets, opens, fds) = (cells[10], cells[11], cells[12]);
        assert_eq!((sockets, opens, fds), ("-", "42", "-"), "{row}");
        let wide = render_table(&list, true, false, SortKey::Name);
        let row = wide.lines().find(|l| l.contains("web-0")).unwrap();
        assert_eq!(
            row.split_whitespace().filter(|c| *c == "-").count(),
            2,
            "{row}"
        );
    }

    #[test]
    fn json_line_is_one_line_and_same_document() {
        let list = sample_list();
        let line = render_json_line(&list);
        assert_eq!(line.matches('\n').count(), 1);
        assert!(line.ends_with('\n'));
        let a: Value = serde_json::from_str(&line).unwrap();
        let b: Value = serde_json::from_str(&render_json(&list)).unwrap();
        assert_eq!(a, b);
        assert!(render_json(&list).lines().count() > 1);
    }
}
