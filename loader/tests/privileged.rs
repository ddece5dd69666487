//! The loader on the real kernel: load, attach, count exact ground truth made by sandbox
//! workloads, detach, pin. Needs root (each test skips otherwise, and fails in CI).
//!
//! The workloads are the `podnet-sandbox` binary of podnet-testing: build it first with
//! `cargo build -p podnet-testing --bins` (`make test` does).

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use podnet_loader::probe::{helper_available, map_usable, Helper};
use podnet_loader::ProgType;
use podnet_loader::{
    bpffs_dir, possible_cpus, query_cgroup_programs, AttachType, Error, LinkKind, Map, MapType,
    Object, ObjectSpec, ProgramKind, BPF_ANY, BPF_NOEXIST,
};
use podnet_testing::sandbox::{cgroup_id, require_privileges, CgroupTree, NetNs, Veth, Workload};

macro_rules! bpf_object {
    ($name:literal) => {
        include_bytes!(concat!(env!("OUT_DIR"), "/", $name, ".bpf.o")).as_slice()
    };
}

const SKB: &[u8] = bpf_object!("skb_counter");
const OPENAT: &[u8] = bpf_object!("openat_counter");
const SOCK: &[u8] = bpf_object!("sock_counter");
const REJECT: &[u8] = bpf_object!("reject");
const FEATURES: &[u8] = bpf_object!("features");
const PODNET: &[u8] = bpf_object!("podnet");

/// Environment variable that turns the ignored helper test into the process that attaches and
/// waits to be SIGKILLed.
const SIGKILL_CHILD_ENV: &str = "PODNET_LOADER_SIGKILL_CGROUP";

/// Sums a per-CPU value of `fields` u64s over every possible CPU.
fn percpu_sums(map: &Map, key: &[u8]) -> Vec<u64> {
    let raw = map.lookup(key).unwrap().expect("entry present");
    assert_eq!(
        raw.len(),
        map.value_size() as usize * possible_cpus().unwrap()
    );
    map.sum_percpu_u64(&raw).unwrap()
}

fn u64_at(bytes: &[u8], offset: usize) -> u64 {
    u64::from_ne_bytes(bytes[offset..offset + 8].try_into().unwrap())
}

#[test]
fn cgroup_skb_counts_udp_datagrams_exactly() {
    if !require_privileges("cgroup_skb_counts_udp_datagrams_exactly") {
        return;
    }
    let tree = CgroupTree::new("loader-skb").unwrap();
    let pod = tree.create("pod").unwrap();
    let tx_dir = tree.create("pod/tx").unwrap();
    let rx_dir = tree.create("pod/rx").unwrap();
    let (a, b) = (NetNs::new("ldr-a").unwrap(), NetNs::new("ldr-b").unwrap());
    let veth = Veth::between(&a, &b).unwrap();

    let obj = Object::load(&ObjectSpec::parse(SKB).unwrap()).unwrap();
    let egress = obj
        .program("count_egress")
        .unwrap()
        .attach_cgroup(&pod)
        .unwrap();
    let ingress = obj
        .program("count_ingress")
        .unwrap()
        .attach_cgroup(&pod)
        .unwrap();
    assert_eq!(
        egress.kind(),
        LinkKind::Cgroup(AttachType::CgroupInetEgress)
    );
    assert_eq!(
        ingress.kind(),
        LinkKind::Cgroup(AttachType::CgroupInetIngress)
    );

    let (n, size) = (64u64, 300u64);
    let to = format!("{}:9000", veth.addr_b());
    let mut rx = Workload::spawn(
        &[
            "udp-recv",
            "--bind",
            &to,
            "--count",
            &n.to_string(),
            "--timeout-ms",
            "5000",
        ],
        Some(&b),
        Some(&rx_dir),
        None,
    )
    .unwrap();
    let mut tx = Workload::spawn(
        &[
            "udp-send",
            "--to",
            &to,
            "--count",
            &n.to_string(),
            "--size",
            &size.to_string(),
        ],
        Some(&a),
        Some(&tx_dir),
        None,
    )
    .unwrap();
    rx.wait_ready().unwrap();
    tx.wait_ready().unwrap();
    rx.go().unwrap();
    tx.go().unwrap();
    assert_eq!(tx.result().unwrap()["sent"], n);
    assert_eq!(rx.result().unwrap()["received"], n);

    let counts = obj.map("skb_counts").unwrap();
    let wire = n * (size + 28);
    assert_eq!(
        percpu_sums(counts, &1u32.to_ne_bytes()),
        vec![n, wire],
        "egress packets, bytes"
    );
    assert_eq!(
        percpu_sums(counts, &0u32.to_ne_bytes()),
        vec![n, wire],
        "ingress packets, bytes"
    );
}

