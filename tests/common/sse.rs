//! A reader of ARES's Server-Sent Events stream (`GET /api/events`), message by message.

use reqwest::StatusCode;
use std::time::{Duration, Instant};

/// One Server-Sent Events message.
#[derive(Debug)]
pub struct Message {
    pub event: String,
    pub id: Option<String>,
    pub data: String,
}

pub struct EventStream {
    pub response: reqwest::Response,
    buffer: String,
}

impl EventStream {
    pub async fn open(base: &str, key: &str) -> EventStream {
        Self::connect(base, key, None).await
    }

    /// Reconnects as a browser would after losing the stream: with `Last-Event-ID`.
    pub async fn resume(base: &str, key: &str, last_event_id: &str) -> EventStream {
        Self::connect(base, key, Some(last_event_id)).await
    }

    async fn connect(base: &str, key: &str, last_event_id: Option<&str>) -> EventStream {
        let mut request = reqwest::Client::new()
            .get(format!("{base}/api/events"))
            .bearer_auth(key);
        if let Some(id) = last_event_id {
            request = request.header("last-event-id", id);
        }
        let response = request.send().await.unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        let content_type = response.headers()["content-type"].to_str().unwrap();
        assert!(
            content_type.starts_with("text/event-stream"),
            "{content_type}"
        );
        EventStream {
            response,
            buffer: String::new(),
        }
    }

    /// The next message (comments skipped), waiting at most 10 s.
    pub async fn next(&mut self) -> Message {
        self.next_within(Duration::from_secs(10))
            .await
            .expect("an event within 10 s")
    }

    /// The next message, or None when none comes within `wait` (or the stream ends).
    pub async fn next_within(&mut self, wait: Duration) -> Option<Message> {
        let deadline = Instant::now() + wait;
        loop {
            if let Some(end) = self.buffer.find("\n\n") {
                let block: String = self.buffer.drain(..end + 2).collect();
                if let Some(message) = parse(&block) {
                    return Some(message);
                }
                continue;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            let chunk = tokio::time::timeout(left, self.response.chunk())
                .await
                .ok()?
                .ok()??;
            self.buffer.push_str(&String::from_utf8_lossy(&chunk));
        }
    }
}

/// A message from one block of lines; None for a block of comments only.
fn parse(block: &str) -> Option<Message> {
    let mut message = Message {
        event: "message".into(),
        id: None,
        data: String::new(),
    };
    let mut comment_only = true;
    for line in block.lines().filter(|l| !l.is_empty()) {
        if line.starts_with(':') {
            continue;
        }
        comment_only = false;
        let (field, value) = line.split_once(':').unwrap_or((line, ""));
        let value = value.strip_prefix(' ').unwrap_or(value);
        match field {
            "event" => message.event = value.to_string(),
            "id" => message.id = Some(value.to_string()),
            "data" => message.data.push_str(value),
            _ => {}
        }
    }
    (!comment_only).then_some(message)
}
