//! Serving: the same MCP handler over stdio or streamable HTTP (`/mcp`, plus `/health` and
//! `/metrics`), each with a shutdown signal, so tests can run the real thing on port 0 or a
//! pipe.

use crate::auth::middleware::{Gate, require_key};
use crate::mcp::AresServer;
use crate::service::Ares;
use axum::{Router, extract::State, http::StatusCode, response::IntoResponse, routing::get};
use futures_util::StreamExt;
use rmcp::ServiceExt;
use rmcp::transport::streamable_http_server::{
    StreamableHttpServerConfig, StreamableHttpService, session::local::LocalSessionManager,
};
use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

/// Serves one MCP session over a byte stream until the peer hangs up or `shutdown` fires.
pub async fn serve_stream<R, W>(
    ares: Arc<Ares>,
    read: R,
    write: W,
    shutdown: CancellationToken,
) -> anyhow::Result<()>
where
    R: AsyncRead + Send + Unpin + 'static,
    W: AsyncWrite + Send + Unpin + 'static,
{
    crate::metrics::feed::watch(&ares);
    // The handshake waits for the client; a shutdown must be able to interrupt it too.
    let running = tokio::select! {
        running = AresServer::new(ares).serve((read, write)) => match running {
            Ok(running) => running,
            Err(e) => {
                // The client went away before initializing (e.g. stdin closed): nothing to
                // serve, not a failure of ARES.
                tracing::info!(reason = %e, "the stdio client left before initializing");
                return Ok(());
            }
        },
        () = shutdown.cancelled() => {
            tracing::info!("shut down before a client initialized");
            return Ok(());
        }
    };
    let cancel = running.cancellation_token();
    tokio::select! {
        quit = running.waiting() => {
            tracing::info!(reason = ?quit, "stdio session ended");
        }
        () = shutdown.cancelled() => {
            tracing::info!("shutting down the stdio session");
            cancel.cancel();
        }
    }
    Ok(())
}

/// Serves MCP over this process's stdin and stdout.
pub async fn serve_stdio(ares: Arc<Ares>, shutdown: CancellationToken) -> anyhow::Result<()> {
    let (read, write) = rmcp::transport::io::stdio_pipes();
    serve_stream(ares, read, write, shutdown).await
}

/// Who may reach the HTTP server.
#[derive(Clone)]
pub struct HttpOptions {
    /// `Host` header values accepted (empty: loopback names only).
    pub allowed_hosts: Vec<String>,
    /// `Origin` values accepted (empty: loopback origins only).
    pub allowed_origins: Vec<String>,
    pub max_body_bytes: usize,
    /// A bootstrap admin key (ARES_ADMIN_TOKEN), accepted besides stored keys.
    pub admin_token: Option<crate::config::Secret>,
    /// No authentication at all: every caller is an admin. Only with an explicit flag.
    pub no_auth: bool,
    /// Requests per second each key may make (bursts of twice that).
    pub rate_limit: u32,
}

impl Default for HttpOptions {
    fn default() -> Self {
        Self {
            allowed_hosts: Vec::new(),
            allowed_origins: Vec::new(),
            max_body_bytes: 5 * 1024 * 1024,
            admin_token: None,
            no_auth: false,
            rate_limit: 500,
        }
    }
}

const LOOPBACK_HOSTS: [&str; 3] = ["localhost", "127.0.0.1", "::1"];
const LOOPBACK_ORIGINS: [&str; 3] = ["http://localhost:*", "http://127.0.0.1:*", "http://[::1]:*"];

