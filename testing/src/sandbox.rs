//! Sandbox pods: podnet's way of testing on a real kernel without Kubernetes.
//!
//! A sandbox pod is made of
//! - cgroup directories laid out exactly like kubelet makes them ([`Layout`], [`SandboxPod`]), created
//!   under a unique per-test root inside the cgroup v2 mount ([`CgroupTree`]) and, on hybrid hosts, the
//!   same relative directories in the cgroup v1 memory hierarchy so pods get memory accounting;
//! - network namespaces ([`NetNs`]) joined by veth pairs ([`Veth`]) whose addresses all lie inside
//!   198.18.0.0/15;
//! - workload processes ([`Workload`], the `podnet-sandbox` binary) that join a namespace and a
//!   container cgroup *before* they open sockets or files, announce `{"ready":true,"pid":N}`, wait for
//!   a go line, do exactly the job asked (N datagrams, N opens, ...) and report what they did.
//!
//! Everything is removed on `Drop`, including when a test panics; objects left behind by a test
//! process that was killed are swept by the next process that creates the same kind of object.
//!
//! Typical use:
//!
//! ```no_run
//! use podnet_testing::sandbox::*;
//! # fn main() -> anyhow::Result<()> {
//! if !require_privileges("udp between two pods") { return Ok(()); }
//! let tree = CgroupTree::new("doc")?;
//! let pod = SandboxPod::create(&tree, Layout::SystemdContainerd, &new_uid(), Qos::Burstable,
//!                              &[("app", &new_container_id())])?;
//! let (a, b) = (NetNs::new("doc-a")?, NetNs::new("doc-b")?);
//! let veth = Veth::between(&a, &b)?;
//! let mut rx = Workload::spawn(&["udp-recv", "--bind", &format!("{}:9000", veth.addr_b()),
//!                                "--count", "10", "--timeout-ms", "5000"], Some(&b), None, None)?;
//! let mut tx = Workload::spawn_in(&["udp-send", "--to", &format!("{}:9000", veth.addr_b()),
//!                                   "--count", "10", "--size", "100"], Some(&a), &pod.containers[0])?;
//! rx.wait_ready()?; tx.wait_ready()?;
//! rx.go()?; tx.go()?;
//! assert_eq!(tx.result()?["sent"], 10);
//! assert_eq!(rx.result()?["received"], 10);
//! # Ok(()) }
//! ```

use std::fs;
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

mod cgroup;
mod layout;
mod net;
mod workload;

pub use cgroup::CgroupTree;
pub use layout::{Layout, Qos, SandboxContainer, SandboxPod};
pub use net::{netns_snmp, NetNs, Veth, VETH_SUPERNET};
pub use workload::{Workload, DEFAULT_TIMEOUT};

/// Capability numbers from `linux/capability.h` checked by [`require_privileges`].
const CAP_NET_ADMIN: u32 = 12;
const CAP_SYS_ADMIN: u32 = 21;
const CAP_PERFMON: u32 = 38;
const CAP_BPF: u32 = 39;

/// Decides whether a privileged test can run here.
///
/// Returns true when the process is root (euid 0) with CAP_SYS_ADMIN and CAP_NET_ADMIN (and CAP_BPF
/// and CAP_PERFMON where the kernel knows them), a cgroup v2 mount exists in /proc/self/mountinfo and
/// the `ip` tool (iproute2) runs. Otherwise it skips (see [`skip`]).
pub fn require_privileges(test: &str) -> bool {
    match privilege_problem() {
        None => true,
        Some(reason) => {
            skip(test, &format!("privileged test cannot run: {reason}"));
            false
        }
    }
}

/// Skips a test that cannot run here: prints `SKIP <test>: <reason>` to stderr, except in CI
/// (the environment variable `CI` set to a true value, as CI services set it), where it panics,
/// because a test skipped in CI proves nothing.
pub fn skip(test: &str, reason: &str) {
    if in_ci() {
        panic!("{test}: cannot be skipped in CI: {reason}");
    }
    eprintln!("SKIP {test}: {reason}");
}

/// Is `CI` set to a true value (`true`, `1`, `yes`; not `false`, `0`, `no` or empty)?
pub fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| is_true(&v))
}

