//! `GET /api/events`: the event bus as Server-Sent Events.
//!
//! Each event goes out as its JSON (the shape every feed uses) with `id:` set to its
//! `event_id`. The stream opens with a `ready` event, so a client knows from then on it
//! misses nothing; when this listener falls too far behind the bus it gets a `resync`
//! event saying how many it missed, and should refetch `/api/dashboard`. Keep-alive
//! comments hold idle connections open through proxies; the server's shutdown ends the
//! stream so the server can drain.

use crate::events::Event;
use crate::service::Ares;
use axum::extract::State;
use axum::response::sse::{self, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures_util::stream::{self, Stream};
use serde_json::json;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::broadcast::{Receiver, error::RecvError};
use tokio_util::sync::CancellationToken;

/// How often an idle stream sends a comment.
const KEEP_ALIVE: Duration = Duration::from_secs(15);

/// What the data routes share: the service and the server's shutdown signal.
#[derive(Clone)]
pub struct Live {
    pub ares: Arc<Ares>,
    pub shutdown: CancellationToken,
}

/// `GET /api/events`
pub async fn events(State(live): State<Live>) -> Response {
    // Subscribed before the response starts, so nothing committed after the client sees
    // `ready` is missed.
    let receiver = live.ares.events.subscribe();
    let ready = stream::once(async {
        Ok::<_, Infallible>(sse::Event::default().event("ready").data("{}"))
    });
    let feed = feed(receiver, live.shutdown.clone());
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

fn feed(
    receiver: Receiver<Arc<Event>>,
    shutdown: CancellationToken,
) -> impl Stream<Item = Result<sse::Event, Infallible>> {
    stream::unfold(
        (receiver, shutdown),
        |(mut receiver, shutdown)| async move {
            let next = tokio::select! {
                next = receiver.recv() => next,
                () = shutdown.cancelled() => return None,
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
            Some((Ok(message), (receiver, shutdown)))
        },
    )
}

fn message(event: &Event) -> sse::Event {
    let data = serde_json::to_string(event).expect("events serialize");
    sse::Event::default()
        .id(event.event_id.to_string())
        .data(data)
}
