//! The capabilities podnet needs to load and attach its programs, checked up front so that a
//! missing one is a message naming the fix rather than an EPERM from deep inside the loader.

use anyhow::{bail, Context, Result};

const CAP_NET_ADMIN: u32 = 12;
/// `CAP_SYS_ADMIN`.
pub const CAP_SYS_ADMIN: u32 = 21;
const CAP_PERFMON: u32 = 38;
const CAP_BPF: u32 = 39;

/// Fails with the fix when this process lacks the capabilities podnet needs.
pub fn check_privileges() -> Result<()> {
    let eff = effective_caps().context("reading CapEff from /proc/self/status")?;
    let has = |cap: u32| eff & (1u64 << cap) != 0;
    // Before 5.8 CAP_SYS_ADMIN stood for CAP_BPF and CAP_PERFMON.
    let bpf = has(CAP_BPF) || has(CAP_SYS_ADMIN);
    let perfmon = has(CAP_PERFMON) || has(CAP_SYS_ADMIN);
    let mut missing = Vec::new();
    if !bpf {
        missing.push("CAP_BPF");
    }
    if !perfmon {
        missing.push("CAP_PERFMON");
    }
    if !has(CAP_NET_ADMIN) {
        missing.push("CAP_NET_ADMIN");
    }
    if !missing.is_empty() {
        bail!(
            "podnet needs CAP_BPF, CAP_PERFMON and CAP_NET_ADMIN to load and attach its eBPF \
             programs (missing: {}): run it as root (sudo podnet stats), or grant them with \
             `setcap cap_bpf,cap_perfmon,cap_net_admin+ep $(command -v podnet)`",
            missing.join(", ")
        );
    }
    Ok(())
}

/// Does this process hold capability `cap` (in its effective set)?
pub fn has_capability(cap: u32) -> bool {
    effective_caps().is_some_and(|eff| eff & (1u64 << cap) != 0)
}

fn effective_caps() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))
        .and_then(|h| u64::from_str_radix(h.trim(), 16).ok())
}
