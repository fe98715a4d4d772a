//! Progress of a long operation (a verification checking ground truth), told to whoever
//! asked for it — over MCP, `notifications/progress` — through a task-local, so no service
//! signature carries it.

use std::future::Future;
use std::sync::Arc;

/// Receives progress reports: `done` of `total` steps, with what is happening.
pub trait Progress: Send + Sync {
    fn report(&self, done: u32, total: u32, message: String);
}

tokio::task_local! {
    static PROGRESS: Arc<dyn Progress>;
}

/// Runs `f` with its progress reported to `sink`.
pub async fn scope<F: Future>(sink: Arc<dyn Progress>, f: F) -> F::Output {
    PROGRESS.scope(sink, f).await
}

/// Reports progress of the operation in scope, if anyone asked for it.
pub fn report(done: u32, total: u32, message: impl FnOnce() -> String) {
    let _ = PROGRESS.try_with(|sink| sink.report(done, total, message()));
}
