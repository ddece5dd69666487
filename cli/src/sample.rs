//! Stage 4, sample: counter snapshots read from the BPF maps that [`crate::attach`] loaded, the
//! warnings they imply, and gauges read at sample time — memory from cgroup files, open fds and
//! sockets from /proc.
//!
//! Memory comes from the cgroup v2 directory when it has the memory controller (`memory.current`);
//! on hybrid hosts, whose memory controller is a v1 hierarchy, from the same relative path there;
//! and when neither exists, from the resident set of the cgroup's processes.

use std::collections::{BTreeSet, HashMap};
use std::fs;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, Result};
use log::debug;
use podnet_loader::Object;

use crate::model::{Memory, MemorySource};

/// One tracked cgroup's counters, summed over every possible CPU. Mirrors
/// `struct podnet_counters` in `bpf-src/podnet.h` field for field.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counters {
    pub rx_bytes: u64,
    pub rx_packets: u64,
    pub tx_bytes: u64,
    pub tx_packets: u64,
    pub sock_created: u64,
    pub sock_closed: u64,
    pub tcp_active_opens: u64,
    pub tcp_passive_opens: u64,
    pub tcp_retransmits: u64,
    pub file_opens: u64,
    pub file_open_errors: u64,
}

/// Number of `u64` fields in `struct podnet_counters`.
pub const COUNTER_FIELDS: usize = 11;

impl Counters {
    /// Builds counters from `struct podnet_counters`' fields in declaration order (missing
    /// trailing fields read as zero).
    pub fn from_u64s(values: &[u64]) -> Counters {
        let mut f = [0u64; COUNTER_FIELDS];
        for (slot, v) in f.iter_mut().zip(values) {
            *slot = *v;
        }
        Counters::from_fields(f)
    }

    fn fields(&self) -> [u64; COUNTER_FIELDS] {
        [
            self.rx_bytes,
            self.rx_packets,
            self.tx_bytes,
            self.tx_packets,
            self.sock_created,
            self.sock_closed,
            self.tcp_active_opens,
            self.tcp_passive_opens,
            self.tcp_retransmits,
            self.file_opens,
            self.file_open_errors,
        ]
    }

    fn from_fields(f: [u64; COUNTER_FIELDS]) -> Counters {
        Counters {
            rx_bytes: f[0],
            rx_packets: f[1],
            tx_bytes: f[2],
            tx_packets: f[3],
            sock_created: f[4],
            sock_closed: f[5],
            tcp_active_opens: f[6],
            tcp_passive_opens: f[7],
            tcp_retransmits: f[8],
            file_opens: f[9],
            file_open_errors: f[10],
        }
    }

    /// Field-wise sum (wrapping, as kernel counters do).
    pub fn add(&self, other: &Counters) -> Counters {
        let (a, b) = (self.fields(), other.fields());
        Counters::from_fields(std::array::from_fn(|i| a[i].wrapping_add(b[i])))
    }

    /// Field-wise difference `self - earlier`; counters only grow, so a smaller value means the
    /// entry was re-registered in between and `self` alone is the count since then.
    pub fn since(&self, earlier: &Counters) -> Counters {
        let (a, b) = (self.fields(), earlier.fields());
        if a.iter().zip(b.iter()).any(|(x, y)| x < y) {
            return *self;
        }
        Counters::from_fields(std::array::from_fn(|i| a[i] - b[i]))
    }
}

/// What the BPF side could not attribute (the `misses` map), summed over CPUs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Misses {
    pub untracked_events: u64,
    pub sock_storage_failures: u64,
}

/// Every tracked cgroup's counters at one instant.
#[derive(Debug, Clone)]
pub struct Snapshot {
    pub at: Instant,
    pub counters: HashMap<u64, Counters>,
    pub misses: Misses,
}

impl Snapshot {
    /// The state of freshly registered counters: every entry zero.
    pub fn zero(at: Instant) -> Snapshot {
        Snapshot {
            at,
            counters: HashMap::new(),
            misses: Misses::default(),
        }
    }

    /// The counters of `cgroup_id`, zero when it is not (or no longer) registered.
    pub fn get(&self, cgroup_id: u64) -> Counters {
        self.counters.get(&cgroup_id).copied().unwrap_or_default()
    }

