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
mod tests {
    use super::*;

    const UID: &str = "8d3e2f4a-1b2c-4d5e-8f90-a1b2c3d4e5f6";
    const UID_: &str = "8d3e2f4a_1b2c_4d5e_8f90_a1b2c3d4e5f6";
    const CID: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    #[test]
    fn systemd_pod_dirs() {
        let name = format!("kubepods-burstable-pod{UID_}.slice");
        assert_eq!(
            parse_pod_dir(
                &name,
                Some("kubepods-burstable.slice"),
                Some("kubepods.slice")
            ),
            Some((UID.to_string(), QosLevel::Burstable, PodLayout::Systemd))
        );
        let name = format!("kubepods-besteffort-pod{UID_}.slice");
        assert_eq!(
            parse_pod_dir(&name, None, None),
            Some((UID.to_string(), QosLevel::BestEffort, PodLayout::Systemd))
        );
        let name = format!("kubepods-pod{UID_}.slice");
        assert_eq!(
            parse_pod_dir(&name, Some("kubepods.slice"), None),
            Some((UID.to_string(), QosLevel::Guaranteed, PodLayout::Systemd))
        );
    }

    #[test]
    fn kind_nested_pod_dirs() {
        let name = format!("kubelet-kubepods-besteffort-pod{UID_}.slice");
        assert_eq!(
            parse_pod_dir(&name, Some("kubelet-kubepods-besteffort.slice"), None),
            Some((UID.to_string(), QosLevel::BestEffort, PodLayout::KindNested))
        );
        let name = format!("kubelet-kubepods-pod{UID_}.slice");
        assert_eq!(
            parse_pod_dir(&name, None, None),
            Some((UID.to_string(), QosLevel::Guaranteed, PodLayout::KindNested))
        );
    }

    #[test]
    fn cgroupfs_pod_dirs() {
        let name = format!("pod{UID}");
        assert_eq!(
            parse_pod_dir(&name, Some("burstable"), Some("kubepods")),
            Some((UID.to_string(), QosLevel::Burstable, PodLayout::Cgroupfs))
        );
        assert_eq!(
            parse_pod_dir(&name, Some("besteffort"), Some("kubepods")),
            Some((UID.to_string(), QosLevel::BestEffort, PodLayout::Cgroupfs))
        );
        assert_eq!(
            parse_pod_dir(&name, Some("kubepods"), Some("whatever")),
            Some((UID.to_string(), QosLevel::Guaranteed, PodLayout::Cgroupfs))
        );
        // `pod<u>` outside kubepods is someone else's directory.
        assert_eq!(parse_pod_dir(&name, Some("system.slice"), None), None);
        assert_eq!(parse_pod_dir(&name, Some("burstable"), Some("other")), None);
        assert_eq!(parse_pod_dir(&name, None, None), None);
    }

    #[test]
    fn static_pod_uid_without_dashes() {
        let hash = "d4ab2d8ab1d5c1c6b2a7d6e49b5c8e1f";
        assert_eq!(
            parse_pod_dir(&format!("kubepods-burstable-pod{hash}.slice"), None, None),
            Some((hash.to_string(), QosLevel::Burstable, PodLayout::Systemd))
        );
    }

    #[test]
    fn not_pod_dirs() {
        for name in [
            "kubepods.slice",
            "kubepods-burstable.slice",
            "kubepods-besteffort.slice",
            "kubelet-kubepods.slice",
            "kubelet-kubepods-burstable.slice",
            "kubepods-guaranteed-pod8d3e2f4a_1b2c_4d5e_8f90_a1b2c3d4e5f6.slice",
            "kubepods-podnotauid.slice",
            "kubepods-burstable-pod8d3e2f4a_1b2c.slice",
            "system.slice",
            "user.slice",
            "kubepods-burstable-podzzzzzzzz_1b2c_4d5e_8f90_a1b2c3d4e5f6.slice",
            "docker-8d3e2f4a_1b2c_4d5e_8f90_a1b2c3d4e5f6.slice",
        ] {
            assert_eq!(
                parse_pod_dir(name, Some("kubepods"), Some("kubepods.slice")),
                None,
                "{name}"
            );
        }
    }

