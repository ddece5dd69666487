//! `scan` + `resolve` on real cgroup v2 directories laid out in every kubelet layout (privileged:
//! creates cgroups under a unique test root in the cgroup2 mount, removed on drop).

use std::collections::BTreeSet;
use std::path::PathBuf;

use podnet::model::{ContainerInfo, PodInfo};
use podnet::resolve::{
    resolve, scan, scan_mounts, CgroupIndex, Mounts, PodCgroup, PodLayout, QosLevel,
    ResolvedContainer,
};
use podnet_testing::sandbox::{
    cgroup2_mount, memory_v1_mount, new_container_id, new_uid, require_privileges, CgroupTree,
    Layout, Qos, SandboxPod,
};

fn qos_level(q: Qos) -> QosLevel {
    match q {
        Qos::Guaranteed => QosLevel::Guaranteed,
        Qos::Burstable => QosLevel::Burstable,
        Qos::BestEffort => QosLevel::BestEffort,
    }
}

fn pod_layout(l: &Layout) -> PodLayout {
    match l {
        Layout::SystemdContainerd | Layout::SystemdCrio | Layout::SystemdDocker => {
            PodLayout::Systemd
        }
        Layout::Cgroupfs => PodLayout::Cgroupfs,
        Layout::KindNested { .. } => PodLayout::KindNested,
    }
}

/// The pods of `index` that live inside `tree` (other tests may have trees of their own).
fn in_tree<'a>(index: &'a CgroupIndex, tree: &CgroupTree) -> Vec<&'a PodCgroup> {
    index
        .pods
        .iter()
        .filter(|p| p.dir.starts_with(tree.root()))
        .collect()
}

#[test]
fn mounts_agree_with_the_sandbox() {
    // Two independent readings of /proc/self/mountinfo.
    let m = Mounts::detect().unwrap();
    assert_eq!(m.cgroup2, cgroup2_mount().ok());
    assert_eq!(m.memory_v1, memory_v1_mount());
}

