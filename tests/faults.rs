//! Faults under load, on loopback, against the real `ares serve --http`:
//!
//! - PostgreSQL is restarted while sixteen clients create, submit, verify and read: calls
//!   during the outage are answered within a bound with a clear, retryable error, `/health`
//!   says the store is down, the pool recovers by itself, and every acknowledged write is
//!   still there with the audit log and evidence chains intact.
//! - A downstream server dies, hangs and floods its output while fifty verifications run:
//!   only the criteria that need it become `unverifiable` (naming it), the rest are decided
//!   exactly as without the fault, other calls stay prompt, memory stays bounded, and
//!   verification recovers once the server is healthy again.
//!
//! Each test prints one `FIGURES:` line for RELIABILITY.md.

mod common;

use common::acked::{Acknowledged, check_survived};
use common::db::TestDatabase;
use common::ground_truth::{Servers, Workspace, kill, repo_root, submitted_with_receipt};
use common::postgres::PrivatePostgres;
use common::{ADMIN_TOKEN, Mcp, spawn_http, terminate, text};
use rmcp::model::CallToolRequestParams;
use serde_json::{Value, json};
use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::io::{AsyncBufReadExt, BufReader};

/// How a call ended.
#[derive(Debug, Clone, PartialEq)]
enum Outcome {
    Ok(Value),
    /// A tool error saying the store is unavailable.
    Unavailable(String),
    /// Any other tool error.
    Refused(String),
    /// A protocol or transport error, or no answer at all.
    Broken(String),
}

/// One call as the client saw it.
struct Record {
    client: usize,
    tool: &'static str,
    started: Instant,
    took: Duration,
    outcome: Outcome,
}

/// Every call made, in the order they ended.
#[derive(Default)]
struct Log(Mutex<Vec<Record>>);

impl Log {
    fn push(&self, record: Record) {
        self.0.lock().unwrap().push(record);
    }
}

/// Calls `tool` and records how it went; never panics.
async fn timed(mcp: &Mcp, log: &Log, client: usize, tool: &'static str, args: Value) -> Outcome {
    let Value::Object(args) = args else {
        unreachable!()
    };
    let started = Instant::now();
    let answer = tokio::time::timeout(
        Duration::from_secs(30),
        mcp.client
            .call_tool(CallToolRequestParams::new(tool.to_string()).with_arguments(args)),
    )
    .await;
    let outcome = match answer {
        Err(_) => Outcome::Broken("no answer within 30 s".into()),
        Ok(Err(e)) => Outcome::Broken(e.to_string()),
        Ok(Ok(result)) if result.is_error == Some(true) => {
            let message = text(&result);
            if message.contains("unavailable") {
                Outcome::Unavailable(message)
            } else {
                Outcome::Refused(message)
            }
        }
        Ok(Ok(result)) => Outcome::Ok(result.structured_content.unwrap_or(Value::Null)),
    };
    log.push(Record {
        client,
        tool,
        started,
        took: started.elapsed(),
        outcome: outcome.clone(),
    });
    outcome
}

/// Keeps the last lines ARES writes to stderr (for failure messages), and keeps reading so
/// a full pipe never blocks its logging.
fn drain_stderr(child: &mut tokio::process::Child) -> Arc<Mutex<VecDeque<String>>> {
    let tail = Arc::new(Mutex::new(VecDeque::new()));
    let stderr = child.stderr.take().expect("stderr is piped");
    let keep = tail.clone();
    tokio::spawn(async move {
        let mut lines = BufReader::new(stderr).lines();
        while let Ok(Some(line)) = lines.next_line().await {
            let mut tail = keep.lock().unwrap();
            if tail.len() == 40 {
                tail.pop_front();
            }
            tail.push_back(line.chars().take(400).collect::<String>());
        }
    });
    tail
}

fn shown(tail: &Mutex<VecDeque<String>>) -> String {
    tail.lock()
        .unwrap()
        .iter()
        .cloned()
        .collect::<Vec<_>>()
        .join("\n")
}

