//! The sandbox behind `make demo`: four pods in four different kubelet cgroup layouts, joined by
//! network namespaces and veth pairs, with load running in their containers, served to podnet by a
//! stub API server.
//!
//! | pod | QoS | cgroup layout | network |
//! |---|---|---|---|
//! | `shop/web-0` (containers `web`, `sidecar`) | Burstable | systemd driver + containerd | own netns |
//! | `shop/db-0` (container `postgres`) | Guaranteed | cgroupfs driver + containerd | own netns |
//! | `batch/report-7d9f` (container `report`) | BestEffort | systemd driver + CRI-O (with conmon) | own netns |
//! | `kube-system/node-agent` (container `agent`) | Burstable | systemd driver + Docker | hostNetwork |
//!
//! `web-0` and `db-0` exchange UDP datagrams; `report-7d9f` runs one TCP query against `db-0` and
//! a batch of file opens (some failing) every second; `node-agent` runs in the host network
//! namespace and pushes datagrams to `web-0`'s sidecar through a veth pair whose other end is in
//! the host. Every container also churns sockets, opens files and holds memory (see
//! [`DemoSandbox::describe`] for the rates). Everything stops by itself after
//! [`DemoConfig::traffic`], and [`DemoSandbox`]'s `Drop` removes it all earlier.
//!
//! The API server also lists a Pending pod scheduled to the node (no cgroup yet: podnet warns about
//! it) and a pod on another node (podnet must not ask for it).
//!
//! ```no_run
//! use podnet_testing::demo::{DemoConfig, DemoSandbox};
//! # fn main() -> anyhow::Result<()> {
//! let demo = DemoSandbox::setup(&DemoConfig::default())?;
//! println!("{}", demo.describe());
//! // run `podnet stats --kubeconfig <demo.kubeconfig()> --node demo-node` ...
//! let made = demo.resources().clone();
//! drop(demo);
//! assert!(made.existing().is_empty());
//! # Ok(()) }
//! ```

use std::fmt::Write as _;
use std::fs;
use std::net::Ipv4Addr;
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use serde_json::{json, Value};

use crate::apiserver::{pod_json, StubApiServer};
use crate::sandbox::{
    new_container_id, new_uid, CgroupTree, Layout, NetNs, Qos, SandboxContainer, SandboxPod, Veth,
    Workload,
};

/// The node the demo's pods are scheduled to.
pub const DEMO_NODE: &str = "demo-node";

/// The node of the pod podnet must filter out.
pub const OTHER_NODE: &str = "other-node";

/// `web`: UDP datagrams per second to `db-0`, and their payload size.
pub const WEB_UDP_RATE: u64 = 200;
/// Payload bytes of each datagram `web` sends.
pub const WEB_UDP_SIZE: u64 = 512;
/// `postgres`: UDP datagrams per second back to `web-0`.
pub const DB_UDP_RATE: u64 = 100;
/// Payload bytes of each datagram `postgres` sends.
pub const DB_UDP_SIZE: u64 = 1400;
/// `agent` (hostNetwork): datagrams per second to `web-0`'s sidecar.
pub const AGENT_UDP_RATE: u64 = 20;
/// Payload bytes of each datagram `agent` sends.
pub const AGENT_UDP_SIZE: u64 = 1200;
/// Bytes of each TCP query `report` sends to `db-0`.
pub const TCP_REQUEST: u64 = 2048;
/// Bytes of each TCP answer `db-0` sends back.
pub const TCP_REPLY: u64 = 256 * 1024;
/// Successful file opens per round of `report`.
pub const REPORT_OPENS: u64 = 100;
/// Failing file opens (ENOENT) per round of `report`.
pub const REPORT_MISSING: u64 = 10;
/// How often `report` runs its TCP query and its file opens.
pub const ROUND_PERIOD: Duration = Duration::from_secs(1);

/// IP and UDP header bytes on top of a UDP/IPv4 payload, as podnet counts bytes.
const UDP_IP_OVERHEAD: u64 = 28;

/// Ports used inside the sandbox.
const DB_UDP_PORT: u16 = 9000;
const WEB_UDP_PORT: u16 = 9001;
const SIDECAR_UDP_PORT: u16 = 9100;
const DB_TCP_PORT: u16 = 5432;

/// What the demo sandbox looks like.
#[derive(Debug, Clone)]
pub struct DemoConfig {
    /// The node name the pods are scheduled to (`spec.nodeName`).
    pub node: String,
    /// How long the load runs; every workload stops by itself after this, even when the process
    /// that set the sandbox up was killed.
    pub traffic: Duration,
}

impl Default for DemoConfig {
    fn default() -> Self {
        DemoConfig {
            node: DEMO_NODE.to_string(),
            traffic: Duration::from_secs(60),
        }
    }
}