#[test]
fn scan_and_resolve_every_layout() {
    if !require_privileges("scan_and_resolve_every_layout") {
        return;
    }
    let tree = CgroupTree::new("resolve-layouts").unwrap();
    let mut pods: Vec<SandboxPod> = Vec::new();
    for layout in Layout::all() {
        for qos in Qos::ALL {
            let mut pod = SandboxPod::create(
                &tree,
                layout.clone(),
                &new_uid(),
                qos,
                &[("app", &new_container_id()), ("side", &new_container_id())],
            )
            .unwrap();
            // The sandbox (pause) container: a container directory that no status names.
            pod.add_container(&tree, "pause", &new_container_id())
                .unwrap();
            pods.push(pod);
        }
    }
    // Directories that must not be taken for pods.
    let stray_uid = new_uid();
    for rel in [
        "kubepods.slice/kubepods-burstable.slice/not-a-pod".to_string(),
        format!("elsewhere/pod{stray_uid}"),
        format!(
            "system.slice/kubepods-guaranteed-pod{}.slice",
            stray_uid.replace('-', "_")
        ),
        "kubepods/burstable/podnot-a-uid".to_string(),
    ] {
        tree.create(&rel).unwrap();
    }
    // A nested cgroup inside a container (systemd in a container) is not a container or a pod.
    let first_app = &pods[0].containers[0];
    std::fs::create_dir(first_app.dir.join("init.scope")).unwrap();

    let mount = tree.mount().to_path_buf();
    assert_eq!(
        Mounts::detect().unwrap().cgroup2.as_deref(),
        Some(mount.as_path())
    );
    let index = scan(&mount).unwrap();
    let found = in_tree(&index, &tree);
    assert_eq!(found.len(), pods.len(), "found: {found:#?}");

    for sp in &pods {
        let hits: Vec<&&PodCgroup> = found.iter().filter(|p| p.uid == sp.uid).collect();
        assert_eq!(
            hits.len(),
            1,
            "pod {} ({:?}, {:?})",
            sp.uid,
            sp.layout,
            sp.qos
        );
        let p = hits[0];
        assert_eq!(p.dir, sp.dir);
        assert_eq!(p.rel, sp.rel);
        assert_eq!(p.qos, qos_level(sp.qos));
        assert_eq!(p.layout, pod_layout(&sp.layout));
        let want: BTreeSet<(String, Option<String>, PathBuf, String)> = sp
            .containers
            .iter()
            .map(|c| {
                let runtime = match sp.layout {
                    Layout::Cgroupfs => None,
                    _ => Some(c.runtime.to_string()),
                };
                (c.id.clone(), runtime, c.dir.clone(), c.rel.clone())
            })
            .collect();
        let got: BTreeSet<(String, Option<String>, PathBuf, String)> = p
            .containers
            .iter()
            .map(|c| {
                (
                    c.id.clone(),
                    c.runtime.clone(),
                    c.dir.clone(),
                    c.rel.clone(),
                )
            })
            .collect();
        // Exactly the container directories: never crio-conmon, never a nested cgroup.
        assert_eq!(got, want, "containers of {:?} {:?}", sp.layout, sp.qos);
    }

    // What discovery would say about these pods: app and side have statuses, pause does not,
    // and one pod's uid has no directory on this node.
    let missing_uid = new_uid();
    let mut infos: Vec<PodInfo> = pods
        .iter()
        .enumerate()
        .map(|(i, sp)| PodInfo {
            namespace: "test".into(),
            name: format!("p{i}"),
            uid: sp.uid.clone(),
            qos_class: None,
            node_name: Some("node-a".into()),
            phase: Some("Running".into()),
            host_network: false,
            containers: sp
                .containers
                .iter()
                .filter(|c| c.name != "pause")
                .map(|c| ContainerInfo {
                    name: c.name.clone(),
                    id: Some(c.id.clone()),
                    runtime: Some(c.runtime.to_string()),
                })
                .collect(),
        })
        .collect();
    infos.push(PodInfo {
        namespace: "test".into(),
        name: "pending-0".into(),
        uid: missing_uid.clone(),
        phase: Some("Pending".into()),
        containers: vec![ContainerInfo {
            name: "app".into(),
            id: None,
            runtime: None,
        }],
        ..PodInfo::default()
    });
    let tree_index = CgroupIndex {
        pods: found.into_iter().cloned().collect(),
        ..index.clone()
    };
    let r = resolve(&infos, &tree_index);
    assert_eq!(
        r.warnings,
        vec![format!(
            "pod test/pending-0 (Pending): no cgroup v2 directory for uid {missing_uid} on this node — not attached"
        )]
    );
    assert_eq!(r.pods.len(), pods.len());
    for (rp, sp) in r.pods.iter().zip(&pods) {
        assert_eq!(rp.info.uid, sp.uid);
        assert_eq!(rp.dir, sp.dir);
        assert_eq!(rp.rel, sp.rel);
        assert_eq!(rp.info.qos_class.as_deref(), Some(sp.qos.as_str()));
        let want: Vec<ResolvedContainer> = sp
            .containers
            .iter()
            .filter(|c| c.name != "pause")
            .map(|c| ResolvedContainer {
                name: c.name.clone(),
                id: c.id.clone(),
                dir: c.dir.clone(),
                rel: c.rel.clone(),
            })
            .collect();
        assert_eq!(rp.containers, want, "{:?} {:?}", sp.layout, sp.qos);
    }

    // Resolving against the whole mount gives the same answer for these pods.
    let whole = resolve(&infos[..pods.len()], &index);
    assert!(whole.warnings.is_empty(), "{:?}", whole.warnings);
    assert_eq!(whole.pods, r.pods);
}

