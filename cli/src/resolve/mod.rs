//! Resolve pods to their cgroup v2 directories.
//!
//! One walk of the cgroup2 tree ([`scan`]) finds every pod directory in every layout podnet knows
//! (design.md, "Cgroup layouts to resolve"), with the container directories inside each one.
//! [`resolve`] then matches the pods that discovery found to those directories by UID, and their
//! containers by runtime container id.
//!
//! | setup | pod directory | container directory |
//! |---|---|---|
//! | systemd driver | `kubepods-<qos>-pod<u_>.slice`, Guaranteed `kubepods-pod<u_>.slice` | `cri-containerd-<id>.scope`, `crio-<id>.scope`, `docker-<id>.scope` |
//! | cgroupfs driver | `kubepods/<qos>/pod<u>`, Guaranteed `kubepods/pod<u>` | `<id>` (64 hex digits) |
//! | kind node | any prefix, `kubelet-kubepods-<qos>-pod<u_>.slice`, Guaranteed `kubelet-kubepods-pod<u_>.slice` | `cri-containerd-<id>.scope` |
//!
//! The cgroup2 mount is found in `/proc/self/mountinfo` ([`Mounts`]); podnet never assumes
//! `/sys/fs/cgroup`.

use std::collections::HashMap;
use std::fmt;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

/// The one mountinfo parser (the loader's), for the cgroup mounts and anyone who needs more of them.
pub use podnet_loader::mountinfo;

use crate::model::PodInfo;

/// How deep below the cgroup2 root [`scan`] looks. Real trees are at most ~10 levels deep even for
/// kind nodes seen from the host (`/system.slice/docker-<id>.scope/kubelet.slice/...`).
pub const MAX_SCAN_DEPTH: usize = 16;

/// The cgroup file systems of this machine, from `/proc/self/mountinfo`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Mounts {
    /// Mount point of the cgroup v2 (unified) hierarchy, when mounted.
    pub cgroup2: Option<PathBuf>,
    /// Mount point of the cgroup v1 hierarchy holding the `memory` controller (hybrid and legacy
    /// hosts), when mounted.
    pub memory_v1: Option<PathBuf>,
}

impl Mounts {
    /// Parses the text of a `/proc/<pid>/mountinfo` file (with [`podnet_loader::mountinfo`]).
    ///
    /// When several mounts of a hierarchy exist, the one that shows the most of it wins: a mount
    /// whose root lies above this process's cgroup namespace (root `/../..`, e.g. the host's
    /// `/sys/fs/cgroup` mounted into a DaemonSet pod) beats the namespace's own view (`/`), which
    /// beats a bind mount of a subtree (`/kubepods`); among equals the first line wins. Octal
    /// escapes in mount points (`\040` for a space) are decoded.
    pub fn from_mountinfo(text: &str) -> Mounts {
        let mut cgroup2: Option<(RootRank, PathBuf)> = None;
        let mut memory_v1: Option<(RootRank, PathBuf)> = None;
        for entry in mountinfo::parse(text) {
            let slot = match entry.fs_type.as_str() {
                "cgroup2" => &mut cgroup2,
                "cgroup" if entry.has_super_option("memory") => &mut memory_v1,
                _ => continue,
            };
            let rank = RootRank::of(&entry.root);
            let better = match slot {
                None => true,
                Some((best, _)) => rank > *best,
            };
            if better {
                *slot = Some((rank, entry.mount_point));
            }
        }
        Mounts {
            cgroup2: cgroup2.map(|(_, p)| p),
            memory_v1: memory_v1.map(|(_, p)| p),
        }
    }

    /// Reads `/proc/self/mountinfo`.
    pub fn detect() -> io::Result<Mounts> {
        let text = fs::read_to_string("/proc/self/mountinfo").map_err(|e| {
            io::Error::new(
                e.kind(),
                format!("cannot read /proc/self/mountinfo: {e} (is /proc mounted?)"),
            )
        })?;
        Ok(Mounts::from_mountinfo(&text))
    }

    /// The cgroup2 mount point, or an error that names the fix.
    pub fn require_cgroup2(&self) -> Result<&Path, ScanError> {
        self.cgroup2.as_deref().ok_or(ScanError::NoCgroup2)
    }
}

