//! One downstream server: its MCP client session, kept alive by a supervisor that pings it
//! and reconnects with exponential backoff, and the bounded calls the checks make through it.
//! The server's state is written to the store so `health` can show it.

use super::config::{ServerConfig, Transport};
use crate::clock::{Clock, SystemClock};
use crate::store::{DownstreamConnection, Store};
use process_wrap::tokio::{CommandWrap, ProcessGroup};
use rmcp::model::{
    CallToolRequestParams, CallToolResult, ClientConfig, ClientRequest, Implementation, JsonObject,
    PingRequest,
};
use rmcp::service::{RunningService, ServiceError};
use rmcp::transport::streamable_http_client::StreamableHttpClientTransportConfig;
use rmcp::transport::{StreamableHttpClientTransport, TokioChildProcess};
use rmcp::{RoleClient, ServiceExt};
use std::collections::{HashMap, VecDeque};
use std::process::Stdio;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex as StdMutex};
use std::time::{Duration, Instant};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::sync::{Mutex, Notify};
use tokio_util::sync::CancellationToken;

/// The first retry after a failed connect; doubled per further failure.
const BACKOFF_BASE: Duration = Duration::from_millis(500);
/// Backoff never waits longer than this.
const BACKOFF_MAX: Duration = Duration::from_secs(60);
/// A session that dies younger than this counts as a crash loop: its restarts back off.
const STABLE_AFTER: Duration = Duration::from_secs(10);
/// How often the supervisor looks whether a connected server is still there.
const LIVENESS_TICK: Duration = Duration::from_secs(1);
/// The only variables of ARES's environment a stdio server inherits.
const INHERITED_ENV: [&str; 10] = [
    "HOME", "LOGNAME", "PATH", "SHELL", "TERM", "USER", "LANG", "LC_ALL", "TMPDIR", "TZ",
];
/// Lines of a child's stderr kept to explain why it died.
const STDERR_LINES: usize = 5;
/// Bytes of one stderr line kept; the rest of a longer line is read and dropped, so a
/// server that writes endlessly without a newline costs no memory.
const STDERR_LINE_BYTES: usize = 1200;

/// A live MCP session with the server.
pub struct Session {
    client: RunningService<RoleClient, ClientConfig>,
    /// Names from the server's tools/list, read once per session.
    pub tools: Vec<String>,
    /// The child's last stderr lines (stdio servers), for error messages.
    stderr: Arc<StdMutex<VecDeque<String>>>,
    /// When the handshake completed.
    opened: Instant,
}

impl Session {
    fn is_alive(&self) -> bool {
        !self.client.is_closed() && !self.client.peer().is_transport_closed()
    }

    /// The first of `names` this server offers.
    pub fn pick<'a>(&self, names: &[&'a str]) -> Option<&'a str> {
        names
            .iter()
            .copied()
            .find(|n| self.tools.iter().any(|t| t == n))
    }

    fn stderr_tail(&self) -> Option<String> {
        let lines = self.stderr.lock().ok()?;
        (!lines.is_empty()).then(|| lines.iter().cloned().collect::<Vec<_>>().join(" | "))
    }
}

enum Link {
    Up(Arc<Session>),
    Down {
        reason: String,
        /// Consecutive failures; sets the backoff.
        failures: u32,
        /// No reconnect (by a call or the supervisor) before this.
        retry_at: Instant,
    },
}

/// One configured server and its connection.
pub struct Connection {
    pub config: ServerConfig,
    /// Bounds connecting and each call.
    pub timeout: Duration,
    store: Arc<dyn Store>,
    link: Mutex<Link>,
    /// Wakes the supervisor when a call finds the link broken.
    wake: Notify,
    /// Serialises multi-step operations (navigate, then read) on a stateful server.
    pub exclusive: Mutex<()>,
    /// Sessions in a row that died young; a crash-looping server is restarted with backoff.
    crashes: AtomicU32,
    /// Last successful ping and its latency, kept across status updates.
    pinged: StdMutex<(Option<chrono::DateTime<chrono::Utc>>, Option<f64>)>,
}