#[test]
fn hybrid_host_whose_pods_live_in_v1_only() {
    if !require_privileges("hybrid_host_whose_pods_live_in_v1_only") {
        return;
    }
    let tree = CgroupTree::new("resolve-v1only").unwrap();
    let uid = new_uid();
    let cid = new_container_id();
    SandboxPod::create(
        &tree,
        Layout::Cgroupfs,
        &uid,
        Qos::Burstable,
        &[("app", &cid)],
    )
    .unwrap();
    // A hybrid host has a v1 memory hierarchy where the sandbox made the pod's twin. A unified
    // host (every kernel of `make test-kernels`) gets a v1 hierarchy of its own: a named one,
    // with no controller, holding the pod in the cgroupfs layout.
    let own_v1 = match tree.memcg_root() {
        Some(_) => None,
        None => Some(NamedV1Hierarchy::mount(&format!(
            "kubepods/burstable/pod{uid}/{cid}"
        ))),
    };
    let memcg_root = match &own_v1 {
        Some(v1) => v1.root.clone(),
        None => tree.memcg_root().map(PathBuf::from).unwrap(),
    };
    // Pretend the v2 tree is an empty subtree: the pod directories exist only in the v1 twin.
    let empty_v2 = tree.create("empty-v2").unwrap();
    let mounts = Mounts {
        cgroup2: Some(empty_v2.clone()),
        memory_v1: Some(memcg_root.clone()),
    };
    let index = scan_mounts(&mounts).unwrap();
    assert!(index.pods.is_empty());
    assert_eq!(index.v1_pods, Some((memcg_root.clone(), 1)));
    let info = PodInfo {
        namespace: "test".into(),
        name: "old".into(),
        uid: uid.clone(),
        phase: Some("Running".into()),
        ..PodInfo::default()
    };
    let r = resolve(&[info], &index);
    assert!(r.pods.is_empty());
    assert_eq!(r.warnings.len(), 2, "{:?}", r.warnings);
    assert_eq!(
        r.warnings[0],
        format!("pod test/old (Running): no cgroup v2 directory for uid {uid} on this node — not attached")
    );
    assert!(
        r.warnings[1].contains(&format!(
            "cgroup v1 memory hierarchy ({}) has 1",
            memcg_root.display()
        )),
        "{}",
        r.warnings[1]
    );
    assert!(
        r.warnings[1].contains("podnet needs cgroup v2"),
        "{}",
        r.warnings[1]
    );
}

/// A cgroup v1 hierarchy with no controller (`-o none,name=…`) mounted on a temporary directory,
/// holding one path of cgroups; all removed, deepest first, then unmounted on drop (a v1
/// hierarchy with cgroups left in it would outlive its mount).
struct NamedV1Hierarchy {
    root: PathBuf,
    made: Vec<PathBuf>,
}

impl NamedV1Hierarchy {
    fn mount(path: &str) -> NamedV1Hierarchy {
        let root = std::env::temp_dir().join(format!("podnet-test-v1-{}", std::process::id()));
        std::fs::create_dir_all(&root).unwrap();
        let name = format!("name=podnet-test-{}", std::process::id());
        let status = std::process::Command::new("mount")
            .args(["-t", "cgroup", "-o", &format!("none,{name}"), "cgroup"])
            .arg(&root)
            .status()
            .unwrap();
        assert!(
            status.success(),
            "mounting a named cgroup v1 hierarchy on {}",
            root.display()
        );
        let mut v1 = NamedV1Hierarchy {
            root,
            made: Vec::new(),
        };
        let mut dir = v1.root.clone();
        for part in path.split('/') {
            dir.push(part);
            std::fs::create_dir(&dir).unwrap();
            v1.made.push(dir.clone());
        }
        v1
    }
}

impl Drop for NamedV1Hierarchy {
    fn drop(&mut self) {
        for dir in self.made.iter().rev() {
            let _ = std::fs::remove_dir(dir);
        }
        let _ = std::process::Command::new("umount")
            .arg(&self.root)
            .status();
        let _ = std::fs::remove_dir(&self.root);
    }
}
