//! Stage 3, attach: load podnet's BPF object (embedded in the binary) once, register the tracked
//! cgroups in the counters map, attach the cgroup programs to every pod directory with BPF links
//! and the file-open programs to the open path (kprobes on `do_sys_openat2`) or, where the kernel
//! has no kprobes, to the open-family syscall tracepoints.
//!
//! Every attachment is a link owned by the [`Tracker`]; nothing is pinned, so the kernel detaches
//! everything when podnet exits, however it exits (Ctrl-C, an error, SIGKILL). The agent's tracker
//! is the exception: it pins (`pinned.rs`). Which program variant this kernel loads is
//! `variant.rs`; how file opens are counted, `file_opens.rs`.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use log::{debug, info};

use podnet_loader::{Error as LoaderError, Link, Map, Object, ObjectSpec};

use crate::aggregate::{TrackedContainer, TrackedPod};
use crate::resolve::{Mounts, ResolvedPod};
use crate::sample::CgroupFiles;
#[cfg(test)]
use crate::sample::COUNTER_FIELDS;

mod file_opens;
mod pinned;
mod variant;

pub use file_opens::{
    perf_event_paranoid, FileOpenProbe, OpenProbe, NO_FILE_OPENS, OPEN_FEXIT, OPEN_FUNCTION,
    OPEN_SYSCALLS, TRACEPOINT_OPENS_WARNING,
};
pub use pinned::{OTHER_BUILD, UNPINNED_OPENS};
pub use variant::{KernelVariant, SocketOwner, UNREGISTERED_OPENS_WARNING};

/// podnet's BPF object, compiled from `bpf-src/podnet.bpf.c` by the build script.
pub static BPF_OBJECT: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/podnet.bpf.o"));

/// A fingerprint of [`BPF_OBJECT`] (64-bit FNV-1a of its bytes), which the agent writes in the
/// object's `build` map: pins carrying another value were made by a podnet whose programs or map
/// layouts may differ.
pub fn object_fingerprint() -> u64 {
    static FINGERPRINT: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
    *FINGERPRINT.get_or_init(|| {
        BPF_OBJECT.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| {
            (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
        })
    })
}

/// Cgroups registered per pod of capacity: the pod and up to seven containers.
pub const CGROUPS_PER_POD: u32 = 8;

/// The cgroup programs attached to every pod directory.
pub const CGROUP_PROGRAMS: [&str; 5] = [
    "podnet_ingress",
    "podnet_egress",
    "podnet_sock_create",
    "podnet_sock_release",
    "podnet_sockops",
];

/// How often a transient ENOMEM from the per-CPU allocator is retried when registering.
const REGISTER_RETRIES: usize = 10;

/// How many programs are attached directly to a cgroup directory on the hooks podnet uses for
/// pods (5 while podnet follows the pod, 0 when nothing is attached). Any process's programs
/// count: this asks the kernel (BPF_PROG_QUERY), not a tracker.
pub fn attached_programs(dir: &Path) -> usize {
    let spec = ObjectSpec::parse(BPF_OBJECT).expect("the embedded object parses");
    CGROUP_PROGRAMS
        .iter()
        .filter_map(|name| spec.program(name).ok())
        .map(|p| {
            podnet_loader::query_cgroup_programs(dir, p.kind.attach_type())
                .map_or(0, |ids| ids.len())
        })
        .sum()
}

/// One pod podnet follows: its links and the cgroup ids it registered.
struct Followed {
    pod: TrackedPod,
    /// Held for their `Drop`: dropping a link detaches its program.
    _links: Vec<Link>,
}

/// The loaded object and everything attached. Dropping it detaches every program.
pub struct Tracker {
    object: Object,
    /// The file-open attachments (kprobes or tracepoints).
    open_links: Vec<Link>,
    /// The levels (root = 0) of the shallowest and deepest registered cgroup, as published to
    /// the programs in the `levels` map; `None` before the first registration.
    levels: std::cell::Cell<Option<(u32, u32)>>,
    followed: HashMap<String, Followed>,
    capacity: u32,
    variant: KernelVariant,
    /// Where the agent pins its state (bpffs); `None` for the one-shot CLI, whose links die
    /// with it.
    pins: Option<PathBuf>,
    /// Only read counters pinned by an agent: attach and register nothing.
    read_only: bool,
}

