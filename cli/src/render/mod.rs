//! Rendering of a [`PodStatsList`]: a kubectl-style table (`-o table`, `-o wide`), one pretty JSON
//! document (`-o json`), one compact JSON line per interval (`--watch -o json`), and the `top`-like
//! watch screen ([`screen`]).
//!
//! The one-shot table and the watch screen share one renderer ([`table`]): the same cells, the
//! same columns, laid out once for a pipe and once cut to a terminal. Cells never contain spaces,
//! so `awk '{print $4}'` finds the fourth column on every row.
//!
//! Warnings are not part of the table; the binary prints them to stderr. In JSON they are the
//! document's `warnings` field.

pub mod screen;
pub mod table;

use std::cmp::Ordering;
use std::fmt;
use std::str::FromStr;

use crate::model::{PodStats, PodStatsList};

pub use table::{render_table_with, TableOptions};

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
    /// Received plus sent bytes, descending (the default of a one-shot table).
    #[default]
    Net,
    /// Receive rate plus send rate, descending (the default of --watch).
    Rate,
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
        "name", "rx", "tx", "net", "rate", "rx-rate", "tx-rate", "sockets", "opens", "fds",
        "memory",
    ];

    /// The keys in the order of the table's columns: what `<` and `>` step through on the
    /// watch screen.
    pub const COLUMN_ORDER: &'static [SortKey] = &[
        SortKey::Name,
        SortKey::Rate,
        SortKey::RxRate,
        SortKey::TxRate,
        SortKey::Net,
        SortKey::Rx,
        SortKey::Tx,
        SortKey::Sockets,
        SortKey::Opens,
        SortKey::Fds,
        SortKey::Memory,
    ];

    /// The name `--sort` takes for this key.
    pub fn name(self) -> &'static str {
        match self {
            SortKey::Name => "name",
            SortKey::Rx => "rx",
            SortKey::Tx => "tx",
            SortKey::Net => "net",
            SortKey::Rate => "rate",
            SortKey::RxRate => "rx-rate",
            SortKey::TxRate => "tx-rate",
            SortKey::Sockets => "sockets",
            SortKey::Opens => "opens",
            SortKey::Fds => "fds",
            SortKey::Memory => "memory",
        }
    }
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

/// Bytes in binary units: `512 B`, `1.5 KiB`, `12.0 MiB` (prose; table cells use
/// [`bytes_cell`]).
pub fn human_bytes(n: u64) -> String {
    if n < 1024 {
        return format!("{n} B");
    }
    scaled(n as f64, "")
}

/// A rate in binary units per second: `0 B/s`, `1.2 MiB/s` (prose; table cells use
/// [`rate_cell`]).
pub fn human_rate(bytes_per_sec: f64) -> String {
    if !bytes_per_sec.is_finite() || bytes_per_sec <= 0.0 {
        return "0 B/s".to_string();
    }
    if bytes_per_sec.round() < 1024.0 {
        return format!("{:.0} B/s", bytes_per_sec.round());
    }
    scaled(bytes_per_sec, "/s")
}

/// [`human_bytes`] as a table cell, without the space: `512B`, `64.2MiB`.
pub fn bytes_cell(n: u64) -> String {
    human_bytes(n).replace(' ', "")
}

