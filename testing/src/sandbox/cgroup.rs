//! [`CgroupTree`]: a unique per-test root inside the cgroup v2 mount (and the v1 memory hierarchy on
//! hybrid hosts), removed with everything in it on `Drop`.

use std::collections::BTreeSet;
use std::fs;
use std::io;
use std::path::{Component, Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Once;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

use super::{cgroup2_mount, owner_pid, pid_alive};
use podnet::resolve::mountinfo;

/// How long `Drop` waits for killed processes to leave the tree before giving up.
const DESTROY_TIMEOUT: Duration = Duration::from_secs(10);

static TREE_COUNTER: AtomicU32 = AtomicU32::new(0);
static SWEEP_STALE: Once = Once::new();

/// A unique cgroup directory `podnet-test-<label>-<pid>-<n>` directly inside the cgroup v2 mount,
/// under which sandbox pods are laid out.
///
/// When the host also has a cgroup v1 memory hierarchy (hybrid hosts), every directory is created
/// there too, so that workloads moved into it get memory accounting. The v1 twin lives under the
/// memory cgroup of the test process itself (so the processes stay accounted to whoever runs the
/// tests); when the test runs in the v1 root, the v1 relative path equals the v2 one.
///
/// `Drop` kills every process in the tree (`cgroup.kill`, else SIGKILL per pid), waits (bounded)
/// until the tree is empty and removes the directories deepest-first in both hierarchies. Trees left
/// by a killed test process are removed by the first `CgroupTree::new` of a later process.
#[derive(Debug)]
pub struct CgroupTree {
    mount: PathBuf,
    root: PathBuf,
    rel_root: String,
    memcg_root: Option<PathBuf>,
}

impl CgroupTree {
    /// Creates the unique root `<cgroup2 mount>/podnet-test-<label>-<pid>-<n>` (and its v1 memory
    /// twin when a v1 memory hierarchy exists). `label` may contain ASCII letters, digits, `-` and `_`.
    pub fn new(label: &str) -> Result<CgroupTree> {
        if label.is_empty()
            || !label
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        {
            bail!(
                "cgroup tree label {label:?} must be non-empty ASCII letters, digits, '-' or '_'"
            );
        }
        let mount = cgroup2_mount()?;
        let memcg_parent = memcg_parent()?;
        SWEEP_STALE.call_once(|| sweep_stale(&mount, memcg_parent.as_deref()));

        let name = format!(
            "podnet-test-{label}-{}-{}",
            std::process::id(),
            TREE_COUNTER.fetch_add(1, Ordering::Relaxed)
        );
        let root = mount.join(&name);
        fs::create_dir(&root).with_context(|| {
            format!(
                "cannot create cgroup {}: needs root and a writable cgroup v2 mount",
                root.display()
            )
        })?;
        let mut tree = CgroupTree {
            mount,
            root,
            rel_root: format!("/{name}"),
            memcg_root: None,
        };
        if let Some(parent) = memcg_parent {
            let dir = parent.join(&name);
            // On failure `tree` is dropped here, which removes the v2 root again.
            fs::create_dir(&dir).with_context(|| {
                format!(
                    "cannot create v1 memory cgroup {}: needs root and a writable memory hierarchy",
                    dir.display()
                )
            })?;
            tree.memcg_root = Some(dir);
        }
        Ok(tree)
    }

    /// The cgroup v2 mount point the tree lives in.
    pub fn mount(&self) -> &Path {
        &self.mount
    }

    /// The absolute path of the tree's root directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The root relative to the cgroup v2 mount, starting with `/` (e.g. `/podnet-test-x-12-0`), as
    /// it appears in `/proc/<pid>/cgroup`.
    pub fn rel_root(&self) -> &str {
        &self.rel_root
    }

    /// The v1 memory twin of the root, when the host has a v1 memory hierarchy.
    pub fn memcg_root(&self) -> Option<&Path> {
        self.memcg_root.as_deref()
    }

    /// The absolute v2 path of `rel` (relative to the tree root), without creating it.
    pub fn path(&self, rel: &str) -> PathBuf {
        self.root.join(rel)
    }

    /// The path of `rel` relative to the cgroup v2 mount, starting with `/`
    /// (`<rel_root>/<rel>`), as podnet reports it in `cgroupPath`.
    pub fn rel_path(&self, rel: &str) -> String {
        if rel.is_empty() {
            self.rel_root.clone()
        } else {
            format!("{}/{}", self.rel_root, rel.trim_end_matches('/'))
        }
    }

    /// The v1 memory twin of `rel`, without creating it (`None` without a v1 memory hierarchy).
    pub fn memcg_path(&self, rel: &str) -> Option<PathBuf> {
        self.memcg_root.as_ref().map(|r| r.join(rel))
    }

    /// Creates `rel` (like `mkdir -p`, relative to the tree root) in the v2 tree and in its v1
    /// memory twin, and returns the v2 path. On hosts where the v2 tree has the memory controller,
    /// it is enabled in the `cgroup.subtree_control` of every ancestor so the new directory gets
    /// `memory.current` and friends (best effort: an ancestor that already holds processes keeps
    /// its controllers as they are).
    pub fn create(&self, rel: &str) -> Result<PathBuf> {
        let comps = check_rel(rel)?;
        let mut dir = self.root.clone();
        for comp in &comps {
            enable_memory_controller(&dir);
            dir.push(comp);
            create_dir_if_missing(&dir)?;
        }
        if let Some(memcg) = &self.memcg_root {
            let mut dir = memcg.clone();
            for comp in &comps {
                dir.push(comp);
                create_dir_if_missing(&dir)?;
            }
        }
        Ok(self.root.join(rel))
    }

    /// Kills every process under `rel` and removes `rel` with all its descendants, in both
    /// hierarchies (what happens to a pod's cgroup when the pod is deleted).
    pub fn remove(&self, rel: &str) -> Result<()> {
        check_rel(rel)?;
        destroy(&self.path(rel), self.memcg_path(rel).as_deref())
            .map_err(|e| anyhow::anyhow!("cannot remove cgroup {rel} of {}: {e}", self.rel_root))
    }

    /// The pids listed in `<rel>/cgroup.procs` of the v2 tree (`rel` may be empty for the root).
    pub fn procs(&self, rel: &str) -> Result<Vec<u32>> {
        let file = self.path(rel).join("cgroup.procs");
        let text =
            fs::read_to_string(&file).with_context(|| format!("cannot read {}", file.display()))?;
        Ok(parse_pids(&text))
    }
}

impl Drop for CgroupTree {
    fn drop(&mut self) {
        if let Err(e) = destroy(&self.root, self.memcg_root.as_deref()) {
            eprintln!(
                "podnet-testing: could not fully remove cgroup tree {}: {e}",
                self.root.display()
            );
        }
    }
}

/// Validates a path relative to the tree root and splits it into components.
fn check_rel(rel: &str) -> Result<Vec<String>> {
    let path = Path::new(rel);
    let mut comps = Vec::new();
    for c in path.components() {
        match c {
            Component::Normal(s) => comps.push(s.to_string_lossy().into_owned()),
            _ => {
                bail!("cgroup path {rel:?} must be relative to the tree root, without '.' or '..'")
            }
        }
    }
    if comps.is_empty() {
        bail!("cgroup path {rel:?} is empty");
    }
    Ok(comps)
}

fn create_dir_if_missing(dir: &Path) -> Result<()> {
    match fs::create_dir(dir) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(e).with_context(|| format!("cannot create cgroup {}", dir.display())),
    }
}

