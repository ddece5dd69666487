//! Network namespaces ([`NetNs`]) and veth pairs ([`Veth`]) for sandbox pods, plus the kernel's own
//! SNMP counters of a namespace as ground truth ([`netns_snmp`]).

use std::collections::HashMap;
use std::fs;
use std::io::{ErrorKind, Read, Write};
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Once;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use nix::sched::{setns, CloneFlags};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

use super::{owner_pid, pid_alive};

/// Every veth address handed out lies in this benchmarking range (RFC 2544): 198.18.0.0/15.
pub const VETH_SUPERNET: (Ipv4Addr, u8) = (Ipv4Addr::new(198, 18, 0, 0), 15);

/// Number of /30 blocks in [`VETH_SUPERNET`].
const VETH_BLOCKS: u32 = 1 << (32 - 15 - 2);

/// Where address blocks are reserved across processes (one file per block, holding the owner pid).
const RESERVATIONS: &str = "/run/podnet-testing";

/// Upper bound for one `ip` invocation.
const IP_TIMEOUT: Duration = Duration::from_secs(15);

static NS_COUNTER: AtomicU32 = AtomicU32::new(0);
static VETH_COUNTER: AtomicU32 = AtomicU32::new(0);
static SWEEP_STALE: Once = Once::new();

/// Runs `ip <args>` with a time bound and returns its stdout; the error carries stderr.
fn ip(args: &[&str]) -> Result<String> {
    bounded("ip", args, "install iproute2")
}

/// Runs `program <args>` with a time bound ([`IP_TIMEOUT`]) and returns its stdout; the error
/// carries stderr, or `install` when the program is missing.
fn bounded(program: &str, args: &[&str], install: &str) -> Result<String> {
    let mut child = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("cannot run `{program}`: {install}"))?;
    let deadline = Instant::now() + IP_TIMEOUT;
    let status = loop {
        if let Some(status) = child.try_wait().context("waiting for `ip`")? {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            bail!(
                "`{program} {}` did not finish within {IP_TIMEOUT:?}",
                args.join(" ")
            );
        }
        std::thread::sleep(Duration::from_millis(2));
    };
    let mut out = String::new();
    let mut err = String::new();
    if let Some(mut s) = child.stdout.take() {
        let _ = s.read_to_string(&mut out);
    }
    if let Some(mut s) = child.stderr.take() {
        let _ = s.read_to_string(&mut err);
    }
    if !status.success() {
        bail!(
            "`{program} {}` failed ({status}): {}",
            args.join(" "),
            err.trim()
        );
    }
    Ok(out)
}

/// Pids of the processes whose network namespace is `name` (`ip netns pids`).
fn netns_pids(name: &str) -> Vec<u32> {
    ip(&["netns", "pids", name])
        .map(|o| {
            o.split_whitespace()
                .filter_map(|p| p.parse().ok())
                .collect()
        })
        .unwrap_or_default()
}