    #[test]
    fn container_dirs() {
        assert_eq!(
            parse_container_dir(&format!("cri-containerd-{CID}.scope")),
            Some((CID.to_string(), Some("containerd")))
        );
        assert_eq!(
            parse_container_dir(&format!("crio-{CID}.scope")),
            Some((CID.to_string(), Some("cri-o")))
        );
        assert_eq!(
            parse_container_dir(&format!("docker-{CID}.scope")),
            Some((CID.to_string(), Some("docker")))
        );
        assert_eq!(parse_container_dir(CID), Some((CID.to_string(), None)));
        assert_eq!(
            parse_container_dir(&format!("crio-{CID}")),
            Some((CID.to_string(), Some("cri-o")))
        );
    }

    #[test]
    fn crio_conmon_is_not_a_container() {
        assert_eq!(
            parse_container_dir(&format!("crio-conmon-{CID}.scope")),
            None
        );
        assert_eq!(parse_container_dir(&format!("crio-conmon-{CID}")), None);
    }

    #[test]
    fn not_container_dirs() {
        for name in [
            "init.scope",
            "cri-containerd-.scope",
            "cri-containerd-xyz.scope",
            "session-1.scope",
            "0123456789abcdef",
            &CID[..63],
            "system.slice",
        ] {
            assert_eq!(parse_container_dir(name), None, "{name}");
        }
    }

    /// The shape of this machine's mountinfo: a tmpfs at /sys/fs/cgroup holding v1 controllers,
    /// and the unified hierarchy at /sys/fs/cgroup/unified.
    const HYBRID: &str = "\
22 27 0:21 / /proc rw,relatime - proc proc rw
23 27 0:22 / /sys rw,relatime - sysfs sysfs rw
27 1 254:0 / / rw,relatime - ext4 /dev/vda rw,discard
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu
33 31 0:30 / /sys/fs/cgroup/cpuacct rw,relatime - cgroup cgroup rw,cpuacct
35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,name=systemd
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
";

    #[test]
    fn mountinfo_hybrid() {
        assert_eq!(
            Mounts::from_mountinfo(HYBRID),
            Mounts {
                cgroup2: Some(PathBuf::from("/sys/fs/cgroup/unified")),
                memory_v1: Some(PathBuf::from("/sys/fs/cgroup/memory")),
            }
        );
    }

    #[test]
    fn mountinfo_unified_with_optional_fields() {
        let text = "\
25 30 0:23 / /sys rw,nosuid,nodev,noexec,relatime shared:7 - sysfs sysfs rw
35 25 0:30 / /sys/fs/cgroup rw,nosuid,nodev,noexec,relatime shared:9 - cgroup2 cgroup2 rw,nsdelegate,memory_recursiveprot
";
        assert_eq!(
            Mounts::from_mountinfo(text),
            Mounts {
                cgroup2: Some(PathBuf::from("/sys/fs/cgroup")),
                memory_v1: None
            }
        );
    }

    #[test]
    fn mountinfo_escaped_space_and_root_preference() {
        let text = "\
50 1 0:40 /kubepods /tmp/nested rw - cgroup2 cgroup2 rw
51 1 0:40 / /mnt/my\\040cgroup\\134x rw - cgroup2 none rw
52 1 0:41 / /mnt/mem\\040v1 rw - cgroup cgroup rw,nosuid,memory
";
        assert_eq!(
            Mounts::from_mountinfo(text),
            Mounts {
                cgroup2: Some(PathBuf::from("/mnt/my cgroup\\x")),
                memory_v1: Some(PathBuf::from("/mnt/mem v1")),
            }
        );
    }

    /// A DaemonSet pod: its own cgroup namespace at /sys/fs/cgroup, and the host's tree mounted
    /// at /host/sys/fs/cgroup (shown with a root above the namespace).
    #[test]
    fn mountinfo_prefers_the_hosts_tree_over_the_namespace_view() {
        let text = "\
1200 1100 0:30 / /sys/fs/cgroup ro,nosuid - cgroup2 cgroup rw
1201 1100 0:30 /../../.. /host/sys/fs/cgroup rw,relatime - cgroup2 cgroup2 rw
1202 1100 0:30 /kubepods.slice /mnt/sub rw - cgroup2 cgroup2 rw
";
        assert_eq!(
            Mounts::from_mountinfo(text).cgroup2,
            Some(PathBuf::from("/host/sys/fs/cgroup"))
        );
        // Same with the host's tree mounted over the namespace view (the later line is on top).
        let text = "\
1200 1100 0:30 / /sys/fs/cgroup ro - cgroup2 cgroup rw
1201 1200 0:30 /../.. /sys/fs/cgroup rw - cgroup2 cgroup2 rw
";
        assert_eq!(
            Mounts::from_mountinfo(text).cgroup2,
            Some(PathBuf::from("/sys/fs/cgroup"))
        );
        assert!(RootRank::of("/../..") > RootRank::of("/.."));
        assert!(RootRank::of("/..") > RootRank::of("/"));
        assert!(RootRank::of("/") > RootRank::of("/a"));
        assert!(RootRank::of("/a") > RootRank::of("/a/b"));
    }