/// How much of a cgroup hierarchy a mount shows, from its mountinfo root: more leading `..`
/// components (above our cgroup namespace) is more; then fewer other components is more.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct RootRank {
    above: usize,
    shallowness: isize,
}

impl RootRank {
    fn of(root: &str) -> RootRank {
        let comps: Vec<&str> = root.split('/').filter(|c| !c.is_empty()).collect();
        let above = comps.iter().take_while(|c| **c == "..").count();
        RootRank {
            above,
            shallowness: -((comps.len() - above) as isize),
        }
    }
}

/// Errors of [`scan_mounts`].
#[derive(Debug, thiserror::Error)]
pub enum ScanError {
    /// No cgroup2 file system is mounted.
    #[error(
        "no cgroup v2 mount found in /proc/self/mountinfo: mount it \
         (`mount -t cgroup2 none /sys/fs/cgroup/unified`) or boot with \
         systemd.unified_cgroup_hierarchy=1; in a container, mount the host's /sys/fs/cgroup"
    )]
    NoCgroup2,
    /// The cgroup2 root could not be read.
    #[error("cannot scan the cgroup v2 tree at {path}: {source}")]
    Io {
        /// The directory that failed.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
}

/// A QoS level as it appears in cgroup paths.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum QosLevel {
    /// No QoS level in the path (`kubepods-pod<u_>.slice`, `kubepods/pod<u>`).
    Guaranteed,
    /// `burstable`.
    Burstable,
    /// `besteffort`.
    BestEffort,
}

impl QosLevel {
    /// The Kubernetes `status.qosClass` spelling: `Guaranteed`, `Burstable`, `BestEffort`.
    pub fn class_name(self) -> &'static str {
        match self {
            QosLevel::Guaranteed => "Guaranteed",
            QosLevel::Burstable => "Burstable",
            QosLevel::BestEffort => "BestEffort",
        }
    }

    /// The spelling in cgroup paths: `guaranteed` (never in a path), `burstable`, `besteffort`.
    pub fn path_name(self) -> &'static str {
        match self {
            QosLevel::Guaranteed => "guaranteed",
            QosLevel::Burstable => "burstable",
            QosLevel::BestEffort => "besteffort",
        }
    }

    fn from_path_segment(s: &str) -> Option<QosLevel> {
        match s {
            "burstable" => Some(QosLevel::Burstable),
            "besteffort" => Some(QosLevel::BestEffort),
            _ => None,
        }
    }
}

impl fmt::Display for QosLevel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.class_name())
    }
}

/// Which naming scheme a pod directory follows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PodLayout {
    /// kubelet with the systemd cgroup driver: `kubepods-<qos>-pod<u_>.slice`.
    Systemd,
    /// kubelet with the cgroupfs driver: `kubepods/<qos>/pod<u>`.
    Cgroupfs,
    /// A kind node (kubelet in a container) seen from the host: `kubelet-kubepods-<qos>-pod<u_>.slice`.
    KindNested,
}

/// A container directory found inside a pod directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContainerCgroup {
    /// The runtime's container id (no prefix, no `.scope`).
    pub id: String,
    /// `containerd`, `cri-o` or `docker` when the directory name says so; `None` for the cgroupfs
    /// layout's bare `<id>` directories.
    pub runtime: Option<String>,
    /// Absolute path.
    pub dir: PathBuf,
    /// Path relative to the cgroup2 mount, starting with `/`.
    pub rel: String,
}

/// A pod directory found by [`scan`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodCgroup {
    /// The pod UID with dashes restored (`metadata.uid`).
    pub uid: String,
    /// QoS level read from the path.
    pub qos: QosLevel,
    /// Naming scheme of the directory.
    pub layout: PodLayout,
    /// Absolute path.
    pub dir: PathBuf,
    /// Path relative to the cgroup2 mount, starting with `/`.
    pub rel: String,
    /// Container directories directly inside the pod directory, sorted by name.
    pub containers: Vec<ContainerCgroup>,
}

/// Every pod directory of one cgroup2 tree.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CgroupIndex {
    /// The directory that was scanned (the cgroup2 mount).
    pub root: PathBuf,
    /// Pod directories in walk order (sorted by path).
    pub pods: Vec<PodCgroup>,
    /// On hybrid hosts, when the cgroup2 tree had no pod directories: the v1 memory hierarchy's
    /// mount point and how many pod directories it holds. Set by [`scan_mounts`].
    pub v1_pods: Option<(PathBuf, usize)>,
}