#[test]
fn tracepoint_counts_openat_calls_of_one_cgroup() {
    if !require_privileges("tracepoint_counts_openat_calls_of_one_cgroup") {
        return;
    }
    let tree = CgroupTree::new("loader-openat").unwrap();
    let dir = tree.create("c").unwrap();
    let mut spec = ObjectSpec::parse(OPENAT).unwrap();
    spec.set_global("target_cgroup_id", &cgroup_id(&dir).unwrap().to_ne_bytes())
        .unwrap();
    let counter = spec.global("openat_calls").unwrap().clone();
    let obj = Object::load(&spec).unwrap();
    let link = obj
        .program("count_openat")
        .unwrap()
        .attach_tracepoint("syscalls", "sys_enter_openat")
        .unwrap();
    assert!(matches!(
        link.kind(),
        LinkKind::PerfLink | LinkKind::PerfEventIoctl
    ));

    // A busy process outside the cgroup must not be counted.
    let (opens, missing) = (37u64, 5u64);
    let mut w = Workload::spawn(
        &[
            "open",
            "--path",
            "/proc/self/status",
            "--count",
            &opens.to_string(),
            "--missing",
            &missing.to_string(),
        ],
        None,
        Some(&dir),
        None,
    )
    .unwrap();
    w.wait_ready().unwrap();
    for _ in 0..20 {
        std::fs::File::open("/proc/self/status").unwrap();
    }
    w.go().unwrap();
    let result = w.result().unwrap();
    assert_eq!(
        (result["opened"].as_u64(), result["failed"].as_u64()),
        (Some(opens), Some(missing))
    );
    w.wait_exit().unwrap();

    let bss = obj
        .map(&counter.map)
        .unwrap()
        .lookup(&0u32.to_ne_bytes())
        .unwrap()
        .unwrap();
    assert_eq!(u64_at(&bss, counter.offset), opens + missing);
}

#[test]
fn sock_create_and_release_are_counted() {
    if !require_privileges("sock_create_and_release_are_counted") {
        return;
    }
    let tree = CgroupTree::new("loader-sock").unwrap();
    let dir = tree.create("c").unwrap();
    let obj = Object::load(&ObjectSpec::parse(SOCK).unwrap()).unwrap();
    let _create = obj
        .program("count_create")
        .unwrap()
        .attach_cgroup(&dir)
        .unwrap();
    let _release = obj
        .program("count_release")
        .unwrap()
        .attach_cgroup(&dir)
        .unwrap();

    let n = 25u64;
    let mut w = Workload::spawn(
        &["sockets", "--count", &n.to_string()],
        None,
        Some(&dir),
        None,
    )
    .unwrap();
    w.go().unwrap();
    let result = w.result().unwrap();
    assert_eq!(
        (result["created"].as_u64(), result["closed"].as_u64()),
        (Some(n), Some(n))
    );
    w.wait_exit().unwrap();

    let counts = obj.map("sock_counts").unwrap();
    let get = |k: u32| u64_at(&counts.lookup(&k.to_ne_bytes()).unwrap().unwrap(), 0);
    assert_eq!((get(0), get(1)), (n, n), "created, released");
}