/// The HTTP application: `/mcp` (streamable HTTP), `/health`, the dashboard with its
/// report downloads, and `/metrics` (behind the same key as `/mcp`: the metrics name agents).
pub fn router(ares: Arc<Ares>, options: &HttpOptions, shutdown: CancellationToken) -> Router {
    let hosts: Vec<String> = if options.allowed_hosts.is_empty() {
        LOOPBACK_HOSTS.iter().map(|h| h.to_string()).collect()
    } else {
        options.allowed_hosts.clone()
    };
    let origins: Vec<String> = if options.allowed_origins.is_empty() {
        LOOPBACK_ORIGINS.iter().map(|o| o.to_string()).collect()
    } else {
        options.allowed_origins.clone()
    };
    let mut config = StreamableHttpServerConfig::default()
        .with_allowed_hosts(hosts)
        .with_allowed_origins(origins)
        .enforce_origin_validation()
        .with_max_request_body_bytes(options.max_body_bytes)
        .with_cancellation_token(shutdown.child_token())
        // A plain JSON answer where the client accepts one and nothing streams before it.
        .with_json_response(true);
    // With Redis, a session begun on one instance carries on at any other: the handshake
    // is kept there and replayed by whichever instance a request reaches.
    if let Some(redis) = &ares.redis {
        config.session_store = Some(Arc::new(crate::redis_link::SessionsInRedis::new(
            redis.clone(),
        )));
    }
    let handler_ares = ares.clone();
    let mcp = StreamableHttpService::new(
        move || Ok(AresServer::new(handler_ares.clone())),
        Arc::new(LocalSessionManager::default()),
        config,
    );
    let gate = Arc::new(
        Gate::new(
            ares.store.clone(),
            ares.key_cache.clone(),
            options.admin_token.as_ref().map(|t| t.expose().to_string()),
            options.no_auth,
            options.rate_limit,
        )
        .with_shared_limit(ares.redis.clone()),
    );
    let dashboard = crate::dashboard::routes(ares.clone(), shutdown.child_token());
    crate::metrics::feed::watch(&ares);
    // The gate runs before rmcp sees the request: nothing is read or allocated for a
    // request without a valid key.
    let wire = Arc::new(Wire {
        max_body_bytes: options.max_body_bytes,
        in_flight: InFlightSet::default(),
    });
    let mcp = Router::new()
        .nest_service("/mcp", mcp)
        .layer(axum::middleware::from_fn_with_state(
            wire,
            explain_malformed,
        ));
    let protected = Router::new()
        .route("/metrics", get(crate::metrics::scrape))
        .with_state(ares.clone())
        .merge(mcp)
        .merge(dashboard.protected)
        .layer(axum::middleware::from_fn_with_state(gate, require_key));
    Router::new()
        .route("/health", get(health))
        .with_state(ares)
        .merge(dashboard.open)
        .merge(protected)
        .layer(axum::middleware::from_fn(delete_answers_no_content))
}

/// `/metrics` and `/health` WITHOUT a key (`--metrics-addr`): for a private interface or a
/// port only the scraper reaches, since the metrics name agents. Works beside stdio too.
pub fn metrics_router(ares: Arc<Ares>) -> Router {
    crate::metrics::feed::watch(&ares);
    Router::new()
        .route("/health", get(health))
        .route("/metrics", get(crate::metrics::scrape))
        .with_state(ares)
}

/// rmcp answers a session DELETE with 202; clients (the Python SDK among them) expect 200
/// or 204 for "terminated", so say 204. (Only for DELETE: a POSTed notification's 202 is
/// what the protocol asks for.)
async fn delete_answers_no_content(
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    let delete = request.method() == axum::http::Method::DELETE;
    let mut response = next.run(request).await;
    if delete && response.status() == StatusCode::ACCEPTED {
        *response.status_mut() = StatusCode::NO_CONTENT;
    }
    response
}

/// What `/mcp` checks on the wire before and after rmcp.
struct Wire {
    max_body_bytes: usize,
    /// (session id, JSON-RPC id) of each request a session has in flight.
    in_flight: InFlightSet,
}

/// The requests in flight, in shards by session, so that sessions do not take turns on one
/// lock.
struct InFlightSet {
    shards: [Mutex<HashSet<(String, String)>>; IN_FLIGHT_SHARDS],
    hasher: std::hash::RandomState,
}

const IN_FLIGHT_SHARDS: usize = 16;

impl Default for InFlightSet {
    fn default() -> Self {
        Self {
            shards: std::array::from_fn(|_| Mutex::default()),
            hasher: std::hash::RandomState::new(),
        }
    }
}

impl InFlightSet {
    /// Takes `key`'s place; false if the session already has that id in flight.
    fn insert(&self, key: (String, String)) -> bool {
        self.shard(&key.0).insert(key)
    }

    fn remove(&self, key: &(String, String)) {
        self.shard(&key.0).remove(key);
    }

    fn shard(&self, session: &str) -> std::sync::MutexGuard<'_, HashSet<(String, String)>> {
        self.shards[self.shard_of(session)]
            .lock()
            .unwrap_or_else(|e| e.into_inner())
    }

    fn shard_of(&self, session: &str) -> usize {
        use std::hash::BuildHasher;
        self.hasher.hash_one(session) as usize % IN_FLIGHT_SHARDS
    }
}

/// Holds a request's place in [`Wire::in_flight`] until its answer is sent or abandoned.
struct InFlight(Arc<Wire>, (String, String));

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.in_flight.remove(&self.1);
    }
}

