//! `podnet stats --watch` in a real terminal: tmux runs it (against the stub API server and
//! sandbox pods, as the other end-to-end tests do) in a pane of a fixed size, and the pane is read
//! back with `capture-pane`. The screen must fit the pane, keep its header, answer its keys, and
//! give the terminal back as it was.

mod common;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use common::{podnet_bin, wait_detached, Cluster, NODE};
use podnet_testing::sandbox::{require_privileges, Layout, Qos, SandboxPod};

/// A tmux server of its own (its own socket), killed when dropped.
struct Tmux {
    socket: String,
    dir: tempfile::TempDir,
}

const SESSION: &str = "podnet";

impl Tmux {
    /// Starts `podnet stats --watch` with `args` in a `cols` × `rows` pane, after a marker line;
    /// when podnet exits the pane shows its exit status.
    fn start(c: &Cluster, cols: u16, rows: u16, args: &[&str], env: &str) -> Tmux {
        let dir = tempfile::tempdir().unwrap();
        let socket = format!("podnet-test-{}-{cols}x{rows}", std::process::id());
        let script = dir.path().join("run.sh");
        std::fs::write(
            &script,
            format!(
                "{env}\necho BEFORE-PODNET\n'{bin}' stats --kubeconfig '{kc}' --node {NODE} {args} 2>'{err}'\necho \"EXIT=$?\"\nsleep 600\n",
                bin = podnet_bin().display(),
                kc = c.kubeconfig.path().display(),
                args = args.join(" "),
                err = dir.path().join("stderr").display(),
            ),
        )
        .unwrap();
        let t = Tmux { socket, dir };
        let st = t
            .cmd()
            .args(["-f", "/dev/null", "new-session", "-d", "-s", SESSION])
            .args(["-x", &cols.to_string(), "-y", &rows.to_string()])
            .arg(format!("sh '{}'", script.display()))
            .status()
            .expect("running tmux");
        assert!(st.success(), "tmux new-session failed");
        t
    }

    fn cmd(&self) -> Command {
        let mut c = Command::new("tmux");
        c.args(["-L", &self.socket]);
        c
    }

    /// The visible pane, one string per line (trailing spaces trimmed by tmux).
    fn capture(&self) -> Vec<String> {
        let out = self
            .cmd()
            .args(["capture-pane", "-p", "-t", SESSION])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(String::from)
            .collect()
    }

    fn format(&self, f: &str) -> String {
        let out = self
            .cmd()
            .args(["display-message", "-p", "-t", SESSION, f])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }

    fn keys(&self, keys: &str) {
        let st = self
            .cmd()
            .args(["send-keys", "-t", SESSION, keys])
            .status()
            .unwrap();
        assert!(st.success());
    }

    fn stderr(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("stderr")).unwrap_or_default()
    }

    /// Waits (bounded) until the pane satisfies `ok`; returns it.
    fn wait_for(&self, what: &str, ok: impl Fn(&[String]) -> bool) -> Vec<String> {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let screen = self.capture();
            if ok(&screen) {
                return screen;
            }
            assert!(
                Instant::now() < deadline,
                "{what}: not within 30 s; the pane:\n{}\nstderr:\n{}",
                screen.join("\n"),
                self.stderr()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = self.cmd().arg("kill-server").status();
    }
}

fn pods(c: &mut Cluster) -> Vec<SandboxPod> {
    vec![
        c.pod(
            "shop",
            "web-0",
            Layout::SystemdContainerd,
            Qos::Burstable,
            &["web"],
        ),
        c.pod(
            "batch",
            "a-report-with-a-very-long-generated-name-7d9f8c6b5-xk2p9",
            Layout::Cgroupfs,
            Qos::BestEffort,
            &["report"],
        ),
    ]
}

fn dirs(pods: &[SandboxPod]) -> Vec<&Path> {
    pods.iter().map(|p| p.dir.as_path()).collect()
}

/// The frame podnet draws: its header line, the column headers, both pods, the key line.
fn is_frame(s: &[String]) -> bool {
    s.first()
        .is_some_and(|l| l.starts_with(&format!("podnet {NODE} · ")))
        && s.iter().any(|l| l.starts_with("NAMESPACE"))
        && s.iter().any(|l| l.contains("web-0"))
        && s.iter().any(|l| l.contains("a-report"))
}