/// Enables the memory controller for the children of `dir` when `dir` has it available.
fn enable_memory_controller(dir: &Path) {
    let has = |file: &str| {
        fs::read_to_string(dir.join(file))
            .map(|s| s.split_whitespace().any(|c| c == "memory"))
            .unwrap_or(false)
    };
    if has("cgroup.controllers") && !has("cgroup.subtree_control") {
        if let Err(e) = fs::write(dir.join("cgroup.subtree_control"), "+memory") {
            log::debug!("cannot enable memory controller in {}: {e}", dir.display());
        }
    }
}

/// The v1 memory cgroup of the current process, as an absolute directory, when a v1 memory
/// hierarchy is mounted.
fn memcg_parent() -> Result<Option<PathBuf>> {
    let entries = mountinfo::read_self()?;
    let Some(mem) = entries
        .iter()
        .find(|m| m.fs_type == "cgroup" && m.has_super_option("memory"))
    else {
        return Ok(None);
    };
    let own = fs::read_to_string("/proc/self/cgroup").context("cannot read /proc/self/cgroup")?;
    let path = own
        .lines()
        .filter_map(|l| {
            let mut f = l.splitn(3, ':');
            let (_, ctrls, path) = (f.next()?, f.next()?, f.next()?);
            ctrls.split(',').any(|c| c == "memory").then_some(path)
        })
        .next()
        .unwrap_or("/");
    // The mount may show only a sub-tree of the hierarchy (cgroup namespaces, bind mounts).
    let inside = path
        .strip_prefix(mem.root.trim_end_matches('/'))
        .unwrap_or(path)
        .trim_start_matches('/');
    let dir = mem.mount_point.join(inside);
    Ok(dir.is_dir().then_some(dir))
}