    /// Reads every registered cgroup's counters (one batch lookup) and the miss counters from
    /// podnet's loaded object.
    pub fn read(object: &Object) -> Result<Snapshot> {
        let capacity = object.map("counters")?.max_entries() as usize;
        Snapshot::read_sized(object, capacity)
    }

    /// [`Snapshot::read`] with the batch buffers sized for about `registered` entries (the
    /// cgroups registered now) instead of the map's capacity.
    pub fn read_sized(object: &Object, registered: usize) -> Result<Snapshot> {
        let t = Instant::now();
        let map = object.map("counters")?;
        let mut counters = HashMap::with_capacity(registered);
        let mut fields = [0u64; COUNTER_FIELDS];
        let mut bad = None;
        map.for_each_entry(registered, |key, value| {
            let id = u64::from_ne_bytes(key[..8].try_into().expect("8-byte key"));
            match map.sum_percpu_u64_into(value, &mut fields) {
                Ok(()) => {
                    counters.insert(id, Counters::from_fields(fields));
                }
                Err(e) => bad = Some(e),
            }
        })
        .context("reading the counters map")?;
        if let Some(e) = bad {
            return Err(e).context("reading the counters map");
        }
        let misses_map = object.map("misses")?;
        let misses = match misses_map
            .lookup(&0u32.to_ne_bytes())
            .context("reading the misses map")?
        {
            Some(raw) => {
                let m = misses_map.sum_percpu_u64(&raw)?;
                Misses {
                    untracked_events: m[0],
                    sock_storage_failures: m[1],
                }
            }
            None => Misses::default(),
        };
        debug!(
            "read {} counter entries in {:?}",
            counters.len(),
            t.elapsed()
        );
        Ok(Snapshot {
            at: Instant::now(),
            counters,
            misses,
        })
    }
}

/// Warnings for events the BPF side could not attribute between two snapshots, with a counters
/// map of `capacity` cgroups.
pub fn miss_warnings(capacity: u32, from: &Snapshot, to: &Snapshot) -> Vec<String> {
    let mut w = Vec::new();
    let untracked = to
        .misses
        .untracked_events
        .saturating_sub(from.misses.untracked_events);
    if untracked > 0 {
        w.push(format!(
            "{untracked} events came from pod cgroups that are not registered (counters map \
             full at {capacity} cgroups?): raise --max-pods"
        ));
    }
    let storage = to
        .misses
        .sock_storage_failures
        .saturating_sub(from.misses.sock_storage_failures);
    if storage > 0 {
        w.push(format!(
            "{storage} TCP sockets could not be given an owner (socket storage full): their \
             retransmits and passive opens count at pod level only"
        ));
    }
    w
}

/// Gauges of one cgroup directory read at sample time.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Gauges {
    pub memory: Memory,
    pub open_fds: u64,
    pub open_sockets: u64,
    /// Some process's /proc/PID/fd could not be read (no CAP_SYS_PTRACE): `open_fds` and
    /// `open_sockets` are unknown, not 0.
    pub fds_unreadable: bool,
}

/// The start of the warning for fd and socket counts that /proc does not let podnet read.
pub const FDS_UNREADABLE_WARNING: &str = "open sockets and open file descriptors cannot be \
     counted: /proc/PID/fd of the pods' processes is unreadable";

/// Warnings for gauges that could not be read, once per report.
pub fn gauge_warnings<'a>(gauges: impl IntoIterator<Item = &'a Gauges>) -> Vec<String> {
    let mut w = Vec::new();
    if gauges.into_iter().any(|g| g.fds_unreadable) {
        w.push(format!(
            "{FDS_UNREADABLE_WARNING} without CAP_SYS_PTRACE, so sockets.open and files.openFds \
             are null (\"-\" in tables): run podnet as root with CAP_SYS_PTRACE (in a DaemonSet, \
             add SYS_PTRACE to securityContext.capabilities.add)"
        ));
    }
    w
}

/// Where a cgroup's files live: its v2 directory and, on hybrid hosts, the v1 memory hierarchy.
#[derive(Debug, Clone)]
pub struct CgroupFiles {
    pub v2_dir: PathBuf,
    /// The v1 memory hierarchy's mount point, on hybrid hosts.
    pub memory_v1_mount: Option<PathBuf>,
}