/// Why a server could not decide; the criterion becomes `unverifiable` with this reason
/// unless another server of the role can.
#[derive(Debug, Clone)]
pub struct Unavailable {
    pub reason: String,
    /// The server is fine but lacks the tool (e.g. lint on the command runner): passing it
    /// over is routine, not worth mentioning in a fallback's verdict.
    pub lacks_tool: bool,
}

impl Unavailable {
    pub fn new(reason: impl Into<String>) -> Self {
        Self {
            reason: reason.into(),
            lacks_tool: false,
        }
    }

    pub fn lacks_tool(reason: impl Into<String>) -> Self {
        Self {
            reason: reason.into(),
            lacks_tool: true,
        }
    }
}

impl Connection {
    pub fn new(config: ServerConfig, default_timeout: Duration, store: Arc<dyn Store>) -> Self {
        Self {
            timeout: config.timeout.unwrap_or(default_timeout),
            config,
            store,
            link: Mutex::new(Link::Down {
                reason: "not connected yet".into(),
                failures: 0,
                retry_at: Instant::now(),
            }),
            wake: Notify::new(),
            exclusive: Mutex::new(()),
            crashes: AtomicU32::new(0),
            pinged: StdMutex::new((None, None)),
        }
    }

    pub fn name(&self) -> &str {
        &self.config.name
    }

    /// The live session, connecting first when the link is down and its backoff has passed.
    pub async fn session(&self) -> Result<Arc<Session>, Unavailable> {
        let mut link = tokio::time::timeout(self.timeout, self.link.lock())
            .await
            .map_err(|_| {
                Unavailable::new(format!("still connecting after {}", secs(self.timeout)))
            })?;
        if let Link::Up(session) = &*link {
            if session.is_alive() {
                return Ok(session.clone());
            }
            let reason = lost(session);
            self.set_down(&mut link, reason, 0).await;
        }
        if let Link::Down {
            reason, retry_at, ..
        } = &*link
            && *retry_at > Instant::now()
        {
            return Err(Unavailable::new(format!(
                "{reason} (next reconnect attempt in {})",
                secs(*retry_at - Instant::now())
            )));
        }
        self.connect_locked(&mut link).await
    }

    /// Calls a tool with the connection's timeout. A tool error (`isError`) is an answer and
    /// comes back as `Ok`; a hang, a crash or a protocol error is `Unavailable`.
    pub async fn call(
        &self,
        session: &Arc<Session>,
        tool: &str,
        arguments: serde_json::Value,
    ) -> Result<CallToolResult, Unavailable> {
        let serde_json::Value::Object(args) = arguments else {
            return Err(Unavailable::new(
                "internal: tool arguments must be an object",
            ));
        };
        let params = CallToolRequestParams::new(tool.to_string()).with_arguments(args);
        let answer = tokio::time::timeout(self.timeout, session.client.peer().call_tool(params));
        match answer.await {
            Ok(Ok(result)) => Ok(result),
            Ok(Err(ServiceError::McpError(e))) => Err(Unavailable::new(format!(
                "`{tool}` was refused with error {}: {}",
                e.code.0, e.message
            ))),
            Ok(Err(e @ (ServiceError::UnexpectedResponse | ServiceError::Cancelled { .. }))) => {
                Err(Unavailable::new(format!(
                    "`{tool}` answered unexpectedly: {e}"
                )))
            }
            Ok(Err(e)) => {
                let reason = match session.stderr_tail() {
                    Some(tail) if !session.is_alive() => {
                        format!("connection lost during `{tool}` ({e}); stderr: {tail}")
                    }
                    _ => format!("connection lost during `{tool}`: {e}"),
                };
                self.drop_session(session, reason.clone(), 0).await;
                Err(Unavailable::new(reason))
            }
            Err(_) => {
                let reason = format!("no answer to `{tool}` within {}", secs(self.timeout));
                // A server that hangs is replaced, not waited on: the next call starts afresh
                // once the backoff has passed.
                self.drop_session(session, reason.clone(), 1).await;
                Err(Unavailable::new(reason))
            }
        }
    }

