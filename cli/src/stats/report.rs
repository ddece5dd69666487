//! One report of `podnet stats`: the sampled counters and gauges aggregated into a
//! `PodStatsList` stamped with its RFC 3339 time, printed to standard output as a table, a
//! stream of tables or JSON.

use std::collections::HashMap;
use std::io::Write;
use std::time::SystemTime;

use anyhow::{Context, Result};

use super::args::{effective_sort, table_options, StatsArgs};
use super::pods::State;
use crate::aggregate::{aggregate, Window};
use crate::attach::Tracker;
use crate::model::PodStatsList;
use crate::render::{self, Output};
use crate::sample::{self, Snapshot};

pub(super) fn report(
    state: &State,
    base: &Snapshot,
    prev: &Snapshot,
    now: &Snapshot,
    tracker: &Tracker,
) -> PodStatsList {
    let cgroups = state.pods.iter().flat_map(|p| {
        std::iter::once((p.cgroup_id, &p.files, &p.cgroup_path)).chain(
            p.containers
                .iter()
                .filter(|c| c.retired.is_none())
                .map(|c| (c.cgroup_id, &c.files, &c.cgroup_path)),
        )
    });
    let gauges: HashMap<_, _> = cgroups
        .map(|(id, files, rel)| (id, sample::read_gauges(files, rel)))
        .collect();
    let window = Window { base, prev, now };
    let mut doc = PodStatsList::new(
        state.node.clone(),
        rfc3339(SystemTime::now()),
        now.at.duration_since(prev.at).as_secs_f64(),
    );
    doc.items = aggregate(&state.pods, &window, &gauges);
    doc.warnings = tracker.variant().warnings();
    doc.file_open_probe = tracker.file_open_probe().map(|p| p.name());
    if doc.file_open_probe.is_none() {
        doc.opens_unknown();
    }
    doc.warnings.extend(state.lasting.iter().cloned());
    doc.warnings.extend(state.warnings.iter().cloned());
    doc.warnings.extend(state.notices.iter().cloned());
    doc.warnings
        .extend(sample::miss_warnings(tracker.capacity(), base, now));
    doc.warnings.extend(sample::gauge_warnings(gauges.values()));
    doc
}

/// What became of a report written to stdout.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Printed {
    Written,
    /// Stdout is a pipe whose read end is closed (EPIPE): there is no one left to print for.
    ReaderGone,
}

pub(super) fn print_report(
    doc: &PodStatsList,
    args: &StatsArgs,
    empty: Option<&str>,
) -> Result<Printed> {
    let mut out = std::io::stdout().lock();
    let text = match args.output {
        Output::Json => {
            let mut doc = doc.clone();
            render::sort_items(&mut doc, effective_sort(args));
            if args.watch {
                render::render_json_line(&doc)
            } else {
                render::render_json(&doc)
            }
        }
        Output::Table | Output::Wide => {
            let table = render::render_table_with(doc, &table_options(args));
            if args.watch {
                // Not a terminal (or TERM=dumb): one frame after another, line by line.
                let mut s = format!(
                    "{} · {} UTC\n\n{table}",
                    render::screen::header_line(doc, args.interval),
                    render::screen::time_of(doc)
                );
                for w in &doc.warnings {
                    s.push_str(&format!("warning: {w}\n"));
                }
                if let Some(e) = empty {
                    s.push_str(&format!("{e}\n"));
                }
                s
            } else {
                for w in &doc.warnings {
                    eprintln!("warning: {w}");
                }
                if let Some(e) = empty {
                    // Like kubectl's "No resources found": on stderr, the table stays parseable.
                    eprintln!("{e}");
                }
                table
            }
        }
    };
    if text.is_empty() {
        // --no-headers and no pods: nothing at all, as kubectl prints.
        return write_report(&mut out, "");
    }
    let text = if text.ends_with('\n') {
        text
    } else {
        text + "\n"
    };
    write_report(&mut out, &text)
}