fn fits(s: &[String], cols: usize, rows: usize) {
    assert!(s.len() <= rows, "{} lines:\n{}", s.len(), s.join("\n"));
    for l in s {
        assert!(l.chars().count() <= cols, "wider than {cols}: {l}");
    }
}

#[test]
fn the_watch_screen_fits_80x24_keeps_its_header_and_q_restores_the_terminal() {
    if !require_privileges(
        "the_watch_screen_fits_80x24_keeps_its_header_and_q_restores_the_terminal",
    ) {
        return;
    }
    let mut c = Cluster::new("screen80");
    let pods = pods(&mut c);
    let t = Tmux::start(&c, 80, 24, &["--watch", "--interval", "300ms"], "");
    let first = t.wait_for("the first frame", is_frame);
    fits(&first, 80, 24);
    assert_eq!(
        t.format("#{alternate_on}"),
        "1",
        "not on the alternate screen"
    );
    // Counting: the programs are attached to both pods.
    for d in dirs(&pods) {
        assert_eq!(common::attached_programs(d), 5);
    }
    assert!(first[0].contains("2 pods"), "{}", first[0]);
    assert!(
        first[0].contains("every 0.3s") && first[0].contains("warning") && first[0].contains("rx "),
        "{}",
        first[0]
    );
    // Later frames: the header stays on top and the columns stay where they were.
    let col = |s: &[String], h: &str| {
        s.iter()
            .find(|l| l.starts_with("NAMESPACE"))
            .and_then(|l| l.find(h))
    };
    let history = t.format("#{history_size}");
    std::thread::sleep(Duration::from_millis(1200));
    let later = t.wait_for("a later frame", is_frame);
    fits(&later, 80, 24);
    // The key line carries the time of the frame: it moved on.
    assert_ne!(first.last(), later.last(), "no new frame in 4 intervals");
    for h in ["POD", "RX/S", "TX/S", "MEMORY"] {
        assert_eq!(col(&first, h), col(&later, h), "{h} moved");
    }
    assert_eq!(t.format("#{history_size}"), history, "the scrollback grew");
    assert_eq!(history, "0");
    // Sort keys and pause are shown in the key line.
    t.keys("n");
    let named = t.wait_for("sorted by name", |s| {
        s.last().is_some_and(|l| l.contains("sort: name"))
    });
    let batch = named.iter().position(|l| l.starts_with("batch")).unwrap();
    let shop = named.iter().position(|l| l.starts_with("shop")).unwrap();
    assert!(batch < shop, "{}", named.join("\n"));
    t.keys("p");
    t.wait_for("paused", |s| s.last().is_some_and(|l| l.contains("PAUSED")));
    t.keys("p");
    t.wait_for("running again", |s| {
        s.last()
            .is_some_and(|l| !l.contains("PAUSED") && l.contains("q: quit"))
    });
    // q: podnet ends with 0 and the terminal is as it was, the marker line before podnet still
    // there and nothing of the watch screen left.
    t.keys("q");
    let after = t.wait_for("podnet's exit", |s| {
        s.iter().any(|l| l.starts_with("EXIT="))
    });
    assert!(after.iter().any(|l| l == "EXIT=0"), "{}", after.join("\n"));
    assert!(
        after.iter().any(|l| l == "BEFORE-PODNET"),
        "{}",
        after.join("\n")
    );
    assert!(
        !after
            .iter()
            .any(|l| l.contains("NAMESPACE") || l.contains(" pods · ")),
        "the watch screen is still visible:\n{}",
        after.join("\n")
    );
    assert_eq!(t.format("#{alternate_on}"), "0");
    assert_eq!(t.format("#{history_size}"), "0", "the scrollback grew");
    for d in dirs(&pods) {
        wait_detached(d);
    }
}

