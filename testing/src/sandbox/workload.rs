//! [`Workload`]: a `podnet-sandbox` process driven line by line from a test.

use std::ffi::OsStr;
use std::io::{BufRead, BufReader, ErrorKind, Read, Write};
use std::path::Path;
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use serde_json::Value;

use super::{sandbox_bin, NetNs, SandboxContainer};

/// How long [`Workload`] waits for each protocol step (ready line, result line, exit) by default.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(20);

/// A running `podnet-sandbox` workload.
///
/// Protocol (see the binary's documentation for the jobs and their result fields):
/// 1. the process joins the network namespace (`--netns`), then the v1 memory cgroup (`--memcg`)
///    and the v2 cgroup (`--cgroup`), then prepares what must exist before peers start (the
///    bound socket of `udp-recv`, the listening socket of `tcp-server`, the receive socket of
///    `demo --bind`) and prints `{"ready":true,"pid":N}` ([`Workload::wait_ready`]);
/// 2. it waits for a line on stdin ([`Workload::go`]) — attach podnet or take a baseline before —
///    then does exactly its job, closes what it opened for it, and prints one JSON line of results
///    ([`Workload::result`]);
/// 3. holding jobs (`tcp-server`, `tcp-client`, `hold-memory`, `idle`, or any job given `--hold`)
///    keep their connection/memory until another line or EOF arrives ([`Workload::release`]); the
///    others exit by themselves ([`Workload::wait_exit`]).
///
/// After joining the cgroup the process makes no system call that opens files or sockets other
/// than its job, so tests can assert equalities. `Drop` kills the process.
#[derive(Debug)]
pub struct Workload {
    child: Child,
    pid: u32,
    job: String,
    stdin: Option<ChildStdin>,
    lines: Receiver<String>,
    stderr: Arc<Mutex<String>>,
    ready: bool,
    timeout: Duration,
}

impl Workload {
    /// Starts `podnet-sandbox [--netns NAME] [--cgroup DIR] [--memcg DIR] <args...>`, where `args`
    /// is the job and its options, e.g. `["udp-send", "--to", "198.18.0.2:9000", "--count", "10",
    /// "--size", "100"]`. Does not wait for it to be ready.
    pub fn spawn<S: AsRef<OsStr>>(
        args: &[S],
        netns: Option<&NetNs>,
        cgroup: Option<&Path>,
        memcg: Option<&Path>,
    ) -> Result<Workload> {
        let bin = sandbox_bin();
        let mut cmd = Command::new(&bin);
        if let Some(ns) = netns {
            cmd.arg("--netns").arg(ns.name());
        }
        if let Some(dir) = cgroup {
            cmd.arg("--cgroup").arg(dir);
        }
        if let Some(dir) = memcg {
            cmd.arg("--memcg").arg(dir);
        }
        cmd.args(args);
        let job = args
            .first()
            .map(|a| a.as_ref().to_string_lossy().into_owned())
            .unwrap_or_default();
        let mut child = cmd
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .with_context(|| format!("cannot start {}", bin.display()))?;
        let pid = child.id();
        let stdout = child.stdout.take().expect("stdout is piped");
        let stderr_pipe = child.stderr.take().expect("stderr is piped");
        let (tx, lines) = mpsc::channel();
        std::thread::Builder::new()
            .name(format!("sandbox-{pid}-out"))
            .spawn(move || {
                for line in BufReader::new(stdout).lines() {
                    let Ok(line) = line else { break };
                    if tx.send(line).is_err() {
                        break;
                    }
                }
            })
            .context("cannot start stdout reader thread")?;
        let stderr = Arc::new(Mutex::new(String::new()));
        let sink = Arc::clone(&stderr);
        std::thread::Builder::new()
            .name(format!("sandbox-{pid}-err"))
            .spawn(move || {
                let mut pipe = stderr_pipe;
                let mut buf = [0u8; 4096];
                while let Ok(n) = pipe.read(&mut buf) {
                    if n == 0 {
                        break;
                    }
                    if let Ok(mut s) = sink.lock() {
                        s.push_str(&String::from_utf8_lossy(&buf[..n]));
                    }
                }
            })
            .context("cannot start stderr reader thread")?;
        Ok(Workload {
            stdin: child.stdin.take(),
            child,
            pid,
            job,
            lines,
            stderr,
            ready: false,
            timeout: DEFAULT_TIMEOUT,
        })
    }

    /// [`Workload::spawn`] into a sandbox container: its v2 cgroup and, when present, its v1
    /// memory twin.
    pub fn spawn_in<S: AsRef<OsStr>>(
        args: &[S],
        netns: Option<&NetNs>,
        container: &SandboxContainer,
    ) -> Result<Workload> {
        Workload::spawn(
            args,
            netns,
            Some(&container.dir),
            container.memcg.as_deref(),
        )
    }

