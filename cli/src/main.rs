//! The `podnet` command. Argument parsing lives here; the pipeline lives in the library.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

use podnet::stats::{self, StatsArgs};

/// Per-pod network, socket, file and memory accounting for the Kubernetes node you are on.
///
/// podnet finds the pods scheduled to this node, attaches eBPF programs to each pod's cgroup v2
/// directory, and counts what every pod does: bytes and packets in and out, sockets created and
/// closed, TCP connections opened and segments retransmitted, files opened (and failed opens),
/// open file descriptors and sockets, and memory. Programs detach when podnet exits, however it
/// exits.
#[derive(Parser, Debug)]
#[command(name = "podnet", version, propagate_version = true)]
#[command(after_help = "\
Examples:
  sudo podnet stats                          one interval (1 s), every pod on this node
  sudo podnet stats --watch                  redraw every interval until Ctrl-C, like top
  sudo podnet stats -o json | jq '.items[] | {pod, tx: .network.txBytes}'
  sudo podnet stats -n shop -l app=web --sort tx -o wide --containers
  kubectl get pods -A -o json | sudo podnet stats --pods-from -

Needs root, or CAP_BPF + CAP_PERFMON + CAP_NET_ADMIN, Linux >= 5.10 and pods with cgroup v2
directories. Set RUST_LOG=debug to see discovery, resolved cgroups, attach/detach and map reads.")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Attach to this node's pods, sample, and print per-pod statistics.
    Stats(StatsArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("warn"))
        .format_timestamp_millis()
        .init();
    match cli.command {
        Command::Stats(args) => stats::main(args),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn kubectl_style_flags_parse() {
        let cli = Cli::try_parse_from([
            "podnet",
            "stats",
            "-n",
            "shop",
            "-l",
            "app=web",
            "--sort",
            "tx",
            "-o",
            "wide",
            "--containers",
            "--interval",
            "500ms",
        ])
        .unwrap();
        let Command::Stats(a) = cli.command;
        assert_eq!(a.namespace.as_deref(), Some("shop"));
        assert_eq!(a.selector.as_deref(), Some("app=web"));
        assert!(a.containers);
        assert_eq!(a.interval, std::time::Duration::from_millis(500));
    }

    #[test]
    fn namespace_and_all_namespaces_conflict() {
        assert!(Cli::try_parse_from(["podnet", "stats", "-n", "a", "-A"]).is_err());
    }

    #[test]
    fn bad_interval_is_a_usage_error() {
        let e = Cli::try_parse_from(["podnet", "stats", "--interval", "soon"]).unwrap_err();
        assert!(e.to_string().contains("interval"), "{e}");
    }
}
