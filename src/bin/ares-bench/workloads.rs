//! What each workload sends, what it prepares first, and the stored data `--scale` seeds.
//!
//! A workload is a set of slots, one client session each, with the state that session needs
//! (its agent, prepared tasks, where it is in a task's life). One step is exactly one tool
//! call; the load drivers decide when steps happen.

use crate::client::{self, Client, Protocol};
use futures_util::{StreamExt, stream};
use serde_json::{Value, json};
use std::collections::VecDeque;
use std::sync::Arc;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Kind {
    /// The transport floor: the `health` tool (or `--trivial-tool get_agent`).
    Trivial,
    /// `submit_evidence` alone, against tasks created and assigned beforehand.
    Submit,
    /// `get_reliability` for the same agents over and over, nothing changing in between.
    ReliabilityCached,
    /// `get_reliability` right after a write that changes the agent's reliability: each
    /// session cycles create_task → submit_evidence → verify_task → get_reliability.
    ReliabilityUncached,
    /// "1,000 agents": every session registers an agent, then cycles create_task →
    /// assign_task → submit_evidence → verify_task → get_reliability.
    Mix,
    /// The reference server's one trivial tool (the transport limit of bare rmcp).
    RefTrivial,
    /// The reference server's one INSERT per call (bare rmcp + sqlx, storage-bound).
    RefInsert,
    /// Many idle sessions: server memory before, while open and after closing.
    Idle,
    /// Minutes of the lifecycle at a fixed rate with sessions coming and going, the server's
    /// memory, files, connections and sessions sampled against a bound (`soak.rs`).
    Soak,
}

impl Kind {
    pub fn name(self) -> &'static str {
        match self {
            Kind::Trivial => "trivial",
            Kind::Submit => "submit",
            Kind::ReliabilityCached => "reliability-cached",
            Kind::ReliabilityUncached => "reliability-uncached",
            Kind::Mix => "mix",
            Kind::RefTrivial => "ref-trivial",
            Kind::RefInsert => "ref-insert",
            Kind::Idle => "idle",
            Kind::Soak => "soak",
        }
    }

    pub fn is_reference(self) -> bool {
        matches!(self, Kind::RefTrivial | Kind::RefInsert)
    }
}

/// The cheapest read tools the trivial workload can use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum TrivialTool {
    Health,
    GetAgent,
}

/// How the workload's sessions are opened and prepared.
pub struct Setup {
    pub kind: Kind,
    pub sessions: usize,
    pub protocol: Protocol,
    /// Tasks the submit workload prepares (spread over its agents).
    pub tasks: usize,
    pub trivial_tool: TrivialTool,
    /// Sessions opened and prepared at once.
    pub parallel: usize,
}

struct Slot {
    client: Client,
    /// The agent this session acts for (empty when the workload needs none).
    agent: String,
    /// Prepared (agent, task) pairs, for `submit`.
    queue: VecDeque<(String, String)>,
    /// Where this session is in its cycle of calls.
    phase: usize,
    /// The task the cycle is working on.
    task: String,
    seq: u64,
}

pub struct Bench {
    kind: Kind,
    trivial_tool: TrivialTool,
    slots: Vec<tokio::sync::Mutex<Slot>>,
}

pub const CAPABILITY: &str = "bench";

fn criteria() -> Value {
    json!([
        { "type": "tests_pass", "min_passed": 1 },
        { "type": "evidence_present", "kind": "diff" }
    ])
}

fn evidence() -> Value {
    json!([
        { "kind": "diff", "content": "--- a/src/lib.rs\n+++ b/src/lib.rs\n+pub fn parse() {}" },
        { "kind": "test_results", "passed": 12, "failed": 0, "skipped": 1 }
    ])
}

fn unique(prefix: &str) -> String {
    format!("{prefix}-{}", uuid::Uuid::new_v4().simple())
}

fn id(v: &Value, what: &str) -> Result<String, String> {
    v["id"]
        .as_str()
        .map(String::from)
        .ok_or_else(|| format!("{what}: the answer has no id"))
}

