//! Field and label selectors, parsed and applied to Pod objects as the real API server does.

use serde_json::Value;

/// One `fieldSelector` requirement.
#[derive(Debug, Clone)]
pub(crate) struct FieldReq {
    path: [&'static str; 2],
    value: String,
    negate: bool,
}

impl FieldReq {
    pub(crate) fn matches(&self, pod: &Value) -> bool {
        let actual = pod[self.path[0]][self.path[1]].as_str().unwrap_or("");
        (actual == self.value) != self.negate
    }
}

/// `spec.nodeName=n1,metadata.namespace!=kube-system`: the fields a Pod supports, with `=`, `==`
/// and `!=`. Anything else is the real server's 400 message.
pub(crate) fn parse_field_selector(s: &str) -> Result<Vec<FieldReq>, String> {
    s.split(',')
        .filter(|t| !t.is_empty())
        .map(|term| {
            let (key, value, negate) = if let Some((k, v)) = term.split_once("!=") {
                (k, v, true)
            } else if let Some((k, v)) = term.split_once("==") {
                (k, v, false)
            } else if let Some((k, v)) = term.split_once('=') {
                (k, v, false)
            } else {
                return Err(format!(
                    "invalid selector: '{s}'; can't understand '{term}'"
                ));
            };
            let path = match key.trim() {
                "spec.nodeName" => ["spec", "nodeName"],
                "metadata.namespace" => ["metadata", "namespace"],
                "metadata.name" => ["metadata", "name"],
                "status.phase" => ["status", "phase"],
                other => return Err(format!("field label not supported: {other}")),
            };
            Ok(FieldReq {
                path,
                value: value.trim().to_string(),
                negate,
            })
        })
        .collect()
}

/// One `labelSelector` requirement.
#[derive(Debug, Clone)]
pub(crate) enum LabelReq {
    Equals(String, String),
    NotEquals(String, String),
    Exists(String),
    NotExists(String),
}

impl LabelReq {
    pub(crate) fn matches(&self, pod: &Value) -> bool {
        let labels = &pod["metadata"]["labels"];
        match self {
            LabelReq::Equals(k, v) => labels[k].as_str() == Some(v.as_str()),
            LabelReq::NotEquals(k, v) => labels[k].as_str() != Some(v.as_str()),
            LabelReq::Exists(k) => labels.get(k).is_some(),
            LabelReq::NotExists(k) => labels.get(k).is_none(),
        }
    }
}

/// Equality-based selectors only; set-based ones (`in`, `notin`) are answered with 400 so a test
/// never believes the stub filtered what it did not.
pub(crate) fn parse_label_selector(s: &str) -> Result<Vec<LabelReq>, String> {
    if s.contains('(') {
        return Err(format!(
            "unable to parse requirement: the podnet stub API server does not implement set-based selectors: {s}"
        ));
    }
    s.split(',')
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .map(|term| {
            let r = if let Some((k, v)) = term.split_once("!=") {
                LabelReq::NotEquals(k.trim().into(), v.trim().into())
            } else if let Some((k, v)) = term.split_once("==") {
                LabelReq::Equals(k.trim().into(), v.trim().into())
            } else if let Some((k, v)) = term.split_once('=') {
                LabelReq::Equals(k.trim().into(), v.trim().into())
            } else if let Some(k) = term.strip_prefix('!') {
                LabelReq::NotExists(k.trim().into())
            } else {
                LabelReq::Exists(term.into())
            };
            let key = match &r {
                LabelReq::Equals(k, _)
                | LabelReq::NotEquals(k, _)
                | LabelReq::Exists(k)
                | LabelReq::NotExists(k) => k,
            };
            if key.is_empty() || key.contains(char::is_whitespace) {
                return Err(format!(
                    "unable to parse requirement: invalid label key \"{key}\""
                ));
            }
            Ok(r)
        })
        .collect()
}

/// What one list or watch selects: a namespace (or all), field and label requirements.
#[derive(Debug, Clone, Default)]
pub(crate) struct Filter {
    pub(crate) namespace: Option<String>,
    pub(crate) fields: Vec<FieldReq>,
    pub(crate) labels: Vec<LabelReq>,
}

impl Filter {
    pub(crate) fn matches(&self, pod: &Value) -> bool {
        let in_namespace = match self.namespace.as_deref() {
            Some(ns) => pod["metadata"]["namespace"] == ns,
            None => true,
        };
        in_namespace
            && self.fields.iter().all(|f| f.matches(pod))
            && self.labels.iter().all(|l| l.matches(pod))
    }
}