#[test]
fn verifier_rejection_carries_the_log_tail() {
    if !require_privileges("verifier_rejection_carries_the_log_tail") {
        return;
    }
    let err =
        Object::load(&ObjectSpec::parse(REJECT).unwrap()).expect_err("the verifier must reject it");
    eprintln!("{err}");
    let shown = err.to_string();
    match err {
        Error::Verifier {
            program,
            source,
            reason,
            log_tail,
            log,
            truncated,
        } => {
            assert_eq!(program, "unchecked_lookup");
            assert_eq!(source.raw_os_error(), Some(libc::EACCES));
            // The verdict leads the message, before the register dump.
            assert!(
                reason.contains("invalid mem access") && !reason.contains(": ("),
                "reason: {reason}"
            );
            assert!(
                shown.starts_with(&format!(
                    "the kernel refused to load program `unchecked_lookup`: {reason}"
                )),
                "{shown}"
            );
            assert!(log.trim_end().ends_with(log_tail.lines().last().unwrap()) && !truncated);
            assert!(
                log_tail.contains("invalid mem access"),
                "log tail: {log_tail}"
            );
            assert!(log_tail.lines().count() <= 20);
            assert!(
                shown.contains("program `unchecked_lookup`") && shown.ends_with(&log_tail),
                "{shown}"
            );
        }
        other => panic!("expected a verifier error, got {other:?}"),
    }
}

#[test]
fn link_detaches_on_drop() {
    if !require_privileges("link_detaches_on_drop") {
        return;
    }
    let tree = CgroupTree::new("loader-drop").unwrap();
    let dir = tree.create("c").unwrap();
    let obj = Object::load(&ObjectSpec::parse(SKB).unwrap()).unwrap();
    let prog = obj.program("count_egress").unwrap();
    assert_eq!(
        query_cgroup_programs(&dir, AttachType::CgroupInetEgress).unwrap(),
        Vec::<u32>::new()
    );
    let link = prog.attach_cgroup(&dir).unwrap();
    assert_eq!(
        query_cgroup_programs(&dir, AttachType::CgroupInetEgress).unwrap(),
        vec![prog.id().unwrap()]
    );
    assert_eq!(
        query_cgroup_programs(&dir, AttachType::CgroupInetIngress).unwrap(),
        Vec::<u32>::new()
    );
    drop(link);
    assert_eq!(
        query_cgroup_programs(&dir, AttachType::CgroupInetEgress).unwrap(),
        Vec::<u32>::new()
    );

    // Attaching to something that is not a cgroup v2 directory names the problem.
    let not_cgroup = prog.attach_cgroup("/proc/self/status");
    assert!(
        matches!(not_cgroup, Err(Error::NotCgroupV2 { .. })),
        "{not_cgroup:?}"
    );
}

/// Run as a child process by `link_detaches_when_owner_is_sigkilled` (does nothing on its own):
/// attaches an egress program to the cgroup named in the environment, prints its id and waits.
#[test]
#[ignore = "helper process for link_detaches_when_owner_is_sigkilled"]
fn sigkill_child_attaches_and_waits() {
    let Some(dir) = std::env::var_os(SIGKILL_CHILD_ENV) else {
        return;
    };
    let obj = Object::load(&ObjectSpec::parse(SKB).unwrap()).unwrap();
    let prog = obj.program("count_egress").unwrap();
    let _link = prog.attach_cgroup(PathBuf::from(dir)).unwrap();
    println!("attached {}", prog.id().unwrap());
    std::thread::sleep(Duration::from_secs(60));
    panic!("not killed within 60 s");
}

/// Kills the helper process on drop (if the test fails before it does).
struct Child(std::process::Child);