#[test]
fn the_watch_screen_fits_60x10_cuts_names_and_ctrl_c_quits() {
    if !require_privileges("the_watch_screen_fits_60x10_cuts_names_and_ctrl_c_quits") {
        return;
    }
    let mut c = Cluster::new("screen60");
    let pods = pods(&mut c);
    let t = Tmux::start(
        &c,
        60,
        10,
        &[
            "--watch",
            "--interval",
            "300ms",
            "-o",
            "wide",
            "--containers",
        ],
        "",
    );
    let s = t.wait_for("the first frame", |s| {
        s.first()
            .is_some_and(|l| l.starts_with(&format!("podnet {NODE} · ")))
            && s.iter().any(|l| l.starts_with("NAMESPACE"))
            && s.iter().any(|l| l.contains("a-report"))
    });
    fits(&s, 60, 10);
    // The long name is cut with an ellipsis on its row, not wrapped onto another line.
    let row = s.iter().find(|l| l.contains("a-report")).unwrap();
    assert!(row.contains('…'), "{row}");
    assert!(!s.iter().any(|l| l.contains("xk2p9")), "{}", s.join("\n"));
    // Ctrl-C in the screen (a key in raw mode) ends it like q.
    std::thread::sleep(Duration::from_millis(700));
    fits(&t.capture(), 60, 10);
    assert_eq!(t.format("#{history_size}"), "0");
    t.keys("C-c");
    let after = t.wait_for("podnet's exit", |s| {
        s.iter().any(|l| l.starts_with("EXIT="))
    });
    assert!(after.iter().any(|l| l == "EXIT=0"), "{}", after.join("\n"));
    assert_eq!(t.format("#{alternate_on}"), "0");
    for d in dirs(&pods) {
        wait_detached(d);
    }
}

#[test]
fn sigterm_gives_the_terminal_back() {
    if !require_privileges("sigterm_gives_the_terminal_back") {
        return;
    }
    let mut c = Cluster::new("screenterm");
    let pods = pods(&mut c);
    let t = Tmux::start(&c, 80, 24, &["--watch", "--interval", "300ms"], "");
    t.wait_for("the first frame", is_frame);
    let pid = Command::new("pgrep")
        .args([
            "-f",
            "-n",
            &format!("kubeconfig {}", c.kubeconfig.path().display()),
        ])
        .output()
        .unwrap();
    let pid: i32 = String::from_utf8_lossy(&pid.stdout).trim().parse().unwrap();
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::SIGTERM).unwrap();
    let after = t.wait_for("podnet's exit", |s| {
        s.iter().any(|l| l.starts_with("EXIT="))
    });
    assert!(
        after.iter().any(|l| l == "EXIT=143"),
        "{}",
        after.join("\n")
    );
    assert!(
        !after.iter().any(|l| l.contains("NAMESPACE")),
        "{}",
        after.join("\n")
    );
    assert_eq!(t.format("#{alternate_on}"), "0");
    for d in dirs(&pods) {
        wait_detached(d);
    }
}

#[test]
fn without_a_capable_terminal_the_watch_is_plain_lines() {
    if !require_privileges("without_a_capable_terminal_the_watch_is_plain_lines") {
        return;
    }
    let mut c = Cluster::new("screendumb");
    let _pods = pods(&mut c);
    let t = Tmux::start(
        &c,
        200,
        50,
        &[
            "--watch",
            "--interval",
            "300ms",
            "--iterations",
            "2",
            "--sum",
        ],
        "export TERM=dumb",
    );
    let s = t.wait_for("podnet's exit", |s| {
        s.iter().any(|l| l.starts_with("EXIT="))
    });
    assert!(s.iter().any(|l| l == "EXIT=0"), "{}", s.join("\n"));
    assert_eq!(t.format("#{alternate_on}"), "0");
    // Two frames, one after the other, each with its header, table and TOTAL row.
    let headers = s
        .iter()
        .filter(|l| l.starts_with(&format!("podnet {NODE} · ")))
        .count();
    let totals = s.iter().filter(|l| l.starts_with("TOTAL ")).count();
    assert_eq!((headers, totals), (2, 2), "{}", s.join("\n"));
    // The long name is whole: nothing is cut outside the screen.
    assert!(s.iter().any(|l| l.contains("-xk2p9")), "{}", s.join("\n"));
}
