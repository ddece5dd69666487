//! Pod cgroup layouts as kubelet and the container runtimes make them, and [`SandboxPod`]s built
//! with them inside a [`CgroupTree`].

use std::io;
use std::path::PathBuf;

use anyhow::{bail, Result};
use serde_json::{json, Value};

use super::{cgroup_id, CgroupTree};

/// A pod's QoS class, which decides where kubelet puts its cgroup.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Qos {
    /// Directly under `kubepods` (no QoS level directory).
    Guaranteed,
    /// Under `kubepods-burstable.slice` / `kubepods/burstable`.
    Burstable,
    /// Under `kubepods-besteffort.slice` / `kubepods/besteffort`.
    BestEffort,
}

impl Qos {
    /// All three classes.
    pub const ALL: [Qos; 3] = [Qos::Guaranteed, Qos::Burstable, Qos::BestEffort];

    /// The class as `status.qosClass` spells it (`Guaranteed`, `Burstable`, `BestEffort`).
    pub fn as_str(self) -> &'static str {
        match self {
            Qos::Guaranteed => "Guaranteed",
            Qos::Burstable => "Burstable",
            Qos::BestEffort => "BestEffort",
        }
    }

    /// The lower-case level name used in cgroup paths, `None` for Guaranteed (which has no level).
    pub fn level(self) -> Option<&'static str> {
        match self {
            Qos::Guaranteed => None,
            Qos::Burstable => Some("burstable"),
            Qos::BestEffort => Some("besteffort"),
        }
    }
}

/// Where a node's kubelet and container runtime put pod and container cgroups (design.md table).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Layout {
    /// systemd cgroup driver, containerd: `kubepods.slice/kubepods-<qos>.slice/
    /// kubepods-<qos>-pod<u_>.slice/cri-containerd-<id>.scope`.
    SystemdContainerd,
    /// systemd cgroup driver, CRI-O: container `crio-<id>.scope`, with a sibling
    /// `crio-conmon-<id>.scope` holding the runtime monitor (not the container).
    SystemdCrio,
    /// systemd cgroup driver, Docker (cri-dockerd): container `docker-<id>.scope`.
    SystemdDocker,
    /// cgroupfs driver: `kubepods/<qos>/pod<u>/<id>`, Guaranteed `kubepods/pod<u>/<id>`.
    Cgroupfs,
    /// A kind node seen from the host: any `prefix` (the node container's cgroup, e.g.
    /// `system.slice/docker-<node id>.scope`), then `kubelet.slice/kubelet-kubepods.slice/
    /// kubelet-kubepods-<qos>.slice/kubelet-kubepods-<qos>-pod<u_>.slice/cri-containerd-<id>.scope`.
    KindNested {
        /// Path relative to the tree root in front of `kubelet.slice`; may be empty.
        prefix: String,
    },
}

impl Layout {
    /// One of each layout (the kind one with a docker-scope prefix like a real kind node has).
    pub fn all() -> Vec<Layout> {
        vec![
            Layout::SystemdContainerd,
            Layout::SystemdCrio,
            Layout::SystemdDocker,
            Layout::Cgroupfs,
            Layout::KindNested {
                prefix: "system.slice/docker-0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef.scope".into(),
            },
        ]
    }

    /// The pod directory for `uid` and `qos`, relative to wherever the layout is rooted (for a
    /// [`CgroupTree`], its root), without leading `/`.
    pub fn pod_rel(&self, uid: &str, qos: Qos) -> String {
        let u_ = uid.replace('-', "_");
        let systemd = |top: &str, stem: &str| match qos.level() {
            None => format!("{top}/{stem}-pod{u_}.slice"),
            Some(level) => format!("{top}/{stem}-{level}.slice/{stem}-{level}-pod{u_}.slice"),
        };
        match self {
            Layout::SystemdContainerd | Layout::SystemdCrio | Layout::SystemdDocker => {
                systemd("kubepods.slice", "kubepods")
            }
            Layout::Cgroupfs => match qos.level() {
                None => format!("kubepods/pod{uid}"),
                Some(level) => format!("kubepods/{level}/pod{uid}"),
            },
            Layout::KindNested { prefix } => {
                let top = "kubelet.slice/kubelet-kubepods.slice";
                let prefix = prefix.trim_matches('/');
                let inner = systemd(top, "kubelet-kubepods");
                if prefix.is_empty() {
                    inner
                } else {
                    format!("{prefix}/{inner}")
                }
            }
        }
    }

    /// The container directory name (one path component) for container `id`.
    pub fn container_dir_name(&self, id: &str) -> String {
        match self {
            Layout::SystemdContainerd | Layout::KindNested { .. } => {
                format!("cri-containerd-{id}.scope")
            }
            Layout::SystemdCrio => format!("crio-{id}.scope"),
            Layout::SystemdDocker => format!("docker-{id}.scope"),
            Layout::Cgroupfs => id.to_string(),
        }
    }

