//! The two ways of applying load and what is recorded of it.
//!
//! Closed loop: C workers, each sending its next call when the last one answered — how much
//! the server does at saturation. Open loop: calls are sent on a fixed schedule whatever the
//! server does, and each call's latency is measured from the time it was *scheduled*, so a
//! stalled server is charged for every call that waited behind the stall (no coordinated
//! omission).

use crate::workloads::Bench;
use serde::Serialize;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Latencies and errors of calls that fall inside the measured window.
pub struct Recorder {
    /// Start and end of the measured window (after the warm-up).
    pub window: (Instant, Instant),
    inner: Mutex<Recorded>,
}

#[derive(Default)]
struct Recorded {
    /// Per tool: latencies in microseconds and the error count.
    tools: BTreeMap<&'static str, (Vec<u32>, u64)>,
    error_samples: Vec<String>,
}

impl Recorder {
    pub fn new(start: Instant, warmup: Duration, duration: Duration) -> Recorder {
        let t0 = start + warmup;
        Recorder {
            window: (t0, t0 + duration),
            inner: Mutex::default(),
        }
    }

    /// Records one call stamped `at` (its completion in a closed loop, its scheduled send in
    /// an open loop) that took `latency`. Calls stamped outside the window are ignored.
    pub fn record(
        &self,
        tool: &'static str,
        at: Instant,
        latency: Duration,
        outcome: Result<(), String>,
    ) {
        if at < self.window.0 || at >= self.window.1 {
            return;
        }
        let mut inner = self.inner.lock().expect("recorder lock");
        let entry = inner.tools.entry(tool).or_default();
        match outcome {
            Ok(()) => entry
                .0
                .push(latency.as_micros().min(u32::MAX as u128) as u32),
            Err(e) => {
                entry.1 += 1;
                if inner.error_samples.len() < 5 {
                    inner.error_samples.push(e);
                }
            }
        }
    }

    /// Calls dispatched in the window that never answered count as errors of `tool`.
    pub fn unfinished(&self, tool: &'static str, n: u64) {
        if n > 0 {
            let mut inner = self.inner.lock().expect("recorder lock");
            inner.tools.entry(tool).or_default().1 += n;
            inner
                .error_samples
                .push(format!("{n} calls never answered"));
        }
    }

    /// Per-tool and overall figures over `seconds` of measurement.
    pub fn summarize(&self, seconds: f64) -> (Figures, BTreeMap<String, Figures>, Vec<String>) {
        let inner = self.inner.lock().expect("recorder lock");
        let mut all = Vec::new();
        let mut errors = 0;
        let mut per_tool = BTreeMap::new();
        for (tool, (lat, errs)) in &inner.tools {
            per_tool.insert(tool.to_string(), Figures::of(lat.clone(), *errs, seconds));
            all.extend_from_slice(lat);
            errors += errs;
        }
        (
            Figures::of(all, errors, seconds),
            per_tool,
            inner.error_samples.clone(),
        )
    }
}

/// Throughput and latency of a set of calls.
#[derive(Debug, Clone, Serialize)]
pub struct Figures {
    /// Calls that answered correctly.
    pub calls: u64,
    pub errors: u64,
    pub calls_per_s: f64,
    pub p50_ms: f64,
    pub p90_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
    pub mean_ms: f64,
}

impl Figures {
    pub fn empty() -> Figures {
        Figures::of(Vec::new(), 0, 1.0)
    }

    pub fn of(mut micros: Vec<u32>, errors: u64, seconds: f64) -> Figures {
        micros.sort_unstable();
        let ms = |us: u32| f64::from(us) / 1000.0;
        let pct = |p: f64| {
            if micros.is_empty() {
                0.0
            } else {
                // Nearest rank: the smallest value with at least p of the calls at or below it.
                let rank = ((p * micros.len() as f64).ceil() as usize).clamp(1, micros.len());
                ms(micros[rank - 1])
            }
        };
        let sum: u64 = micros.iter().map(|&u| u64::from(u)).sum();
        Figures {
            calls: micros.len() as u64,
            errors,
            calls_per_s: micros.len() as f64 / seconds,
            p50_ms: pct(0.50),
            p90_ms: pct(0.90),
            p99_ms: pct(0.99),
            max_ms: micros.last().map_or(0.0, |&u| ms(u)),
            mean_ms: if micros.is_empty() {
                0.0
            } else {
                sum as f64 / micros.len() as f64 / 1000.0
            },
        }
    }
}

/// C workers, each owning the slots `w, w + C, w + 2C, …` and stepping through them in turn
/// until the window closes or the workload runs out of prepared work. Returns when the
/// measurement ended.
pub async fn closed_loop(bench: Arc<Bench>, rec: Arc<Recorder>, concurrency: usize) -> Instant {
    let slots = bench.slots();
    let mut workers = tokio::task::JoinSet::new();
    for w in 0..concurrency.min(slots) {
        let (bench, rec) = (bench.clone(), rec.clone());
        workers.spawn(async move {
            let mine: Vec<usize> = (w..slots).step_by(concurrency).collect();
            let mut i = 0;
            loop {
                let started = Instant::now();
                if started >= rec.window.1 {
                    return;
                }
                let slot = mine[i % mine.len()];
                i += 1;
                let Some((tool, outcome)) = bench.step(slot).await else {
                    return;
                };
                let done = Instant::now();
                rec.record(tool, done, done - started, outcome);
            }
        });
    }
    while workers.join_next().await.is_some() {}
    Instant::now().min(rec.window.1)
}

/// Calls at `rate` per second on a fixed schedule, round-robin over the slots (a call whose
/// slot is still busy waits for it, and that wait is part of its latency).
pub async fn open_loop(
    bench: Arc<Bench>,
    rec: Arc<Recorder>,
    start: Instant,
    rate: f64,
) -> Instant {
    let slots = bench.slots();
    let mut inflight = tokio::task::JoinSet::new();
    let mut dispatched_in_window = 0u64;
    let answered = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let mut tool_name = "call";
    for k in 0u64.. {
        let at = start + Duration::from_secs_f64(k as f64 / rate);
        if at >= rec.window.1 {
            break;
        }
        tokio::time::sleep_until(at.into()).await;
        if at >= rec.window.0 {
            dispatched_in_window += 1;
        }
        let (bench, rec, answered) = (bench.clone(), rec.clone(), answered.clone());
        inflight.spawn(async move {
            let (tool, outcome) = bench.step(k as usize % slots).await?;
            rec.record(tool, at, at.elapsed(), outcome);
            if at >= rec.window.0 {
                answered.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            }
            Some(tool)
        });
        // Reap finished calls as we go so the set stays small.
        while let Some(done) = inflight.try_join_next() {
            if let Ok(Some(tool)) = done {
                tool_name = tool;
            }
        }
    }
    let drain = tokio::time::timeout(Duration::from_secs(10), async {
        while inflight.join_next().await.is_some() {}
    });
    if drain.await.is_err() {
        inflight.abort_all();
    }
    let answered = answered.load(std::sync::atomic::Ordering::Relaxed);
    rec.unfinished(tool_name, dispatched_in_window.saturating_sub(answered));
    // The schedule covered the whole window, however late the answers came.
    rec.window.1
}
