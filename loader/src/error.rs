//! The loader's one error type. Every message says what failed and, where there is one, the fix.

use std::io;
use std::path::PathBuf;

/// Result alias used throughout the loader.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything the loader can fail with.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The input does not start with the ELF magic.
    #[error("not an ELF file: expected a BPF object built with `clang -target bpf -c`")]
    NotElf,
    /// A 32-bit ELF file.
    #[error("32-bit ELF object: BPF objects are 64-bit, build it with `clang -target bpf -c`")]
    Not64Bit,
    /// A big-endian ELF file.
    #[error("big-endian ELF object: podnet loads little-endian BPF, build it with `clang -target bpf -c`")]
    BigEndian,
    /// `e_machine` is not `EM_BPF` (247).
    #[error(
        "ELF e_machine is {0}, not EM_BPF (247): build the object with `clang -target bpf -c`"
    )]
    WrongMachine(u16),
    /// `e_type` is not `ET_REL`.
    #[error(
        "ELF type {0} is not a relocatable object (ET_REL): compile with `-c` and do not link"
    )]
    NotRelocatable(u16),
    /// Structurally invalid ELF: truncated headers, sections or symbols out of bounds.
    #[error("malformed ELF object: {0}")]
    Elf(String),
    /// Invalid `.BTF` section: bad header, lengths, type ids, or type loops.
    #[error("invalid BTF (.BTF section): {0}")]
    Btf(String),
    /// A map definition in `.maps` that the loader cannot use.
    #[error("map `{map}`: {reason}")]
    MapDefinition {
        /// Map name.
        map: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A relocation or call that cannot be resolved.
    #[error("relocation in section `{section}`: {reason}")]
    Relocation {
        /// ELF section holding the instruction.
        section: String,
        /// What is wrong with it.
        reason: String,
    },
    /// An executable section whose name is not a supported program type.
    #[error(
        "section `{0}`: unsupported program section; podnet loads cgroup_skb/ingress, cgroup_skb/egress, \
         cgroup/sock_create, cgroup/sock_release, sockops, tracepoint/<category>/<event> (or tp/...), \
         kprobe/<function> and kretprobe/<function>"
    )]
    UnsupportedSection(String),
    /// No map of that name in the object.
    #[error("no map named `{0}` in the BPF object")]
    UnknownMap(String),
    /// No program of that name in the object.
    #[error("no program named `{0}` in the BPF object")]
    UnknownProgram(String),
    /// No global variable of that name in `.rodata`/`.data`/`.bss`.
    #[error("no global variable named `{0}` in .rodata/.data/.bss of the BPF object")]
    UnknownGlobal(String),
    /// `set_global` with a value whose size differs from the variable's.
    #[error("global `{name}` is {expected} bytes, the value given is {actual} bytes")]
    GlobalSize {
        /// Variable name.
        name: String,
        /// Size of the variable in the object.
        expected: usize,
        /// Size of the value given.
        actual: usize,
    },
    /// A caller-supplied argument is wrong (key or value length, program kind, ...).
    #[error("{0}")]
    InvalidArgument(String),
    /// EPERM/EACCES from a BPF or perf syscall.
    #[error(
        "{op}: {source}: needs CAP_BPF (and CAP_PERFMON for tracepoints, CAP_NET_ADMIN for cgroup \
         skb/sockops): run as root; on kernels before 5.11 also raise RLIMIT_MEMLOCK (`ulimit -l unlimited`)"
    )]
    PermissionDenied {
        /// The operation that failed.
        op: String,
        /// The OS error.
        source: io::Error,
    },
    /// Any other failed syscall.
    #[error("{op}: {source}")]
    Syscall {
        /// The operation that failed.
        op: String,
        /// The OS error.
        source: io::Error,
    },
    /// The kernel refused a program: `reason` is the verifier's verdict (or, with no log, what
    /// was tried and what the errno means), `log_tail` the last lines of its log, `log` all of it.
    #[error("the kernel refused to load program `{program}`: {reason} ({source}){}", tail_block(log_tail, *truncated))]
    Verifier {
        /// Program name.
        program: String,
        /// The OS error of BPF_PROG_LOAD.
        source: io::Error,
        /// The verdict: the line of the log that says why, first.
        reason: String,
        /// Last lines (about 20) of the verifier log.
        log_tail: String,
        /// The whole log as the kernel wrote it.
        log: String,
        /// The log filled the largest buffer tried, so its start is missing.
        truncated: bool,
    },
    /// An update failed because the map has no room left (E2BIG/ENOSPC); for arrays, the index is
    /// at or past `max_entries`.
    #[error("map `{map}` is full ({max_entries} entries): raise its max_entries before load")]
    MapFull {
        /// Map name.
        map: String,
        /// The map's capacity.
        max_entries: u32,
    },
    /// Attaching to something that is not a cgroup v2 directory (EBADF/ENOTDIR).
    #[error(
        "{path}: not a cgroup v2 directory: attach to a directory under the cgroup2 mount listed in \
         /proc/self/mountinfo"
    )]
    NotCgroupV2 {
        /// The path (or fd) given.
        path: String,
    },
    /// E2BIG at cgroup attach: the cgroup holds the kernel's maximum of programs for that hook.
    #[error(
        "{path}: too many BPF programs attached to this cgroup hook (E2BIG): detach some first"
    )]
    TooManyPrograms {
        /// The cgroup.
        path: String,
    },
    /// The tracepoint does not exist in tracefs.
    #[error(
        "tracepoint {category}/{event} not found under {tracefs}/events: the kernel has no such event \
         (syscall events need CONFIG_FTRACE_SYSCALLS)"
    )]
    NoSuchTracepoint {
        /// Event category (`syscalls`).
        category: String,
        /// Event name (`sys_enter_openat`).
        event: String,
        /// The tracefs directory searched.
        tracefs: PathBuf,
    },
    /// tracefs is mounted but this process may not look inside it (mode 0700, not root, no
    /// CAP_DAC_READ_SEARCH).
    #[error(
        "permission denied reading tracefs at {}: it is mounted (mode {mode:o}, owner uid {uid}) \
         but this process (uid {euid}) lacks CAP_DAC_READ_SEARCH to read it: run podnet as root, add \
         cap_dac_read_search to its capabilities (`setcap \
         cap_bpf,cap_perfmon,cap_net_admin,cap_dac_read_search+ep $(command -v podnet)`), or remount \
         tracefs readable (`mount -o remount,mode=755 {}`)",
        dir.display(),
        dir.display()
    )]
    TracefsDenied {
        /// The tracefs mount point.
        dir: PathBuf,
        /// Its permission bits.
        mode: u32,
        /// Its owner.
        uid: u32,
        /// This process's effective uid.
        euid: u32,
    },
    /// No tracefs mount, and it could not be mounted.
    #[error("tracefs not found ({0}): mount it with `mount -t tracefs tracefs /sys/kernel/tracing` (as root)")]
    NoTracefs(String),
    /// The kernel cannot place a kprobe through perf_event_open.
    #[error(
        "kprobes are not available ({0}): the kernel needs CONFIG_KPROBES and CONFIG_KPROBE_EVENTS"
    )]
    NoKprobes(String),
    /// The kernel cannot run fentry/fexit programs on a function: no kernel BTF, or the function
    /// is not in it.
    #[error("fentry/fexit are not available: {0}")]
    NoTracing(String),
    /// No bpffs mount, or a pin path outside bpffs.
    #[error(
        "{0}: not on a bpf filesystem: mount one with `mount -t bpf bpf /sys/fs/bpf` (as root)"
    )]
    NotBpffs(PathBuf),
    /// A file operation failed.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: io::Error,
    },
}

impl Error {
    /// The OS error number behind this error, if it came from a syscall.
    pub fn raw_os_error(&self) -> Option<i32> {
        match self {
            Error::PermissionDenied { source, .. }
            | Error::Syscall { source, .. }
            | Error::Verifier { source, .. }
            | Error::Io { source, .. } => source.raw_os_error(),
            _ => None,
        }
    }

    /// Wraps a failed syscall, turning EPERM/EACCES into [`Error::PermissionDenied`].
    pub(crate) fn sys(op: impl Into<String>, source: io::Error) -> Error {
        let op = op.into();
        match source.raw_os_error() {
            Some(libc::EPERM) | Some(libc::EACCES) => Error::PermissionDenied { op, source },
            _ => Error::Syscall { op, source },
        }
    }

    pub(crate) fn io(path: impl Into<PathBuf>, source: io::Error) -> Error {
        Error::Io {
            path: path.into(),
            source,
        }
    }
}

fn tail_block(tail: &str, truncated: bool) -> String {
    if tail.is_empty() {
        return String::new();
    }
    let cut = if truncated {
        " (the log was cut: it filled the largest buffer)"
    } else {
        ""
    };
    format!("; end of the verifier log{cut}:\n{tail}")
}