/// Removes the trees of test processes that no longer exist, from the cgroup v2 mount and the v1
/// memory cgroup of this process.
pub(crate) fn sweep_stale_trees() -> Result<()> {
    let mount = cgroup2_mount()?;
    let memcg_parent = memcg_parent()?;
    sweep_stale(&mount, memcg_parent.as_deref());
    Ok(())
}

/// Removes trees left behind by test processes that no longer exist.
fn sweep_stale(mount: &Path, memcg_parent: Option<&Path>) {
    let stale = |parent: &Path| -> Vec<PathBuf> {
        let Ok(rd) = fs::read_dir(parent) else {
            return Vec::new();
        };
        rd.filter_map(|e| e.ok())
            .filter(|e| {
                let name = e.file_name().to_string_lossy().into_owned();
                name.starts_with("podnet-test-")
                    && owner_pid(&name).is_some_and(|pid| !pid_alive(pid))
            })
            .map(|e| e.path())
            .collect()
    };
    for dir in stale(mount) {
        let name = dir.file_name().map(|n| n.to_owned()).unwrap_or_default();
        let twin = memcg_parent.map(|p| p.join(&name));
        if let Err(e) = destroy(&dir, twin.as_deref()) {
            eprintln!(
                "podnet-testing: cannot remove stale cgroup tree {}: {e}",
                dir.display()
            );
        }
    }
    if let Some(parent) = memcg_parent {
        for dir in stale(parent) {
            if let Err(e) = destroy_v1(&dir) {
                eprintln!(
                    "podnet-testing: cannot remove stale memory cgroup {}: {e}",
                    dir.display()
                );
            }
        }
    }
}

fn parse_pids(text: &str) -> Vec<u32> {
    text.split_whitespace()
        .filter_map(|p| p.parse().ok())
        .collect()
}

/// Every directory of the subtree at `dir`, children before their parents (deepest first).
fn subtree_post_order(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        if let Ok(rd) = fs::read_dir(dir) {
            for e in rd.flatten() {
                if e.file_type().map(|t| t.is_dir()).unwrap_or(false) {
                    walk(&e.path(), out);
                }
            }
        }
        out.push(dir.to_path_buf());
    }
    if dir.is_dir() {
        walk(dir, &mut out);
    }
    out
}

/// All pids found in the `cgroup.procs` files of a subtree.
fn subtree_pids(dir: &Path) -> BTreeSet<u32> {
    subtree_post_order(dir)
        .iter()
        .filter_map(|d| fs::read_to_string(d.join("cgroup.procs")).ok())
        .flat_map(|t| parse_pids(&t))
        .collect()
}

fn populated(dir: &Path) -> bool {
    match fs::read_to_string(dir.join("cgroup.events")) {
        Ok(ev) => ev.lines().any(|l| l.trim() == "populated 1"),
        Err(_) => !subtree_pids(dir).is_empty(),
    }
}