impl CgroupIndex {
    /// Pod directories whose UID is `uid` (normally zero or one).
    pub fn find(&self, uid: &str) -> Vec<&PodCgroup> {
        let uid = uid.to_ascii_lowercase();
        self.pods.iter().filter(|p| p.uid == uid).collect()
    }
}

/// Parses a pod directory name. `parent` and `grandparent` are the names of the directories
/// above it (the cgroupfs layout is recognised by them: `kubepods/pod<u>`,
/// `kubepods/<qos>/pod<u>`). Returns the UID (dashes restored), QoS level and layout.
pub fn parse_pod_dir(
    name: &str,
    parent: Option<&str>,
    grandparent: Option<&str>,
) -> Option<(String, QosLevel, PodLayout)> {
    if let Some(stem) = name.strip_suffix(".slice") {
        let (rest, layout) = match stem.strip_prefix("kubelet-kubepods-") {
            Some(rest) => (rest, PodLayout::KindNested),
            None => (stem.strip_prefix("kubepods-")?, PodLayout::Systemd),
        };
        let (qos, uid_part) = match rest.strip_prefix("pod") {
            Some(u) => (QosLevel::Guaranteed, u),
            None => {
                let (q, u) = rest.split_once('-')?;
                (QosLevel::from_path_segment(q)?, u.strip_prefix("pod")?)
            }
        };
        return Some((normalize_uid(uid_part)?, qos, layout));
    }
    let uid_part = name.strip_prefix("pod")?;
    let qos = match (parent?, grandparent) {
        ("kubepods", _) => QosLevel::Guaranteed,
        (q, Some("kubepods")) => QosLevel::from_path_segment(q)?,
        _ => return None,
    };
    Some((normalize_uid(uid_part)?, qos, PodLayout::Cgroupfs))
}

/// Checks a UID as found in a path and restores its dashes. Accepts the UUID form
/// (36 characters) and the 32-hex-digit form the kubelet gives static pods.
fn normalize_uid(s: &str) -> Option<String> {
    if !(32..=36).contains(&s.len()) {
        return None;
    }
    if !s
        .bytes()
        .all(|b| b.is_ascii_hexdigit() || b == b'-' || b == b'_')
    {
        return None;
    }
    Some(s.replace('_', "-").to_ascii_lowercase())
}

/// Parses a container directory name inside a pod directory: returns the container id and the
/// runtime named by the prefix. `crio-conmon-<id>.scope` (CRI-O's monitor process) is not a
/// container.
pub fn parse_container_dir(name: &str) -> Option<(String, Option<&'static str>)> {
    let prefixed = |s: &str| -> Option<String> {
        (!s.is_empty() && s.bytes().all(|b| b.is_ascii_hexdigit())).then(|| s.to_ascii_lowercase())
    };
    if let Some(stem) = name.strip_suffix(".scope") {
        if let Some(id) = stem.strip_prefix("cri-containerd-") {
            return Some((prefixed(id)?, Some("containerd")));
        }
        if stem.starts_with("crio-conmon-") {
            return None;
        }
        if let Some(id) = stem.strip_prefix("crio-") {
            return Some((prefixed(id)?, Some("cri-o")));
        }
        if let Some(id) = stem.strip_prefix("docker-") {
            return Some((prefixed(id)?, Some("docker")));
        }
        return None;
    }
    if name.starts_with("crio-conmon-") {
        return None;
    }
    // CRI-O with the cgroupfs driver names container directories `crio-<id>`.
    if let Some(id) = name.strip_prefix("crio-") {
        return Some((prefixed(id)?, Some("cri-o")));
    }
    (name.len() == 64 && name.bytes().all(|b| b.is_ascii_hexdigit()))
        .then(|| (name.to_ascii_lowercase(), None))
}

