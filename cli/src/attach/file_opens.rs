//! How podnet counts file opens: the `--open-probe` choice, and attaching the file-open programs
//! to `do_sys_openat2` (an fexit program where the kernel has BTF, else a kprobe and kretprobe) or,
//! where the kernel allows neither, to the open-family syscall tracepoints.

use anyhow::{bail, Context, Result};
use log::debug;

use podnet_loader::Error as LoaderError;

use super::pinned::pin_or_keep;
use super::Tracker;
use crate::pins;

/// Syscalls whose tracepoints count file opens; only `openat` exists everywhere (arm64 has no
/// `open`/`creat`, kernels before 5.6 no `openat2`). `open` matters: musl (Alpine images) calls
/// it on x86_64.
pub const OPEN_SYSCALLS: [&str; 4] = ["openat", "openat2", "open", "creat"];

/// The kernel function every open-family syscall goes through (Linux 5.6): the file-open fexit
/// program, or the kprobes, sit on its entry and return.
pub const OPEN_FUNCTION: &str = "do_sys_openat2";

/// The file-open program for fexit: opens and failed opens, counted as each open returns.
pub const OPEN_FEXIT: &str = "podnet_open_fexit";

/// The file-open program for the syscall tracepoints, attached to each syscall's exit event:
/// opens and failed opens, counted as each syscall returns.
pub(super) const OPEN_TRACEPOINT: &str = "podnet_open_exit";

/// The file-open programs for kprobes: (program, what it counts).
pub(super) const OPEN_KPROBES: [&str; 2] = ["podnet_open_kprobe", "podnet_open_kretprobe"];

/// How file opens are counted (`--open-probe`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum OpenProbe {
    /// fexit on the open path where the kernel has BTF, else kprobes there, else the syscall
    /// tracepoints.
    Auto,
    /// An fexit program on do_sys_openat2, through a BPF trampoline: only opens pay, least of
    /// all. Fails where the kernel has no BTF (/sys/kernel/btf/vmlinux).
    Fexit,
    /// A kprobe and a kretprobe on do_sys_openat2: only opens pay. Fails where the kernel has
    /// no kprobes.
    Kprobe,
    /// The open-family syscall tracepoints: every syscall of every process on the node takes the
    /// kernel's slower traced path while they are attached.
    Tracepoint,
}

/// What counts file opens in a running tracker.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FileOpenProbe {
    /// The fexit program on [`OPEN_FUNCTION`].
    Fexit,
    /// The kprobe and kretprobe on [`OPEN_FUNCTION`].
    Kprobe,
    /// The open-family syscall tracepoints.
    Tracepoint,
}

impl FileOpenProbe {
    /// The name shown in `fileOpenProbe` of the JSON document.
    pub fn name(self) -> &'static str {
        match self {
            FileOpenProbe::Fexit => "fexit",
            FileOpenProbe::Kprobe => "kprobe",
            FileOpenProbe::Tracepoint => "tracepoint",
        }
    }
}

/// The start of the warning given when file opens are counted with the syscall tracepoints
/// although fexit or kprobes were asked for (`--open-probe auto`).
pub const TRACEPOINT_OPENS_WARNING: &str = "file opens are counted with syscall tracepoints";