/// Kills everything in the v2 subtree `v2` (and the v1 twin), waits for it to be empty, then
/// removes the directories deepest-first in both hierarchies.
fn destroy(v2: &Path, v1: Option<&Path>) -> std::result::Result<(), String> {
    let deadline = Instant::now() + DESTROY_TIMEOUT;
    let me = std::process::id();
    let mut cgroup_kill_sent = false;
    loop {
        let mut pids = if v2.is_dir() {
            subtree_pids(v2)
        } else {
            BTreeSet::new()
        };
        if let Some(v1) = v1.filter(|d| d.is_dir()) {
            pids.extend(subtree_pids(v1));
        }
        let contains_me = pids.remove(&me);
        if contains_me {
            return Err(format!(
                "the calling process {me} is itself inside the tree: move it out before dropping"
            ));
        }
        if pids.is_empty() && !(v2.is_dir() && populated(v2)) {
            break;
        }
        if Instant::now() > deadline {
            return Err(format!(
                "processes {pids:?} did not exit within {DESTROY_TIMEOUT:?}"
            ));
        }
        let kill_file = v2.join("cgroup.kill");
        if !cgroup_kill_sent && kill_file.exists() {
            cgroup_kill_sent = fs::write(&kill_file, "1").is_ok();
        }
        for pid in &pids {
            if let Ok(pid) = i32::try_from(*pid) {
                let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
            }
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let mut errors = Vec::new();
    for dir in subtree_post_order(v2) {
        if let Err(e) = rmdir_retry(&dir, deadline) {
            errors.push(e);
        }
    }
    if let Some(v1) = v1 {
        if let Err(e) = destroy_v1(v1) {
            errors.push(e);
        }
    }
    if errors.is_empty() {
        Ok(())
    } else {
        Err(errors.join("; "))
    }
}

/// Kills everything in a v1 subtree and removes it deepest-first.
fn destroy_v1(v1: &Path) -> std::result::Result<(), String> {
    let deadline = Instant::now() + DESTROY_TIMEOUT;
    let me = std::process::id();
    loop {
        let pids = subtree_pids(v1);
        if pids.contains(&me) {
            return Err(format!(
                "the calling process {me} is itself inside {}",
                v1.display()
            ));
        }
        if pids.is_empty() {
            break;
        }
        if Instant::now() > deadline {
            return Err(format!(
                "processes {pids:?} did not exit within {DESTROY_TIMEOUT:?}"
            ));
        }
        for pid in &pids {
            if let Ok(pid) = i32::try_from(*pid) {
                let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
            }
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let mut errors = Vec::new();
    for dir in subtree_post_order(v1) {
        if let Err(e) = rmdir_retry(&dir, deadline) {
            errors.push(e);
        }
    }
    if errors.is_empty() {
        Ok(())
    } else {
        Err(errors.join("; "))
    }
}

/// `rmdir`, retried while the kernel still reports the cgroup busy (a task that just exited can
/// take a moment to leave it).
fn rmdir_retry(dir: &Path, deadline: Instant) -> std::result::Result<(), String> {
    loop {
        match fs::remove_dir(dir) {
            Ok(()) => return Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(e) if Instant::now() < deadline && e.raw_os_error() == Some(libc::EBUSY) => {
                std::thread::sleep(Duration::from_millis(10));
            }
            Err(e) => return Err(format!("rmdir {}: {e}", dir.display())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rel_paths_are_checked() {
        assert_eq!(check_rel("a/b.slice/c").unwrap(), ["a", "b.slice", "c"]);
        assert!(check_rel("/abs").is_err());
        assert!(check_rel("a/../b").is_err());
        assert!(check_rel("./a").is_err());
        assert!(check_rel("").is_err());
    }

    #[test]
    fn pids_are_parsed_one_per_line() {
        assert_eq!(parse_pids("12\n345\n"), [12, 345]);
        assert!(parse_pids("").is_empty());
    }
}
