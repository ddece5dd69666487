//! The command line: global options, then one job with its options, parsed and checked by clap.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Parser, Subcommand};

/// Options that apply to every job.
#[derive(Debug, Default)]
pub(crate) struct Global {
    pub(crate) netns: Option<String>,
    pub(crate) cgroup: Option<PathBuf>,
    pub(crate) memcg: Option<PathBuf>,
    pub(crate) hold: bool,
}

/// A job with its options, fully parsed and validated before the process joins any cgroup.
#[derive(Debug)]
pub(crate) enum Job {
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
pub(crate) struct Demo {
    pub(crate) seconds: f64,
    pub(crate) to: Option<SocketAddr>,
    pub(crate) rate: u64,
    pub(crate) size: usize,
    pub(crate) bind: Option<SocketAddr>,
    pub(crate) sockets_per_sec: u64,
    pub(crate) opens_per_sec: u64,
    pub(crate) open_path: PathBuf,
    pub(crate) mib: usize,
}

/// The command line. Parsed and checked completely before the process joins any namespace or
/// cgroup; [`Cli::into_parts`] turns it into what the process runs.
#[derive(Debug, Parser)]
#[command(
    name = "podnet-sandbox",
    about = "The workload process of podnet's sandbox pods: one exactly counted job inside a container's cgroup",
    long_about = "The workload process of podnet's sandbox pods (driven by podnet_testing::sandbox::Workload).\n\n\
        It joins a network namespace (--netns), moves itself into a container's cgroups (--memcg, then \
        --cgroup), prepares what peers need (bound sockets), prints {\"ready\":true,\"pid\":N} and waits for a \
        line on stdin (EOF: exit 0). Then it does exactly its job, closes what the job opened, and prints one \
        JSON result line ({\"error\":\"...\"} and exit 1 on failure). Holding jobs (tcp-server, tcp-client, \
        hold-memory, idle, or any job with --hold) then wait for another line or EOF before they exit.\n\n\
        After joining the cgroup it opens no file and no socket other than its job's, which is what lets \
        tests assert exact counts.",
    after_help = "Examples:\n  \
        podnet-sandbox --netns podnet-a udp-send --to 198.18.0.2:9000 --count 37 --size 1000\n  \
        podnet-sandbox --cgroup /sys/fs/cgroup/pod/ctr open --path /etc/hostname --count 123 --missing 17\n  \
        podnet-sandbox tcp-server --bind 198.18.0.2:5432 --reply 262144 --expect 2048\n\n\
        Every job's options: podnet-sandbox help <JOB>",
    subcommand_required = true,
    args_override_self = true
)]
pub(crate) struct Cli {
    /// Join this network namespace first: a name under /run/netns, or a path
    #[arg(long, value_name = "NAME|PATH")]
    netns: Option<String>,
    /// Move into this cgroup v2 directory (writes the pid to its cgroup.procs)
    #[arg(long, value_name = "DIR")]
    cgroup: Option<PathBuf>,
    /// Move into this v1 memory cgroup directory too (hybrid hosts), before --cgroup
    #[arg(long, value_name = "DIR")]
    memcg: Option<PathBuf>,
    /// After the result line, hold until another line or EOF on stdin, whatever the job
    #[arg(long)]
    hold: bool,
    #[command(subcommand)]
    job: JobArgs,
}

