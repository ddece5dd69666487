//! `--pods-from FILE|-`: parse `kubectl get pods -o json`, filtered like the API server would.

use std::collections::BTreeMap;
use std::io::Read;

use super::selector::LabelSelector;
use super::wire::{pod_info, WirePod};
use super::{DiscoverError, DiscoverOptions, Discovery, PodsFrom, Source};
use crate::model::PodInfo;

pub(super) fn from_file(
    opts: &DiscoverOptions,
    from: &PodsFrom,
    selector: Option<&LabelSelector>,
) -> Result<Discovery, DiscoverError> {
    let (path, text) = match from {
        PodsFrom::Stdin => {
            let mut s = String::new();
            std::io::stdin()
                .read_to_string(&mut s)
                .map_err(|e| DiscoverError::PodsFrom {
                    path: "-".into(),
                    reason: format!("reading standard input: {e}"),
                })?;
            ("-".to_string(), s)
        }
        PodsFrom::File(p) => {
            let s = std::fs::read_to_string(p).map_err(|e| DiscoverError::PodsFrom {
                path: p.display().to_string(),
                reason: e.to_string(),
            })?;
            (p.display().to_string(), s)
        }
    };
    let (pods, mut warnings) = parse_pod_list(&text).map_err(|reason| DiscoverError::PodsFrom {
        path: path.clone(),
        reason,
    })?;
    let (pods, w) = filter_pods(pods, &opts.node, opts.namespace.as_deref(), selector);
    warnings.extend(w);
    Ok(Discovery {
        pods,
        warnings,
        source: Source::File { path },
    })
}

/// A pod read from `--pods-from`, with what client-side filtering needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListedPod {
    /// The pod.
    pub info: PodInfo,
    /// `metadata.labels`.
    pub labels: BTreeMap<String, String>,
}

/// Parses `kubectl get pods -o json` output: a `v1 List`, a `PodList`, or a single `Pod`. Items of
/// other kinds in a List are skipped with a warning.
pub fn parse_pod_list(text: &str) -> Result<(Vec<ListedPod>, Vec<String>), String> {
    let value: serde_json::Value = serde_json::from_str(text).map_err(|e| {
        format!("not JSON ({e}); podnet reads `kubectl get pods -o json`, not YAML or a table")
    })?;
    let kind = value.get("kind").and_then(|k| k.as_str()).unwrap_or("");
    let items: Vec<serde_json::Value> = match kind {
        "List" | "PodList" => match value.get("items") {
            None | Some(serde_json::Value::Null) => Vec::new(),
            Some(serde_json::Value::Array(a)) => a.clone(),
            Some(_) => return Err("`items` is not an array".into()),
        },
        "Pod" => vec![value],
        "" => return Err("no `kind`: expected a List, PodList or Pod".into()),
        other => {
            return Err(format!(
                "expected a List, PodList or Pod, found kind `{other}`"
            ))
        }
    };
    let mut pods = Vec::new();
    let mut warnings = Vec::new();
    for (i, item) in items.into_iter().enumerate() {
        let pod: WirePod = serde_json::from_value(item)
            .map_err(|e| format!("item {i} is not a valid Pod: {e}"))?;
        if let Some(k) = pod.kind.as_deref().filter(|k| *k != "Pod") {
            warnings.push(format!(
                "--pods-from: item {i} ({}) is a {k}, not a Pod: skipped",
                pod.metadata.name
            ));
            continue;
        }
        if pod.metadata.uid.is_empty() {
            return Err(format!(
                "item {i} ({}) has no metadata.uid",
                pod.metadata.name
            ));
        }
        pods.push(ListedPod {
            info: pod_info(&pod),
            labels: pod.metadata.labels.clone(),
        });
    }
    Ok((pods, warnings))
}