impl Drop for Tracker {
    fn drop(&mut self) {
        // Closing a perf-event attachment waits for the kernel to synchronize (tens of ms for a
        // syscall tracepoint): closed one after the other, the 8 tracepoint links of an enter/exit
        // pair made a one-shot `podnet stats` end about 0.6 s after printing. Closed from one
        // thread each, the waits overlap. Pinned links are not here: their pins hold them.
        let links = std::mem::take(&mut self.open_links);
        if links.len() > 1 {
            std::thread::scope(|scope| {
                for link in links {
                    scope.spawn(move || drop(link));
                }
            });
        }
    }
}

impl Tracker {
    /// Loads the embedded object with maps sized for `max_pods`.
    pub fn load(max_pods: u32) -> Result<Tracker> {
        let mut spec =
            ObjectSpec::parse(BPF_OBJECT).context("parsing podnet's embedded BPF object")?;
        let capacity = max_pods.saturating_mul(CGROUPS_PER_POD);
        spec.map_mut("counters")?.max_entries = capacity;
        let mut variant = KernelVariant::probe(&spec)?;
        variant.apply(&mut spec, capacity)?;
        let object = match Object::load(&spec) {
            // The fexit program is the one a kernel may refuse although it has what the probes
            // look for (BTF and the function): then the kprobes or tracepoints count opens.
            Err(LoaderError::Verifier {
                program, reason, ..
            }) if program == OPEN_FEXIT => {
                info!("{OPEN_FEXIT} does not load on this kernel ({reason}): left out");
                variant.fexit_unavailable = Some(format!("the kernel refused it: {reason}"));
                spec.remove_program(OPEN_FEXIT)?;
                Object::load(&spec)
            }
            other => other,
        }
        .context("loading podnet's BPF programs into the kernel")?;
        info!("loaded BPF object: counters map for {capacity} cgroups, {variant:?}");
        Ok(Tracker::new(object, capacity, variant))
    }

    /// A tracker of a loaded (or adopted) object that follows no pod yet: one-shot (no pins),
    /// read-write until the caller says otherwise.
    fn new(object: Object, capacity: u32, variant: KernelVariant) -> Tracker {
        Tracker {
            object,
            open_links: Vec::new(),
            levels: Default::default(),
            followed: HashMap::new(),
            capacity,
            variant,
            pins: None,
            read_only: false,
        }
    }

    /// What this kernel lets podnet's programs do, as probed at load.
    pub fn variant(&self) -> &KernelVariant {
        &self.variant
    }

    /// The loaded object: its programs and maps (for benchmarks and diagnostics).
    pub fn object(&self) -> &Object {
        &self.object
    }

    /// Takes the file-open links (kprobes or tracepoints) out of the tracker, for the benchmark
    /// that times closing them. Dropping them detaches the file-open programs; the tracker then
    /// no longer counts file opens.
    pub fn take_open_links(&mut self) -> Vec<Link> {
        std::mem::take(&mut self.open_links)
    }

    /// What counts file opens (`None` before [`Tracker::attach_file_opens`]).
    pub fn file_open_probe(&self) -> Option<FileOpenProbe> {
        self.variant.file_opens
    }

    fn map(&self, name: &str) -> &Map {
        self.object
            .map(name)
            .unwrap_or_else(|e| panic!("map {name} is defined in podnet.bpf.c: {e}"))
    }

