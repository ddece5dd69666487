//! The tracker's pinned mode, for the agent: adopt the object an earlier agent pinned on bpffs or
//! load and pin one, pin each pod's and file-open link so it outlives the process, and let go of
//! pins that belong to no pod (where the pins live is [`crate::pins`]).

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use log::{info, warn};

use podnet_loader::{Link, Object, ObjectSpec};

use super::{KernelVariant, Tracker, BPF_OBJECT, CGROUP_PROGRAMS};
use crate::pins;

impl Tracker {
    /// The agent's tracker: adopts the object pinned under `dir` by an earlier agent (its maps,
    /// with their counts, and its programs), or loads one and pins it there. Returns whether it
    /// adopted. Links it makes are pinned under `dir` too, so they outlive this process.
    pub fn load_pinned(max_pods: u32, dir: &Path) -> Result<(Tracker, bool)> {
        if pins::exists(dir) {
            if pins::same_build(dir)? {
                let mut t = Tracker::open_pins(dir)?;
                t.read_only = false;
                info!("adopted the BPF object pinned under {}", dir.display());
                return Ok((t, true));
            }
            // An upgrade (or a downgrade): this build's code must not run against programs and
            // maps it did not make. Everything pinned is detached; the counters start again.
            let removed = pins::uninstall(dir)?;
            warn!(
                "{OTHER_BUILD} under {}: removed its {removed} pins (its programs are detached) \
                 and loading this build's; the counters start again from 0",
                dir.display()
            );
        }
        pins::create_dir(dir)?;
        // A start that fails half-way leaves nothing pinned.
        let pinned = Tracker::load(max_pods).and_then(|mut t| {
            t.map("build")
                .update(
                    &0u32.to_ne_bytes(),
                    &super::object_fingerprint().to_ne_bytes(),
                    podnet_loader::BPF_ANY,
                )
                .context("writing the build fingerprint in the build map")?;
            t.object.pin(dir).with_context(|| {
                format!("pinning podnet's maps and programs under {}", dir.display())
            })?;
            Ok(t)
        });
        let mut t = match pinned {
            Ok(t) => t,
            Err(e) => {
                let _ = pins::uninstall(dir);
                return Err(e);
            }
        };
        t.pins = Some(dir.to_path_buf());
        Ok((t, false))
    }

    /// Reads what an agent pinned under `dir` without attaching or registering anything: the
    /// one-shot CLI's view when an agent runs on the node.
    pub fn open_pins(dir: &Path) -> Result<Tracker> {
        let spec = ObjectSpec::parse(BPF_OBJECT).context("parsing podnet's embedded BPF object")?;
        let object = Object::from_pins(&spec, dir).with_context(|| {
            format!(
                "opening the agent's pinned maps and programs under {} (remove them with \
                 `podnet agent --uninstall --pin-dir {}`)",
                dir.display(),
                dir.display()
            )
        })?;
        let capacity = object.map("counters")?.max_entries();
        let variant = KernelVariant::probe(&spec)?;
        let mut t = Tracker::new(object, capacity, variant);
        t.pins = Some(dir.to_path_buf());
        t.read_only = true;
        Ok(t)
    }

    /// Are all of a pod's cgroup links pinned (by this agent or an earlier one)?
    pub(super) fn pod_pins_complete(&self, uid: &str) -> bool {
        self.pins.as_ref().is_some_and(|dir| {
            CGROUP_PROGRAMS
                .iter()
                .all(|p| pins::pod_link(dir, uid, p).exists())
        })
    }

    /// In pinned mode, pins a pod's new links (they then outlive this process) and lets go of
    /// the handles; a pin that fails leaves the pod unattached (the links drop).
    pub(super) fn pin_pod_links(&self, uid: &str, links: &mut Vec<Link>) -> Result<()> {
        let Some(dir) = &self.pins else {
            return Ok(());
        };
        for (link, program) in links.iter_mut().zip(CGROUP_PROGRAMS) {
            if let Err(e) = link.pin(pins::pod_link(dir, uid, program)) {
                self.unpin_pod(uid);
                return Err(e).context("pinning a pod's link");
            }
        }
        links.clear();
        Ok(())
    }

    /// Removes a pod's pinned links: the kernel detaches them.
    pub(super) fn unpin_pod(&self, uid: &str) {
        if let Some(dir) = &self.pins {
            pins::remove_pod(dir, uid);
        }
    }

    /// After the first complete list of pods: lets go of pods an earlier agent pinned that are
    /// gone now, and of counter entries that belong to no followed pod (cgroups deleted while
    /// no agent ran).
    pub fn forget_unknown(&self) {
        let Some(dir) = &self.pins else {
            return;
        };
        for uid in pins::pod_uids(dir) {
            if !self.followed.contains_key(&uid) {
                info!("pod {uid} is gone: detaching what an earlier agent pinned for it");
                pins::remove_pod(dir, &uid);
            }
        }
        let live: std::collections::HashSet<u64> = self
            .followed
            .values()
            .flat_map(|f| f.pod.cgroup_ids())
            .collect();
        let counters = self.map("counters");
        let stale: Vec<Vec<u8>> = counters
            .keys()
            .filter_map(|k| k.ok())
            .filter(|k| {
                k.len() == 8 && !live.contains(&u64::from_ne_bytes(k[..8].try_into().unwrap()))
            })
            .collect();
        for k in stale {
            let _ = counters.delete(&k);
        }
    }
}

/// Pins a file-open link at `pin` (the agent), or returns it for this process to hold (the
/// one-shot CLI, or a kernel before 5.15, whose perf-event attachments are no BPF links and
/// cannot be pinned: then they live as long as this process, and `warnings` says so once).
pub(super) fn pin_or_keep(
    mut link: Link,
    pin: Option<PathBuf>,
    warnings: &mut Vec<String>,
) -> Option<Link> {
    let Some(pin) = pin else {
        return Some(link);
    };
    match link.pin(&pin) {
        Ok(()) => None,
        Err(e) => {
            if !warnings.iter().any(|w| w.starts_with(UNPINNED_OPENS)) {
                warnings.push(format!(
                    "{UNPINNED_OPENS} ({e}): this kernel has no BPF perf links (Linux 5.15)"
                ));
            }
            Some(link)
        }
    }
}

/// The start of the warning when the pins under `--pin-dir` were made by another build of podnet.
pub const OTHER_BUILD: &str = "another build of podnet pinned its BPF object";

/// The start of the warning for file-open attachments that cannot be pinned.
pub const UNPINNED_OPENS: &str =
    "file opens are counted only while the agent runs (its file-open attachments cannot be pinned)";
