//! Loaded programs and their attachments (links).

use std::ffi::CString;
use std::fs::File;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};

use crate::elf::{ProgramKind, ProgramSpec};
use crate::error::{Error, Result};
use crate::kernel_files::tracepoint_id;
use crate::map::pin_fd;
use crate::reloc::Insn;
use crate::sys;
use crate::uapi::AttachType;

/// Lines of the verifier log kept in [`Error::Verifier`].
const LOG_TAIL_LINES: usize = 20;
const LOG_START: usize = 1 << 16;
const LOG_MAX: usize = 1 << 24;

/// A program loaded into the kernel. Dropping it closes its fd; attached links keep the program
/// alive on their own.
#[derive(Debug)]
pub struct Program {
    name: String,
    section: String,
    kind: ProgramKind,
    fd: OwnedFd,
}

/// The text of a verifier log (NUL-terminated in its buffer).
fn log_text(buf: &[u8]) -> String {
    let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
    String::from_utf8_lossy(&buf[..end]).into_owned()
}

/// The last `n` non-empty lines of a verifier log (NUL-terminated in its buffer).
pub(crate) fn log_tail(buf: &[u8], n: usize) -> String {
    let text = log_text(buf);
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// Is this log line part of the verifier's dump (an instruction, register state, a source
/// comment, the statistics at the end) rather than a verdict?
fn is_dump_line(line: &str) -> bool {
    let l = line.trim();
    let numbered = l
        .split_once(':')
        .is_some_and(|(n, _)| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()));
    numbered
        || l.starts_with(';')
        || is_register_state(l)
        || l.starts_with("frame")
        || l.starts_with("from ")
        || l.starts_with("processed ")
        || l.starts_with("verification time")
        || l.starts_with("stack depth")
        || l.starts_with("mark_precise")
        || l.starts_with("last_idx")
        || l.starts_with("regs=")
        || l.starts_with("parent ")
        || l.starts_with("func#")
        || l.starts_with("propagating")
        || l.starts_with("Validating ")
}

/// `R1=ctx(...)`, `R6_w=...`: a register's state (`R0 invalid mem access` is a verdict).
fn is_register_state(l: &str) -> bool {
    let Some(rest) = l.strip_prefix('R') else {
        return false;
    };
    let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
    digits > 0 && matches!(rest.as_bytes().get(digits), Some(b'=') | Some(b'_'))
}

/// The verifier's verdict in its log: the last line that is not part of the dump (for
/// `unknown func bpf_get_current_cgroup_id#80` that is the line before "processed N insns").
pub(crate) fn log_reason(log: &str) -> Option<String> {
    log.lines()
        .rev()
        .map(str::trim)
        .find(|l| !l.is_empty() && !is_dump_line(l))
        .map(str::to_string)
}

/// The reason given for a refusal that came without a verifier log.
fn no_log_reason(errno: Option<i32>, log_size: usize) -> String {
    format!(
        "{}; the kernel wrote no verifier log (asked at log level 1 with a {log_size}-byte buffer)",
        prog_load_errno_meaning(errno)
    )
}

/// What an errno from BPF_PROG_LOAD means, for a load that left no log to explain it.
fn prog_load_errno_meaning(errno: Option<i32>) -> &'static str {
    match errno {
        Some(libc::EINVAL) => {
            "EINVAL from BPF_PROG_LOAD: this kernel does not know the program type, attach type, \
             an instruction or an attribute (a kernel older than the program needs), or the \
             program is malformed"
        }
        Some(libc::EACCES) => "EACCES from BPF_PROG_LOAD: the verifier judged the program unsafe",
        Some(libc::E2BIG) => {
            "E2BIG from BPF_PROG_LOAD: the program has more instructions than this kernel allows, \
             or the kernel is older than the attribute layout"
        }
        Some(libc::ENOMEM) => {
            "ENOMEM from BPF_PROG_LOAD: out of memory, or RLIMIT_MEMLOCK too low on kernels \
             before 5.11 (`ulimit -l unlimited`)"
        }
        Some(libc::EFAULT) => "EFAULT from BPF_PROG_LOAD: the loader passed a bad pointer",
        _ => "the kernel gave no reason",
    }
}

