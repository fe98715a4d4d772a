//! Redis, optional and never the source of truth: what several ARES instances share so that
//! they behave as one service — events fanned out to every instance's subscribers, MCP
//! sessions restorable on any instance, the cache and rate limits.
//!
//! Every use tolerates Redis being away: commands time out quickly, the link reports
//! itself down (health says `degraded`), ARES serves from the database meanwhile, and the
//! connection comes back by itself.

use crate::events::{Event, EventBus};
use redis::AsyncCommands;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

/// The pub/sub channel events travel on.
const EVENTS_CHANNEL: &str = "ares:events";
/// How long one Redis command may take before ARES carries on without it.
const COMMAND_TIMEOUT: Duration = Duration::from_millis(500);

/// A connection to Redis that survives Redis restarting.
#[derive(Clone)]
pub struct RedisLink {
    client: redis::Client,
    connection: ConnectionManager,
    up: Arc<AtomicBool>,
    /// None: this process does not receive events; else whether it is subscribed now.
    subscribed: Arc<std::sync::OnceLock<AtomicBool>>,
    label: String,
}

impl std::fmt::Debug for RedisLink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisLink")
            .field("at", &self.label)
            .field("up", &self.is_up())
            .finish()
    }
}

/// One commit's events as they travel between instances.
#[derive(Serialize, Deserialize)]
struct Envelope {
    /// The instance that committed them; it does not take its own events back.
    instance: String,
    events: Vec<Event>,
}

impl RedisLink {
    /// Opens the link without waiting for Redis: ARES starts (degraded) even if Redis is
    /// down, and uses it once it answers.
    pub fn open(url: &str) -> anyhow::Result<Self> {
        let client = redis::Client::open(url)
            .map_err(|e| anyhow::anyhow!("REDIS_URL {}: {e}", crate::store::redact_url(url)))?;
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(Duration::from_secs(1)))
            .set_response_timeout(Some(COMMAND_TIMEOUT))
            .set_number_of_retries(1)
            .set_max_delay(Duration::from_secs(2));
        let connection = client.get_connection_manager_lazy(config)?;
        Ok(Self {
            client,
            connection,
            up: Arc::new(AtomicBool::new(false)),
            subscribed: Arc::default(),
            label: crate::store::redact_url(url),
        })
    }

    /// Where Redis is, without its password.
    pub fn label(&self) -> &str {
        &self.label
    }

    /// Whether the last command got an answer.
    pub fn is_up(&self) -> bool {
        self.up.load(Ordering::Relaxed)
    }

    /// A connection for commands (cheap to clone; multiplexed).
    pub fn connection(&self) -> ConnectionManager {
        self.connection.clone()
    }

    /// Runs a command with the link's deadline, noting whether Redis answered.
    pub async fn run<T, F>(&self, command: F) -> Option<T>
    where
        F: Future<Output = redis::RedisResult<T>>,
    {
        match tokio::time::timeout(COMMAND_TIMEOUT, command).await {
            Ok(Ok(value)) => {
                self.mark(true, None);
                Some(value)
            }
            Ok(Err(e)) => {
                self.mark(false, Some(e.to_string()));
                None
            }
            Err(_) => {
                self.mark(false, Some("no answer within 500 ms".into()));
                None
            }
        }
    }

    fn mark(&self, up: bool, error: Option<String>) {
        let was = self.up.swap(up, Ordering::Relaxed);
        match (was, up) {
            (true, false) => tracing::warn!(
                redis = %self.label,
                error = error.as_deref().unwrap_or(""),
                "Redis is unreachable; serving from the database until it returns"
            ),
            (false, true) => tracing::info!(redis = %self.label, "Redis is reachable"),
            _ => {}
        }
    }

    /// Pings Redis: its latency, or why it is not usable — it did not answer, or this
    /// instance is not (yet again) receiving the other instances' events.
    pub async fn ping(&self) -> Result<Duration, String> {
        let latency = self.ping_only().await?;
        match self.subscribed.get() {
            Some(live) if !live.load(Ordering::Relaxed) => {
                Err("answers, but the event subscription is reconnecting".into())
            }
            _ => Ok(latency),
        }
    }

    async fn ping_only(&self) -> Result<Duration, String> {
        let started = Instant::now();
        let mut connection = self.connection();
        match tokio::time::timeout(
            COMMAND_TIMEOUT,
            redis::cmd("PING").query_async::<String>(&mut connection),
        )
        .await
        {
            Ok(Ok(_)) => {
                self.mark(true, None);
                Ok(started.elapsed())
            }
            Ok(Err(e)) => {
                self.mark(false, Some(e.to_string()));
                Err(e.to_string())
            }
            Err(_) => {
                self.mark(false, Some("no answer within 500 ms".into()));
                Err("no answer within 500 ms".into())
            }
        }
    }

    /// Tells the other instances about one commit's events, in one message. Returns whether
    /// Redis took it; events it did not take stay in the outbox for the relay.
    pub async fn publish(&self, instance: &str, events: &[Event]) -> bool {
        if events.is_empty() {
            return true;
        }
        let envelope = Envelope {
            instance: instance.to_string(),
            events: events.to_vec(),
        };
        let Ok(payload) = serde_json::to_string(&envelope) else {
            return false;
        };
        let mut connection = self.connection();
        self.run(connection.publish::<_, _, i64>(EVENTS_CHANNEL, payload))
            .await
            .is_some()
    }

    /// Receives the other instances' events into `bus` until `shutdown`, reconnecting
    /// whenever Redis goes away.
    pub fn spawn_subscriber(&self, instance: String, bus: EventBus, shutdown: CancellationToken) {
        let link = self.clone();
        link.subscribed.get_or_init(|| AtomicBool::new(false));
        tokio::spawn(async move {
            let mut delay = Duration::from_millis(100);
            loop {
                let session = link.receive(&instance, &bus);
                tokio::select! {
                    () = shutdown.cancelled() => return,
                    ended = session => {
                        // Lost after working: try again at once-ish, backing off from there.
                        if link.subscribed.get().is_some_and(|f| f.load(Ordering::Relaxed)) {
                            delay = Duration::from_millis(100);
                        }
                        link.set_subscribed(false);
                        if let Err(e) = ended {
                            link.mark(false, Some(e.to_string()));
                            tracing::debug!(error = %e, "event subscription lost; reconnecting");
                        }
                    }
                }
                tokio::select! {
                    () = shutdown.cancelled() => return,
                    () = tokio::time::sleep(delay) => {}
                }
                delay = (delay * 2).min(Duration::from_millis(500));
            }
        });
    }

    fn set_subscribed(&self, live: bool) {
        if let Some(flag) = self.subscribed.get() {
            flag.store(live, Ordering::Relaxed);
        }
    }

    async fn receive(&self, instance: &str, bus: &EventBus) -> redis::RedisResult<()> {
        use futures_util::StreamExt;
        let mut pubsub =
            tokio::time::timeout(Duration::from_secs(2), self.client.get_async_pubsub())
                .await
                .map_err(|_| {
                    redis::RedisError::from(std::io::Error::from(std::io::ErrorKind::TimedOut))
                })??;
        pubsub.subscribe(EVENTS_CHANNEL).await?;
        self.mark(true, None);
        self.set_subscribed(true);
        tracing::info!(redis = %self.label, "receiving other instances' events");
        let mut messages = pubsub.into_on_message();
        while let Some(message) = messages.next().await {
            let Ok(payload) = message.get_payload::<String>() else {
                continue;
            };
            match serde_json::from_str::<Envelope>(&payload) {
                Ok(envelope) if envelope.instance != instance => {
                    for event in envelope.events {
                        bus.publish(Arc::new(event));
                    }
                }
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %e, "an unreadable event on {EVENTS_CHANNEL}"),
            }
        }
        Err(redis::RedisError::from(std::io::Error::from(
            std::io::ErrorKind::ConnectionAborted,
        )))
    }
}

