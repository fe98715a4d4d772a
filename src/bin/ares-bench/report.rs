//! What a run found, as a table for people and JSON for scripts.

use crate::client::Protocol;
use crate::idle::IdleReport;
use crate::load::Figures;
use crate::soak::SoakReport;
use serde::Serialize;
use std::collections::BTreeMap;

#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub workload: &'static str,
    pub protocol: Protocol,
    /// `closed` (C concurrent clients) or `open` (a fixed rate).
    pub mode: &'static str,
    pub concurrency: usize,
    pub rate: Option<f64>,
    pub sessions: usize,
    pub scale: usize,
    pub backend: String,
    /// Length of the measured window, after the warm-up.
    pub seconds: f64,
    pub overall: Figures,
    pub per_tool: BTreeMap<String, Figures>,
    /// CPU seconds over the window: the server process, the database server's processes
    /// (PostgreSQL), and this load generator.
    pub server_cpu_s: Option<f64>,
    pub db_cpu_s: Option<f64>,
    pub client_cpu_s: f64,
    /// Correct calls per CPU-second of the server (plus its database server, if measured).
    pub calls_per_core_s: Option<f64>,
    pub server_rss_kb_start: Option<u64>,
    pub server_rss_kb_end: Option<u64>,
    pub server_rss_kb_peak: Option<u64>,
    /// Time spent seeding `--scale` data and preparing sessions (not measured).
    pub seed_s: f64,
    pub prepare_s: f64,
    pub error_samples: Vec<String>,
    pub idle: Option<IdleReport>,
    pub soak: Option<SoakReport>,
}

fn mb(kb: Option<u64>) -> String {
    kb.map_or("-".into(), |k| format!("{:.1}", k as f64 / 1024.0))
}

fn row(name: &str, f: &Figures, per_core: Option<f64>, rss: Option<u64>) -> String {
    format!(
        "{name:<44} {:>9.0} {:>9} {:>7.2} {:>7.2} {:>7.2} {:>8.2} {:>7} {:>7}",
        f.calls_per_s,
        per_core.map_or("-".into(), |c| format!("{c:.0}")),
        f.p50_ms,
        f.p90_ms,
        f.p99_ms,
        f.max_ms,
        f.errors,
        mb(rss),
    )
}

/// The human table.
pub fn table(reports: &[Report]) -> String {
    let mut out = format!(
        "{:<44} {:>9} {:>9} {:>7} {:>7} {:>7} {:>8} {:>7} {:>7}\n",
        "workload",
        "calls/s",
        "/core·s",
        "p50 ms",
        "p90 ms",
        "p99 ms",
        "max ms",
        "errors",
        "RSS MB"
    );
    for r in reports {
        if let Some(soak) = &r.soak {
            out += &crate::soak::summary(soak);
            continue;
        }
        if let Some(idle) = &r.idle {
            out += &format!(
                "{:<44} {} of {} sessions open in {:.1} s; RSS fresh {} MB, open {} MB ({:.1} KB/session), closed {} MB, after a second round {} MB, {} MB {:.0} s after that ({} sockets open)\n",
                format!("idle ({})", r.backend),
                idle.opened,
                idle.sessions,
                idle.open_seconds,
                mb(Some(idle.rss_fresh_kb)),
                mb(Some(idle.rss_open_kb)),
                idle.per_session_kb,
                mb(Some(idle.rss_closed_kb)),
                mb(Some(idle.rss_second_round_closed_kb)),
                mb(Some(idle.rss_settled_kb)),
                idle.settled_after_seconds,
                idle.sockets_settled,
            );
            continue;
        }
        let load = match r.rate {
            Some(rate) => format!("open {rate:.0}/s"),
            None => format!("C={}", r.concurrency),
        };
        let proto = match r.protocol {
            Protocol::Handshake => "hs",
            Protocol::PerRequest => "pr",
        };
        let name = format!(
            "{} {} {} {}× {}",
            r.workload, proto, load, r.scale, r.backend
        );
        out += &row(&name, &r.overall, r.calls_per_core_s, r.server_rss_kb_peak);
        out += "\n";
        if r.per_tool.len() > 1 {
            for (tool, f) in &r.per_tool {
                out += &row(&format!("  {tool}"), f, None, None);
                out += "\n";
            }
        }
        for e in &r.error_samples {
            out += &format!("  error: {e}\n");
        }
    }
    out
}
