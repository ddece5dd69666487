//! The agent's state on bpffs (`--pin-dir`, default `/sys/fs/bpf/podnet`, mode 0700): the loaded
//! object and every attachment, pinned so that they outlive the agent.
//!
//! ```text
//! <dir>/maps/<map>                     counters, misses, sock_owner, sock_cookie_owner, build
//! <dir>/programs/<program>             every program loaded, so a new agent attaches the same ones
//! <dir>/fexit/<program>                the file-open fexit link, where the kernel has BTF
//! <dir>/kprobes/<program>              or the file-open kprobe perf links (Linux 5.15; older: not pinned)
//! <dir>/tracepoints/<event>            or the file-open tracepoint perf links, where no kprobes
//! <dir>/pods/<pod uid>/<program>       each pod's cgroup links
//! ```
//!
//! Removing a link's pin detaches it (the agent holds no other reference); removing everything
//! is `podnet agent --uninstall`.

use std::fs;
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

/// Where the agent pins by default.
pub const DEFAULT_DIR: &str = "/sys/fs/bpf/podnet";

/// Has an agent pinned its object under `dir`?
pub fn exists(dir: &Path) -> bool {
    dir.join("maps").join("counters").exists()
}

/// Did this build of podnet pin the object under `dir` (an agent of the same version)? Reads the
/// fingerprint the agent wrote in the `build` map; pins from before that map existed have none
/// and are another build.
pub fn same_build(dir: &Path) -> Result<bool> {
    let path = dir.join("maps").join("build");
    if !path.exists() {
        return Ok(false);
    }
    let map = podnet_loader::Map::from_pin(&path)
        .with_context(|| format!("opening the pinned map {}", path.display()))?;
    let value = map
        .lookup(&0u32.to_ne_bytes())
        .with_context(|| format!("reading {}", path.display()))?;
    Ok(value.as_deref() == Some(&crate::attach::object_fingerprint().to_ne_bytes()[..]))
}

/// Makes `dir` (mode 0700: the counters are nobody else's business).
pub fn create_dir(dir: &Path) -> Result<()> {
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .with_context(|| {
            format!(
                "creating the pin directory {} (is bpffs mounted? `mount -t bpf bpf /sys/fs/bpf`)",
                dir.display()
            )
        })
}

/// The pin of the file-open link on tracepoint `syscalls/<event>`.
pub fn tracepoint(dir: &Path, event: &str) -> PathBuf {
    dir.join("tracepoints").join(event)
}

/// The pin of file-open kprobe program `program`'s link.
pub fn kprobe(dir: &Path, program: &str) -> PathBuf {
    dir.join("kprobes").join(program)
}

/// The pin of the file-open fexit program `program`'s link.
pub fn fexit(dir: &Path, program: &str) -> PathBuf {
    dir.join("fexit").join(program)
}

/// What an earlier agent pinned to count file opens under `dir`, if anything: an agent that
/// adopts the pins keeps it, so that opens are never counted twice.
pub fn file_open_probe(dir: &Path) -> Option<crate::attach::FileOpenProbe> {
    let has_pins =
        |sub: &str| fs::read_dir(dir.join(sub)).is_ok_and(|mut entries| entries.next().is_some());
    if has_pins("fexit") {
        Some(crate::attach::FileOpenProbe::Fexit)
    } else if has_pins("kprobes") {
        Some(crate::attach::FileOpenProbe::Kprobe)
    } else if has_pins("tracepoints") {
        Some(crate::attach::FileOpenProbe::Tracepoint)
    } else {
        None
    }
}

/// The pin of `program`'s link on the pod with `uid`.
pub fn pod_link(dir: &Path, uid: &str, program: &str) -> PathBuf {
    dir.join("pods").join(uid).join(program)
}

/// The pods whose links are pinned under `dir`.
pub fn pod_uids(dir: &Path) -> Vec<String> {
    let Ok(entries) = fs::read_dir(dir.join("pods")) else {
        return Vec::new();
    };
    entries
        .filter_map(|e| e.ok())
        .filter_map(|e| e.file_name().into_string().ok())
        .collect()
}

/// Removes a pod's pinned links (the kernel detaches them) and its directory.
pub fn remove_pod(dir: &Path, uid: &str) {
    let pod = dir.join("pods").join(uid);
    if let Err(e) = fs::remove_dir_all(&pod) {
        if e.kind() != std::io::ErrorKind::NotFound {
            log::warn!("removing the pins of pod {uid} at {}: {e}", pod.display());
        }
    }
}

/// Removes everything pinned under `dir`: every program detaches, every map is freed once no
/// process holds it. Returns how many pins were removed.
pub fn uninstall(dir: &Path) -> Result<usize> {
    if !dir.exists() {
        return Ok(0);
    }
    let mut removed = 0;
    count_files(dir, &mut removed)?;
    fs::remove_dir_all(dir)
        .with_context(|| format!("removing the pins under {}", dir.display()))?;
    Ok(removed)
}

fn count_files(dir: &Path, n: &mut usize) -> Result<()> {
    for e in fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))? {
        let e = e?;
        if e.file_type()?.is_dir() {
            count_files(&e.path(), n)?;
        } else {
            *n += 1;
        }
    }
    Ok(())
}
