//! The jobs: what each prepares before ready, does after go, and holds until released.

use std::fs::File;
use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::os::fd::AsFd;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use serde_json::{json, Value};

use crate::args::{Demo, Job};

/// What a job prepared before ready.
pub(crate) enum Prepared {
    Nothing,
    Udp(UdpSocket),
    Listener(TcpListener),
}

/// What a holding job keeps until released.
pub(crate) enum Held {
    Nothing,
    Stream(#[allow(dead_code)] TcpStream),
    Memory(#[allow(dead_code)] Vec<u8>),
}

pub(crate) fn prepare(job: &Job) -> Result<Prepared> {
    Ok(match job {
        Job::UdpRecv { bind, .. } => {
            let s = UdpSocket::bind(bind).with_context(|| format!("cannot bind UDP {bind}"))?;
            reserve_receive_buffer(&s);
            Prepared::Udp(s)
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

/// What `udp-recv` asks for its receive buffer: room for every datagram a test sends even if the
/// receiver does not run until the sender is done.
const UDP_RECV_BUFFER: usize = 8 << 20;

/// Makes a `udp-recv` socket's delivery independent of scheduling. With the default buffer
/// (`net.core.rmem_default`, about 208 KiB) a few dozen milliseconds in which the receiver is not
/// scheduled (common on emulated CPUs with tests running in parallel) are enough to drop
/// datagrams with `UdpRcvbufErrors`, and a test that counts exact deliveries fails for a reason
/// that has nothing to do with what it checks. Root may exceed `net.core.rmem_max` with
/// SO_RCVBUFFORCE; anyone else gets what SO_RCVBUF allows.
fn reserve_receive_buffer(sock: &UdpSocket) {
    use nix::sys::socket::{setsockopt, sockopt};
    if setsockopt(sock, sockopt::RcvBufForce, &UDP_RECV_BUFFER).is_err() {
        let _ = setsockopt(sock, sockopt::RcvBuf, &UDP_RECV_BUFFER);
    }
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

pub(crate) fn run_job(job: &Job, prepared: Prepared) -> Result<(Value, Held)> {
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

pub(crate) fn holds(job: &Job) -> bool {
    matches!(
        job,
        Job::TcpServer { .. } | Job::TcpClient { .. } | Job::HoldMemory { .. } | Job::Idle
    )
}