/// The jobs, as typed on the command line.
#[derive(Debug, Subcommand)]
enum JobArgs {
    /// Send exactly COUNT UDP datagrams of SIZE payload bytes from one socket
    ///
    /// Result: {"job":"udp-send","sent":N,"bytes":N,"errors":N,"lastError":...}
    UdpSend {
        /// Destination, a literal IP:PORT (no name resolution: it would open files)
        #[arg(long, value_name = "IP:PORT")]
        to: SocketAddr,
        /// Datagrams to send
        #[arg(long)]
        count: u64,
        /// Payload bytes of each datagram (at most 65507, the largest UDP/IPv4 payload)
        #[arg(long, value_parser = udp_payload_size)]
        size: usize,
        /// Pause between datagrams, in microseconds
        #[arg(long, value_name = "US", default_value_t = 0)]
        interval_us: u64,
    },
    /// Receive datagrams until COUNT arrived or the timeout passed (the socket is bound before ready)
    ///
    /// Result: {"job":"udp-recv","received":N,"bytes":N,"timedOut":bool}
    UdpRecv {
        /// Address to bind, IP:PORT
        #[arg(long, value_name = "IP:PORT")]
        bind: SocketAddr,
        /// Datagrams to wait for
        #[arg(long)]
        count: u64,
        /// Give up this many milliseconds after go
        #[arg(long, value_name = "MS", default_value_t = DEFAULT_TIMEOUT_MS)]
        timeout_ms: u64,
    },
    /// Accept one TCP connection, read EXPECT bytes (or until EOF), write REPLY bytes, hold it
    ///
    /// The listener is bound before ready. Result: {"job":"tcp-server","received":N,"sent":N,"peer":"IP:PORT"}
    TcpServer {
        /// Address to listen on, IP:PORT
        #[arg(long, value_name = "IP:PORT")]
        bind: SocketAddr,
        /// Bytes to write back
        #[arg(long, value_name = "BYTES")]
        reply: usize,
        /// Bytes to read before replying [default: read until the peer half-closes]
        #[arg(long, value_name = "BYTES")]
        expect: Option<u64>,
        /// Timeout of the accept, each read and each write, in milliseconds
        #[arg(long, value_name = "MS", default_value_t = DEFAULT_TIMEOUT_MS)]
        timeout_ms: u64,
    },
    /// Connect, write BYTES, read EXPECT bytes, hold the connection
    ///
    /// Result: {"job":"tcp-client","sent":N,"received":N,"local":"IP:PORT"}
    TcpClient {
        /// Server, a literal IP:PORT
        #[arg(long, value_name = "IP:PORT")]
        to: SocketAddr,
        /// Bytes to write
        #[arg(long)]
        bytes: usize,
        /// Bytes to read back
        #[arg(long, value_name = "BYTES")]
        expect: usize,
        /// Half-close (shutdown SHUT_WR) after writing
        #[arg(long)]
        shutdown: bool,
        /// Timeout of the connect, each read and each write, in milliseconds
        #[arg(long, value_name = "MS", default_value_t = DEFAULT_TIMEOUT_MS)]
        timeout_ms: u64,
    },
    /// Open PATH exactly COUNT times and a missing path MISSING times, closing each
    ///
    /// Result: {"job":"open","opened":N,"failed":N,"openErrors":N,"unexpectedOpens":N}: openErrors
    /// counts failed opens of PATH, unexpectedOpens successful opens of the missing path.
    Open {
        /// The file to open (must exist)
        #[arg(long)]
        path: PathBuf,
        /// Successful opens
        #[arg(long)]
        count: u64,
        /// Failing opens (ENOENT)
        #[arg(long, default_value_t = 0)]
        missing: u64,
        /// The path whose opens fail; must not exist [default: PATH.podnet-missing]
        #[arg(long)]
        missing_path: Option<PathBuf>,
    },
    /// Create and close COUNT UDP sockets
    ///
    /// Result: {"job":"sockets","created":N,"closed":N}
    Sockets {
        /// Sockets to create and close
        #[arg(long)]
        count: u64,
    },
    /// Allocate and touch MIB MiB, hold it
    ///
    /// Result: {"job":"hold-memory","bytes":N}
    HoldMemory {
        /// MiB to allocate and write to
        #[arg(long)]
        mib: usize,
    },
    /// A mixed load for SECONDS: datagrams, socket churn, file opens, memory held (make demo)
    ///
    /// Sends RATE datagrams/s of SIZE bytes to --to, receives whatever arrives at --bind (bound
    /// before ready), creates and closes sockets, opens a file, holds MIB MiB. Result:
    /// {"job":"demo","udpSent":N,"udpReceived":N,"socketsCreated":N,"opens":N,"bytesHeld":N,"seconds":S}
    Demo {
        /// How long the load runs, in seconds (more than 0, at most 86400)
        #[arg(long, value_parser = demo_seconds)]
        seconds: f64,
        /// Where to send datagrams, IP:PORT [default: send none]
        #[arg(long, value_name = "IP:PORT")]
        to: Option<SocketAddr>,
        /// Datagrams per second to --to
        #[arg(long, default_value_t = 100)]
        rate: u64,
        /// Payload bytes of each datagram
        #[arg(long, default_value_t = 200)]
        size: usize,
        /// Address to receive datagrams on, IP:PORT [default: receive none]
        #[arg(long, value_name = "IP:PORT")]
        bind: Option<SocketAddr>,
        /// Sockets created and closed per second
        #[arg(long, value_name = "N", default_value_t = 5)]
        sockets_per_sec: u64,
        /// Opens of --open-path per second
        #[arg(long, value_name = "N", default_value_t = 20)]
        opens_per_sec: u64,
        /// The file opened
        #[arg(long, value_name = "PATH", default_value = "/proc/self/status")]
        open_path: PathBuf,
        /// MiB allocated, touched and held
        #[arg(long, default_value_t = 16)]
        mib: usize,
    },
    /// Nothing; hold until released
    ///
    /// Result: {"job":"idle"}
    Idle,
}