impl CgroupFiles {
    /// The cgroup's directory in the v1 memory hierarchy. Where kubelet mirrors its tree, that is
    /// the same path relative to the mount; where the v1 tree nests differently (a node inside a
    /// container, a session cgroup), it is found from a member process's `/proc/PID/cgroup`: the
    /// ancestor of its memory cgroup named like the v2 directory.
    pub fn memory_v1_dir(&self, rel: &str, pids: &BTreeSet<u32>) -> Option<PathBuf> {
        let mount = self.memory_v1_mount.as_deref()?;
        let mirrored = mount.join(rel.trim_start_matches('/'));
        if mirrored.is_dir() && rel != "/" {
            return Some(mirrored);
        }
        let name = self.v2_dir.file_name()?.to_str()?;
        pids.iter().find_map(|pid| {
            let text = fs::read_to_string(format!("/proc/{pid}/cgroup")).ok()?;
            let path = v1_memory_path(&text)?;
            let upto = ancestor_named(path, name)?;
            let dir = mount.join(upto.trim_start_matches('/'));
            dir.is_dir().then_some(dir)
        })
    }
}

/// The memory controller's path in a `/proc/PID/cgroup` file (`4:memory:/a/b`).
pub fn v1_memory_path(proc_cgroup: &str) -> Option<&str> {
    proc_cgroup.lines().find_map(|l| {
        let mut it = l.splitn(3, ':');
        let (_, controllers, path) = (it.next()?, it.next()?, it.next()?);
        controllers
            .split(',')
            .any(|c| c == "memory")
            .then_some(path)
    })
}

/// The prefix of `path` that ends with the component `name` (`/a/pod1/c` + `pod1` → `/a/pod1`).
pub fn ancestor_named<'a>(path: &'a str, name: &str) -> Option<&'a str> {
    let mut end = None;
    let mut offset = 0;
    for comp in path.split('/') {
        offset += comp.len();
        if comp == name {
            end = Some(offset);
        }
        offset += 1;
    }
    end.map(|e| &path[..e])
}

/// Reads memory, fd and socket gauges for one cgroup (its whole subtree). `rel` is its path
/// relative to the cgroup2 mount.
pub fn read_gauges(cg: &CgroupFiles, rel: &str) -> Gauges {
    let pids = subtree_pids(&cg.v2_dir);
    let fds = count_fds_checked(&pids);
    let memory = read_memory_v2(&cg.v2_dir)
        .or_else(|| {
            cg.memory_v1_dir(rel, &pids)
                .as_deref()
                .and_then(read_memory_v1)
        })
        .unwrap_or_else(|| {
            let rss = pids.iter().map(|&p| process_rss(p)).sum();
            Memory {
                usage_bytes: rss,
                limit_bytes: None,
                rss_bytes: rss,
                oom_kills: 0,
                source: MemorySource::Proc,
            }
        });
    Gauges {
        memory,
        open_fds: fds.fds,
        open_sockets: fds.sockets,
        fds_unreadable: fds.unreadable,
    }
}

/// Memory from a cgroup v2 directory with the memory controller enabled.
pub fn read_memory_v2(dir: &Path) -> Option<Memory> {
    let usage = read_u64(&dir.join("memory.current"))?;
    let limit = fs::read_to_string(dir.join("memory.max"))
        .ok()
        .and_then(|s| s.trim().parse::<u64>().ok()); // "max" → no limit
    let stat = read_keyed(&dir.join("memory.stat"));
    let events = read_keyed(&dir.join("memory.events"));
    Some(Memory {
        usage_bytes: usage,
        limit_bytes: limit,
        rss_bytes: stat.get("anon").copied().unwrap_or(0),
        oom_kills: events.get("oom_kill").copied().unwrap_or(0),
        source: MemorySource::Cgroup2,
    })
}

/// v1 reports "no limit" as a huge page-aligned number near `i64::MAX`.
const V1_UNLIMITED: u64 = 1 << 62;

/// Memory from a cgroup v1 memory directory.
pub fn read_memory_v1(dir: &Path) -> Option<Memory> {
    let usage = read_u64(&dir.join("memory.usage_in_bytes"))?;
    let limit = read_u64(&dir.join("memory.limit_in_bytes")).filter(|&l| l < V1_UNLIMITED);
    let stat = read_keyed(&dir.join("memory.stat"));
    let oom = read_keyed(&dir.join("memory.oom_control"));
    Some(Memory {
        usage_bytes: usage,
        limit_bytes: limit,
        rss_bytes: stat
            .get("total_rss")
            .or_else(|| stat.get("rss"))
            .copied()
            .unwrap_or(0),
        oom_kills: oom.get("oom_kill").copied().unwrap_or(0),
        source: MemorySource::Cgroup1,
    })
}

