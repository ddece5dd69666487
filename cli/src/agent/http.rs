//! The agent's one small HTTP server (hyper): `/metrics`, `/stats`, `/healthz`, `/readyz`.

use std::convert::Infallible;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::{ACCEPT, CONTENT_TYPE};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use log::{debug, warn};

use super::metrics::{self, Format, SelfMetrics};
use super::Shared;

/// The readiness probe's path.
pub const READYZ: &str = "/readyz";
/// The liveness probe's path.
pub const HEALTHZ: &str = "/healthz";
/// The scrape path.
pub const METRICS: &str = "/metrics";

/// Accepts connections until the process ends.
pub async fn serve(listener: tokio::net::TcpListener, shared: Arc<Mutex<Shared>>) {
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(c) => c,
            Err(e) => {
                warn!("accepting a connection: {e}");
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                continue;
            }
        };
        let shared = shared.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |req| {
                let shared = shared.clone();
                async move { Ok::<_, Infallible>(respond(&req, &shared)) }
            });
            if let Err(e) = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await
            {
                debug!("connection from {peer}: {e}");
            }
        });
    }
}

fn reply(status: StatusCode, content_type: &str, body: String) -> Response<Full<Bytes>> {
    Response::builder()
        .status(status)
        .header(CONTENT_TYPE, content_type)
        .body(Full::new(Bytes::from(body)))
        .expect("a valid response")
}

fn respond(req: &Request<Incoming>, shared: &Mutex<Shared>) -> Response<Full<Bytes>> {
    const TEXT: &str = "text/plain; charset=utf-8";
    if req.method() != Method::GET && req.method() != Method::HEAD {
        return reply(StatusCode::METHOD_NOT_ALLOWED, TEXT, "GET only\n".into());
    }
    let s = shared.lock().expect("agent state");
    match req.uri().path() {
        HEALTHZ => reply(StatusCode::OK, TEXT, "ok: programs loaded\n".into()),
        READYZ => match &s.not_ready {
            None => reply(
                StatusCode::OK,
                TEXT,
                format!("ready: following {} pods\n", s.tracked.len()),
            ),
            Some(why) => reply(StatusCode::SERVICE_UNAVAILABLE, TEXT, format!("{why}\n")),
        },
        METRICS => match s.stats() {
            Ok((doc, now)) => {
                let format =
                    Format::from_accept(req.headers().get(ACCEPT).and_then(|v| v.to_str().ok()));
                let own = SelfMetrics {
                    tracked_pods: s.tracked.len(),
                    untracked_events: now.misses.untracked_events,
                };
                let body =
                    metrics::render(&doc, &own, s.containers, format, env!("CARGO_PKG_VERSION"));
                reply(StatusCode::OK, format.content_type(), body)
            }
            Err(e) => reply(
                StatusCode::INTERNAL_SERVER_ERROR,
                TEXT,
                format!("reading the counters: {e:#}\n"),
            ),
        },
        "/stats" => match s.stats() {
            Ok((doc, _)) => reply(
                StatusCode::OK,
                "application/json",
                crate::render::render_json(&doc),
            ),
            Err(e) => reply(
                StatusCode::INTERNAL_SERVER_ERROR,
                TEXT,
                format!("reading the counters: {e:#}\n"),
            ),
        },
        _ => reply(
            StatusCode::NOT_FOUND,
            TEXT,
            "not found: try /metrics, /stats, /healthz or /readyz\n".into(),
        ),
    }
}
