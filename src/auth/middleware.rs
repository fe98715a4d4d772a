//! The HTTP gate: every request to a protected route carries `Authorization: Bearer <key>`,
//! checked before the body is read (a flood of bogus requests costs a header parse each),
//! then rate-limited per key. The caller's identity rides in the request's extensions to
//! the MCP handler.
//!
//! With Redis the limit is counted there, so N instances together allow the configured
//! rate, not N times it; while Redis is down each instance falls back to its own count.

use super::{ApiKey, Caller, Role, parse, secret_matches, token_matches};
use crate::store::Store;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota};
use std::collections::HashMap;
use std::num::NonZeroU32;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How long a looked-up key is trusted before it is read again (a revocation made through
/// another instance takes effect within this time; through this one, at once).
const CACHE_TTL: Duration = Duration::from_secs(10);
/// The most keys kept in the cache; beyond it the cache is cleared.
const CACHE_MAX: usize = 10_000;

/// The same limit as the in-process one (GCRA: one request per `ARGV[1]` µs, bursts of
/// `ARGV[2]`), kept in Redis on Redis's clock so instances agree. Returns 0 when the
/// request may pass, else the µs to wait.
const SHARED_LIMIT: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local interval = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local tat = tonumber(redis.call('GET', KEYS[1]) or '0')
if tat < now then tat = now end
local next_tat = tat + interval
local wait = next_tat - burst * interval - now
if wait > 0 then return wait end
redis.call('SET', KEYS[1], string.format('%d', next_tat), 'PX', math.ceil((next_tat - now) / 1000) + 1)
return 0
";

/// Keys recently read from the store, so each request costs no query. Shared with the
/// service, which forgets a key the moment it is revoked.
#[derive(Default)]
pub struct KeyCache(Mutex<HashMap<String, (ApiKey, Instant)>>);

impl KeyCache {
    fn get(&self, id: &str) -> Option<ApiKey> {
        let cache = self.0.lock().expect("key cache lock");
        cache
            .get(id)
            .filter(|(_, at)| at.elapsed() < CACHE_TTL)
            .map(|(key, _)| key.clone())
    }

    fn put(&self, key: ApiKey) {
        let mut cache = self.0.lock().expect("key cache lock");
        if cache.len() >= CACHE_MAX {
            cache.clear();
        }
        cache.insert(key.id.clone(), (key, Instant::now()));
    }

    /// Drops a key at once (after it was revoked).
    pub fn forget(&self, id: &str) {
        self.0.lock().expect("key cache lock").remove(id);
    }
}

/// How HTTP callers are authenticated.
pub struct Gate {
    store: Arc<dyn Store>,
    /// ARES_ADMIN_TOKEN: a bootstrap admin key.
    admin_token: Option<String>,
    /// Explicitly disabled with `--no-auth`: every caller is an anonymous admin.
    disabled: bool,
    cache: Arc<KeyCache>,
    limiter: DefaultKeyedRateLimiter<String>,
    /// The limit shared through Redis, when configured; `limiter` stands in while it is down.
    shared: Option<crate::cache::RedisUse>,
    /// Microseconds between requests at the configured rate, and the burst.
    interval_us: u64,
    burst: u32,
    /// [`SHARED_LIMIT`], hashed once.
    limit_script: redis::Script,
}

impl Gate {
    /// `per_second` requests per key, with bursts of twice that.
    pub fn new(
        store: Arc<dyn Store>,
        cache: Arc<KeyCache>,
        admin_token: Option<String>,
        disabled: bool,
        per_second: u32,
    ) -> Self {
        let rate = NonZeroU32::new(per_second.max(1)).expect("at least 1");
        let burst = NonZeroU32::new(per_second.max(1).saturating_mul(2)).expect("at least 1");
        Self {
            store,
            admin_token: admin_token.filter(|t| !t.is_empty()),
            disabled,
            cache,
            limiter: DefaultKeyedRateLimiter::keyed(Quota::per_second(rate).allow_burst(burst)),
            shared: None,
            interval_us: 1_000_000 / u64::from(rate.get()),
            burst: burst.get(),
            limit_script: redis::Script::new(SHARED_LIMIT),
        }
    }

    /// Counts requests in Redis, shared by every instance using it.
    pub fn with_shared_limit(mut self, redis: Option<crate::redis_link::RedisLink>) -> Self {
        self.shared = redis.map(crate::cache::RedisUse::new);
        self
    }

    /// None when the key may go on, else how long it must wait.
    async fn over_limit(&self, key_id: &str) -> Option<Duration> {
        if let Some(shared) = self.shared.as_ref().filter(|s| s.ready()) {
            let mut connection = shared.link.connection();
            let mut invocation = self.limit_script.key(format!("ares:rate:{key_id}"));
            invocation.arg(self.interval_us).arg(self.burst);
            let answer: Option<u64> = shared
                .link
                .run(invocation.invoke_async(&mut connection))
                .await;
            if let Some(wait_us) = answer {
                return (wait_us > 0).then(|| Duration::from_micros(wait_us));
            }
        }
        self.limiter
            .check_key(&key_id.to_string())
            .err()
            .map(|not_until| not_until.wait_time_from(DefaultClock::default().now()))
    }

    /// Who the bearer token belongs to, or why it is refused.
    async fn identify(&self, token: &str) -> Result<Caller, &'static str> {
        if let Some(admin) = &self.admin_token
            && token_matches(token, admin)
        {
            return Ok(Caller {
                key_id: "admin-token".into(),
                role: Role::Admin,
                agent_id: None,
            });
        }
        let (id, secret) = parse(token).ok_or("malformed key")?;
        let key = self.lookup(id).await?;
        if key.is_revoked() {
            return Err("revoked key");
        }
        if !secret_matches(secret, &key.secret_hash) {
            return Err("wrong key");
        }
        Ok(Caller {
            key_id: key.id,
            role: key.role,
            agent_id: key.agent_id,
        })
    }

    async fn lookup(&self, id: &str) -> Result<ApiKey, &'static str> {
        if let Some(key) = self.cache.get(id) {
            return Ok(key);
        }
        let key = match self.store.api_key(id).await {
            Ok(Some(key)) => key,
            Ok(None) => return Err("unknown key"),
            Err(e) => {
                tracing::warn!(error = %e, "key lookup failed");
                return Err("keys cannot be checked right now");
            }
        };
        self.cache.put(key.clone());
        Ok(key)
    }
}