/// `GET /health`: status code, body, and how long it took.
async fn health(base: &str) -> (u16, Value, Duration) {
    let asked = Instant::now();
    let response = reqwest::get(format!("{base}/health"))
        .await
        .expect("/health answers");
    let status = response.status().as_u16();
    let body = response.json().await.unwrap_or(Value::Null);
    (status, body, asked.elapsed())
}

fn dependency<'a>(health: &'a Value, prefix: &str) -> Option<&'a Value> {
    health["dependencies"]
        .as_array()?
        .iter()
        .find(|d| d["name"].as_str().is_some_and(|n| n.starts_with(prefix)))
}

// ---------------------------------------------------------------------------------------
// PostgreSQL restart under load
// ---------------------------------------------------------------------------------------

/// Clients with a call in flight at all times.
const CLIENTS: usize = 16;
/// How long PostgreSQL stays down.
const OUTAGE: Duration = Duration::from_secs(4);
/// The longest any call may take, outage or not: the pool waits up to 5 s for a connection
/// (`ACQUIRE_TIMEOUT` in src/store/postgres.rs) before a call is answered "unavailable";
/// one more second covers the rest of the call on a loaded two-core machine.
const CALL_BOUND: Duration = Duration::from_secs(6);
/// How long `/health` may take while the store is down: it pings the store for at most 3 s,
/// then reads the downstream servers' state from the store, which waits out the pool's 5 s
/// (src/service/health.rs), plus a second of slack.
const HEALTH_BOUND: Duration = Duration::from_secs(9);
/// How soon after PostgreSQL accepts connections again every client must succeed again.
const RECOVERY_BOUND: Duration = Duration::from_secs(10);
/// What a client waits before retrying a call the store could not serve.
const RETRY_AFTER: Duration = Duration::from_millis(100);

/// The writes acknowledged so far, and calls that failed as unavailable but turned out to
/// have been applied (the retry was refused because the first attempt had landed).
#[derive(Default)]
struct Ledger {
    acked: Acknowledged,
    applied_despite_error: usize,
}

/// Retries `tool` while the store is unavailable (as a client following the error's advice
/// would); None on any other failure, or once `stop` is set.
async fn until_served(
    mcp: &Mcp,
    log: &Log,
    client: usize,
    stop: &AtomicBool,
    tool: &'static str,
    args: Value,
) -> Result<Value, Outcome> {
    loop {
        match timed(mcp, log, client, tool, args.clone()).await {
            Outcome::Ok(value) => return Ok(value),
            unavailable @ Outcome::Unavailable(_) => {
                if stop.load(Ordering::Relaxed) {
                    return Err(unavailable);
                }
                tokio::time::sleep(RETRY_AFTER).await;
            }
            other => return Err(other),
        }
    }
}

