//! Health: the store and each dependency, with status and latency.

use super::Ares;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct HealthCheck {}

/// One dependency's state.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct Dependency {
    pub name: String,
    /// `ok`, `down` or `not_configured`.
    pub status: String,
    pub latency_ms: Option<f64>,
    /// Whether ARES can serve without it.
    pub required: bool,
    pub error: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct Health {
    /// `healthy`, `degraded` (serving, something optional is down) or `unhealthy`.
    pub status: String,
    pub version: String,
    pub uptime_secs: f64,
    pub dependencies: Vec<Dependency>,
}

impl Health {
    pub fn is_healthy(&self) -> bool {
        self.status != "unhealthy"
    }
}

/// Health probes, one at a time. A check that arrives while a probe is running waits for
/// that probe and answers with its result; a check that arrives when none is running starts
/// one. So every answer comes from a probe that was under way, or began, after the check
/// arrived, and a burst of checks (load balancers, dashboards, an agent's `health` calls)
/// costs the store one probe instead of one each. During an outage the checks waiting on a
/// probe stuck in its timeout are answered together when it ends.
#[derive(Debug, Default)]
pub struct Probes {
    /// Held while a probe runs; the last probe's result.
    last: tokio::sync::Mutex<Option<Health>>,
    /// How many probes have finished.
    finished: AtomicU64,
}

impl Ares {
    pub async fn health(&self) -> Health {
        let arrived = self.probes.finished.load(Ordering::Acquire);
        let mut last = self.probes.last.lock().await;
        if self.probes.finished.load(Ordering::Acquire) != arrived
            && let Some(health) = &*last
        {
            return Health {
                uptime_secs: self.started.elapsed().as_secs_f64(),
                ..health.clone()
            };
        }
        // A caller that goes away mid-probe releases the lock with nothing recorded: the
        // next in line probes instead.
        let health = self.probe().await;
        *last = Some(health.clone());
        self.probes.finished.fetch_add(1, Ordering::Release);
        health
    }

    /// Pings the store and Redis, and reads the downstream servers' states.
    async fn probe(&self) -> Health {
        let started = Instant::now();
        let ping = tokio::time::timeout(std::time::Duration::from_secs(3), self.store.ping()).await;
        let latency = started.elapsed().as_secs_f64() * 1000.0;
        let store = match ping {
            Ok(Ok(())) => Dependency {
                name: format!("store ({})", self.store.backend()),
                status: "ok".into(),
                latency_ms: Some(latency),
                required: true,
                error: None,
            },
            Ok(Err(e)) => down(self.store.backend(), e.to_string()),
            Err(_) => down(self.store.backend(), "no answer within 3 s".into()),
        };
        // Downstream states are read from the store: skipped while it is down, so health
        // answers within the ping's bound instead of waiting out the pool's.
        let store_up = store.status == "ok";
        let mut dependencies = vec![store];
        if let Some(redis) = &self.redis {
            let (status, latency_ms, error) = match redis.ping().await {
                Ok(latency) => ("ok", Some(latency.as_secs_f64() * 1000.0), None),
                Err(e) => ("down", None, Some(e)),
            };
            dependencies.push(Dependency {
                name: format!("redis ({})", redis.label()),
                status: status.into(),
                latency_ms,
                required: false,
                error,
            });
        }
        let conns = if store_up {
            tokio::time::timeout(
                std::time::Duration::from_secs(1),
                self.store.downstream_connections(),
            )
            .await
            .ok()
            .and_then(Result::ok)
        } else {
            None
        };
        if let Some(conns) = conns {
            dependencies.extend(conns.into_iter().map(|c| Dependency {
                status: if c.status == "connected" {
                    "ok".into()
                } else {
                    "down".into()
                },
                name: format!("downstream {} ({})", c.name, c.role),
                latency_ms: c.latency_ms,
                required: false,
                error: c.last_error,
            }));
        }
        let status = if dependencies.iter().any(|d| d.required && d.status != "ok") {
            "unhealthy"
        } else if dependencies.iter().any(|d| d.status == "down") {
            "degraded"
        } else {
            "healthy"
        };
        Health {
            status: status.into(),
            version: env!("CARGO_PKG_VERSION").into(),
            uptime_secs: self.started.elapsed().as_secs_f64(),
            dependencies,
        }
    }
}

fn down(backend: &str, error: String) -> Dependency {
    Dependency {
        name: format!("store ({backend})"),
        status: "down".into(),
        latency_ms: None,
        required: true,
        error: Some(error),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn ares() -> Ares {
        let store = crate::store::connect("sqlite::memory:").await.unwrap();
        store.migrate().await.unwrap();
        Ares::new(store)
    }

    #[tokio::test]
    async fn checks_that_arrive_during_a_probe_share_it() {
        let ares = ares().await;
        let answers = futures_util::future::join_all((0..32).map(|_| ares.health())).await;
        assert!(answers.iter().all(|h| h.status == "healthy"), "{answers:?}");
        assert_eq!(ares.probes.finished.load(Ordering::Acquire), 1);
        let latencies: std::collections::HashSet<String> = answers
            .iter()
            .map(|h| format!("{:?}", h.dependencies[0].latency_ms))
            .collect();
        assert_eq!(latencies.len(), 1, "one probe's figures: {latencies:?}");
    }

    #[tokio::test]
    async fn a_check_after_a_probe_has_finished_probes_again() {
        let ares = ares().await;
        ares.health().await;
        ares.health().await;
        assert_eq!(ares.probes.finished.load(Ordering::Acquire), 2);
    }

    #[tokio::test]
    async fn a_check_whose_caller_leaves_mid_probe_leaves_the_next_to_probe() {
        let ares = ares().await;
        // Polled once, so it takes the turn and starts its probe, then dropped.
        let abandoned = tokio::time::timeout(std::time::Duration::ZERO, ares.health()).await;
        let health = tokio::time::timeout(std::time::Duration::from_secs(5), ares.health())
            .await
            .expect("the turn was given back");
        assert_eq!(health.status, "healthy");
        let probes = if abandoned.is_ok() { 2 } else { 1 };
        assert_eq!(ares.probes.finished.load(Ordering::Acquire), probes);
    }
}