/// Kills every process inside netns `name` (bounded wait) and deletes the namespace.
fn delete_netns(name: &str) -> Result<()> {
    let me = std::process::id();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let pids: Vec<u32> = netns_pids(name).into_iter().filter(|p| *p != me).collect();
        if pids.is_empty() {
            break;
        }
        if Instant::now() > deadline {
            bail!("processes {pids:?} in netns {name} did not exit");
        }
        for pid in pids {
            if let Ok(pid) = i32::try_from(pid) {
                let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
            }
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    match ip(&["netns", "delete", name]) {
        Ok(_) => Ok(()),
        Err(_) if !Path::new("/run/netns").join(name).exists() => Ok(()),
        Err(e) => Err(e),
    }
}

/// Deletes namespaces `podnet-<label>-<pid>-<n>` whose creating process no longer exists.
pub(crate) fn sweep_stale_netns() {
    let Ok(list) = ip(&["netns", "list"]) else {
        return;
    };
    for line in list.lines() {
        let name = line.split_whitespace().next().unwrap_or("");
        if name.starts_with("podnet-") && owner_pid(name).is_some_and(|pid| !pid_alive(pid)) {
            if let Err(e) = delete_netns(name) {
                eprintln!("podnet-testing: cannot remove stale netns {name}: {e:#}");
            }
        }
    }
}

/// A network namespace `podnet-<label>-<pid>-<n>` made with `ip netns add` (so it is visible at
/// `/run/netns/NAME`), with `lo` up. `Drop` kills the processes still inside and deletes it.
#[derive(Debug)]
pub struct NetNs {
    name: String,
}

impl NetNs {
    /// Creates the namespace and brings its loopback up. `label` may contain ASCII letters,
    /// digits, `-` and `_`.
    pub fn new(label: &str) -> Result<NetNs> {
        if label.is_empty()
            || !label
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        {
            bail!("netns label {label:?} must be non-empty ASCII letters, digits, '-' or '_'");
        }
        SWEEP_STALE.call_once(|| {
            sweep_stale_netns();
            sweep_stale_reservations();
        });
        let name = format!(
            "podnet-{label}-{}-{}",
            std::process::id(),
            NS_COUNTER.fetch_add(1, Ordering::Relaxed)
        );
        ip(&["netns", "add", &name]).with_context(|| {
            format!("cannot create network namespace {name}: needs root (CAP_SYS_ADMIN)")
        })?;
        let ns = NetNs { name };
        ip(&["-n", &ns.name, "link", "set", "dev", "lo", "up"])?;
        Ok(ns)
    }

    /// The namespace name (as `ip netns list` shows it).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// `/run/netns/NAME`, the file a process opens to `setns(2)` into the namespace.
    pub fn path(&self) -> PathBuf {
        Path::new("/run/netns").join(&self.name)
    }

    /// Pids of the processes currently inside the namespace.
    pub fn pids(&self) -> Vec<u32> {
        netns_pids(&self.name)
    }

    /// Runs `f` on a short-lived thread that has joined this namespace (the calling thread is not
    /// moved). Useful to read `/proc/thread-self/net/...` or `/proc/sys/net/...` of the namespace.
    pub fn run_inside<T: Send>(&self, f: impl FnOnce() -> T + Send) -> Result<T> {
        let path = self.path();
        std::thread::scope(|s| {
            s.spawn(|| -> Result<T> {
                let file = fs::File::open(&path).with_context(|| {
                    format!("cannot open {}: was the netns deleted?", path.display())
                })?;
                setns(&file, CloneFlags::CLONE_NEWNET).with_context(|| {
                    format!("setns into {}: needs CAP_SYS_ADMIN", path.display())
                })?;
                Ok(f())
            })
            .join()
            .map_err(|_| anyhow!("thread inside netns {} panicked", self.name))?
        })
    }

    /// Makes the namespace lose TCP segments on input: of the segments without SYN that arrive
    /// (so handshakes are never delayed by a 1 s SYN timeout), every `every`-th is dropped,
    /// deterministically (an iptables `statistic --mode nth` rule in this namespace's INPUT chain;
    /// it goes with the namespace). The sender's TCP stack retransmits what was lost, so tests can
    /// count real retransmissions where a clean veth has none. Dropped on input means before the
    /// receiving socket's cgroup sees it, and [`NetNs::tcp_dropped`] says how much that was.
    pub fn lose_tcp_segments(&self, every: u32) -> Result<()> {
        let every = every.to_string();
        self.iptables(&[
            "-A",
            "INPUT",
            "-p",
            "tcp",
            "--tcp-flags",
            "SYN",
            "NONE",
            "-m",
            "statistic",
            "--mode",
            "nth",
            "--every",
            &every,
            "--packet",
            "0",
            "-j",
            "DROP",
        ])
        .map(drop)
    }

    /// Packets and bytes (IP length, as `skb->len` at the IP layer) that the rules of
    /// [`NetNs::lose_tcp_segments`] dropped so far.
    pub fn tcp_dropped(&self) -> Result<(u64, u64)> {
        let list = self.iptables(&["-L", "INPUT", "-n", "-v", "-x"])?;
        let mut total = (0, 0);
        for line in list.lines().filter(|l| l.contains("DROP")) {
            let mut f = line.split_whitespace();
            let (Some(pkts), Some(bytes)) = (f.next(), f.next()) else {
                bail!("unexpected iptables line {line:?}");
            };
            total.0 += pkts.parse::<u64>().context("iptables packet count")?;
            total.1 += bytes.parse::<u64>().context("iptables byte count")?;
        }
        Ok(total)
    }

    /// Whether TCP in this namespace has gone quiet: no socket holds unacknowledged data or runs
    /// a retransmission, loss-probe or window-probe timer (`ss -tino`). Once both ends of a
    /// connection are settled nothing more is sent on it until the applications act, so counters
    /// read afterwards are final.
    pub fn tcp_settled(&self) -> Result<bool> {
        let ss = bounded(
            "ip",
            &[
                "netns", "exec", &self.name, "ss", "-t", "-i", "-n", "-o", "-H",
            ],
            "install iproute2",
        )?;
        Ok(!["unacked:", "timer:(on", "timer:(persist"]
            .iter()
            .any(|busy| ss.contains(busy)))
    }

    fn iptables(&self, args: &[&str]) -> Result<String> {
        let mut all = vec!["netns", "exec", &self.name, "iptables", "-w", "5"];
        all.extend_from_slice(args);
        bounded("ip", &all, "install iproute2 and iptables")
    }

    /// The namespace's `/proc/net/snmp` counters, see [`netns_snmp`].
    pub fn snmp(&self) -> Result<HashMap<String, u64>> {
        let text = self.run_inside(|| fs::read_to_string("/proc/thread-self/net/snmp"))??;
        Ok(parse_snmp(&text))
    }
}

impl Drop for NetNs {
    fn drop(&mut self) {
        if let Err(e) = delete_netns(&self.name) {
            eprintln!(
                "podnet-testing: could not delete netns {}: {e:#}",
                self.name
            );
        }
    }
}

/// The kernel's SNMP counters of a namespace (`/proc/net/snmp` as seen from inside it), keyed the
/// way `nstat` names them: `UdpInDatagrams`, `UdpOutDatagrams`, `UdpRcvbufErrors`, `TcpInSegs`,
/// `TcpOutSegs`, `TcpActiveOpens`, `IpInReceives`, ... (negative values, i.e. `TcpMaxConn`, are
/// left out). Panics with the reason when the namespace cannot be read; [`NetNs::snmp`] returns
/// the error instead.
pub fn netns_snmp(ns: &NetNs) -> HashMap<String, u64> {
    ns.snmp()
        .unwrap_or_else(|e| panic!("cannot read /proc/net/snmp of netns {}: {e:#}", ns.name()))
}

/// Parses `/proc/net/snmp`: pairs of lines `Proto: Name1 Name2 ...` / `Proto: v1 v2 ...`.
pub(crate) fn parse_snmp(text: &str) -> HashMap<String, u64> {
    let mut out = HashMap::new();
    let lines: Vec<&str> = text.lines().collect();
    for pair in lines.chunks(2) {
        let [names, values] = pair else { continue };
        let (Some((proto, names)), Some((proto2, values))) =
            (names.split_once(':'), values.split_once(':'))
        else {
            continue;
        };
        if proto != proto2 {
            continue;
        }
        for (n, v) in names.split_whitespace().zip(values.split_whitespace()) {
            if let Ok(v) = v.parse::<u64>() {
                out.insert(format!("{proto}{n}"), v);
            }
        }
    }
    out
}

/// Releases address reservations of processes that no longer exist, deleting the host end of
/// their veth pair if it is still there.
pub(crate) fn sweep_stale_reservations() {
    let Ok(rd) = fs::read_dir(RESERVATIONS) else {
        return;
    };
    for e in rd.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let Some(idx) = name
            .strip_prefix("veth-")
            .and_then(|i| i.parse::<u32>().ok())
        else {
            continue;
        };
        let owner: Option<u32> = fs::read_to_string(e.path())
            .ok()
            .and_then(|s| s.trim().parse().ok());
        if owner.is_some_and(|pid| !pid_alive(pid)) {
            let host_end = format!("pn-{idx:04x}-b");
            if Path::new("/sys/class/net").join(&host_end).exists() {
                let _ = ip(&["link", "del", "dev", &host_end]);
            }
            let _ = fs::remove_file(e.path());
        }
    }
}