impl Drop for Child {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn link_detaches_when_owner_is_sigkilled() {
    if !require_privileges("link_detaches_when_owner_is_sigkilled") {
        return;
    }
    let tree = CgroupTree::new("loader-kill").unwrap();
    let dir = tree.create("c").unwrap();
    let mut child = Child(
        Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "sigkill_child_attaches_and_waits",
                "--ignored",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(SIGKILL_CHILD_ENV, &dir)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let stdout = child.0.stdout.take().unwrap();
    let id: u32 = BufReader::new(stdout)
        .lines()
        .map_while(Result::ok)
        // libtest prints `test <name> ... ` on the same line first.
        .find_map(|l| {
            l.split_once("attached ")
                .and_then(|(_, id)| id.trim().parse().ok())
        })
        .expect("the helper printed no `attached <id>` line");
    assert_eq!(
        query_cgroup_programs(&dir, AttachType::CgroupInetEgress).unwrap(),
        vec![id]
    );

    child.0.kill().unwrap(); // SIGKILL
    child.0.wait().unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut attached = query_cgroup_programs(&dir, AttachType::CgroupInetEgress).unwrap();
    while !attached.is_empty() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
        attached = query_cgroup_programs(&dir, AttachType::CgroupInetEgress).unwrap();
    }
    assert_eq!(attached, Vec::<u32>::new());
}

#[test]
fn batch_lookup_matches_key_iteration_for_10000_entries() {
    if !require_privileges("batch_lookup_matches_key_iteration_for_10000_entries") {
        return;
    }
    let mut spec = ObjectSpec::parse(FEATURES).unwrap();
    let n = 10_000u64;
    let hash = Map::create(spec.map("big_hash").unwrap()).unwrap();
    assert_eq!(hash.max_entries(), n as u32);
    let expected: BTreeMap<Vec<u8>, Vec<u8>> = (0..n)
        .map(|i| {
            (
                (i * 7 + 1).to_ne_bytes().to_vec(),
                (i * 3).to_ne_bytes().to_vec(),
            )
        })
        .collect();
    for (k, v) in &expected {
        hash.update(k, v, BPF_NOEXIST).unwrap();
    }
    // One more does not fit.
    let full = hash.update(&u64::MAX.to_ne_bytes(), &0u64.to_ne_bytes(), BPF_ANY);
    assert!(
        matches!(
            full,
            Err(Error::MapFull {
                max_entries: 10_000,
                ..
            })
        ),
        "{full:?}"
    );

    let batch: BTreeMap<Vec<u8>, Vec<u8>> = hash.lookup_batch().unwrap().into_iter().collect();
    let by_key: BTreeMap<Vec<u8>, Vec<u8>> = hash
        .keys()
        .map(|k| k.unwrap())
        .map(|k| (k.clone(), hash.lookup(&k).unwrap().unwrap()))
        .collect();
    assert_eq!(batch.len(), n as usize);
    assert_eq!(batch, expected);
    assert_eq!(by_key, expected);

    // Per-CPU: 12-byte values occupy 16-byte slots, one per possible CPU.
    spec.map_mut("percpu_hash").unwrap().max_entries = n as u32;
    let percpu = Map::create(spec.map("percpu_hash").unwrap()).unwrap();
    let cpus = possible_cpus().unwrap();
    assert_eq!(percpu.value_len(), 16 * cpus);
    let value = |i: u64, cpu: usize| {
        let mut v = (i + cpu as u64).to_ne_bytes().to_vec();
        v.extend_from_slice(&(cpu as u32).to_ne_bytes());
        v
    };
    for i in 0..n {
        let values: Vec<Vec<u8>> = (0..cpus).map(|c| value(i, c)).collect();
        percpu
            .update_percpu(&i.to_ne_bytes(), &values, BPF_ANY)
            .unwrap();
    }
    let batch = percpu.lookup_batch().unwrap();
    assert_eq!(batch.len(), n as usize);
    for (k, raw) in &batch {
        let i = u64::from_ne_bytes(k[..].try_into().unwrap());
        let expected: Vec<Vec<u8>> = (0..cpus).map(|c| value(i, c)).collect();
        assert_eq!(percpu.split_percpu(raw), expected);
        assert_eq!(percpu.lookup_percpu(k).unwrap().unwrap(), expected);
    }
    assert_eq!(percpu.keys().count(), n as usize);
    assert!(percpu.delete(&0u64.to_ne_bytes()).unwrap());
    assert!(!percpu.delete(&0u64.to_ne_bytes()).unwrap());
    assert_eq!(percpu.lookup(&0u64.to_ne_bytes()).unwrap(), None);
}

static PIN_COUNTER: AtomicU32 = AtomicU32::new(0);

/// A unique directory on bpffs, removed with everything in it on drop.
struct PinDir(PathBuf);

impl PinDir {
    fn new() -> PinDir {
        let n = PIN_COUNTER.fetch_add(1, Ordering::Relaxed);
        PinDir(
            bpffs_dir()
                .unwrap()
                .join(format!("podnet-loader-test-{}-{n}", std::process::id())),
        )
    }
}

impl Drop for PinDir {
    fn drop(&mut self) {
        if self.0.exists() {
            if let Err(e) = std::fs::remove_dir_all(&self.0) {
                eprintln!("cannot remove {}: {e}", self.0.display());
            }
        }
    }
}

#[test]
fn pin_unpin_and_open_from_pin() {
    if !require_privileges("pin_unpin_and_open_from_pin") {
        return;
    }
    let pins = PinDir::new();
    let spec = ObjectSpec::parse(FEATURES).unwrap();
    let mut map = Map::create(spec.map("big_hash").unwrap()).unwrap();
    map.update(&1u64.to_ne_bytes(), &11u64.to_ne_bytes(), BPF_ANY)
        .unwrap();
    let path = pins.0.join("maps/big_hash");
    map.pin(&path).unwrap();
    let mode = std::fs::metadata(path.parent().unwrap())
        .unwrap()
        .permissions()
        .mode()
        & 0o777;
    assert_eq!(mode, 0o700);

    let reopened = Map::from_pin(&path).unwrap();
    assert_eq!(
        (
            reopened.name(),
            reopened.map_type(),
            reopened.key_size(),
            reopened.value_size()
        ),
        ("big_hash", MapType::Hash, 8, 8)
    );
    assert_eq!(reopened.id().unwrap(), map.id().unwrap());
    assert_eq!(
        reopened.lookup(&1u64.to_ne_bytes()).unwrap(),
        Some(11u64.to_ne_bytes().to_vec())
    );
    reopened
        .update(&2u64.to_ne_bytes(), &22u64.to_ne_bytes(), BPF_ANY)
        .unwrap();
    assert_eq!(
        map.lookup(&2u64.to_ne_bytes()).unwrap(),
        Some(22u64.to_ne_bytes().to_vec())
    );

    map.unpin().unwrap();
    assert!(!path.exists());
    assert!(Map::from_pin(&path).is_err());
    assert!(matches!(
        map.pin("/tmp/podnet-not-bpffs/m"),
        Err(Error::NotBpffs(_))
    ));
    let _ = std::fs::remove_dir("/tmp/podnet-not-bpffs");

    // A pinned cgroup link outlives its Link handle until the pin is removed.
    let tree = CgroupTree::new("loader-pin").unwrap();
    let dir = tree.create("c").unwrap();
    let obj = Object::load(&ObjectSpec::parse(SKB).unwrap()).unwrap();
    let prog = obj.program("count_ingress").unwrap();
    let mut link = prog.attach_cgroup(&dir).unwrap();
    link.pin(pins.0.join("links/ingress")).unwrap();
    drop(link);
    assert_eq!(
        query_cgroup_programs(&dir, AttachType::CgroupInetIngress).unwrap(),
        vec![prog.id().unwrap()]
    );
    std::fs::remove_file(pins.0.join("links/ingress")).unwrap();
    // The pin held the last reference; bpffs drops it when the inode is freed, after an RCU
    // grace period, so the detach is asynchronous: wait for it (bounded).
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let mut attached = query_cgroup_programs(&dir, AttachType::CgroupInetIngress).unwrap();
    while !attached.is_empty() && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(10));
        attached = query_cgroup_programs(&dir, AttachType::CgroupInetIngress).unwrap();
    }
    assert_eq!(attached, Vec::<u32>::new());
}