    /// Widens the range of registered levels the programs walk (the `levels` map) to the level
    /// of the cgroup at `rel` under the cgroup2 mount, before that cgroup is registered: a
    /// program that finds its entry also finds its level in range. Where the level cannot be
    /// known (a cgroup namespace other than the initial one), the range is every level.
    fn publish_level(&self, rel: &str, mounts: &Mounts) -> Result<()> {
        if self.read_only {
            return Ok(());
        }
        let map = self.map("levels");
        let level = mounts
            .cgroup2
            .as_deref()
            .and_then(mount_level)
            .map(|base| base + rel.split('/').filter(|c| !c.is_empty()).count() as u32);
        let (lo, hi) = level.map_or((1, MAX_LEVEL), |l| (l.max(1), l.min(MAX_LEVEL)));
        let current = match self.levels.get() {
            Some(r) => Some(r),
            // An adopted map keeps an earlier agent's range: widen it, never narrow it.
            None => map
                .lookup(&0u32.to_ne_bytes())
                .ok()
                .flatten()
                .and_then(|v| {
                    let min = u32::from_ne_bytes(v.get(..4)?.try_into().ok()?);
                    let max = u32::from_ne_bytes(v.get(4..8)?.try_into().ok()?);
                    (max != 0).then_some((min, max))
                }),
        };
        let wanted = current.map_or((lo, hi), |(min, max)| (min.min(lo), max.max(hi)));
        if current != Some(wanted) {
            let mut value = wanted.0.to_ne_bytes().to_vec();
            value.extend_from_slice(&wanted.1.to_ne_bytes());
            map.update(&0u32.to_ne_bytes(), &value, podnet_loader::BPF_ANY)
                .context("writing the registered cgroup levels (map levels)")?;
            debug!(
                "registered cgroups sit at levels {}..={}",
                wanted.0, wanted.1
            );
        }
        self.levels.set(Some(wanted));
        Ok(())
    }

    /// Registers a cgroup's zeroed counters. Returns false (and a warning) when the map is full.
    fn register(&self, id: u64, what: &str, warnings: &mut Vec<String>) -> Result<bool> {
        if self.read_only {
            // The agent registered it; a reader only learns its id.
            return Ok(true);
        }
        let counters = self.map("counters");
        let zeros = vec![0u8; counters.value_len()];
        let insert = || counters.update(&id.to_ne_bytes(), &zeros, podnet_loader::BPF_NOEXIST);
        let mut result = insert();
        // The per-CPU allocator can fail transiently while it grows its chunks (seen when
        // registering thousands of cgroups at once); the same insert succeeds a moment later.
        for _ in 0..REGISTER_RETRIES {
            match &result {
                Err(e) if e.raw_os_error() == Some(libc::ENOMEM) => {
                    std::thread::sleep(std::time::Duration::from_micros(200));
                    result = insert();
                }
                _ => break,
            }
        }
        match result {
            Ok(()) => Ok(true),
            Err(e) if e.raw_os_error() == Some(libc::EEXIST) => Ok(true),
            Err(LoaderError::MapFull { .. }) if what.starts_with("container ") => {
                // The pod's cgroup programs still see the container's packets and sockets, and
                // the open tracepoints charge its opens to the pod: only the split is lost.
                let opens = if self.variant.tracepoint_ancestors {
                    "and file opens"
                } else {
                    "(its file opens are not counted on this kernel)"
                };
                warnings.push(format!(
                    "{what} has no counters of its own: the counters map is full ({} cgroups; \
                     raise --max-pods). Only its per-container attribution is lost: its traffic, \
                     sockets {opens} still count in its pod's totals",
                    self.capacity
                ));
                Ok(false)
            }
            Err(LoaderError::MapFull { .. }) => {
                warnings.push(format!(
                    "{what} is not counted: the counters map is full ({} cgroups); raise --max-pods",
                    self.capacity
                ));
                Ok(false)
            }
            Err(e) => Err(e).with_context(|| format!("registering {what} (cgroup id {id})")),
        }
    }

    fn unregister(&self, id: u64) {
        if self.read_only {
            return;
        }
        if let Err(e) = self.map("counters").delete(&id.to_ne_bytes()) {
            debug!("unregistering cgroup {id}: {e}");
        }
    }