/// Walks the cgroup2 tree at `cgroup2_root` once and records every pod directory.
///
/// The walk goes at most [`MAX_SCAN_DEPTH`] levels deep, never follows symlinks, and tolerates
/// directories that vanish while it runs (pods come and go). It also looks inside pod and container
/// directories, so pods of a kubelet nested in a pod are found too. Only an unreadable root is an
/// error.
pub fn scan(cgroup2_root: &Path) -> io::Result<CgroupIndex> {
    let meta = fs::symlink_metadata(cgroup2_root)?;
    if !meta.is_dir() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{} is not a directory", cgroup2_root.display()),
        ));
    }
    // Fail early on an unreadable root; below it, errors mean "gone" or "not ours" and are skipped.
    fs::read_dir(cgroup2_root)?;
    let mut index = CgroupIndex {
        root: cgroup2_root.to_path_buf(),
        pods: Vec::new(),
        v1_pods: None,
    };
    walk(cgroup2_root, cgroup2_root, 0, None, None, &mut index);
    Ok(index)
}

/// Child directories of `dir` (name, path), sorted by name; symlinks and files are left out.
fn child_dirs(dir: &Path) -> Vec<(String, PathBuf)> {
    let Ok(rd) = fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut out: Vec<(String, PathBuf)> = rd
        .filter_map(|e| e.ok())
        .filter(|e| e.file_type().map(|t| t.is_dir()).unwrap_or(false))
        .filter_map(|e| {
            let name = e.file_name().into_string().ok()?;
            Some((name, e.path()))
        })
        .collect();
    out.sort();
    out
}

fn rel_path(root: &Path, dir: &Path) -> String {
    match dir.strip_prefix(root) {
        Ok(r) => format!("/{}", r.to_string_lossy()),
        Err(_) => dir.to_string_lossy().into_owned(),
    }
}

/// Walks the children of `dir`, whose own name is `here` (`None` for the root) and whose parent's
/// name is `up`.
fn walk(
    root: &Path,
    dir: &Path,
    depth: usize,
    here: Option<&str>,
    up: Option<&str>,
    index: &mut CgroupIndex,
) {
    if depth >= MAX_SCAN_DEPTH {
        return;
    }
    for (name, path) in child_dirs(dir) {
        if let Some((uid, qos, layout)) = parse_pod_dir(&name, here, up) {
            let containers = child_dirs(&path)
                .into_iter()
                .filter_map(|(cname, cpath)| {
                    let (id, runtime) = parse_container_dir(&cname)?;
                    Some(ContainerCgroup {
                        id,
                        runtime: runtime.map(str::to_string),
                        rel: rel_path(root, &cpath),
                        dir: cpath,
                    })
                })
                .collect();
            index.pods.push(PodCgroup {
                uid,
                qos,
                layout,
                rel: rel_path(root, &path),
                dir: path.clone(),
                containers,
            });
        }
        walk(root, &path, depth + 1, Some(&name), here, index);
    }
}

/// Scans the cgroup2 tree of `mounts`; on a hybrid host whose cgroup2 tree holds no pod
/// directories, also counts the pod directories of the v1 memory hierarchy so that [`resolve`] can
/// say plainly that the pods live in cgroup v1 only.
pub fn scan_mounts(mounts: &Mounts) -> Result<CgroupIndex, ScanError> {
    let root = mounts.require_cgroup2()?;
    let mut index = scan(root).map_err(|source| ScanError::Io {
        path: root.to_path_buf(),
        source,
    })?;
    if index.pods.is_empty() {
        if let Some(v1) = &mounts.memory_v1 {
            if let Ok(v1_index) = scan(v1) {
                if !v1_index.pods.is_empty() {
                    index.v1_pods = Some((v1.clone(), v1_index.pods.len()));
                }
            }
        }
    }
    Ok(index)
}

/// A container matched to its cgroup directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResolvedContainer {
    /// Container name from `containerStatuses[].name` (empty when the pod is known by UID only).
    pub name: String,
    /// The runtime's container id.
    pub id: String,
    /// Absolute path of the container's cgroup directory.
    pub dir: PathBuf,
    /// Path relative to the cgroup2 mount, starting with `/`.
    pub rel: String,
}

/// A pod matched to its cgroup directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResolvedPod {
    /// The pod as discovered; `qos_class` is filled from the cgroup path when discovery did not
    /// know it.
    pub info: PodInfo,
    /// Absolute path of the pod's cgroup directory.
    pub dir: PathBuf,
    /// Path relative to the cgroup2 mount, starting with `/` (the `cgroupPath` of podnet/v1).
    pub rel: String,
    /// The containers whose id has a directory inside the pod directory.
    pub containers: Vec<ResolvedContainer>,
}

