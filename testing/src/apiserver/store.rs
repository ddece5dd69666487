//! The stub's state: pods, a monotonic resourceVersion, a bounded history of changes, open watches.

use std::collections::VecDeque;

use bytes::Bytes;
use serde_json::{json, Value};
use tokio::sync::mpsc::{unbounded_channel, UnboundedReceiver, UnboundedSender};

use super::selector::Filter;

/// The resourceVersion of the list a server starts with: its initial pods were written just
/// before it, and nothing earlier is kept in the history.
pub(crate) const INITIAL_RESOURCE_VERSION: u64 = 4242;

/// How many changes are kept for watches that resume from an older resourceVersion, unless
/// [`StubApiServer::set_history_limit`](super::StubApiServer::set_history_limit) says otherwise.
pub(crate) const DEFAULT_HISTORY_LIMIT: usize = 1000;

/// What a watch connection is sent.
#[derive(Debug)]
pub(crate) enum WatchMsg {
    /// One event: a JSON document and its newline.
    Line(Bytes),
    /// End the response abruptly, as a broken connection would.
    Abort,
}

/// The kind of a change to a pod.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ChangeKind {
    Added,
    Modified,
    Deleted,
}

/// One write, as the history keeps it.
#[derive(Debug, Clone)]
struct Change {
    rv: u64,
    kind: ChangeKind,
    /// The object after the write (for a deletion: its last state, with the deletion's
    /// resourceVersion).
    object: Value,
    /// The object before a modification, so that watches with selectors see a pod that starts
    /// or stops matching as ADDED or DELETED, as the real server sends it.
    previous: Option<Value>,
}

/// One open watch.
struct Watch {
    id: u64,
    filter: Filter,
    bookmarks: bool,
    tx: UnboundedSender<WatchMsg>,
}

/// Where a watch starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum WatchFrom {
    /// `resourceVersion` unset or `0`: an ADDED event for every pod that exists now, then the
    /// changes that follow.
    Now,
    /// `resourceVersion=N`: every change after N (N must still be in the history).
    After(u64),
}

/// The resourceVersion a watch asked for is older than the history kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Expired {
    pub(crate) requested: u64,
    pub(crate) oldest: u64,
}

/// The pods and everything needed to replay their changes.
pub(crate) struct Store {
    rv: u64,
    pods: Vec<Value>,
    history: VecDeque<Change>,
    history_limit: usize,
    /// Every change after this resourceVersion is in `history`.
    compacted: u64,
    watches: Vec<Watch>,
    next_watch: u64,
}

/// `namespace/name`, the identity of a pod.
fn key(pod: &Value) -> (String, String) {
    let m = &pod["metadata"];
    (
        m["namespace"].as_str().unwrap_or("").to_string(),
        m["name"].as_str().unwrap_or("").to_string(),
    )
}

/// The pod as the server stores it: `kind: Pod` and `apiVersion: v1` always present.
fn normalise(mut pod: Value) -> Value {
    if let Some(o) = pod.as_object_mut() {
        o.insert("kind".into(), json!("Pod"));
        o.insert("apiVersion".into(), json!("v1"));
        if !o.get("metadata").is_some_and(Value::is_object) {
            o.insert("metadata".into(), json!({}));
        }
    }
    pod
}

fn set_rv(pod: &mut Value, rv: u64) {
    pod["metadata"]["resourceVersion"] = json!(rv.to_string());
}

/// The pod without its resourceVersion, to tell a real change from a rewrite of the same object.
fn content(pod: &Value) -> Value {
    let mut p = pod.clone();
    if let Some(m) = p["metadata"].as_object_mut() {
        m.remove("resourceVersion");
    }
    p
}

/// One watch event as a line of the response.
pub(crate) fn event_line(kind: &str, object: &Value) -> Bytes {
    let mut text = json!({"type": kind, "object": object}).to_string();
    text.push('\n');
    Bytes::from(text)
}

/// A BOOKMARK event: only the resourceVersion (and annotations) of a Pod.
fn bookmark_line(rv: u64, initial_events_end: bool) -> Bytes {
    let mut metadata = json!({"resourceVersion": rv.to_string()});
    if initial_events_end {
        metadata["annotations"] = json!({"k8s.io/initial-events-end": "true"});
    }
    event_line(
        "BOOKMARK",
        &json!({"kind": "Pod", "apiVersion": "v1", "metadata": metadata}),
    )
}

