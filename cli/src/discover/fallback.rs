//! The fallback when no API server answers: pods known by UID only, from the cgroup v2 tree.

use super::{DiscoverError, DiscoverOptions, Discovery, Source};
use crate::resolve::{self, Mounts};

pub(super) fn fallback(
    opts: &DiscoverOptions,
    why: String,
    mut warnings: Vec<String>,
) -> Result<Discovery, DiscoverError> {
    let root = match &opts.cgroup2 {
        Some(r) => r.clone(),
        None => {
            let mounts = Mounts::detect().map_err(|e| DiscoverError::NoSource {
                why: why.clone(),
                reason: e.to_string(),
            })?;
            mounts
                .require_cgroup2()
                .map_err(|e| DiscoverError::NoSource {
                    why: why.clone(),
                    reason: e.to_string(),
                })?
                .to_path_buf()
        }
    };
    let index = resolve::scan(&root).map_err(|e| DiscoverError::NoSource {
        why: why.clone(),
        reason: format!("cannot scan the cgroup v2 tree at {}: {e}", root.display()),
    })?;
    let pods = resolve::pods_from_index(&index);
    warnings.push(format!(
        "{why}: pods are known by UID only, from the cgroup tree at {} ({} found); to see names \
         pass --kubeconfig FILE (and --context), or --pods-from FILE with the output of \
         `kubectl get pods -o json`",
        root.display(),
        pods.len()
    ));
    if opts.namespace.is_some() || opts.selector.is_some() {
        warnings.push(
            "-n/--namespace and -l/--selector cannot be applied to pods known by UID only: \
             showing every pod in the cgroup tree"
                .to_string(),
        );
    }
    Ok(Discovery {
        pods,
        warnings,
        source: Source::CgroupScan { root },
    })
}
