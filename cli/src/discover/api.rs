//! The API client: list this node's pods, and classify failures (unreachable, 401, 403, 5xx, TLS).

use std::time::Duration;

use super::wire::{pod_info, WirePodList};
use super::{error_chain, DiscoverError, DiscoverOptions, Timeouts};
use crate::model::PodInfo;

/// Bounded timeouts, and no automatic retries: a fallback must come quickly.
pub(super) fn tune(config: &mut kube::Config, t: Timeouts) {
    config.connect_timeout = Some(t.connect);
    // The whole request is bounded by `t.request` around it (see `list_from_api`).
    config.read_timeout = None;
    config.write_timeout = None;
    config.default_retry = false;
}

pub(super) enum ApiFailure {
    /// Connection refused, DNS failure, timeout: fall back.
    Unreachable(String),
    /// Anything else: an error.
    Fatal(kube::Error),
}

pub(super) async fn list_from_api(
    config: kube::Config,
    opts: &DiscoverOptions,
    request_timeout: Duration,
) -> Result<Vec<PodInfo>, ApiFailure> {
    let client = kube::Client::try_from(config).map_err(ApiFailure::Fatal)?;
    let path = match &opts.namespace {
        Some(ns) => format!("/api/v1/namespaces/{ns}/pods"),
        None => "/api/v1/pods".to_string(),
    };
    let mut lp = kube::api::ListParams::default().fields(&format!("spec.nodeName={}", opts.node));
    if let Some(sel) = opts.selector.as_deref().filter(|s| !s.trim().is_empty()) {
        lp = lp.labels(sel);
    }
    let request = kube::core::Request::new(path)
        .list(&lp)
        .map_err(|e| ApiFailure::Fatal(kube::Error::BuildRequest(e)))?;
    let list: WirePodList =
        match tokio::time::timeout(request_timeout, client.request(request)).await {
            Err(_) => {
                return Err(ApiFailure::Unreachable(format!(
                    "no answer within {request_timeout:?}"
                )))
            }
            Ok(Err(e)) => {
                return Err(match unreachable_reason(&e) {
                    Some(r) => ApiFailure::Unreachable(r),
                    None => ApiFailure::Fatal(e),
                })
            }
            Ok(Ok(l)) => l,
        };
    let node = opts.node.as_str();
    Ok(list
        .items
        .iter()
        // The server filtered already; this guards against proxies that drop the selector.
        .filter(|p| p.spec.node_name.as_deref() == Some(node))
        .map(pod_info)
        .collect())
}

/// `Some(reason)` when the error means the server could not be reached at all.
fn unreachable_reason(e: &kube::Error) -> Option<String> {
    if !matches!(e, kube::Error::HyperError(_) | kube::Error::Service(_)) {
        return None;
    }
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(c) = cur {
        if let Some(io) = c.downcast_ref::<std::io::Error>() {
            use std::io::ErrorKind::*;
            match io.kind() {
                ConnectionRefused => return Some("connection refused".into()),
                TimedOut => return Some(format!("timed out: {io}")),
                HostUnreachable | NetworkUnreachable | NetworkDown | AddrNotAvailable => {
                    return Some(io.to_string())
                }
                _ => {}
            }
        }
        let text = c.to_string();
        if text.contains("dns error") || text.contains("failed to lookup address") {
            return Some(format!("DNS lookup failed: {}", error_chain(c)));
        }
        if c.is::<tokio::time::error::Elapsed>() {
            return Some("timed out".into());
        }
        cur = c.source();
    }
    None
}

pub(super) fn classify_fatal(e: kube::Error, server: &str) -> DiscoverError {
    let server = server.to_string();
    match e {
        kube::Error::Api(status) => {
            let code = status.code;
            let message = if status.message.is_empty() {
                status.reason.clone()
            } else {
                status.message.clone()
            };
            match code {
                401 => DiscoverError::Unauthorized { server, message },
                403 => DiscoverError::Forbidden { server, message },
                500..=599 => DiscoverError::ServerError {
                    server,
                    code,
                    message,
                },
                _ => DiscoverError::Api {
                    server,
                    code,
                    message,
                },
            }
        }
        kube::Error::Auth(_) | kube::Error::RustlsTls(_) | kube::Error::TlsRequired => {
            DiscoverError::Client {
                server,
                reason: error_chain(&e),
            }
        }
        e => DiscoverError::Transport {
            server,
            reason: error_chain(&e),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::super::{discover_inner, ConfigEnv, Source};
    use super::*;

    /// A server that accepts connections and never answers: discovery gives up within the
    /// request timeout and falls back to the cgroup scan.
    #[tokio::test]
    async fn silent_server_times_out_into_the_fallback() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let stop2 = stop.clone();
        listener.set_nonblocking(true).unwrap();
        let holder = std::thread::spawn(move || {
            let mut held = Vec::new();
            while !stop2.load(std::sync::atomic::Ordering::SeqCst) {
                if let Ok((conn, _)) = listener.accept() {
                    held.push(conn);
                }
                std::thread::sleep(Duration::from_millis(10));
            }
        });
        let tmp = std::env::temp_dir().join(format!("podnet-silent-{}", std::process::id()));
        std::fs::create_dir_all(tmp.join("cg")).unwrap();
        let cfg = tmp.join("kubeconfig");
        std::fs::write(
            &cfg,
            format!(
                "apiVersion: v1\nkind: Config\ncurrent-context: c\nclusters:\n- name: c\n  cluster:\n    server: http://127.0.0.1:{port}\ncontexts:\n- name: c\n  context:\n    cluster: c\n    user: u\nusers:\n- name: u\n  user: {{}}\n"
            ),
        )
        .unwrap();
        let opts = DiscoverOptions {
            kubeconfig: Some(cfg),
            node: "n".into(),
            cgroup2: Some(tmp.join("cg")),
            ..DiscoverOptions::default()
        };
        let t = Timeouts {
            connect: Duration::from_millis(500),
            request: Duration::from_millis(500),
        };
        // Without the request timeout this would wait forever; the outer bound only keeps a
        // broken build from hanging the suite (it is no speed assertion: slow emulated kernels
        // take seconds to set the client up).
        let d = tokio::time::timeout(
            Duration::from_secs(120),
            discover_inner(&opts, &ConfigEnv::default(), t),
        )
        .await
        .expect("discovery is bounded by its request timeout");
        stop.store(true, std::sync::atomic::Ordering::SeqCst);
        holder.join().unwrap();
        let _ = std::fs::remove_dir_all(&tmp);
        let d = d.unwrap();
        assert_eq!(
            d.source,
            Source::CgroupScan {
                root: tmp.join("cg")
            }
        );
        assert!(d.pods.is_empty());
        assert!(
            d.warnings[0].starts_with(&format!(
                "cannot reach the Kubernetes API server at http://127.0.0.1:{port} ("
            )),
            "{}",
            d.warnings[0]
        );
        assert!(
            d.warnings[0].contains("timed out") || d.warnings[0].contains("no answer within"),
            "{}",
            d.warnings[0]
        );
    }
}
