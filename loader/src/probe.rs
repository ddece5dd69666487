//! Kernel feature probes: what this kernel allows, found by asking it (loading a tiny program),
//! never from its version string. Each answer is cached for the life of the process.
//!
//! A helper's availability depends on the program type as well as on the kernel:
//! `bpf_get_current_cgroup_id` is callable from tracepoints since 4.18 and from cgroup/sock
//! programs since 5.7, but from sockops only since 6.4. A program that calls a helper its type
//! lacks is refused whole, so callers probe first and load the variant that works.

use std::collections::HashMap;
use std::ffi::CString;
use std::os::fd::{AsFd, AsRawFd};
use std::sync::{Mutex, OnceLock};

use crate::elf::ProgramKind;
use crate::error::{Error, Result};
use crate::reloc::Insn;
use crate::sys;
use crate::uapi::{AttachType, MapType, ProgType};

/// `enum bpf_func_id` values of the helpers podnet probes for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(i32)]
pub enum Helper {
    /// `bpf_get_current_cgroup_id`.
    GetCurrentCgroupId = 80,
    /// `bpf_get_socket_cookie`.
    GetSocketCookie = 46,
    /// `bpf_get_current_ancestor_cgroup_id`.
    GetCurrentAncestorCgroupId = 123,
}

/// One question asked of the kernel: a program type (and attach type) with a helper or a map.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum Question {
    Helper(ProgType, Option<AttachType>, Helper),
    Map(ProgType, MapType, u32),
}

type Answers = Mutex<HashMap<Question, bool>>;

/// The kernel's answer to `question`, asked once per process.
fn cached(question: Question, ask: impl FnOnce() -> Result<bool>) -> Result<bool> {
    static ANSWERS: OnceLock<Answers> = OnceLock::new();
    let answers = ANSWERS.get_or_init(Default::default);
    if let Some(&known) = answers.lock().expect("probe cache").get(&question) {
        return Ok(known);
    }
    let answer = ask()?;
    log::debug!("probe: {question:?}: {answer}");
    answers
        .lock()
        .expect("probe cache")
        .insert(question, answer);
    Ok(answer)
}

/// The probe program: `call helper; r0 = 1; exit`. The verifier looks the helper up for the
/// program type before it checks arguments, so "unknown func" answers the question either way.
fn probe_program(helper: Helper) -> [Insn; 3] {
    [
        // BPF_JMP | BPF_CALL
        Insn {
            code: 0x85,
            regs: 0,
            off: 0,
            imm: helper as i32,
        },
        // BPF_ALU64 | BPF_MOV | BPF_K: r0 = 1
        Insn { imm: 1, ..RETURN_0 },
        EXIT,
    ]
}

/// What the kernel said to a probe program.
struct Answer {
    loaded: bool,
    /// The end of the verifier log (written on success too, at log level 1).
    log: String,
}

/// BPF_PROG_LOAD of a probe program (GPL, level-1 log): the kernel's answer, and the end of the
/// log (written on success too).
fn load_probe(
    prog_type: ProgType,
    attach_type: Option<AttachType>,
    attach_btf_id: u32,
    insns: &[Insn],
) -> (std::io::Result<()>, String) {
    let license = CString::new("GPL").expect("no NUL");
    let attr = sys::ProgLoad {
        prog_type,
        expected_attach_type: attach_type,
        insns,
        license: &license,
        name: "podnet_probe",
        attach_btf_id,
    };
    let mut log = vec![0u8; 4096];
    let result = sys::memlock_retry(|| sys::prog_load(&attr, Some((&mut log, 1)))).map(drop);
    (result, crate::program::log_tail(&log, 5))
}

/// Loads `insns` as a program of type `prog_type`. `Err` only for EPERM: the probe cannot answer
/// without privileges.
fn try_load(
    prog_type: ProgType,
    attach_type: Option<AttachType>,
    attach_btf_id: u32,
    insns: &[Insn],
    what: &str,
) -> Result<Answer> {
    let (result, log) = load_probe(prog_type, attach_type, attach_btf_id, insns);
    let loaded = match result {
        Ok(()) => true,
        Err(e) if matches!(e.raw_os_error(), Some(libc::EPERM)) => {
            return Err(Error::sys(format!("probe for {what}"), e));
        }
        Err(e) => {
            log::debug!("probe {what} in {prog_type:?}: {e}");
            false
        }
    };
    log::debug!("probe {what} in {prog_type:?}: loaded = {loaded}: {log}");
    Ok(Answer { loaded, log })
}