/// One pod of the demo.
#[derive(Debug, Clone)]
pub struct DemoPod {
    /// `metadata.namespace`.
    pub namespace: &'static str,
    /// `metadata.name`.
    pub name: &'static str,
    /// The cgroup layout in words, e.g. `systemd driver + containerd`.
    pub setup: &'static str,
    /// The pod's network namespace (`None`: hostNetwork, the host's namespace).
    pub netns: Option<String>,
    /// The pod's cgroup directories.
    pub sandbox: SandboxPod,
    /// One line per container: its name and the load it generates.
    pub load: Vec<(String, String)>,
}

/// A network link made by the demo: its interface name and the namespace it lives in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LinkRef {
    /// Network namespace name (`None`: the host namespace).
    pub netns: Option<String>,
    /// Interface name.
    pub name: String,
}

/// Everything the demo sandbox creates outside its own process, by name, so a check after
/// teardown can tell whether any of it is left.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Resources {
    /// Network namespaces (`ip netns list` names).
    pub netns: Vec<String>,
    /// Both ends of every veth pair.
    pub links: Vec<LinkRef>,
    /// Cgroup directories: the tree root in the cgroup v2 mount and its v1 memory twin.
    pub cgroup_dirs: Vec<PathBuf>,
    /// The long-running `podnet-sandbox` workload processes.
    pub pids: Vec<u32>,
    /// Files and directories (the kubeconfig's temporary directory).
    pub paths: Vec<PathBuf>,
}

impl Resources {
    /// How many objects are listed.
    pub fn count(&self) -> usize {
        self.netns.len()
            + self.links.len()
            + self.cgroup_dirs.len()
            + self.pids.len()
            + self.paths.len()
    }

    /// The listed objects that exist right now, described (`netns podnet-demo-web-12-0`,
    /// `veth pn-0a1c-b in the host namespace`, `cgroup /sys/fs/cgroup/...`, `process 123
    /// (podnet-sandbox)`, `path /tmp/...`). Empty after a complete teardown.
    pub fn existing(&self) -> Vec<String> {
        let mut out = Vec::new();
        for ns in &self.netns {
            if Path::new("/run/netns").join(ns).exists() {
                out.push(format!("netns {ns}"));
            }
        }
        for link in &self.links {
            // A leaked end in the host namespace is what matters most; look there for every name.
            if Path::new("/sys/class/net").join(&link.name).exists() {
                out.push(format!("veth {} in the host namespace", link.name));
                continue;
            }
            if let Some(ns) = &link.netns {
                if Path::new("/run/netns").join(ns).exists() && link_in_netns(ns, &link.name) {
                    out.push(format!("veth {} in netns {ns}", link.name));
                }
            }
        }
        for dir in &self.cgroup_dirs {
            if dir.exists() {
                out.push(format!("cgroup {}", dir.display()));
            }
        }
        for pid in &self.pids {
            let cmdline = fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
            if String::from_utf8_lossy(&cmdline).contains("podnet-sandbox") {
                out.push(format!("process {pid} (podnet-sandbox)"));
            }
        }
        for path in &self.paths {
            if path.exists() {
                out.push(format!("path {}", path.display()));
            }
        }
        out
    }

    /// The list as JSON (`podnet-demo --manifest FILE` writes it).
    pub fn to_json(&self) -> Value {
        json!({
            "netns": self.netns,
            "links": self.links.iter().map(|l| json!({"netns": l.netns, "name": l.name})).collect::<Vec<_>>(),
            "cgroupDirs": self.cgroup_dirs,
            "pids": self.pids,
            "paths": self.paths,
        })
    }

    /// Reads what [`Resources::to_json`] wrote.
    pub fn from_json(v: &Value) -> Result<Resources> {
        let strings = |key: &str| -> Result<Vec<String>> {
            v[key]
                .as_array()
                .ok_or_else(|| anyhow!("resources: {key} is not an array"))?
                .iter()
                .map(|s| {
                    s.as_str()
                        .map(str::to_string)
                        .ok_or_else(|| anyhow!("resources: {key} holds a non-string"))
                })
                .collect()
        };
        let links = v["links"]
            .as_array()
            .ok_or_else(|| anyhow!("resources: links is not an array"))?
            .iter()
            .map(|l| {
                Ok(LinkRef {
                    netns: l["netns"].as_str().map(str::to_string),
                    name: l["name"]
                        .as_str()
                        .ok_or_else(|| anyhow!("resources: a link has no name"))?
                        .to_string(),
                })
            })
            .collect::<Result<Vec<_>>>()?;
        let pids = v["pids"]
            .as_array()
            .ok_or_else(|| anyhow!("resources: pids is not an array"))?
            .iter()
            .map(|p| {
                p.as_u64()
                    .and_then(|p| u32::try_from(p).ok())
                    .ok_or_else(|| anyhow!("resources: bad pid {p}"))
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Resources {
            netns: strings("netns")?,
            links,
            cgroup_dirs: strings("cgroupDirs")?
                .into_iter()
                .map(PathBuf::from)
                .collect(),
            pids,
            paths: strings("paths")?.into_iter().map(PathBuf::from).collect(),
        })
    }
}

fn link_in_netns(ns: &str, name: &str) -> bool {
    Command::new("ip")
        .args(["-n", ns, "link", "show", "dev", name])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false)
}

