//! Running one admitted command: no shell, its own process group (killed whole on timeout
//! or when the caller gives up), output merged and capped to its tail, and test counts read
//! from the summaries of common runners.

use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use regex::Regex;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use std::path::Path;
use std::process::Stdio;
use std::sync::{Arc, LazyLock, Mutex};
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, AsyncReadExt};

/// What a run produced.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct RunOutcome {
    /// The command as run (its argv, shell-quoted).
    pub command: String,
    /// The directory it ran in.
    pub cwd: String,
    /// The exit code; null when it was killed by a signal (e.g. on timeout).
    pub exit_code: Option<i32>,
    /// Wall-clock run time in milliseconds.
    pub duration_ms: u64,
    /// True when the time limit was reached and the process group was killed.
    pub timed_out: bool,
    /// The end of stdout and stderr, interleaved as they arrived.
    pub output_tail: String,
    /// True when earlier output was dropped to keep within the cap.
    pub output_truncated: bool,
    /// Test counts read from the runner's summary (cargo test, pytest, jest, node --test).
    pub tests: Option<TestCounts>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct TestCounts {
    pub passed: i64,
    pub failed: i64,
}

/// Limits on one run.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub timeout: Duration,
    /// Bytes of output kept (the tail).
    pub max_output: usize,
}

/// Kills the whole process group when dropped: a run abandoned mid-way leaves nothing behind.
struct Group(Option<Pid>);

impl Drop for Group {
    fn drop(&mut self) {
        if let Some(pgid) = self.0.take() {
            let _ = killpg(pgid, Signal::SIGKILL);
        }
    }
}

/// Output kept to its last `cap` bytes.
struct Tail {
    buf: Vec<u8>,
    cap: usize,
    truncated: bool,
}

impl Tail {
    fn push(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
        if self.buf.len() > self.cap {
            let cut = self.buf.len() - self.cap;
            self.buf.drain(..cut);
            self.truncated = true;
        }
    }
}

pub async fn run(argv: &[String], cwd: &Path, limits: Limits) -> std::io::Result<RunOutcome> {
    let started = Instant::now();
    let mut cmd = tokio::process::Command::new(&argv[0]);
    cmd.args(&argv[1..])
        .current_dir(cwd)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .kill_on_drop(true);
    let mut child = cmd.spawn()?;
    let group = Group(child.id().map(|id| Pid::from_raw(id as i32)));
    let tail = Arc::new(Mutex::new(Tail {
        buf: Vec::new(),
        cap: limits.max_output,
        truncated: false,
    }));
    let readers = [
        child
            .stdout
            .take()
            .map(|o| tokio::spawn(collect(o, tail.clone()))),
        child
            .stderr
            .take()
            .map(|e| tokio::spawn(collect(e, tail.clone()))),
    ];
    let (status, timed_out) = match tokio::time::timeout(limits.timeout, child.wait()).await {
        Ok(status) => (Some(status?), false),
        Err(_) => (None, true),
    };
    // Whatever the command left running in its group goes too; then drain the pipes briefly.
    drop(group);
    let status = match status {
        Some(s) => Some(s),
        None => child.wait().await.ok(),
    };
    for reader in readers.into_iter().flatten() {
        let _ = tokio::time::timeout(Duration::from_secs(1), reader).await;
    }
    let (output, truncated) = {
        let t = tail.lock().expect("output lock");
        (String::from_utf8_lossy(&t.buf).into_owned(), t.truncated)
    };
    Ok(RunOutcome {
        command: shell_words::join(argv),
        cwd: cwd.display().to_string(),
        exit_code: if timed_out {
            None
        } else {
            status.and_then(|s| s.code())
        },
        duration_ms: started.elapsed().as_millis() as u64,
        timed_out,
        tests: test_counts(&output),
        output_tail: output,
        output_truncated: truncated,
    })
}

async fn collect(mut from: impl AsyncRead + Unpin, into: Arc<Mutex<Tail>>) {
    let mut buf = [0u8; 8192];
    while let Ok(n) = from.read(&mut buf).await {
        if n == 0 {
            break;
        }
        if let Ok(mut t) = into.lock() {
            t.push(&buf[..n]);
        }
    }
}

static CARGO: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"test result: \w+\. (\d+) passed; (\d+) failed").expect("cargo regex")
});
static PYTEST: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"(?m)^[=\s]*((?:\d+ [a-z]+(?:, )?)+) in [\d.]+s").expect("pytest regex")
});
static JEST: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"(?m)^Tests:\s+(.*?)\d+ total").expect("jest regex"));
static NODE: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"(?m)^[#ℹ] (pass|fail) (\d+)$").expect("node regex"));
static COUNT: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"(\d+) (passed|failed|errors?)").expect("count regex"));