/// A reserved /30 block of [`VETH_SUPERNET`]; the reservation file is removed on drop.
#[derive(Debug)]
struct Block {
    idx: u32,
    file: PathBuf,
    /// True when the block was taken over from a dead process (leftover links may exist).
    was_stale: bool,
}

impl Block {
    fn reserve() -> Result<Block> {
        fs::create_dir_all(RESERVATIONS)
            .with_context(|| format!("cannot create {RESERVATIONS}: needs root"))?;
        let me = std::process::id();
        let start = me
            .wrapping_mul(64)
            .wrapping_add(VETH_COUNTER.fetch_add(1, Ordering::Relaxed))
            % VETH_BLOCKS;
        for step in 0..VETH_BLOCKS {
            let idx = (start + step) % VETH_BLOCKS;
            let file = Path::new(RESERVATIONS).join(format!("veth-{idx}"));
            let mut was_stale = false;
            for _attempt in 0..2 {
                match fs::OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .open(&file)
                {
                    Ok(mut f) => {
                        f.write_all(me.to_string().as_bytes())
                            .with_context(|| format!("cannot write {}", file.display()))?;
                        return Ok(Block {
                            idx,
                            file,
                            was_stale,
                        });
                    }
                    Err(e) if e.kind() == ErrorKind::AlreadyExists => {
                        let owner: Option<u32> = fs::read_to_string(&file)
                            .ok()
                            .and_then(|s| s.trim().parse().ok());
                        // A just-created file may still be empty: treat it as taken.
                        match owner {
                            Some(pid) if !pid_alive(pid) => {
                                let _ = fs::remove_file(&file);
                                was_stale = true;
                            }
                            _ => break,
                        }
                    }
                    Err(e) => {
                        return Err(e).with_context(|| format!("cannot create {}", file.display()))
                    }
                }
            }
        }
        bail!("all {VETH_BLOCKS} address blocks of 198.18.0.0/15 are reserved in {RESERVATIONS}")
    }