    /// Makes the set of followed pods equal `pods`: attaches to new ones, registers containers
    /// that appeared, and detaches from pods that are gone. Returns the followed pods (in the
    /// order given) and warnings for pods that could not be followed.
    pub fn follow(
        &mut self,
        pods: &[ResolvedPod],
        mounts: &Mounts,
    ) -> (Vec<TrackedPod>, Vec<String>) {
        let mut warnings = Vec::new();
        let wanted: HashMap<&str, &ResolvedPod> =
            pods.iter().map(|p| (p.info.uid.as_str(), p)).collect();
        let gone: Vec<String> = self
            .followed
            .keys()
            .filter(|uid| !wanted.contains_key(uid.as_str()))
            .cloned()
            .collect();
        for uid in gone {
            if let Some(f) = self.followed.remove(&uid) {
                info!(
                    "detaching from pod {}/{}",
                    f.pod.info.namespace, f.pod.info.name
                );
                for id in f.pod.cgroup_ids() {
                    self.unregister(id);
                }
                self.unpin_pod(&uid);
            }
        }
        let mut out = Vec::new();
        for p in pods {
            let name = pod_name(p);
            let result = if self.followed.contains_key(&p.info.uid) {
                self.add_new_containers(p, mounts, &mut warnings)
            } else {
                self.attach_pod(p, mounts, &mut warnings)
            };
            match result {
                Ok(true) => out.push(self.followed[&p.info.uid].pod.clone()),
                Ok(false) => {}
                Err(e) => warnings.push(format!("pod {name} is not counted: {e:#}")),
            }
        }
        (out, warnings)
    }

    fn attach_pod(
        &mut self,
        p: &ResolvedPod,
        mounts: &Mounts,
        warnings: &mut Vec<String>,
    ) -> Result<bool> {
        let name = pod_name(p);
        let pod_id = cgroup_id(&p.dir)?;
        self.publish_level(&p.rel, mounts)?;
        if !self.register(pod_id, &format!("pod {name}"), warnings)? {
            return Ok(false);
        }
        let mut tracked = TrackedPod {
            info: p.info.clone(),
            cgroup_id: pod_id,
            cgroup_path: p.rel.clone(),
            files: files_of(&p.dir, mounts),
            containers: Vec::new(),
        };
        let mut links = Vec::with_capacity(CGROUP_PROGRAMS.len());
        // An agent's pod whose links an earlier agent pinned is attached already.
        let adopted = self.pod_pins_complete(&p.info.uid);
        let programs = if adopted || self.read_only {
            &[][..]
        } else {
            &CGROUP_PROGRAMS[..]
        };
        for program in programs {
            let prog = self
                .object
                .program(program)
                .unwrap_or_else(|e| panic!("program {program} is defined in podnet.bpf.c: {e}"));
            match prog.attach_cgroup(&p.dir) {
                Ok(link) => links.push(link),
                Err(e) => {
                    // Dropping `links` detaches what was attached: no half-attached pod.
                    self.unregister(pod_id);
                    return Err(e)
                        .with_context(|| format!("attaching {program} to {}", p.dir.display()));
                }
            }
        }
        // The sockops program's cgroup storage for this pod now exists: name the pod in it so
        // TCP events of sockets that predate podnet are charged to the pod.
        if !programs.is_empty() {
            self.map("attach_pod")
                .update(
                    &pod_id.to_ne_bytes(),
                    &pod_id.to_ne_bytes(),
                    podnet_loader::BPF_ANY,
                )
                .with_context(|| format!("writing the attach-point storage of pod {name}"))?;
            self.pin_pod_links(&p.info.uid, &mut links)?;
        }
        debug!(
            "attached {} programs to pod {name} at {}",
            links.len(),
            p.dir.display()
        );
        for c in &p.containers {
            match self.track_container(p, c, mounts, warnings) {
                Ok(Some(tc)) => tracked.containers.push(tc),
                Ok(None) => {}
                Err(e) => {
                    // Leave nothing half-registered; dropping `links` detaches.
                    for id in tracked.cgroup_ids() {
                        self.unregister(id);
                    }
                    return Err(e);
                }
            }
        }
        self.followed.insert(
            p.info.uid.clone(),
            Followed {
                pod: tracked,
                _links: links,
            },
        );
        Ok(true)
    }

