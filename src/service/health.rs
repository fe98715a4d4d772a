//! Health: the store and each dependency, with status and latency.

use super::Ares;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
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

impl Ares {
    pub async fn health(&self) -> Health {
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
