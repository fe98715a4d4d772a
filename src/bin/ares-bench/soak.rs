//! Soak: minutes of steady load — the task lifecycle at a fixed rate, with sessions opened
//! and closed all the while — and the server's memory, open files, sockets and MCP sessions
//! sampled throughout, against a stated bound on their growth.
//!
//! The bound: after the warm-up, anonymous memory (the heap: what a leak grows) may grow by
//! at most `--rss-growth-mb` between the first and the last quarter of the run; once the load
//! stops and every session is closed, the connections to the server and its open MCP sessions
//! return to where they were before the load, and its open files (descriptors other than
//! sockets) to no more than under load. VmRSS is
//! reported too, but not bounded: it counts the pages of the memory-mapped SQLite file, which
//! grow with the data, not with a leak.

use crate::client::{self, Client, Protocol};
use crate::load::Figures;
use crate::procfs;
use crate::workloads;
use futures_util::{StreamExt, stream};
use serde::Serialize;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// What to run and the bound to hold.
pub struct SoakOptions {
    pub rate: f64,
    pub warmup: Duration,
    pub duration: Duration,
    pub sample_every: Duration,
    /// Slots, each one agent working through the lifecycle in its current session.
    pub slots: usize,
    /// Calls a session makes before it is closed and a new one opened for the slot.
    pub session_calls: u64,
    pub protocol: Protocol,
    pub rss_growth_kb: u64,
}