impl Program {
    /// Loads relocated instructions (BPF_PROG_LOAD). The first attempt has no log; if it fails,
    /// the load is repeated with a verifier log, grown on ENOSPC, whose tail goes in the error.
    pub(crate) fn load(spec: &ProgramSpec, insns: &[Insn], license: &str) -> Result<Program> {
        let license = CString::new(license).map_err(|_| {
            Error::InvalidArgument(format!("license of `{}` contains a NUL byte", spec.name))
        })?;
        let attach_btf_id = match &spec.kind {
            ProgramKind::Tracing { function, .. } => {
                crate::kernel_btf::kernel_btf_function_id(function)?
            }
            _ => 0,
        };
        let attr = sys::ProgLoad {
            prog_type: spec.kind.prog_type(),
            expected_attach_type: spec.kind.expected_attach_type(),
            insns,
            license: &license,
            name: &spec.name,
            attach_btf_id,
        };
        let program = |fd| Program {
            name: spec.name.clone(),
            section: spec.section.clone(),
            kind: spec.kind.clone(),
            fd,
        };
        let first = match sys::memlock_retry(|| sys::prog_load(&attr, None)) {
            Ok(fd) => return Ok(program(fd)),
            Err(e) => e,
        };
        if matches!(first.raw_os_error(), Some(libc::EPERM)) {
            return Err(Error::sys(format!("load program `{}`", spec.name), first));
        }
        let mut size = LOG_START;
        loop {
            let mut log = vec![0u8; size];
            match sys::prog_load(&attr, Some((&mut log, 1))) {
                Ok(fd) => return Ok(program(fd)),
                Err(e) if e.raw_os_error() == Some(libc::ENOSPC) && size < LOG_MAX => size *= 4,
                Err(e) => {
                    let truncated = e.raw_os_error() == Some(libc::ENOSPC);
                    let e = if truncated { first } else { e };
                    let text = log_text(&log);
                    let tail = log_tail(&log, LOG_TAIL_LINES);
                    if matches!(e.raw_os_error(), Some(libc::EACCES)) && tail.is_empty() {
                        return Err(Error::sys(format!("load program `{}`", spec.name), e));
                    }
                    let reason =
                        log_reason(&text).unwrap_or_else(|| no_log_reason(e.raw_os_error(), size));
                    return Err(Error::Verifier {
                        program: spec.name.clone(),
                        source: e,
                        reason,
                        log_tail: tail,
                        log: text,
                        truncated,
                    });
                }
            }
        }
    }

    /// Function name of the program.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// ELF section it came from.
    pub fn section(&self) -> &str {
        &self.section
    }

    /// Program type and attach type.
    pub fn kind(&self) -> &ProgramKind {
        &self.kind
    }

