//! Unit tests of resolution: directory-name forms, layouts, mountinfo shapes.
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
    let systemd_rel =
        format!("/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod{UID_}.slice");
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
