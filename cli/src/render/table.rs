//! The table both the one-shot output and the watch screen print: cells first ([`grid`]), then
//! a layout ([`Widths`]) that a pipe gets at its natural width and a terminal gets cut to its
//! own (names shortened with an ellipsis, columns that do not fit left out, never a wrapped row).
//!
//! Like kubectl: no borders, left-aligned columns separated by three spaces, and no spaces inside
//! a cell.

use crate::model::{ContainerStats, Files, Memory, Network, PodStats, PodStatsList, Sockets};

use super::{bytes_cell, rate_cell, sorted, SortKey};

/// What the table shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct TableOptions {
    /// Every counter, QoS class and cgroup path (`-o wide`).
    pub wide: bool,
    /// A row per container under its pod, with a CONTAINER column (`--containers`).
    pub containers: bool,
    pub sort: SortKey,
    /// Leave out the header row (`--no-headers`).
    pub no_headers: bool,
    /// A last `TOTAL` row summing every pod (`--sum`).
    pub sum: bool,
    /// Rates and gauges only, without the RX and TX counts (the watch screen, like top, where
    /// counts since start matter less than what happens now; `-o wide` keeps them).
    pub rates_only: bool,
}

/// The cells of a table: its header and its rows, not yet laid out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grid {
    pub header: Vec<String>,
    pub rows: Vec<Vec<String>>,
}

/// Where the POD column is (NAMESPACE is 0).
pub const POD_COLUMN: usize = 1;

/// Columns separated by this many spaces in a pipe, like kubectl.
const GAP: usize = 3;

fn headers(o: &TableOptions) -> Vec<&'static str> {
    let mut h = vec!["NAMESPACE", "POD"];
    if o.containers {
        h.push("CONTAINER");
    }
    h.extend(["RX/S", "TX/S"]);
    if o.wide || !o.rates_only {
        h.extend(["RX", "TX"]);
    }
    if o.wide {
        h.extend([
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
        ]);
    } else {
        h.extend(["SOCKETS", "OPENS", "FDS", "MEMORY"]);
    }
    h
}

/// The counter columns shared by pod, container and total rows.
struct Counters<'a> {
    network: &'a Network,
    sockets: &'a Sockets,
    files: &'a Files,
    memory: &'a Memory,
}

fn memory_cell(m: &Memory) -> String {
    match m.limit_bytes {
        Some(limit) => format!("{}/{}", bytes_cell(m.usage_bytes), bytes_cell(limit)),
        None => bytes_cell(m.usage_bytes),
    }
}

/// A gauge cell: `-` when it could not be read.
fn gauge(value: u64, unknown: bool) -> String {
    if unknown {
        "-".to_string()
    } else {
        value.to_string()
    }
}

fn counter_cells(c: &Counters<'_>, o: &TableOptions, qos: &str, cgroup: &str) -> Vec<String> {
    let n = c.network;
    let wide = o.wide;
    let mut v = vec![rate_cell(n.rx_bytes_per_sec), rate_cell(n.tx_bytes_per_sec)];
    if wide || !o.rates_only {
        v.extend([bytes_cell(n.rx_bytes), bytes_cell(n.tx_bytes)]);
    }
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
            gauge(c.files.opens, c.files.opens_unknown),
            gauge(c.files.open_errors, c.files.opens_unknown),
            gauge(c.files.open_fds, c.files.open_fds_unknown),
            bytes_cell(c.memory.usage_bytes),
            c.memory
                .limit_bytes
                .map(bytes_cell)
                .unwrap_or_else(|| "-".to_string()),
            c.memory.oom_kills.to_string(),
            cell(qos),
            cell(cgroup),
        ]);
    } else {
        v.extend([
            gauge(c.sockets.open, c.sockets.open_unknown),
            gauge(c.files.opens, c.files.opens_unknown),
            gauge(c.files.open_fds, c.files.open_fds_unknown),
            memory_cell(c.memory),
        ]);
    }
    v
}

/// A text cell: `-` when empty, and never a space inside (a path or name with a space would
/// shift every later column for awk; `_` keeps the count).
fn cell(s: &str) -> String {
    if s.is_empty() {
        "-".to_string()
    } else {
        s.replace(char::is_whitespace, "_")
    }
}

/// NAMESPACE and POD of a pod row; a pod known by UID only (the cgroup scan) is `<unknown>` and
/// `uid:<UID>`.
pub fn pod_names(p: &PodStats) -> (String, String) {
    if p.pod.is_empty() {
        ("<unknown>".to_string(), format!("uid:{}", p.uid))
    } else {
        (cell(&p.namespace), cell(&p.pod))
    }
}

fn container_name(c: &ContainerStats) -> String {
    if c.name.is_empty() {
        c.id.chars().take(12).collect()
    } else {
        cell(&c.name)
    }
}

/// The sums of every pod: the `TOTAL` row and the watch screen's header.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Totals {
    pub network: Network,
    pub sockets: Sockets,
    pub files: Files,
    pub memory: Memory,
}