/// One reading of the server.
#[derive(Debug, Clone, Serialize)]
pub struct Sample {
    pub t_s: f64,
    pub rss_kb: u64,
    pub rss_anon_kb: u64,
    pub fds: u64,
    /// Socket descriptors of every kind (the store's connections to PostgreSQL too).
    pub sockets: u64,
    /// TCP connections established to the server's port: its clients.
    pub connections: u64,
    /// `ares_mcp_sessions_open{transport="http"}` from /metrics.
    pub sessions_open: Option<i64>,
    /// Calls answered and failed so far.
    pub calls: u64,
    pub errors: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct SoakReport {
    pub rate: f64,
    pub warmup_s: f64,
    pub seconds: f64,
    pub slots: usize,
    pub session_calls: u64,
    pub sessions_opened: u64,
    /// Calls after the warm-up.
    pub figures: Figures,
    pub before: Sample,
    pub samples: Vec<Sample>,
    /// After the load, every session closed and the client's connections dropped.
    pub after: Sample,
    /// Medians of the first and last quarter of the post-warm-up samples.
    pub anon_early_kb: u64,
    pub anon_late_kb: u64,
    pub anon_growth_kb: i64,
    pub rss_growth_kb: i64,
    pub rss_peak_kb: u64,
    pub fds_peak: u64,
    pub bound_kb: u64,
    pub passed: bool,
    pub failures: Vec<String>,
    pub error_samples: Vec<String>,
}

struct Slot {
    client: Option<Client>,
    agent: String,
    task: String,
    phase: usize,
    calls_in_session: u64,
}

struct Shared {
    http: reqwest::Client,
    base: String,
    key: Option<String>,
    protocol: Protocol,
    session_calls: u64,
    slots: Vec<tokio::sync::Mutex<Slot>>,
    sessions_opened: AtomicU64,
    calls: AtomicU64,
    errors: AtomicU64,
    /// Latencies (µs) of calls scheduled after the warm-up, and a few error messages.
    measured: Mutex<(Vec<u32>, u64, Vec<String>)>,
}

impl Shared {
    /// One call of slot `i`'s lifecycle (create → assign → submit → verify → reliability),
    /// opening a session first if the slot has none, closing it after `session_calls`.
    async fn step(&self, i: usize) -> Result<(), String> {
        let mut slot = self.slots[i].lock().await;
        if slot.client.is_none() {
            let c = client::connect(&self.http, &self.base, self.key.as_deref(), self.protocol)
                .await
                .map_err(|e| format!("connect: {e:#}"))?;
            self.sessions_opened.fetch_add(1, Ordering::Relaxed);
            slot.client = Some(c);
        }
        let s = &mut *slot;
        let c = s.client.as_ref().expect("connected above");
        let outcome = match s.phase {
            0 => workloads::create_task(c, None).await.map(|t| s.task = t),
            1 => workloads::assign(c, &s.task, &s.agent).await,
            2 => workloads::submit(c, &s.agent, &s.task).await,
            3 => workloads::verify(c, &s.task).await,
            _ => workloads::reliability(c, &s.agent).await,
        };
        s.phase = if outcome.is_ok() {
            (s.phase + 1) % 5
        } else {
            0
        };
        s.calls_in_session += 1;
        if s.calls_in_session >= self.session_calls
            && let Some(c) = s.client.take()
        {
            s.calls_in_session = 0;
            c.close().await;
        }
        outcome
    }
}

/// Runs the soak against the server at `base` (process `pid`).
pub async fn run(
    base: &str,
    key: Option<&str>,
    pid: u32,
    o: &SoakOptions,
) -> anyhow::Result<SoakReport> {
    // A client of its own, dropped at the end, so the server's sockets can be seen to close.
    let http = client::http_client();
    let port = base
        .rsplit(':')
        .next()
        .and_then(|p| p.parse().ok())
        .unwrap_or(0);
    let scrape = Scraper {
        http: http.clone(),
        url: format!("{base}/metrics"),
        key: key.map(String::from),
        port,
    };
    let before = read(pid, &scrape, 0.0, 0, 0).await;

    // Each slot's agent, registered once; its sessions come and go.
    let agents: Vec<String> = stream::iter(0..o.slots)
        .map(|_| async {
            let c = client::connect(&http, base, key, o.protocol).await?;
            let agent = workloads::register(&c).await.map_err(anyhow::Error::msg)?;
            c.close().await;
            anyhow::Ok(agent)
        })
        .buffered(16)
        .collect::<Vec<_>>()
        .await
        .into_iter()
        .collect::<Result<_, _>>()?;
    let shared = Arc::new(Shared {
        http: http.clone(),
        base: base.to_string(),
        key: key.map(String::from),
        protocol: o.protocol,
        session_calls: o.session_calls.max(1),
        // Sessions start part-way through their quota, so they end spread over time
        // rather than all at once.
        slots: agents
            .into_iter()
            .enumerate()
            .map(|(i, agent)| {
                tokio::sync::Mutex::new(Slot {
                    client: None,
                    agent,
                    task: String::new(),
                    phase: 0,
                    calls_in_session: i as u64 * o.session_calls.max(1) / o.slots as u64,
                })
            })
            .collect(),
        sessions_opened: AtomicU64::new(o.slots as u64),
        calls: AtomicU64::new(0),
        errors: AtomicU64::new(0),
        measured: Mutex::default(),
    });

    let start = Instant::now();
    let measured_from = start + o.warmup;
    let end = measured_from + o.duration;
    let sampler = {
        let shared = shared.clone();
        let every = o.sample_every;
        let scrape = scrape.clone();
        tokio::spawn(async move {
            let mut samples = Vec::new();
            let mut next = start;
            while next < end {
                tokio::time::sleep_until(next.into()).await;
                let (calls, errors) = (
                    shared.calls.load(Ordering::Relaxed),
                    shared.errors.load(Ordering::Relaxed),
                );
                let t = start.elapsed().as_secs_f64();
                samples.push(read(pid, &scrape, t, calls, errors).await);
                next += every;
            }
            samples
        })
    };
    open_loop(&shared, start, end, measured_from, o.rate).await;
    let mut samples = sampler.await?;
    let t = start.elapsed().as_secs_f64();
    samples.push(
        read(
            pid,
            &scrape,
            t,
            shared.calls.load(Ordering::Relaxed),
            shared.errors.load(Ordering::Relaxed),
        )
        .await,
    );

    // Close every session, drop every connection, let the server let go.
    let shared = Arc::try_unwrap(shared).map_err(|_| anyhow::anyhow!("calls still running"))?;
    let closing = shared
        .slots
        .into_iter()
        .filter_map(|s| s.into_inner().client);
    stream::iter(closing.map(|c| c.close()))
        .buffer_unordered(64)
        .collect::<Vec<_>>()
        .await;
    let (latencies, measured_errors, error_samples) =
        shared.measured.into_inner().expect("measure lock");
    let (calls, errors) = (
        shared.calls.load(Ordering::Relaxed),
        shared.errors.load(Ordering::Relaxed),
    );
    let sessions_opened = shared.sessions_opened.load(Ordering::Relaxed);
    // Every clone of the HTTP client goes, and with it every pooled connection.
    drop(shared.http);
    drop(http);
    let after_scrape = Scraper {
        http: reqwest::Client::new(),
        url: scrape.url.clone(),
        key: scrape.key.clone(),
        port,
    };
    drop(scrape);
    tokio::time::sleep(Duration::from_secs(3)).await;
    // The scrape itself holds a connection: count them before it.
    let mut after = read(pid, &Scraper::none(port), t, calls, errors).await;
    after.sessions_open = after_scrape.sessions_open().await;

    Ok(judge(
        o,
        before,
        samples,
        after,
        sessions_opened,
        Figures::of(latencies, measured_errors, o.duration.as_secs_f64()),
        error_samples,
    ))
}

/// Calls at `rate` per second on a fixed schedule, round-robin over the slots; each call's
/// latency counts from when it was scheduled.
async fn open_loop(shared: &Arc<Shared>, start: Instant, end: Instant, from: Instant, rate: f64) {
    let slots = shared.slots.len();
    let mut inflight = tokio::task::JoinSet::new();
    for k in 0u64.. {
        let at = start + Duration::from_secs_f64(k as f64 / rate);
        if at >= end {
            break;
        }
        tokio::time::sleep_until(at.into()).await;
        let shared = shared.clone();
        inflight.spawn(async move {
            let outcome = shared.step(k as usize % slots).await;
            let latency = at.elapsed();
            shared.calls.fetch_add(1, Ordering::Relaxed);
            if outcome.is_err() {
                shared.errors.fetch_add(1, Ordering::Relaxed);
            }
            if at >= from {
                let mut m = shared.measured.lock().expect("measure lock");
                match outcome {
                    Ok(()) => {
                        m.0.push(latency.as_micros().min(u128::from(u32::MAX)) as u32)
                    }
                    Err(e) => {
                        m.1 += 1;
                        if m.2.len() < 5 {
                            m.2.push(e);
                        }
                    }
                }
            }
        });
        while inflight.try_join_next().is_some() {}
    }
    let drain = tokio::time::timeout(Duration::from_secs(30), async {
        while inflight.join_next().await.is_some() {}
    });
    if drain.await.is_err() {
        inflight.abort_all();
        let mut m = shared.measured.lock().expect("measure lock");
        m.2.push("calls still unanswered 30 s after the load stopped".into());
    }
}

#[derive(Clone)]
struct Scraper {
    http: reqwest::Client,
    url: String,
    key: Option<String>,
    /// The server's port, whose established connections are counted.
    port: u16,
}

impl Scraper {
    /// Reads /proc only.
    fn none(port: u16) -> Scraper {
        Scraper {
            http: reqwest::Client::new(),
            url: String::new(),
            key: None,
            port,
        }
    }