    fn addr(&self, host: u32) -> Ipv4Addr {
        Ipv4Addr::from(u32::from(VETH_SUPERNET.0) + self.idx * 4 + host)
    }
}

impl Drop for Block {
    fn drop(&mut self) {
        let _ = fs::remove_file(&self.file);
    }
}

/// A veth pair joining two namespaces, or one namespace and the host (root) namespace — the latter
/// for hostNetwork pods. End `a` gets `.1` and end `b` `.2` of a /30 inside 198.18.0.0/15 that is
/// reserved system-wide for this pair, so parallel tests never collide. Both ends are up, have
/// IPv6 disabled (no router/neighbour solicitations) and a permanent neighbour entry for the
/// other end, so no ARP exchange precedes or disturbs the first datagram. `Drop` deletes the pair.
///
/// Both ends start with `gso_max_segs 1`: TCP then never builds multi-segment (TSO/GSO) packets
/// on the pair, so every skb is one wire segment and the sender's `TcpOutSegs`, the receiver's
/// `TcpInSegs` and per-skb packet counts all agree. [`Veth::set_gso_max_segs`] restores
/// offloads for tests about GSO accounting (then `TcpInSegs` counts skbs, not segments).
#[derive(Debug)]
pub struct Veth {
    block: Block,
    name_a: String,
    name_b: String,
    ns_a: String,
    ns_b: Option<String>,
}

