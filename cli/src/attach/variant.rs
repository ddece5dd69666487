//! Which variant of podnet's programs this kernel can load, found by probing (never by version):
//! how sockops finds a socket's owner, whether the file-open programs can walk the cgroup tree,
//! whether the counters map must be preallocated; and the `.rodata` and map settings that select it.

use anyhow::{bail, Context, Result};

use podnet_loader::ObjectSpec;

use super::{FileOpenProbe, OPEN_FEXIT, OPEN_FUNCTION};

/// How podnet's programs find a TCP socket's owner on this kernel (probed, never guessed from the
/// version): the program variant is chosen by `.rodata` constants before load.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SocketOwner {
    /// sockops asks for the current task's cgroup (Linux 6.4 and later).
    CurrentCgroup,
    /// sock_create records each socket's owner under its cookie; sockops looks it up (5.7).
    SocketCookie,
}

/// The program variants this kernel can load.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KernelVariant {
    /// How TCP sockets are attributed in sockops.
    pub socket_owner: SocketOwner,
    /// The file-open tracepoints can walk up the cgroup tree to the deepest registered cgroup
    /// (`bpf_get_current_ancestor_cgroup_id` in tracing programs; not on 5.10).
    pub tracepoint_ancestors: bool,
    /// The counters map must be preallocated: the file-open tracepoints use it, and this kernel
    /// lets tracing programs use only preallocated hash maps safely (before 6.1).
    pub preallocate_counters: bool,
    /// The file-open kprobes can walk up the cgroup tree (the same helper in kprobe programs).
    pub kprobe_ancestors: bool,
    /// Why the file-open fexit program cannot load here (no kernel BTF, or no
    /// [`OPEN_FUNCTION`] in it), or `None` where it can.
    pub fexit_unavailable: Option<String>,
    /// The file-open fexit program can walk up the cgroup tree.
    pub fexit_ancestors: bool,
    /// What counts file opens, once attached (`None` before).
    pub file_opens: Option<FileOpenProbe>,
}

impl KernelVariant {
    /// Probes the kernel by loading tiny programs (cached for the process) for what `spec`'s
    /// programs need.
    pub fn probe(spec: &ObjectSpec) -> Result<KernelVariant> {
        use podnet_loader::probe::{helper_available, Helper};
        use podnet_loader::ProgramKind;
        let probe = |kind: ProgramKind, helper: Helper| {
            helper_available(&kind, helper)
                .with_context(|| format!("probing the kernel for {helper:?} in {kind:?} programs"))
        };
        // PODNET_SOCKET_OWNER=cookie picks the fallback on a kernel that has more, so that the
        // test suite runs the code older kernels run on any kernel.
        let socket_owner = match std::env::var("PODNET_SOCKET_OWNER").as_deref() {
            Err(_) | Ok("") | Ok("auto")
                if probe(ProgramKind::SockOps, Helper::GetCurrentCgroupId)? =>
            {
                SocketOwner::CurrentCgroup
            }
            Err(_) | Ok("") | Ok("auto") | Ok("cookie") => {
                if !probe(ProgramKind::CgroupSockCreate, Helper::GetSocketCookie)? {
                    // Every kernel with cgroup BPF links (5.7) has it: this one is older.
                    bail!(
                        "this kernel lets cgroup/sock_create programs read neither the socket \
                         cookie nor (in sockops) the current cgroup: podnet needs Linux 5.10 or \
                         later"
                    );
                }
                SocketOwner::SocketCookie
            }
            Ok(other) => bail!("PODNET_SOCKET_OWNER={other}: expected auto or cookie"),
        };
        // Tracing programs and hash maps that allocate at run time: before 6.1 the kernel calls
        // the pair unsafe (5.10 loads it with a WARN splat in its log, PREEMPT_RT kernels refuse
        // it). There the counters map is preallocated (memory for its whole capacity up front).
        // The probe asks for perf_event programs, which such kernels refuse without a splat.
        let counters = spec.map("counters")?;
        let preallocate_counters = !podnet_loader::probe::map_usable(
            podnet_loader::ProgType::PerfEvent,
            counters.map_type,
            counters.flags,
        )
        .context("probing whether tracing programs take run-time allocated maps")?;
        let tracepoint = ProgramKind::Tracepoint {
            category: "syscalls".into(),
            event: "sys_exit_openat".into(),
        };
        let tracepoint_ancestors = probe(tracepoint.clone(), Helper::GetCurrentAncestorCgroupId)?;
        let kprobe = ProgramKind::Kprobe {
            function: OPEN_FUNCTION.into(),
            retprobe: false,
        };
        let kprobe_ancestors = probe(kprobe, Helper::GetCurrentAncestorCgroupId)?;
        // After the probes above, which needed the same privileges: a refusal here is the
        // kernel's (no BTF, no function, or a policy against trampolines).
        let fexit_unavailable = podnet_loader::probe::tracing_loads(OPEN_FUNCTION, true)
            .err()
            .map(|e| match e {
                podnet_loader::Error::NoTracing(why) => why,
                e => e.to_string(),
            });
        let fexit = ProgramKind::Tracing {
            function: OPEN_FUNCTION.into(),
            exit: true,
        };
        let fexit_ancestors =
            fexit_unavailable.is_none() && probe(fexit, Helper::GetCurrentAncestorCgroupId)?;
        Ok(KernelVariant {
            socket_owner,
            tracepoint_ancestors,
            preallocate_counters,
            kprobe_ancestors,
            fexit_unavailable,
            fexit_ancestors,
            file_opens: None,
        })
    }

