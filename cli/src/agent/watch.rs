//! The pod watch: `kube::runtime::watcher` on this node's pods (field selector
//! `spec.nodeName`), never periodic lists. Errors (5xx, refused connections, dropped watches,
//! 410 Gone) are retried with backoff by the watcher while the last known pods stay followed.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use futures::StreamExt;
use k8s_openapi::api::core::v1::Pod;
use kube::runtime::watcher::{self, Event};
use kube::runtime::WatchStreamExt;
use log::{debug, info, warn};

use super::Shared;
use crate::discover;
use crate::model::PodInfo;

/// Watches this node's pods until the process ends, keeping `shared.known` equal to them.
pub async fn run(client: kube::Client, node: String, shared: Arc<Mutex<Shared>>) {
    let api: kube::Api<Pod> = kube::Api::all(client);
    let config = watcher::Config::default().fields(&format!("spec.nodeName={node}"));
    let mut events = watcher::watcher(api, config).default_backoff().boxed();
    // A relist (after a start, or a 410) is buffered and swapped in whole at InitDone, so pods
    // are never dropped and re-added in between.
    let mut relist: Option<BTreeMap<String, PodInfo>> = None;
    let mut failing = false;
    while let Some(event) = events.next().await {
        let event = match event {
            Ok(e) => {
                if failing {
                    info!("the pod watch is back");
                    failing = false;
                }
                e
            }
            Err(e) => {
                if !failing {
                    warn!("the pod watch failed ({e}); retrying with backoff, still following the pods known");
                    failing = true;
                }
                continue;
            }
        };
        match event {
            Event::Init => relist = Some(BTreeMap::new()),
            Event::InitApply(pod) => {
                if let (Some(buf), Some(info)) = (relist.as_mut(), info_of(pod)) {
                    buf.insert(info.uid.clone(), info);
                }
            }
            Event::InitDone => {
                let pods = relist.take().unwrap_or_default();
                debug!("pod list complete: {} pods on this node", pods.len());
                let mut s = shared.lock().expect("agent state");
                s.known = pods;
                s.listed = true;
                s.changed = true;
            }
            Event::Apply(pod) => {
                if let Some(info) = info_of(pod) {
                    debug!("pod {}/{} added or changed", info.namespace, info.name);
                    let mut s = shared.lock().expect("agent state");
                    s.known.insert(info.uid.clone(), info);
                    s.changed = true;
                }
            }
            Event::Delete(pod) => {
                if let Some(info) = info_of(pod) {
                    debug!("pod {}/{} deleted", info.namespace, info.name);
                    let mut s = shared.lock().expect("agent state");
                    s.known.remove(&info.uid);
                    s.changed = true;
                }
            }
        }
    }
}

fn info_of(pod: Pod) -> Option<PodInfo> {
    let value = serde_json::to_value(&pod).ok()?;
    match discover::pod_info_from_json(value) {
        Ok(info) if !info.uid.is_empty() => Some(info),
        Ok(_) => None,
        Err(e) => {
            warn!("a pod the API sent could not be read: {e}");
            None
        }
    }
}