fn is_true(v: &str) -> bool {
    !matches!(
        v.trim().to_ascii_lowercase().as_str(),
        "" | "0" | "false" | "no" | "off"
    )
}

/// Returns why privileged tests cannot run, or `None` when they can.
fn privilege_problem() -> Option<String> {
    let status = match fs::read_to_string("/proc/self/status") {
        Ok(s) => s,
        Err(e) => {
            return Some(format!(
                "cannot read /proc/self/status ({e}): is /proc mounted?"
            ))
        }
    };
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .map(|rest| rest.trim().to_string())
    };
    let euid = field("Uid:").and_then(|u| u.split_whitespace().nth(1).map(str::to_string));
    if euid.as_deref() != Some("0") {
        return Some(format!(
            "needs root (effective uid is {}): run the tests as root, e.g. `sudo -E make test`",
            euid.unwrap_or_else(|| "unknown".into())
        ));
    }
    let cap_eff = field("CapEff:")
        .and_then(|c| u64::from_str_radix(&c, 16).ok())
        .unwrap_or(0);
    let last_cap: u32 = fs::read_to_string("/proc/sys/kernel/cap_last_cap")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(CAP_BPF);
    let mut needed = vec![
        (CAP_SYS_ADMIN, "CAP_SYS_ADMIN"),
        (CAP_NET_ADMIN, "CAP_NET_ADMIN"),
    ];
    // Kernels older than 5.8 have neither CAP_BPF nor CAP_PERFMON; CAP_SYS_ADMIN covers both there.
    for (cap, name) in [(CAP_PERFMON, "CAP_PERFMON"), (CAP_BPF, "CAP_BPF")] {
        if cap <= last_cap {
            needed.push((cap, name));
        }
    }
    let missing: Vec<&str> = needed
        .iter()
        .filter(|(cap, _)| cap_eff & (1u64 << cap) == 0)
        .map(|(_, name)| *name)
        .collect();
    if !missing.is_empty() {
        return Some(format!(
            "root but missing {} (CapEff {cap_eff:#x}): run in a privileged container or as real root",
            missing.join(", ")
        ));
    }
    if let Err(e) = cgroup2_mount() {
        return Some(e.to_string());
    }
    match std::process::Command::new("ip").arg("-V").output() {
        Ok(out) if out.status.success() => None,
        Ok(out) => Some(format!(
            "`ip -V` failed with {}: reinstall iproute2",
            out.status
        )),
        Err(e) => Some(format!("cannot run `ip` ({e}): install iproute2")),
    }
}

/// The mount point of the cgroup v2 hierarchy, from /proc/self/mountinfo as podnet reads it
/// ([`podnet::resolve::Mounts`]; never assumed to be /sys/fs/cgroup: hybrid hosts have it at e.g.
/// /sys/fs/cgroup/unified).
pub fn cgroup2_mount() -> io::Result<PathBuf> {
    podnet::resolve::Mounts::detect()?.cgroup2.ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::NotFound,
            "no cgroup v2 mount found in /proc/self/mountinfo: mount it with \
             `mount -t cgroup2 none /sys/fs/cgroup/unified` (hybrid) or boot with systemd.unified_cgroup_hierarchy=1",
        )
    })
}

/// The mount point of the cgroup v1 hierarchy carrying the memory controller, if this host has one
/// (hybrid hosts do; pure cgroup v2 hosts do not).
pub fn memory_v1_mount() -> Option<PathBuf> {
    podnet::resolve::Mounts::detect().ok()?.memory_v1
}

/// The cgroup id of a cgroup v2 directory: its inode number, which is what
/// `bpf_get_current_cgroup_id()` and `bpf_skb_cgroup_id()` return for tasks and sockets in it.
pub fn cgroup_id(dir: &Path) -> io::Result<u64> {
    fs::metadata(dir).map(|m| m.ino()).map_err(|e| {
        io::Error::new(
            e.kind(),
            format!("cannot stat cgroup {}: {e}", dir.display()),
        )
    })
}

/// A fresh random pod UID in the canonical v4 UUID form (`xxxxxxxx-xxxx-4xxx-yxxx-xxxxxxxxxxxx`),
/// read from /proc/sys/kernel/random/uuid.
pub fn new_uid() -> String {
    fs::read_to_string("/proc/sys/kernel/random/uuid")
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|e| {
            panic!("cannot read /proc/sys/kernel/random/uuid: {e}: is /proc mounted?")
        })
}