/// Anything that answers tool calls: a session over HTTP, or ARES in this process (seeding).
pub trait Calls: Sync {
    fn call(&self, tool: &str, args: Value) -> impl Future<Output = Result<Value, String>> + Send;
}

impl Calls for Client {
    async fn call(&self, tool: &str, args: Value) -> Result<Value, String> {
        Client::call(self, tool, args).await
    }
}

pub async fn register<C: Calls>(c: &C) -> Result<String, String> {
    let agent = c
        .call(
            "register_agent",
            json!({ "name": unique("bench"), "capabilities": [CAPABILITY], "max_concurrent_tasks": 1000 }),
        )
        .await?;
    id(&agent, "register_agent")
}

/// A task created straight onto `agent` (state `assigned`), or unassigned (`pending`).
pub async fn create_task<C: Calls>(c: &C, agent: Option<&str>) -> Result<String, String> {
    let mut args = json!({
        "description": "implement the parser",
        "required_capabilities": [CAPABILITY],
        "criteria": criteria(),
    });
    if let Some(agent) = agent {
        args["agent_id"] = json!(agent);
    }
    let task = c.call("create_task", args).await?;
    id(&task, "create_task")
}

pub async fn assign<C: Calls>(c: &C, task: &str, agent: &str) -> Result<(), String> {
    let task = c
        .call("assign_task", json!({ "task_id": task, "agent_id": agent }))
        .await?;
    expect(&task, "status", "assigned", "assign_task")
}

pub async fn submit<C: Calls>(c: &C, agent: &str, task: &str) -> Result<(), String> {
    let receipt = c
        .call(
            "submit_evidence",
            json!({ "task_id": task, "agent_id": agent, "evidence": evidence() }),
        )
        .await?;
    expect(&receipt, "task_status", "submitted", "submit_evidence")
}

pub async fn verify<C: Calls>(c: &C, task: &str) -> Result<(), String> {
    let verdict = c.call("verify_task", json!({ "task_id": task })).await?;
    if verdict["success"] != json!(true) {
        return Err(format!(
            "verify_task: expected success, got {}",
            verdict["success"]
        ));
    }
    Ok(())
}

pub async fn reliability<C: Calls>(c: &C, agent: &str) -> Result<(), String> {
    let r = c
        .call("get_reliability", json!({ "agent_id": agent }))
        .await?;
    if !r["reliability_score"].is_number() {
        return Err("get_reliability: no reliability_score".into());
    }
    Ok(())
}

/// One verified task for `agent`: the history that seeding and preparation build.
pub async fn verified_task<C: Calls>(c: &C, agent: &str) -> Result<(), String> {
    let task = create_task(c, Some(agent)).await?;
    submit(c, agent, &task).await?;
    verify(c, &task).await
}

fn expect(v: &Value, field: &str, want: &str, tool: &str) -> Result<(), String> {
    if v[field] == json!(want) {
        Ok(())
    } else {
        Err(format!("{tool}: expected {field} {want}, got {}", v[field]))
    }
}

/// History each reliability-cached agent gets before the measurement.
const CACHED_HISTORY: usize = 5;

