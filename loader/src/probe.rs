//! Kernel feature probes: what this kernel allows, found by asking it (loading a tiny program),
//! never from its version string. Each answer is cached for the life of the process.
//!
//! A helper's availability depends on the program type as well as on the kernel:
//! `bpf_get_current_cgroup_id` is callable from tracepoints since 4.18 and from cgroup/sock
//! programs since 5.7, but from sockops only since 6.4. A program that calls a helper its type
//! lacks is refused whole, so callers probe first and load the variant that works.

use std::collections::HashMap;
use std::ffi::CString;
use std::sync::{Mutex, OnceLock};

use crate::elf::ProgramKind;
use crate::error::{Error, Result};
use crate::reloc::Insn;
use crate::sys;

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

fn cache() -> &'static Mutex<HashMap<(u32, u32, Helper), bool>> {
    static CACHE: OnceLock<Mutex<HashMap<(u32, u32, Helper), bool>>> = OnceLock::new();
    CACHE.get_or_init(Default::default)
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
        Insn {
            code: 0xb7,
            regs: 0,
            off: 0,
            imm: 1,
        },
        // BPF_JMP | BPF_EXIT
        Insn {
            code: 0x95,
            regs: 0,
            off: 0,
            imm: 0,
        },
    ]
}

/// Whether programs of `kind` may call `helper` on this kernel (cached). Errors only when the
/// probe itself cannot run (no permission to load programs): a refusal is `Ok(false)`.
pub fn helper_available(kind: &ProgramKind, helper: Helper) -> Result<bool> {
    let key = (
        kind.prog_type(),
        kind.expected_attach_type().map_or(0, |t| t as u32),
        helper,
    );
    if let Some(&known) = cache().lock().expect("probe cache").get(&key) {
        return Ok(known);
    }
    let insns = probe_program(helper);
    let license = CString::new("GPL").expect("no NUL");
    let attr = sys::ProgLoad {
        prog_type: key.0,
        expected_attach_type: key.1,
        insns: &insns,
        license: &license,
        name: "podnet_probe",
    };
    let mut log = vec![0u8; 4096];
    let available = match sys::prog_load(&attr, Some((&mut log, 1))) {
        Ok(_fd) => true,
        Err(e) if matches!(e.raw_os_error(), Some(libc::EPERM)) => {
            return Err(Error::sys(format!("probe for helper {helper:?}"), e));
        }
        Err(e) => {
            let text = crate::program::log_tail(&log, 5);
            // The helper exists for the type when the verifier got past looking it up.
            let refused = text.contains("unknown func") || text.contains("invalid func");
            log::debug!("probe {helper:?} in {kind:?}: {e}: {text}");
            !refused
        }
    };
    log::debug!("probe: {helper:?} in {kind:?}: available = {available}");
    cache().lock().expect("probe cache").insert(key, available);
    Ok(available)
}