#[test]
fn features_object_loads_and_rodata_is_frozen() {
    if !require_privileges("features_object_loads_and_rodata_is_frozen") {
        return;
    }
    let mut spec = ObjectSpec::parse(FEATURES).unwrap();
    spec.set_global("config_b", &5u64.to_ne_bytes()).unwrap();
    let obj = Object::load(&spec).unwrap();
    let names: Vec<&str> = obj.programs().map(|p| p.name()).collect();
    assert_eq!(names, ["ops_one", "ops_two", "on_exec"]);
    let rodata = obj.map(".rodata").unwrap();
    assert_eq!(
        u64_at(&rodata.lookup(&0u32.to_ne_bytes()).unwrap().unwrap(), 8),
        5
    );
    let write = rodata.update(&0u32.to_ne_bytes(), &[0; 16], BPF_ANY);
    assert_eq!(
        write.unwrap_err().raw_os_error(),
        Some(libc::EPERM),
        "frozen .rodata must refuse writes"
    );
    assert_eq!(
        u64_at(
            &obj.map(".data")
                .unwrap()
                .lookup(&0u32.to_ne_bytes())
                .unwrap()
                .unwrap(),
            0
        ),
        3
    );
}

#[test]
fn podnet_object_loads_with_its_btf_maps() {
    if !require_privileges("podnet_object_loads_with_its_btf_maps") {
        return;
    }
    let mut spec = podnet_spec_for_this_kernel();
    spec.map_mut("counters").unwrap().max_entries = 333;
    let obj = Object::load(&spec).unwrap();
    assert_eq!(obj.map("counters").unwrap().max_entries(), 333);
    assert_eq!(obj.programs().count(), spec.programs().len());
    let tree = CgroupTree::new("loader-podnet").unwrap();
    let dir = tree.create("pod").unwrap();
    let links: Vec<_> = obj
        .programs()
        .filter(|p| p.kind().is_cgroup())
        .map(|p| {
            (
                p.kind().attach_type(),
                p.id().unwrap(),
                p.attach_cgroup(&dir).unwrap(),
            )
        })
        .collect();
    for (attach_type, id, _) in &links {
        assert_eq!(
            &query_cgroup_programs(&dir, *attach_type).unwrap(),
            &vec![*id]
        );
    }

    // What podnet's attach stage does next: register the cgroup with zeroed per-CPU counters and
    // record the attach point in the cgroup storage (which exists once a program using it is
    // attached), then read everything back in one batch.
    let id = cgroup_id(&dir).unwrap().to_ne_bytes();
    let counters = obj.map("counters").unwrap();
    counters
        .update(&id, &vec![0; counters.value_len()], BPF_NOEXIST)
        .unwrap();
    let again = counters.update(&id, &vec![0; counters.value_len()], BPF_NOEXIST);
    assert_eq!(again.unwrap_err().raw_os_error(), Some(libc::EEXIST));
    let entries = counters.lookup_batch().unwrap();
    assert_eq!(entries.len(), 1);
    assert_eq!(entries[0].0, id);
    assert_eq!(
        counters.sum_percpu_u64(&entries[0].1).unwrap(),
        vec![0; counters.value_size() as usize / 8]
    );
    let attach_pod = obj.map("attach_pod").unwrap();
    attach_pod.update(&id, &id, BPF_ANY).unwrap();
    assert_eq!(attach_pod.lookup(&id).unwrap(), Some(id.to_vec()));
}

