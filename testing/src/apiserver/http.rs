//! The HTTP layer on hyper: routing, lists, chunked watch streams, `Status` failures.

use std::convert::Infallible;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use hyper::body::{Frame, Incoming, SizeHint};
use hyper::header::{HeaderValue, AUTHORIZATION, CACHE_CONTROL, CONTENT_TYPE};
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc::UnboundedReceiver;
use tokio::sync::oneshot;

use super::selector::{parse_field_selector, parse_label_selector, Filter};
use super::store::{event_line, WatchFrom, WatchMsg};
use super::{RecordedRequest, Shared};

/// How long a watch lasts without `timeoutSeconds` (the real server picks 30 to 60 minutes).
const DEFAULT_WATCH_TIMEOUT: Duration = Duration::from_secs(1800);

/// A response body: a whole document, or a watch's stream of events.
pub(crate) enum Body {
    Full(Option<Bytes>),
    Watch(UnboundedReceiver<WatchMsg>),
}

impl hyper::body::Body for Body {
    type Data = Bytes;
    type Error = io::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, io::Error>>> {
        match self.get_mut() {
            Body::Full(b) => Poll::Ready(b.take().map(|b| Ok(Frame::data(b)))),
            Body::Watch(rx) => match rx.poll_recv(cx) {
                Poll::Ready(Some(WatchMsg::Line(line))) => Poll::Ready(Some(Ok(Frame::data(line)))),
                // An error from the body makes hyper close the connection mid-response.
                Poll::Ready(Some(WatchMsg::Abort)) => Poll::Ready(Some(Err(io::Error::new(
                    io::ErrorKind::ConnectionAborted,
                    "the stub API server dropped this watch",
                )))),
                Poll::Ready(None) => Poll::Ready(None),
                Poll::Pending => Poll::Pending,
            },
        }
    }

    fn is_end_stream(&self) -> bool {
        matches!(self, Body::Full(None))
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            // Exact: hyper sends Content-Length, as the real server does for lists.
            Body::Full(b) => SizeHint::with_exact(b.as_ref().map_or(0, |b| b.len() as u64)),
            // Unknown: chunked transfer encoding.
            Body::Watch(_) => SizeHint::default(),
        }
    }
}

