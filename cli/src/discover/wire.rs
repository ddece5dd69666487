//! The subset of v1 Pod JSON podnet reads (API answers and `--pods-from`), mapped to [`PodInfo`].

use std::collections::BTreeMap;

use serde::Deserialize;

use crate::model::{ContainerInfo, PodInfo};

/// The subset of a v1 Pod podnet reads. Lenient on purpose: hand-written `--pods-from` files
/// and older servers omit fields the full schema requires.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub(super) struct WirePod {
    pub(super) kind: Option<String>,
    pub(super) metadata: WireMeta,
    pub(super) spec: WireSpec,
    status: WireStatus,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub(super) struct WireMeta {
    pub(super) name: String,
    namespace: Option<String>,
    pub(super) uid: String,
    pub(super) labels: BTreeMap<String, String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub(super) struct WireSpec {
    pub(super) node_name: Option<String>,
    host_network: bool,
    containers: Vec<WireName>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(super) struct WireName {
    name: String,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub(super) struct WireStatus {
    phase: Option<String>,
    qos_class: Option<String>,
    container_statuses: Vec<WireContainerStatus>,
    init_container_statuses: Vec<WireContainerStatus>,
    ephemeral_container_statuses: Vec<WireContainerStatus>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub(super) struct WireContainerStatus {
    name: String,
    #[serde(rename = "containerID")]
    container_id: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(super) struct WirePodList {
    /// `PodList` from a real server; anything else answered with 200 (a proxy's or another
    /// API's object) is not a list of pods.
    pub(super) kind: Option<String>,
    pub(super) items: Vec<WirePod>,
}

/// Splits a `containerStatuses[].containerID` (`containerd://<id>`) into the runtime and the id.
pub fn split_container_id(s: &str) -> (Option<String>, Option<String>) {
    match s.split_once("://") {
        Some((rt, id)) => (
            Some(rt.to_string()).filter(|r| !r.is_empty()),
            Some(id.to_string()).filter(|i| !i.is_empty()),
        ),
        None => (None, Some(s.to_string()).filter(|i| !i.is_empty())),
    }
}

pub(super) fn pod_info(p: &WirePod) -> PodInfo {
    let mut containers: Vec<ContainerInfo> = Vec::new();
    let statuses = p
        .status
        .container_statuses
        .iter()
        .chain(&p.status.init_container_statuses)
        .chain(&p.status.ephemeral_container_statuses);
    for s in statuses {
        let (runtime, id) = s
            .container_id
            .as_deref()
            .map(split_container_id)
            .unwrap_or((None, None));
        containers.push(ContainerInfo {
            name: s.name.clone(),
            id,
            runtime,
        });
    }
    // Containers with no status yet (Pending pods) are listed without an id.
    for c in &p.spec.containers {
        if !containers.iter().any(|k| k.name == c.name) {
            containers.push(ContainerInfo {
                name: c.name.clone(),
                id: None,
                runtime: None,
            });
        }
    }
    PodInfo {
        namespace: p
            .metadata
            .namespace
            .clone()
            .unwrap_or_else(|| "default".into()),
        name: p.metadata.name.clone(),
        uid: p.metadata.uid.clone(),
        qos_class: p.status.qos_class.clone(),
        node_name: p.spec.node_name.clone().filter(|n| !n.is_empty()),
        phase: p.status.phase.clone(),
        host_network: p.spec.host_network,
        containers,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn container_ids() {
        assert_eq!(
            split_container_id("containerd://abc"),
            (Some("containerd".into()), Some("abc".into()))
        );
        assert_eq!(
            split_container_id("cri-o://def"),
            (Some("cri-o".into()), Some("def".into()))
        );
        assert_eq!(
            split_container_id("docker://0a"),
            (Some("docker".into()), Some("0a".into()))
        );
        assert_eq!(split_container_id(""), (None, None));
        assert_eq!(split_container_id("bare"), (None, Some("bare".into())));
    }
}