/// [`human_rate`] as a table cell, without the space: `0B/s`, `109.0KiB/s`.
pub fn rate_cell(bytes_per_sec: f64) -> String {
    human_rate(bytes_per_sec).replace(' ', "")
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

fn by_name(a: &PodStats, b: &PodStats) -> Ordering {
    a.namespace
        .cmp(&b.namespace)
        .then_with(|| a.pod.cmp(&b.pod))
        .then_with(|| a.uid.cmp(&b.uid))
}

/// The value a pod is sorted by under `sort` (descending); 0 for [`SortKey::Name`].
fn sort_value(p: &PodStats, sort: SortKey) -> f64 {
    match sort {
        SortKey::Name => 0.0,
        SortKey::Rx => p.network.rx_bytes as f64,
        SortKey::Tx => p.network.tx_bytes as f64,
        SortKey::Net => p.network.rx_bytes as f64 + p.network.tx_bytes as f64,
        SortKey::Rate => p.network.rx_bytes_per_sec + p.network.tx_bytes_per_sec,
        SortKey::RxRate => p.network.rx_bytes_per_sec,
        SortKey::TxRate => p.network.tx_bytes_per_sec,
        SortKey::Sockets => p.sockets.open as f64,
        SortKey::Opens => p.files.opens as f64,
        SortKey::Fds => p.files.open_fds as f64,
        SortKey::Memory => p.memory.usage_bytes as f64,
    }
}

fn compare(a: &PodStats, b: &PodStats, sort: SortKey) -> Ordering {
    sort_value(b, sort)
        .partial_cmp(&sort_value(a, sort))
        .unwrap_or(Ordering::Equal)
        .then_with(|| by_name(a, b))
}

/// The pods of `list` in the order of `sort`: descending by the key's value, ties by namespace
/// then pod name; [`SortKey::Name`] ascending by namespace then pod name.
pub fn sorted(list: &PodStatsList, sort: SortKey) -> Vec<&PodStats> {
    let mut items: Vec<&PodStats> = list.items.iter().collect();
    items.sort_by(|a, b| compare(a, b, sort));
    items
}

/// Puts the items of `list` in the order of `sort`, as the table shows them (`--sort` applies
/// to `-o json` too, as kubectl's `--sort-by` does).
pub fn sort_items(list: &mut PodStatsList, sort: SortKey) {
    list.items.sort_by(|a, b| compare(a, b, sort));
}

/// Renders `list` as a kubectl-style table sorted by `sort`. `wide` adds packets, socket and TCP
/// counters, open errors, memory limit, OOM kills, QoS class and cgroup path; `containers` adds
/// one row per container under its pod. Always ends with a newline.
pub fn render_table(list: &PodStatsList, wide: bool, containers: bool, sort: SortKey) -> String {
    render_table_with(
        list,
        &TableOptions {
            wide,
            containers,
            sort,
            ..TableOptions::default()
        },
    )
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
    use crate::model::{ContainerStats, Files, Memory, MemorySource, Network, Sockets};
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
            opens_unknown: false,
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
            ["shop", "db-0", "500B/s", "2.0MiB/s", "1000B", "4.0MiB", "0", "0", "0", "0B"]
        );
        assert_eq!(
            r[2],
            [
                "shop",
                "web-0",
                "1.5MiB/s",
                "256B/s",
                "3.0MiB",
                "512B",
                "3",
                "42",
                "17",
                "100.0MiB/256.0MiB"
            ]
        );
        assert_eq!(
            r[3],
            [
                "<unknown>",
                "uid:1234abcd-0000-0000-0000-000000000000",
                "1.0KiB/s",
                "0B/s",
                "2.0KiB",
                "0B",
                "0",
                "0",
                "0",
                "0B"
            ]
        );
        assert_eq!(r[4][..2], ["kube-system", "coredns"]);
        assert_eq!(r.len(), 5);
        assert!(!t.contains("Pending"), "warnings are not in the table");
        assert!(t.ends_with('\n'));
        assert!(t.lines().all(|l| l == l.trim_end()));
        // No cell has a space: every row splits into exactly the header's columns.
        assert!(t.lines().all(|l| l.split_whitespace().count() == 10), "{t}");
    }

    #[test]
    fn no_headers_and_a_total_row() {
        let t = render_table_with(
            &sample_list(),
            &TableOptions {
                no_headers: true,
                sum: true,
                ..TableOptions::default()
            },
        );
        let lines: Vec<&str> = t.lines().collect();
        assert_eq!(lines.len(), 5, "{t}");
        assert!(lines[0].starts_with("shop "), "{t}");
        let total: Vec<&str> = lines[4].split_whitespace().collect();
        // rx: 3 MiB + 1000 + 2048 B; memory: the sum of usages.
        assert_eq!(
            total,
            [
                "TOTAL", "-", "1.5MiB/s", "2.0MiB/s", "3.0MiB", "4.0MiB", "3", "42", "17",
                "100.0MiB"
            ],
            "{t}"
        );
        let empty = PodStatsList::new("n1".into(), "t".into(), 1.0);
        let o = TableOptions {
            no_headers: true,
            ..TableOptions::default()
        };
        assert_eq!(render_table_with(&empty, &o), "");
    }

    #[test]
    fn json_items_follow_the_sort() {
        let mut list = sample_list();
        sort_items(&mut list, SortKey::Tx);
        let names: Vec<&str> = list.items.iter().map(|p| p.pod.as_str()).collect();
        assert_eq!(names, ["db-0", "web-0", "", "coredns"]);
        sort_items(&mut list, SortKey::Name);
        let doc: Value = serde_json::from_str(&render_json(&list)).unwrap();
        assert_eq!(doc["items"][1]["pod"], "coredns");
    }

    #[test]
    fn unknown_names_are_null_and_rates_are_rounded() {
        let mut list = sample_list();
        list.items[0].network.rx_bytes_per_sec = 271386.3366118777;
        let doc: Value = serde_json::from_str(&render_json(&list)).unwrap();
        let unknown = doc["items"]
            .as_array()
            .unwrap()
            .iter()
            .find(|i| i["uid"] == "1234abcd-0000-0000-0000-000000000000")
            .unwrap();
        assert_eq!(unknown["pod"], Value::Null);
        assert_eq!(unknown["namespace"], Value::Null);
        assert_eq!(doc["items"][0]["network"]["rxBytesPerSec"], 271386.3);
        assert_eq!(doc["counters"], "interval");
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
            "unknown sort key `bogus`: use one of name, rx, tx, net, rate, rx-rate, tx-rate, sockets, opens, fds, memory"
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
        // --containers adds a CONTAINER column (third), so every index after POD moved by one.
        assert_eq!(r[0].len(), 23);
        assert_eq!(r[0][2], "CONTAINER");
        assert_eq!(r[0][21..], ["QOS", "CGROUP"]);
        let web = r
            .iter()
            .position(|row| row.get(1).map(String::as_str) == Some("web-0"))
            .unwrap();
        assert_eq!(
            r[web],
            [
                "shop",
                "web-0",
                "-",
                "1.5MiB/s",
                "256B/s",
                "3.0MiB",
                "512B",
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
                "100.0MiB",
                "256.0MiB",
                "1",
                "Burstable",
                "/kubepods.slice/web-0"
            ]
        );
        // Containers follow their pod, sorted by name, and carry its namespace and pod.
        assert_eq!(r[web + 1][..3], ["shop", "web-0", "app"]);
        assert_eq!(r[web + 1][5], "3.0MiB");
        // Under its pod, a container shows only its own directory name.
        assert_eq!(r[web + 1][22], "cri-containerd-aaaa.scope");
        assert_eq!(r[web + 2][..3], ["shop", "web-0", "sidecar"]);
        assert_eq!(r[web + 2][5], "1.0KiB");
        assert_eq!(r[web + 2][19], "-");
        assert!(t.lines().nth(web + 1).unwrap().contains("   app"));
        // Only web-0 has containers: header + 4 pods + 2 containers.
        assert_eq!(r.len(), 7);
        let unknown = r.iter().find(|row| row[0] == "<unknown>").unwrap();
        assert_eq!(unknown[21], "-");
        assert!(t.lines().all(|l| l.split_whitespace().count() == 23), "{t}");
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
                "counters",
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
        // Unknown names are null since "podnet stats feels like top" (they were "").
        let unknown = items.iter().find(|i| i["pod"].is_null()).unwrap();
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
        // (Cells have no spaces since "podnet stats feels like top": indices 10-12 became 6-8.)
        let (sockets, opens, fds) = (cells[6], cells[7], cells[8]);
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
