//! `GET /api/events`: the event bus as Server-Sent Events.
//!
//! Each event goes out as its JSON (the shape every feed uses) with `id:` set to its
//! `event_id`. A client that reconnects with `Last-Event-ID` (browsers do by themselves)
//! first gets every stored event after that one — including events committed just before a
//! crash, on any instance — then the live feed, each event once. The stream then says
//! `ready`, so a client knows from then on it misses nothing. When the id is unknown (pruned)
//! or too far back, or this listener falls too far behind the bus, it gets a `resync` event
//! and should refetch `/api/dashboard`. Keep-alive comments hold idle connections open
//! through proxies; the server's shutdown ends the stream so the server can drain.

use crate::events::Event;
use crate::service::Ares;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::sse::{self, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures_util::stream::{self, Stream};
use serde_json::json;
use std::collections::HashSet;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::broadcast::{Receiver, error::RecvError};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

/// How often an idle stream sends a comment.
const KEEP_ALIVE: Duration = Duration::from_secs(15);

/// The most stored events a reconnecting client is replayed; further back, it resyncs.
const REPLAY: i64 = 1_000;

/// What the data routes share: the service and the server's shutdown signal.
#[derive(Clone)]
pub struct Live {
    pub ares: Arc<Ares>,
    pub shutdown: CancellationToken,
}

/// `GET /api/events`
pub async fn events(State(live): State<Live>, headers: HeaderMap) -> Response {
    // Subscribed before the replay is read, so nothing committed meanwhile is missed; what
    // both carry goes out once.
    let receiver = live.ares.events.subscribe();
    let (replayed, sent) = match last_event_id(&headers) {
        Some(last) => replay(&live.ares, last).await,
        None => (Vec::new(), HashSet::new()),
    };
    let ready = stream::iter(
        replayed
            .into_iter()
            .chain(std::iter::once(
                sse::Event::default().event("ready").data("{}"),
            ))
            .map(Ok::<_, Infallible>),
    );
    let feed = feed(receiver, sent, live.shutdown.clone());
    let mut response = Sse::new(futures_util::StreamExt::chain(ready, feed))
        .keep_alive(KeepAlive::new().interval(KEEP_ALIVE).text("keep-alive"))
        .into_response();
    // Tell buffering proxies (nginx) to pass events through at once.
    response.headers_mut().insert(
        "x-accel-buffering",
        axum::http::HeaderValue::from_static("no"),
    );
    response
}

fn last_event_id(headers: &HeaderMap) -> Option<Uuid> {
    let value = headers.get("last-event-id")?.to_str().ok()?;
    Uuid::parse_str(value.trim()).ok()
}

/// The stored events after `last`, as messages, and their ids; or a `resync` when `last`
/// is not stored or more than [`REPLAY`] events back.
async fn replay(ares: &Ares, last: Uuid) -> (Vec<sse::Event>, HashSet<Uuid>) {
    let resync = |reason: &str| {
        let message = sse::Event::default()
            .event("resync")
            .data(json!({ "reason": reason }).to_string());
        (vec![message], HashSet::new())
    };
    let position = match ares.store.event_position(last).await {
        Ok(Some(position)) => position,
        Ok(None) => return resync("Last-Event-ID is not a stored event (pruned, or never was)"),
        Err(e) => {
            tracing::warn!(error = %e, "could not read events to replay");
            return resync("stored events could not be read");
        }
    };
    match ares.store.events_after(Some(position), REPLAY + 1).await {
        Ok(events) if events.len() as i64 <= REPLAY => {
            let ids = events.iter().map(|(_, e)| e.event_id).collect();
            (events.iter().map(|(_, e)| message(e)).collect(), ids)
        }
        Ok(_) => resync("more than 1000 events since Last-Event-ID"),
        Err(e) => {
            tracing::warn!(error = %e, "could not read events to replay");
            resync("stored events could not be read")
        }
    }
}

/// The live feed, minus the events in `replayed` (sent already).
fn feed(
    receiver: Receiver<Arc<Event>>,
    replayed: HashSet<Uuid>,
    shutdown: CancellationToken,
) -> impl Stream<Item = Result<sse::Event, Infallible>> {
    stream::unfold(
        (receiver, replayed, shutdown),
        |(mut receiver, mut replayed, shutdown)| async move {
            let next = loop {
                let next = tokio::select! {
                    next = receiver.recv() => next,
                    () = shutdown.cancelled() => return None,
                };
                match next {
                    // Past the replay's end nothing repeats; stop checking.
                    Ok(event) if !replayed.is_empty() && replayed.remove(&event.event_id) => {}
                    other => break other,
                }
            };
            let message = match next {
                Ok(event) => message(&event),
                Err(RecvError::Lagged(missed)) => {
                    tracing::info!(missed, "a dashboard stream fell behind the event bus");
                    sse::Event::default()
                        .event("resync")
                        .data(json!({ "missed": missed }).to_string())
                }
                Err(RecvError::Closed) => return None,
            };
            Some((Ok(message), (receiver, replayed, shutdown)))
        },
    )
}

fn message(event: &Event) -> sse::Event {
    let data = serde_json::to_string(event).expect("events serialize");
    sse::Event::default()
        .id(event.event_id.to_string())
        .data(data)
}
