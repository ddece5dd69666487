//! The flags of `podnet stats` (`StatsArgs`), the duration parser behind `--interval`, and the
//! sort and table options the flags imply.

use std::path::PathBuf;
use std::time::Duration;

use clap::Args;

use crate::render::{Output, SortKey, TableOptions};

/// Options of `podnet stats`. Flags follow kubectl where one exists.
#[derive(Args, Debug, Clone)]
pub struct StatsArgs {
    /// Sampling interval: `1s`, `500ms`, `1.5s`, `2m`, `1m30s`, `1h`, or plain seconds (`2`,
    /// `0.5`); from 10ms to 24h.
    #[arg(long, default_value = "1s", value_parser = parse_duration, allow_hyphen_values = true)]
    pub interval: Duration,

    /// Keep sampling and redraw every interval until Ctrl-C or `q`, like top. In a terminal: a
    /// full screen sorted by the current rate (keys: q quit, p pause, < and > move the sort
    /// column, n r o m s f sort by name, rate, opens, memory, sockets, fds); when standard
    /// output is not a terminal (or TERM=dumb): one table after another. With `-o json`: JSON
    /// Lines, one complete document per interval. Counters count since podnet started.
    #[arg(short, long)]
    pub watch: bool,

    /// With --watch, stop after this many intervals (at least 1).
    #[arg(long, value_name = "N", requires = "watch", value_parser = clap::value_parser!(u64).range(1..))]
    pub iterations: Option<u64>,

    /// Output format: `table`, `wide` (more columns), or `json` (schema podnet/v1).
    #[arg(short, long, value_enum, default_value = "table")]
    pub output: Output,

    /// Sort rows, and `-o json` items, by this column (largest first; `name` sorts by
    /// namespace/pod; `rate` is receive plus send rate) [default: `net` for a table, `rate`
    /// with --watch, `name` for JSON].
    #[arg(long, value_enum, value_name = "KEY")]
    pub sort: Option<SortKey>,

    /// Also show one row per container under its pod (a CONTAINER column; every row carries its
    /// namespace and pod).
    #[arg(long)]
    pub containers: bool,

    /// Leave out the table's header row (as kubectl's --no-headers).
    #[arg(long)]
    pub no_headers: bool,

    /// Add a last row, `TOTAL`, summing every pod (as kubectl top's --sum).
    #[arg(long)]
    pub sum: bool,

    /// Only pods in this namespace.
    #[arg(short, long, conflicts_with = "all_namespaces")]
    pub namespace: Option<String>,

    /// Pods in every namespace (the default).
    #[arg(short = 'A', long)]
    pub all_namespaces: bool,

    /// Label selector, as kubectl takes it: `app=web`, `tier!=db,env in (prod,staging)`.
    #[arg(short = 'l', long)]
    pub selector: Option<String>,

    #[command(flatten)]
    pub cluster: crate::discover::ClusterArgs,

    /// Read pods from the output of `kubectl get pods -o json` (a file, or `-` for stdin) instead
    /// of asking the API server.
    #[arg(long, value_name = "FILE|-")]
    pub pods_from: Option<String>,

    /// Capacity: the most pods podnet tracks at once (its BPF maps are sized from this, 8
    /// cgroups per pod). Pods beyond it are reported in warnings, never counted wrong.
    #[arg(long, default_value_t = 1024, value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    pub max_pods: u32,

    /// Where `podnet agent` pins its state: when it holds an agent's maps, podnet reads them for
    /// the window instead of attaching programs of its own.
    #[arg(long, default_value = crate::pins::DEFAULT_DIR, value_name = "DIR")]
    pub pin_dir: PathBuf,

    /// With --watch, how often to list the pods again (attach to new ones, let go of deleted
    /// ones, register restarted containers); never more often than --interval. A failed
    /// refresh keeps the pods known before: one warning when it starts failing, one note when it
    /// works again.
    #[arg(long, value_name = "DURATION", default_value = "10s", value_parser = parse_duration)]
    pub refresh_interval: Duration,