impl Tracker {
    /// Attaches the file-open programs as `want` says: [`OpenProbe::Auto`] takes the fexit
    /// program on [`OPEN_FUNCTION`] where it loaded and attaches (the kernel has BTF and BPF
    /// trampolines), else the kprobes there where they attach (the kernel has kprobes and the
    /// function), else the syscall tracepoints (with a warning naming their cost). An agent that adopts pins keeps
    /// whichever an earlier agent pinned, so opens are never counted twice. Returns warnings.
    pub fn attach_file_opens(&mut self, want: OpenProbe) -> Result<Vec<String>> {
        let pinned = self.pins.as_ref().and_then(|d| pins::file_open_probe(d));
        let want = match (pinned, want) {
            (Some(FileOpenProbe::Fexit), _) => OpenProbe::Fexit,
            (Some(FileOpenProbe::Kprobe), _) => OpenProbe::Kprobe,
            (Some(FileOpenProbe::Tracepoint), _) => OpenProbe::Tracepoint,
            (None, w) => w,
        };
        let degraded = match want {
            OpenProbe::Tracepoint => None,
            OpenProbe::Fexit => {
                return self.attach_open_fexit().with_context(|| {
                    format!(
                        "counting file opens with fexit on {OPEN_FUNCTION} (--open-probe fexit)"
                    )
                });
            }
            OpenProbe::Kprobe => {
                return self.attach_open_kprobes().with_context(|| {
                    format!(
                        "counting file opens with kprobes on {OPEN_FUNCTION} (--open-probe kprobe)"
                    )
                });
            }
            // Attaching is the test: it fails where the function, BTF or kprobes are missing.
            // Only then are /proc/kallsyms and available_filter_functions read (slow: 100k+
            // lines), to say why.
            OpenProbe::Auto => {
                let fexit = match self.attach_open_fexit() {
                    Ok(w) => return Ok(w),
                    Err(e) => short_reason(&e),
                };
                let kprobe = match self.attach_open_kprobes() {
                    Ok(w) => return Ok(w),
                    Err(e) => match podnet_loader::kernel_function_exists(OPEN_FUNCTION) {
                        Ok(false) => {
                            format!("no function {OPEN_FUNCTION} in /proc/kallsyms (Linux 5.6)")
                        }
                        _ => short_reason(&e),
                    },
                };
                Some(format!("fexit: {fexit}; kprobes: {kprobe}"))
            }
        };
        let mut warnings = match self.attach_file_tracepoints() {
            Err(e) if perf_events_restricted(&e) => {
                // Nothing else depends on perf events: count the rest, and say what is missing.
                self.variant.file_opens = None;
                return Ok(vec![format!(
                    "{NO_FILE_OPENS}: this kernel lets only CAP_SYS_ADMIN open the perf events \
                     the file-open probes need (kernel.perf_event_paranoid={}, as Debian's and \
                     Ubuntu's kernels set it; CAP_PERFMON is not enough there): add CAP_SYS_ADMIN, \
                     or set `sysctl kernel.perf_event_paranoid=2` on the node",
                    perf_event_paranoid().map_or("?".into(), |n| n.to_string())
                )]);
            }
            other => other?,
        };
        if let Some(reason) = degraded {
            debug!("no file-open kprobes: {reason}");
            warnings.push(format!(
                "{TRACEPOINT_OPENS_WARNING}: while podnet runs, every system call of every \
                 process on the node takes the kernel's slower traced path (getpid takes about 10% \
                 longer); the open path itself could not be probed ({reason})"
            ));
        }
        Ok(warnings)
    }

    /// Attaches the fexit program on [`OPEN_FUNCTION`]: one BPF link, pinned in pinned mode.
    fn attach_open_fexit(&mut self) -> Result<Vec<String>> {
        if let Some(why) = &self.variant.fexit_unavailable {
            bail!("{why}");
        }
        let prog = self.object.program(OPEN_FEXIT).with_context(|| {
            format!(
                "{OPEN_FEXIT} was not loaded (the agent that pinned podnet's programs could not)"
            )
        })?;
        let mut warnings = Vec::new();
        let pin = self.pins.as_ref().map(|d| pins::fexit(d, OPEN_FEXIT));
        if pin.as_ref().is_some_and(|p| p.exists()) {
            debug!("{OPEN_FEXIT} stays attached (pinned)");
        } else if !self.read_only {
            let link = prog
                .attach_tracing()
                .with_context(|| format!("attaching {OPEN_FEXIT}"))?;
            debug!("attached {OPEN_FEXIT} ({})", link.target());
            let kept = pin_or_keep(link, pin, &mut warnings);
            self.open_links.extend(kept);
        }
        self.variant.file_opens = Some(FileOpenProbe::Fexit);
        Ok(warnings)
    }