/// MCP sessions kept in Redis, so a client whose requests reach another instance carries
/// on without initializing again (rmcp replays the stored handshake there).
pub struct SessionsInRedis {
    link: RedisLink,
    ttl_secs: u64,
}

impl SessionsInRedis {
    pub fn new(link: RedisLink) -> Self {
        Self {
            link,
            ttl_secs: 24 * 3600,
        }
    }

    fn key(session_id: &str) -> String {
        format!("ares:session:{session_id}")
    }
}

type SessionResult<T> =
    Result<T, rmcp::transport::streamable_http_server::session::store::SessionStoreError>;

fn unreachable_error() -> rmcp::transport::streamable_http_server::session::store::SessionStoreError
{
    "Redis, where sessions are kept, did not answer".into()
}

#[async_trait::async_trait]
impl rmcp::transport::streamable_http_server::session::store::SessionStore for SessionsInRedis {
    async fn load(
        &self,
        session_id: &str,
    ) -> SessionResult<Option<rmcp::transport::streamable_http_server::session::store::SessionState>>
    {
        let mut connection = self.link.connection();
        let stored: Option<String> = self
            .link
            .run(connection.get(Self::key(session_id)))
            .await
            .ok_or_else(unreachable_error)?;
        Ok(stored.and_then(|json| serde_json::from_str(&json).ok()))
    }

    /// Best effort: while Redis is away a new session still works, on this instance.
    async fn store(
        &self,
        session_id: &str,
        state: &rmcp::transport::streamable_http_server::session::store::SessionState,
    ) -> SessionResult<()> {
        let json = serde_json::to_string(state)?;
        let mut connection = self.link.connection();
        let stored = self
            .link
            .run(connection.set_ex::<_, _, ()>(Self::key(session_id), json, self.ttl_secs))
            .await;
        if stored.is_none() {
            tracing::warn!(
                session_id,
                "Redis is away: this session lives on this instance only"
            );
        }
        Ok(())
    }

    /// Best effort: an entry left behind expires with its TTL.
    async fn delete(&self, session_id: &str) -> SessionResult<()> {
        let mut connection = self.link.connection();
        self.link
            .run(connection.del::<_, i64>(Self::key(session_id)))
            .await;
        Ok(())
    }
}