/// Accepts connections until `shutdown` fires; each connection is served by hyper (HTTP/1.1,
/// keep-alive) in its own task. Dropping the runtime afterwards closes them all.
pub(crate) async fn serve(
    listener: std::net::TcpListener,
    shared: Arc<Shared>,
    mut shutdown: oneshot::Receiver<()>,
) {
    let listener = match tokio::net::TcpListener::from_std(listener) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("podnet-testing: stub API server cannot listen: {e}");
            return;
        }
    };
    loop {
        tokio::select! {
            _ = &mut shutdown => break,
            accepted = listener.accept() => {
                let Ok((stream, _)) = accepted else { continue };
                let shared = Arc::clone(&shared);
                tokio::spawn(async move {
                    // A TLS ClientHello (record type 0x16) is not HTTP: close without an answer,
                    // so a client that wrongly speaks https here sees its handshake end (EOF)
                    // rather than an HTTP 400 it would take for a corrupt TLS record.
                    let mut stream = stream;
                    let mut first = [0u8; 1];
                    if matches!(stream.peek(&mut first).await, Ok(1) if first[0] == 0x16) {
                        // Read the hello first: closing with unread data would send a reset.
                        let mut hello = vec![0u8; 64 * 1024];
                        let _ = stream.read(&mut hello).await;
                        let _ = stream.shutdown().await;
                        return;
                    }
                    let service = service_fn(move |req| {
                        let response = handle(&req, &shared);
                        async move { Ok::<_, Infallible>(response) }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        // A client may shut down its side once the request is sent.
                        .half_close(true)
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        }
    }
}

/// Decodes `%XX` escapes and `+` (a space, in a query).
pub(crate) fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < b.len() => {
                let hex = std::str::from_utf8(&b[i + 1..i + 3]).ok();
                match hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
                    Some(v) => {
                        out.push(v);
                        i += 3;
                        continue;
                    }
                    None => out.push(b'%'),
                }
            }
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn recorded(req: &Request<Incoming>) -> RecordedRequest {
    let query = req
        .uri()
        .query()
        .unwrap_or("")
        .split('&')
        .filter(|kv| !kv.is_empty())
        .map(|kv| {
            let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
            (percent_decode(k), percent_decode(v))
        })
        .collect();
    RecordedRequest {
        method: req.method().to_string(),
        path: percent_decode(req.uri().path()),
        query,
        authorization: req
            .headers()
            .get(AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string),
    }
}

fn json_response(code: u16, body: &Value) -> Response<Body> {
    let mut r = Response::new(Body::Full(Some(Bytes::from(body.to_string()))));
    *r.status_mut() = StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let h = r.headers_mut();
    h.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    h.insert(CACHE_CONTROL, HeaderValue::from_static("no-cache, private"));
    r
}

/// The Kubernetes `Status` object for a failure.
pub(crate) fn status_object(code: u16, reason: &str, message: &str) -> Value {
    json!({
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": reason,
        "code": code,
    })
}

fn failure(code: u16, reason: &str, message: &str) -> Response<Body> {
    json_response(code, &status_object(code, reason, message))
}

/// The failure a real server answers with this code.
fn forced_failure(code: u16, req: &RecordedRequest) -> Response<Body> {
    let (reason, message) = match code {
        401 => ("Unauthorized", "Unauthorized".to_string()),
        403 => (
            "Forbidden",
            format!(
                "pods is forbidden: User \"system:serviceaccount:default:default\" cannot list \
                 resource \"pods\" in API group \"\" at the cluster scope (path {})",
                req.path
            ),
        ),
        404 => (
            "NotFound",
            "the server could not find the requested resource".into(),
        ),
        429 => (
            "TooManyRequests",
            "too many requests, please try again later".into(),
        ),
        500 => (
            "InternalError",
            "Internal error occurred: etcdserver: request timed out".into(),
        ),
        503 => (
            "ServiceUnavailable",
            "the server is currently unable to handle the request".into(),
        ),
        _ => ("Unknown", format!("stub failure {code}")),
    };
    failure(code, reason, &message)
}

/// `true`, `1`, `t`... as Go's `strconv.ParseBool`, which the real server uses.
fn truthy(v: Option<&str>) -> bool {
    matches!(v, Some("1" | "t" | "T" | "true" | "TRUE" | "True"))
}

fn handle(req: &Request<Incoming>, shared: &Shared) -> Response<Body> {
    let rec = recorded(req);
    shared.requests.lock().unwrap().push(rec.clone());
    if let Some(code) = shared.failures.lock().unwrap().take() {
        return forced_failure(code, &rec);
    }
    if req.method() != Method::GET {
        return failure(405, "MethodNotAllowed", "the stub only serves GET");
    }
    let segs: Vec<&str> = rec.path.trim_matches('/').split('/').collect();
    match segs.as_slice() {
        ["version"] => json_response(
            200,
            &json!({"major": "1", "minor": "33", "gitVersion": "v1.33.0", "platform": "linux/amd64"}),
        ),
        ["api"] => json_response(
            200,
            &json!({"kind": "APIVersions", "versions": ["v1"], "serverAddressByClientCIDRs": []}),
        ),
        ["apis"] => json_response(
            200,
            &json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": []}),
        ),
        ["api", "v1"] => json_response(
            200,
            &json!({
                "kind": "APIResourceList",
                "groupVersion": "v1",
                "resources": [{
                    "name": "pods",
                    "singularName": "pod",
                    "namespaced": true,
                    "kind": "Pod",
                    "verbs": ["get", "list", "watch"],
                    "shortNames": ["po"],
                    "categories": ["all"],
                }],
            }),
        ),
        ["api", "v1", "pods"] => pods(&rec, shared, None, false),
        ["api", "v1", "namespaces", ns, "pods"] => pods(&rec, shared, Some(ns), false),
        // The deprecated watch paths.
        ["api", "v1", "watch", "pods"] => pods(&rec, shared, None, true),
        ["api", "v1", "watch", "namespaces", ns, "pods"] => pods(&rec, shared, Some(ns), true),
        _ => failure(
            404,
            "NotFound",
            "the server could not find the requested resource",
        ),
    }
}

/// A list or, with `watch=true`, a watch of the pods in `namespace` (all when `None`).
fn pods(
    req: &RecordedRequest,
    shared: &Shared,
    namespace: Option<&str>,
    watch_path: bool,
) -> Response<Body> {
    let fields = match req.query_value("fieldSelector").map(parse_field_selector) {
        None => Vec::new(),
        Some(Ok(f)) => f,
        Some(Err(e)) => return failure(400, "BadRequest", &e),
    };
    let labels = match req.query_value("labelSelector").map(parse_label_selector) {
        None => Vec::new(),
        Some(Ok(l)) => l,
        Some(Err(e)) => return failure(400, "BadRequest", &e),
    };
    let filter = Filter {
        namespace: namespace.map(str::to_string),
        fields,
        labels,
    };
    if watch_path || truthy(req.query_value("watch")) {
        return watch(req, shared, filter);
    }
    if let Some(body) = shared.list_body.lock().unwrap().clone() {
        return json_response(200, &body);
    }
    let store = shared.store.lock().unwrap();
    let items: Vec<Value> = store
        .pods()
        .iter()
        .filter(|p| filter.matches(p))
        .map(|p| {
            // List items on the wire carry no kind/apiVersion.
            let mut p = p.clone();
            if let Some(o) = p.as_object_mut() {
                o.remove("kind");
                o.remove("apiVersion");
            }
            p
        })
        .collect();
    json_response(
        200,
        &json!({
            "kind": "PodList",
            "apiVersion": "v1",
            "metadata": {"resourceVersion": store.resource_version().to_string()},
            "items": items,
        }),
    )
}

fn watch(req: &RecordedRequest, shared: &Shared, filter: Filter) -> Response<Body> {
    let from = match req.query_value("resourceVersion") {
        None | Some("") | Some("0") => WatchFrom::Now,
        Some(v) => match v.parse::<u64>() {
            Ok(rv) => WatchFrom::After(rv),
            Err(_) => {
                return failure(
                    400,
                    "BadRequest",
                    &format!("invalid resource version: {v:?}"),
                )
            }
        },
    };
    let timeout = match req.query_value("timeoutSeconds") {
        None => DEFAULT_WATCH_TIMEOUT,
        Some(v) => match v.parse::<u64>() {
            Ok(s) => Duration::from_secs(s),
            Err(_) => return failure(400, "BadRequest", &format!("invalid timeoutSeconds: {v:?}")),
        },
    };
    let bookmarks = truthy(req.query_value("allowWatchBookmarks"));
    let initial_events = truthy(req.query_value("sendInitialEvents"));
    let opened = shared
        .store
        .lock()
        .unwrap()
        .watch(filter, from, bookmarks, initial_events);
    let rx = match opened {
        Ok((id, tx, rx)) => {
            // Ends the watch after its timeout, or gives up when the client went away first.
            let store = Arc::clone(&shared.store);
            tokio::spawn(async move {
                tokio::select! {
                    _ = tokio::time::sleep(timeout) => store.lock().unwrap().end_watch(id),
                    _ = tx.closed() => {}
                }
            });
            rx
        }
        Err(expired) => {
            // The real server answers 200, then one ERROR event, then ends the stream.
            let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
            let status = status_object(
                410,
                "Expired",
                &format!(
                    "too old resource version: {} ({})",
                    expired.requested, expired.oldest
                ),
            );
            let _ = tx.send(WatchMsg::Line(event_line("ERROR", &status)));
            rx
        }
    };
    let mut r = Response::new(Body::Watch(rx));
    let h = r.headers_mut();
    h.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    h.insert(CACHE_CONTROL, HeaderValue::from_static("no-cache, private"));
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decoding() {
        assert_eq!(percent_decode("a%3Db+c%2C%28x%29"), "a=b c,(x)");
        assert_eq!(percent_decode("100%"), "100%");
        assert_eq!(percent_decode("%zz"), "%zz");
    }
}