    /// Sets the bound for each later step (default [`DEFAULT_TIMEOUT`]); a `demo` of S seconds
    /// needs more than S.
    pub fn set_timeout(&mut self, timeout: Duration) {
        self.timeout = timeout;
    }

    /// The workload's pid.
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// Everything the workload wrote to stderr so far.
    pub fn stderr(&self) -> String {
        self.stderr.lock().map(|s| s.clone()).unwrap_or_default()
    }

    /// Waits (bounded) for `{"ready":true,"pid":N}`: the process is in its namespace and cgroups
    /// and has prepared its sockets. Idempotent.
    pub fn wait_ready(&mut self) -> Result<()> {
        if self.ready {
            return Ok(());
        }
        let line = self.next_line("the ready line")?;
        let v: Value = serde_json::from_str(&line).with_context(|| {
            format!(
                "podnet-sandbox {} printed {line:?} instead of the ready line",
                self.job
            )
        })?;
        if v["ready"] != Value::Bool(true) || v["pid"].as_u64() != Some(u64::from(self.pid)) {
            bail!(
                "podnet-sandbox {} (pid {}) printed {line:?} instead of the ready line",
                self.job,
                self.pid
            );
        }
        self.ready = true;
        Ok(())
    }

    /// Tells the workload to do its job (waits for ready first if needed).
    pub fn go(&mut self) -> Result<()> {
        self.wait_ready()?;
        self.send_line("go")
    }

    /// Waits (bounded) for the one JSON line of results. A result carrying `"error"` is returned
    /// as an error.
    pub fn result(&mut self) -> Result<Value> {
        let line = self.next_line("the result line")?;
        let v: Value = serde_json::from_str(&line).with_context(|| {
            format!(
                "podnet-sandbox {} printed {line:?} instead of a JSON result",
                self.job
            )
        })?;
        if let Some(err) = v.get("error") {
            bail!(
                "podnet-sandbox {} failed: {err}; stderr: {}",
                self.job,
                self.stderr().trim()
            );
        }
        Ok(v)
    }

    /// Lets a holding workload finish (sends a line and closes stdin), then waits (bounded) for it
    /// to exit and fails unless it exited successfully. Also fine for a workload that has already
    /// exited.
    pub fn release(&mut self) -> Result<()> {
        if let Some(mut stdin) = self.stdin.take() {
            match stdin.write_all(b"release\n").and_then(|_| stdin.flush()) {
                Ok(()) => {}
                Err(e) if e.kind() == ErrorKind::BrokenPipe => {}
                Err(e) => return Err(e).context("cannot write to the workload's stdin"),
            }
        }
        let status = self.wait_exit()?;
        if !status.success() {
            bail!(
                "podnet-sandbox {} exited with {status}; stderr: {}",
                self.job,
                self.stderr().trim()
            );
        }
        Ok(())
    }

    /// Waits (bounded) for the process to exit and returns its status.
    pub fn wait_exit(&mut self) -> Result<ExitStatus> {
        let deadline = Instant::now() + self.timeout;
        loop {
            if let Some(status) = self
                .child
                .try_wait()
                .context("waiting for podnet-sandbox")?
            {
                return Ok(status);
            }
            if Instant::now() > deadline {
                bail!(
                    "podnet-sandbox {} (pid {}) did not exit within {:?}",
                    self.job,
                    self.pid,
                    self.timeout
                );
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    fn send_line(&mut self, line: &str) -> Result<()> {
        let stdin = self
            .stdin
            .as_mut()
            .ok_or_else(|| anyhow!("podnet-sandbox {} was already released", self.job))?;
        if let Err(e) = stdin
            .write_all(format!("{line}\n").as_bytes())
            .and_then(|_| stdin.flush())
        {
            let status = self.child.try_wait().ok().flatten();
            bail!(
                "cannot write to podnet-sandbox {} ({e}; exit status {status:?}); stderr: {}",
                self.job,
                self.stderr().trim()
            );
        }
        Ok(())
    }

    fn next_line(&mut self, what: &str) -> Result<String> {
        match self.lines.recv_timeout(self.timeout) {
            Ok(line) => Ok(line),
            Err(RecvTimeoutError::Timeout) => bail!(
                "podnet-sandbox {} (pid {}) printed no {what} within {:?}; stderr: {}",
                self.job,
                self.pid,
                self.timeout,
                self.stderr().trim()
            ),
            Err(RecvTimeoutError::Disconnected) => {
                let status = self.wait_exit().ok();
                // Give the stderr thread a moment to collect the last words.
                std::thread::sleep(Duration::from_millis(20));
                bail!(
                    "podnet-sandbox {} (pid {}) exited ({}) before printing {what}; stderr: {}",
                    self.job,
                    self.pid,
                    status.map_or_else(|| "status unknown".to_string(), |s| s.to_string()),
                    self.stderr().trim()
                )
            }
        }
    }
}

impl Drop for Workload {
    fn drop(&mut self) {
        drop(self.stdin.take());
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
        }
        let _ = self.child.wait();
    }
}
