//! `/metrics`: a `podnet/v1` document as Prometheus text format 0.0.4, or OpenMetrics 1.0 when
//! the scraper asks for it. One series per live pod per metric (per container with
//! `--containers`); a metric with no value for a pod (a memory limit it does not have) is absent.

use std::fmt::Write;

use crate::model::{ContainerStats, PodStats, PodStatsList};

/// Content type of the Prometheus text format.
pub const TEXT_FORMAT: &str = "text/plain; version=0.0.4; charset=utf-8";
/// Content type of OpenMetrics text.
pub const OPENMETRICS_FORMAT: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Which exposition format to write.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// Prometheus text format 0.0.4.
    Text,
    /// OpenMetrics 1.0 text.
    OpenMetrics,
}

impl Format {
    /// The format a scraper's `Accept` header asks for.
    pub fn from_accept(accept: Option<&str>) -> Format {
        match accept {
            Some(a) if a.contains("application/openmetrics-text") => Format::OpenMetrics,
            _ => Format::Text,
        }
    }

    /// The `Content-Type` of a response in this format.
    pub fn content_type(self) -> &'static str {
        match self {
            Format::Text => TEXT_FORMAT,
            Format::OpenMetrics => OPENMETRICS_FORMAT,
        }
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Counter,
    Gauge,
}

/// One per-pod metric: its name, type, help and how to read it from a pod's or container's
/// statistics (`None`: no sample).
struct Metric {
    name: &'static str,
    kind: Kind,
    help: &'static str,
    value: fn(&Stats) -> Option<u64>,
}

/// The statistics a series is read from: a pod's or a container's.
struct Stats<'a> {
    network: &'a crate::model::Network,
    sockets: &'a crate::model::Sockets,
    files: &'a crate::model::Files,
    memory: &'a crate::model::Memory,
}

const METRICS: &[Metric] = &[
    Metric {
        name: "podnet_pod_network_receive_bytes_total",
        kind: Kind::Counter,
        help: "Bytes received (IP header and payload, as the socket layer sees them).",
        value: |s| Some(s.network.rx_bytes),
    },
    Metric {
        name: "podnet_pod_network_receive_packets_total",
        kind: Kind::Counter,
        help: "Packets received (wire segments).",
        value: |s| Some(s.network.rx_packets),
    },
    Metric {
        name: "podnet_pod_network_transmit_bytes_total",
        kind: Kind::Counter,
        help: "Bytes sent (IP header and payload, as the socket layer sees them).",
        value: |s| Some(s.network.tx_bytes),
    },
    Metric {
        name: "podnet_pod_network_transmit_packets_total",
        kind: Kind::Counter,
        help: "Packets sent (wire segments).",
        value: |s| Some(s.network.tx_packets),
    },
    Metric {
        name: "podnet_pod_sockets_created_total",
        kind: Kind::Counter,
        help: "Sockets created (accepted TCP connections included).",
        value: |s| Some(s.sockets.created),
    },
    Metric {
        name: "podnet_pod_sockets_closed_total",
        kind: Kind::Counter,
        help: "Sockets closed.",
        value: |s| Some(s.sockets.closed),
    },
    Metric {
        name: "podnet_pod_tcp_active_opens_total",
        kind: Kind::Counter,
        help: "TCP connections opened by connect() (SYN sent).",
        value: |s| Some(s.sockets.tcp_active_opens),
    },
    Metric {
        name: "podnet_pod_tcp_passive_opens_total",
        kind: Kind::Counter,
        help: "TCP connections accepted.",
        value: |s| Some(s.sockets.tcp_passive_opens),
    },
    Metric {
        name: "podnet_pod_tcp_retransmits_total",
        kind: Kind::Counter,
        help: "TCP segments retransmitted.",
        value: |s| Some(s.sockets.tcp_retransmits),
    },
    Metric {
        name: "podnet_pod_file_opens_total",
        kind: Kind::Counter,
        help: "open/openat/openat2/creat calls (absent where no file-open probe attaches).",
        value: |s| (!s.files.opens_unknown).then_some(s.files.opens),
    },
    Metric {
        name: "podnet_pod_file_open_errors_total",
        kind: Kind::Counter,
        help: "open/openat/openat2/creat calls that failed (absent with the opens).",
        value: |s| (!s.files.opens_unknown).then_some(s.files.open_errors),
    },
    Metric {
        name: "podnet_pod_open_fds",
        kind: Kind::Gauge,
        help: "File descriptors open now in the pod's processes (absent when unreadable).",
        value: |s| (!s.files.open_fds_unknown).then_some(s.files.open_fds),
    },
    Metric {
        name: "podnet_pod_open_sockets",
        kind: Kind::Gauge,
        help: "Sockets open now in the pod's processes (absent when unreadable).",
        value: |s| (!s.sockets.open_unknown).then_some(s.sockets.open),
    },
    Metric {
        name: "podnet_pod_memory_usage_bytes",
        kind: Kind::Gauge,
        help: "Memory charged to the pod's cgroup.",
        value: |s| Some(s.memory.usage_bytes),
    },
    Metric {
        name: "podnet_pod_memory_limit_bytes",
        kind: Kind::Gauge,
        help: "The pod cgroup's memory limit (absent without one).",
        value: |s| s.memory.limit_bytes,
    },
    Metric {
        name: "podnet_pod_memory_rss_bytes",
        kind: Kind::Gauge,
        help: "Resident memory of the pod's processes.",
        value: |s| Some(s.memory.rss_bytes),
    },
    Metric {
        name: "podnet_pod_oom_kills_total",
        kind: Kind::Counter,
        help: "Processes of the pod killed by the OOM killer.",
        value: |s| Some(s.memory.oom_kills),
    },
];