/// rmcp turns away a POSTed body it cannot decode with 415 and serde's bare message
/// ("unrecognized JSON-RPC message"), and an `initialize` whose params do not decode with
/// "Session ID is required". Both become 400 with a JSON-RPC error saying what is wrong
/// (see [`crate::mcp::wire::malformed_message`]). The body is read here, within the same
/// limit rmcp applies, so it can be examined when rmcp refuses it.
///
/// A request whose id the same session already has in flight is refused too (400,
/// `-32600`): rmcp routes a session's answers by id, so the earlier request would never
/// hear back, its stream held open by keep-alives (the TypeScript and Python SDKs have had
/// the same fault). An id may be used again once its answer is out.
async fn explain_malformed(
    State(wire): State<Arc<Wire>>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    if request.method() != axum::http::Method::POST {
        return next.run(request).await;
    }
    let (parts, body) = request.into_parts();
    let body = match read_within(body, wire.max_body_bytes).await {
        Ok(body) => body,
        Err(refusal) => return refusal,
    };
    let session = parts
        .headers
        .get("mcp-session-id")
        .and_then(|v| v.to_str().ok());
    let mut place = None;
    if let Some(session) = session
        && let Some(id) = request_id(&body)
    {
        let key = (session.to_string(), id);
        let fresh = wire.in_flight.insert(key.clone());
        if !fresh {
            let message = format!(
                "Invalid Request: request id {} is already in flight in this session; ids must be unique",
                key.1
            );
            let error = rmcp::model::ErrorData::invalid_request(message, None);
            let id: serde_json::Value = serde_json::from_str(&key.1).unwrap_or_default();
            let answer = serde_json::json!({ "jsonrpc": "2.0", "id": id, "error": error });
            return (StatusCode::BAD_REQUEST, axum::Json(answer)).into_response();
        }
        place = Some(InFlight(wire.clone(), key));
    }
    let json_body = parts
        .headers
        .get(axum::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| {
            v.split(';')
                .next()
                .unwrap_or("")
                .trim()
                .eq_ignore_ascii_case("application/json")
        });
    let sessionless = !parts.headers.contains_key("mcp-session-id");
    let request = axum::extract::Request::from_parts(parts, axum::body::Body::from(body.clone()));
    let response = next.run(request).await;
    let plain_text = !response
        .headers()
        .contains_key(axum::http::header::CONTENT_TYPE);
    let (id, error) = match response.status() {
        // With a JSON Content-Type, rmcp's 415 means the body did not decode.
        StatusCode::UNSUPPORTED_MEDIA_TYPE if json_body => {
            crate::mcp::wire::malformed_message(&body)
        }
        StatusCode::BAD_REQUEST if sessionless && plain_text => {
            match serde_json::from_slice::<serde_json::Value>(&body) {
                Ok(m) if m["method"] == "initialize" => (
                    m.get("id").cloned(),
                    crate::mcp::wire::unroutable_request("initialize", m.get("params")),
                ),
                _ => return response,
            }
        }
        _ => {
            let Some(place) = place else {
                return response;
            };
            if !is_event_stream(&response) {
                // A JSON answer is complete: rmcp has routed it, so the id is free again.
                // Left as it is, the body keeps its length (no chunked encoding).
                drop(place);
                return response;
            }
            // A streamed answer is still on its way: the place is given up when the body is
            // done with (sent, or dropped with the connection).
            let (parts, body) = response.into_parts();
            let body = body.into_data_stream().map(move |chunk| {
                let _holding = &place;
                chunk
            });
            return axum::response::Response::from_parts(
                parts,
                axum::body::Body::from_stream(body),
            );
        }
    };
    let answer = serde_json::json!({ "jsonrpc": "2.0", "id": id, "error": error });
    (StatusCode::BAD_REQUEST, axum::Json(answer)).into_response()
}

fn is_event_stream(response: &axum::response::Response) -> bool {
    response
        .headers()
        .get(axum::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("text/event-stream"))
}

/// The id of a JSON-RPC request (not a notification or a response), as JSON text, if it is
/// one MCP allows.
fn request_id(body: &[u8]) -> Option<String> {
    #[derive(serde::Deserialize)]
    struct Peek {
        id: Option<serde_json::Value>,
        method: Option<serde::de::IgnoredAny>,
    }
    let peek: Peek = serde_json::from_slice(body).ok()?;
    peek.method?;
    // Ids of the wrong type are malformed_message's to explain.
    let id = peek.id.filter(|id| id.is_string() || id.is_i64())?;
    Some(id.to_string())
}

/// How much of an oversized body is read and discarded (times the limit), and for how long.
const DRAIN_FACTOR: usize = 4;
const DRAIN_FOR: Duration = Duration::from_secs(10);