/// One client's loop: create a task, submit evidence, verify it, read the agent's
/// reliability; every write carries an idempotency key (verification needs none: a second
/// one is refused), so retrying after "unavailable" never applies anything twice.
async fn steady_client(
    client: usize,
    mcp: Mcp,
    agent: String,
    stop: Arc<AtomicBool>,
    log: Arc<Log>,
    ledger: Arc<Mutex<Ledger>>,
) {
    let mut n = 0;
    while !stop.load(Ordering::Relaxed) {
        n += 1;
        let key = format!("{agent}-{n}");
        let Ok(task) = until_served(
            &mcp,
            &log,
            client,
            &stop,
            "create_task",
            json!({ "description": "steady load", "required_capabilities": ["rust"],
                    "criteria": [{ "type": "tests_pass", "max_failed": 0 }],
                    "agent_id": agent, "idempotency_key": format!("task-{key}") }),
        )
        .await
        else {
            break;
        };
        let task_id = task["id"].as_str().unwrap().to_string();
        ledger.lock().unwrap().acked.tasks.insert(task_id.clone());
        let Ok(receipt) = until_served(
            &mcp,
            &log,
            client,
            &stop,
            "submit_evidence",
            json!({ "task_id": task_id, "agent_id": agent,
                    "idempotency_key": format!("evidence-{key}"),
                    "evidence": [
                        // One in three is rejected, never three in a row (which would
                        // suspend the agent).
                        { "kind": "test_results", "passed": 9, "failed": i64::from(n % 3 == 0) },
                        { "kind": "log", "content": "x".repeat(500) }
                    ] }),
        )
        .await
        else {
            break;
        };
        ledger.lock().unwrap().acked.evidence.insert(
            task_id.clone(),
            receipt["evidence"]["id"].as_str().unwrap().to_string(),
        );
        let mut failed_before = false;
        loop {
            match timed(
                &mcp,
                &log,
                client,
                "verify_task",
                json!({ "task_id": task_id }),
            )
            .await
            {
                Outcome::Ok(verdict) => {
                    ledger.lock().unwrap().acked.verdicts.insert(
                        task_id.clone(),
                        (
                            verdict["id"].as_str().unwrap().to_string(),
                            verdict["task_status"].as_str().unwrap().to_string(),
                        ),
                    );
                    break;
                }
                Outcome::Unavailable(_) if !stop.load(Ordering::Relaxed) => {
                    failed_before = true;
                    tokio::time::sleep(RETRY_AFTER).await;
                }
                Outcome::Refused(why)
                    if failed_before && why.contains("only a `submitted` task can be verified") =>
                {
                    // The attempt answered "unavailable" had committed after all.
                    ledger.lock().unwrap().applied_despite_error += 1;
                    break;
                }
                _ => return,
            }
        }
        let _ = timed(
            &mcp,
            &log,
            client,
            "get_reliability",
            json!({ "agent_id": agent }),
        )
        .await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_postgres_restart_under_load_fails_calls_fast_and_loses_no_acknowledged_write() {
    let mut pg = tokio::task::block_in_place(PrivatePostgres::start);
    let env = [("ARES_ADMIN_TOKEN", ADMIN_TOKEN), ("ARES_LOG", "warn")];
    let (mut server, base) = spawn_http(&pg.url, &env).await;
    let stderr = drain_stderr(&mut server);
    let admin = Mcp::http(&base).await;
    let mut agents = Vec::new();
    for i in 0..CLIENTS {
        let agent = admin
            .call(
                "register_agent",
                json!({ "name": format!("steady-{i}"), "capabilities": ["rust"], "max_concurrent_tasks": 1000 }),
            )
            .await;
        agents.push(agent["id"].as_str().unwrap().to_string());
    }

    // Steady load from sixteen clients.
    let stop = Arc::new(AtomicBool::new(false));
    let log = Arc::new(Log::default());
    let ledger = Arc::new(Mutex::new(Ledger::default()));
    let load_started = Instant::now();
    let mut clients = Vec::new();
    for (i, agent) in agents.iter().enumerate() {
        let mcp = Mcp::http(&base).await;
        clients.push(tokio::spawn(steady_client(
            i,
            mcp,
            agent.clone(),
            stop.clone(),
            log.clone(),
            ledger.clone(),
        )));
    }
    tokio::time::sleep(Duration::from_secs(3)).await;
    let (before, body, _) = health(&base).await;
    assert_eq!(before, 200, "{body:#}");

    // PostgreSQL goes down (fast shutdown: sessions terminated, open transactions rolled
    // back) and stays down for a while; /health must say so, promptly, throughout.
    let down_at = Instant::now();
    tokio::task::block_in_place(|| pg.stop_fast());
    let stopped_at = Instant::now();
    let mut health_polls = Vec::new();
    while stopped_at.elapsed() < OUTAGE {
        health_polls.push(health(&base).await);
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    tokio::task::block_in_place(|| pg.resume());
    let back_at = Instant::now();

    // The pool reconnects by itself: every client gets a call through again, with ARES
    // never restarted.
    let recovered_after = loop {
        let served: std::collections::HashSet<usize> = log
            .0
            .lock()
            .unwrap()
            .iter()
            .filter(|r| r.started >= back_at && matches!(r.outcome, Outcome::Ok(_)))
            .map(|r| r.client)
            .collect();
        if served.len() == CLIENTS {
            break back_at.elapsed();
        }
        assert!(
            back_at.elapsed() < RECOVERY_BOUND,
            "only {} of {CLIENTS} clients were served within {RECOVERY_BOUND:?} of PostgreSQL \
             coming back; ARES stderr:\n{}",
            served.len(),
            shown(&stderr)
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    tokio::time::sleep(Duration::from_secs(2)).await;
    stop.store(true, Ordering::Relaxed);
    for client in clients {
        tokio::time::timeout(Duration::from_secs(30), client)
            .await
            .expect("clients stop once told to")
            .expect("client task");
    }
    let load_secs = load_started.elapsed().as_secs_f64();
    let (after, body, _) = health(&base).await;
    assert_eq!(after, 200, "{body:#}");

    // Everything acknowledged is there, and the chains verify.
    let ledger = std::mem::take(&mut *ledger.lock().unwrap());
    let survival = check_survived(&admin, &ledger.acked.tasks, &ledger.acked).await;

    let records = std::mem::take(&mut *log.0.lock().unwrap());
    let during: Vec<&Record> = records
        .iter()
        .filter(|r| r.started < back_at && r.started + r.took > down_at)
        .collect();
    let unavailable: Vec<&Record> = records
        .iter()
        .filter(|r| matches!(r.outcome, Outcome::Unavailable(_)))
        .collect();
    let other_failures: Vec<String> = records
        .iter()
        .filter_map(|r| match &r.outcome {
            Outcome::Refused(m) | Outcome::Broken(m) => Some(format!("{}: {m}", r.tool)),
            _ => None,
        })
        .collect();
    let slowest = records.iter().map(|r| r.took).max().unwrap_or_default();
    let slowest_failure = unavailable.iter().map(|r| r.took).max().unwrap_or_default();
    println!(
        "FIGURES: postgres_restart clients={CLIENTS} calls={} calls_per_s={:.0} load_s={load_secs:.1} \
         faults=1 (PostgreSQL fast stop, down {:.1} s) calls_during_outage={} \
         failed={} (all `storage unavailable, retry` tool errors; other_failures={}) \
         slowest_call_ms={} slowest_failure_ms={} recovered_after_ms={} \
         applied_despite_error={} writes_acknowledged={} writes_lost={}",
        records.len(),
        records.len() as f64 / load_secs,
        (back_at - stopped_at).as_secs_f64(),
        during.len(),
        unavailable.len(),
        other_failures.len(),
        slowest.as_millis(),
        slowest_failure.as_millis(),
        recovered_after.as_millis(),
        ledger.applied_despite_error,
        survival.checked,
        survival.lost.len(),
    );

    assert!(survival.lost.is_empty(), "lost: {:?}", survival.lost);
    assert!(
        !unavailable.is_empty(),
        "the outage was never felt: {} calls overlapped it",
        during.len()
    );
    assert!(
        slowest <= CALL_BOUND,
        "a call took {slowest:?} (bound {CALL_BOUND:?})"
    );
    // Every failure is the one clear, retryable answer, naming nothing internal.
    assert_eq!(
        other_failures.len(),
        ledger.applied_despite_error,
        "calls failed other than with 'unavailable': {other_failures:#?}"
    );
    let port = pg.port.to_string();
    for r in &unavailable {
        let Outcome::Unavailable(message) = &r.outcome else {
            unreachable!()
        };
        assert!(
            message.contains("retry") && message.contains("unavailable"),
            "{}: {message}",
            r.tool
        );
        for internal in ["postgres", "127.0.0.1", "sqlx", "pool", "refused", &port] {
            assert!(
                !message.to_lowercase().contains(internal),
                "{}: the error leaks `{internal}`: {message}",
                r.tool
            );
        }
    }
    // /health said the store was down, each time, within its bound.
    assert!(!health_polls.is_empty());
    for (status, body, took) in &health_polls {
        assert_eq!(*status, 503, "{body:#}");
        assert_eq!(body["status"], "unhealthy", "{body:#}");
        let store = dependency(body, "store").expect("the store is listed");
        assert_eq!(store["status"], "down", "{body:#}");
        assert!(*took <= HEALTH_BOUND, "/health took {took:?}");
    }

    admin.close().await;
    let (code, _) = terminate(server).await;
    assert_eq!(code, Some(0), "{}", shown(&stderr));
}

// ---------------------------------------------------------------------------------------
// Downstream failures under load
// ---------------------------------------------------------------------------------------

/// The downstream server's name, distinct from its role so a detail naming it is telling.
const SERVER: &str = "flaky_fs";
/// ARES_DOWNSTREAM_TIMEOUT_SECS: how long the server gets to connect and to answer a call.
const TIMEOUT_SECS: u64 = 2;
/// Verifications per fault.
const TASKS: usize = 50;
/// Verifications in flight at once.
const AT_ONCE: usize = 12;
/// The longest one verification may take with a faulty server: waiting for a connect in
/// flight, then connecting, then the call — each bounded by the timeout — plus slack.
const VERIFY_BOUND: Duration = Duration::from_secs(4 * TIMEOUT_SECS);
/// How fast `/health` and `get_reliability` must answer while the server misbehaves.
const PROMPT: Duration = Duration::from_secs(2);
/// How far the ARES process may grow while the server floods: rmcp keeps one line of at
/// most 16 MiB per session (`DEFAULT_MAX_LINE_LENGTH`) and the stderr reader at most a few
/// short lines, so growth beyond this means something buffers the flood.
const FLOOD_RSS_GROWTH_KIB: u64 = 64 * 1024;

/// A task's criteria and evidence. Kinds 0 and 3 need the downstream server (criterion 0
/// of kind 0, criterion 1 of kind 3); 1 and 2 are decided from the evidence alone.
fn task_of(kind: usize) -> (Value, Value) {
    match kind {
        0 => (
            json!([{ "type": "file_exists", "path": "present.txt" }]),
            json!([{ "kind": "file", "path": "present.txt" }]),
        ),
        1 => (
            json!([{ "type": "tests_pass", "max_failed": 0 }]),
            json!([{ "kind": "test_results", "passed": 9, "failed": 0 }]),
        ),
        2 => (
            json!([{ "type": "tests_pass", "max_failed": 0 }]),
            json!([{ "kind": "test_results", "passed": 7, "failed": 2 }]),
        ),
        _ => (
            json!([{ "type": "tests_pass", "max_failed": 0 },
                   { "type": "file_exists", "path": "absent.txt" }]),
            json!([{ "kind": "test_results", "passed": 9, "failed": 0 },
                   { "kind": "log", "content": "did not touch absent.txt" }]),
        ),
    }
}

fn needs_server(kind: usize, criterion: usize) -> bool {
    matches!((kind, criterion), (0, 0) | (3, 1))
}

/// Each criterion's status with the server healthy.
fn healthy_status(kind: usize, criterion: usize) -> &'static str {
    match (kind, criterion) {
        (0, 0) | (1, 0) | (3, 0) => "met",
        _ => "unmet",
    }
}

/// Breaks the downstream server.
type Fault = Box<dyn FnOnce() + Send>;

/// A verification as it came back.
struct Verdict {
    kind: usize,
    took: Duration,
    value: Value,
}

/// The clients and the agent the downstream test works with.
struct Bench {
    clients: Vec<Arc<Mcp>>,
    /// Every task made, and what the server acknowledged about it.
    acked: Arc<Mutex<Acknowledged>>,
}

impl Bench {
    /// Creates and submits `count` tasks (kinds in turn), then verifies them `AT_ONCE` at a
    /// time; `fault` runs once a fifth of the verdicts are in, with the rest in flight.
    async fn verify_all(&self, count: usize, fault: Option<Fault>) -> Vec<Verdict> {
        let mut queue = Vec::new();
        for i in 0..count {
            let kind = i % 4;
            let (criteria, evidence) = task_of(kind);
            let mcp = &self.clients[i % self.clients.len()];
            // An agent per task: the enforcement ladder would suspend one that keeps failing.
            let (task_id, _, receipt) =
                submitted_with_receipt(mcp, "downstream load", criteria, evidence).await;
            let id = task_id.as_str().unwrap().to_string();
            let mut acked = self.acked.lock().unwrap();
            acked.tasks.insert(id.clone());
            acked
                .evidence
                .insert(id, receipt["evidence"]["id"].as_str().unwrap().to_string());
            drop(acked);
            queue.push((kind, task_id));
        }
        let queue = Arc::new(Mutex::new(queue));
        let done = Arc::new(AtomicUsize::new(0));
        let verdicts = Arc::new(Mutex::new(Vec::new()));
        let mut workers = Vec::new();
        for mcp in self.clients.iter().take(AT_ONCE) {
            let mcp = mcp.clone();
            let (queue, done, verdicts) = (queue.clone(), done.clone(), verdicts.clone());
            let acked = self.acked.clone();
            workers.push(tokio::spawn(async move {
                loop {
                    let Some((kind, task)) = queue.lock().unwrap().pop() else {
                        break;
                    };
                    let asked = Instant::now();
                    let value = mcp.call("verify_task", json!({ "task_id": task })).await;
                    acked.lock().unwrap().verdicts.insert(
                        task.as_str().unwrap().to_string(),
                        (
                            value["id"].as_str().unwrap().to_string(),
                            value["task_status"].as_str().unwrap().to_string(),
                        ),
                    );
                    verdicts.lock().unwrap().push(Verdict {
                        kind,
                        took: asked.elapsed(),
                        value,
                    });
                    done.fetch_add(1, Ordering::Relaxed);
                }
            }));
        }
        if let Some(fault) = fault {
            while done.load(Ordering::Relaxed) < count / 5 {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            fault();
        }
        for worker in workers {
            worker.await.expect("verifier");
        }
        std::mem::take(&mut *verdicts.lock().unwrap())
    }
}

/// Waits (bounded) until `/health` shows the server as `status`.
async fn server_becomes(base: &str, status: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (_, body, _) = health(base).await;
        if dependency(&body, &format!("downstream {SERVER} ("))
            .is_some_and(|d| d["status"] == status)
        {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{SERVER} never became {status}: {body:#}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Samples `/health` and `get_reliability` until `stop`; returns the slowest answer of each
/// and how many were asked.
async fn probe(
    base: String,
    mcp: Arc<Mcp>,
    agent: Value,
    stop: Arc<AtomicBool>,
) -> (Duration, Duration, usize) {
    let (mut health_max, mut reliability_max, mut asked) = (Duration::ZERO, Duration::ZERO, 0);
    while !stop.load(Ordering::Relaxed) {
        let (status, body, took) = health(&base).await;
        assert_eq!(
            status, 200,
            "ARES is healthy (the downstream server is optional): {body:#}"
        );
        health_max = health_max.max(took);
        let started = Instant::now();
        mcp.call("get_reliability", json!({ "agent_id": agent }))
            .await;
        reliability_max = reliability_max.max(started.elapsed());
        asked += 2;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    (health_max, reliability_max, asked)
}

/// Whether the process exists and is not a zombie.
fn running(pid: &str) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
        stat.rsplit(") ")
            .next()
            .is_some_and(|rest| !rest.starts_with('Z'))
    })
}

/// Resident memory of a process, from /proc.
fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

/// Samples the ARES process's VmRSS every 20 ms until `stop`; returns the peak.
async fn peak_rss(pid: u32, stop: Arc<AtomicBool>) -> u64 {
    let mut peak = 0;
    while !stop.load(Ordering::Relaxed) {
        peak = peak.max(rss_kib(pid));
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    peak
}

/// What one fault did to the verdicts.
#[derive(Default)]
struct Tally {
    verdicts: usize,
    /// Criteria needing the server that came back unverifiable, naming it.
    degraded: usize,
    /// Criteria needing the server that were still decided (before the fault hit).
    decided_anyway: usize,
    /// Criteria not needing it, all decided as with the server healthy.
    unaffected: usize,
    slowest: Duration,
}

/// Checks every verdict: criteria that need the server are as healthy or `unverifiable`
/// naming it; the others are exactly as in `baseline`.
fn judge(fault: &str, verdicts: &[Verdict], baseline: &[Verdict]) -> Tally {
    let mut tally = Tally::default();
    for v in verdicts {
        tally.verdicts += 1;
        tally.slowest = tally.slowest.max(v.took);
        let reference = baseline
            .iter()
            .find(|b| b.kind == v.kind)
            .expect("a baseline verdict of every kind");
        let results = v.value["results"].as_array().unwrap();
        for (i, r) in results.iter().enumerate() {
            if needs_server(v.kind, i) {
                if r["status"] == "unverifiable" {
                    let detail = r["detail"].as_str().unwrap();
                    assert!(
                        detail.contains(&format!("`{SERVER}`")),
                        "{fault}: the detail does not name the server: {r:#}"
                    );
                    tally.degraded += 1;
                } else {
                    assert_eq!(r["status"], healthy_status(v.kind, i), "{fault}: {r:#}");
                    tally.decided_anyway += 1;
                }
            } else {
                let expected = &reference.value["results"][i];
                for field in ["status", "detail", "checked_via"] {
                    assert_eq!(
                        r[field], expected[field],
                        "{fault}: a criterion that needs no server changed ({field}): {r:#}"
                    );
                }
                tally.unaffected += 1;
            }
        }
        if !(0..results.len()).any(|i| needs_server(v.kind, i)) {
            assert_eq!(
                v.value["task_status"], reference.value["task_status"],
                "{fault}: {:#}",
                v.value
            );
        }
        assert!(
            v.took <= VERIFY_BOUND,
            "{fault}: a verification took {:?} (bound {VERIFY_BOUND:?})",
            v.took
        );
    }
    assert!(
        tally.degraded > 0,
        "{fault}: no criterion was degraded; the fault was never felt"
    );
    tally
}

/// Checks every verdict of a healthy run against the expected statuses.
fn assert_healthy(when: &str, verdicts: &[Verdict]) {
    for v in verdicts {
        for (i, r) in v.value["results"].as_array().unwrap().iter().enumerate() {
            assert_eq!(r["status"], healthy_status(v.kind, i), "{when}: {r:#}");
            if needs_server(v.kind, i) {
                assert_eq!(
                    r["checked_via"],
                    format!("{SERVER}/get_file_info"),
                    "{when}: {r:#}"
                );
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_downstream_server_that_dies_hangs_or_floods_degrades_only_the_criteria_that_need_it() {
    let db = TestDatabase::postgres().await;
    let ws = Workspace::new();
    ws.write("present.txt", "here\n");
    let mode = ws.scratch.join("mode");
    std::fs::write(&mode, "ok").unwrap();
    let fixture = repo_root().join("tests/fixtures/faulty_server.mjs");
    let config = Servers::new()
        .with(
            SERVER,
            json!({ "command": "node", "args": [fixture, ws.root.clone(), ws.scratch.clone()],
                    "role": "filesystem" }),
        )
        .write(&ws);
    let timeout = TIMEOUT_SECS.to_string();
    let config = config.display().to_string();
    let env = [
        ("ARES_ADMIN_TOKEN", ADMIN_TOKEN),
        ("ARES_LOG", "warn"),
        ("ARES_DOWNSTREAM", config.as_str()),
        ("ARES_DOWNSTREAM_TIMEOUT_SECS", timeout.as_str()),
    ];
    let (mut server, base) = spawn_http(&db.url, &env).await;
    let stderr = drain_stderr(&mut server);
    let pid = server.id().unwrap();
    let mut clients = Vec::new();
    for _ in 0..AT_ONCE {
        clients.push(Arc::new(Mcp::http(&base).await));
    }
    let agent = clients[0]
        .call(
            "register_agent",
            json!({ "name": "probed", "capabilities": [], "max_concurrent_tasks": 1000 }),
        )
        .await;
    let bench = Bench {
        clients,
        acked: Arc::default(),
    };
    server_becomes(&base, "ok").await;

    // Without a fault: every criterion decided, the file ones through the server.
    let started = Instant::now();
    let baseline = bench.verify_all(TASKS, None).await;
    assert_healthy("baseline", &baseline);
    let mut verifications = baseline.len();

    let pidfile = ws.scratch.join("faulty.pid");
    let faults: [(&str, Fault); 3] = [
        ("dies", {
            let (mode, pidfile) = (mode.clone(), pidfile.clone());
            Box::new(move || {
                // Every start from now on exits at once; the running one is killed.
                std::fs::write(&mode, "die").unwrap();
                kill(&pidfile);
            })
        }),
        ("hangs", {
            let mode = mode.clone();
            Box::new(move || std::fs::write(&mode, "hang").unwrap())
        }),
        ("floods", {
            let mode = mode.clone();
            Box::new(move || std::fs::write(&mode, "flood").unwrap())
        }),
    ];
    let mut figures = Vec::new();
    let probe_agent = agent["id"].clone();
    for (fault, inject) in faults {
        let stop = Arc::new(AtomicBool::new(false));
        let prober = tokio::spawn(probe(
            base.clone(),
            bench.clients[0].clone(),
            probe_agent.clone(),
            stop.clone(),
        ));
        let rss_before = rss_kib(pid);
        let sampler = tokio::spawn(peak_rss(pid, stop.clone()));
        let verdicts = bench.verify_all(TASKS, Some(inject)).await;
        stop.store(true, Ordering::Relaxed);
        let (health_max, reliability_max, probes) = prober.await.expect("prober");
        let rss_peak = sampler.await.expect("sampler");
        verifications += verdicts.len();
        let tally = judge(fault, &verdicts, &baseline);
        assert!(
            health_max <= PROMPT && reliability_max <= PROMPT,
            "{fault}: /health took up to {health_max:?}, get_reliability {reliability_max:?}"
        );
        let flooded: u64 = std::fs::read_to_string(ws.scratch.join("flooded"))
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(0);
        figures.push(format!(
            "{fault}: verdicts={} degraded={} decided_before_fault={} unaffected={} slowest_verify_ms={} \
             probes={probes} slowest_health_ms={} slowest_reliability_ms={} rss_kib={rss_before}->{rss_peak}{}",
            tally.verdicts,
            tally.degraded,
            tally.decided_anyway,
            tally.unaffected,
            tally.slowest.as_millis(),
            health_max.as_millis(),
            reliability_max.as_millis(),
            if fault == "floods" {
                format!(" flooded_mib={}", flooded >> 20)
            } else {
                String::new()
            }
        ));
        if fault == "floods" {
            assert!(
                flooded > 2 * FLOOD_RSS_GROWTH_KIB * 1024,
                "the flood was too small to prove anything: {flooded} bytes"
            );
            assert!(
                rss_peak <= rss_before + FLOOD_RSS_GROWTH_KIB,
                "ARES grew from {rss_before} KiB to {rss_peak} KiB while {SERVER} flooded \
                 {flooded} bytes; stderr:\n{}",
                shown(&stderr)
            );
        }

        // The server is healthy again: once it is reconnected, verification recovers.
        std::fs::write(&mode, "ok").unwrap();
        server_becomes(&base, "ok").await;
        let again = bench.verify_all(AT_ONCE, None).await;
        assert_healthy(&format!("after the server {fault}"), &again);
        verifications += again.len();
    }
    let took = started.elapsed().as_secs_f64();
    let acked = std::mem::take(&mut *bench.acked.lock().unwrap());
    let survival = check_survived(&bench.clients[0], &acked.tasks, &acked).await;
    println!(
        "FIGURES: downstream_faults verifications={verifications} at_once={AT_ONCE} \
         verifications_per_s={:.1} faults=3 (server dies, hangs, floods; each mid-run of {TASKS}) \
         failed_calls=0 writes_acknowledged={} writes_lost={} | {}",
        verifications as f64 / took,
        survival.checked,
        survival.lost.len(),
        figures.join(" | ")
    );
    assert!(survival.lost.is_empty(), "lost: {:?}", survival.lost);
    // Every session ARES gave up on took its process with it: only the current one runs.
    let current = std::fs::read_to_string(&pidfile).unwrap();
    let starts = std::fs::read_to_string(ws.scratch.join("starts.log")).unwrap();
    let replaced: Vec<&str> = starts.lines().filter(|p| *p != current.trim()).collect();
    assert!(replaced.len() >= 3, "{SERVER} was restarted: {starts}");
    let deadline = Instant::now() + Duration::from_secs(5);
    while let Some(alive) = replaced.iter().find(|pid| running(pid)) {
        assert!(
            Instant::now() < deadline,
            "{SERVER} process {alive} outlived its session"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(running(current.trim()));

    let (code, _) = terminate(server).await;
    assert_eq!(code, Some(0), "{}", shown(&stderr));
}
