//! The kernel's pseudo-files the loader reads: possible CPUs (sysfs), mount points of tracefs and
//! bpffs (`/proc/self/mountinfo`, parsed by [`crate::mountinfo`]), tracepoint ids (tracefs).

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use crate::error::{Error, Result};
use crate::mountinfo;
use crate::sys;

/// Parses a kernel CPU list such as `0-3` or `0,2-3\n` into CPU numbers.
pub fn parse_cpu_list(s: &str) -> Result<Vec<u32>> {
    let bad = || Error::InvalidArgument(format!("bad CPU list {s:?}"));
    let mut cpus = Vec::new();
    for part in s.trim().split(',').filter(|p| !p.is_empty()) {
        let (lo, hi) = match part.split_once('-') {
            Some((lo, hi)) => (
                lo.parse::<u32>().map_err(|_| bad())?,
                hi.parse::<u32>().map_err(|_| bad())?,
            ),
            None => {
                let n = part.parse::<u32>().map_err(|_| bad())?;
                (n, n)
            }
        };
        if lo > hi || hi - lo > 65536 {
            return Err(bad());
        }
        cpus.extend(lo..=hi);
    }
    if cpus.is_empty() {
        return Err(bad());
    }
    Ok(cpus)
}

/// Number of possible CPUs (`/sys/devices/system/cpu/possible`): per-CPU map values hold one
/// slot for each of them, in CPU order.
pub fn possible_cpus() -> Result<usize> {
    static CPUS: OnceLock<usize> = OnceLock::new();
    if let Some(n) = CPUS.get() {
        return Ok(*n);
    }
    const PATH: &str = "/sys/devices/system/cpu/possible";
    let text = std::fs::read_to_string(PATH).map_err(|e| Error::io(PATH, e))?;
    let n = parse_cpu_list(&text)?.len();
    Ok(*CPUS.get_or_init(|| n))
}

/// Mount points of the file systems of type `fs_type` in /proc/self/mountinfo, in order.
fn mounted(fs_type: &str) -> Result<Vec<PathBuf>> {
    Ok(mountinfo::read_self()?
        .into_iter()
        .filter(|m| m.fs_type == fs_type)
        .map(|m| m.mount_point)
        .collect())
}

/// The tracefs directory (the one holding `events/`). Looks in /proc/self/mountinfo, then at
/// `/sys/kernel/tracing` and `/sys/kernel/debug/tracing`; when none is there and we are root,
/// mounts tracefs at `/sys/kernel/tracing`.
pub fn tracefs_dir() -> Result<PathBuf> {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    if let Some(d) = DIR.get() {
        return Ok(d.clone());
    }
    let mut candidates = mounted("tracefs")?;
    candidates.push("/sys/kernel/tracing".into());
    candidates.push("/sys/kernel/debug/tracing".into());
    let dir = match pick_tracefs(&candidates, |p| std::fs::metadata(p))? {
        Some(d) => d,
        None if sys::is_root() => {
            let target = Path::new("/sys/kernel/tracing");
            nix::mount::mount(Some("tracefs"), target, Some("tracefs"), nix::mount::MsFlags::empty(), None::<&str>)
                .map_err(|e| Error::NoTracefs(format!("mounting it at {} failed: {e}", target.display())))?;
            target.to_path_buf()
        }
        None => {
            return Err(Error::NoTracefs(
                "not in /proc/self/mountinfo, /sys/kernel/tracing or /sys/kernel/debug/tracing, and not root".into(),
            ))
        }
    };
    Ok(DIR.get_or_init(|| dir).clone())
}

/// The first of `candidates` whose `events` directory `stat` finds. A candidate that exists but
/// whose `events` this process may not see (EACCES: tracefs is mode 0700 and podnet runs with
/// capabilities rather than as root) is that error, not "not found": tracefs is there.
fn pick_tracefs(
    candidates: &[PathBuf],
    stat: impl Fn(&Path) -> std::io::Result<std::fs::Metadata>,
) -> Result<Option<PathBuf>> {
    let mut denied = None;
    for d in candidates {
        match stat(&d.join("events")) {
            Ok(m) if m.is_dir() => return Ok(Some(d.clone())),
            Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied && denied.is_none() => {
                denied = Some(d.clone());
            }
            _ => {}
        }
    }
    match denied {
        Some(dir) => {
            use std::os::unix::fs::MetadataExt;
            let (mode, uid) = stat(&dir)
                .map(|m| (m.mode() & 0o7777, m.uid()))
                .unwrap_or((0, 0));
            Err(Error::TracefsDenied {
                dir,
                mode,
                uid,
                // /proc/self belongs to the process's effective uid.
                euid: std::fs::metadata("/proc/self").map_or(u32::MAX, |m| m.uid()),
            })
        }
        None => Ok(None),
    }
}