/// What a watch with `filter` is sent for `change`, if anything.
fn event_for(filter: &Filter, change: &Change) -> Option<Bytes> {
    let now = filter.matches(&change.object);
    let kind = match change.kind {
        ChangeKind::Added if now => "ADDED",
        ChangeKind::Deleted if now => "DELETED",
        ChangeKind::Modified => {
            let before = change.previous.as_ref().is_some_and(|p| filter.matches(p));
            match (before, now) {
                (true, true) => "MODIFIED",
                (false, true) => "ADDED",
                (true, false) => "DELETED",
                (false, false) => return None,
            }
        }
        _ => return None,
    };
    Some(event_line(kind, &change.object))
}

impl Store {
    /// A store holding `pods`, written one by one up to [`INITIAL_RESOURCE_VERSION`].
    pub(crate) fn new(pods: Vec<Value>) -> Store {
        let first = INITIAL_RESOURCE_VERSION.saturating_sub(pods.len() as u64);
        let pods: Vec<Value> = pods
            .into_iter()
            .enumerate()
            .map(|(i, p)| {
                let mut p = normalise(p);
                set_rv(&mut p, first + 1 + i as u64);
                p
            })
            .collect();
        let rv = first + pods.len() as u64;
        Store {
            rv,
            pods,
            history: VecDeque::new(),
            history_limit: DEFAULT_HISTORY_LIMIT,
            compacted: rv,
            watches: Vec::new(),
            next_watch: 0,
        }
    }

    /// The latest resourceVersion.
    pub(crate) fn resource_version(&self) -> u64 {
        self.rv
    }

    /// The pods, in the order they were first added.
    pub(crate) fn pods(&self) -> &[Value] {
        &self.pods
    }

    fn position(&self, namespace: &str, name: &str) -> Option<usize> {
        self.pods
            .iter()
            .position(|p| key(p) == (namespace.to_string(), name.to_string()))
    }

    /// Records a change, sends it to the open watches it concerns and keeps it in the history.
    fn record(&mut self, kind: ChangeKind, object: Value, previous: Option<Value>) {
        let change = Change {
            rv: self.rv,
            kind,
            object,
            previous,
        };
        self.watches.retain(|w| !w.tx.is_closed());
        for w in &self.watches {
            if let Some(line) = event_for(&w.filter, &change) {
                let _ = w.tx.send(WatchMsg::Line(line));
            }
        }
        self.history.push_back(change);
        self.trim_history();
    }

    fn trim_history(&mut self) {
        while self.history.len() > self.history_limit {
            if let Some(c) = self.history.pop_front() {
                self.compacted = c.rv;
            }
        }
    }

    /// Adds a pod; `Err` with the pod's name when one of that namespace and name exists.
    pub(crate) fn add(&mut self, pod: Value) -> Result<u64, String> {
        let mut pod = normalise(pod);
        let (ns, name) = key(&pod);
        if self.position(&ns, &name).is_some() {
            return Err(format!("{ns}/{name}"));
        }
        self.rv += 1;
        set_rv(&mut pod, self.rv);
        self.pods.push(pod.clone());
        self.record(ChangeKind::Added, pod, None);
        Ok(self.rv)
    }

    /// Replaces the pod of the same namespace and name; `Err` with its name when there is none.
    pub(crate) fn update(&mut self, pod: Value) -> Result<u64, String> {
        let mut pod = normalise(pod);
        let (ns, name) = key(&pod);
        let i = self
            .position(&ns, &name)
            .ok_or_else(|| format!("{ns}/{name}"))?;
        self.rv += 1;
        set_rv(&mut pod, self.rv);
        let previous = std::mem::replace(&mut self.pods[i], pod.clone());
        self.record(ChangeKind::Modified, pod, Some(previous));
        Ok(self.rv)
    }

    /// Deletes a pod; `None` when there is no such pod.
    pub(crate) fn delete(&mut self, namespace: &str, name: &str) -> Option<u64> {
        let i = self.position(namespace, name)?;
        let mut pod = self.pods.remove(i);
        self.rv += 1;
        set_rv(&mut pod, self.rv);
        self.record(ChangeKind::Deleted, pod, None);
        Some(self.rv)
    }