/// Writes one report. A closed pipe (`podnet stats | head`) is not an error worth a message, but
/// it ends the run: see [`Printed::ReaderGone`]. Any other failure is an error.
fn write_report(out: &mut impl Write, text: &str) -> Result<Printed> {
    match out.write_all(text.as_bytes()).and_then(|_| out.flush()) {
        Ok(()) => Ok(Printed::Written),
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(Printed::ReaderGone),
        Err(e) => Err(e).context("writing the report to standard output"),
    }
}

/// Formats a time as RFC 3339 UTC with millisecond precision (`2026-11-21T10:00:00.123Z`),
/// truncated to the millisecond. A time before 1970 prints as the epoch; one past the end of
/// jiff's range (9999-12-30T22:00:00.999Z) as that end, so the year always has four digits.
pub fn rfc3339(t: SystemTime) -> String {
    let since = t.duration_since(SystemTime::UNIX_EPOCH).unwrap_or_default();
    let nanos = since.subsec_millis() * 1_000_000;
    let at = i64::try_from(since.as_secs())
        .ok()
        .and_then(|secs| jiff::Timestamp::new(secs, nanos as i32).ok())
        .unwrap_or(jiff::Timestamp::MAX);
    format!("{at:.3}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    /// A writer that fails every write with `kind`.
    struct Failing(std::io::ErrorKind);

    impl Write for Failing {
        fn write(&mut self, _: &[u8]) -> std::io::Result<usize> {
            Err(self.0.into())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Err(self.0.into())
        }
    }

    #[test]
    fn a_closed_pipe_ends_the_run_and_other_write_errors_are_errors() {
        let mut buf = Vec::new();
        assert_eq!(write_report(&mut buf, "x\n").unwrap(), Printed::Written);
        assert_eq!(buf, b"x\n");
        let gone = write_report(&mut Failing(std::io::ErrorKind::BrokenPipe), "x\n").unwrap();
        assert_eq!(gone, Printed::ReaderGone);
        let e = write_report(&mut Failing(std::io::ErrorKind::StorageFull), "x\n").unwrap_err();
        assert!(format!("{e:#}").contains("standard output"), "{e:#}");
    }

    #[test]
    fn timestamps() {
        let at = |s| SystemTime::UNIX_EPOCH + Duration::from_secs(s);
        // Millisecond precision since the issue "podnet stats feels like top": the expectations
        // gained `.000`. Each expectation is `date -u -d @SECONDS +%Y-%m-%dT%H:%M:%SZ` with `.000`.
        assert_eq!(rfc3339(at(0)), "1970-01-01T00:00:00.000Z");
        // 2026-11-21T10:00:00Z
        assert_eq!(rfc3339(at(1_795_255_200)), "2026-11-21T10:00:00.000Z");
        // A leap day: 2024-02-29T23:59:59Z
        assert_eq!(rfc3339(at(1_709_251_199)), "2024-02-29T23:59:59.000Z");
        let ms = at(1_709_251_199) + Duration::from_micros(123_999);
        assert_eq!(rfc3339(ms), "2024-02-29T23:59:59.123Z");
        // Century years: 2000 is a leap year, 2100 is not.
        assert_eq!(rfc3339(at(951_868_800)), "2000-03-01T00:00:00.000Z");
        assert_eq!(rfc3339(at(4_107_542_400)), "2100-03-01T00:00:00.000Z");
        // A far date, then the last second jiff holds, and beyond it.
        assert_eq!(rfc3339(at(32_503_680_000)), "3000-01-01T00:00:00.000Z");
        assert_eq!(rfc3339(at(253_402_207_199)), "9999-12-30T21:59:59.000Z");
        assert_eq!(rfc3339(at(253_402_300_799)), "9999-12-30T22:00:00.999Z");
        // Before 1970.
        let before = SystemTime::UNIX_EPOCH - Duration::from_secs(1);
        assert_eq!(rfc3339(before), "1970-01-01T00:00:00.000Z");
    }
}