/// A fresh random container id: 64 lower-case hex characters, like containerd, CRI-O and Docker use.
pub fn new_container_id() -> String {
    let mut id = String::with_capacity(64);
    while id.len() < 64 {
        id.extend(new_uid().chars().filter(|c| *c != '-'));
    }
    id.truncate(64);
    id
}

/// The path of the `podnet-sandbox` workload binary, which cargo builds next to the running test
/// executable (`target/<profile>/podnet-sandbox`; test executables live in `target/<profile>/deps`).
///
/// The environment variable `PODNET_SANDBOX_BIN` overrides the search. Panics, naming the fix,
/// when the binary has not been built: `cargo test -p <other crate>` does not build the binaries of
/// podnet-testing, `cargo build -p podnet-testing --bins` (run by `make test`) does.
pub fn sandbox_bin() -> PathBuf {
    if let Some(p) = std::env::var_os("PODNET_SANDBOX_BIN") {
        let p = PathBuf::from(p);
        assert!(
            p.is_file(),
            "PODNET_SANDBOX_BIN={} does not exist: build it with `cargo build -p podnet-testing --bins`",
            p.display()
        );
        return p;
    }
    let exe = std::env::current_exe().expect("cannot find the running executable (/proc/self/exe)");
    let mut candidates = Vec::new();
    let mut dir = exe.parent();
    while let Some(d) = dir {
        candidates.push(d.join("podnet-sandbox"));
        if d.file_name()
            .is_some_and(|n| n != "deps" && n != "examples")
        {
            break;
        }
        dir = d.parent();
    }
    candidates
        .into_iter()
        .find(|c| c.is_file())
        .unwrap_or_else(|| {
            panic!(
                "the podnet-sandbox workload binary was not found next to {}: \
             run `cargo build -p podnet-testing --bins` first (`make test` does), \
             or set PODNET_SANDBOX_BIN",
                exe.display()
            )
        })
}

/// Removes what killed test processes left behind: cgroup trees `podnet-test-*-<pid>-<n>` (v2 and
/// this process's v1 memory cgroup), network namespaces `podnet-*-<pid>-<n>` and veth address
/// reservations, wherever `<pid>` no longer exists. The first [`CgroupTree::new`] and
/// [`NetNs::new`] of each process do this by themselves; call it directly, e.g. at the start of a
/// demo, to clean up eagerly.
pub fn remove_stale() -> anyhow::Result<()> {
    net::sweep_stale_netns();
    net::sweep_stale_reservations();
    cgroup::sweep_stale_trees()
}

/// True when a process with this pid exists.
pub(crate) fn pid_alive(pid: u32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
}

/// Parses the `<pid>-<n>` suffix of names like `podnet-test-<label>-<pid>-<n>` and returns the pid.
pub(crate) fn owner_pid(name: &str) -> Option<u32> {
    let mut parts = name.rsplit('-');
    let n = parts.next()?;
    let pid = parts.next()?;
    if n.is_empty() || !n.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    pid.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_true_ci_value_counts_as_ci() {
        for v in ["true", "1", "yes", "TRUE"] {
            assert!(is_true(v), "{v}");
        }
        for v in ["false", "0", "no", "", " ", "False", "off"] {
            assert!(!is_true(v), "{v:?}");
        }
    }

    #[test]
    fn ids_have_the_right_shape() {
        let uid = new_uid();
        assert_eq!(uid.len(), 36);
        assert_eq!(uid.matches('-').count(), 4);
        assert_ne!(uid, new_uid());
        let id = new_container_id();
        assert_eq!(id.len(), 64);
        assert!(id
            .bytes()
            .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase()));
    }

    #[test]
    fn owner_pid_parses_the_suffix() {
        assert_eq!(owner_pid("podnet-test-loader-x-1234-7"), Some(1234));
        assert_eq!(owner_pid("podnet-a-99-0"), Some(99));
        assert_eq!(owner_pid("podnet-a-b"), None);
        assert_eq!(owner_pid("podnet-a-1-"), None);
    }
}