fn read_u64(path: &Path) -> Option<u64> {
    fs::read_to_string(path).ok()?.trim().parse().ok()
}

/// Parses `key value` lines (memory.stat, memory.events, memory.oom_control).
pub fn parse_keyed(text: &str) -> HashMap<String, u64> {
    text.lines()
        .filter_map(|l| {
            let mut it = l.split_whitespace();
            let k = it.next()?;
            let v = it.next()?.parse().ok()?;
            Some((k.to_string(), v))
        })
        .collect()
}

fn read_keyed(path: &Path) -> HashMap<String, u64> {
    fs::read_to_string(path)
        .map(|t| parse_keyed(&t))
        .unwrap_or_default()
}

/// Every process in a cgroup directory and its descendants.
pub fn subtree_pids(dir: &Path) -> BTreeSet<u32> {
    let mut pids = BTreeSet::new();
    let mut stack = vec![(dir.to_path_buf(), 0)];
    while let Some((d, depth)) = stack.pop() {
        if let Ok(t) = fs::read_to_string(d.join("cgroup.procs")) {
            pids.extend(t.lines().filter_map(|l| l.trim().parse::<u32>().ok()));
        }
        if depth >= 16 {
            continue;
        }
        if let Ok(rd) = fs::read_dir(&d) {
            for e in rd.flatten() {
                if e.file_type().map(|t| t.is_dir()).unwrap_or(false) {
                    stack.push((e.path(), depth + 1));
                }
            }
        }
    }
    pids
}

/// Open file descriptors and, among them, sockets, held by `pids`. Processes that exit while
/// being read are skipped.
pub fn count_fds(pids: &BTreeSet<u32>) -> (u64, u64) {
    let c = count_fds_checked(pids);
    (c.fds, c.sockets)
}

/// What [`count_fds_checked`] found.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FdCount {
    pub fds: u64,
    pub sockets: u64,
    /// A process's fd directory or links were denied (EACCES/EPERM: reading another user's, or
    /// a more privileged process's, /proc/PID/fd needs CAP_SYS_PTRACE): the counts are partial.
    pub unreadable: bool,
}

fn denied(e: &std::io::Error) -> bool {
    e.kind() == std::io::ErrorKind::PermissionDenied
        || matches!(e.raw_os_error(), Some(libc::EPERM) | Some(libc::EACCES))
}

/// [`count_fds`], and whether the kernel refused to show some process's descriptors.
pub fn count_fds_checked(pids: &BTreeSet<u32>) -> FdCount {
    let mut c = FdCount::default();
    for pid in pids {
        let rd = match fs::read_dir(format!("/proc/{pid}/fd")) {
            Ok(rd) => rd,
            Err(e) => {
                c.unreadable |= denied(&e);
                continue;
            }
        };
        for e in rd.flatten() {
            c.fds += 1;
            match fs::read_link(e.path()) {
                Ok(t) if t.to_string_lossy().starts_with("socket:") => c.sockets += 1,
                Ok(_) => {}
                Err(e) => c.unreadable |= denied(&e),
            }
        }
    }
    c
}

/// Resident set size of one process in bytes (`VmRSS` of /proc/PID/status), 0 if it is gone.
pub fn process_rss(pid: u32) -> u64 {
    fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| parse_vmrss(&s))
        .unwrap_or(0)
}