    /// Sets the `.rodata` constants and map sizes that select this variant in `spec`.
    pub(super) fn apply(&self, spec: &mut ObjectSpec, capacity: u32) -> Result<()> {
        let current = self.socket_owner == SocketOwner::CurrentCgroup;
        let cookie = self.socket_owner == SocketOwner::SocketCookie;
        if self.preallocate_counters {
            spec.map_mut("counters")?.flags &= !BPF_F_NO_PREALLOC;
        }
        spec.set_global("sockops_current_cgroup", &[current as u8])?;
        spec.set_global("tracepoint_ancestors", &[self.tracepoint_ancestors as u8])?;
        spec.set_global("kprobe_ancestors", &[self.kprobe_ancestors as u8])?;
        spec.set_global("fexit_ancestors", &[self.fexit_ancestors as u8])?;
        if self.fexit_unavailable.is_some() {
            // It would not load; the kprobes or tracepoints count opens instead.
            spec.remove_program(OPEN_FEXIT)?;
        }
        spec.set_global("sock_create_cookie", &[cookie as u8])?;
        if cookie {
            // One entry per open socket of the tracked pods; an evicted one costs only
            // container-level attribution of that socket's TCP events.
            spec.map_mut("sock_cookie_owner")?.max_entries =
                capacity.saturating_mul(SOCKETS_PER_CGROUP).max(1024);
        }
        Ok(())
    }
}

impl KernelVariant {
    /// What this kernel keeps podnet from counting as designed, for `warnings`.
    pub fn warnings(&self) -> Vec<String> {
        let mut w = Vec::new();
        let (walks, kind) = match self.file_opens {
            Some(FileOpenProbe::Fexit) => (self.fexit_ancestors, "fexit"),
            Some(FileOpenProbe::Kprobe) => (self.kprobe_ancestors, "kprobe"),
            _ => (self.tracepoint_ancestors, "tracepoint"),
        };
        if !walks {
            w.push(format!(
                "{UNREGISTERED_OPENS_WARNING}: this kernel's {kind} programs cannot walk up the \
                 cgroup tree (bpf_get_current_ancestor_cgroup_id)"
            ));
        }
        w
    }
}

/// The start of the warning for opens that a kernel without tracepoint ancestor walks misses.
pub const UNREGISTERED_OPENS_WARNING: &str = "file opens of processes in cgroups below a pod that \
     podnet has not registered (a container started after podnet attached) are not counted";

/// `BPF_F_NO_PREALLOC`: a hash map that allocates its entries when they are inserted.
const BPF_F_NO_PREALLOC: u32 = 1;

/// Socket-cookie owner entries per registered cgroup (only where [`SocketOwner::SocketCookie`]).
const SOCKETS_PER_CGROUP: u32 = 16;