    /// The program's file descriptor.
    pub fn fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }

    /// Pins the program at `path` on bpffs (BPF_OBJ_PIN), creating parent directories (mode
    /// 0700), so that a later process can attach it again ([`Program::from_pin`]).
    pub fn pin(&self, path: impl AsRef<Path>) -> Result<()> {
        pin_fd(
            self.fd.as_fd(),
            path.as_ref(),
            &format!("program `{}`", self.name),
        )
    }

    /// Opens a program pinned on bpffs (BPF_OBJ_GET). Its name and kind are the caller's word:
    /// the kernel keeps neither the section nor the attach type of a loaded program.
    pub fn from_pin(path: impl AsRef<Path>, spec: &ProgramSpec) -> Result<Program> {
        let path = path.as_ref();
        let c = crate::map::path_cstring(path)?;
        let fd = sys::obj_get(&c)
            .map_err(|e| Error::sys(format!("open pinned program {}", path.display()), e))?;
        Ok(Program {
            name: spec.name.clone(),
            section: spec.section.clone(),
            kind: spec.kind.clone(),
            fd,
        })
    }

    /// The kernel's id of this program (what [`query_cgroup_programs`] returns).
    pub fn id(&self) -> Result<u32> {
        sys::prog_id(self.fd.as_fd())
            .map_err(|e| Error::sys(format!("get info of program `{}`", self.name), e))
    }

    /// Attaches a cgroup program (cgroup_skb, cgroup/sock_*, sockops) to the cgroup v2 directory
    /// `cgroup` with a BPF link (Linux 5.7; `cgroup/sock_release` needs 5.9). Several programs
    /// may share a cgroup hook. The link detaches when the returned [`Link`] is dropped, or when
    /// this process exits.
    pub fn attach_cgroup(&self, cgroup: impl AsRef<Path>) -> Result<Link> {
        let path = cgroup.as_ref();
        let dir = File::open(path).map_err(|e| match e.raw_os_error() {
            Some(libc::ENOTDIR) => Error::NotCgroupV2 {
                path: path.display().to_string(),
            },
            _ => Error::io(path, e),
        })?;
        self.attach_cgroup_fd_named(dir.as_fd(), &path.display().to_string())
    }

    /// Like [`Program::attach_cgroup`], with an open cgroup directory fd.
    pub fn attach_cgroup_fd(&self, cgroup: BorrowedFd<'_>) -> Result<Link> {
        self.attach_cgroup_fd_named(cgroup, &format!("cgroup fd {cgroup:?}"))
    }

    fn attach_cgroup_fd_named(&self, cgroup: BorrowedFd<'_>, label: &str) -> Result<Link> {
        if !self.kind.is_cgroup() {
            return Err(Error::InvalidArgument(format!(
                "program `{}` is not a cgroup program",
                self.name
            )));
        }
        let attach_type = self.kind.attach_type();
        let fd = sys::link_create(self.fd.as_fd(), cgroup, attach_type).map_err(|e| match e.raw_os_error() {
            Some(libc::EBADF) | Some(libc::ENOTDIR) => Error::NotCgroupV2 { path: label.into() },
            Some(libc::E2BIG) => Error::TooManyPrograms { path: label.into() },
            Some(libc::EINVAL) => Error::Syscall {
                op: format!(
                    "attach program `{}` ({attach_type:?}) to {label} with a BPF link (needs Linux 5.7, \
                     5.9 for sock_release)",
                    self.name
                ),
                source: e,
            },
            _ => Error::sys(format!("attach program `{}` to {label}", self.name), e),
        })?;
        Ok(Link {
            fd,
            perf_event: None,
            kind: LinkKind::Cgroup(attach_type),
            target: label.into(),
            pinned: None,
        })
    }

    /// Attaches a tracepoint program to `category/event` (e.g. `syscalls`, `sys_enter_openat`),
    /// which need not be the one in its section name. Uses perf_event_open plus a BPF perf link
    /// (Linux 5.15); older kernels get PERF_EVENT_IOC_SET_BPF. Detaches when the [`Link`] drops.
    pub fn attach_tracepoint(&self, category: &str, event: &str) -> Result<Link> {
        if !matches!(self.kind, ProgramKind::Tracepoint { .. }) {
            return Err(Error::InvalidArgument(format!(
                "program `{}` is not a tracepoint program",
                self.name
            )));
        }
        let id = tracepoint_id(category, event)?;
        let target = format!("tracepoint {category}/{event}");
        let perf = sys::perf_event_open_tracepoint(id)
            .map_err(|e| Error::sys(format!("perf_event_open for {target}"), e))?;
        self.attach_perf_event(perf, target)
    }

    /// Attaches a kprobe program (`kprobe/<function>`, or `kretprobe/<function>` for the return)
    /// to its kernel function: perf_event_open with the kprobe PMU, then a BPF perf link (Linux
    /// 5.15; older kernels get PERF_EVENT_IOC_SET_BPF). The probe is the perf event's own, so it
    /// never shows in tracefs `kprobe_events` and goes away with the [`Link`] or the process.
    pub fn attach_kprobe(&self) -> Result<Link> {
        let ProgramKind::Kprobe { function, retprobe } = &self.kind else {
            return Err(Error::InvalidArgument(format!(
                "program `{}` is not a kprobe program",
                self.name
            )));
        };
        let pmu = crate::kprobe::kprobe_pmu()?;
        let name = CString::new(function.as_str()).map_err(|_| {
            Error::InvalidArgument(format!("kernel function name {function:?} contains a NUL"))
        })?;
        let target = format!(
            "{} {function}",
            if *retprobe { "kretprobe" } else { "kprobe" }
        );
        let bit = retprobe.then_some(pmu.retprobe_bit);
        let perf = sys::perf_event_open_kprobe(pmu.pmu_type, bit, &name).map_err(|e| {
            match e.raw_os_error() {
                // No such symbol, or one kprobes may not touch (blacklisted, notrace).
                Some(libc::ENOENT) | Some(libc::EINVAL) => Error::Syscall {
                    op: format!(
                        "perf_event_open for {target} (is {function} a kernel function kprobes \
                         may probe? see /proc/kallsyms)"
                    ),
                    source: e,
                },
                _ => Error::sys(format!("perf_event_open for {target}"), e),
            }
        })?;
        self.attach_perf_event(perf, target)
    }

    /// Attaches an fentry/fexit program to the kernel function it was loaded for, through a BPF
    /// trampoline (BPF_RAW_TRACEPOINT_OPEN, which returns a BPF link: pinnable, and detached when
    /// its last holder closes it).
    pub fn attach_tracing(&self) -> Result<Link> {
        let ProgramKind::Tracing { function, exit } = &self.kind else {
            return Err(Error::InvalidArgument(format!(
                "program `{}` is not an fentry/fexit program",
                self.name
            )));
        };
        let target = format!("{} {function}", if *exit { "fexit" } else { "fentry" });
        let fd = sys::raw_tracepoint_open(self.fd.as_fd()).map_err(|e| match e.raw_os_error() {
            // No trampolines on this kernel or architecture.
            Some(sys::ENOTSUPP) | Some(libc::EOPNOTSUPP) => {
                Error::NoTracing(format!("attaching {target}: {e}"))
            }
            _ => Error::sys(format!("attach program `{}` to {target}", self.name), e),
        })?;
        Ok(Link {
            fd,
            perf_event: None,
            kind: LinkKind::Tracing,
            target,
            pinned: None,
        })
    }

    /// Attaches this program to an open perf event with a BPF perf link, or on kernels without
    /// them (before 5.15) with PERF_EVENT_IOC_SET_BPF.
    fn attach_perf_event(&self, perf: OwnedFd, target: String) -> Result<Link> {
        match sys::link_create(self.fd.as_fd(), perf.as_fd(), AttachType::PerfEvent) {
            Ok(fd) => Ok(Link {
                fd,
                perf_event: Some(perf),
                kind: LinkKind::PerfLink,
                target,
                pinned: None,
            }),
            Err(e)
                if matches!(
                    e.raw_os_error(),
                    Some(libc::EINVAL) | Some(libc::EOPNOTSUPP) | Some(sys::ENOTSUPP)
                ) =>
            {
                log::debug!(
                    "no perf-event links ({e}); attaching {target} with PERF_EVENT_IOC_SET_BPF"
                );
                sys::perf_event_attach_bpf(perf.as_fd(), self.fd.as_fd()).map_err(|e| {
                    Error::sys(format!("attach program `{}` to {target}", self.name), e)
                })?;
                Ok(Link {
                    fd: perf,
                    perf_event: None,
                    kind: LinkKind::PerfEventIoctl,
                    target,
                    pinned: None,
                })
            }
            Err(e) => Err(Error::sys(
                format!("attach program `{}` to {target}", self.name),
                e,
            )),
        }
    }
}