fn parse_vmrss(status: &str) -> Option<u64> {
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_decode_in_header_order() {
        let values: Vec<u64> = (1..=COUNTER_FIELDS as u64).collect();
        let c = Counters::from_u64s(&values);
        assert_eq!(c.rx_bytes, 1);
        assert_eq!(c.tx_packets, 4);
        assert_eq!(c.tcp_retransmits, 9);
        assert_eq!(c.file_open_errors, 11);
    }

    #[test]
    fn counters_since_and_add() {
        let a = Counters {
            rx_bytes: 10,
            file_opens: 3,
            ..Default::default()
        };
        let b = Counters {
            rx_bytes: 25,
            file_opens: 7,
            ..Default::default()
        };
        assert_eq!(b.since(&a).rx_bytes, 15);
        assert_eq!(b.since(&a).file_opens, 4);
        assert_eq!(a.add(&b).rx_bytes, 35);
        // A re-registered entry (counts went down) counts from its new start.
        assert_eq!(a.since(&b), a);
    }

    #[test]
    fn keyed_files_parse() {
        let stat = "anon 4096\nfile 8192\nbad line x\n";
        let m = parse_keyed(stat);
        assert_eq!(m["anon"], 4096);
        assert_eq!(m["file"], 8192);
        assert!(!m.contains_key("bad"));
        let oom = "oom_kill_disable 0\nunder_oom 0\noom_kill 3\n";
        assert_eq!(parse_keyed(oom)["oom_kill"], 3);
    }

    #[test]
    fn v1_memory_cgroup_of_a_process() {
        let text = "9:name=systemd:/\n4:memory:/session/a/kubepods/podU/c1\n0::/kubepods/podU/c1\n";
        assert_eq!(v1_memory_path(text), Some("/session/a/kubepods/podU/c1"));
        assert_eq!(v1_memory_path("0::/x\n3:cpu,cpuacct:/y\n"), None);
        assert_eq!(v1_memory_path("5:cpu,memory:/z\n"), Some("/z"));
        let p = "/session/a/kubepods/podU/c1";
        assert_eq!(ancestor_named(p, "podU"), Some("/session/a/kubepods/podU"));
        assert_eq!(ancestor_named(p, "c1"), Some(p));
        assert_eq!(ancestor_named(p, "pod"), None);
    }

    #[test]
    fn vmrss_parses_kib() {
        let status = "Name:\tx\nVmRSS:\t  1234 kB\nThreads: 1\n";
        assert_eq!(parse_vmrss(status), Some(1234 * 1024));
        assert_eq!(parse_vmrss("Name: kthread\n"), None);
    }

    #[test]
    fn memory_v2_and_v1_files() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path();
        fs::write(p.join("memory.current"), "1048576\n").unwrap();
        fs::write(p.join("memory.max"), "max\n").unwrap();
        fs::write(p.join("memory.stat"), "anon 65536\nfile 1\n").unwrap();
        fs::write(p.join("memory.events"), "low 0\noom 2\noom_kill 1\n").unwrap();
        let m = read_memory_v2(p).unwrap();
        assert_eq!(
            m,
            Memory {
                usage_bytes: 1048576,
                limit_bytes: None,
                rss_bytes: 65536,
                oom_kills: 1,
                source: MemorySource::Cgroup2,
            }
        );
        fs::write(p.join("memory.max"), "2097152\n").unwrap();
        assert_eq!(read_memory_v2(p).unwrap().limit_bytes, Some(2097152));

        let v1 = tempfile::tempdir().unwrap();
        let q = v1.path();
        assert!(read_memory_v1(q).is_none());
        fs::write(q.join("memory.usage_in_bytes"), "4096\n").unwrap();
        fs::write(q.join("memory.limit_in_bytes"), "9223372036854771712\n").unwrap();
        fs::write(q.join("memory.stat"), "rss 1\ntotal_rss 2048\n").unwrap();
        fs::write(q.join("memory.oom_control"), "oom_kill 4\n").unwrap();
        let m = read_memory_v1(q).unwrap();
        assert_eq!(
            m,
            Memory {
                usage_bytes: 4096,
                limit_bytes: None,
                rss_bytes: 2048,
                oom_kills: 4,
                source: MemorySource::Cgroup1,
            }
        );
    }

    #[test]
    fn child_process_fds() {
        use std::process::{Command, Stdio};
        // The shell closes whatever it inherited (cargo's jobserver pipe, other test threads'
        // fds), opens one file on fd 3,
        // and becomes `sleep`: stdin, stdout, stderr and that file.
        let script = r#"for p in /proc/$$/fd/*; do n=${p##*/}; [ "$n" -gt 2 ] && eval "exec $n>&-"; done
exec 3</etc/hostname; exec sleep 5"#;
        let mut child = Command::new("bash")
            .arg("-c")
            .arg(script)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let pids: BTreeSet<u32> = [child.id()].into();
        // The shell and the dynamic loader open files while starting: wait for it to settle.
        let mut counted = count_fds(&pids);
        for _ in 0..200 {
            if counted == (4, 0) {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
            counted = count_fds(&pids);
        }
        child.kill().unwrap();
        child.wait().unwrap();
        assert_eq!(counted, (4, 0));
        // A process that is gone counts nothing.
        assert_eq!(count_fds(&pids), (0, 0));
    }
}