/// `--timeout-ms` when not given.
const DEFAULT_TIMEOUT_MS: u64 = 20_000;

fn udp_payload_size(s: &str) -> Result<usize, String> {
    let size: usize = s
        .parse()
        .map_err(|_| format!("{s:?} is not a valid number"))?;
    if size > 65_507 {
        return Err(format!(
            "{size} exceeds the largest UDP/IPv4 payload (65507)"
        ));
    }
    Ok(size)
}

fn demo_seconds(s: &str) -> Result<f64, String> {
    let seconds: f64 = s
        .parse()
        .map_err(|_| format!("{s:?} is not a valid number"))?;
    if !(seconds > 0.0 && seconds <= 86_400.0) {
        return Err("must be in (0, 86400]".into());
    }
    Ok(seconds)
}

impl Cli {
    pub(crate) fn into_parts(self) -> (Global, Job) {
        let global = Global {
            netns: self.netns,
            cgroup: self.cgroup,
            memcg: self.memcg,
            hold: self.hold,
        };
        let ms = Duration::from_millis;
        let job = match self.job {
            JobArgs::UdpSend {
                to,
                count,
                size,
                interval_us,
            } => Job::UdpSend {
                to,
                count,
                size,
                interval: Duration::from_micros(interval_us),
            },
            JobArgs::UdpRecv {
                bind,
                count,
                timeout_ms,
            } => Job::UdpRecv {
                bind,
                count,
                timeout: ms(timeout_ms),
            },
            JobArgs::TcpServer {
                bind,
                reply,
                expect,
                timeout_ms,
            } => Job::TcpServer {
                bind,
                reply,
                expect,
                timeout: ms(timeout_ms),
            },
            JobArgs::TcpClient {
                to,
                bytes,
                expect,
                shutdown,
                timeout_ms,
            } => Job::TcpClient {
                to,
                bytes,
                expect,
                shutdown,
                timeout: ms(timeout_ms),
            },
            JobArgs::Open {
                path,
                count,
                missing,
                missing_path,
            } => Job::Open {
                missing_path: missing_path
                    .unwrap_or_else(|| PathBuf::from(format!("{}.podnet-missing", path.display()))),
                path,
                count,
                missing,
            },
            JobArgs::Sockets { count } => Job::Sockets { count },
            JobArgs::HoldMemory { mib } => Job::HoldMemory { mib },
            JobArgs::Demo {
                seconds,
                to,
                rate,
                size,
                bind,
                sockets_per_sec,
                opens_per_sec,
                open_path,
                mib,
            } => Job::Demo(Demo {
                seconds,
                to,
                rate,
                size,
                bind,
                sockets_per_sec,
                opens_per_sec,
                open_path,
                mib,
            }),
            JobArgs::Idle => Job::Idle,
        };
        (global, job)
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use clap::CommandFactory;

    use super::*;

    /// Parses the arguments after the program name.
    fn parse_args(args: &[String]) -> Result<(Global, Job), clap::Error> {
        let argv = std::iter::once("podnet-sandbox").chain(args.iter().map(String::as_str));
        Ok(Cli::try_parse_from(argv)?.into_parts())
    }

    #[test]
    fn the_command_line_is_well_formed() {
        Cli::command().debug_assert();
    }

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