/// What the periodic TCP queries and file-open batches did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DriverReport {
    /// Completed TCP queries `report-7d9f` → `db-0` (each one connection, [`TCP_REQUEST`] bytes
    /// up and [`TCP_REPLY`] bytes down).
    pub tcp_queries: u64,
    /// Completed batches of [`REPORT_OPENS`] + [`REPORT_MISSING`] opens in `report-7d9f`.
    pub open_batches: u64,
    /// Rounds that failed, with the reason (empty when all went well).
    pub errors: Vec<String>,
}

/// A temporary directory removed with its contents on drop.
#[derive(Debug)]
struct TempDir(PathBuf);

static TEMP_COUNTER: AtomicU32 = AtomicU32::new(0);

impl TempDir {
    /// `<tmp>/podnet-demo-<pid>-<n>`, mode 0700; stale ones of dead processes are removed first.
    fn new() -> Result<TempDir> {
        let tmp = std::env::temp_dir();
        let me = std::process::id();
        if let Ok(rd) = fs::read_dir(&tmp) {
            for e in rd.flatten() {
                let name = e.file_name().to_string_lossy().into_owned();
                if temp_dir_owner(&name)
                    .is_some_and(|pid| pid != me && !Path::new(&format!("/proc/{pid}")).exists())
                {
                    let _ = fs::remove_dir_all(e.path());
                }
            }
        }
        let n = TEMP_COUNTER.fetch_add(1, Ordering::Relaxed);
        let dir = tmp.join(format!("podnet-demo-{me}-{n}"));
        if dir.exists() {
            fs::remove_dir_all(&dir)
                .with_context(|| format!("cannot remove old {}", dir.display()))?;
        }
        fs::DirBuilder::new()
            .mode(0o700)
            .create(&dir)
            .with_context(|| format!("cannot create {}", dir.display()))?;
        Ok(TempDir(dir))
    }
}

/// The pid in a temporary directory name `podnet-demo-<pid>-<n>`.
fn temp_dir_owner(name: &str) -> Option<u32> {
    let (pid, n) = name.strip_prefix("podnet-demo-")?.split_once('-')?;
    if n.is_empty() || !n.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    pid.parse().ok()
}

impl Drop for TempDir {
    fn drop(&mut self) {
        if let Err(e) = fs::remove_dir_all(&self.0) {
            if e.kind() != std::io::ErrorKind::NotFound {
                eprintln!("podnet-testing: could not remove {}: {e}", self.0.display());
            }
        }
    }
}

/// The running demo sandbox. `Drop` stops the load and removes everything: processes, veth
/// pairs, network namespaces, cgroup directories (v2 and v1 memory), the stub API server and the
/// kubeconfig file.
pub struct DemoSandbox {
    // Fields drop in this order, after `Drop::drop` has stopped the driver thread.
    workloads: Vec<(String, Workload)>,
    veths: Vec<Veth>,
    netns: Vec<Arc<NetNs>>,
    pods: Vec<DemoPod>,
    tree: CgroupTree,
    server: StubApiServer,
    dir: TempDir,
    kubeconfig: PathBuf,
    driver: Option<JoinHandle<DriverReport>>,
    stop: Arc<AtomicBool>,
    resources: Resources,
    config: DemoConfig,
    started: Instant,
    addrs: Addrs,
}

impl std::fmt::Debug for DemoSandbox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DemoSandbox")
            .field("api_server", &self.server.url())
            .field("kubeconfig", &self.kubeconfig)
            .field("tree", &self.tree)
            .field("resources", &self.resources)
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

/// The sandbox addresses, for descriptions.
#[derive(Debug, Clone, Copy)]
struct Addrs {
    web: Ipv4Addr,
    db: Ipv4Addr,
    web_from_host: Ipv4Addr,
    db_from_report: Ipv4Addr,
}

