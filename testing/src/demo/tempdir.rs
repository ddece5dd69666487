//! The demo's temporary directory for its kubeconfig, removed on drop; dead runs' ones swept.

use std::fs;
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};

use anyhow::{Context, Result};

/// A temporary directory removed with its contents on drop.
#[derive(Debug)]
pub(super) struct TempDir(pub(super) PathBuf);

static TEMP_COUNTER: AtomicU32 = AtomicU32::new(0);

impl TempDir {
    /// `<tmp>/podnet-demo-<pid>-<n>`, mode 0700; stale ones of dead processes are removed first.
    pub(super) fn new() -> Result<TempDir> {
        let tmp = std::env::temp_dir();
        let me = std::process::id();
        if let Ok(rd) = fs::read_dir(&tmp) {
            for e in rd.flatten() {
                let name = e.file_name().to_string_lossy().into_owned();
                if temp_dir_owner(&name)
                    .is_some_and(|pid| pid != me && !Path::new(&format!("/proc/{pid}")).exists())
                {
                    let _ = fs::remove_dir_all(e.path());
                }
            }
        }
        let n = TEMP_COUNTER.fetch_add(1, Ordering::Relaxed);
        let dir = tmp.join(format!("podnet-demo-{me}-{n}"));
        if dir.exists() {
            fs::remove_dir_all(&dir)
                .with_context(|| format!("cannot remove old {}", dir.display()))?;
        }
        fs::DirBuilder::new()
            .mode(0o700)
            .create(&dir)
            .with_context(|| format!("cannot create {}", dir.display()))?;
        Ok(TempDir(dir))
    }
}

/// The pid in a temporary directory name `podnet-demo-<pid>-<n>`.
fn temp_dir_owner(name: &str) -> Option<u32> {
    let (pid, n) = name.strip_prefix("podnet-demo-")?.split_once('-')?;
    if n.is_empty() || !n.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    pid.parse().ok()
}

impl Drop for TempDir {
    fn drop(&mut self) {
        if let Err(e) = fs::remove_dir_all(&self.0) {
            if e.kind() != std::io::ErrorKind::NotFound {
                eprintln!("podnet-testing: could not remove {}: {e}", self.0.display());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn temp_dirs_name_their_owner() {
        assert_eq!(temp_dir_owner("podnet-demo-1234-0"), Some(1234));
        assert_eq!(temp_dir_owner("podnet-demo-1234"), None);
        assert_eq!(temp_dir_owner("podnet-demo-test-bin-1234"), None);
        assert_eq!(temp_dir_owner("podnet-demo-x-1"), None);
    }
}
