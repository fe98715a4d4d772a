//! Idle sessions: what each one costs the server in memory, and whether that memory comes
//! back when they close.

use crate::client::{self, Protocol};
use crate::procfs;
use futures_util::{StreamExt, stream};
use serde::Serialize;
use std::time::{Duration, Instant};

#[derive(Debug, Clone, Serialize)]
pub struct IdleReport {
    /// Sessions asked for and sessions actually opened.
    pub sessions: usize,
    pub opened: usize,
    pub open_seconds: f64,
    /// Server RSS: fresh, with the sessions open, after closing them, and after opening and
    /// closing the same number once more (growth there would be a leak).
    pub rss_fresh_kb: u64,
    pub rss_open_kb: u64,
    pub rss_closed_kb: u64,
    pub rss_second_round_closed_kb: u64,
    /// RSS [`SETTLED`] after the second round closed: an allocator may hand freed memory
    /// back in steps over several seconds.
    pub rss_settled_kb: u64,
    pub settled_after_seconds: f64,
    /// The server's open sockets then: connections the client keeps alive for reuse stay
    /// open after their sessions end, each with its buffers.
    pub sockets_settled: u64,
    pub per_session_kb: f64,
    pub error_samples: Vec<String>,
}

/// Time for the server to drop what closed sessions held before memory is read.
const SETTLE: Duration = Duration::from_secs(3);
/// When memory is read the last time, after the last close (jemalloc's background thread
/// had returned what it would within about 10 s).
const SETTLED: Duration = Duration::from_secs(20);

pub async fn run(
    http: &reqwest::Client,
    base: &str,
    key: Option<&str>,
    pid: u32,
    sessions: usize,
    parallel: usize,
) -> anyhow::Result<IdleReport> {
    let rss = || procfs::rss_kb(pid).unwrap_or(0);
    tokio::time::sleep(Duration::from_secs(1)).await;
    let rss_fresh_kb = rss();
    let mut errors = Vec::new();

    let started = Instant::now();
    let (clients, failed) = open(http, base, key, sessions, parallel, &mut errors).await;
    let open_seconds = started.elapsed().as_secs_f64();
    let opened = clients.len();
    tokio::time::sleep(SETTLE).await;
    let rss_open_kb = rss();
    close(clients).await;
    tokio::time::sleep(SETTLE).await;
    let rss_closed_kb = rss();

    let (again, _) = open(http, base, key, sessions, parallel, &mut errors).await;
    close(again).await;
    let closed = Instant::now();
    tokio::time::sleep(SETTLE).await;
    let rss_second_round_closed_kb = rss();
    tokio::time::sleep(SETTLED.saturating_sub(closed.elapsed())).await;
    let rss_settled_kb = rss();
    let sockets_settled = procfs::open_files(pid).map_or(0, |(_, sockets)| sockets);
    let settled_after_seconds = closed.elapsed().as_secs_f64();
    if failed > 0 {
        errors.push(format!(
            "{failed} sessions failed to open in the first round"
        ));
    }
    Ok(IdleReport {
        sessions,
        opened,
        open_seconds,
        rss_fresh_kb,
        rss_open_kb,
        rss_closed_kb,
        rss_second_round_closed_kb,
        rss_settled_kb,
        settled_after_seconds,
        sockets_settled,
        per_session_kb: rss_open_kb.saturating_sub(rss_fresh_kb) as f64 / opened.max(1) as f64,
        error_samples: errors,
    })
}

async fn open(
    http: &reqwest::Client,
    base: &str,
    key: Option<&str>,
    n: usize,
    parallel: usize,
    errors: &mut Vec<String>,
) -> (Vec<client::Client>, usize) {
    let results: Vec<_> = stream::iter(0..n)
        .map(|_| client::connect(http, base, key, Protocol::Handshake))
        .buffer_unordered(parallel)
        .collect()
        .await;
    let mut clients = Vec::with_capacity(n);
    let mut failed = 0;
    for r in results {
        match r {
            Ok(c) => clients.push(c),
            Err(e) => {
                failed += 1;
                if errors.len() < 5 {
                    errors.push(format!("{e:#}"));
                }
            }
        }
    }
    (clients, failed)
}

async fn close(clients: Vec<client::Client>) {
    stream::iter(clients.into_iter().map(|c| c.close()))
        .buffer_unordered(256)
        .collect::<Vec<_>>()
        .await;
}
