//! The resource ledger: what the demo creates outside its process, by name, and what is left.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{anyhow, Result};
use serde_json::{json, Value};

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

#[cfg(test)]
mod tests {
    use super::*;

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