impl Bench {
    /// Opens the sessions and prepares what the workload needs; returns the bench and the
    /// number of calls preparation took.
    pub async fn prepare(
        setup: &Setup,
        http: &reqwest::Client,
        base: &str,
        key: Option<&str>,
    ) -> anyhow::Result<Bench> {
        let n = setup.sessions.max(1);
        let clients: Vec<Client> = stream::iter(0..n)
            .map(|_| client::connect(http, base, key, setup.protocol))
            .buffered(setup.parallel)
            .collect::<Vec<_>>()
            .await
            .into_iter()
            .collect::<Result<_, _>>()?;
        let kind = setup.kind;
        let needs_agent = matches!(
            kind,
            Kind::ReliabilityCached | Kind::ReliabilityUncached | Kind::Mix
        ) || (kind == Kind::Trivial
            && setup.trivial_tool == TrivialTool::GetAgent);
        let slots: Vec<Slot> = stream::iter(clients)
            .map(|client| async move {
                let mut slot = Slot {
                    client,
                    agent: String::new(),
                    queue: VecDeque::new(),
                    phase: 0,
                    task: String::new(),
                    seq: 0,
                };
                if needs_agent {
                    slot.agent = register(&slot.client).await.map_err(anyhow::Error::msg)?;
                }
                if kind == Kind::ReliabilityCached {
                    for _ in 0..CACHED_HISTORY {
                        verified_task(&slot.client, &slot.agent)
                            .await
                            .map_err(anyhow::Error::msg)?;
                    }
                }
                anyhow::Ok(slot)
            })
            .buffered(setup.parallel)
            .collect::<Vec<_>>()
            .await
            .into_iter()
            .collect::<Result<_, _>>()?;
        let mut bench = Bench {
            kind,
            trivial_tool: setup.trivial_tool,
            slots: slots.into_iter().map(tokio::sync::Mutex::new).collect(),
        };
        if kind == Kind::Submit {
            bench.prepare_submissions(setup).await?;
        }
        bench.stagger(setup.parallel).await;
        Ok(bench)
    }

    /// Creates `setup.tasks` assigned tasks, at most 900 per agent (an agent holds 1,000),
    /// each agent's tasks queued on one session.
    async fn prepare_submissions(&mut self, setup: &Setup) -> anyhow::Result<()> {
        let n = self.slots.len();
        let per_slot = setup.tasks.div_ceil(n);
        let agents_per_slot = per_slot.div_ceil(900).max(1);
        let slots = std::mem::take(&mut self.slots);
        let prepared: Vec<tokio::sync::Mutex<Slot>> = stream::iter(slots)
            .map(|slot| async move {
                let mut slot = slot.into_inner();
                let mut agents = Vec::new();
                for _ in 0..agents_per_slot {
                    agents.push(register(&slot.client).await.map_err(anyhow::Error::msg)?);
                }
                for i in 0..per_slot {
                    let agent = &agents[i % agents.len()];
                    let task = create_task(&slot.client, Some(agent))
                        .await
                        .map_err(anyhow::Error::msg)?;
                    slot.queue.push_back((agent.clone(), task));
                }
                anyhow::Ok(tokio::sync::Mutex::new(slot))
            })
            .buffered(setup.parallel)
            .collect::<Vec<_>>()
            .await
            .into_iter()
            .collect::<Result<_, _>>()?;
        self.slots = prepared;
        Ok(())
    }

    /// Starts session i at step i mod the cycle's length, so the sessions are spread over
    /// the cycle instead of all creating tasks at once, then all verifying.
    async fn stagger(&self, parallel: usize) {
        let cycle = match self.kind {
            Kind::Mix => 5,
            Kind::ReliabilityUncached => 4,
            _ => return,
        };
        stream::iter(0..self.slots.len())
            .map(|i| async move {
                for _ in 0..i % cycle {
                    self.step(i).await;
                }
            })
            .buffer_unordered(parallel)
            .collect::<Vec<_>>()
            .await;
    }

    pub fn slots(&self) -> usize {
        self.slots.len()
    }