/// Applies the API server's filters client-side: `spec.nodeName == node`, the namespace, the label
/// selector. Pods not scheduled yet are left out; Pending ones with a warning.
pub fn filter_pods(
    pods: Vec<ListedPod>,
    node: &str,
    namespace: Option<&str>,
    selector: Option<&LabelSelector>,
) -> (Vec<PodInfo>, Vec<String>) {
    let mut warnings = Vec::new();
    let mut out = Vec::new();
    for p in pods {
        if namespace.is_some_and(|ns| ns != p.info.namespace) {
            continue;
        }
        if selector.is_some_and(|s| !s.matches(&p.labels)) {
            continue;
        }
        match p.info.node_name.as_deref() {
            Some(n) if n == node => out.push(p.info),
            Some(_) => {}
            None => {
                if p.info.phase.as_deref() == Some("Pending") {
                    warnings.push(format!(
                        "pod {}/{} is Pending and not scheduled to a node yet: left out",
                        p.info.namespace, p.info.name
                    ));
                }
            }
        }
    }
    (out, warnings)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::ContainerInfo;

    fn labels(kv: &[(&str, &str)]) -> BTreeMap<String, String> {
        kv.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    const LIST: &str = r#"{
      "apiVersion": "v1", "kind": "List", "metadata": {"resourceVersion": ""},
      "items": [
        {"apiVersion": "v1", "kind": "Pod",
         "metadata": {"name": "web-0", "namespace": "shop", "uid": "u1", "labels": {"app": "web"}},
         "spec": {"nodeName": "n1", "containers": [{"name": "web"}, {"name": "side"}]},
         "status": {"phase": "Running", "qosClass": "Burstable",
           "containerStatuses": [{"name": "web", "containerID": "containerd://aaa", "image": "i", "imageID": "", "ready": true, "restartCount": 0}],
           "initContainerStatuses": [{"name": "init", "containerID": "containerd://iii"}]}},
        {"apiVersion": "v1", "kind": "Pod",
         "metadata": {"name": "db-0", "namespace": "shop", "uid": "u2", "labels": {"app": "db"}},
         "spec": {"nodeName": "n2", "hostNetwork": true, "containers": [{"name": "db"}]},
         "status": {"phase": "Running", "qosClass": "Guaranteed"}},
        {"apiVersion": "v1", "kind": "Pod",
         "metadata": {"name": "new-0", "namespace": "shop", "uid": "u3", "labels": {"app": "web"}},
         "spec": {"containers": [{"name": "c"}]},
         "status": {"phase": "Pending", "qosClass": "BestEffort"}},
        {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web", "namespace": "shop", "uid": "s1"}},
        {"apiVersion": "v1", "kind": "Pod",
         "metadata": {"name": "dns", "namespace": "kube-system", "uid": "u4"},
         "spec": {"nodeName": "n1", "hostNetwork": true, "containers": [{"name": "dns"}]},
         "status": {"phase": "Running", "qosClass": "BestEffort",
           "containerStatuses": [{"name": "dns", "containerID": "cri-o://ddd"}]}}
      ]}"#;

    #[test]
    fn parse_kubectl_list() {
        let (pods, warnings) = parse_pod_list(LIST).unwrap();
        assert_eq!(
            warnings,
            vec!["--pods-from: item 3 (web) is a Service, not a Pod: skipped"]
        );
        let names: Vec<&str> = pods.iter().map(|p| p.info.name.as_str()).collect();
        assert_eq!(names, ["web-0", "db-0", "new-0", "dns"]);
        let web = &pods[0].info;
        assert_eq!(
            *web,
            PodInfo {
                namespace: "shop".into(),
                name: "web-0".into(),
                uid: "u1".into(),
                qos_class: Some("Burstable".into()),
                node_name: Some("n1".into()),
                phase: Some("Running".into()),
                host_network: false,
                containers: vec![
                    ContainerInfo {
                        name: "web".into(),
                        id: Some("aaa".into()),
                        runtime: Some("containerd".into())
                    },
                    ContainerInfo {
                        name: "init".into(),
                        id: Some("iii".into()),
                        runtime: Some("containerd".into())
                    },
                    ContainerInfo {
                        name: "side".into(),
                        id: None,
                        runtime: None
                    },
                ],
            }
        );
        assert!(pods[1].info.host_network);
        assert_eq!(pods[0].labels, labels(&[("app", "web")]));
    }

    #[test]
    fn filters_client_side() {
        let run = |node: &str, ns: Option<&str>, sel: Option<&str>| {
            let (pods, _) = parse_pod_list(LIST).unwrap();
            let sel = sel.map(|s| LabelSelector::parse(s).unwrap());
            let (out, w) = filter_pods(pods, node, ns, sel.as_ref());
            (out.into_iter().map(|p| p.name).collect::<Vec<_>>(), w)
        };
        let (names, w) = run("n1", None, None);
        assert_eq!(names, ["web-0", "dns"]);
        assert_eq!(
            w,
            vec!["pod shop/new-0 is Pending and not scheduled to a node yet: left out"]
        );
        assert_eq!(run("n2", None, None).0, ["db-0"]);
        assert_eq!(run("n1", Some("shop"), None).0, ["web-0"]);
        assert_eq!(run("n1", Some("kube-system"), None).0, ["dns"]);
        assert_eq!(run("n1", None, Some("app=web")).0, ["web-0"]);
        assert_eq!(run("n1", None, Some("app notin (web)")).0, ["dns"]);
        assert_eq!(run("n1", None, Some("!app")).0, ["dns"]);
        assert_eq!(run("n3", None, None).0, Vec::<String>::new());
        // Not-selected Pending pods are not warned about.
        assert!(run("n1", Some("kube-system"), None).1.is_empty());
    }

    #[test]
    fn parse_single_pod_and_podlist() {
        let pod = r#"{"apiVersion":"v1","kind":"Pod","metadata":{"name":"a","uid":"u"},"spec":{"nodeName":"n"}}"#;
        let (pods, w) = parse_pod_list(pod).unwrap();
        assert!(w.is_empty());
        assert_eq!(pods.len(), 1);
        assert_eq!(pods[0].info.namespace, "default");
        let list = r#"{"apiVersion":"v1","kind":"PodList","metadata":{},"items":[{"metadata":{"name":"a","namespace":"x","uid":"u"}}]}"#;
        let (pods, _) = parse_pod_list(list).unwrap();
        assert_eq!(pods[0].info.namespace, "x");
        let empty = r#"{"apiVersion":"v1","kind":"List","items":[]}"#;
        assert!(parse_pod_list(empty).unwrap().0.is_empty());
    }

    #[test]
    fn parse_errors() {
        assert!(parse_pod_list("NAME READY STATUS")
            .unwrap_err()
            .starts_with("not JSON"));
        assert!(parse_pod_list("apiVersion: v1\nkind: List\n")
            .unwrap_err()
            .contains("not YAML"));
        assert_eq!(
            parse_pod_list(r#"{"kind":"Service"}"#).unwrap_err(),
            "expected a List, PodList or Pod, found kind `Service`"
        );
        assert_eq!(
            parse_pod_list(r#"{"items":[]}"#).unwrap_err(),
            "no `kind`: expected a List, PodList or Pod"
        );
        assert_eq!(
            parse_pod_list(r#"{"kind":"List","items":[{"kind":"Pod","metadata":{"name":"x"}}]}"#)
                .unwrap_err(),
            "item 0 (x) has no metadata.uid"
        );
        assert!(
            parse_pod_list(r#"{"kind":"List","items":[{"kind":"Pod","metadata":"x"}]}"#)
                .unwrap_err()
                .starts_with("item 0 is not a valid Pod")
        );
    }
}