    /// The runtime-monitor sibling that must not be taken for the container (CRI-O's conmon).
    pub fn conmon_dir_name(&self, id: &str) -> Option<String> {
        match self {
            Layout::SystemdCrio => Some(format!("crio-conmon-{id}.scope")),
            _ => None,
        }
    }

    /// The scheme of `containerStatuses[].containerID` for this runtime (`containerd`, `cri-o`,
    /// `docker`); the cgroupfs layout is paired with containerd.
    pub fn runtime_scheme(&self) -> &'static str {
        match self {
            Layout::SystemdContainerd | Layout::Cgroupfs | Layout::KindNested { .. } => {
                "containerd"
            }
            Layout::SystemdCrio => "cri-o",
            Layout::SystemdDocker => "docker",
        }
    }
}

/// One container of a [`SandboxPod`].
#[derive(Debug, Clone)]
pub struct SandboxContainer {
    /// The container name (`spec.containers[].name`).
    pub name: String,
    /// The runtime's container id (64 hex characters when made by [`super::new_container_id`]).
    pub id: String,
    /// `containerd`, `cri-o` or `docker`, see [`Layout::runtime_scheme`].
    pub runtime: &'static str,
    /// Absolute path of the container's cgroup v2 directory.
    pub dir: PathBuf,
    /// The directory relative to the cgroup v2 mount, starting with `/`.
    pub rel: String,
    /// The v1 memory twin of `dir`, on hosts with a v1 memory hierarchy.
    pub memcg: Option<PathBuf>,
    /// CRI-O's `crio-conmon-<id>.scope` sibling (v2), for the CRI-O layout only.
    pub conmon_dir: Option<PathBuf>,
}

impl SandboxContainer {
    /// `containerStatuses[].containerID` as kubelet reports it: `<runtime>://<id>`.
    pub fn container_id(&self) -> String {
        format!("{}://{}", self.runtime, self.id)
    }

    /// The cgroup id (inode) of the container directory.
    pub fn cgroup_id(&self) -> io::Result<u64> {
        cgroup_id(&self.dir)
    }
}

/// A pod's cgroup directories (pod directory plus one per container) laid out inside a
/// [`CgroupTree`] in one of the real [`Layout`]s. The tree removes them on drop.
#[derive(Debug, Clone)]
pub struct SandboxPod {
    /// The pod UID (`metadata.uid`).
    pub uid: String,
    /// The QoS class the directories were laid out for.
    pub qos: Qos,
    /// The layout used.
    pub layout: Layout,
    /// Absolute path of the pod's cgroup v2 directory.
    pub dir: PathBuf,
    /// The pod directory relative to the cgroup v2 mount, starting with `/` (podnet's `cgroupPath`).
    pub rel: String,
    /// The pod directory relative to the tree root (what [`CgroupTree::remove`] takes).
    pub tree_rel: String,
    /// The v1 memory twin of `dir`, on hosts with a v1 memory hierarchy.
    pub memcg: Option<PathBuf>,
    /// The containers, in the order given.
    pub containers: Vec<SandboxContainer>,
}

impl SandboxPod {
    /// Creates the pod directory for `uid`/`qos` in `layout` inside `tree`, and one directory per
    /// `(name, id)` container (plus CRI-O's conmon sibling for the CRI-O layout).
    pub fn create(
        tree: &CgroupTree,
        layout: Layout,
        uid: &str,
        qos: Qos,
        containers: &[(&str, &str)],
    ) -> Result<SandboxPod> {
        if uid.is_empty() || uid.contains('/') {
            bail!("pod uid {uid:?} must be non-empty and contain no '/'");
        }
        if let Layout::KindNested { prefix } = &layout {
            if prefix.split('/').any(|c| c == "..") {
                bail!("kind prefix {prefix:?} must not contain '..'");
            }
        }
        let tree_rel = layout.pod_rel(uid, qos);
        let dir = tree.create(&tree_rel)?;
        let mut pod = SandboxPod {
            uid: uid.to_string(),
            qos,
            rel: tree.rel_path(&tree_rel),
            memcg: tree.memcg_path(&tree_rel),
            dir,
            tree_rel,
            layout,
            containers: Vec::new(),
        };
        for (name, id) in containers {
            pod.add_container(tree, name, id)?;
        }
        Ok(pod)
    }

    /// Adds a container directory to the pod (also what a container restart looks like: a new id
    /// under the same pod directory) and returns it.
    pub fn add_container(
        &mut self,
        tree: &CgroupTree,
        name: &str,
        id: &str,
    ) -> Result<&SandboxContainer> {
        if id.is_empty() || id.contains('/') || name.is_empty() {
            bail!("container name {name:?} and id {id:?} must be non-empty, id without '/'");
        }
        let rel = format!("{}/{}", self.tree_rel, self.layout.container_dir_name(id));
        let dir = tree.create(&rel)?;
        let conmon_dir = match self.layout.conmon_dir_name(id) {
            Some(conmon) => Some(tree.create(&format!("{}/{conmon}", self.tree_rel))?),
            None => None,
        };
        self.containers.push(SandboxContainer {
            name: name.to_string(),
            id: id.to_string(),
            runtime: self.layout.runtime_scheme(),
            dir,
            rel: tree.rel_path(&rel),
            memcg: tree.memcg_path(&rel),
            conmon_dir,
        });
        Ok(self.containers.last().expect("just pushed"))
    }