impl DemoSandbox {
    /// Creates the whole sandbox and starts the load: a [`CgroupTree`] labelled `demo` with the
    /// four pods, three network namespaces, three veth pairs (one to the host), five
    /// `podnet-sandbox demo` workloads, the periodic TCP/open driver, the stub API server and a
    /// kubeconfig pointing at it. Needs root. On error, whatever was made is removed again.
    pub fn setup(config: &DemoConfig) -> Result<DemoSandbox> {
        let dir = TempDir::new()?;
        let tree = CgroupTree::new("demo")?;

        let web_ids = (new_container_id(), new_container_id());
        let web = SandboxPod::create(
            &tree,
            Layout::SystemdContainerd,
            &new_uid(),
            Qos::Burstable,
            &[("web", &web_ids.0), ("sidecar", &web_ids.1)],
        )?;
        let db = SandboxPod::create(
            &tree,
            Layout::Cgroupfs,
            &new_uid(),
            Qos::Guaranteed,
            &[("postgres", &new_container_id())],
        )?;
        let report = SandboxPod::create(
            &tree,
            Layout::SystemdCrio,
            &new_uid(),
            Qos::BestEffort,
            &[("report", &new_container_id())],
        )?;
        let agent = SandboxPod::create(
            &tree,
            Layout::SystemdDocker,
            &new_uid(),
            Qos::Burstable,
            &[("agent", &new_container_id())],
        )?;

        let web_ns = Arc::new(NetNs::new("demo-web")?);
        let db_ns = Arc::new(NetNs::new("demo-db")?);
        let report_ns = Arc::new(NetNs::new("demo-report")?);
        let web_db = Veth::between(&web_ns, &db_ns)?;
        let report_db = Veth::between(&report_ns, &db_ns)?;
        let web_host = Veth::to_host(&web_ns)?;
        let addrs = Addrs {
            web: web_db.addr_a(),
            db: web_db.addr_b(),
            web_from_host: web_host.addr_a(),
            db_from_report: report_db.addr_b(),
        };

        let traffic = config.traffic.as_secs_f64();
        if !(traffic > 0.0 && traffic <= 86_400.0) {
            bail!("demo traffic duration {traffic}s must be in (0, 86400] seconds");
        }
        let secs = format!("{traffic:.3}");
        let open_path = ["/etc/os-release", "/proc/self/status"]
            .into_iter()
            .find(|p| Path::new(p).exists())
            .unwrap_or("/proc/self/status");
        let c = |pod: &SandboxPod, name: &str| -> Result<SandboxContainer> {
            pod.container(name)
                .cloned()
                .ok_or_else(|| anyhow!("internal error: no container {name}"))
        };
        let n = |v: u64| v.to_string();
        let specs: Vec<(String, Vec<String>, Option<&NetNs>, SandboxContainer)> = vec![
            (
                "shop/web-0/web".into(),
                demo_args(
                    &secs,
                    &[
                        ("to", format!("{}:{DB_UDP_PORT}", addrs.db)),
                        ("rate", n(WEB_UDP_RATE)),
                        ("size", n(WEB_UDP_SIZE)),
                        ("bind", format!("{}:{WEB_UDP_PORT}", addrs.web)),
                        ("sockets-per-sec", "10".into()),
                        ("opens-per-sec", "20".into()),
                        ("open-path", open_path.into()),
                        ("mib", "24".into()),
                    ],
                ),
                Some(&*web_ns),
                c(&web, "web")?,
            ),
            (
                "shop/web-0/sidecar".into(),
                demo_args(
                    &secs,
                    &[
                        (
                            "bind",
                            format!("{}:{SIDECAR_UDP_PORT}", addrs.web_from_host),
                        ),
                        ("sockets-per-sec", "0".into()),
                        ("opens-per-sec", "5".into()),
                        ("open-path", open_path.into()),
                        ("mib", "8".into()),
                    ],
                ),
                Some(&*web_ns),
                c(&web, "sidecar")?,
            ),
            (
                "shop/db-0/postgres".into(),
                demo_args(
                    &secs,
                    &[
                        ("to", format!("{}:{WEB_UDP_PORT}", addrs.web)),
                        ("rate", n(DB_UDP_RATE)),
                        ("size", n(DB_UDP_SIZE)),
                        ("bind", format!("{}:{DB_UDP_PORT}", addrs.db)),
                        ("sockets-per-sec", "2".into()),
                        ("opens-per-sec", "50".into()),
                        ("open-path", open_path.into()),
                        ("mib", "64".into()),
                    ],
                ),
                Some(&*db_ns),
                c(&db, "postgres")?,
            ),
            (
                "batch/report-7d9f/report".into(),
                demo_args(
                    &secs,
                    &[
                        ("sockets-per-sec", "0".into()),
                        ("opens-per-sec", "0".into()),
                        ("mib", "48".into()),
                    ],
                ),
                Some(&*report_ns),
                c(&report, "report")?,
            ),
            (
                "kube-system/node-agent/agent".into(),
                demo_args(
                    &secs,
                    &[
                        ("to", format!("{}:{SIDECAR_UDP_PORT}", addrs.web_from_host)),
                        ("rate", n(AGENT_UDP_RATE)),
                        ("size", n(AGENT_UDP_SIZE)),
                        ("sockets-per-sec", "1".into()),
                        ("opens-per-sec", "100".into()),
                        ("open-path", "/proc/self/status".into()),
                        ("mib", "12".into()),
                    ],
                ),
                None,
                c(&agent, "agent")?,
            ),
        ];
        let mut workloads = Vec::new();
        for (label, args, ns, container) in &specs {
            let mut w = Workload::spawn_in(args, *ns, container)
                .with_context(|| format!("starting the load of {label}"))?;
            // The result line comes after the whole run.
            w.set_timeout(config.traffic + Duration::from_secs(20));
            workloads.push((label.clone(), w));
        }
        for (label, w) in &mut workloads {
            w.wait_ready()
                .with_context(|| format!("starting the load of {label}"))?;
        }
        for (label, w) in &mut workloads {
            w.go()
                .with_context(|| format!("starting the load of {label}"))?;
        }
        let started = Instant::now();

        let stop = Arc::new(AtomicBool::new(false));
        let driver = Driver {
            stop: Arc::clone(&stop),
            deadline: started + config.traffic,
            db_ns: Arc::clone(&db_ns),
            report_ns: Arc::clone(&report_ns),
            db: c(&db, "postgres")?,
            report: c(&report, "report")?,
            db_addr: addrs.db_from_report,
            open_path: open_path.to_string(),
        };
        let driver = std::thread::Builder::new()
            .name("demo-driver".into())
            .spawn(move || driver.run())
            .context("cannot start the demo's load driver thread")?;

        let load = |v: &[(&str, String)]| -> Vec<(String, String)> {
            v.iter().map(|(c, l)| (c.to_string(), l.clone())).collect()
        };
        let udp = |rate: u64, size: u64| format_rate(rate * (size + UDP_IP_OVERHEAD));
        let tcp_reply = format_rate(tcp_wire_bytes(TCP_REPLY) / ROUND_PERIOD.as_secs().max(1));
        let pods = vec![
            DemoPod {
                namespace: "shop",
                name: "web-0",
                setup: "systemd driver + containerd",
                netns: Some(web_ns.name().to_string()),
                load: load(&[
                    (
                        "web",
                        format!(
                            "sends {WEB_UDP_RATE} UDP datagrams/s of {WEB_UDP_SIZE} B to db-0 ({} out), \
                             gets db-0's answers ({} in)\n10 new sockets/s, 20 file opens/s, holds 24 MiB",
                            udp(WEB_UDP_RATE, WEB_UDP_SIZE),
                            udp(DB_UDP_RATE, DB_UDP_SIZE)
                        ),
                    ),
                    (
                        "sidecar",
                        format!(
                            "receives node-agent's {AGENT_UDP_RATE} datagrams/s of {AGENT_UDP_SIZE} B ({} in)\n\
                             5 file opens/s, holds 8 MiB",
                            udp(AGENT_UDP_RATE, AGENT_UDP_SIZE)
                        ),
                    ),
                ]),
                sandbox: web,
            },
            DemoPod {
                namespace: "shop",
                name: "db-0",
                setup: "cgroupfs driver + containerd",
                netns: Some(db_ns.name().to_string()),
                load: load(&[(
                    "postgres",
                    format!(
                        "answers web-0 with {DB_UDP_RATE} UDP datagrams/s of {DB_UDP_SIZE} B ({} out)\n\
                         accepts 1 TCP connection/s from report-7d9f and sends {} KiB back (about {tcp_reply} out)\n\
                         2 new sockets/s, 50 file opens/s, holds 64 MiB",
                        udp(DB_UDP_RATE, DB_UDP_SIZE),
                        TCP_REPLY / 1024
                    ),
                )]),
                sandbox: db,
            },
            DemoPod {
                namespace: "batch",
                name: "report-7d9f",
                setup: "systemd driver + CRI-O",
                netns: Some(report_ns.name().to_string()),
                load: load(&[(
                    "report",
                    format!(
                        "opens 1 TCP connection/s to db-0 and reads {} KiB (about {tcp_reply} in)\n\
                         {} file opens/s of which {} fail (no such file), holds 48 MiB",
                        TCP_REPLY / 1024,
                        REPORT_OPENS + REPORT_MISSING,
                        REPORT_MISSING
                    ),
                )]),
                sandbox: report,
            },
            DemoPod {
                namespace: "kube-system",
                name: "node-agent",
                setup: "systemd driver + Docker",
                netns: None,
                load: load(&[(
                    "agent",
                    format!(
                        "sends {AGENT_UDP_RATE} UDP datagrams/s of {AGENT_UDP_SIZE} B to web-0's sidecar \
                         through the host ({} out)\n1 new socket/s, 100 file opens/s, holds 12 MiB",
                        udp(AGENT_UDP_RATE, AGENT_UDP_SIZE)
                    ),
                )]),
                sandbox: agent,
            },
        ];

        let mut items: Vec<Value> = pods
            .iter()
            .map(|p| {
                let app = p.name.split('-').next().unwrap_or(p.name);
                let containers: Vec<(&str, String)> = p
                    .sandbox
                    .containers
                    .iter()
                    .map(|c| (c.name.as_str(), c.container_id()))
                    .collect();
                let containers: Vec<(&str, &str)> =
                    containers.iter().map(|(n, id)| (*n, id.as_str())).collect();
                pod_json(
                    p.namespace,
                    p.name,
                    &p.sandbox.uid,
                    &config.node,
                    "Running",
                    p.sandbox.qos.as_str(),
                    p.netns.is_none(),
                    &[("app", app)],
                    &containers,
                )
            })
            .collect();
        // Scheduled here, containers still being created: no cgroup yet.
        items.push(pod_json(
            "shop",
            "web-1",
            &new_uid(),
            &config.node,
            "Pending",
            "Burstable",
            false,
            &[("app", "web")],
            &[("web", ""), ("sidecar", "")],
        ));
        // Running elsewhere: a node-scoped list must not return it.
        items.push(pod_json(
            "shop",
            "web-2",
            &new_uid(),
            OTHER_NODE,
            "Running",
            "Burstable",
            false,
            &[("app", "web")],
            &[
                ("web", &format!("containerd://{}", new_container_id())),
                ("sidecar", &format!("containerd://{}", new_container_id())),
            ],
        ));
        let server = StubApiServer::start(items);
        let kubeconfig = dir.0.join("kubeconfig");
        server
            .write_kubeconfig(&kubeconfig, None)
            .with_context(|| format!("cannot write {}", kubeconfig.display()))?;

        let veths = vec![web_db, report_db, web_host];
        let netns = vec![web_ns, db_ns, report_ns];
        let resources = Resources {
            netns: netns.iter().map(|n| n.name().to_string()).collect(),
            links: veths
                .iter()
                .flat_map(|v| {
                    [
                        LinkRef {
                            netns: Some(v.netns_a().to_string()),
                            name: v.name_a().to_string(),
                        },
                        LinkRef {
                            netns: v.netns_b().map(str::to_string),
                            name: v.name_b().to_string(),
                        },
                    ]
                })
                .collect(),
            cgroup_dirs: std::iter::once(tree.root().to_path_buf())
                .chain(tree.memcg_root().map(Path::to_path_buf))
                .collect(),
            pids: workloads.iter().map(|(_, w)| w.pid()).collect(),
            paths: vec![dir.0.clone()],
        };
        Ok(DemoSandbox {
            workloads,
            veths,
            netns,
            pods,
            tree,
            server,
            dir,
            kubeconfig,
            driver: Some(driver),
            stop,
            resources,
            config: config.clone(),
            started,
            addrs,
        })
    }