/// Whether programs of type `prog_type` may use a map of `map_type` created with `flags`
/// (cached): the kernel loads a program that references it.
///
/// To ask whether tracing programs may use hash maps that allocate at run time
/// (`BPF_F_NO_PREALLOC`), ask for [`ProgType::PerfEvent`]: kernels before 6.1 refuse that pair
/// outright, and from 6.1, which gave BPF its own allocator, every tracing type may use them. Do
/// not ask for [`ProgType::Tracepoint`]: 5.10 accepts it with a WARN splat in the kernel log
/// (fatal under `panic_on_warn`), a cost no probe may have.
pub fn map_usable(prog_type: ProgType, map_type: MapType, flags: u32) -> Result<bool> {
    let question = Question::Map(prog_type, map_type, flags);
    cached(question, || {
        let what = format!("map type {} with flags {flags:#x}", map_type.value());
        let map = sys::memlock_retry(|| {
            sys::MapFd::create(&sys::MapCreate {
                map_type,
                key_size: 8,
                value_size: 8,
                max_entries: 1,
                flags,
                name: "podnet_probe",
                btf: None,
            })
        })
        .map_err(|e| Error::sys(format!("create a map for the probe of {what}"), e))?;
        let insns = map_reference_program(map.as_fd().as_raw_fd());
        Ok(try_load(prog_type, None, 0, &insns, &what)?.loaded)
    })
}

/// `r1 = map; r0 = 0; exit`: the kernel checks a map against the program type when the program
/// references it.
fn map_reference_program(map_fd: i32) -> [Insn; 4] {
    [
        // BPF_LD | BPF_IMM | BPF_DW with src = BPF_PSEUDO_MAP_FD: r1 = map (two slots)
        Insn {
            code: 0x18,
            regs: 0x11,
            off: 0,
            imm: map_fd,
        },
        Insn {
            code: 0,
            regs: 0,
            off: 0,
            imm: 0,
        },
        RETURN_0,
        EXIT,
    ]
}

/// BPF_ALU64 | BPF_MOV | BPF_K: r0 = 0.
const RETURN_0: Insn = Insn {
    code: 0xb7,
    regs: 0,
    off: 0,
    imm: 0,
};

/// BPF_JMP | BPF_EXIT.
const EXIT: Insn = Insn {
    code: 0x95,
    regs: 0,
    off: 0,
    imm: 0,
};

/// Whether this kernel loads an fentry (`exit` false) or fexit program on kernel function
/// `function`: `Err` says why not ([`Error::NoTracing`]: no kernel BTF, the function is not in it,
/// or the kernel refuses such programs, as some do even to root with EPERM when a security
/// policy forbids BPF trampolines). Call it after a probe that needs privileges has succeeded, so
/// that EPERM means the policy, not a missing capability. Not cached.
pub fn tracing_loads(function: &str, exit: bool) -> Result<()> {
    let attach_btf_id = crate::kernel_btf::kernel_btf_function_id(function)?;
    let (attach_type, kind) = if exit {
        (AttachType::TraceFexit, "fexit")
    } else {
        (AttachType::TraceFentry, "fentry")
    };
    let (result, tail) = load_probe(
        ProgType::Tracing,
        Some(attach_type),
        attach_btf_id,
        &[RETURN_0, EXIT],
    );
    result.map_err(|e| {
        log::debug!("probe {kind} on {function}: {e}: {tail}");
        Error::NoTracing(match e.raw_os_error() {
            Some(libc::EPERM) => format!(
                "the kernel refuses {kind} programs with EPERM, though it loads this \
                 process's other BPF programs: a security policy forbids them"
            ),
            _ if tail.is_empty() => format!("the kernel refuses {kind} on {function}: {e}"),
            _ => format!("the kernel refuses {kind} on {function}: {e}: {tail}"),
        })
    })
}

/// Whether programs of `kind` may call `helper` on this kernel (cached). Errors only when the
/// probe itself cannot run (no permission to load programs): a refusal is `Ok(false)`.
pub fn helper_available(kind: &ProgramKind, helper: Helper) -> Result<bool> {
    let question = Question::Helper(kind.prog_type(), kind.expected_attach_type(), helper);
    cached(question, || {
        // fentry/fexit programs load only against their function in the kernel's BTF: where
        // that is missing, no such program loads, with this helper or without.
        let attach_btf_id = match kind {
            ProgramKind::Tracing { function, .. } => {
                match crate::kernel_btf::kernel_btf_function_id(function) {
                    Ok(id) => id,
                    Err(Error::NoTracing(why)) => {
                        log::debug!("probe {helper:?} in {kind:?}: {why}");
                        return Ok(false);
                    }
                    Err(e) => return Err(e),
                }
            }
            _ => 0,
        };
        let answer = try_load(
            kind.prog_type(),
            kind.expected_attach_type(),
            attach_btf_id,
            &probe_program(helper),
            &format!("{helper:?}"),
        )?;
        // The helper exists for the type when the verifier got past looking it up.
        Ok(answer.loaded
            || !(answer.log.contains("unknown func") || answer.log.contains("invalid func")))
    })
}
