//! `podnet-sandbox`: the workload process of podnet's sandbox pods.
//!
//! ```text
//! podnet-sandbox [--netns NAME|PATH] [--cgroup DIR] [--memcg DIR] [--hold] <job> [job options]
//! ```
//!
//! Order of events, which is what makes exact counts possible:
//! 1. parse everything and check the job's inputs;
//! 2. `setns(CLONE_NEWNET)` into `--netns` (a name under /run/netns, or a path);
//! 3. open `cgroup.procs` of `--memcg` (v1 memory hierarchy) and `--cgroup` (v2), then write the
//!    own pid to them: from here on the process is in the container's cgroups, and it opens no
//!    file and no socket other than its job;
//! 4. prepare what peers need before they start (bind/listen sockets of `udp-recv`, `tcp-server`,
//!    `demo --bind`), print `{"ready":true,"pid":N}` and wait for a line on stdin (EOF: exit 0);
//! 5. do the job, close everything the job opened (except what a holding job holds), print one JSON
//!    result line (`{"error":"..."}` and exit status 1 on failure);
//! 6. holding jobs (`tcp-server`, `tcp-client`, `hold-memory`, `idle`, any job with `--hold`) wait
//!    for another line or EOF, then close what they hold and exit 0.
//!
//! Jobs and their result fields:
//! - `udp-send --to A:P --count N --size S [--interval-us U]`: one socket, exactly N datagrams of S
//!   payload bytes (`sent`, `bytes`, `errors`).
//! - `udp-recv --bind A:P --count N --timeout-ms T`: receives until N datagrams or T ms after go
//!   (`received`, `bytes`, `timedOut`).
//! - `tcp-server --bind A:P --reply B [--expect N] [--timeout-ms T]`: accepts one connection, reads
//!   N bytes (or until EOF without `--expect`), writes B bytes, holds the connection
//!   (`received`, `sent`, `peer`).
//! - `tcp-client --to A:P --bytes B --expect R [--shutdown] [--timeout-ms T]`: connects, writes B
//!   bytes (then half-closes with `--shutdown`), reads R bytes, holds the connection
//!   (`sent`, `received`, `local`).
//! - `open --path P --count N [--missing K] [--missing-path Q]`: exactly N successful opens of P
//!   and K failing opens of Q (default `P.podnet-missing`, which must not exist), each closed
//!   (`opened`, `failed`, `openErrors` = failed opens of P, `unexpectedOpens` = successful opens of Q).
//! - `sockets --count N`: creates and closes N UDP sockets (`created`, `closed`).
//! - `hold-memory --mib M`: allocates and touches M MiB, holds it (`bytes`).
//! - `demo --seconds S [--to A:P] [--rate R] [--size B] [--bind A:P] [--sockets-per-sec N]
//!   [--opens-per-sec N] [--open-path P] [--mib M]`: a mixed load for S seconds: R datagrams/s of
//!   B bytes to A:P, receiving whatever arrives at `--bind`, socket churn, file opens, M MiB held
//!   (`udpSent`, `udpReceived`, `socketsCreated`, `opens`, `bytesHeld`, `seconds`).
//! - `idle`: nothing; holds until released.

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::{self, BufRead, ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sched::{setns, CloneFlags};
use serde_json::{json, Value};

/// Options that apply to every job.
#[derive(Debug, Default)]
struct Global {
    netns: Option<String>,
    cgroup: Option<PathBuf>,
    memcg: Option<PathBuf>,
    hold: bool,
}

/// A job with its options, fully parsed and validated before the process joins any cgroup.
#[derive(Debug)]
enum Job {
    UdpSend {
        to: SocketAddr,
        count: u64,
        size: usize,
        interval: Duration,
    },
    UdpRecv {
        bind: SocketAddr,
        count: u64,
        timeout: Duration,
    },
    TcpServer {
        bind: SocketAddr,
        reply: usize,
        expect: Option<u64>,
        timeout: Duration,
    },
    TcpClient {
        to: SocketAddr,
        bytes: usize,
        expect: usize,
        shutdown: bool,
        timeout: Duration,
    },
    Open {
        path: PathBuf,
        count: u64,
        missing: u64,
        missing_path: PathBuf,
    },
    Sockets {
        count: u64,
    },
    HoldMemory {
        mib: usize,
    },
    Demo(Demo),
    Idle,
}

#[derive(Debug)]
struct Demo {
    seconds: f64,
    to: Option<SocketAddr>,
    rate: u64,
    size: usize,
    bind: Option<SocketAddr>,
    sockets_per_sec: u64,
    opens_per_sec: u64,
    open_path: PathBuf,
    mib: usize,
}

/// What a job prepared before ready.
enum Prepared {
    Nothing,
    Udp(UdpSocket),
    Listener(TcpListener),
}

/// What a holding job keeps until released.
enum Held {
    Nothing,
    Stream(#[allow(dead_code)] TcpStream),
    Memory(#[allow(dead_code)] Vec<u8>),
}

/// Job options as `--key value` pairs (flags map to an empty value).
struct Opts {
    job: String,
    map: HashMap<String, String>,
}

const FLAGS: &[&str] = &["shutdown"];

impl Opts {
    fn parse(job: &str, args: &[String], allowed: &[&str]) -> Result<Opts> {
        let mut map = HashMap::new();
        let mut it = args.iter();
        while let Some(a) = it.next() {
            let key = a
                .strip_prefix("--")
                .ok_or_else(|| anyhow!("{job}: unexpected argument {a:?}"))?;
            if !allowed.contains(&key) {
                bail!(
                    "{job}: unknown option --{key} (accepted: --{})",
                    allowed.join(", --")
                );
            }
            let value = if FLAGS.contains(&key) {
                String::new()
            } else {
                it.next()
                    .ok_or_else(|| anyhow!("{job}: --{key} needs a value"))?
                    .clone()
            };
            map.insert(key.to_string(), value);
        }
        Ok(Opts {
            job: job.to_string(),
            map,
        })
    }

    fn raw(&self, key: &str) -> Result<&str> {
        self.map
            .get(key)
            .map(String::as_str)
            .ok_or_else(|| anyhow!("{}: --{key} is required", self.job))
    }

    fn num<T: std::str::FromStr>(&self, key: &str, default: Option<T>) -> Result<T> {
        match (self.map.get(key), default) {
            (Some(v), _) => v
                .parse()
                .map_err(|_| anyhow!("{}: --{key} {v:?} is not a valid number", self.job)),
            (None, Some(d)) => Ok(d),
            (None, None) => bail!("{}: --{key} is required", self.job),
        }
    }

    fn addr(&self, key: &str) -> Result<SocketAddr> {
        let v = self.raw(key)?;
        // A literal address only: name resolution would open /etc/hosts and friends.
        v.parse()
            .map_err(|_| anyhow!("{}: --{key} {v:?} is not an IP:PORT address", self.job))
    }

    fn opt_addr(&self, key: &str) -> Result<Option<SocketAddr>> {
        self.map
            .contains_key(key)
            .then(|| self.addr(key))
            .transpose()
    }

    fn flag(&self, key: &str) -> bool {
        self.map.contains_key(key)
    }

    fn timeout(&self) -> Result<Duration> {
        Ok(Duration::from_millis(
            self.num("timeout-ms", Some(20_000u64))?,
        ))
    }
}

fn parse_args(args: &[String]) -> Result<(Global, Job)> {
    let mut g = Global::default();
    let mut i = 0;
    while i < args.len() && args[i].starts_with("--") {
        let key = &args[i];
        if key == "--hold" {
            g.hold = true;
            i += 1;
            continue;
        }
        let value = args
            .get(i + 1)
            .ok_or_else(|| anyhow!("{key} needs a value"))?
            .clone();
        match key.as_str() {
            "--netns" => g.netns = Some(value),
            "--cgroup" => g.cgroup = Some(value.into()),
            "--memcg" => g.memcg = Some(value.into()),
            _ => bail!("unknown option {key} (global options: --netns, --cgroup, --memcg, --hold)"),
        }
        i += 2;
    }
    let job = args
        .get(i)
        .ok_or_else(|| anyhow!("no job given (udp-send, udp-recv, tcp-server, tcp-client, open, sockets, hold-memory, demo, idle)"))?
        .as_str();
    let rest = &args[i + 1..];
    let job = match job {
        "udp-send" => {
            let o = Opts::parse(job, rest, &["to", "count", "size", "interval-us"])?;
            let size: usize = o.num("size", None)?;
            if size > 65_507 {
                bail!("udp-send: --size {size} exceeds the largest UDP/IPv4 payload (65507)");
            }
            Job::UdpSend {
                to: o.addr("to")?,
                count: o.num("count", None)?,
                size,
                interval: Duration::from_micros(o.num("interval-us", Some(0))?),
            }
        }
        "udp-recv" => {
            let o = Opts::parse(job, rest, &["bind", "count", "timeout-ms"])?;
            Job::UdpRecv { bind: o.addr("bind")?, count: o.num("count", None)?, timeout: o.timeout()? }
        }
        "tcp-server" => {
            let o = Opts::parse(job, rest, &["bind", "reply", "expect", "timeout-ms"])?;
            Job::TcpServer {
                bind: o.addr("bind")?,
                reply: o.num("reply", None)?,
                expect: o.map.contains_key("expect").then(|| o.num("expect", None)).transpose()?,
                timeout: o.timeout()?,
            }
        }
        "tcp-client" => {
            let o = Opts::parse(job, rest, &["to", "bytes", "expect", "shutdown", "timeout-ms"])?;
            Job::TcpClient {
                to: o.addr("to")?,
                bytes: o.num("bytes", None)?,
                expect: o.num("expect", None)?,
                shutdown: o.flag("shutdown"),
                timeout: o.timeout()?,
            }
        }
        "open" => {
            let o = Opts::parse(job, rest, &["path", "count", "missing", "missing-path"])?;
            let path = PathBuf::from(o.raw("path")?);
            let missing_path = match o.map.get("missing-path") {
                Some(p) => PathBuf::from(p),
                None => PathBuf::from(format!("{}.podnet-missing", path.display())),
            };
            Job::Open { count: o.num("count", None)?, missing: o.num("missing", Some(0))?, path, missing_path }
        }
        "sockets" => {
            let o = Opts::parse(job, rest, &["count"])?;
            Job::Sockets { count: o.num("count", None)? }
        }
        "hold-memory" => {
            let o = Opts::parse(job, rest, &["mib"])?;
            Job::HoldMemory { mib: o.num("mib", None)? }
        }
        "demo" => {
            let o = Opts::parse(
                job,
                rest,
                &["seconds", "to", "rate", "size", "bind", "sockets-per-sec", "opens-per-sec", "open-path", "mib"],
            )?;
            let seconds: f64 = o.num("seconds", None)?;
            if !(seconds > 0.0 && seconds <= 86_400.0) {
                bail!("demo: --seconds must be in (0, 86400]");
            }
            Job::Demo(Demo {
                seconds,
                to: o.opt_addr("to")?,
                rate: o.num("rate", Some(100))?,
                size: o.num("size", Some(200))?,
                bind: o.opt_addr("bind")?,
                sockets_per_sec: o.num("sockets-per-sec", Some(5))?,
                opens_per_sec: o.num("opens-per-sec", Some(20))?,
                open_path: PathBuf::from(o.map.get("open-path").map_or("/proc/self/status", String::as_str)),
                mib: o.num("mib", Some(16))?,
            })
        }
        "idle" => {
            Opts::parse(job, rest, &[])?;
            Job::Idle
        }
        other => bail!("unknown job {other:?} (udp-send, udp-recv, tcp-server, tcp-client, open, sockets, hold-memory, demo, idle)"),
    };
    Ok((g, job))
}

/// Checks of the job's inputs that touch the file system, done before joining the cgroup.
fn precheck(job: &Job) -> Result<()> {
    let exists = |p: &Path| p.symlink_metadata().is_ok();
    match job {
        Job::Open {
            path,
            missing,
            missing_path,
            ..
        } => {
            if !exists(path) {
                bail!("open: --path {} does not exist", path.display());
            }
            if *missing > 0 && exists(missing_path) {
                bail!(
                    "open: the path for failing opens {} exists; pass --missing-path",
                    missing_path.display()
                );
            }
        }
        Job::Demo(d) if d.opens_per_sec > 0 && !exists(&d.open_path) => {
            bail!("demo: --open-path {} does not exist", d.open_path.display());
        }
        _ => {}
    }
    Ok(())
}

fn join_netns(ns: &str) -> Result<()> {
    let path = if ns.contains('/') {
        PathBuf::from(ns)
    } else {
        Path::new("/run/netns").join(ns)
    };
    let file =
        File::open(&path).with_context(|| format!("cannot open netns {}", path.display()))?;
    setns(file.as_fd(), CloneFlags::CLONE_NEWNET).with_context(|| {
        format!(
            "setns({}, CLONE_NEWNET): needs CAP_SYS_ADMIN",
            path.display()
        )
    })
}

/// Moves this process into the given cgroups. Both files are opened first, so every open happens
/// while still outside.
fn join_cgroups(g: &Global) -> Result<()> {
    let open = |dir: &Path| {
        let file = dir.join("cgroup.procs");
        OpenOptions::new()
            .write(true)
            .open(&file)
            .with_context(|| format!("cannot open {}", file.display()))
            .map(|f| (f, file))
    };
    let memcg = g.memcg.as_deref().map(open).transpose()?;
    let cgroup = g.cgroup.as_deref().map(open).transpose()?;
    let pid = std::process::id().to_string();
    for (mut f, name) in memcg.into_iter().chain(cgroup) {
        f.write_all(pid.as_bytes())
            .with_context(|| format!("cannot move pid {pid} into {}", name.display()))?;
    }
    Ok(())
}

fn prepare(job: &Job) -> Result<Prepared> {
    Ok(match job {
        Job::UdpRecv { bind, .. } => {
            Prepared::Udp(UdpSocket::bind(bind).with_context(|| format!("cannot bind UDP {bind}"))?)
        }
        Job::Demo(Demo {
            bind: Some(bind), ..
        }) => {
            let s = UdpSocket::bind(bind).with_context(|| format!("cannot bind UDP {bind}"))?;
            s.set_nonblocking(true)?;
            Prepared::Udp(s)
        }
        Job::TcpServer { bind, .. } => Prepared::Listener(
            TcpListener::bind(bind).with_context(|| format!("cannot listen on TCP {bind}"))?,
        ),
        _ => Prepared::Nothing,
    })
}

fn unspecified_like(addr: &SocketAddr) -> SocketAddr {
    match addr {
        SocketAddr::V4(_) => SocketAddr::from(([0, 0, 0, 0], 0)),
        SocketAddr::V6(_) => SocketAddr::from(([0u16; 8], 0)),
    }
}

fn udp_send(to: SocketAddr, count: u64, size: usize, interval: Duration) -> Result<Value> {
    let payload = vec![0x5au8; size];
    let sock = UdpSocket::bind(unspecified_like(&to)).context("cannot create UDP socket")?;
    let start = Instant::now();
    let (mut sent, mut errors, mut last_error) = (0u64, 0u64, None);
    for i in 0..count {
        if !interval.is_zero() && i > 0 {
            let due = start + interval.saturating_mul(u32::try_from(i).unwrap_or(u32::MAX));
            let now = Instant::now();
            if due > now {
                std::thread::sleep(due - now);
            }
        }
        match sock.send_to(&payload, to) {
            Ok(n) if n == size => sent += 1,
            Ok(n) => {
                errors += 1;
                last_error = Some(format!("short send {n} of {size}"));
            }
            Err(e) => {
                errors += 1;
                last_error = Some(e.to_string());
            }
        }
    }
    drop(sock);
    Ok(
        json!({"job": "udp-send", "sent": sent, "bytes": sent * size as u64, "errors": errors,
              "lastError": last_error}),
    )
}

fn udp_recv(sock: UdpSocket, count: u64, timeout: Duration) -> Result<Value> {
    let mut buf = vec![0u8; 65_536];
    let deadline = Instant::now() + timeout;
    let (mut received, mut bytes, mut timed_out) = (0u64, 0u64, false);
    while received < count {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            timed_out = true;
            break;
        }
        sock.set_read_timeout(Some(left))?;
        match sock.recv(&mut buf) {
            Ok(n) => {
                received += 1;
                bytes += n as u64;
            }
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                timed_out = true;
                break;
            }
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => return Err(e).context("recv"),
        }
    }
    drop(sock);
    Ok(json!({"job": "udp-recv", "received": received, "bytes": bytes, "timedOut": timed_out}))
}

/// Reads until `limit` bytes (or EOF when `None`); returns the count.
fn read_up_to(stream: &mut TcpStream, limit: Option<u64>) -> Result<u64> {
    let mut buf = vec![0u8; 65_536];
    let mut got = 0u64;
    loop {
        let want = match limit {
            Some(l) if got >= l => break,
            Some(l) => usize::try_from(l - got)
                .unwrap_or(usize::MAX)
                .min(buf.len()),
            None => buf.len(),
        };
        match stream.read(&mut buf[..want]) {
            Ok(0) => break,
            Ok(n) => got += n as u64,
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => return Err(e).context("TCP read"),
        }
    }
    Ok(got)
}

fn tcp_server(
    listener: TcpListener,
    reply: usize,
    expect: Option<u64>,
    timeout: Duration,
) -> Result<(Value, Held)> {
    let ms = u32::try_from(timeout.as_millis()).unwrap_or(u32::MAX);
    let mut fds = [PollFd::new(listener.as_fd(), PollFlags::POLLIN)];
    let ready = poll(
        &mut fds,
        PollTimeout::try_from(ms).unwrap_or(PollTimeout::MAX),
    )
    .context("poll")?;
    if ready == 0 {
        bail!("no connection within {timeout:?}");
    }
    let (mut stream, peer) = listener.accept().context("accept")?;
    drop(listener);
    stream.set_read_timeout(Some(timeout))?;
    stream.set_write_timeout(Some(timeout))?;
    let received = read_up_to(&mut stream, expect)?;
    stream
        .write_all(&vec![0xa5u8; reply])
        .context("TCP write")?;
    Ok((
        json!({"job": "tcp-server", "received": received, "sent": reply, "peer": peer.to_string()}),
        Held::Stream(stream),
    ))
}

fn tcp_client(
    to: SocketAddr,
    bytes: usize,
    expect: usize,
    shutdown: bool,
    timeout: Duration,
) -> Result<(Value, Held)> {
    let mut stream =
        TcpStream::connect_timeout(&to, timeout).with_context(|| format!("connect {to}"))?;
    stream.set_read_timeout(Some(timeout))?;
    stream.set_write_timeout(Some(timeout))?;
    stream
        .write_all(&vec![0x3cu8; bytes])
        .context("TCP write")?;
    if shutdown {
        stream
            .shutdown(std::net::Shutdown::Write)
            .context("shutdown(SHUT_WR)")?;
    }
    let received = read_up_to(&mut stream, Some(expect as u64))?;
    let local = stream
        .local_addr()
        .map(|a| a.to_string())
        .unwrap_or_default();
    Ok((
        json!({"job": "tcp-client", "sent": bytes, "received": received, "local": local}),
        Held::Stream(stream),
    ))
}

fn open_files(path: &Path, count: u64, missing: u64, missing_path: &Path) -> Value {
    let (mut opened, mut open_errors, mut failed, mut unexpected) = (0u64, 0u64, 0u64, 0u64);
    for _ in 0..count {
        match File::open(path) {
            Ok(f) => {
                opened += 1;
                drop(f);
            }
            Err(_) => open_errors += 1,
        }
    }
    for _ in 0..missing {
        match File::open(missing_path) {
            Ok(f) => {
                unexpected += 1;
                drop(f);
            }
            Err(_) => failed += 1,
        }
    }
    json!({"job": "open", "opened": opened, "failed": failed, "openErrors": open_errors,
           "unexpectedOpens": unexpected})
}

fn sockets(count: u64) -> Result<Value> {
    let any = SocketAddr::from(([0, 0, 0, 0], 0));
    let mut created = 0u64;
    for _ in 0..count {
        let s = UdpSocket::bind(any).context("cannot create UDP socket")?;
        created += 1;
        drop(s);
    }
    Ok(json!({"job": "sockets", "created": created, "closed": created}))
}

/// Allocates `mib` MiB and writes to every page so it is really charged.
fn touch_memory(mib: usize) -> Vec<u8> {
    let len = mib << 20;
    let mut v = vec![0u8; len];
    for i in (0..len).step_by(4096) {
        v[i] = 1;
    }
    std::hint::black_box(&mut v);
    v
}

fn demo(d: &Demo, recv: Option<UdpSocket>) -> Result<(Value, Held)> {
    let memory = touch_memory(d.mib);
    let payload = vec![0x42u8; d.size.min(65_507)];
    let sender =
        d.to.map(|to| UdpSocket::bind(unspecified_like(&to)))
            .transpose()
            .context("cannot create UDP socket")?;
    let mut buf = vec![0u8; 65_536];
    let start = Instant::now();
    let total = Duration::from_secs_f64(d.seconds);
    let (mut udp_sent, mut udp_received, mut socks, mut opens) = (0u64, 0u64, 0u64, 0u64);
    let due = |per_sec: u64, elapsed: Duration| (per_sec as f64 * elapsed.as_secs_f64()) as u64;
    loop {
        let elapsed = start.elapsed().min(total);
        if let (Some(s), Some(to)) = (&sender, d.to) {
            while udp_sent < due(d.rate, elapsed) {
                // A full queue or an absent peer is part of a demo's life; keep going.
                let _ = s.send_to(&payload, to);
                udp_sent += 1;
            }
        }
        if let Some(r) = &recv {
            while r.recv(&mut buf).is_ok() {
                udp_received += 1;
            }
        }
        while socks < due(d.sockets_per_sec, elapsed) {
            drop(UdpSocket::bind(SocketAddr::from(([0, 0, 0, 0], 0))));
            socks += 1;
        }
        while opens < due(d.opens_per_sec, elapsed) {
            drop(File::open(&d.open_path));
            opens += 1;
        }
        if elapsed >= total {
            break;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    drop(sender);
    drop(recv);
    Ok((
        json!({"job": "demo", "udpSent": udp_sent, "udpReceived": udp_received, "socketsCreated": socks,
               "opens": opens, "bytesHeld": memory.len(), "seconds": d.seconds}),
        Held::Memory(memory),
    ))
}

fn run_job(job: &Job, prepared: Prepared) -> Result<(Value, Held)> {
    Ok(match (job, prepared) {
        (
            Job::UdpSend {
                to,
                count,
                size,
                interval,
            },
            _,
        ) => (udp_send(*to, *count, *size, *interval)?, Held::Nothing),
        (Job::UdpRecv { count, timeout, .. }, Prepared::Udp(s)) => {
            (udp_recv(s, *count, *timeout)?, Held::Nothing)
        }
        (
            Job::TcpServer {
                reply,
                expect,
                timeout,
                ..
            },
            Prepared::Listener(l),
        ) => tcp_server(l, *reply, *expect, *timeout)?,
        (
            Job::TcpClient {
                to,
                bytes,
                expect,
                shutdown,
                timeout,
            },
            _,
        ) => tcp_client(*to, *bytes, *expect, *shutdown, *timeout)?,
        (
            Job::Open {
                path,
                count,
                missing,
                missing_path,
            },
            _,
        ) => (
            open_files(path, *count, *missing, missing_path),
            Held::Nothing,
        ),
        (Job::Sockets { count }, _) => (sockets(*count)?, Held::Nothing),
        (Job::HoldMemory { mib }, _) => {
            let v = touch_memory(*mib);
            (
                json!({"job": "hold-memory", "bytes": v.len()}),
                Held::Memory(v),
            )
        }
        (Job::Demo(d), Prepared::Udp(s)) => demo(d, Some(s))?,
        (Job::Demo(d), _) => demo(d, None)?,
        (Job::Idle, _) => (json!({"job": "idle"}), Held::Nothing),
        (job, _) => bail!("internal error: {job:?} was not prepared"),
    })
}

fn holds(job: &Job) -> bool {
    matches!(
        job,
        Job::TcpServer { .. } | Job::TcpClient { .. } | Job::HoldMemory { .. } | Job::Idle
    )
}

/// Prints one line on stdout and flushes it.
fn say(v: &Value) -> io::Result<()> {
    let mut out = io::stdout().lock();
    writeln!(out, "{v}")?;
    out.flush()
}

/// Reads one line from stdin; false on EOF.
fn wait_line() -> bool {
    let mut line = String::new();
    matches!(io::stdin().lock().read_line(&mut line), Ok(n) if n > 0)
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (global, job) = match parse_args(&args) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("podnet-sandbox: {e:#}");
            return ExitCode::from(2);
        }
    };
    let setup = (|| -> Result<Prepared> {
        precheck(&job)?;
        if let Some(ns) = &global.netns {
            join_netns(ns)?;
        }
        join_cgroups(&global)?;
        prepare(&job)
    })();
    let prepared = match setup {
        Ok(p) => p,
        Err(e) => {
            eprintln!("podnet-sandbox: {e:#}");
            return ExitCode::from(1);
        }
    };
    if say(&json!({"ready": true, "pid": std::process::id()})).is_err() || !wait_line() {
        return ExitCode::SUCCESS;
    }
    let (result, held) = match run_job(&job, prepared) {
        Ok(r) => r,
        Err(e) => {
            let _ = say(&json!({"error": format!("{e:#}")}));
            eprintln!("podnet-sandbox: {e:#}");
            return ExitCode::from(1);
        }
    };
    if say(&result).is_err() {
        return ExitCode::from(1);
    }
    if holds(&job) || global.hold {
        wait_line();
    }
    drop(held);
    ExitCode::SUCCESS
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(s: &str) -> Vec<String> {
        s.split_whitespace().map(String::from).collect()
    }

    #[test]
    fn parses_global_options_then_the_job() {
        let (g, job) = parse_args(&args(
            "--netns ns1 --cgroup /c --hold udp-send --to 198.18.0.2:9 --count 3 --size 10",
        ))
        .unwrap();
        assert_eq!(g.netns.as_deref(), Some("ns1"));
        assert_eq!(g.cgroup.as_deref(), Some(Path::new("/c")));
        assert!(g.hold && g.memcg.is_none());
        match job {
            Job::UdpSend {
                to,
                count,
                size,
                interval,
            } => {
                assert_eq!(to, "198.18.0.2:9".parse().unwrap());
                assert_eq!((count, size, interval), (3, 10, Duration::ZERO));
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn rejects_bad_input() {
        assert!(parse_args(&args("udp-send --to host:9 --count 1 --size 1")).is_err());
        assert!(parse_args(&args("udp-send --to 1.2.3.4:9 --count 1")).is_err());
        assert!(parse_args(&args("udp-send --to 1.2.3.4:9 --count 1 --size 70000")).is_err());
        assert!(parse_args(&args("open --path /x --count 1 --bogus 2")).is_err());
        assert!(parse_args(&args("--weird 1 idle")).is_err());
        assert!(parse_args(&args("dance")).is_err());
        assert!(parse_args(&args("")).is_err());
    }

    #[test]
    fn open_defaults_the_missing_path_and_tcp_flags() {
        let (_, job) = parse_args(&args("open --path /etc/x --count 2 --missing 1")).unwrap();
        match job {
            Job::Open {
                missing_path,
                count,
                missing,
                ..
            } => {
                assert_eq!(missing_path, Path::new("/etc/x.podnet-missing"));
                assert_eq!((count, missing), (2, 1));
            }
            other => panic!("{other:?}"),
        }
        let (_, job) = parse_args(&args(
            "tcp-client --to 198.18.0.1:80 --bytes 5 --expect 6 --shutdown",
        ))
        .unwrap();
        assert!(matches!(
            job,
            Job::TcpClient {
                shutdown: true,
                bytes: 5,
                expect: 6,
                ..
            }
        ));
    }
}
