//! Prometheus metrics: what ARES exports at `/metrics`, in the text format.
//!
//! Counters of domain facts (tasks completed, verifications, enforcement) follow the event
//! bus ([`feed`]), so every committed change counts once whichever tool or timer made it.
//! Tool latency is timed around each MCP tool call; sessions are counted while their handler
//! lives; downstream servers and the store's pools are read at scrape time. Labels stay
//! low-cardinality: tool names, statuses, actions, server names, agent names.
//!
//! Each [`Metrics`] owns its registry, so several services in one process (as in the tests)
//! never share or double-register a series.

pub mod feed;

use crate::service::Ares;
use prometheus::{
    Encoder, GaugeVec, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge,
    IntGaugeVec, Opts, Registry, TextEncoder, core::Collector,
};
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

/// The content type of a scrape answer.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Tool latency buckets, in seconds: from a cached read to a verify that waits on a slow
/// downstream server.
const LATENCY_BUCKETS: [f64; 15] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
];

/// Every series ARES exports, registered in one registry of its own.
pub struct Metrics {
    registry: Registry,
    /// The names registered, for the deploy kit's drift check.
    names: Vec<String>,
    pub(crate) tasks_completed: IntCounterVec,
    response_time: HistogramVec,
    pub(crate) reliability: GaugeVec,
    pub(crate) enforcement: IntCounterVec,
    pub(crate) verifications: IntCounterVec,
    pub(crate) discrepancies: IntCounter,
    pub(crate) events: IntCounterVec,
    downstream_up: IntGaugeVec,
    downstream_latency: GaugeVec,
    sessions: IntGaugeVec,
    pool: IntGaugeVec,
    /// Set once the event feed runs, so a second transport of the same service does not
    /// start another one and count everything twice.
    pub(crate) watching: AtomicBool,
    /// Scrapes refresh the scrape-time gauges one at a time, so two concurrent scrapes never
    /// see each other's half-filled series.
    scrape: tokio::sync::Mutex<()>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let registry = Registry::new();
        let mut names = Vec::new();
        let mut register = |collector: Box<dyn Collector>| {
            names.extend(collector.desc().iter().map(|d| d.fq_name.clone()));
            registry
                .register(collector)
                .expect("metric names are unique and valid");
        };
        let tasks_completed = counter(
            "ares_tasks_completed_total",
            "Tasks that reached verified, rejected, failed, cancelled or rolled_back.",
            &["agent_name", "status"],
        );
        register(Box::new(tasks_completed.clone()));
        let response_time = HistogramVec::new(
            HistogramOpts::new(
                "ares_response_time_seconds",
                "Time to answer an MCP request, by endpoint and tool.",
            )
            .buckets(LATENCY_BUCKETS.to_vec()),
            &["endpoint", "method"],
        )
        .expect("valid histogram");
        register(Box::new(response_time.clone()));
        let reliability = GaugeVec::new(
            Opts::new(
                "ares_agent_reliability_score",
                "Each agent's current reliability score, 0 to 1.",
            ),
            &["agent_name"],
        )
        .expect("valid gauge");
        register(Box::new(reliability.clone()));
        let enforcement = counter(
            "ares_enforcement_actions_total",
            "Enforcement actions taken, automatic and manual.",
            &["action"],
        );
        register(Box::new(enforcement.clone()));
        let verifications = counter(
            "ares_verifications_total",
            "Verifications completed, by outcome (verified, rejected, inconclusive).",
            &["outcome"],
        );
        register(Box::new(verifications.clone()));
        let discrepancies = IntCounter::new(
            "ares_discrepancies_total",
            "Criteria whose claimed evidence ground truth contradicted.",
        )
        .expect("valid counter");
        register(Box::new(discrepancies.clone()));
        let events = counter(
            "ares_events_published_total",
            "Events published on the event bus, by type.",
            &["event_type"],
        );
        register(Box::new(events.clone()));
        let downstream_up = int_gauge(
            "ares_downstream_up",
            "1 when the downstream MCP server is connected, else 0.",
            &["server"],
        );
        register(Box::new(downstream_up.clone()));
        let downstream_latency = GaugeVec::new(
            Opts::new(
                "ares_downstream_latency_seconds",
                "The last ping (or connect) round trip to the downstream server.",
            ),
            &["server"],
        )
        .expect("valid gauge");
        register(Box::new(downstream_latency.clone()));
        let sessions = int_gauge(
            "ares_mcp_sessions_open",
            "MCP sessions open now, by transport (per-request HTTP clients have none).",
            &["transport"],
        );
        register(Box::new(sessions.clone()));
        let pool = int_gauge(
            "ares_store_pool_connections",
            "Store connections: open, idle, and the most allowed (max).",
            &["state"],
        );
        register(Box::new(pool.clone()));
        Self {
            registry,
            names,
            tasks_completed,
            response_time,
            reliability,
            enforcement,
            verifications,
            discrepancies,
            events,
            downstream_up,
            downstream_latency,
            sessions,
            pool,
            watching: AtomicBool::new(false),
            scrape: tokio::sync::Mutex::new(()),
        }
    }

    /// Every metric name ARES exports (histograms without their `_bucket`, `_sum` and
    /// `_count` suffixes).
    pub fn names(&self) -> &[String] {
        &self.names
    }

    /// Times one MCP tool call until the timer drops; `tool` is None for a name ARES does not
    /// offer, counted as `unknown` so callers cannot mint series.
    pub fn time_tool_call(&self, tool: Option<&str>) -> prometheus::HistogramTimer {
        self.response_time
            .with_label_values(&["tools/call", tool.unwrap_or("unknown")])
            .start_timer()
    }

    /// Counts an open MCP session until the guard drops.
    pub fn session_opened(&self, transport: &'static str) -> SessionGuard {
        let gauge = self.sessions.with_label_values(&[transport]);
        gauge.inc();
        SessionGuard(gauge)
    }

    /// Reads the scrape-time gauges and encodes every series in the text format.
    pub async fn render(&self, ares: &Ares) -> anyhow::Result<String> {
        let _one_at_a_time = self.scrape.lock().await;
        let usage = ares.store.pool_usage();
        for (state, n) in [
            ("open", usage.open),
            ("idle", usage.idle),
            ("max", usage.max),
        ] {
            self.pool.with_label_values(&[state]).set(i64::from(n));
        }
        self.refresh_downstream(ares).await;
        let mut out = Vec::new();
        TextEncoder::new().encode(&self.registry.gather(), &mut out)?;
        Ok(String::from_utf8(out)?)
    }

    /// One series per configured server, from the state its supervisor last recorded (the
    /// same state `health` reports); a server with no record yet is down.
    async fn refresh_downstream(&self, ares: &Ares) {
        self.downstream_up.reset();
        self.downstream_latency.reset();
        let Some(downstream) = &ares.downstream else {
            return;
        };
        let recorded =
            tokio::time::timeout(Duration::from_secs(3), ares.store.downstream_connections()).await;
        let rows = match recorded {
            Ok(Ok(rows)) => rows,
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "metrics: cannot read downstream state");
                Vec::new()
            }
            Err(_) => {
                tracing::warn!("metrics: no downstream state within 3 s");
                Vec::new()
            }
        };
        for server in downstream.servers() {
            let row = rows.iter().find(|r| r.name == server.name());
            let up = row.is_some_and(|r| r.status == "connected");
            self.downstream_up
                .with_label_values(&[server.name()])
                .set(i64::from(up));
            if let Some(ms) = row.and_then(|r| r.latency_ms) {
                self.downstream_latency
                    .with_label_values(&[server.name()])
                    .set(ms / 1000.0);
            }
        }
    }
}