    /// The kubeconfig file pointing at the stub API server (inside a temporary directory removed
    /// on drop).
    pub fn kubeconfig(&self) -> &Path {
        &self.kubeconfig
    }

    /// The node the pods are on.
    pub fn node(&self) -> &str {
        &self.config.node
    }

    /// The stub API server.
    pub fn api_server(&self) -> &StubApiServer {
        &self.server
    }

    /// The four pods with cgroups (the Pending pod and the other node's pod have none).
    pub fn pods(&self) -> &[DemoPod] {
        &self.pods
    }

    /// The cgroup tree the pods live in.
    pub fn tree(&self) -> &CgroupTree {
        &self.tree
    }

    /// Everything the sandbox made, by name (for checks after teardown).
    pub fn resources(&self) -> &Resources {
        &self.resources
    }

    /// When the load started; it ends [`DemoConfig::traffic`] later.
    pub fn started(&self) -> Instant {
        self.started
    }

    /// A few lines for people: where the pods live and what load each container generates.
    pub fn describe(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(
            s,
            "Sandbox pods on node {:?}, and the load in each container (rates count IP headers):",
            self.config.node
        );
        for p in &self.pods {
            let net = match &p.netns {
                Some(ns) => format!("netns {ns}"),
                None => "hostNetwork".to_string(),
            };
            let _ = writeln!(
                s,
                "  {}/{}  {} QoS, {}, {net}",
                p.namespace,
                p.name,
                p.sandbox.qos.as_str(),
                p.setup
            );
            for (c, load) in &p.load {
                for (i, line) in load.lines().enumerate() {
                    let name = if i == 0 { c.as_str() } else { "" };
                    let _ = writeln!(s, "    {name:<10}{line}");
                }
            }
        }
        let _ = writeln!(
            s,
            "The stub API server {} also lists shop/web-1, Pending on {} with no cgroup yet (podnet\n\
             warns about it), and shop/web-2 on {OTHER_NODE} (podnet asks only for {}'s pods: never shown).",
            self.server.url(),
            self.config.node,
            self.config.node
        );
        let _ = writeln!(s, "Cgroups under {}", self.tree.root().display());
        let _ = writeln!(
            s,
            "Addresses (198.18.0.0/15): web-0 {} and {} (from the host), db-0 {} and {} (from report-7d9f)",
            self.addrs.web,
            self.addrs.web_from_host,
            self.addrs.db,
            self.addrs.db_from_report
        );
        s
    }