fn check_event_component(s: &str) -> Result<()> {
    if s.is_empty() || s.contains('/') || s == "." || s == ".." {
        return Err(Error::InvalidArgument(format!(
            "bad tracepoint name component {s:?}"
        )));
    }
    Ok(())
}

/// The perf id of tracepoint `category/event` (tracefs `events/<category>/<event>/id`).
pub fn tracepoint_id(category: &str, event: &str) -> Result<u64> {
    check_event_component(category)?;
    check_event_component(event)?;
    let tracefs = tracefs_dir()?;
    let path = tracefs.join("events").join(category).join(event).join("id");
    match std::fs::read_to_string(&path) {
        Ok(text) => text.trim().parse().map_err(|_| {
            Error::InvalidArgument(format!("{}: not a tracepoint id: {text:?}", path.display()))
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(Error::NoSuchTracepoint {
            category: category.into(),
            event: event.into(),
            tracefs,
        }),
        Err(e) => Err(Error::io(path, e)),
    }
}

/// Does tracepoint `category/event` exist on this kernel?
pub fn tracepoint_exists(category: &str, event: &str) -> Result<bool> {
    match tracepoint_id(category, event) {
        Ok(_) => Ok(true),
        Err(Error::NoSuchTracepoint { .. }) => Ok(false),
        Err(e) => Err(e),
    }
}

/// A bpf filesystem mount point: the first in /proc/self/mountinfo (preferring `/sys/fs/bpf`);
/// when there is none and we are root, bpffs is mounted at `/sys/fs/bpf`.
pub fn bpffs_dir() -> Result<PathBuf> {
    let default = Path::new("/sys/fs/bpf");
    let mounts = mounted("bpf")?;
    if let Some(dir) = mounts
        .iter()
        .find(|m| m.as_path() == default)
        .or(mounts.first())
    {
        return Ok(dir.clone());
    }
    if !sys::is_root() {
        return Err(Error::NotBpffs(default.into()));
    }
    std::fs::create_dir_all(default).map_err(|e| Error::io(default, e))?;
    nix::mount::mount(
        Some("bpf"),
        default,
        Some("bpf"),
        nix::mount::MsFlags::empty(),
        Some("mode=0700"),
    )
    .map_err(|e| Error::io(default, std::io::Error::from(e)))?;
    Ok(default.into())
}

/// Is `path` on a bpf filesystem?
pub(crate) fn is_on_bpffs(path: &Path) -> bool {
    nix::sys::statfs::statfs(path)
        .is_ok_and(|s| s.filesystem_type() == nix::sys::statfs::BPF_FS_MAGIC)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tracefs_that_cannot_be_read_is_permission_denied_not_missing() {
        use std::io::{Error as IoError, ErrorKind};
        let tmp = std::env::temp_dir().join(format!("podnet-tracefs-{}", std::process::id()));
        std::fs::create_dir_all(tmp.join("events")).unwrap();
        let candidates = vec![PathBuf::from("/mnt/tracefs"), tmp.clone()];
        // A 0700 tracefs seen without CAP_DAC_READ_SEARCH: its `events` cannot even be stat'ed.
        let denied = |p: &Path| {
            if p.starts_with("/mnt/tracefs/") {
                Err(IoError::from(ErrorKind::PermissionDenied))
            } else if p == Path::new("/mnt/tracefs") {
                std::fs::metadata(&tmp)
            } else {
                Err(IoError::from(ErrorKind::NotFound))
            }
        };
        match pick_tracefs(&candidates[..1], denied) {
            Err(e @ Error::TracefsDenied { .. }) => {
                let msg = e.to_string();
                assert!(msg.starts_with("permission denied reading tracefs at /mnt/tracefs"));
                assert!(
                    msg.contains("CAP_DAC_READ_SEARCH") && msg.contains("mode=755"),
                    "{msg}"
                );
                assert!(!msg.contains("not found"), "{msg}");
            }
            other => panic!("expected TracefsDenied, got {other:?}"),
        }
        // A readable one later in the list wins.
        assert_eq!(
            pick_tracefs(&candidates, |p| if p.starts_with("/mnt") {
                denied(p)
            } else {
                std::fs::metadata(p)
            })
            .unwrap(),
            Some(tmp.clone())
        );
        // Nothing anywhere: not found, as before.
        let missing = |_: &Path| Err(IoError::from(ErrorKind::NotFound));
        assert_eq!(pick_tracefs(&candidates, missing).unwrap(), None);
        let _ = std::fs::remove_dir_all(&tmp);
    }

    #[test]
    fn cpu_lists() {
        assert_eq!(parse_cpu_list("0-1\n").unwrap(), vec![0, 1]);
        assert_eq!(parse_cpu_list("0,2-3").unwrap(), vec![0, 2, 3]);
        assert_eq!(parse_cpu_list("5").unwrap(), vec![5]);
        for bad in ["", "\n", "a", "3-1", "0-", "-1", "0,,x"] {
            assert!(parse_cpu_list(bad).is_err(), "{bad:?} parsed");
        }
    }
}
