//! The load driver: every round, one TCP query and one batch of file opens in `report-7d9f`.

use std::net::Ipv4Addr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Result};

use super::workloads::DB_TCP_PORT;
use super::{REPORT_MISSING, REPORT_OPENS, ROUND_PERIOD, TCP_REPLY, TCP_REQUEST};
use crate::sandbox::{NetNs, SandboxContainer, Workload};

/// What the periodic TCP queries and file-open batches did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DriverReport {
    /// Completed TCP queries `report-7d9f` → `db-0` (each one connection, [`TCP_REQUEST`] bytes
    /// up and [`TCP_REPLY`] bytes down).
    pub tcp_queries: u64,
    /// Completed batches of [`REPORT_OPENS`] + [`REPORT_MISSING`] opens in `report-7d9f`.
    pub open_batches: u64,
    /// Rounds that failed, with the reason (empty when all went well).
    pub errors: Vec<String>,
}

/// The periodic part of the load: every [`ROUND_PERIOD`], one TCP query from `report-7d9f` to
/// `db-0` and one batch of file opens in `report-7d9f`, each a fresh `podnet-sandbox` process.
pub(super) struct Driver {
    pub(super) stop: Arc<AtomicBool>,
    pub(super) deadline: Instant,
    pub(super) db_ns: Arc<NetNs>,
    pub(super) report_ns: Arc<NetNs>,
    pub(super) db: SandboxContainer,
    pub(super) report: SandboxContainer,
    pub(super) db_addr: Ipv4Addr,
    pub(super) open_path: String,
}

impl Driver {
    fn stopping(&self) -> bool {
        self.stop.load(Ordering::SeqCst) || Instant::now() >= self.deadline
    }

    pub(super) fn run(self) -> DriverReport {
        let mut report = DriverReport::default();
        while !self.stopping() {
            let tick = Instant::now();
            match self.tcp_query() {
                Ok(()) => report.tcp_queries += 1,
                // Stopping kills processes mid-round: not an error of the load.
                Err(_) if self.stop.load(Ordering::SeqCst) => break,
                Err(e) => report
                    .errors
                    .push(format!("TCP query report-7d9f -> db-0: {e:#}")),
            }
            if self.stopping() {
                break;
            }
            match self.open_batch() {
                Ok(()) => report.open_batches += 1,
                Err(_) if self.stop.load(Ordering::SeqCst) => break,
                Err(e) => report
                    .errors
                    .push(format!("file opens in report-7d9f: {e:#}")),
            }
            while !self.stopping() && tick.elapsed() < ROUND_PERIOD {
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        report
    }

    fn tcp_query(&self) -> Result<()> {
        let to = format!("{}:{DB_TCP_PORT}", self.db_addr);
        let (req, reply) = (TCP_REQUEST.to_string(), TCP_REPLY.to_string());
        let mut server = Workload::spawn_in(
            &[
                "tcp-server",
                "--bind",
                &to,
                "--reply",
                &reply,
                "--expect",
                &req,
                "--timeout-ms",
                "5000",
            ],
            Some(&self.db_ns),
            &self.db,
        )?;
        server.set_timeout(Duration::from_secs(10));
        server.wait_ready()?;
        let mut client = Workload::spawn_in(
            &[
                "tcp-client",
                "--to",
                &to,
                "--bytes",
                &req,
                "--expect",
                &reply,
                "--timeout-ms",
                "5000",
            ],
            Some(&self.report_ns),
            &self.report,
        )?;
        client.set_timeout(Duration::from_secs(10));
        client.wait_ready()?;
        server.go()?;
        client.go()?;
        let c = client.result()?;
        let s = server.result()?;
        if c["received"].as_u64() != Some(TCP_REPLY) || s["received"].as_u64() != Some(TCP_REQUEST)
        {
            bail!("short exchange: client {c}, server {s}");
        }
        // The client closes first, so the server's port is free again at once.
        client.release()?;
        server.release()?;
        Ok(())
    }

    fn open_batch(&self) -> Result<()> {
        let (count, missing) = (REPORT_OPENS.to_string(), REPORT_MISSING.to_string());
        let mut w = Workload::spawn_in(
            &[
                "open",
                "--path",
                &self.open_path,
                "--count",
                &count,
                "--missing",
                &missing,
            ],
            Some(&self.report_ns),
            &self.report,
        )?;
        w.set_timeout(Duration::from_secs(10));
        w.go()?;
        let v = w.result()?;
        if v["opened"].as_u64() != Some(REPORT_OPENS)
            || v["failed"].as_u64() != Some(REPORT_MISSING)
        {
            bail!("unexpected open results {v}");
        }
        let status = w.wait_exit()?;
        if !status.success() {
            bail!("podnet-sandbox open exited with {status}");
        }
        Ok(())
    }
}