    #[test]
    fn mountinfo_without_cgroups() {
        let text = "27 1 254:0 / / rw,relatime - ext4 /dev/vda rw\n";
        assert_eq!(Mounts::from_mountinfo(text), Mounts::default());
        assert!(matches!(
            Mounts::default().require_cgroup2(),
            Err(ScanError::NoCgroup2)
        ));
    }

    #[test]
    fn memory_option_is_matched_exactly() {
        // `memory_recursiveprot` is not the memory controller.
        let text = "1 1 0:1 / /x rw - cgroup cgroup rw,memory_recursiveprot\n";
        assert_eq!(Mounts::from_mountinfo(text).memory_v1, None);
    }

    fn index_with(pods: Vec<PodCgroup>) -> CgroupIndex {
        CgroupIndex {
            root: PathBuf::from("/cg"),
            pods,
            v1_pods: None,
        }
    }

    fn pod_cgroup(uid: &str, rel: &str, containers: &[&str]) -> PodCgroup {
        PodCgroup {
            uid: uid.to_string(),
            qos: QosLevel::Burstable,
            layout: PodLayout::Systemd,
            dir: PathBuf::from(format!("/cg{rel}")),
            rel: rel.to_string(),
            containers: containers
                .iter()
                .map(|id| ContainerCgroup {
                    id: id.to_string(),
                    runtime: Some("containerd".into()),
                    dir: PathBuf::from(format!("/cg{rel}/cri-containerd-{id}.scope")),
                    rel: format!("{rel}/cri-containerd-{id}.scope"),
                })
                .collect(),
        }
    }

    fn pod_info(
        ns: &str,
        name: &str,
        uid: &str,
        phase: &str,
        containers: &[(&str, Option<&str>)],
    ) -> PodInfo {
        PodInfo {
            namespace: ns.into(),
            name: name.into(),
            uid: uid.into(),
            phase: Some(phase.into()),
            containers: containers
                .iter()
                .map(|(n, id)| crate::model::ContainerInfo {
                    name: n.to_string(),
                    id: id.map(str::to_string),
                    runtime: Some("containerd".into()),
                })
                .collect(),
            ..PodInfo::default()
        }
    }

    #[test]
    fn resolve_matches_uid_and_container_ids() {
        let a = "aaaaaaaa-aaaa-aaaa-aaaa-aaaaaaaaaaaa";
        let b = "bbbbbbbb-bbbb-bbbb-bbbb-bbbbbbbbbbbb";
        let index = index_with(vec![pod_cgroup(a, "/k/pa", &["c1", "c2", "pause"])]);
        let pods = vec![
            pod_info(
                "shop",
                "web-0",
                a,
                "Running",
                &[
                    ("web", Some("c1")),
                    ("side", Some("c2")),
                    ("gone", Some("c9")),
                    ("new", None),
                ],
            ),
            pod_info("shop", "db-0", b, "Pending", &[]),
        ];
        let r = resolve(&pods, &index);
        assert_eq!(r.pods.len(), 1);
        let p = &r.pods[0];
        assert_eq!(p.info.name, "web-0");
        assert_eq!(p.info.qos_class.as_deref(), Some("Burstable"));
        assert_eq!(p.rel, "/k/pa");
        assert_eq!(p.dir, PathBuf::from("/cg/k/pa"));
        let names: Vec<(&str, &str)> = p
            .containers
            .iter()
            .map(|c| (c.name.as_str(), c.id.as_str()))
            .collect();
        assert_eq!(names, vec![("web", "c1"), ("side", "c2")]);
        assert_eq!(p.containers[0].rel, "/k/pa/cri-containerd-c1.scope");
        assert_eq!(
            r.warnings,
            vec![format!(
                "pod shop/db-0 (Pending): no cgroup v2 directory for uid {b} on this node — not attached"
            )]
        );
    }