    /// The container called `name`.
    pub fn container(&self, name: &str) -> Option<&SandboxContainer> {
        self.containers.iter().find(|c| c.name == name)
    }

    /// The cgroup id (inode) of the pod directory.
    pub fn cgroup_id(&self) -> io::Result<u64> {
        cgroup_id(&self.dir)
    }

    /// This pod as an item of a `kubectl get pods -o json` PodList (`metadata.name/namespace/uid/
    /// labels`, `spec.nodeName`, `spec.containers[].name`, `status.phase` Running, `status.qosClass`,
    /// `status.containerStatuses[].name/containerID/ready`), e.g. for `--pods-from` or a stub API
    /// server.
    pub fn pod_json(
        &self,
        namespace: &str,
        name: &str,
        node: &str,
        labels: &[(&str, &str)],
    ) -> Value {
        let labels: serde_json::Map<String, Value> = labels
            .iter()
            .map(|(k, v)| (k.to_string(), Value::String(v.to_string())))
            .collect();
        json!({
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": name, "namespace": namespace, "uid": self.uid, "labels": labels},
            "spec": {
                "nodeName": node,
                "containers": self.containers.iter().map(|c| json!({"name": c.name})).collect::<Vec<_>>(),
            },
            "status": {
                "phase": "Running",
                "qosClass": self.qos.as_str(),
                "containerStatuses": self.containers.iter().map(|c| json!({
                    "name": c.name, "containerID": c.container_id(), "ready": true,
                })).collect::<Vec<_>>(),
            },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const U: &str = "0f1e2d3c-4b5a-4697-8877-665544332211";
    const U_: &str = "0f1e2d3c_4b5a_4697_8877_665544332211";

    #[test]
    fn systemd_paths_follow_kubelet() {
        let l = Layout::SystemdContainerd;
        assert_eq!(
            l.pod_rel(U, Qos::Burstable),
            format!("kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{U_}.slice")
        );
        assert_eq!(
            l.pod_rel(U, Qos::BestEffort),
            format!("kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod{U_}.slice")
        );
        assert_eq!(
            l.pod_rel(U, Qos::Guaranteed),
            format!("kubepods.slice/kubepods-pod{U_}.slice")
        );
        assert_eq!(l.container_dir_name("ab"), "cri-containerd-ab.scope");
        assert_eq!(
            Layout::SystemdCrio.container_dir_name("ab"),
            "crio-ab.scope"
        );
        assert_eq!(
            Layout::SystemdCrio.conmon_dir_name("ab").unwrap(),
            "crio-conmon-ab.scope"
        );
        assert_eq!(
            Layout::SystemdDocker.container_dir_name("ab"),
            "docker-ab.scope"
        );
        assert_eq!(Layout::SystemdDocker.conmon_dir_name("ab"), None);
    }

    #[test]
    fn cgroupfs_paths_keep_dashes() {
        let l = Layout::Cgroupfs;
        assert_eq!(
            l.pod_rel(U, Qos::Burstable),
            format!("kubepods/burstable/pod{U}")
        );
        assert_eq!(l.pod_rel(U, Qos::Guaranteed), format!("kubepods/pod{U}"));
        assert_eq!(l.container_dir_name("ab"), "ab");
    }

    #[test]
    fn kind_paths_sit_under_any_prefix() {
        let l = Layout::KindNested {
            prefix: "/system.slice/docker-n.scope/".into(),
        };
        assert_eq!(
            l.pod_rel(U, Qos::BestEffort),
            format!(
                "system.slice/docker-n.scope/kubelet.slice/kubelet-kubepods.slice/\
                 kubelet-kubepods-besteffort.slice/kubelet-kubepods-besteffort-pod{U_}.slice"
            )
        );
        let bare = Layout::KindNested {
            prefix: String::new(),
        };
        assert_eq!(
            bare.pod_rel(U, Qos::Guaranteed),
            format!("kubelet.slice/kubelet-kubepods.slice/kubelet-kubepods-pod{U_}.slice")
        );
        assert_eq!(bare.container_dir_name("ab"), "cri-containerd-ab.scope");
    }

    #[test]
    fn qos_names() {
        assert_eq!(
            Qos::ALL.map(Qos::as_str),
            ["Guaranteed", "Burstable", "BestEffort"]
        );
        assert_eq!(
            Qos::ALL.map(Qos::level),
            [None, Some("burstable"), Some("besteffort")]
        );
    }
}