    /// One call on slot `i`: the tool's name and whether its answer was right. None when the
    /// slot has run out of prepared work.
    pub async fn step(&self, i: usize) -> Option<(&'static str, Result<(), String>)> {
        let mut guard = self.slots[i].lock().await;
        let s = &mut *guard;
        s.seq += 1;
        let c = &s.client;
        Some(match self.kind {
            Kind::Trivial => match self.trivial_tool {
                TrivialTool::Health => ("health", c.call("health", json!({})).await.map(drop)),
                TrivialTool::GetAgent => (
                    "get_agent",
                    c.call("get_agent", json!({ "agent_id": s.agent }))
                        .await
                        .map(drop),
                ),
            },
            Kind::RefTrivial => ("noop", c.call("noop", json!({})).await.map(drop)),
            Kind::RefInsert => (
                "insert",
                c.call(
                    "insert",
                    json!({ "payload": format!("row {} of slot {i}", s.seq) }),
                )
                .await
                .map(drop),
            ),
            Kind::Submit => {
                let (agent, task) = s.queue.pop_front()?;
                ("submit_evidence", submit(c, &agent, &task).await)
            }
            Kind::ReliabilityCached => ("get_reliability", reliability(c, &s.agent).await),
            Kind::ReliabilityUncached => {
                let phase = s.phase;
                let (tool, outcome) = match phase {
                    0 => (
                        "create_task",
                        create_task(c, Some(&s.agent)).await.map(|t| s.task = t),
                    ),
                    1 => ("submit_evidence", submit(c, &s.agent, &s.task).await),
                    2 => ("verify_task", verify(c, &s.task).await),
                    _ => ("get_reliability", reliability(c, &s.agent).await),
                };
                // A failed step starts the cycle again with a new task.
                s.phase = if outcome.is_ok() { (phase + 1) % 4 } else { 0 };
                (tool, outcome)
            }
            Kind::Mix => {
                let phase = s.phase;
                let (tool, outcome) = match phase {
                    0 => (
                        "create_task",
                        create_task(c, None).await.map(|t| s.task = t),
                    ),
                    1 => ("assign_task", assign(c, &s.task, &s.agent).await),
                    2 => ("submit_evidence", submit(c, &s.agent, &s.task).await),
                    3 => ("verify_task", verify(c, &s.task).await),
                    _ => ("get_reliability", reliability(c, &s.agent).await),
                };
                s.phase = if outcome.is_ok() { (phase + 1) % 5 } else { 0 };
                (tool, outcome)
            }
            Kind::Idle | Kind::Soak => return None,
        })
    }

    /// Ends every session.
    pub async fn close(self) {
        let closing = self
            .slots
            .into_iter()
            .map(|s| s.into_inner().client.close());
        stream::iter(closing)
            .buffer_unordered(64)
            .collect::<Vec<_>>()
            .await;
    }
}

/// Stored data for `--scale`: each unit is this many agents with this many verified tasks.
pub const SEED_AGENTS: usize = 100;
pub const SEED_TASKS_PER_AGENT: usize = 10;

/// Seeds `scale` units of history through `callers` (several at once).
pub async fn seed<C: Calls>(callers: &[C], scale: usize) -> Result<(), String> {
    let agents = SEED_AGENTS * scale;
    let per_caller = agents.div_ceil(callers.len());
    let work = callers.iter().enumerate().map(|(i, c)| async move {
        for _ in (i * per_caller)..((i + 1) * per_caller).min(agents) {
            let agent = register(c).await?;
            for _ in 0..SEED_TASKS_PER_AGENT {
                verified_task(c, &agent).await?;
            }
        }
        Ok::<(), String>(())
    });
    futures_util::future::try_join_all(work).await?;
    Ok(())
}

/// ARES in this process, called through its tool table exactly as the MCP layer calls it:
/// seeding a database before the server starts on it, several times faster than over HTTP.
pub struct InProcess(pub Arc<ares::Ares>);

impl Calls for InProcess {
    async fn call(&self, tool: &str, args: Value) -> Result<Value, String> {
        let Value::Object(args) = args else {
            return Err("arguments must be an object".into());
        };
        let context =
            ares::audit::CallContext::for_call(ares::audit::Actor::local(), tool, Some(&args));
        let result =
            ares::audit::context::scope(context, ares::mcp::tools::call(&self.0, tool, Some(args)))
                .await
                .map_err(|e| format!("{tool}: {}", e.message))?;
        if result.is_error == Some(true) {
            return Err(format!("{tool} refused: {:?}", result.content));
        }
        result
            .structured_content
            .ok_or_else(|| format!("{tool}: no structured content"))
    }
}