    #[test]
    fn resolve_says_when_pods_live_in_v1_only() {
        let mut index = index_with(vec![]);
        index.v1_pods = Some((PathBuf::from("/sys/fs/cgroup/memory"), 3));
        let r = resolve(
            &[pod_info(
                "a",
                "b",
                "aaaaaaaa-aaaa-aaaa-aaaa-aaaaaaaaaaaa",
                "Running",
                &[],
            )],
            &index,
        );
        assert!(r.pods.is_empty());
        assert_eq!(r.warnings.len(), 2);
        assert!(
            r.warnings[1].contains("cgroup v1 memory hierarchy (/sys/fs/cgroup/memory) has 3"),
            "{}",
            r.warnings[1]
        );
        assert!(
            r.warnings[1].contains("needs cgroup v2"),
            "{}",
            r.warnings[1]
        );
    }

    #[test]
    fn resolve_warns_on_duplicate_uid_dirs() {
        let a = "aaaaaaaa-aaaa-aaaa-aaaa-aaaaaaaaaaaa";
        let index = index_with(vec![
            pod_cgroup(a, "/x/pa", &[]),
            pod_cgroup(a, "/y/pa", &[]),
        ]);
        let r = resolve(&[pod_info("n", "p", a, "Running", &[])], &index);
        assert_eq!(r.pods.len(), 1);
        assert_eq!(r.pods[0].rel, "/x/pa");
        assert_eq!(
            r.warnings,
            vec![format!(
                "pod n/p: uid {a} has 2 cgroup directories (/x/pa, /y/pa); using /x/pa"
            )]
        );
    }

    #[test]
    fn uid_only_pods_from_index() {
        let a = "aaaaaaaa-aaaa-aaaa-aaaa-aaaaaaaaaaaa";
        let index = index_with(vec![pod_cgroup(a, "/k/pa", &["c1"])]);
        let pods = pods_from_index(&index);
        assert_eq!(pods.len(), 1);
        assert_eq!(pods[0].uid, a);
        assert_eq!(pods[0].name, "");
        assert_eq!(pods[0].qos_class.as_deref(), Some("Burstable"));
        assert_eq!(pods[0].containers[0].id.as_deref(), Some("c1"));
        let r = resolve(&pods, &index);
        assert_eq!(r.pods[0].containers[0].id, "c1");
        assert!(r.warnings.is_empty());
    }

    #[test]
    fn scan_temp_tree() {
        // Plain directories have the same names as cgroups; the walk does not care.
        let tmp = std::env::temp_dir().join(format!("podnet-resolve-unit-{}", std::process::id()));
        let _ = fs::remove_dir_all(&tmp);
        let pod = tmp.join(format!(
            "kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod{UID_}.slice"
        ));
        fs::create_dir_all(pod.join(format!("cri-containerd-{CID}.scope"))).unwrap();
        fs::create_dir_all(pod.join(format!("crio-conmon-{CID}.scope"))).unwrap();
        fs::create_dir_all(tmp.join(format!("kubepods/burstable/pod{UID}/{CID}"))).unwrap();
        fs::create_dir_all(tmp.join(format!("elsewhere/pod{UID}"))).unwrap();
        std::os::unix::fs::symlink(tmp.join("kubepods"), tmp.join("link")).unwrap();
        let index = scan(&tmp).unwrap();
        let _ = fs::remove_dir_all(&tmp);
        let found: Vec<(&str, QosLevel, PodLayout, usize)> = index
            .pods
            .iter()
            .map(|p| (p.rel.as_str(), p.qos, p.layout, p.containers.len()))
            .collect();
        let systemd_rel = format!(
            "/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod{UID_}.slice"
        );
        let cgroupfs_rel = format!("/kubepods/burstable/pod{UID}");
        assert_eq!(
            found,
            vec![
                (
                    cgroupfs_rel.as_str(),
                    QosLevel::Burstable,
                    PodLayout::Cgroupfs,
                    1
                ),
                (
                    systemd_rel.as_str(),
                    QosLevel::BestEffort,
                    PodLayout::Systemd,
                    1
                ),
            ]
        );
        assert_eq!(
            index.pods[1].containers[0].runtime.as_deref(),
            Some("containerd")
        );
        assert_eq!(index.pods[0].containers[0].runtime, None);
    }

    #[test]
    fn scan_missing_root_is_an_error() {
        assert_eq!(
            scan(Path::new("/nonexistent/podnet-no-such-dir"))
                .unwrap_err()
                .kind(),
            io::ErrorKind::NotFound
        );
    }
}