    /// Stops the periodic TCP queries and file opens now and reports what they did (the
    /// `podnet-sandbox demo` workloads keep running until drop or their end). Later calls return
    /// an empty report.
    pub fn stop_driver(&mut self) -> DriverReport {
        self.stop.store(true, Ordering::SeqCst);
        self.join_driver()
    }

    /// Waits until the load has run its full [`DemoConfig::traffic`] and returns the driver's
    /// report and each workload's result line (keyed `namespace/pod/container`; fields `udpSent`,
    /// `udpReceived`, `socketsCreated`, `opens`, `bytesHeld`, `seconds`).
    pub fn wait_traffic(&mut self) -> Result<(DriverReport, Vec<(String, Value)>)> {
        let report = self.join_driver();
        let mut results = Vec::new();
        for (label, w) in &mut self.workloads {
            let v = w.result().with_context(|| format!("load of {label}"))?;
            results.push((label.clone(), v));
        }
        Ok((report, results))
    }

    fn join_driver(&mut self) -> DriverReport {
        match self.driver.take() {
            Some(h) => h.join().unwrap_or_else(|_| DriverReport {
                errors: vec!["the demo's load driver thread panicked".into()],
                ..DriverReport::default()
            }),
            None => DriverReport::default(),
        }
    }

    /// The veth pairs (web-0↔db-0, report-7d9f↔db-0, web-0↔host).
    pub fn veths(&self) -> &[Veth] {
        &self.veths
    }