/// The agent's own metrics.
pub struct SelfMetrics {
    /// Pods podnet follows now.
    pub tracked_pods: usize,
    /// Events from cgroups below a pod that are not registered (the counters map was full).
    pub untracked_events: u64,
}

/// Escapes a label value: backslash, double quote and newline.
fn escape(v: &str) -> String {
    let mut out = String::with_capacity(v.len());
    for c in v.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out
}

fn header(out: &mut String, format: Format, name: &str, kind: Kind, help: &str) {
    let (family, kind) = match (format, kind) {
        // OpenMetrics names a counter family without its `_total` suffix.
        (Format::OpenMetrics, Kind::Counter) => (name.trim_end_matches("_total"), "counter"),
        (_, Kind::Counter) => (name, "counter"),
        (_, Kind::Gauge) => (name, "gauge"),
    };
    let _ = writeln!(out, "# HELP {family} {help}");
    let _ = writeln!(out, "# TYPE {family} {kind}");
}

fn stats_of_pod(p: &PodStats) -> Stats<'_> {
    Stats {
        network: &p.network,
        sockets: &p.sockets,
        files: &p.files,
        memory: &p.memory,
    }
}

fn stats_of_container(c: &ContainerStats) -> Stats<'_> {
    Stats {
        network: &c.network,
        sockets: &c.sockets,
        files: &c.files,
        memory: &c.memory,
    }
}

/// Renders `doc` (cumulative counters) and the agent's own metrics. With `containers`, each
/// pod's series are per container (label `container`), and what the pod's own cgroup counted
/// outside any known container is the series with `container=""`, so that summing a metric by
/// pod gives the pod's total.
pub fn render(
    doc: &PodStatsList,
    own: &SelfMetrics,
    containers: bool,
    format: Format,
    version: &str,
) -> String {
    let mut out = String::new();
    for m in METRICS {
        header(&mut out, format, m.name, m.kind, m.help);
        for p in &doc.items {
            let labels = format!(
                "namespace=\"{}\",pod=\"{}\"",
                escape(&p.namespace),
                escape(&p.pod)
            );
            if containers && m.kind == Kind::Counter {
                let mut rest = (m.value)(&stats_of_pod(p));
                for c in &p.containers {
                    let v = (m.value)(&stats_of_container(c));
                    if let (Some(total), Some(v)) = (rest, v) {
                        rest = Some(total.saturating_sub(v));
                    }
                    if let Some(v) = v {
                        let _ = writeln!(
                            out,
                            "{}{{{labels},container=\"{}\"}} {v}",
                            m.name,
                            escape(&c.name)
                        );
                    }
                }
                if let Some(v) = rest {
                    let _ = writeln!(out, "{}{{{labels},container=\"\"}} {v}", m.name);
                }
            } else if containers {
                for c in &p.containers {
                    if let Some(v) = (m.value)(&stats_of_container(c)) {
                        let _ = writeln!(
                            out,
                            "{}{{{labels},container=\"{}\"}} {v}",
                            m.name,
                            escape(&c.name)
                        );
                    }
                }
            } else if let Some(v) = (m.value)(&stats_of_pod(p)) {
                let _ = writeln!(out, "{}{{{labels}}} {v}", m.name);
            }
        }
    }
    header(
        &mut out,
        format,
        "podnet_tracked_pods",
        Kind::Gauge,
        "Pods podnet follows on this node.",
    );
    let _ = writeln!(out, "podnet_tracked_pods {}", own.tracked_pods);
    header(
        &mut out,
        format,
        "podnet_untracked_events_total",
        Kind::Counter,
        "Events from pod cgroups podnet could not register (counters map full): raise --max-pods.",
    );
    let _ = writeln!(
        out,
        "podnet_untracked_events_total {}",
        own.untracked_events
    );
    header(
        &mut out,
        format,
        "podnet_build_info",
        Kind::Gauge,
        "The running podnet's version.",
    );
    let _ = writeln!(
        out,
        "podnet_build_info{{version=\"{}\"}} 1",
        escape(version)
    );
    if format == Format::OpenMetrics {
        out.push_str("# EOF\n");
    }
    out
}