    /// Keeps the connection up until `shutdown`: connects, notices within a second when the
    /// server exits, pings every `ping_every`, and reconnects with backoff after a failure.
    pub async fn supervise(self: Arc<Self>, ping_every: Duration, shutdown: CancellationToken) {
        let mut next_ping = Instant::now() + ping_every;
        loop {
            let now = Instant::now();
            let wait = match &*self.link.lock().await {
                Link::Up(s) if !s.is_alive() => Duration::ZERO,
                Link::Up(_) => next_ping.saturating_duration_since(now).min(LIVENESS_TICK),
                Link::Down { retry_at, .. } => retry_at.saturating_duration_since(now),
            };
            tokio::select! {
                () = shutdown.cancelled() => break,
                () = tokio::time::sleep(wait) => {}
                () = self.wake.notified() => continue,
            }
            let up = match &*self.link.lock().await {
                Link::Up(session) => Some(session.clone()),
                Link::Down { .. } => None,
            };
            match up {
                Some(session) if !session.is_alive() => {
                    self.drop_session(&session, lost(&session), 0).await
                }
                Some(session) if Instant::now() >= next_ping => {
                    self.ping(&session).await;
                    next_ping = Instant::now() + ping_every;
                }
                Some(_) => {}
                None => {
                    let mut link = self.link.lock().await;
                    if matches!(&*link, Link::Down { retry_at, .. } if *retry_at <= Instant::now())
                        && self.connect_locked(&mut link).await.is_ok()
                    {
                        next_ping = Instant::now() + ping_every;
                    }
                }
            }
        }
        if let Link::Up(session) = &*self.link.lock().await {
            session.client.cancellation_token().cancel();
        }
        tracing::debug!(server = %self.name(), "supervisor stopped");
    }

    async fn ping(&self, session: &Arc<Session>) {
        let started = Instant::now();
        let request = ClientRequest::PingRequest(PingRequest::default());
        match tokio::time::timeout(self.timeout, session.client.peer().send_request(request)).await
        {
            Ok(Ok(_)) => {
                let latency = started.elapsed().as_secs_f64() * 1000.0;
                if let Ok(mut p) = self.pinged.lock() {
                    *p = (Some(SystemClock.now()), Some(latency));
                }
                self.record("connected", None).await;
            }
            Ok(Err(e)) => {
                self.drop_session(session, format!("ping failed: {e}"), 0)
                    .await
            }
            Err(_) => {
                let reason = format!("no answer to ping within {}", secs(self.timeout));
                self.drop_session(session, reason, 1).await;
            }
        }
    }

    /// Opens a session (bounded by the timeout) while holding the link.
    async fn connect_locked(&self, link: &mut Link) -> Result<Arc<Session>, Unavailable> {
        let started = Instant::now();
        match tokio::time::timeout(self.timeout, open(&self.config)).await {
            Ok(Ok(session)) => {
                let session = Arc::new(session);
                let latency = started.elapsed().as_secs_f64() * 1000.0;
                if let Ok(mut p) = self.pinged.lock() {
                    *p = (Some(SystemClock.now()), Some(latency));
                }
                tracing::info!(server = %self.name(), tools = session.tools.len(), "downstream connected");
                *link = Link::Up(session.clone());
                self.record("connected", None).await;
                Ok(session)
            }
            Ok(Err(e)) => {
                let reason = format!("cannot connect: {e:#}");
                let failures = self.failures(link) + 1;
                self.set_down(link, reason.clone(), failures).await;
                Err(Unavailable::new(reason))
            }
            Err(_) => {
                let reason = format!(
                    "cannot connect: no MCP handshake within {}",
                    secs(self.timeout)
                );
                let failures = self.failures(link) + 1;
                self.set_down(link, reason.clone(), failures).await;
                Err(Unavailable::new(reason))
            }
        }
    }

    fn failures(&self, link: &Link) -> u32 {
        match link {
            Link::Down { failures, .. } => *failures,
            Link::Up(_) => 0,
        }
    }

    /// Marks `session` gone (if it is still the current one) and wakes the supervisor.
    /// `failures` 0 is a crash: retried at once unless the server keeps dying young.
    async fn drop_session(&self, session: &Arc<Session>, reason: String, failures: u32) {
        let mut link = self.link.lock().await;
        if matches!(&*link, Link::Up(current) if Arc::ptr_eq(current, session)) {
            self.set_down(&mut link, reason, failures).await;
        }
    }