    fn add_new_containers(
        &mut self,
        p: &ResolvedPod,
        mounts: &Mounts,
        warnings: &mut Vec<String>,
    ) -> Result<bool> {
        // Restarted containers and finished init containers leave their cgroup: free its slot
        // in the counters map, or a crash-looping pod fills it.
        self.retire_gone_containers(&p.info.uid);
        let known: Vec<String> = self.followed[&p.info.uid]
            .pod
            .containers
            .iter()
            .map(|c| c.id.clone())
            .collect();
        for c in p.containers.iter().filter(|c| !known.contains(&c.id)) {
            if let Some(tc) = self.track_container(p, c, mounts, warnings)? {
                self.followed
                    .get_mut(&p.info.uid)
                    .expect("checked by the caller")
                    .pod
                    .containers
                    .push(tc);
            }
        }
        Ok(true)
    }

    fn track_container(
        &self,
        p: &ResolvedPod,
        c: &crate::resolve::ResolvedContainer,
        mounts: &Mounts,
        warnings: &mut Vec<String>,
    ) -> Result<Option<TrackedContainer>> {
        let id = cgroup_id(&c.dir)?;
        let what = format!("container {}/{}", pod_name(p), c.name);
        self.publish_level(&c.rel, mounts)?;
        if !self.register(id, &what, warnings)? {
            return Ok(None);
        }
        debug!("registered {what} ({}) as cgroup {id}", c.dir.display());
        Ok(Some(TrackedContainer {
            name: c.name.clone(),
            id: c.id.clone(),
            cgroup_id: id,
            cgroup_path: c.rel.clone(),
            files: files_of(&c.dir, mounts),
            retired: None,
        }))
    }

    /// How many cgroups the counters map holds.
    pub fn capacity(&self) -> u32 {
        self.capacity
    }

    /// Unregisters the containers of pod `uid` whose cgroup directory is gone, keeping their last
    /// counters in the pod ([`Retired`]): the pod's totals do not drop, its container rows do.
    /// Containers retired at an earlier refresh are merged into one: every snapshot from now on
    /// was taken after they were retired, so only their sum matters.
    fn retire_gone_containers(&mut self, uid: &str) {
        let Some(f) = self.followed.get(uid) else {
            return;
        };
        let gone: Vec<u64> = f
            .pod
            .containers
            .iter()
            .filter(|c| c.retired.is_none() && !c.files.v2_dir.exists())
            .map(|c| c.cgroup_id)
            .collect();
        let mut last = Vec::with_capacity(gone.len());
        for id in gone {
            let counters = self.read_counters(id);
            self.unregister(id);
            last.push((id, counters));
        }
        let at = std::time::Instant::now();
        let pod = &mut self.followed.get_mut(uid).expect("checked above").pod;
        let name = format!("{}/{}", pod.info.namespace, pod.info.name);
        let (old, mut containers): (Vec<_>, Vec<_>) = std::mem::take(&mut pod.containers)
            .into_iter()
            .partition(|c| c.retired.is_some());
        if let Some(first) = old.first() {
            let mut merged = first.clone();
            merged.name.clear();
            merged.id.clear();
            let r = merged.retired.as_mut().expect("partitioned");
            for c in &old[1..] {
                let o = c.retired.expect("partitioned");
                r.counters = r.counters.add(&o.counters);
                r.at = r.at.max(o.at);
            }
            containers.push(merged);
        }
        for (id, counters) in last {
            if let Some(c) = containers.iter_mut().find(|c| c.cgroup_id == id) {
                c.retired = Some(crate::aggregate::Retired { at, counters });
                debug!(
                    "unregistered container {name}/{} (cgroup {id}): its cgroup directory is \
                     gone; its counts stay in the pod's totals",
                    c.name
                );
            }
        }
        pod.containers = containers;
    }

