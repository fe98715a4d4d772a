//! Failpoints for the fault tests: an environment variable makes this process die at a
//! chosen point, the way a power cut or SIGKILL would, so a test can place a crash exactly
//! where timing alone would hit it only sometimes. Unset — always, outside those tests —
//! each costs one cached comparison.

use std::sync::OnceLock;

/// `ARES_FAILPOINT=crash-after-commit:<tool>`: abort right after a call to `<tool>` has
/// committed, before its events are published or its caller answered.
pub fn crash_after_commit(tool: &str) {
    static POINT: OnceLock<Option<String>> = OnceLock::new();
    let point = POINT.get_or_init(|| {
        std::env::var("ARES_FAILPOINT")
            .ok()
            .and_then(|v| v.strip_prefix("crash-after-commit:").map(str::to_owned))
    });
    if point.as_deref() == Some(tool) {
        eprintln!("ARES_FAILPOINT: aborting after committing a {tool} call");
        std::process::abort();
    }
}