    /// Attaches the kprobe and kretprobe on [`OPEN_FUNCTION`]. On error nothing stays attached.
    fn attach_open_kprobes(&mut self) -> Result<Vec<String>> {
        let mut warnings = Vec::new();
        let mut links = Vec::new();
        for program in OPEN_KPROBES {
            let prog = self
                .object
                .program(program)
                .unwrap_or_else(|e| panic!("program {program} is defined in podnet.bpf.c: {e}"));
            if self.read_only {
                continue;
            }
            let pin = self.pins.as_ref().map(|d| pins::kprobe(d, program));
            if pin.as_ref().is_some_and(|p| p.exists()) {
                debug!("{program} stays attached (pinned)");
                continue;
            }
            let link = prog
                .attach_kprobe()
                .with_context(|| format!("attaching {program}"))?;
            debug!("attached {program} ({})", link.target());
            links.extend(pin_or_keep(link, pin, &mut warnings));
        }
        self.open_links.extend(links);
        self.variant.file_opens = Some(FileOpenProbe::Kprobe);
        Ok(warnings)
    }

    /// Attaches the file-open program to the exit tracepoint of every open-family syscall this
    /// kernel has. Returns warnings for optional ones that are missing.
    fn attach_file_tracepoints(&mut self) -> Result<Vec<String>> {
        self.variant.file_opens = Some(FileOpenProbe::Tracepoint);
        let mut warnings = Vec::new();
        let prog = self.object.program(OPEN_TRACEPOINT).unwrap_or_else(|e| {
            panic!("program {OPEN_TRACEPOINT} is defined in podnet.bpf.c: {e}")
        });
        for syscall in OPEN_SYSCALLS {
            let event = format!("sys_exit_{syscall}");
            let exists = podnet_loader::tracepoint_exists("syscalls", &event)
                .context("looking for the syscall tracepoints in tracefs")?;
            if !exists {
                if syscall == "openat" {
                    bail!(
                        "this kernel has no syscalls/{event} tracepoint: podnet counts file \
                         opens with it (needs CONFIG_FTRACE_SYSCALLS)"
                    );
                }
                debug!("no tracepoint syscalls/{event} on this kernel: skipped");
                continue;
            }
            if self.read_only {
                continue;
            }
            let pin = self.pins.as_ref().map(|d| pins::tracepoint(d, &event));
            if pin.as_ref().is_some_and(|p| p.exists()) {
                debug!("{OPEN_TRACEPOINT} stays attached to syscalls/{event} (pinned)");
                continue;
            }
            let link = prog
                .attach_tracepoint("syscalls", &event)
                .with_context(|| format!("attaching {OPEN_TRACEPOINT} to syscalls/{event}"))?;
            debug!("attached {OPEN_TRACEPOINT} to syscalls/{event}");
            let kept = pin_or_keep(link, pin, &mut warnings);
            self.open_links.extend(kept);
        }
        if self.open_links.is_empty() && self.pins.is_none() {
            warnings.push("no file-open tracepoints attached: file opens read 0".to_string());
        }
        Ok(warnings)
    }
}

/// Why a file-open probe did not attach, in a few words: the loader's own reason for the kinds
/// of refusal that say what the kernel lacks, else the whole error chain.
fn short_reason(e: &anyhow::Error) -> String {
    match e.chain().find_map(|c| c.downcast_ref::<LoaderError>()) {
        Some(LoaderError::NoTracing(why)) => why.clone(),
        Some(LoaderError::NoKprobes(why)) => {
            format!("{why}; the kernel needs CONFIG_KPROBES and CONFIG_KPROBE_EVENTS")
        }
        _ => format!("{e:#}"),
    }
}

/// The start of the warning when no file-open probe could be attached.
pub const NO_FILE_OPENS: &str = "file opens are not counted (null)";

/// `kernel.perf_event_paranoid`.
pub fn perf_event_paranoid() -> Option<i32> {
    std::fs::read_to_string("/proc/sys/kernel/perf_event_paranoid")
        .ok()?
        .trim()
        .parse()
        .ok()
}

/// Did attaching fail because the kernel restricts perf events to CAP_SYS_ADMIN (paranoid level
/// above 2, a Debian and Ubuntu patch) and this process lacks it?
fn perf_events_restricted(e: &anyhow::Error) -> bool {
    let denied = e.chain().any(|c| {
        matches!(
            c.downcast_ref::<LoaderError>(),
            Some(LoaderError::PermissionDenied { .. })
        )
    });
    denied
        && perf_event_paranoid().is_some_and(|n| n > 2)
        && !crate::privileges::has_capability(crate::privileges::CAP_SYS_ADMIN)
}
