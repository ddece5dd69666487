//! The `podnet` command. Argument parsing lives here; the pipeline lives in the library.

use std::process::ExitCode;

use clap::{CommandFactory, Parser, Subcommand};

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
#[allow(clippy::large_enum_variant)]
enum Command {
    /// Attach to this node's pods, sample, and print per-pod statistics.
    #[command(after_help = stats::EXIT_STATUS_HELP)]
    Stats(StatsArgs),
    /// Run always on (one per node, the DaemonSet): watch this node's pods, keep their programs
    /// pinned across restarts, and serve Prometheus metrics.
    Agent(podnet::agent::AgentArgs),
    /// Print a shell completion script: `source <(podnet completion bash)`, or install it where
    /// your shell looks (`make install` does).
    Completion {
        /// The shell.
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Write podnet's man pages (podnet.1, podnet-stats.1, ...), generated from this same
    /// command-line definition, into a directory (`make man`).
    #[command(hide = true)]
    Man {
        /// The directory to write the pages into.
        #[arg(value_name = "DIR")]
        dir: std::path::PathBuf,
    },
}

/// Prints the completion script of `shell` for the `podnet` command.
fn completion(shell: clap_complete::Shell, out: &mut dyn std::io::Write) {
    clap_complete::generate(shell, &mut Cli::command(), "podnet", out);
}

/// Writes one man page per visible command into `dir`: `podnet.1`, `podnet-stats.1`, ...
fn man_pages(dir: &std::path::Path) -> std::io::Result<Vec<std::path::PathBuf>> {
    std::fs::create_dir_all(dir)?;
    let mut cmd = Cli::command();
    cmd.build();
    let mut written = Vec::new();
    let mut page = |cmd: clap::Command, name: String| -> std::io::Result<()> {
        let path = dir.join(format!("{name}.1"));
        let mut buf = Vec::new();
        let name: &'static str = name.clone().leak();
        clap_mangen::Man::new(cmd.name(name)).render(&mut buf)?;
        std::fs::write(&path, buf)?;
        written.push(path);
        Ok(())
    };
    for sub in cmd
        .get_subcommands()
        .filter(|c| !c.is_hide_set() && c.get_name() != "help")
    {
        page(sub.clone(), format!("podnet-{}", sub.get_name()))?;
    }
    page(cmd, "podnet".into())?;
    Ok(written)
}

/// The log filter when RUST_LOG is unset: podnet's own crates at `warn`, nothing from its
/// dependencies (kube's client logs each failed request at ERROR, and podnet then explains the
/// same failure in its own one-line message). RUST_LOG replaces all of it.
const DEFAULT_LOG_FILTER: &str = "podnet=warn,podnet_loader=warn";

fn main() -> ExitCode {
    let cli = Cli::parse();
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or(DEFAULT_LOG_FILTER))
        .format_timestamp_millis()
        .init();
    if stdout_at_start::was_closed() {
        eprintln!(
            "error: standard output is closed (`>&-`): podnet has nowhere to print its report; \
             redirect it to a file, or to /dev/null to discard it"
        );
        return ExitCode::FAILURE;
    }
    match cli.command {
        Command::Stats(args) => stats::main(args),
        Command::Agent(args) => podnet::agent::main(args),
        Command::Completion { shell } => {
            completion(shell, &mut std::io::stdout());
            ExitCode::SUCCESS
        }
        Command::Man { dir } => match man_pages(&dir) {
            Ok(pages) => {
                for p in pages {
                    println!("{}", p.display());
                }
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("error: writing man pages into {}: {e}", dir.display());
                ExitCode::FAILURE
            }
        },
    }
}

/// Whether standard output was closed when podnet started (`podnet stats >&-`).
///
/// Rust's runtime opens /dev/null on any of descriptors 0-2 that is closed at start, before `main`
/// runs, so every write to a closed stdout would then succeed and `--watch` would sample forever
/// for nobody. So descriptor 1 is looked at before the runtime does, from `.init_array`: the
/// dynamic loader and libc run those functions before they call the runtime's entry point.
mod stdout_at_start {
    use std::sync::atomic::{AtomicBool, Ordering};

    static CLOSED: AtomicBool = AtomicBool::new(false);

    pub fn was_closed() -> bool {
        CLOSED.load(Ordering::Relaxed)
    }

    /// Duplicating descriptor 1 (above 2, close-on-exec, closed again at once) fails with EBADF
    /// exactly when it is not open.
    #[cfg_attr(not(target_os = "linux"), allow(dead_code))]
    extern "C" fn check() {
        use std::os::fd::AsFd;
        if let Err(e) = std::io::stdout().as_fd().try_clone_to_owned() {
            if e.raw_os_error() == Some(libc::EBADF) {
                CLOSED.store(true, Ordering::Relaxed);
            }
        }
    }

    #[cfg(target_os = "linux")]
    #[used]
    #[link_section = ".init_array"]
    static CHECK: extern "C" fn() = check;
}