#[test]
fn probes_answer_what_every_supported_kernel_has_and_lacks() {
    if !require_privileges("probes_answer_what_every_supported_kernel_has_and_lacks") {
        return;
    }
    let tracepoint = open_tracepoint();
    // Callable from tracepoints since 4.18 and from cgroup/sock programs since 5.7: true on
    // every kernel podnet supports.
    assert!(helper_available(&tracepoint, Helper::GetCurrentCgroupId).unwrap());
    assert!(helper_available(&ProgramKind::CgroupSockCreate, Helper::GetCurrentCgroupId).unwrap());
    // sockops gained it in Linux 6.4 (the release notes are the oracle here, not the probe).
    let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap();
    let mut v = release
        .trim()
        .split(['.', '-'])
        .map(|p| p.parse::<u32>().unwrap_or(0));
    let version = (v.next().unwrap(), v.next().unwrap());
    assert_eq!(
        helper_available(&ProgramKind::SockOps, Helper::GetCurrentCgroupId).unwrap(),
        version >= (6, 4),
        "sockops and bpf_get_current_cgroup_id on {}",
        release.trim()
    );
    // A preallocated per-CPU hash (BPF_MAP_TYPE_PERCPU_HASH, flags 0) suits tracing programs
    // everywhere; one that allocates at run time only from 6.1 (BPF's own allocator).
    assert!(map_usable(ProgType::PerfEvent, MapType::PercpuHash, 0).unwrap());
    assert_eq!(
        map_usable(ProgType::PerfEvent, MapType::PercpuHash, 1).unwrap(),
        version >= (6, 1),
        "perf_event programs and a BPF_F_NO_PREALLOC hash on {}",
        release.trim()
    );
    // The answers agree with a real load: the variant chosen from the probes loads...
    let mut spec = podnet_spec_for_this_kernel();
    Object::load(&spec).expect("the probed variant loads");
    // ...and the variant a probe refused would not have.
    if !helper_available(&ProgramKind::SockOps, Helper::GetCurrentCgroupId).unwrap() {
        spec.set_global("sockops_current_cgroup", &[1]).unwrap();
        match Object::load(&spec) {
            Err(Error::Verifier {
                program, reason, ..
            }) => {
                assert_eq!(program, "podnet_sockops");
                assert!(
                    reason.starts_with("unknown func bpf_get_current_cgroup_id"),
                    "{reason}"
                );
            }
            other => panic!("expected the verifier to refuse the 6.4 sockops variant: {other:?}"),
        }
    }
}

fn open_tracepoint() -> ProgramKind {
    ProgramKind::Tracepoint {
        category: "syscalls".into(),
        event: "sys_enter_openat".into(),
    }
}

/// podnet's object with the variant this kernel loads, chosen from the probes as podnet does:
/// the 6.4 sockops variant where sockops may read the current cgroup, and a preallocated
/// counters map where tracing programs may not use one that allocates at run time.
fn podnet_spec_for_this_kernel() -> ObjectSpec {
    let mut spec = ObjectSpec::parse(PODNET).unwrap();
    let sockops_cgroup =
        helper_available(&ProgramKind::SockOps, Helper::GetCurrentCgroupId).unwrap();
    spec.set_global("sockops_current_cgroup", &[sockops_cgroup as u8])
        .unwrap();
    if !map_usable(ProgType::PerfEvent, MapType::PercpuHash, 1).unwrap() {
        spec.map_mut("counters").unwrap().flags &= !1;
    }
    if podnet_loader::probe::tracing_loads("do_sys_openat2", true).is_err() {
        spec.remove_program("podnet_open_fexit").unwrap();
    }
    spec
}
