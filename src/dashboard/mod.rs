//! The live dashboard and report downloads over HTTP.
//!
//! Two halves, so the server can put only one behind the API-key gate:
//! - open: the page shell (`/`) and its assets (`/assets/…`), embedded in the binary. They
//!   hold no data, and nothing loads from another origin.
//! - protected: the data the page shows — `/api/dashboard`, `/api/agents/{id}/trend`, the
//!   live event stream `/api/events` ([`live`]) — and `/reports/{kind}` downloads
//!   ([`downloads`]).
//!
//! Every response carries a strict Content-Security-Policy (no inline script, nothing from
//! elsewhere) and `X-Content-Type-Options: nosniff`.

mod api;
mod downloads;
mod live;

use crate::auth::{Caller, Role};
use crate::error::AresError;
use crate::service::Ares;
use axum::Router;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, Request};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use std::collections::HashMap;
use std::sync::Arc;
use tokio_util::sync::CancellationToken;

/// The page may talk only to its own origin; scripts and styles come only from files.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'self'; script-src 'self'; \
     style-src 'self'; img-src 'self' data:; connect-src 'self'; object-src 'none'; \
     base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

const INDEX_HTML: &str = include_str!("assets/index.html");
const APP_JS: &str = include_str!("assets/app.js");
const APP_CSS: &str = include_str!("assets/app.css");
const FAVICON_SVG: &str = include_str!("assets/favicon.svg");

/// The dashboard's routes, split by whether they need a key.
pub struct Routes {
    /// The page shell and its assets: served to anyone.
    pub open: Router,
    /// Data and downloads: to be put behind [`crate::auth::middleware::require_key`].
    pub protected: Router,
}

/// Builds the routes. `shutdown` ends open event streams so the server can drain.
pub fn routes(ares: Arc<Ares>, shutdown: CancellationToken) -> Routes {
    let open = Router::new()
        .route("/", get(index))
        .route("/assets/{file}", get(asset))
        .route_layer(axum::middleware::from_fn(security_headers));
    let data = Router::new()
        .route("/api/dashboard", get(api::dashboard))
        .route("/api/agents/{id}/trend", get(api::trend))
        .route("/api/events", get(live::events))
        .with_state(live::Live {
            ares: ares.clone(),
            shutdown,
        })
        .route_layer(axum::middleware::from_fn(observers_only));
    let protected = Router::new()
        .route("/reports/{report}", get(downloads::report))
        .with_state(ares)
        .merge(data)
        .route_layer(axum::middleware::from_fn(security_headers));
    Routes { open, protected }
}

async fn index() -> Response {
    asset_response("text/html; charset=utf-8", INDEX_HTML)
}

async fn asset(Path(file): Path<String>) -> Response {
    match file.as_str() {
        "app.js" => asset_response("text/javascript; charset=utf-8", APP_JS),
        "app.css" => asset_response("text/css; charset=utf-8", APP_CSS),
        "favicon.svg" => asset_response("image/svg+xml", FAVICON_SVG),
        _ => (StatusCode::NOT_FOUND, "no such asset\n").into_response(),
    }
}

fn asset_response(content_type: &'static str, body: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, content_type),
            // The assets change only with the binary; a restart may bring new ones.
            (header::CACHE_CONTROL, "no-cache"),
        ],
        body,
    )
        .into_response()
}

async fn security_headers(request: Request, next: Next) -> Response {
    let mut response = next.run(request).await;
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CONTENT_SECURITY_POLICY),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    // Data read with a key is never kept by a cache; assets say otherwise themselves.
    headers
        .entry(header::CACHE_CONTROL)
        .or_insert(HeaderValue::from_static("no-store"));
    response
}

/// The dashboard shows every agent; an agent key may see only its own, so it gets none of
/// it (its own record is one `get_agent` away over MCP).
async fn observers_only(request: Request, next: Next) -> Response {
    match request.extensions().get::<Caller>() {
        Some(caller) if caller.role != Role::Agent => next.run(request).await,
        Some(caller) => Refusal::forbidden(format!(
            "key {} is an agent key; the dashboard needs an observer or admin key",
            caller.key_id
        ))
        .into_response(),
        // The gate puts a caller on every request it lets through; without one, refuse.
        None => Refusal::forbidden("no caller identified".into()).into_response(),
    }
}

/// Why a dashboard request gets no data: a status and a message for people. The one error
/// type of this boundary; service errors map into it in one place ([`From<AresError>`]).
#[derive(Debug)]
pub struct Refusal {
    status: StatusCode,
    message: String,
}

impl Refusal {
    /// A 400 naming the parameter and what was expected.
    pub fn bad_parameter(name: &str, expected: &str) -> Self {
        Self {
            status: StatusCode::BAD_REQUEST,
            message: format!("invalid `{name}`: {expected}"),
        }
    }

    pub fn forbidden(message: String) -> Self {
        Self {
            status: StatusCode::FORBIDDEN,
            message: format!("forbidden: {message}"),
        }
    }
}

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        (self.status, format!("{}\n", self.message)).into_response()
    }
}

/// The same classes as the MCP mapping in [`crate::mcp::errors`], without leaking internals.
impl From<AresError> for Refusal {
    fn from(error: AresError) -> Self {
        let (status, message) = match error {
            AresError::Invalid { field, message } => return Self::bad_parameter(&field, &message),
            AresError::NotFound { .. } => (StatusCode::NOT_FOUND, error.to_string()),
            AresError::Refused(_) | AresError::Conflict => {
                (StatusCode::CONFLICT, error.to_string())
            }
            AresError::Unavailable(cause) => {
                tracing::warn!(error = %cause, "store unavailable");
                (
                    StatusCode::SERVICE_UNAVAILABLE,
                    "ARES storage is temporarily unavailable; retry shortly".into(),
                )
            }
            AresError::Internal(cause) => {
                let reference = uuid::Uuid::new_v4();
                tracing::error!(%reference, error = ?cause, "internal error");
                (
                    StatusCode::INTERNAL_SERVER_ERROR,
                    format!("internal error (reference {reference})"),
                )
            }
        };
        Self { status, message }
    }
}

impl From<crate::store::StoreError> for Refusal {
    fn from(error: crate::store::StoreError) -> Self {
        AresError::from(error).into()
    }
}

/// Decodes a query string, refusing parameters other than `allowed` (a typo is an error,
/// not a silently wider answer) and repeated ones.
pub(crate) fn query(
    pairs: Result<Query<Vec<(String, String)>>, QueryRejection>,
    allowed: &[&str],
) -> Result<HashMap<String, String>, Refusal> {
    let Query(pairs) = pairs
        .map_err(|_| Refusal::bad_parameter("query", "expected name=value pairs, URL-encoded"))?;
    let mut params = HashMap::new();
    for (name, value) in pairs {
        if !allowed.contains(&name.as_str()) {
            return Err(Refusal::bad_parameter(
                &name,
                &format!("unknown parameter; expected one of {}", allowed.join(", ")),
            ));
        }
        if params.insert(name.clone(), value).is_some() {
            return Err(Refusal::bad_parameter(&name, "expected it at most once"));
        }
    }
    Ok(params)
}