/// Test counts from a runner's summary: cargo test (summed over every test binary), pytest,
/// jest / npm test, node --test. None when no summary is recognised.
pub fn test_counts(output: &str) -> Option<TestCounts> {
    let mut cargo = None::<TestCounts>;
    for c in CARGO.captures_iter(output) {
        let t = cargo.get_or_insert(TestCounts {
            passed: 0,
            failed: 0,
        });
        t.passed += c[1].parse::<i64>().unwrap_or(0);
        t.failed += c[2].parse::<i64>().unwrap_or(0);
    }
    if cargo.is_some() {
        return cargo;
    }
    let summary = JEST
        .captures_iter(output)
        .last()
        .or_else(|| PYTEST.captures_iter(output).last())
        .map(|c| c[1].to_string());
    if let Some(summary) = summary {
        let mut t = TestCounts {
            passed: 0,
            failed: 0,
        };
        for c in COUNT.captures_iter(&summary) {
            let n = c[1].parse::<i64>().unwrap_or(0);
            if &c[2] == "passed" {
                t.passed += n;
            } else {
                t.failed += n;
            }
        }
        return Some(t);
    }
    let mut node = None::<TestCounts>;
    for c in NODE.captures_iter(output) {
        let t = node.get_or_insert(TestCounts {
            passed: 0,
            failed: 0,
        });
        let n = c[2].parse::<i64>().unwrap_or(0);
        if &c[1] == "pass" {
            t.passed = n;
        } else {
            t.failed = n;
        }
    }
    node
}

#[cfg(test)]
mod tests {
    use super::*;

    fn counts(passed: i64, failed: i64) -> Option<TestCounts> {
        Some(TestCounts { passed, failed })
    }

    #[test]
    fn cargo_summaries_are_summed_over_test_binaries() {
        let out = "running 3 tests\ntest result: ok. 3 passed; 0 failed; 0 ignored; 0 measured; 0 filtered out; finished in 0.01s\n\
                   test result: FAILED. 4 passed; 2 failed; 0 ignored; 0 measured; 0 filtered out";
        assert_eq!(test_counts(out), counts(7, 2));
    }

    #[test]
    fn pytest_summaries_count_failures_and_errors() {
        assert_eq!(
            test_counts("...\n========= 2 failed, 5 passed, 1 skipped in 0.42s =========\n"),
            counts(5, 2)
        );
        assert_eq!(test_counts("3 passed in 0.01s\n"), counts(3, 0));
        assert_eq!(
            test_counts("== 1 passed, 1 error in 0.2s ==\n"),
            counts(1, 1)
        );
    }

    #[test]
    fn jest_and_node_summaries_are_read() {
        assert_eq!(
            test_counts("Tests:       1 failed, 5 passed, 6 total\nSnapshots: 0 total"),
            counts(5, 1)
        );
        assert_eq!(test_counts("# tests 4\n# pass 4\n# fail 0\n"), counts(4, 0));
    }

    #[test]
    fn output_without_a_summary_has_no_counts() {
        assert_eq!(
            test_counts("compiling…\nerror[E0425]: cannot find value"),
            None
        );
    }

    #[tokio::test]
    async fn a_run_reports_exit_code_and_keeps_the_tail() {
        let dir = tempfile::tempdir().unwrap();
        let argv: Vec<String> = ["sh", "-c", "seq 1 5000; echo done >&2; exit 3"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        let limits = Limits {
            timeout: Duration::from_secs(10),
            max_output: 100,
        };
        let out = run(&argv, dir.path(), limits).await.unwrap();
        assert_eq!(out.exit_code, Some(3));
        assert!(!out.timed_out);
        assert!(out.output_truncated);
        assert!(out.output_tail.len() <= 100);
        assert!(out.output_tail.contains("done"), "{}", out.output_tail);
    }

    #[tokio::test]
    async fn a_run_past_its_limit_kills_the_whole_group() {
        let dir = tempfile::tempdir().unwrap();
        let marker = dir.path().join("survived");
        let script = format!("(sleep 2; touch {}) & sleep 30", marker.display());
        let argv: Vec<String> = ["sh", "-c", &script]
            .iter()
            .map(|s| s.to_string())
            .collect();
        let limits = Limits {
            timeout: Duration::from_millis(300),
            max_output: 1000,
        };
        let started = Instant::now();
        let out = run(&argv, dir.path(), limits).await.unwrap();
        assert!(out.timed_out);
        assert_eq!(out.exit_code, None);
        assert!(started.elapsed() < Duration::from_secs(5));
        tokio::time::sleep(Duration::from_millis(2500)).await;
        assert!(
            !marker.exists(),
            "the background child was killed with its group"
        );
    }
}