impl Veth {
    /// A pair with end `a` in namespace `a` and end `b` in namespace `b`.
    pub fn between(a: &NetNs, b: &NetNs) -> Result<Veth> {
        Veth::create(a, Some(b))
    }

    /// A pair with end `a` in namespace `a` and end `b` in the host (root) namespace.
    pub fn to_host(a: &NetNs) -> Result<Veth> {
        Veth::create(a, None)
    }

    fn create(a: &NetNs, b: Option<&NetNs>) -> Result<Veth> {
        let block = Block::reserve()?;
        let idx = block.idx;
        let name_a = format!("pn-{idx:04x}-a");
        let name_b = format!("pn-{idx:04x}-b");
        let mac = |end: u8| format!("02:70:6e:{:02x}:{:02x}:{end:02x}", idx >> 8, idx & 0xff);
        let (mac_a, mac_b) = (mac(1), mac(2));
        if block.was_stale {
            // A killed process may have left its host-side end behind.
            let _ = ip(&["link", "del", "dev", &name_b]);
        }
        match b {
            Some(b) => ip(&[
                "link",
                "add",
                &name_a,
                "address",
                &mac_a,
                "netns",
                a.name(),
                "type",
                "veth",
                "peer",
                "name",
                &name_b,
                "address",
                &mac_b,
                "netns",
                b.name(),
            ]),
            None => ip(&[
                "link",
                "add",
                &name_b,
                "address",
                &mac_b,
                "type",
                "veth",
                "peer",
                "name",
                &name_a,
                "address",
                &mac_a,
                "netns",
                a.name(),
            ]),
        }
        .with_context(|| {
            format!("cannot create veth pair {name_a}/{name_b}: needs CAP_NET_ADMIN")
        })?;
        let veth = Veth {
            name_a,
            name_b,
            ns_a: a.name().to_string(),
            ns_b: b.map(|b| b.name().to_string()),
            block,
        };
        veth.configure(Some(a), &veth.name_a, veth.addr_a(), veth.addr_b(), &mac_b)?;
        match b {
            Some(b) => {
                veth.configure(Some(b), &veth.name_b, veth.addr_b(), veth.addr_a(), &mac_a)?
            }
            None => veth.configure(None, &veth.name_b, veth.addr_b(), veth.addr_a(), &mac_a)?,
        }
        Ok(veth)
    }

    /// Addresses one end (in `ns`, or the host when `None`) and brings it up.
    fn configure(
        &self,
        ns: Option<&NetNs>,
        dev: &str,
        addr: Ipv4Addr,
        peer: Ipv4Addr,
        peer_mac: &str,
    ) -> Result<()> {
        let sysctl = format!("/proc/sys/net/ipv6/conf/{dev}/disable_ipv6");
        // Best effort: kernels without IPv6 have no such file, and that is fine too.
        match ns {
            Some(ns) => {
                let _ = ns.run_inside(|| fs::write(&sysctl, "1"));
            }
            None => {
                let _ = fs::write(&sysctl, "1");
            }
        }
        let run = |args: &[&str]| match ns {
            Some(ns) => {
                let mut full = vec!["-n", ns.name()];
                full.extend_from_slice(args);
                ip(&full)
            }
            None => ip(args),
        };
        let cidr = format!("{addr}/{}", self.prefix_len());
        run(&["link", "set", "dev", dev, "gso_max_segs", "1"])?;
        run(&["addr", "add", &cidr, "dev", dev])?;
        run(&["link", "set", "dev", dev, "up"])?;
        run(&[
            "neigh",
            "replace",
            &peer.to_string(),
            "lladdr",
            peer_mac,
            "dev",
            dev,
            "nud",
            "permanent",
        ])?;
        Ok(())
    }