    /// The counters of registered cgroup `id`, summed over CPUs (zero when absent).
    fn read_counters(&self, id: u64) -> crate::sample::Counters {
        let map = self.map("counters");
        match map.lookup(&id.to_ne_bytes()) {
            Ok(Some(raw)) => map
                .sum_percpu_u64(&raw)
                .map(|v| crate::sample::Counters::from_u64s(&v))
                .unwrap_or_default(),
            Ok(None) => Default::default(),
            Err(e) => {
                debug!("reading the counters of cgroup {id}: {e}");
                Default::default()
            }
        }
    }
}

/// The deepest level the programs walk (`MAX_DEPTH - 1` in podnet.bpf.c).
const MAX_LEVEL: u32 = 23;

/// The level (root = 0) in the cgroup hierarchy of the root of the cgroup2 mount at `mount`,
/// where podnet can know it: in the initial cgroup namespace, from the mount's root in
/// /proc/self/mountinfo. In another namespace (a kind node, a pod with a private cgroupns) paths
/// are relative to the namespace, whose level is unknown: `None`. Cached.
fn mount_level(mount: &Path) -> Option<u32> {
    static LEVEL: std::sync::OnceLock<Option<u32>> = std::sync::OnceLock::new();
    *LEVEL.get_or_init(|| {
        // PROC_CGROUP_INIT_INO: the initial cgroup namespace's inode number, fixed by the kernel.
        let ns = std::fs::read_link("/proc/self/ns/cgroup").ok()?;
        if ns.as_os_str() != "cgroup:[4026531835]" {
            debug!("cgroup namespace {ns:?} is not the initial one: walking every level");
            return None;
        }
        let m = podnet_loader::mountinfo::read_self()
            .ok()?
            .into_iter()
            .find(|m| m.fs_type == "cgroup2" && m.mount_point == mount)?;
        if m.root.split('/').any(|c| c == "..") {
            return None;
        }
        Some(m.root.split('/').filter(|c| !c.is_empty()).count() as u32)
    })
}

fn pod_name(p: &ResolvedPod) -> String {
    if p.info.name.is_empty() {
        format!("<unknown> (uid {})", p.info.uid)
    } else {
        format!("{}/{}", p.info.namespace, p.info.name)
    }
}

/// The cgroup id of a cgroup v2 directory: its inode number.
pub fn cgroup_id(dir: &Path) -> Result<u64> {
    use std::os::unix::fs::MetadataExt;
    Ok(std::fs::metadata(dir)
        .with_context(|| format!("reading cgroup directory {}", dir.display()))?
        .ino())
}

fn files_of(dir: &Path, mounts: &Mounts) -> CgroupFiles {
    CgroupFiles {
        v2_dir: dir.to_path_buf(),
        memory_v1_mount: mounts.memory_v1.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::file_opens::{OPEN_KPROBES, OPEN_TRACEPOINT};
    use super::*;

    #[test]
    fn embedded_object_has_every_program_and_map() {
        let spec = ObjectSpec::parse(BPF_OBJECT).unwrap();
        for p in CGROUP_PROGRAMS
            .iter()
            .chain([OPEN_TRACEPOINT].iter())
            .chain(OPEN_KPROBES.iter())
        {
            assert!(spec.program(p).is_ok(), "missing program {p}");
        }
        for m in [
            "counters",
            "misses",
            "sock_owner",
            "attach_pod",
            "levels",
            "build",
        ] {
            assert!(spec.map(m).is_ok(), "missing map {m}");
        }
        assert_eq!(
            spec.map("counters").unwrap().value_size as usize,
            COUNTER_FIELDS * 8,
            "struct podnet_counters and sample::Counters disagree"
        );
    }
}
