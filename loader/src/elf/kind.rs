//! What a program is, from its ELF section name: [`ProgramKind`], with the program type, attach
//! type and attach point the kernel expects for it.

use crate::uapi::{AttachType, ProgType};

/// What a program is, from its ELF section name.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum ProgramKind {
    /// `cgroup_skb/ingress`.
    CgroupSkbIngress,
    /// `cgroup_skb/egress`.
    CgroupSkbEgress,
    /// `cgroup/sock_create`.
    CgroupSockCreate,
    /// `cgroup/sock_release` (Linux 5.9).
    CgroupSockRelease,
    /// `sockops`.
    SockOps,
    /// `tracepoint/<category>/<event>` or `tp/<category>/<event>`.
    Tracepoint {
        /// Event category, e.g. `syscalls`.
        category: String,
        /// Event name, e.g. `sys_enter_openat`.
        event: String,
    },
    /// `kprobe/<function>` or `kretprobe/<function>` (`BPF_PROG_TYPE_KPROBE`): runs when the
    /// kernel function is entered, or when it returns.
    Kprobe {
        /// The kernel function, e.g. `do_sys_openat2`.
        function: String,
        /// On return (`kretprobe/`) rather than on entry.
        retprobe: bool,
    },
    /// `fentry/<function>` or `fexit/<function>` (`BPF_PROG_TYPE_TRACING`): runs through a BPF
    /// trampoline when the kernel function is entered, or when it returns (with its arguments
    /// and return value). Loading needs the function's id in the kernel's BTF
    /// (`/sys/kernel/btf/vmlinux`).
    Tracing {
        /// The kernel function, e.g. `do_sys_openat2`.
        function: String,
        /// On return (`fexit/`) rather than on entry.
        exit: bool,
    },
}

impl ProgramKind {
    /// The kind for an ELF section name, or `None` if it is not a program section podnet supports.
    pub fn from_section(name: &str) -> Option<ProgramKind> {
        Some(match name {
            "cgroup_skb/ingress" => ProgramKind::CgroupSkbIngress,
            "cgroup_skb/egress" => ProgramKind::CgroupSkbEgress,
            "cgroup/sock_create" => ProgramKind::CgroupSockCreate,
            "cgroup/sock_release" => ProgramKind::CgroupSockRelease,
            "sockops" => ProgramKind::SockOps,
            _ if name.starts_with("fentry/") || name.starts_with("fexit/") => {
                let (kind, function) = kernel_function_section(name)?;
                ProgramKind::Tracing {
                    function,
                    exit: kind == "fexit",
                }
            }
            _ if name.starts_with("kprobe/") || name.starts_with("kretprobe/") => {
                let (kind, function) = kernel_function_section(name)?;
                ProgramKind::Kprobe {
                    function,
                    retprobe: kind == "kretprobe",
                }
            }
            _ => {
                let rest = name
                    .strip_prefix("tracepoint/")
                    .or_else(|| name.strip_prefix("tp/"))?;
                let (category, event) = rest.split_once('/')?;
                if category.is_empty() || event.is_empty() || event.contains('/') {
                    return None;
                }
                ProgramKind::Tracepoint {
                    category: category.into(),
                    event: event.into(),
                }
            }
        })
    }

    /// `BPF_PROG_TYPE_*`.
    pub fn prog_type(&self) -> ProgType {
        match self {
            ProgramKind::Tracepoint { .. } => ProgType::Tracepoint,
            ProgramKind::Kprobe { .. } => ProgType::Kprobe,
            ProgramKind::Tracing { .. } => ProgType::Tracing,
            ProgramKind::CgroupSkbIngress | ProgramKind::CgroupSkbEgress => ProgType::CgroupSkb,
            ProgramKind::CgroupSockCreate | ProgramKind::CgroupSockRelease => ProgType::CgroupSock,
            ProgramKind::SockOps => ProgType::SockOps,
        }
    }

    /// The `expected_attach_type` given to BPF_PROG_LOAD (`None`: 0, not checked).
    pub fn expected_attach_type(&self) -> Option<AttachType> {
        match self {
            ProgramKind::CgroupSkbIngress => Some(AttachType::CgroupInetIngress),
            ProgramKind::CgroupSkbEgress => Some(AttachType::CgroupInetEgress),
            ProgramKind::CgroupSockCreate => Some(AttachType::CgroupInetSockCreate),
            ProgramKind::CgroupSockRelease => Some(AttachType::CgroupInetSockRelease),
            ProgramKind::Tracing { exit: false, .. } => Some(AttachType::TraceFentry),
            ProgramKind::Tracing { exit: true, .. } => Some(AttachType::TraceFexit),
            ProgramKind::SockOps | ProgramKind::Tracepoint { .. } | ProgramKind::Kprobe { .. } => {
                None
            }
        }
    }

    /// The attach type used to attach (and to query) the program.
    pub fn attach_type(&self) -> AttachType {
        match self {
            ProgramKind::SockOps => AttachType::CgroupSockOps,
            ProgramKind::Tracepoint { .. } | ProgramKind::Kprobe { .. } => AttachType::PerfEvent,
            other => other
                .expected_attach_type()
                .unwrap_or(AttachType::PerfEvent),
        }
    }

    /// Is this a program attached to cgroups?
    pub fn is_cgroup(&self) -> bool {
        !matches!(
            self,
            ProgramKind::Tracepoint { .. }
                | ProgramKind::Kprobe { .. }
                | ProgramKind::Tracing { .. }
        )
    }
}

/// `<kind>/<function>` (`kprobe/do_sys_openat2`, `fexit/do_sys_openat2`): the kind and the kernel
/// function, or `None` when the function is empty or the name has more parts.
fn kernel_function_section(name: &str) -> Option<(&str, String)> {
    let (kind, function) = name.split_once('/')?;
    if function.is_empty() || function.contains('/') {
        return None;
    }
    Some((kind, function.into()))
}
