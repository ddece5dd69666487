//! `podnet agent` and a real Prometheus: `promtool check metrics` accepts a real /metrics scrape,
//! and a Prometheus started here (127.0.0.1, a free port, a temporary config and data dir, a 1 s
//! scrape interval) scrapes the agent; a query through its HTTP API returns the exact number of
//! datagrams sent, and every query of k8s/dashboard.json evaluates without error.
//!
//! promtool and prometheus come from Debian's `prometheus` package (`make deps`).

mod common;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::agent::{free_port, pair, try_get_accepting, Agent, PinDir};
use common::{Cluster, NODE};
use podnet_testing::sandbox::{require_privileges, skip};
use serde_json::Value;

fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

fn tool(name: &str) -> Option<PathBuf> {
    ["/usr/bin", "/usr/local/bin", "/bin"]
        .iter()
        .map(|d| Path::new(d).join(name))
        .find(|p| p.is_file())
}

/// A child process killed on drop, its output in a log file removed with it.
struct Proc {
    child: std::cell::RefCell<Child>,
    log: PathBuf,
    what: &'static str,
}

impl Proc {
    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn check_alive(&self) {
        if let Some(st) = self.child.borrow_mut().try_wait().unwrap() {
            panic!("{} exited ({st}):\n{}", self.what, self.log());
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let child = self.child.get_mut();
        let _ = child.kill();
        let _ = child.wait();
        let _ = std::fs::remove_file(&self.log);
    }
}

fn spawn(what: &'static str, cmd: &mut Command) -> Proc {
    let log = std::env::temp_dir().join(format!(
        "podnet-prom-{what}-{}-{}.log",
        std::process::id(),
        free_port()
    ));
    let child = cmd
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&log).unwrap())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap_or_else(|e| panic!("starting {what}: {e}"));
    Proc {
        child: std::cell::RefCell::new(child),
        log,
        what,
    }
}