/// The middleware: 401 with `WWW-Authenticate` without a valid key, 429 with `Retry-After`
/// over the key's rate, otherwise the request goes on carrying its [`Caller`].
pub async fn require_key(
    State(gate): State<Arc<Gate>>,
    mut request: Request,
    next: Next,
) -> Response {
    if gate.disabled {
        request.extensions_mut().insert(Caller {
            key_id: "anonymous".into(),
            role: Role::Admin,
            agent_id: None,
        });
        return next.run(request).await;
    }
    let token = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            v.strip_prefix("Bearer ")
                .or_else(|| v.strip_prefix("bearer "))
        })
        .map(str::trim);
    let Some(token) = token else {
        return unauthorized(None);
    };
    let caller = match gate.identify(token).await {
        Ok(caller) => caller,
        Err(why) => {
            // The reason is logged for operators; the token never is.
            tracing::info!(reason = why, "refused an HTTP request");
            return unauthorized(Some(why));
        }
    };
    if let Some(wait) = gate.over_limit(&caller.key_id).await {
        let secs = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
        let mut response = (
            StatusCode::TOO_MANY_REQUESTS,
            format!(
                "rate limit exceeded for key {}; retry in {secs} s\n",
                caller.key_id
            ),
        )
            .into_response();
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from(secs.max(1)));
        return response;
    }
    request.extensions_mut().insert(caller);
    next.run(request).await
}

fn unauthorized(why: Option<&'static str>) -> Response {
    let challenge = match why {
        None => r#"Bearer realm="ares""#.to_string(),
        Some(why) => {
            format!(r#"Bearer realm="ares", error="invalid_token", error_description="{why}""#)
        }
    };
    let mut response = (
        StatusCode::UNAUTHORIZED,
        "an API key is required: send `Authorization: Bearer <key>` (see `ares key create`)\n",
    )
        .into_response();
    response.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        HeaderValue::from_str(&challenge).expect("ASCII challenge"),
    );
    response
}