/// An open session, counted in `ares_mcp_sessions_open` until dropped.
pub struct SessionGuard(IntGauge);

impl Drop for SessionGuard {
    fn drop(&mut self) {
        self.0.dec();
    }
}

/// `GET /metrics`: every series in the text format.
pub async fn scrape(
    axum::extract::State(ares): axum::extract::State<Arc<Ares>>,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    match ares.metrics.render(&ares).await {
        Ok(text) => ([(axum::http::header::CONTENT_TYPE, CONTENT_TYPE)], text).into_response(),
        Err(e) => {
            tracing::error!(error = %e, "could not encode metrics");
            (
                axum::http::StatusCode::INTERNAL_SERVER_ERROR,
                "metrics could not be encoded\n",
            )
                .into_response()
        }
    }
}

fn counter(name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
    IntCounterVec::new(Opts::new(name, help), labels).expect("valid counter")
}

fn int_gauge(name: &str, help: &str, labels: &[&str]) -> IntGaugeVec {
    IntGaugeVec::new(Opts::new(name, help), labels).expect("valid gauge")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_series_is_registered_under_its_name() {
        let metrics = Metrics::new();
        for name in [
            "ares_tasks_completed_total",
            "ares_response_time_seconds",
            "ares_agent_reliability_score",
            "ares_enforcement_actions_total",
            "ares_verifications_total",
            "ares_discrepancies_total",
            "ares_events_published_total",
            "ares_downstream_up",
            "ares_downstream_latency_seconds",
            "ares_mcp_sessions_open",
            "ares_store_pool_connections",
        ] {
            assert!(metrics.names().iter().any(|n| n == name), "{name} missing");
        }
        assert_eq!(metrics.names().len(), 11);
    }

    #[test]
    fn a_session_counts_while_its_guard_lives() {
        let metrics = Metrics::new();
        let gauge = || metrics.sessions.with_label_values(&["stdio"]).get();
        let first = metrics.session_opened("stdio");
        let second = metrics.session_opened("stdio");
        assert_eq!(gauge(), 2);
        drop(first);
        assert_eq!(gauge(), 1);
        drop(second);
        assert_eq!(gauge(), 0);
    }

    #[test]
    fn unknown_tools_share_one_series() {
        let metrics = Metrics::new();
        drop(metrics.time_tool_call(None));
        drop(metrics.time_tool_call(None));
        drop(metrics.time_tool_call(Some("verify_task")));
        let count = |tool: &str| {
            metrics
                .response_time
                .with_label_values(&["tools/call", tool])
                .get_sample_count()
        };
        assert_eq!(count("unknown"), 2);
        assert_eq!(count("verify_task"), 1);
    }
}