/// Waits (bounded) for `f` to return `Some`.
fn wait_for<T>(
    secs: u64,
    what: &str,
    mut f: impl FnMut() -> Option<T>,
    log: impl Fn() -> String,
) -> T {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "{what}: not within {secs} s:\n{}",
            log()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// The value of an instant query that returns one sample.
fn query(port: u16, q: &str) -> Result<Option<String>, String> {
    let (status, body) =
        try_get_accepting(port, &format!("/api/v1/query?query={}", urlencode(q)), None)
            .map_err(|e| e.to_string())?;
    let v: Value = serde_json::from_str(&body).map_err(|e| format!("{status} {e}: {body}"))?;
    if v["status"] != "success" {
        return Err(format!("{q}: {body}"));
    }
    Ok(v["data"]["result"][0]["value"][1]
        .as_str()
        .map(String::from))
}

#[test]
fn promtool_accepts_the_scrape_and_prometheus_counts_the_datagrams_exactly() {
    let test = "promtool_accepts_the_scrape_and_prometheus_counts_the_datagrams_exactly";
    if !require_privileges(test) {
        return;
    }
    let (Some(promtool), Some(prometheus)) = (tool("promtool"), tool("prometheus")) else {
        skip(
            test,
            "promtool/prometheus not installed: `make deps` installs Debian's prometheus",
        );
        return;
    };

    // Two sandbox pods, the agent following them.
    let mut c = Cluster::new("agent-prom");
    let p = pair(&mut c, "prom");
    let pins = PinDir::new("prom");
    let mut agent = Agent::start(&c, &pins);
    agent.wait_ready();
    let agent_port = agent.port;

    // Exactly n datagrams of `size` bytes from a to b.
    let (n, size) = (57u64, 321u64);
    p.udp(9420, n, size);
    let want_tx = format!(
        "podnet_pod_network_transmit_packets_total{{namespace=\"shop\",pod=\"prom-a\"}} {n}\n"
    );
    let text = agent.wait_metrics("the datagrams in /metrics", |t| t.contains(&want_tx));

    // promtool lints the text format (it has no OpenMetrics parser: `# EOF` is an error to it;
    // the OpenMetrics answer is parsed by the Prometheus below, which asks for it).
    let mut lint = Command::new(&promtool)
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    lint.stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = lint.wait_with_output().unwrap();
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    // Lint findings are printed with exit 1; none are expected.
    assert!(
        out.status.success() && said.trim().is_empty(),
        "promtool check metrics: {}\n{said}\n---\n{text}",
        out.status
    );
    let (_, om) = try_get_accepting(
        agent_port,
        "/metrics",
        Some("application/openmetrics-text; version=1.0.0"),
    )
    .unwrap();
    assert!(om.ends_with("# EOF\n"), "{om}");

    // A real Prometheus scraping the agent every second.
    let dir = tempfile::tempdir().unwrap();
    let prom_port = free_port();
    let config = dir.path().join("prometheus.yml");
    std::fs::write(
        &config,
        format!(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nscrape_configs:\n  \
             - job_name: podnet\n    metrics_path: {}\n    static_configs:\n      \
             - targets: ['127.0.0.1:{agent_port}']\n        labels: {{node: '{NODE}'}}\n",
            podnet::agent::http::METRICS
        ),
    )
    .unwrap();
    let prom = spawn(
        "prometheus",
        Command::new(&prometheus)
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{prom_port}")),
    );
    let q = "podnet_pod_network_transmit_packets_total{namespace=\"shop\",pod=\"prom-a\"}";
    let got = wait_for(
        60,
        "Prometheus to have scraped the datagrams",
        || {
            prom.check_alive();
            query(prom_port, q)
                .ok()
                .flatten()
                .filter(|v| v == &n.to_string())
        },
        || format!("last answer: {:?}\n{}", query(prom_port, q), prom.log()),
    );
    assert_eq!(got, n.to_string());
    let bytes = n * (size + 28);
    for (q, want) in [
        (
            "podnet_pod_network_receive_packets_total{namespace=\"shop\",pod=\"prom-b\"}",
            n,
        ),
        (
            "podnet_pod_network_receive_bytes_total{namespace=\"shop\",pod=\"prom-b\"}",
            bytes,
        ),
        (
            "podnet_pod_network_transmit_bytes_total{namespace=\"shop\",pod=\"prom-a\"}",
            bytes,
        ),
        (
            "podnet_pod_sockets_created_total{namespace=\"shop\",pod=\"prom-a\"}",
            1,
        ),
        ("sum(podnet_tracked_pods)", 2),
    ] {
        assert_eq!(query(prom_port, q).unwrap(), Some(want.to_string()), "{q}");
    }
    // The target is healthy (the scrape itself, format negotiation included, worked).
    assert_eq!(
        query(prom_port, "up{job=\"podnet\"}").unwrap(),
        Some("1".into())
    );

    // Every query of the Grafana dashboard evaluates (Grafana's variables filled in).
    let dash: Value = serde_json::from_str(
        &std::fs::read_to_string(
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../k8s/dashboard.json"),
        )
        .unwrap(),
    )
    .unwrap();
    let mut exprs = Vec::new();
    collect_exprs(&dash, &mut exprs);
    assert!(!exprs.is_empty());
    for e in exprs {
        let q = e
            .replace("$__rate_interval", "10s")
            .replace("$__range", "1m")
            .replace("$topk", "10")
            .replace("$namespace", ".*");
        if let Err(err) = query(prom_port, &q) {
            panic!("dashboard query does not evaluate: {err}");
        }
    }
    drop(prom);
    drop(agent);
}

fn collect_exprs(v: &Value, out: &mut Vec<String>) {
    match v {
        Value::Object(m) => {
            for (k, v) in m {
                match (k.as_str(), v) {
                    ("expr", Value::String(s)) => out.push(s.clone()),
                    _ => collect_exprs(v, out),
                }
            }
        }
        Value::Array(a) => a.iter().for_each(|v| collect_exprs(v, out)),
        _ => {}
    }
}