    /// The network namespaces of web-0, db-0 and report-7d9f, in that order.
    pub fn netns(&self) -> Vec<&NetNs> {
        self.netns.iter().map(|n| &**n).collect()
    }

    /// The kubeconfig's temporary directory.
    pub fn temp_dir(&self) -> &Path {
        &self.dir.0
    }
}

impl Drop for DemoSandbox {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = self.join_driver();
        // The fields then drop in declaration order: workloads (killed), veth pairs, network
        // namespaces, cgroup tree (kills what is left and removes the directories), stub server,
        // temporary directory.
    }
}

fn demo_args(secs: &str, opts: &[(&str, String)]) -> Vec<String> {
    let mut v = vec![
        "demo".to_string(),
        "--seconds".to_string(),
        secs.to_string(),
    ];
    for (k, val) in opts {
        v.push(format!("--{k}"));
        v.push(val.clone());
    }
    v
}

/// `105.5 KiB/s`, `1.2 MiB/s`: binary units, as podnet prints them.
fn format_rate(bytes_per_sec: u64) -> String {
    let b = bytes_per_sec as f64;
    if b >= 1024.0 * 1024.0 {
        format!("{:.1} MiB/s", b / (1024.0 * 1024.0))
    } else if b >= 1024.0 {
        format!("{:.1} KiB/s", b / 1024.0)
    } else {
        format!("{bytes_per_sec} B/s")
    }
}

/// Roughly what `payload` bytes of one TCP transfer over a 1500-byte MTU veth amount to with
/// TCP/IP headers (1448-byte segments with timestamps, 52 header bytes each).
fn tcp_wire_bytes(payload: u64) -> u64 {
    payload + payload.div_ceil(1448) * 52
}

/// The periodic part of the load: every [`ROUND_PERIOD`], one TCP query from `report-7d9f` to
/// `db-0` and one batch of file opens in `report-7d9f`, each a fresh `podnet-sandbox` process.
struct Driver {
    stop: Arc<AtomicBool>,
    deadline: Instant,
    db_ns: Arc<NetNs>,
    report_ns: Arc<NetNs>,
    db: SandboxContainer,
    report: SandboxContainer,
    db_addr: Ipv4Addr,
    open_path: String,
}

impl Driver {
    fn stopping(&self) -> bool {
        self.stop.load(Ordering::SeqCst) || Instant::now() >= self.deadline
    }