/// How a [`Link`] holds its attachment.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LinkKind {
    /// A BPF link on a cgroup.
    Cgroup(AttachType),
    /// A BPF perf-event link on a tracepoint or kprobe (Linux 5.15).
    PerfLink,
    /// A perf event with the program set by ioctl (kernels before 5.15); cannot be pinned.
    PerfEventIoctl,
    /// A BPF tracing link: an fentry/fexit program on its kernel function.
    Tracing,
}

/// An attachment. Dropping it detaches the program, unless it was pinned; the kernel also
/// detaches it when the owning process exits or is killed.
#[derive(Debug)]
pub struct Link {
    fd: OwnedFd,
    /// The perf event under a perf link (kept open alongside it).
    perf_event: Option<OwnedFd>,
    kind: LinkKind,
    target: String,
    pinned: Option<PathBuf>,
}

impl Link {
    /// How this link is held.
    pub fn kind(&self) -> LinkKind {
        self.kind
    }

    /// What it is attached to (cgroup path, `tracepoint cat/event`, `kprobe function` or
    /// `kretprobe function`).
    pub fn target(&self) -> &str {
        &self.target
    }

    /// Detaches now (same as dropping).
    pub fn detach(self) {}

    /// Pins a BPF link on bpffs so the attachment outlives this process; [`Link::unpin`] (or
    /// removing the file) releases it.
    pub fn pin(&mut self, path: impl AsRef<Path>) -> Result<()> {
        if self.kind == LinkKind::PerfEventIoctl {
            return Err(Error::InvalidArgument(format!(
                "{}: perf-event attachments cannot be pinned",
                self.target
            )));
        }
        let path = path.as_ref();
        pin_fd(self.fd.as_fd(), path, &format!("link to {}", self.target))?;
        self.pinned = Some(path.to_path_buf());
        Ok(())
    }

    /// Removes the pin made by [`Link::pin`].
    pub fn unpin(&mut self) -> Result<()> {
        if let Some(path) = self.pinned.take() {
            std::fs::remove_file(&path).map_err(|e| Error::io(path, e))?;
        }
        Ok(())
    }

