//! Reading an HTTP endpoint on 127.0.0.1 the way the tests and benchmarks scrape the agent (and a
//! Prometheus): one HTTP/1.0 GET, so no answer comes chunked, and per-pod values out of a
//! Prometheus text page.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

/// GET `path` on 127.0.0.1:`port` over HTTP/1.0 with an optional `Accept` header; the status and
/// the body. Reads time out after 10 s.
pub fn get(port: u16, path: &str, accept: Option<&str>) -> std::io::Result<(u16, String)> {
    let mut s = TcpStream::connect(("127.0.0.1", port))?;
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    let accept = accept
        .map(|a| format!("Accept: {a}\r\n"))
        .unwrap_or_default();
    write!(s, "GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n{accept}\r\n")?;
    let mut raw = String::new();
    s.read_to_string(&mut raw)?;
    let status = raw
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = raw.split_once("\r\n\r\n").map(|(_, b)| b).unwrap_or("");
    Ok((status, body.to_string()))
}

/// The value of `metric` for the pod `ns/pod` in a Prometheus text page, if it has that series.
///
/// # Panics
/// When the series' value is not an unsigned integer (podnet's per-pod series are counts).
pub fn pod_metric(text: &str, metric: &str, ns: &str, pod: &str) -> Option<u64> {
    let prefix = format!("{metric}{{namespace=\"{ns}\",pod=\"{pod}\"}} ");
    text.lines().find_map(|l| l.strip_prefix(&prefix)).map(|v| {
        v.trim()
            .parse()
            .unwrap_or_else(|_| panic!("{metric} of {ns}/{pod} is not a count: {v:?}"))
    })
}