    async fn set_down(&self, link: &mut Link, reason: String, mut failures: u32) {
        if let Link::Up(session) = &*link {
            session.client.cancellation_token().cancel();
            if failures == 0 {
                // The first crash restarts at once; a server that keeps dying young backs off.
                let crashes = if session.opened.elapsed() < STABLE_AFTER {
                    self.crashes.fetch_add(1, Ordering::Relaxed) + 1
                } else {
                    self.crashes.store(1, Ordering::Relaxed);
                    1
                };
                failures = crashes - 1;
            }
        }
        tracing::warn!(server = %self.name(), %reason, failures, "downstream unavailable");
        *link = Link::Down {
            reason: reason.clone(),
            failures,
            retry_at: Instant::now() + backoff(failures),
        };
        let status = if failures == 0 {
            "disconnected"
        } else {
            "failed"
        };
        self.record(status, Some(reason)).await;
        self.wake.notify_one();
    }

    /// Writes the server's state for `health`; a store hiccup is logged, never fatal.
    pub async fn record(&self, status: &str, error: Option<String>) {
        let (last_ping_at, latency_ms) = self.pinged.lock().map(|p| *p).unwrap_or((None, None));
        let row = DownstreamConnection {
            name: self.config.name.clone(),
            role: self.config.role.as_str().to_string(),
            status: status.to_string(),
            last_ping_at,
            last_error: error,
            latency_ms,
            updated_at: SystemClock.now(),
        };
        if let Err(e) = self.store.record_downstream(&row).await {
            tracing::warn!(server = %self.name(), error = %e, "could not record downstream state");
        }
    }
}

/// Zero for the first retry after a crash, then 0.5 s, 1 s, 2 s … up to a minute.
pub fn backoff(failures: u32) -> Duration {
    if failures == 0 {
        return Duration::ZERO;
    }
    BACKOFF_BASE
        .saturating_mul(1 << (failures - 1).min(16))
        .min(BACKOFF_MAX)
}

fn secs(d: Duration) -> String {
    format!("{:.1} s", d.as_secs_f64())
}

fn lost(session: &Session) -> String {
    match session.stderr_tail() {
        Some(tail) => format!("connection lost (the server exited); stderr: {tail}"),
        None => "connection lost (the server exited)".into(),
    }
}

/// Starts the server (or reaches its URL), completes the MCP handshake and lists its tools.
async fn open(config: &ServerConfig) -> anyhow::Result<Session> {
    let mut info = ClientConfig::default();
    info.client_info = Implementation::new("ares", env!("CARGO_PKG_VERSION"));
    let stderr = Arc::new(StdMutex::new(VecDeque::new()));
    let client = match &config.transport {
        Transport::Stdio {
            command,
            args,
            env,
            cwd,
        } => {
            let mut cmd = tokio::process::Command::new(command);
            // A minimal environment plus the entry's `env`, as Claude Desktop and the MCP SDKs
            // do: ARES's own secrets (DATABASE_URL, keys) are not handed to third parties.
            cmd.args(args).env_clear();
            for name in INHERITED_ENV {
                if let Some(value) = std::env::var_os(name) {
                    cmd.env(name, value);
                }
            }
            cmd.envs(env);
            if let Some(cwd) = cwd {
                cmd.current_dir(cwd);
            }
            // Its own process group, so killing it also ends what it started (npx's node,
            // Playwright's browser).
            let mut wrapped = CommandWrap::from(cmd);
            wrapped.wrap(ProcessGroup::leader());
            let (transport, err) = TokioChildProcess::builder(wrapped)
                .stderr(Stdio::piped())
                .spawn()
                .map_err(|e| anyhow::anyhow!("cannot start `{command}`: {e}"))?;
            if let Some(err) = err {
                tokio::spawn(keep_stderr(config.name.clone(), err, stderr.clone()));
            }
            match info.serve(transport).await {
                Ok(client) => client,
                Err(e) => {
                    // Give the reader a moment to collect why the child died.
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    let tail = stderr
                        .lock()
                        .map(|l| l.iter().cloned().collect::<Vec<_>>().join(" | "))
                        .unwrap_or_default();
                    if tail.is_empty() {
                        anyhow::bail!("MCP handshake failed: {e}");
                    }
                    anyhow::bail!("MCP handshake failed: {e}; stderr: {tail}");
                }
            }
        }
        Transport::Http { url, headers } => {
            let mut http = StreamableHttpClientTransportConfig::with_uri(url.as_str());
            let mut custom = HashMap::new();
            for (name, value) in headers {
                if name.eq_ignore_ascii_case("authorization")
                    && let Some(token) = value.strip_prefix("Bearer ")
                {
                    http = http.auth_header(token);
                    continue;
                }
                custom.insert(
                    axum::http::HeaderName::from_bytes(name.as_bytes())?,
                    axum::http::HeaderValue::from_str(value)?,
                );
            }
            let transport = StreamableHttpClientTransport::from_config(http.custom_headers(custom));
            info.serve(transport)
                .await
                .map_err(|e| anyhow::anyhow!("MCP handshake failed: {e}"))?
        }
    };
    let tools = client
        .peer()
        .list_all_tools()
        .await
        .map_err(|e| anyhow::anyhow!("tools/list failed: {e}"))?
        .into_iter()
        .map(|t| t.name.to_string())
        .collect();
    Ok(Session {
        client,
        tools,
        stderr,
        opened: Instant::now(),
    })
}