    /// The link's file descriptor (the perf event's for [`LinkKind::PerfEventIoctl`]).
    pub fn fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

impl Drop for Link {
    fn drop(&mut self) {
        // Closing the fds (after this) detaches the program unless a pin holds the link.
        log::trace!(
            "detaching {} ({:?}, perf event open: {})",
            self.target,
            self.kind,
            self.perf_event.is_some()
        );
    }
}

/// Ids of the programs attached directly to cgroup directory `cgroup` for `attach_type`
/// (BPF_PROG_QUERY), e.g. to check that links were detached.
pub fn query_cgroup_programs(
    cgroup: impl AsRef<Path>,
    attach_type: AttachType,
) -> Result<Vec<u32>> {
    let path = cgroup.as_ref();
    let dir = File::open(path).map_err(|e| Error::io(path, e))?;
    sys::prog_query(dir.as_fd(), attach_type).map_err(|e| match e.raw_os_error() {
        Some(libc::EBADF) | Some(libc::ENOTDIR) => Error::NotCgroupV2 {
            path: path.display().to_string(),
        },
        _ => Error::sys(format!("query programs on {}", path.display()), e),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_tail_keeps_the_last_lines() {
        let mut log = String::new();
        for i in 0..30 {
            log.push_str(&format!("line {i}\n"));
        }
        let mut buf = log.into_bytes();
        buf.extend_from_slice(&[0, b'x', b'y']);
        let tail = log_tail(&buf, 20);
        assert_eq!(tail.lines().count(), 20);
        assert!(tail.starts_with("line 10\n") && tail.ends_with("line 29"));
        assert_eq!(log_tail(b"\0", 20), "");
    }

    #[test]
    fn a_refusal_without_a_log_says_what_was_tried_and_what_the_errno_means() {
        let reason = no_log_reason(Some(libc::EINVAL), 65536);
        assert!(
            reason.starts_with(
                "EINVAL from BPF_PROG_LOAD: this kernel does not know the program type"
            ) && reason.ends_with("(asked at log level 1 with a 65536-byte buffer)"),
            "{reason}"
        );
        assert!(no_log_reason(Some(libc::E2BIG), 1).starts_with("E2BIG from BPF_PROG_LOAD"));
        let shown = Error::Verifier {
            program: "p".into(),
            source: std::io::Error::from_raw_os_error(libc::EINVAL),
            reason,
            log_tail: String::new(),
            log: String::new(),
            truncated: false,
        }
        .to_string();
        assert!(
            shown.starts_with("the kernel refused to load program `p`: EINVAL from BPF_PROG_LOAD")
                && !shown.contains("end of the verifier log"),
            "{shown}"
        );
    }

    #[test]
    fn log_reason_finds_the_verdict_above_the_statistics() {
        // As Linux 6.1 writes it for a helper sockops may not call there.
        let log = "0: R1=ctx(off=0,imm=0) R10=fp0
0: (bf) r6 = r1                       ; R1=ctx(off=0,imm=0) R6_w=ctx(off=0,imm=0)
1: (61) r1 = *(u32 *)(r6 +0)          ; R1_w=scalar(umax=4294967295,var_off=(0x0; 0xffffffff))
3: (15) if r1 == 0x3 goto pc+45 49: R1_w=3 R6_w=ctx(off=0,imm=0) R10=fp0
49: (85) call bpf_get_current_cgroup_id#80
unknown func bpf_get_current_cgroup_id#80
processed 16 insns (limit 1000000) max_states_per_insn 0 total_states 1 peak_states 1 mark_read 1
";
        assert_eq!(
            log_reason(log).as_deref(),
            Some("unknown func bpf_get_current_cgroup_id#80")
        );
        // Linux 5.10 ends with the verdict and a statistics line without "(limit ...)".
        let log = "; return *p;\n3: (61) r0 = *(u32 *)(r0 +0)\nR0 invalid mem access 'map_value_or_null'\nprocessed 4 insns (limit 1000000) max_states_per_insn 0 total_states 0 peak_states 0 mark_read 0\n";
        assert_eq!(
            log_reason(log).as_deref(),
            Some("R0 invalid mem access 'map_value_or_null'")
        );
        // A structural error is the only line.
        assert_eq!(
            log_reason("back-edge from insn 5 to 2\n").as_deref(),
            Some("back-edge from insn 5 to 2")
        );
        assert_eq!(log_reason("0: (95) exit\nprocessed 1 insns\n"), None);
    }
}