/// The whole body, or 413 past `max` bytes (rmcp's words) and 400 if it breaks off.
///
/// An oversized body is read on and thrown away, up to [`DRAIN_FACTOR`] times the limit and
/// for [`DRAIN_FOR`], before the 413 goes out (nginx's "lingering close"): closing on a
/// client still sending makes its kernel drop the answer, and the client sees a reset
/// instead of the refusal. Beyond that the connection closes. Nothing is kept.
async fn read_within(
    body: axum::body::Body,
    max: usize,
) -> Result<axum::body::Bytes, axum::response::Response> {
    let mut stream = body.into_data_stream();
    let mut collected = Vec::new();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| {
            let message = format!("Bad Request: the body broke off: {e}");
            (StatusCode::BAD_REQUEST, message).into_response()
        })?;
        if chunk.len() > max.saturating_sub(collected.len()) {
            drop(collected);
            let mut left = max.saturating_mul(DRAIN_FACTOR);
            let drain = async {
                while let Some(Ok(chunk)) = stream.next().await {
                    left = match left.checked_sub(chunk.len()) {
                        Some(left) => left,
                        None => return,
                    };
                }
            };
            let _ = tokio::time::timeout(DRAIN_FOR, drain).await;
            let message = format!("Payload Too Large: request body exceeds {max} bytes");
            let close = [(axum::http::header::CONNECTION, "close")];
            return Err((StatusCode::PAYLOAD_TOO_LARGE, close, message).into_response());
        }
        collected.extend_from_slice(&chunk);
    }
    Ok(collected.into())
}

async fn health(State(ares): State<Arc<Ares>>) -> impl IntoResponse {
    let health = ares.health().await;
    let code = if health.is_healthy() {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (code, axum::Json(health))
}

/// How long a kept-alive connection may sit between requests (or take to send a request's
/// headers) before ARES closes it. Streams being answered are not affected.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(60);

/// Serves the HTTP application on `listener` until `shutdown` fires, then drains: new
/// connections are refused, idle ones closed, and answers under way finish.
///
/// A connection that sends nothing for `idle` between requests is closed (hyper's header
/// read timeout, which `axum::serve` leaves off): otherwise each connection a client keeps
/// alive, or opens and never uses, holds its buffers (~30 KB) for as long as the client
/// likes.
pub async fn serve_http(
    listener: TcpListener,
    app: Router,
    idle: Duration,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let (open_tx, open_rx) = tokio::sync::watch::channel(());
    loop {
        let tcp = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((tcp, _)) => tcp,
                Err(e) => {
                    backoff_after(&e).await;
                    continue;
                }
            },
            () = shutdown.cancelled() => break,
        };
        // Without TCP_NODELAY every streamed response waits for a delayed ACK (~40 ms).
        let _ = tcp.set_nodelay(true);
        let service = hyper_util::service::TowerToHyperService::new(app.clone());
        let shutdown = shutdown.clone();
        let open = open_rx.clone();
        tokio::spawn(async move {
            let connection = hyper::server::conn::http1::Builder::new()
                .timer(hyper_util::rt::TokioTimer::new())
                .header_read_timeout(idle)
                .serve_connection(hyper_util::rt::TokioIo::new(tcp), service)
                .with_upgrades();
            let mut connection = std::pin::pin!(connection);
            let outcome = tokio::select! {
                outcome = connection.as_mut() => outcome,
                () = shutdown.cancelled() => {
                    connection.as_mut().graceful_shutdown();
                    connection.await
                }
            };
            if let Err(e) = outcome {
                tracing::debug!(error = %e, "HTTP connection ended");
            }
            drop(open);
        });
    }
    drop(listener);
    drop(open_rx);
    // Every connection task holds a receiver: this returns once the last has ended.
    open_tx.closed().await;
    Ok(())
}

/// After a failed accept: a refused or reset connection is the client's business; running
/// out of descriptors (or anything else) is logged and waited out, as `axum::serve` does.
async fn backoff_after(e: &std::io::Error) {
    use std::io::ErrorKind;
    if matches!(
        e.kind(),
        ErrorKind::ConnectionRefused | ErrorKind::ConnectionAborted | ErrorKind::ConnectionReset
    ) {
        return;
    }
    tracing::error!(error = %e, "cannot accept HTTP connections; trying again in 1 s");
    tokio::time::sleep(Duration::from_secs(1)).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(session: &str, id: &str) -> (String, String) {
        (session.to_string(), id.to_string())
    }

    #[test]
    fn an_id_is_taken_once_per_session_until_its_answer_is_out() {
        let set = InFlightSet::default();
        assert!(set.insert(key("s1", "1")));
        assert!(
            !set.insert(key("s1", "1")),
            "the same id in the same session"
        );
        assert!(
            set.insert(key("s2", "1")),
            "another session's id 1 is its own"
        );
        assert!(set.insert(key("s1", "2")));
        set.remove(&key("s1", "1"));
        assert!(set.insert(key("s1", "1")), "free again once answered");
        // Sessions spread over the shards rather than sharing one lock.
        let used: HashSet<usize> = (0..64)
            .map(|n| set.shard_of(&format!("session-{n}")))
            .collect();
        assert!(used.len() > 1, "{used:?}");
    }
}