    /// Open HTTP sessions, from the server's own gauge.
    async fn sessions_open(&self) -> Option<i64> {
        if self.url.is_empty() {
            return None;
        }
        let mut request = self.http.get(&self.url);
        if let Some(key) = &self.key {
            request = request.bearer_auth(key);
        }
        let text = request.send().await.ok()?.text().await.ok()?;
        text.lines()
            .find(|l| l.starts_with("ares_mcp_sessions_open{transport=\"http\"}"))
            .and_then(|l| l.split_whitespace().last()?.parse().ok())
            .or(Some(0))
    }
}

async fn read(pid: u32, scrape: &Scraper, t_s: f64, calls: u64, errors: u64) -> Sample {
    let (fds, sockets) = procfs::open_files(pid).unwrap_or((0, 0));
    Sample {
        t_s,
        rss_kb: procfs::rss_kb(pid).unwrap_or(0),
        rss_anon_kb: procfs::status_kb(pid, "RssAnon:").unwrap_or(0),
        fds,
        sockets,
        connections: procfs::established_to(scrape.port),
        sessions_open: scrape.sessions_open().await,
        calls,
        errors,
    }
}

fn median(mut v: Vec<u64>) -> u64 {
    v.sort_unstable();
    v.get(v.len() / 2).copied().unwrap_or(0)
}

fn judge(
    o: &SoakOptions,
    before: Sample,
    samples: Vec<Sample>,
    after: Sample,
    sessions_opened: u64,
    figures: Figures,
    error_samples: Vec<String>,
) -> SoakReport {
    let warm = o.warmup.as_secs_f64();
    let measured: Vec<&Sample> = samples.iter().filter(|s| s.t_s >= warm).collect();
    let quarter = (measured.len() / 4).max(1);
    let early = median(
        measured
            .iter()
            .take(quarter)
            .map(|s| s.rss_anon_kb)
            .collect(),
    );
    let late = median(
        measured
            .iter()
            .rev()
            .take(quarter)
            .map(|s| s.rss_anon_kb)
            .collect(),
    );
    let rss_early = median(measured.iter().take(quarter).map(|s| s.rss_kb).collect());
    let rss_late = median(
        measured
            .iter()
            .rev()
            .take(quarter)
            .map(|s| s.rss_kb)
            .collect(),
    );
    let fds_peak = samples.iter().map(|s| s.fds).max().unwrap_or(0);
    let files_peak = samples.iter().map(|s| s.fds - s.sockets).max().unwrap_or(0);
    let mut failures = Vec::new();
    let growth = late as i64 - early as i64;
    if measured.len() < 4 {
        failures.push(format!(
            "only {} samples after the warm-up; run longer or sample more often",
            measured.len()
        ));
    }
    if growth > o.rss_growth_kb as i64 {
        failures.push(format!(
            "anonymous memory grew {:.1} MB after the warm-up (bound {:.1} MB)",
            growth as f64 / 1024.0,
            o.rss_growth_kb as f64 / 1024.0
        ));
    }
    if after.connections > before.connections {
        failures.push(format!(
            "{} connections to the server after the load, {} before",
            after.connections, before.connections
        ));
    }
    if after.fds - after.sockets > files_peak.max(before.fds - before.sockets) {
        failures.push(format!(
            "{} files open after the load, at most {files_peak} under it",
            after.fds - after.sockets
        ));
    }
    if after.sessions_open.unwrap_or(0) > before.sessions_open.unwrap_or(0) {
        failures.push(format!(
            "{:?} MCP sessions still open after every client closed (before: {:?})",
            after.sessions_open, before.sessions_open
        ));
    }
    if figures.errors > 0 {
        failures.push(format!("{} calls failed after the warm-up", figures.errors));
    }
    let expected = o.rate * o.duration.as_secs_f64();
    if (figures.calls as f64) < 0.95 * expected {
        failures.push(format!(
            "held {} calls of the {expected:.0} scheduled after the warm-up",
            figures.calls
        ));
    }
    SoakReport {
        rate: o.rate,
        warmup_s: warm,
        seconds: o.duration.as_secs_f64(),
        slots: o.slots,
        session_calls: o.session_calls,
        sessions_opened,
        figures,
        rss_peak_kb: samples.iter().map(|s| s.rss_kb).max().unwrap_or(0),
        fds_peak,
        before,
        samples,
        after,
        anon_early_kb: early,
        anon_late_kb: late,
        anon_growth_kb: growth,
        rss_growth_kb: rss_late as i64 - rss_early as i64,
        bound_kb: o.rss_growth_kb,
        passed: failures.is_empty(),
        failures,
        error_samples,
    }
}

/// The human summary, ending in one `FIGURES:` line.
pub fn summary(r: &SoakReport) -> String {
    let mb = |kb: u64| kb as f64 / 1024.0;
    let mut out = String::from(
        "    t s   RSS MB  anon MB   fds  sockets  conns  sessions    calls  errors\n",
    );
    for s in &r.samples {
        out += &format!(
            "{:>7.0} {:>8.1} {:>8.1} {:>5} {:>8} {:>6} {:>9} {:>8} {:>7}\n",
            s.t_s,
            mb(s.rss_kb),
            mb(s.rss_anon_kb),
            s.fds,
            s.sockets,
            s.connections,
            s.sessions_open.map_or("-".into(), |n| n.to_string()),
            s.calls,
            s.errors
        );
    }
    for e in &r.error_samples {
        out += &format!("  error: {e}\n");
    }
    for f in &r.failures {
        out += &format!("  BOUND EXCEEDED: {f}\n");
    }
    out += &format!(
        "FIGURES: soak {:.0} s + {:.0} s warm-up at {:.0} calls/s ({} slots, a new session every {} calls): {} calls held ({:.1}/s), {} errors, p50 {:.1} ms, p99 {:.1} ms, {} sessions opened; \
         RSS {:.1} → peak {:.1} → end {:.1} MB (+{:.1} MB after warm-up, mapped SQLite pages included); anon {:.1} → {:.1} MB after warm-up ({:+.1} MB, bound {:.1} MB); \
         fds {} before, peak {}, {} after; connections {} before, {} after; sessions open {} before, {} after; {}\n",
        r.seconds,
        r.warmup_s,
        r.rate,
        r.slots,
        r.session_calls,
        r.figures.calls,
        r.figures.calls_per_s,
        r.figures.errors,
        r.figures.p50_ms,
        r.figures.p99_ms,
        r.sessions_opened,
        mb(r.before.rss_kb),
        mb(r.rss_peak_kb),
        mb(r.samples.last().map_or(0, |s| s.rss_kb)),
        r.rss_growth_kb as f64 / 1024.0,
        mb(r.anon_early_kb),
        mb(r.anon_late_kb),
        r.anon_growth_kb as f64 / 1024.0,
        mb(r.bound_kb),
        r.before.fds,
        r.fds_peak,
        r.after.fds,
        r.before.connections,
        r.after.connections,
        r.before.sessions_open.unwrap_or(0),
        r.after.sessions_open.unwrap_or(0),
        if r.passed { "PASS" } else { "FAIL" }
    );
    out
}