#[cfg(test)]
mod tests {
    use super::*;

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
        let Command::Stats(a) = cli.command else {
            panic!("parsed as another command")
        };
        assert_eq!(a.namespace.as_deref(), Some("shop"));
        assert_eq!(a.selector.as_deref(), Some("app=web"));
        assert!(a.containers);
        assert_eq!(a.interval, std::time::Duration::from_millis(500));
    }

    #[test]
    fn stats_and_agent_take_the_same_cluster_flags_with_the_same_help() {
        let flags = [
            "--node",
            "n1",
            "--kubeconfig",
            "/etc/kc",
            "--context",
            "prod",
        ];
        let expected = podnet::discover::ClusterArgs {
            node: Some("n1".into()),
            kubeconfig: Some("/etc/kc".into()),
            context: Some("prod".into()),
        };
        let stats = Cli::try_parse_from(["podnet", "stats"].into_iter().chain(flags)).unwrap();
        let Command::Stats(a) = stats.command else {
            panic!("parsed as another command")
        };
        assert_eq!(a.cluster, expected);
        let agent = Cli::try_parse_from(["podnet", "agent"].into_iter().chain(flags)).unwrap();
        let Command::Agent(a) = agent.command else {
            panic!("parsed as another command")
        };
        assert_eq!(a.cluster, expected);
        let help_of = |name: &str, flag: &str| {
            let mut cmd = Cli::command();
            let sub = cmd.find_subcommand_mut(name).unwrap();
            let arg = sub.get_arguments().find(|a| a.get_id() == flag).unwrap();
            arg.get_help().unwrap().to_string()
        };
        for flag in ["node", "kubeconfig", "context"] {
            assert_eq!(help_of("stats", flag), help_of("agent", flag), "--{flag}");
        }
        assert_eq!(
            a.cluster.discover_options().node,
            "n1",
            "--node is the node discovery uses"
        );
    }

    #[test]
    fn namespace_and_all_namespaces_conflict() {
        assert!(Cli::try_parse_from(["podnet", "stats", "-n", "a", "-A"]).is_err());
    }

    #[test]
    fn watch_iterations_must_be_at_least_1() {
        let e =
            Cli::try_parse_from(["podnet", "stats", "--watch", "--iterations", "0"]).unwrap_err();
        assert_eq!(e.exit_code(), 2, "{e}");
        assert!(e.to_string().contains("--iterations"), "{e}");
        let cli = Cli::try_parse_from(["podnet", "stats", "--watch", "--iterations", "1"]).unwrap();
        let Command::Stats(a) = cli.command else {
            panic!("parsed as another command")
        };
        assert_eq!(a.iterations, Some(1));
    }

    #[test]
    fn stats_help_lists_the_exit_statuses() {
        let mut cmd = Cli::command();
        let help = cmd
            .find_subcommand_mut("stats")
            .unwrap()
            .render_long_help()
            .to_string();
        for needle in [
            "Exit status:",
            "  0 ",
            "  1 ",
            "  2 ",
            "130",
            "SIGINT",
            "143",
            "SIGTERM",
            "EPIPE",
        ] {
            assert!(help.contains(needle), "{needle} not in:\n{help}");
        }
    }

    #[test]
    fn stdout_is_open_in_tests() {
        assert!(!stdout_at_start::was_closed());
    }

    #[test]
    fn kubectl_conventions_parse() {
        let cli = Cli::try_parse_from([
            "podnet",
            "stats",
            "--no-headers",
            "--sum",
            "--interval",
            "1m30s",
        ])
        .unwrap();
        let Command::Stats(a) = cli.command else {
            panic!("parsed as another command")
        };
        assert!(a.no_headers && a.sum);
        assert_eq!(a.interval, std::time::Duration::from_secs(90));
        assert_eq!(a.sort, None);
        // A negative interval is a value (not an unknown flag) that gets the range message.
        for v in ["-1s", "-5"] {
            let e = Cli::try_parse_from(["podnet", "stats", "--interval", v]).unwrap_err();
            assert_eq!(e.exit_code(), 2, "{e}");
            assert!(e.to_string().contains("between 10ms and 24h"), "{v}: {e}");
        }
    }

    #[test]
    fn completions_offer_the_subcommands_and_flags() {
        for shell in [
            clap_complete::Shell::Bash,
            clap_complete::Shell::Zsh,
            clap_complete::Shell::Fish,
        ] {
            let mut out = Vec::new();
            completion(shell, &mut out);
            let text = String::from_utf8(out).unwrap();
            for needle in ["stats", "agent", "--interval", "--no-headers"] {
                assert!(text.contains(needle), "{shell}: no {needle}");
            }
        }
    }

    #[test]
    fn man_pages_are_written_for_every_visible_command() {
        let dir = tempfile::tempdir().unwrap();
        let pages = man_pages(dir.path()).unwrap();
        let names: Vec<String> = pages
            .iter()
            .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
            .collect();
        assert_eq!(
            names,
            [
                "podnet-stats.1",
                "podnet-agent.1",
                "podnet-completion.1",
                "podnet.1"
            ]
        );
        let stats = std::fs::read_to_string(dir.path().join("podnet-stats.1")).unwrap();
        assert!(stats.contains(".TH podnet-stats 1"), "{}", &stats[..200]);
        assert!(stats.contains("interval"));
    }

    #[test]
    fn bad_interval_is_a_usage_error() {
        let e = Cli::try_parse_from(["podnet", "stats", "--interval", "soon"]).unwrap_err();
        assert!(e.to_string().contains("interval"), "{e}");
    }
}
