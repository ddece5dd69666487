//! The `throughput` section's helper process: this executable started again with
//! `PODNET_BENCH_HELPER` set. It joins a pod's container cgroup (before opening any socket) and a
//! network namespace, and measures its own TCP or UDP send/receive loop. Prints `{"ready":true}`
//! when its socket is bound (sinks), then one result line `{"count":N,"seconds":S,"cpuNs":C}`
//! (bytes for TCP, datagrams for UDP; C the thread's on-CPU time during the loop), or
//! `{"error":"..."}`.

use std::fs;
use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};
use serde_json::{json, Value};

use crate::throughput::{
    thread_cpu_ns, HELPER_ADDR, HELPER_CGROUP, HELPER_NETNS, HELPER_SECONDS, HELPER_SIZE,
};

/// Runs the helper `role` and prints its result (or error) line.
pub fn main(role: &str) -> ExitCode {
    match run(role) {
        Ok(v) => {
            println!("{v}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            println!("{}", json!({"error": format!("{e:#}")}));
            ExitCode::FAILURE
        }
    }
}

fn env(name: &str) -> Result<String> {
    std::env::var(name).with_context(|| format!("{name} is not set"))
}

fn say(v: Value) {
    println!("{v}");
    let _ = std::io::stdout().flush();
}

fn run(role: &str) -> Result<Value> {
    let cgroup = PathBuf::from(env(HELPER_CGROUP)?);
    let procs = cgroup.join("cgroup.procs");
    fs::write(&procs, std::process::id().to_string())
        .with_context(|| format!("joining {}", procs.display()))?;
    let netns = env(HELPER_NETNS)?;
    let ns = fs::File::open(&netns).with_context(|| format!("opening {netns}"))?;
    nix::sched::setns(&ns, nix::sched::CloneFlags::CLONE_NEWNET)
        .with_context(|| format!("setns into {netns}"))?;
    drop(ns);
    let addr: SocketAddr = env(HELPER_ADDR)?.parse()?;
    let seconds: f64 = env(HELPER_SECONDS)?.parse()?;
    let size: usize = env(HELPER_SIZE)?.parse()?;
    let duration = Duration::from_secs_f64(seconds);
    let limit = Duration::from_secs(20);
    match role {
        "tcp-sink" => {
            let listener = TcpListener::bind(addr).context("bind")?;
            listener.set_nonblocking(true)?;
            say(json!({"ready": true}));
            let deadline = Instant::now() + limit;
            let mut stream = loop {
                match listener.accept() {
                    Ok((s, _)) => break s,
                    Err(e) if e.kind() == ErrorKind::WouldBlock => {
                        ensure!(Instant::now() < deadline, "no connection within {limit:?}");
                        std::thread::sleep(Duration::from_millis(1));
                    }
                    Err(e) => return Err(e).context("accept"),
                }
            };
            stream.set_nonblocking(false)?;
            stream.set_read_timeout(Some(limit))?;
            let cpu = thread_cpu_ns();
            let mut buf = vec![0u8; 1 << 20];
            let mut got = 0u64;
            let mut first = None;
            loop {
                let n = stream.read(&mut buf).context("read")?;
                if n == 0 {
                    break;
                }
                first.get_or_insert_with(Instant::now);
                got += n as u64;
            }
            let secs = first.map_or(f64::NAN, |t| t.elapsed().as_secs_f64());
            Ok(json!({"count": got, "seconds": secs, "cpuNs": thread_cpu_ns() - cpu}))
        }
        "tcp-source" => {
            let mut stream = TcpStream::connect_timeout(&addr, limit).context("connect")?;
            let buf = vec![0x3cu8; 1 << 20];
            let cpu = thread_cpu_ns();
            let t = Instant::now();
            let mut sent = 0u64;
            while t.elapsed() < duration {
                stream.write_all(&buf).context("write")?;
                sent += buf.len() as u64;
            }
            stream.shutdown(std::net::Shutdown::Write)?;
            // Wait for the peer's close so every byte was delivered before reporting.
            stream.set_read_timeout(Some(limit))?;
            let _ = stream.read(&mut [0u8; 1]);
            Ok(json!({"count": sent, "seconds": t.elapsed().as_secs_f64(),
                      "cpuNs": thread_cpu_ns() - cpu}))
        }
        "udp-sink" => {
            let sock = UdpSocket::bind(addr).context("bind")?;
            say(json!({"ready": true}));
            let mut buf = vec![0u8; 65_536];
            let cpu = thread_cpu_ns();
            let start = Instant::now();
            let mut got = 0u64;
            let (mut first, mut last) = (None, None);
            // Until 300 ms without a datagram after the first, or the time limit.
            sock.set_read_timeout(Some(Duration::from_millis(300)))?;
            loop {
                match sock.recv(&mut buf) {
                    Ok(_) => {
                        got += 1;
                        let now = Instant::now();
                        first.get_or_insert(now);
                        last = Some(now);
                    }
                    Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                        if got > 0 || start.elapsed() > limit {
                            break;
                        }
                    }
                    Err(e) => return Err(e).context("recv"),
                }
            }
            let secs = match (first, last) {
                (Some(f), Some(l)) => (l - f).as_secs_f64(),
                _ => f64::NAN,
            };
            Ok(json!({"count": got, "seconds": secs, "cpuNs": thread_cpu_ns() - cpu}))
        }
        "udp-source" => {
            let sock = UdpSocket::bind("0.0.0.0:0").context("socket")?;
            sock.connect(addr).context("connect")?;
            let buf = vec![0x5au8; size];
            let cpu = thread_cpu_ns();
            let t = Instant::now();
            let mut sent = 0u64;
            // Check the clock every 256 datagrams.
            while t.elapsed() < duration {
                for _ in 0..256 {
                    if sock.send(&buf).is_ok() {
                        sent += 1;
                    }
                }
            }
            Ok(json!({"count": sent, "seconds": t.elapsed().as_secs_f64(),
                      "cpuNs": thread_cpu_ns() - cpu}))
        }
        other => bail!("unknown helper role {other}"),
    }
}
