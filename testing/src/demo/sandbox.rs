//! Assembling the demo sandbox: cgroups, netns, veths, workloads, load driver and stub API server.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use serde_json::Value;

use super::driver::{Driver, DriverReport};
use super::resources::{LinkRef, Resources};
use super::tempdir::TempDir;
use super::workloads::{container, describe, specs, Addrs, Namespaces, Pods};
use super::{DemoConfig, DemoPod, OTHER_NODE};
use crate::apiserver::{pod_json, StubApiServer};
use crate::sandbox::{
    new_container_id, new_uid, CgroupTree, Layout, NetNs, Qos, SandboxPod, Veth, Workload,
};

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
        let pods = Pods {
            web,
            db,
            report,
            agent,
        };
        let ns = Namespaces {
            web: &web_ns,
            db: &db_ns,
            report: &report_ns,
        };
        let specs = specs(&secs, open_path, &addrs, ns, &pods)?;
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
            db: container(&pods.db, "postgres")?,
            report: container(&pods.report, "report")?,
            db_addr: addrs.db_from_report,
            open_path: open_path.to_string(),
        };
        let driver = std::thread::Builder::new()
            .name("demo-driver".into())
            .spawn(move || driver.run())
            .context("cannot start the demo's load driver thread")?;

        let pods = describe(pods, ns);

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