async fn keep_stderr(
    server: String,
    err: impl tokio::io::AsyncRead + Unpin,
    tail: Arc<StdMutex<VecDeque<String>>>,
) {
    let mut reader = BufReader::new(err);
    let mut line = Vec::with_capacity(STDERR_LINE_BYTES);
    let mut cut = false;
    loop {
        let (taken, ended) = match reader.fill_buf().await {
            Ok(chunk) if !chunk.is_empty() => {
                let newline = chunk.iter().position(|b| *b == b'\n');
                let taken = newline.map_or(chunk.len(), |i| i + 1);
                let room = STDERR_LINE_BYTES - line.len();
                let text = &chunk[..newline.unwrap_or(taken)];
                cut |= text.len() > room;
                line.extend_from_slice(&text[..text.len().min(room)]);
                (taken, newline.is_some())
            }
            _ => break,
        };
        reader.consume(taken);
        if ended {
            keep_line(&server, &line, cut, &tail);
            line.clear();
            cut = false;
        }
    }
    if !line.is_empty() {
        keep_line(&server, &line, cut, &tail);
    }
}

fn keep_line(server: &str, line: &[u8], cut: bool, tail: &StdMutex<VecDeque<String>>) {
    let line = String::from_utf8_lossy(line);
    let line = line.trim_end_matches('\r');
    tracing::debug!(server = %server, cut, "{line}");
    if let Ok(mut tail) = tail.lock() {
        if tail.len() == STDERR_LINES {
            tail.pop_front();
        }
        let mut kept: String = line.chars().take(300).collect();
        if cut || kept.len() < line.len() {
            kept.push('…');
        }
        tail.push_back(kept);
    }
}

/// The text parts of a tool result, joined.
pub fn text_of(result: &CallToolResult) -> String {
    result
        .content
        .iter()
        .filter_map(|c| c.as_text().map(|t| t.text.as_str()))
        .collect::<Vec<_>>()
        .join("\n")
}

/// An argument object for a tool call.
pub fn args(pairs: &[(&str, serde_json::Value)]) -> serde_json::Value {
    let mut map = JsonObject::new();
    for (k, v) in pairs {
        map.insert((*k).to_string(), v.clone());
    }
    serde_json::Value::Object(map)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn stderr_without_newlines_is_kept_to_a_short_tail_not_buffered_whole() {
        let mut flood = vec![b'e'; 8 << 20];
        flood.extend_from_slice(b"\nlast words\r\n");
        let tail = Arc::new(StdMutex::new(VecDeque::new()));
        keep_stderr("s".into(), flood.as_slice(), tail.clone()).await;
        let tail = tail.lock().unwrap();
        assert_eq!(tail.len(), 2);
        assert_eq!(tail[0], format!("{}…", "e".repeat(300)));
        assert_eq!(tail[1], "last words");
    }

    #[test]
    fn backoff_retries_a_crash_at_once_then_doubles_up_to_a_minute() {
        assert_eq!(backoff(0), Duration::ZERO);
        assert_eq!(backoff(1), Duration::from_millis(500));
        assert_eq!(backoff(2), Duration::from_secs(1));
        assert_eq!(backoff(4), Duration::from_secs(4));
        assert_eq!(backoff(30), BACKOFF_MAX);
    }
}