    /// Makes the pods exactly `pods`, in that order, as the writes a controller would make:
    /// pods no longer present are deleted, then each new pod is added and each changed one
    /// modified, in the order of `pods`. Pods that did not change keep their resourceVersion.
    pub(crate) fn replace_all(&mut self, pods: Vec<Value>) {
        let pods: Vec<Value> = pods.into_iter().map(normalise).collect();
        let wanted: Vec<(String, String)> = pods.iter().map(key).collect();
        let gone: Vec<(String, String)> = self
            .pods
            .iter()
            .map(key)
            .filter(|k| !wanted.contains(k))
            .collect();
        for (ns, name) in gone {
            self.delete(&ns, &name);
        }
        let mut order = Vec::with_capacity(pods.len());
        for pod in pods {
            let (ns, name) = key(&pod);
            match self.position(&ns, &name) {
                None => {
                    // A duplicate in `pods` is an update of the first, as two writes would be.
                    let _ = self.add(pod);
                }
                Some(i) if content(&self.pods[i]) != content(&pod) => {
                    let _ = self.update(pod);
                }
                Some(_) => {}
            }
            if !order.contains(&(ns.clone(), name.clone())) {
                order.push((ns, name));
            }
        }
        let mut by_order = Vec::with_capacity(order.len());
        for (ns, name) in &order {
            if let Some(i) = self.position(ns, name) {
                by_order.push(self.pods[i].clone());
            }
        }
        self.pods = by_order;
    }

    /// Keeps at most `limit` changes (at least 1).
    pub(crate) fn set_history_limit(&mut self, limit: usize) {
        self.history_limit = limit.max(1);
        self.trim_history();
    }

    /// Forgets every change so far: a watch from any older resourceVersion is told 410 Gone.
    pub(crate) fn compact(&mut self) {
        self.history.clear();
        self.compacted = self.rv;
    }

    /// Opens a watch: the events it starts with are queued before any later change can be.
    pub(crate) fn watch(
        &mut self,
        filter: Filter,
        from: WatchFrom,
        bookmarks: bool,
        initial_events: bool,
    ) -> Result<(u64, UnboundedSender<WatchMsg>, UnboundedReceiver<WatchMsg>), Expired> {
        let (tx, rx) = unbounded_channel();
        match from {
            WatchFrom::After(rv) if rv < self.compacted => {
                return Err(Expired {
                    requested: rv,
                    oldest: self.compacted,
                })
            }
            WatchFrom::After(rv) => {
                for change in self.history.iter().filter(|c| c.rv > rv) {
                    if let Some(line) = event_for(&filter, change) {
                        let _ = tx.send(WatchMsg::Line(line));
                    }
                }
            }
            WatchFrom::Now => {
                for pod in self.pods.iter().filter(|p| filter.matches(p)) {
                    let _ = tx.send(WatchMsg::Line(event_line("ADDED", pod)));
                }
            }
        }
        if initial_events && bookmarks {
            let _ = tx.send(WatchMsg::Line(bookmark_line(self.rv, true)));
        }
        self.next_watch += 1;
        let id = self.next_watch;
        self.watches.push(Watch {
            id,
            filter,
            bookmarks,
            tx: tx.clone(),
        });
        Ok((id, tx, rx))
    }

    /// Ends watch `id` normally (its timeout passed): a last BOOKMARK when it asked for them.
    pub(crate) fn end_watch(&mut self, id: u64) {
        if let Some(i) = self.watches.iter().position(|w| w.id == id) {
            let w = self.watches.remove(i);
            if w.bookmarks {
                let _ = w.tx.send(WatchMsg::Line(bookmark_line(self.rv, false)));
            }
        }
    }

    /// Sends a BOOKMARK with the latest resourceVersion to every watch that asked for them.
    pub(crate) fn bookmark(&mut self) {
        self.watches.retain(|w| !w.tx.is_closed());
        for w in self.watches.iter().filter(|w| w.bookmarks) {
            let _ = w.tx.send(WatchMsg::Line(bookmark_line(self.rv, false)));
        }
    }

    /// Breaks every open watch connection; returns how many there were.
    pub(crate) fn drop_watches(&mut self) -> usize {
        self.watches.retain(|w| !w.tx.is_closed());
        for w in &self.watches {
            let _ = w.tx.send(WatchMsg::Abort);
        }
        let n = self.watches.len();
        self.watches.clear();
        n
    }

    /// How many watches are open.
    pub(crate) fn open_watches(&mut self) -> usize {
        self.watches.retain(|w| !w.tx.is_closed());
        self.watches.len()
    }
}
