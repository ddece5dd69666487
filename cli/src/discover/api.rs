//! The API client: list this node's pods, and classify failures (unreachable, 401, 403, 5xx, TLS).

use std::error::Error as StdError;
use std::io;
use std::net::IpAddr;
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

/// How a list request failed.
pub(super) enum ApiFailure {
    /// Connection refused, DNS failure, timeout: fall back.
    Unreachable(String),
    /// Anything else: an error.
    Fatal(kube::Error),
    /// A 200 answer whose object is not a `PodList` (its kind).
    NotAPodList(String),
}

/// Lists the pods on `opts.node`; the whole request is bounded by `timeouts.request`.
pub(super) async fn list_from_api(
    config: kube::Config,
    opts: &DiscoverOptions,
    timeouts: Timeouts,
) -> Result<Vec<PodInfo>, ApiFailure> {
    let request_timeout = timeouts.request;
    let host = config.cluster_url.host().map(str::to_string);
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
                return Err(
                    match unreachable_reason(&e, host.as_deref(), timeouts.connect).await {
                        Some(r) => ApiFailure::Unreachable(r),
                        None => ApiFailure::Fatal(e),
                    },
                )
            }
            Ok(Ok(l)) => l,
        };
    if list.kind.as_deref() != Some("PodList") {
        return Err(ApiFailure::NotAPodList(
            list.kind.unwrap_or_else(|| "(none)".into()),
        ));
    }
    let node = opts.node.as_str();
    Ok(list
        .items
        .iter()
        // The server filtered already; this guards against proxies that drop the selector.
        .filter(|p| p.spec.node_name.as_deref() == Some(node))
        .map(pod_info)
        .collect())
}

/// `Some(reason)` when the error means the server could not be reached at all, decided from the
/// errors' types, never their text:
/// - a `std::io::Error` whose kind says the connection was refused, timed out (hyper-timeout's
///   connect timeout is one) or had no route;
/// - a `tokio` timeout;
/// - a hyper connect error (`hyper_util::client::legacy::Error::is_connect`) while `host`, a
///   name, does not resolve: a DNS failure. hyper-util's connector wraps both its DNS and its TLS
///   failures in a private type, and std reports a failed lookup with no `ErrorKind` of its own,
///   so the failed connection is told apart from a TLS failure (a misconfiguration, not a
///   fallback) by resolving `host` once more, bounded by `dns_timeout`.
async fn unreachable_reason(
    e: &kube::Error,
    host: Option<&str>,
    dns_timeout: Duration,
) -> Option<String> {
    if !matches!(e, kube::Error::HyperError(_) | kube::Error::Service(_)) {
        return None;
    }
    let mut connect_error: Option<&hyper_util::client::legacy::Error> = None;
    let mut cur: Option<&(dyn StdError + 'static)> = Some(e);
    while let Some(c) = cur {
        if let Some(io) = c.downcast_ref::<io::Error>() {
            use io::ErrorKind::*;
            match io.kind() {
                ConnectionRefused => return Some("connection refused".into()),
                TimedOut => return Some(format!("timed out: {io}")),
                HostUnreachable | NetworkUnreachable | NetworkDown | AddrNotAvailable => {
                    return Some(io.to_string())
                }
                _ => {}
            }
        }
        if c.is::<tokio::time::error::Elapsed>() {
            return Some("timed out".into());
        }
        if let Some(h) = c.downcast_ref::<hyper_util::client::legacy::Error>() {
            if h.is_connect() && connect_error.is_none() {
                connect_error = Some(h);
            }
        }
        cur = c.source();
    }
    let connect_error = connect_error?;
    let host = host?.trim_start_matches('[').trim_end_matches(']');
    if host.parse::<IpAddr>().is_ok() || resolves(host, dns_timeout).await {
        return None;
    }
    // The connector's own error ("dns error") and the resolver's, below the client's wrapper.
    let detail = match connect_error.source() {
        Some(c) => error_chain(c),
        None => error_chain(connect_error),
    };
    Some(format!("DNS lookup failed: {detail}"))
}

/// Whether `host` resolves to at least one address within `timeout`.
async fn resolves(host: &str, timeout: Duration) -> bool {
    match tokio::time::timeout(timeout, tokio::net::lookup_host((host, 0))).await {
        Ok(Ok(mut addrs)) => addrs.next().is_some(),
        Ok(Err(_)) | Err(_) => false,
    }
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
    use std::path::PathBuf;

    use super::super::{discover_inner, ConfigEnv, Discovery, Source};
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

    fn kubeconfig(server: &str) -> String {
        format!(
            "apiVersion: v1\nkind: Config\ncurrent-context: c\nclusters:\n- name: c\n  cluster:\n    server: {server}\ncontexts:\n- name: c\n  context:\n    cluster: c\n    user: u\nusers:\n- name: u\n  user: {{}}\n"
        )
    }

    /// Discovery against `server` with short timeouts, the cgroup scan rooted in an empty tree.
    async fn discover_at(server: &str, tag: &str) -> (Result<Discovery, DiscoverError>, PathBuf) {
        let tmp = std::env::temp_dir().join(format!("podnet-{tag}-{}", std::process::id()));
        std::fs::create_dir_all(tmp.join("cg")).unwrap();
        let cfg = tmp.join("kubeconfig");
        std::fs::write(&cfg, kubeconfig(server)).unwrap();
        let opts = DiscoverOptions {
            kubeconfig: Some(cfg),
            node: "n".into(),
            cgroup2: Some(tmp.join("cg")),
            ..DiscoverOptions::default()
        };
        let t = Timeouts {
            connect: Duration::from_secs(2),
            request: Duration::from_secs(5),
        };
        // The outer bound only keeps a broken build from hanging the suite.
        let d = tokio::time::timeout(
            Duration::from_secs(120),
            discover_inner(&opts, &ConfigEnv::default(), t),
        )
        .await
        .expect("discovery is bounded by its timeouts");
        let _ = std::fs::remove_dir_all(&tmp);
        (d, tmp.join("cg"))
    }

    /// A server name that does not resolve (`.invalid` never does, RFC 6761) is an unreachable
    /// server: discovery falls back to the cgroup scan and says the lookup failed.
    #[tokio::test]
    async fn unresolvable_server_name_falls_back() {
        let server = "http://podnet-no-such-host.invalid:6443";
        let (d, root) = discover_at(server, "nodns").await;
        let d = d.unwrap();
        assert_eq!(d.source, Source::CgroupScan { root });
        let w = &d.warnings[0];
        assert!(
            w.starts_with(&format!(
                "cannot reach the Kubernetes API server at {server} ("
            )),
            "{w}"
        );
        // A resolver that never answers ends in the connect timeout instead.
        assert!(
            w.contains("(DNS lookup failed: dns error: ") || w.contains("(timed out"),
            "{w}"
        );
    }

    /// A TLS failure is a connect error too, but the server was reached: with a server name that
    /// resolves it stays an error, not a fallback (the DNS check must not swallow it).
    #[tokio::test]
    async fn tls_failure_to_a_resolvable_name_is_an_error() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                use std::io::{Read, Write};
                let Ok(mut conn) = conn else { return };
                let mut buf = [0u8; 1024];
                let _ = conn.read(&mut buf);
                let _ = conn.write_all(b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\n\r\n");
            }
        });
        let server = format!("https://localhost:{port}");
        let (d, _) = discover_at(&server, "tls-name").await;
        match d {
            Err(DiscoverError::Transport { server: got, .. }) => assert_eq!(got, server),
            other => panic!("expected Transport, got {other:?}"),
        }
    }
}