/// The result of [`resolve`]: pods with a cgroup directory, and warnings for the others.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Resolved {
    /// Pods found in the cgroup tree, in the order they were given.
    pub pods: Vec<ResolvedPod>,
    /// One line per problem; none of them is fatal.
    pub warnings: Vec<String>,
}

/// A pod's name for messages: `namespace/name`, or `<unknown> (uid …)`.
fn pod_label(p: &PodInfo) -> String {
    if p.name.is_empty() {
        format!("<unknown> (uid {})", p.uid)
    } else {
        format!("{}/{}", p.namespace, p.name)
    }
}

/// Matches pods to the directories of `index` by UID, and their containers by id.
///
/// A pod without a directory is a warning, not an error (it may be Pending, or on another node).
/// A container whose id has no directory (not started yet, or exited) is left out quietly.
pub fn resolve(pods: &[PodInfo], index: &CgroupIndex) -> Resolved {
    let mut by_uid: HashMap<&str, Vec<&PodCgroup>> = HashMap::new();
    for p in &index.pods {
        by_uid.entry(p.uid.as_str()).or_default().push(p);
    }
    let mut out = Resolved::default();
    let mut missing = 0usize;
    for pod in pods {
        let uid = pod.uid.to_ascii_lowercase();
        let found = by_uid.get(uid.as_str()).map(Vec::as_slice).unwrap_or(&[]);
        let Some(cg) = found.first() else {
            missing += 1;
            let phase = pod
                .phase
                .as_deref()
                .map(|p| format!(" ({p})"))
                .unwrap_or_default();
            out.warnings.push(format!(
                "pod {}{}: no cgroup v2 directory for uid {} on this node — not attached",
                pod_label(pod),
                phase,
                pod.uid
            ));
            continue;
        };
        if found.len() > 1 {
            let all: Vec<&str> = found.iter().map(|c| c.rel.as_str()).collect();
            out.warnings.push(format!(
                "pod {}: uid {} has {} cgroup directories ({}); using {}",
                pod_label(pod),
                pod.uid,
                found.len(),
                all.join(", "),
                cg.rel
            ));
        }
        let mut info = pod.clone();
        if info.qos_class.is_none() {
            info.qos_class = Some(cg.qos.class_name().to_string());
        }
        let containers = pod
            .containers
            .iter()
            .filter_map(|c| {
                let id = c.id.as_deref()?.to_ascii_lowercase();
                let dir = cg.containers.iter().find(|d| d.id == id)?;
                Some(ResolvedContainer {
                    name: c.name.clone(),
                    id: dir.id.clone(),
                    dir: dir.dir.clone(),
                    rel: dir.rel.clone(),
                })
            })
            .collect();
        out.pods.push(ResolvedPod {
            info,
            dir: cg.dir.clone(),
            rel: cg.rel.clone(),
            containers,
        });
    }
    if missing > 0 && index.pods.is_empty() {
        if let Some((v1, n)) = &index.v1_pods {
            out.warnings.push(format!(
                "this host's cgroup v2 tree ({}) has no pod directories, but the cgroup v1 memory \
                 hierarchy ({}) has {n}: the kubelet and container runtime here use cgroup v1, and \
                 podnet needs cgroup v2 to attach; configure them for cgroup v2 (systemd: boot with \
                 systemd.unified_cgroup_hierarchy=1)",
                index.root.display(),
                v1.display()
            ));
        }
    }
    out
}

/// Pods known by UID only, one per pod directory of `index` (the fallback when no API server is
/// reachable): namespace and name are empty; QoS comes from the path; containers carry their ids
/// and runtimes, and empty names.
pub fn pods_from_index(index: &CgroupIndex) -> Vec<PodInfo> {
    let mut seen = std::collections::HashSet::new();
    index
        .pods
        .iter()
        .filter(|p| seen.insert(p.uid.clone()))
        .map(|p| PodInfo {
            uid: p.uid.clone(),
            qos_class: Some(p.qos.class_name().to_string()),
            containers: p
                .containers
                .iter()
                .map(|c| crate::model::ContainerInfo {
                    name: String::new(),
                    id: Some(c.id.clone()),
                    runtime: c.runtime.clone(),
                })
                .collect(),
            ..PodInfo::default()
        })
        .collect()
}

#[cfg(test)]
mod tests;