    fn run(self) -> DriverReport {
        let mut report = DriverReport::default();
        while !self.stopping() {
            let tick = Instant::now();
            match self.tcp_query() {
                Ok(()) => report.tcp_queries += 1,
                // Stopping kills processes mid-round: not an error of the load.
                Err(_) if self.stop.load(Ordering::SeqCst) => break,
                Err(e) => report
                    .errors
                    .push(format!("TCP query report-7d9f -> db-0: {e:#}")),
            }
            if self.stopping() {
                break;
            }
            match self.open_batch() {
                Ok(()) => report.open_batches += 1,
                Err(_) if self.stop.load(Ordering::SeqCst) => break,
                Err(e) => report
                    .errors
                    .push(format!("file opens in report-7d9f: {e:#}")),
            }
            while !self.stopping() && tick.elapsed() < ROUND_PERIOD {
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        report
    }

    fn tcp_query(&self) -> Result<()> {
        let to = format!("{}:{DB_TCP_PORT}", self.db_addr);
        let (req, reply) = (TCP_REQUEST.to_string(), TCP_REPLY.to_string());
        let mut server = Workload::spawn_in(
            &[
                "tcp-server",
                "--bind",
                &to,
                "--reply",
                &reply,
                "--expect",
                &req,
                "--timeout-ms",
                "5000",
            ],
            Some(&self.db_ns),
            &self.db,
        )?;
        server.set_timeout(Duration::from_secs(10));
        server.wait_ready()?;
        let mut client = Workload::spawn_in(
            &[
                "tcp-client",
                "--to",
                &to,
                "--bytes",
                &req,
                "--expect",
                &reply,
                "--timeout-ms",
                "5000",
            ],
            Some(&self.report_ns),
            &self.report,
        )?;
        client.set_timeout(Duration::from_secs(10));
        client.wait_ready()?;
        server.go()?;
        client.go()?;
        let c = client.result()?;
        let s = server.result()?;
        if c["received"].as_u64() != Some(TCP_REPLY) || s["received"].as_u64() != Some(TCP_REQUEST)
        {
            bail!("short exchange: client {c}, server {s}");
        }
        // The client closes first, so the server's port is free again at once.
        client.release()?;
        server.release()?;
        Ok(())
    }

    fn open_batch(&self) -> Result<()> {
        let (count, missing) = (REPORT_OPENS.to_string(), REPORT_MISSING.to_string());
        let mut w = Workload::spawn_in(
            &[
                "open",
                "--path",
                &self.open_path,
                "--count",
                &count,
                "--missing",
                &missing,
            ],
            Some(&self.report_ns),
            &self.report,
        )?;
        w.set_timeout(Duration::from_secs(10));
        w.go()?;
        let v = w.result()?;
        if v["opened"].as_u64() != Some(REPORT_OPENS)
            || v["failed"].as_u64() != Some(REPORT_MISSING)
        {
            bail!("unexpected open results {v}");
        }
        let status = w.wait_exit()?;
        if !status.success() {
            bail!("podnet-sandbox open exited with {status}");
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_are_formatted_in_binary_units_like_podnet() {
        assert_eq!(format_rate(999), "999 B/s");
        assert_eq!(
            format_rate(WEB_UDP_RATE * (WEB_UDP_SIZE + UDP_IP_OVERHEAD)),
            "105.5 KiB/s"
        );
        assert_eq!(format_rate(3 * 1024 * 1024 / 2), "1.5 MiB/s");
        assert_eq!(tcp_wire_bytes(TCP_REPLY), 262_144 + 182 * 52);
    }

    #[test]
    fn temp_dirs_name_their_owner() {
        assert_eq!(temp_dir_owner("podnet-demo-1234-0"), Some(1234));
        assert_eq!(temp_dir_owner("podnet-demo-1234"), None);
        assert_eq!(temp_dir_owner("podnet-demo-test-bin-1234"), None);
        assert_eq!(temp_dir_owner("podnet-demo-x-1"), None);
    }

    #[test]
    fn demo_args_are_flag_value_pairs() {
        assert_eq!(
            demo_args("2.000", &[("rate", "5".into()), ("mib", "1".into())]),
            ["demo", "--seconds", "2.000", "--rate", "5", "--mib", "1"]
        );
    }

    #[test]
    fn resources_round_trip_through_json() {
        let r = Resources {
            netns: vec!["podnet-demo-web-1-0".into()],
            links: vec![
                LinkRef {
                    netns: Some("podnet-demo-web-1-0".into()),
                    name: "pn-0001-a".into(),
                },
                LinkRef {
                    netns: None,
                    name: "pn-0001-b".into(),
                },
            ],
            cgroup_dirs: vec![PathBuf::from("/sys/fs/cgroup/unified/podnet-test-demo-1-0")],
            pids: vec![42, 43],
            paths: vec![PathBuf::from("/tmp/podnet-demo-1")],
        };
        assert_eq!(r.count(), 7);
        assert_eq!(Resources::from_json(&r.to_json()).unwrap(), r);
        assert!(Resources::from_json(&json!({"netns": 1})).is_err());
    }
}