/// Every metric name the agent exports (for dashboards and their tests).
pub fn metric_names() -> Vec<&'static str> {
    METRICS
        .iter()
        .map(|m| m.name)
        .chain([
            "podnet_tracked_pods",
            "podnet_untracked_events_total",
            "podnet_build_info",
        ])
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{ContainerStats, Memory, Network, PodStats};

    fn doc() -> PodStatsList {
        let mut d = PodStatsList::new("n1".into(), "2026-11-30T00:00:00Z".into(), 5.0);
        d.items.push(PodStats {
            namespace: "shop".into(),
            pod: "web\"0".into(),
            network: Network {
                rx_bytes: 100,
                tx_bytes: 300,
                ..Network::default()
            },
            memory: Memory {
                usage_bytes: 7,
                limit_bytes: None,
                ..Memory::default()
            },
            containers: vec![ContainerStats {
                name: "app".into(),
                network: Network {
                    tx_bytes: 200,
                    ..Network::default()
                },
                ..ContainerStats::default()
            }],
            ..PodStats::default()
        });
        d
    }

    #[test]
    fn one_series_per_pod_with_escaped_labels_and_no_absent_limit() {
        let own = SelfMetrics {
            tracked_pods: 1,
            untracked_events: 0,
        };
        let text = render(&doc(), &own, false, Format::Text, "0.1.0");
        assert!(text.contains(
            "podnet_pod_network_transmit_bytes_total{namespace=\"shop\",pod=\"web\\\"0\"} 300\n"
        ));
        assert!(text.contains("# TYPE podnet_pod_network_transmit_bytes_total counter\n"));
        assert!(text.contains("# TYPE podnet_pod_memory_usage_bytes gauge\n"));
        assert!(!text.contains("podnet_pod_memory_limit_bytes{"));
        assert!(text.contains("podnet_build_info{version=\"0.1.0\"} 1\n"));
        assert!(!text.contains("# EOF"));
        let series = text
            .lines()
            .filter(|l| l.starts_with("podnet_pod_network_receive_bytes_total{"))
            .count();
        assert_eq!(series, 1);
    }

    #[test]
    fn gauges_podnet_could_not_read_are_absent_not_zero() {
        let mut d = doc();
        d.items[0].sockets.open_unknown = true;
        d.items[0].files.open_fds_unknown = true;
        let own = SelfMetrics {
            tracked_pods: 1,
            untracked_events: 0,
        };
        let text = render(&d, &own, false, Format::Text, "0.1.0");
        assert!(!text.contains("podnet_pod_open_sockets{"), "{text}");
        assert!(!text.contains("podnet_pod_open_fds{"), "{text}");
        let text = render(&doc(), &own, false, Format::Text, "0.1.0");
        assert!(text.contains("podnet_pod_open_sockets{namespace=\"shop\",pod=\"web\\\"0\"} 0\n"));
    }

    #[test]
    fn containers_split_a_pod_and_sum_back_to_it() {
        let own = SelfMetrics {
            tracked_pods: 1,
            untracked_events: 0,
        };
        let text = render(&doc(), &own, true, Format::Text, "0.1.0");
        assert!(text.contains(
            "podnet_pod_network_transmit_bytes_total{namespace=\"shop\",pod=\"web\\\"0\",container=\"app\"} 200\n"
        ));
        assert!(text.contains(
            "podnet_pod_network_transmit_bytes_total{namespace=\"shop\",pod=\"web\\\"0\",container=\"\"} 100\n"
        ));
    }

    #[test]
    fn openmetrics_names_counter_families_without_total_and_ends_with_eof() {
        let own = SelfMetrics {
            tracked_pods: 0,
            untracked_events: 3,
        };
        let text = render(&doc(), &own, false, Format::OpenMetrics, "0.1.0");
        assert!(text.contains("# TYPE podnet_pod_network_receive_bytes counter\n"));
        assert!(text.contains("podnet_untracked_events_total 3\n"));
        assert!(text.ends_with("# EOF\n"));
        assert_eq!(
            Format::from_accept(Some("application/openmetrics-text;version=1.0.0")),
            Format::OpenMetrics
        );
        assert_eq!(Format::from_accept(Some("text/plain")), Format::Text);
    }
}