    /// How file opens are counted: `fexit` (on the open path through a BPF trampoline, only
    /// opens pay; needs the kernel's BTF), `kprobe` (on the open path, only opens pay),
    /// `tracepoint` (the syscall tracepoints: every syscall on the node pays while podnet runs),
    /// or `auto` (fexit where the kernel has BTF, else kprobes where it has them, else
    /// tracepoints with a warning).
    #[arg(long, value_enum, default_value = "auto", value_name = "PROBE")]
    pub open_probe: crate::attach::OpenProbe,
}

/// Parses `1s`, `500ms`, `1.5s`, `2m`, `1m30s`, `1h`, `1.5` (plain seconds); from 10ms to 24h.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let t = s.trim();
    let bad = || format!("interval `{t}` is not a duration like 1s, 500ms, 1m30s or 1h");
    let (negative, body) = match t.strip_prefix('-') {
        Some(b) => (true, b),
        None => (false, t.strip_prefix('+').unwrap_or(t)),
    };
    let number = |c: char| c.is_ascii_digit() || c == '.';
    let secs = if !body.is_empty() && body.chars().all(number) {
        body.parse::<f64>().map_err(|_| bad())?
    } else {
        let mut secs = 0.0;
        let mut rest = body;
        if rest.is_empty() {
            return Err(bad());
        }
        while !rest.is_empty() {
            let n = rest.find(|c: char| !number(c)).unwrap_or(rest.len());
            let (num, tail) = rest.split_at(n);
            let u = tail
                .find(|c: char| !c.is_ascii_alphabetic())
                .unwrap_or(tail.len());
            let (unit, tail) = tail.split_at(u);
            let v: f64 = num.parse().map_err(|_| bad())?;
            let scale = match unit {
                "ms" => 0.001,
                "s" => 1.0,
                "m" => 60.0,
                "h" => 3600.0,
                "" => return Err(bad()),
                _ => {
                    return Err(format!(
                        "interval `{t}`: unknown unit `{unit}` (use ms, s, m or h)"
                    ))
                }
            };
            secs += v * scale;
            rest = tail;
        }
        secs
    };
    let secs = if negative { -secs } else { secs };
    if !(0.01..=86_400.0).contains(&secs) {
        return Err(format!("interval `{t}` must be between 10ms and 24h"));
    }
    Ok(Duration::from_secs_f64(secs))
}

/// The sort when `--sort` is not given: the busiest network first in a table, the current
/// rate on a watch screen, namespace/pod for JSON (stable from one document to the next).
pub(super) fn effective_sort(args: &StatsArgs) -> SortKey {
    args.sort.unwrap_or(match (args.output, args.watch) {
        (Output::Json, _) => SortKey::Name,
        (_, true) => SortKey::Rate,
        (_, false) => SortKey::Net,
    })
}

pub(super) fn table_options(args: &StatsArgs) -> TableOptions {
    TableOptions {
        wide: args.output == Output::Wide,
        containers: args.containers,
        sort: effective_sort(args),
        no_headers: args.no_headers,
        sum: args.sum,
        rates_only: false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("1s").unwrap(), Duration::from_secs(1));
        assert_eq!(parse_duration("250ms").unwrap(), Duration::from_millis(250));
        assert_eq!(parse_duration("2m").unwrap(), Duration::from_secs(120));
        assert_eq!(parse_duration("1.5").unwrap(), Duration::from_millis(1500));
        assert!(parse_duration("0s").is_err());
        // `3h` became valid with hours (1h, 1m30s); an unknown unit is still named.
        assert!(parse_duration("3d").unwrap_err().contains("unknown unit"));
        assert!(parse_duration("x").is_err());
        assert_eq!(parse_duration("1h").unwrap(), Duration::from_secs(3600));
        assert_eq!(parse_duration("1m30s").unwrap(), Duration::from_secs(90));
        assert_eq!(parse_duration("1.5s").unwrap(), Duration::from_millis(1500));
        assert_eq!(
            parse_duration("1s500ms").unwrap(),
            Duration::from_millis(1500)
        );
        for bad in ["-1s", "-1", "-1m30s", "25h", "5ms"] {
            let e = parse_duration(bad).unwrap_err();
            assert!(e.contains("between 10ms and 24h"), "{bad}: {e}");
        }
        for bad in ["", "s", "1.2.3s", "1 s x", "1s-2s"] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
    }
}