    /// Sets `gso_max_segs` on both ends (1 at creation; 65535 is the kernel's default).
    pub fn set_gso_max_segs(&self, segs: u32) -> Result<()> {
        let segs = segs.to_string();
        ip(&[
            "-n",
            &self.ns_a,
            "link",
            "set",
            "dev",
            &self.name_a,
            "gso_max_segs",
            &segs,
        ])?;
        match &self.ns_b {
            Some(ns) => ip(&[
                "-n",
                ns,
                "link",
                "set",
                "dev",
                &self.name_b,
                "gso_max_segs",
                &segs,
            ])?,
            None => ip(&["link", "set", "dev", &self.name_b, "gso_max_segs", &segs])?,
        };
        Ok(())
    }

    /// The address of end `a` (in the first namespace).
    pub fn addr_a(&self) -> Ipv4Addr {
        self.block.addr(1)
    }

    /// The address of end `b` (in the second namespace, or the host).
    pub fn addr_b(&self) -> Ipv4Addr {
        self.block.addr(2)
    }

    /// The prefix length of both addresses (30).
    pub fn prefix_len(&self) -> u8 {
        30
    }

    /// The interface name of end `a`.
    pub fn name_a(&self) -> &str {
        &self.name_a
    }

    /// The interface name of end `b`.
    pub fn name_b(&self) -> &str {
        &self.name_b
    }

    /// The namespace of end `a`.
    pub fn netns_a(&self) -> &str {
        &self.ns_a
    }

    /// The namespace of end `b`, `None` when it is the host namespace.
    pub fn netns_b(&self) -> Option<&str> {
        self.ns_b.as_deref()
    }
}

impl Drop for Veth {
    fn drop(&mut self) {
        // Deleting either end deletes the pair. Prefer the host end: it outlives a deleted netns.
        let res = match &self.ns_b {
            None => ip(&["link", "del", "dev", &self.name_b]),
            Some(_) => ip(&["-n", &self.ns_a, "link", "del", "dev", &self.name_a]),
        };
        if let Err(e) = res {
            // Already gone with its namespace: nothing left behind.
            let gone = match &self.ns_b {
                None => ip(&["link", "show", "dev", &self.name_b]).is_err(),
                Some(_) => {
                    !Path::new("/run/netns").join(&self.ns_a).exists()
                        || ip(&["-n", &self.ns_a, "link", "show", "dev", &self.name_a]).is_err()
                }
            };
            if !gone {
                eprintln!(
                    "podnet-testing: could not delete veth {}: {e:#}",
                    self.name_a
                );
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn snmp_pairs_are_prefixed_like_nstat() {
        let text = "Ip: Forwarding DefaultTTL InReceives\nIp: 1 64 17\n\
                    Tcp: RtoAlgorithm MaxConn InSegs OutSegs\nTcp: 1 -1 5 6\n\
                    Udp: InDatagrams NoPorts OutDatagrams\nUdp: 10 0 11\n\
                    UdpLite: InDatagrams\nUdpLite: 0\n";
        let m = parse_snmp(text);
        assert_eq!(m["IpInReceives"], 17);
        assert_eq!(m["TcpInSegs"], 5);
        assert_eq!(m["TcpOutSegs"], 6);
        assert_eq!(m["UdpInDatagrams"], 10);
        assert_eq!(m["UdpOutDatagrams"], 11);
        assert_eq!(m["UdpLiteInDatagrams"], 0);
        assert!(!m.contains_key("TcpMaxConn"));
        assert_eq!(m.len(), 10);
    }

    #[test]
    fn blocks_stay_inside_the_supernet() {
        let last = Block {
            idx: VETH_BLOCKS - 1,
            file: PathBuf::from("/nonexistent/podnet-x"),
            was_stale: false,
        };
        assert_eq!(last.addr(2), Ipv4Addr::new(198, 19, 255, 254));
        let first = Block {
            idx: 0,
            file: PathBuf::from("/nonexistent/podnet-y"),
            was_stale: false,
        };
        assert_eq!(first.addr(1), Ipv4Addr::new(198, 18, 0, 1));
    }
}