/// Sums `list`'s pods (gauges that could not be read count as 0; a total is unknown only when
/// no pod's is known).
pub fn totals(list: &PodStatsList) -> Totals {
    let mut t = Totals::default();
    t.sockets.open_unknown = !list.items.is_empty();
    t.files.open_fds_unknown = !list.items.is_empty();
    for p in &list.items {
        let n = &mut t.network;
        n.rx_bytes += p.network.rx_bytes;
        n.tx_bytes += p.network.tx_bytes;
        n.rx_packets += p.network.rx_packets;
        n.tx_packets += p.network.tx_packets;
        n.rx_bytes_per_sec += p.network.rx_bytes_per_sec;
        n.tx_bytes_per_sec += p.network.tx_bytes_per_sec;
        let s = &mut t.sockets;
        s.created += p.sockets.created;
        s.closed += p.sockets.closed;
        s.tcp_active_opens += p.sockets.tcp_active_opens;
        s.tcp_passive_opens += p.sockets.tcp_passive_opens;
        s.tcp_retransmits += p.sockets.tcp_retransmits;
        if !p.sockets.open_unknown {
            s.open += p.sockets.open;
            s.open_unknown = false;
        }
        let f = &mut t.files;
        f.opens += p.files.opens;
        f.open_errors += p.files.open_errors;
        f.opens_unknown |= p.files.opens_unknown;
        if !p.files.open_fds_unknown {
            f.open_fds += p.files.open_fds;
            f.open_fds_unknown = false;
        }
        t.memory.usage_bytes += p.memory.usage_bytes;
        t.memory.rss_bytes += p.memory.rss_bytes;
        t.memory.oom_kills += p.memory.oom_kills;
    }
    t
}

/// The cells of `list` under `o`: pods in the order of `o.sort`, each followed by its
/// containers (by name) with `--containers`, and a `TOTAL` row with `--sum`.
pub fn grid(list: &PodStatsList, o: &TableOptions) -> Grid {
    let header = headers(o).into_iter().map(String::from).collect();
    let mut rows = Vec::new();
    for p in sorted(list, o.sort) {
        let (ns, pod) = pod_names(p);
        let counters = Counters {
            network: &p.network,
            sockets: &p.sockets,
            files: &p.files,
            memory: &p.memory,
        };
        let qos = p.qos_class.as_deref().unwrap_or("-");
        let mut cells = vec![ns.clone(), pod.clone()];
        if o.containers {
            cells.push("-".into());
        }
        cells.extend(counter_cells(&counters, o, qos, &p.cgroup_path));
        rows.push(cells);
        if o.containers {
            let mut cs: Vec<&ContainerStats> = p.containers.iter().collect();
            cs.sort_by(|a, b| a.name.cmp(&b.name).then_with(|| a.id.cmp(&b.id)));
            for c in cs {
                let counters = Counters {
                    network: &c.network,
                    sockets: &c.sockets,
                    files: &c.files,
                    memory: &c.memory,
                };
                // Every row carries its namespace and pod, so `grep`/`awk` on one row suffice.
                let mut cells = vec![ns.clone(), pod.clone(), container_name(c)];
                // Under its pod's row, a container's directory name is enough (the full path
                // is in -o json): kubelet's full container paths are 200+ characters.
                let dir = c.cgroup_path.rsplit('/').next().unwrap_or(&c.cgroup_path);
                cells.extend(counter_cells(&counters, o, "-", dir));
                rows.push(cells);
            }
        }
    }
    if o.sum {
        let t = totals(list);
        let counters = Counters {
            network: &t.network,
            sockets: &t.sockets,
            files: &t.files,
            memory: &t.memory,
        };
        let mut cells = vec!["TOTAL".to_string(), "-".to_string()];
        if o.containers {
            cells.push("-".into());
        }
        cells.extend(counter_cells(&counters, o, "-", "-"));
        rows.push(cells);
    }
    Grid { header, rows }
}

/// The number of characters a cell takes on screen (every cell podnet makes is ASCII but for
/// the ellipsis).
pub fn width(s: &str) -> usize {
    s.chars().count()
}

/// `s` cut to `w` characters, its last one an ellipsis when anything was cut.
pub fn ellipsize(s: &str, w: usize) -> String {
    if width(s) <= w {
        return s.to_string();
    }
    if w == 0 {
        return String::new();
    }
    let mut out: String = s.chars().take(w - 1).collect();
    out.push('…');
    out
}

/// Column widths. A watch screen keeps one across frames: columns only ever widen, so they
/// stay put while the numbers change.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Widths(pub Vec<usize>);

impl Widths {
    /// Widens the columns to fit every cell of `g` (the header included).
    pub fn fit(&mut self, g: &Grid) {
        let n = g.header.len();
        if self.0.len() != n {
            self.0 = vec![0; n];
        }
        for row in std::iter::once(&g.header).chain(&g.rows) {
            for (w, c) in self.0.iter_mut().zip(row) {
                *w = (*w).max(width(c));
            }
        }
    }

    /// The widths to print at in `max` columns, and how many columns fit: when the table is
    /// wider, NAMESPACE and POD shrink first (down to a few characters, names then end in `…`),
    /// then columns on the right are left out.
    pub fn cut_to(&self, max: usize, gap: usize) -> (Vec<usize>, usize) {
        let mut w = self.0.clone();
        let total =
            |w: &[usize]| -> usize { w.iter().sum::<usize>() + gap * w.len().saturating_sub(1) };
        // POD first, then NAMESPACE, each down to a readable floor; then columns on the right
        // go, and only when not even one number column is left do names shrink further.
        let shrink = |w: &mut Vec<usize>, floors: &[(usize, usize)], fit: usize| {
            for &(col, floor) in floors {
                let over = total(&w[..fit.min(w.len())]).saturating_sub(max);
                if over == 0 {
                    break;
                }
                if let Some(c) = w.get_mut(col) {
                    let floor = floor.min(*c);
                    *c -= over.min(*c - floor);
                }
            }
        };
        let all = w.len();
        shrink(&mut w, &[(POD_COLUMN, 12), (0, 9)], all);
        let fits = |w: &[usize]| {
            let mut shown = w.len();
            while shown > 1 && total(&w[..shown]) > max {
                shown -= 1;
            }
            shown
        };
        let mut shown = fits(&w);
        if shown < 3 {
            shrink(&mut w, &[(POD_COLUMN, 5), (0, 4)], 3);
            shown = fits(&w);
        }
        w.truncate(shown);
        (w, shown)
    }
}

/// Lays out rows at `widths` (only the first `widths.len()` columns): cells left-aligned and cut
/// with an ellipsis to their column, columns separated by three spaces, no trailing spaces.
pub fn lay_out<'a>(
    rows: impl IntoIterator<Item = &'a Vec<String>>,
    widths: &[usize],
    gap: usize,
) -> Vec<String> {
    let mut out = Vec::new();
    for row in rows {
        let mut line = String::new();
        for (i, (cell, &w)) in row.iter().zip(widths).enumerate() {
            if i > 0 {
                line.push_str(&" ".repeat(gap));
            }
            let c = ellipsize(cell, w);
            let pad = w - width(&c);
            line.push_str(&c);
            line.push_str(&" ".repeat(pad));
        }
        out.push(line.trim_end().to_string());
    }
    out
}

/// The table for a pipe or a one-shot run: every column at its natural width. Always ends with
/// a newline (an empty string when there is neither a header nor a row).
pub fn render_table_with(list: &PodStatsList, o: &TableOptions) -> String {
    let g = grid(list, o);
    let mut w = Widths::default();
    w.fit(&g);
    let rows: Vec<&Vec<String>> = if o.no_headers {
        g.rows.iter().collect()
    } else {
        std::iter::once(&g.header).chain(&g.rows).collect()
    };
    let mut out = String::new();
    for line in lay_out(rows, &w.0, GAP) {
        out.push_str(&line);
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(cells: &[&str]) -> Vec<String> {
        cells.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn names_are_cut_with_an_ellipsis_and_columns_left_out_to_fit() {
        let g = Grid {
            header: row(&["NAMESPACE", "POD", "RX/S", "MEMORY"]),
            rows: vec![row(&[
                "kube-system",
                "a-very-long-pod-name-7d9f8c6b5-xyz12",
                "109.0KiB/s",
                "64.2MiB",
            ])],
        };
        let mut w = Widths::default();
        w.fit(&g);
        assert_eq!(w.0, [11, 36, 10, 7]);
        let (cut, shown) = w.cut_to(50, GAP);
        assert_eq!(shown, 4);
        assert!(cut.iter().sum::<usize>() + 9 <= 50, "{cut:?}");
        let lines = lay_out(std::iter::once(&g.rows[0]), &cut, GAP);
        assert!(width(&lines[0]) <= 50, "{}", lines[0]);
        assert!(lines[0].contains("a-very-long-"), "{}", lines[0]);
        assert!(lines[0].contains('…'), "{}", lines[0]);
        assert!(lines[0].ends_with("64.2MiB"), "{}", lines[0]);
        // Too narrow even for shortened names: the right-hand columns go.
        let (cut, shown) = w.cut_to(24, GAP);
        assert_eq!(shown, 2, "{cut:?}");
        for l in lay_out(std::iter::once(&g.rows[0]), &cut, GAP) {
            assert!(width(&l) <= 24, "{l}");
        }
    }

    #[test]
    fn widths_only_grow() {
        let mut w = Widths::default();
        let g = |s: &str| Grid {
            header: row(&["A", "B"]),
            rows: vec![row(&["x", s])],
        };
        w.fit(&g("12345"));
        w.fit(&g("1"));
        assert_eq!(w.0, [1, 5]);
    }

    #[test]
    fn ellipsis() {
        assert_eq!(ellipsize("abcdef", 6), "abcdef");
        assert_eq!(ellipsize("abcdef", 4), "abc…");
        assert_eq!(ellipsize("abcdef", 0), "");
        assert_eq!(cell("a b"), "a_b");
        assert_eq!(cell(""), "-");
    }
}
