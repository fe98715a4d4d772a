//! The store conformance suite: every check is written once, against `Arc<dyn Store>`, and
//! runs on SQLite and on PostgreSQL (`mod sqlite` / `mod postgres` at the bottom).

#[path = "common/db.rs"]
mod db;

use ares::agents::{Agent, AgentStatus};
use ares::clock::micros;
use ares::enforcement::{ActionKind, EnforcementAction, Trigger};
use ares::evidence::{Evidence, EvidenceItem, GENESIS};
use ares::reliability::{Reliability, TaskCounts, Window};
use ares::store::{
    ActionFilter, AgentFilter, DownstreamConnection, IdempotencyRecord, Page, Store, StoreError,
    TaskFilter, TaskSnapshot, TimeRange, WriteBatch,
};
use ares::tasks::{Task, TaskStatus};
use ares::verification::{
    Criterion, CriterionResult, CriterionStatus, EvidenceAnalysis, Outcome, VerdictSummary,
    Verification,
};
use chrono::{DateTime, Duration, Utc};
use db::TestDatabase;
use serde_json::json;
use std::collections::HashMap;
use std::sync::Arc;
use uuid::Uuid;

type S = Arc<dyn Store>;

// ---------------------------------------------------------------------------------------
// Fixtures
// ---------------------------------------------------------------------------------------

async fn open(db: &TestDatabase) -> S {
    ares::store::connect(&db.url)
        .await
        .unwrap_or_else(|e| panic!("connect to {}: {e:#}", db.url))
}

fn now() -> DateTime<Utc> {
    micros(Utc::now())
}

fn agent(name: &str, capabilities: &[&str]) -> Agent {
    let now = now();
    Agent {
        id: Uuid::now_v7(),
        name: name.to_string(),
        capabilities: capabilities.iter().map(|c| c.to_string()).collect(),
        public_key: None,
        configuration: json!({"model": "m-1", "limits": {"tokens": [1, 2.5, null]}}),
        max_concurrent_tasks: 3,
        status: AgentStatus::Active,
        throttle_limit: None,
        suspended_until: None,
        reliability_score: 0.1 + 0.2,
        on_probation: false,
        created_at: now,
        updated_at: now,
        version: 1,
    }
}

fn task(description: &str) -> Task {
    let now = now();
    Task {
        id: Uuid::now_v7(),
        description: description.to_string(),
        required_capabilities: vec!["rust".into()],
        criteria: vec![
            Criterion::TestsPass {
                min_passed: Some(3),
                max_failed: None,
            },
            Criterion::EvidencePresent {
                kind: "diff".into(),
            },
        ],
        agent_id: None,
        priority: 5,
        deadline: None,
        depends_on: vec![],
        status: TaskStatus::Pending,
        idempotency_key: None,
        created_at: now,
        updated_at: now,
        assigned_at: None,
        submitted_at: None,
        completed_at: None,
        attempts: 0,
        superseded_verifications: vec![],
        version: 1,
    }
}

/// A task already assigned to `agent` at `at`, in `status`.
fn task_of(agent: &Agent, status: TaskStatus, at: DateTime<Utc>) -> Task {
    let mut t = task("assigned work");
    t.agent_id = Some(agent.id);
    t.status = status;
    t.assigned_at = Some(at);
    t.attempts = 1;
    t
}

fn evidence(task: &Task, agent: &Agent, chain_index: i64) -> Evidence {
    Evidence {
        id: Uuid::now_v7(),
        task_id: task.id,
        agent_id: agent.id,
        items: vec![
            EvidenceItem::Diff {
                content: "+fn main() {}".into(),
            },
            EvidenceItem::TestResults {
                passed: 4,
                failed: 0,
                skipped: 1,
                output: Some("ok".into()),
            },
        ],
        content_digest: "c".repeat(64),
        chain_index,
        prev_digest: GENESIS.into(),
        chain_digest: format!("{chain_index:064}"),
        signature: None,
        idempotency_key: Some(format!("ev-{chain_index}")),
        created_at: now(),
    }
}

fn verification(task: &Task, agent: &Agent, at: DateTime<Utc>) -> Verification {
    let criterion = Criterion::TestsPass {
        min_passed: None,
        max_failed: Some(0),
    };
    Verification {
        id: Uuid::now_v7(),
        task_id: task.id,
        agent_id: agent.id,
        evidence_id: Uuid::now_v7(),
        success: true,
        outcome: Outcome::Verified,
        quality_score: 0.87,
        results: vec![CriterionResult::new(
            &criterion,
            CriterionStatus::Met,
            "4 passed",
        )],
        evidence_analysis: EvidenceAnalysis {
            items: 2,
            substantive_items: 2,
            kinds: vec!["diff".into(), "test_results".into()],
            size_bytes: 120,
            tests_passed: Some(4),
            tests_failed: Some(0),
            concerns: vec![],
        },
        discrepancies: 0,
        response_time_secs: Some(12.25),
        superseded: false,
        created_at: at,
    }
}

fn action(agent: &Agent, kind: ActionKind, at: DateTime<Utc>) -> EnforcementAction {
    EnforcementAction {
        id: Uuid::now_v7(),
        agent_id: agent.id,
        action: kind,
        reason: format!("{} at {at}", kind.as_str()),
        triggered_by: Trigger::Policy,
        metrics: json!({"streak": 3, "score": 0.25}),
        details: json!([]),
        expires_at: None,
        created_at: at,
    }
}

fn snapshot(task: &Task, reason: &str) -> TaskSnapshot {
    TaskSnapshot {
        task_id: task.id,
        status: task.status,
        task: task.clone(),
        reason: reason.to_string(),
        created_at: now(),
    }
}

fn reliability(agent: &Agent) -> Reliability {
    Reliability {
        agent_id: agent.id,
        window: Window::Day,
        reliability_score: 0.7,
        success_rate: 0.75,
        completion_rate: 1.0,
        response_time_avg: 10.0,
        response_time_p95: 20.0,
        quality_score: 0.8,
        discrepancy_rate: 0.0,
        verifications: 4,
        verified: 3,
        rejected: 1,
        inconclusive: 0,
        tasks_assigned: 4,
        tasks_submitted: 4,
        baseline: Default::default(),
        anomalies: vec![],
        recommendations: vec!["keep going".into()],
        computed_at: now(),
    }
}

fn idempotency(scope: &str, key: &str) -> IdempotencyRecord {
    IdempotencyRecord {
        scope: scope.to_string(),
        key: key.to_string(),
        fingerprint: "f".repeat(64),
        response: json!({"task_id": Uuid::nil(), "status": "pending", "n": 1.5}),
        created_at: now(),
    }
}

fn bumped<T: Clone>(record: &T, f: impl FnOnce(&mut T)) -> T {
    let mut r = record.clone();
    f(&mut r);
    r
}

fn next_version(a: &Agent) -> Agent {
    bumped(a, |a| a.version += 1)
}

async fn commit(store: &S, batch: WriteBatch) {
    store.commit(batch).await.expect("commit");
}

async fn add_agents(store: &S, agents: &[Agent]) {
    commit(
        store,
        WriteBatch {
            agents: agents.to_vec(),
            ..Default::default()
        },
    )
    .await;
}

async fn add_tasks(store: &S, tasks: &[Task]) {
    commit(
        store,
        WriteBatch {
            tasks: tasks.to_vec(),
            ..Default::default()
        },
    )
    .await;
}

fn page(after: Option<i64>, limit: i64) -> Page {
    Page { after, limit }
}

fn ids<T>(items: &[T], id: impl Fn(&T) -> Uuid) -> Vec<Uuid> {
    items.iter().map(id).collect()
}

/// Runs a statement straight against the database, behind the store's back.
async fn raw_sql(db: &TestDatabase, sql: &str) {
    use sqlx::Connection;
    if db.backend == "sqlite" {
        let mut conn = sqlx::SqliteConnection::connect(&db.url).await.unwrap();
        sqlx::raw_sql(sql).execute(&mut conn).await.unwrap();
        conn.close().await.unwrap();
    } else {
        let mut conn = sqlx::PgConnection::connect(&db.url).await.unwrap();
        sqlx::raw_sql(sql).execute(&mut conn).await.unwrap();
        conn.close().await.unwrap();
    }
}

// ---------------------------------------------------------------------------------------
// The suite
// ---------------------------------------------------------------------------------------

async fn names_its_backend(db: &TestDatabase) {
    let store = open(db).await;
    assert_eq!(store.backend(), db.backend);
    store.ping().await.expect("ping");
}

async fn agents_and_tasks_round_trip_exactly(db: &TestDatabase) {
    let store = open(db).await;
    let mut a = agent("alpha", &["rust", "run_tests"]);
    a.public_key = Some("AAAA".into());
    a.suspended_until = Some(now() + Duration::hours(2));
    a.throttle_limit = Some(1);
    let mut t = task_of(&a, TaskStatus::Submitted, now());
    t.deadline = Some(now() + Duration::days(1));
    t.submitted_at = Some(now());
    t.idempotency_key = Some("k-1".into());
    t.depends_on = vec![Uuid::now_v7(), Uuid::now_v7()];
    let blank = task("nothing set");
    commit(
        &store,
        WriteBatch {
            agents: vec![a.clone()],
            tasks: vec![t.clone(), blank.clone()],
            ..Default::default()
        },
    )
    .await;

    assert_eq!(store.agent(a.id).await.unwrap(), Some(a.clone()));
    assert_eq!(store.agent_by_name("alpha").await.unwrap(), Some(a.clone()));
    assert_eq!(store.agent_by_name("Alpha").await.unwrap(), None);
    assert_eq!(store.agent(Uuid::now_v7()).await.unwrap(), None);
    assert_eq!(store.task(t.id).await.unwrap(), Some(t.clone()));
    assert_eq!(store.task(blank.id).await.unwrap(), Some(blank.clone()));
    assert_eq!(store.task(Uuid::now_v7()).await.unwrap(), None);

    // An update replaces the whole record, name included.
    let a2 = bumped(&a, |a| {
        a.name = "alpha-2".into();
        a.status = AgentStatus::Suspended;
        a.capabilities.push("review".into());
        a.updated_at = now();
        a.version = 2;
    });
    let t2 = bumped(&t, |t| {
        t.status = TaskStatus::Verified;
        t.completed_at = Some(now());
        t.version = 2;
    });
    commit(
        &store,
        WriteBatch {
            agents: vec![a2.clone()],
            tasks: vec![t2.clone()],
            ..Default::default()
        },
    )
    .await;
    assert_eq!(store.agent(a.id).await.unwrap(), Some(a2.clone()));
    assert_eq!(store.agent_by_name("alpha").await.unwrap(), None);
    assert_eq!(store.agent_by_name("alpha-2").await.unwrap(), Some(a2));
    assert_eq!(store.task(t.id).await.unwrap(), Some(t2));
}

async fn tasks_by_id_come_back_in_the_order_asked(db: &TestDatabase) {
    let store = open(db).await;
    let ts: Vec<Task> = (0..3).map(|i| task(&format!("t{i}"))).collect();
    add_tasks(&store, &ts).await;
    let asked = [ts[2].id, Uuid::now_v7(), ts[0].id, ts[2].id];
    let got = store.tasks(&asked).await.unwrap();
    assert_eq!(got, vec![ts[2].clone(), ts[0].clone()]);
    assert!(store.tasks(&[]).await.unwrap().is_empty());
}

async fn a_duplicate_name_writes_nothing_of_its_batch(db: &TestDatabase) {
    let store = open(db).await;
    let first = agent("dup", &["rust"]);
    add_agents(&store, std::slice::from_ref(&first)).await;

    let second = agent("dup", &["go"]);
    let bystander = task("written with the duplicate");
    let err = store
        .commit(WriteBatch {
            tasks: vec![bystander.clone()],
            agents: vec![second.clone()],
            idempotency: vec![idempotency("register_agent", "k")],
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert!(
        matches!(err, StoreError::Duplicate("agents.name")),
        "{err:?}"
    );
    assert_eq!(store.task(bystander.id).await.unwrap(), None);
    assert_eq!(store.agent(second.id).await.unwrap(), None);
    assert_eq!(
        store.idempotency("register_agent", "k").await.unwrap(),
        None
    );
    assert_eq!(
        store.agent_by_name("dup").await.unwrap(),
        Some(first.clone())
    );

    // Renaming another agent onto a taken name is the same duplicate.
    let other = agent("other", &[]);
    add_agents(&store, std::slice::from_ref(&other)).await;
    let err = store
        .commit(WriteBatch {
            agents: vec![bumped(&other, |a| {
                a.name = "dup".into();
                a.version = 2;
            })],
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert!(
        matches!(err, StoreError::Duplicate("agents.name")),
        "{err:?}"
    );
    assert_eq!(store.agent(other.id).await.unwrap(), Some(other));
}

async fn a_stale_version_conflicts_and_writes_nothing(db: &TestDatabase) {
    let store = open(db).await;
    let a = agent("versioned", &[]);
    let t = task("versioned");
    commit(
        &store,
        WriteBatch {
            agents: vec![a.clone()],
            tasks: vec![t.clone()],
            ..Default::default()
        },
    )
    .await;
    let a2 = bumped(&a, |a| {
        a.reliability_score = 0.9;
        a.version = 2;
    });
    add_agents(&store, std::slice::from_ref(&a2)).await;

    // Written from the version-1 read: the stored row is at 2 by now.
    let stale = bumped(&a, |a| {
        a.reliability_score = 0.1;
        a.version = 2;
    });
    let newcomer = agent("newcomer", &[]);
    let err = store
        .commit(WriteBatch {
            agents: vec![newcomer.clone(), stale],
            tasks: vec![next_task(&t)],
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Conflict), "{err:?}");
    assert_eq!(store.agent(a.id).await.unwrap(), Some(a2.clone()));
    assert_eq!(store.agent(newcomer.id).await.unwrap(), None);
    assert_eq!(store.task(t.id).await.unwrap().unwrap().version, 1);

    // Skipping a version is stale too, and so is updating a row that does not exist.
    for bad in [
        bumped(&a2, |a| a.version = 4),
        bumped(&agent("ghost", &[]), |a| a.version = 2),
    ] {
        let err = store
            .commit(WriteBatch {
                agents: vec![bad],
                ..Default::default()
            })
            .await
            .unwrap_err();
        assert!(matches!(err, StoreError::Conflict), "{err:?}");
    }

    // Inserting a task id twice is a conflict, not a second row.
    let err = store
        .commit(WriteBatch {
            tasks: vec![bumped(&t, |t| t.description = "again".into())],
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Conflict), "{err:?}");
    assert_eq!(store.task(t.id).await.unwrap(), Some(t));
}

fn next_task(t: &Task) -> Task {
    bumped(t, |t| {
        t.priority += 1;
        t.version += 1;
    })
}

async fn concurrent_updates_of_one_version_let_exactly_one_win(db: &TestDatabase) {
    let store = open(db).await;
    let t = task("contended");
    add_tasks(&store, std::slice::from_ref(&t)).await;
    let attempts: Vec<_> = (0..10)
        .map(|i| {
            let store = store.clone();
            let update = bumped(&t, |t| {
                t.priority = i;
                t.version = 2;
            });
            tokio::spawn(async move {
                store
                    .commit(WriteBatch {
                        tasks: vec![update],
                        ..Default::default()
                    })
                    .await
            })
        })
        .collect();
    let mut won = Vec::new();
    for (i, attempt) in attempts.into_iter().enumerate() {
        match attempt.await.unwrap() {
            Ok(()) => won.push(i as i32),
            Err(StoreError::Conflict) => {}
            Err(other) => panic!("expected Ok or Conflict, got {other:?}"),
        }
    }
    assert_eq!(won.len(), 1, "winners: {won:?}");
    let stored = store.task(t.id).await.unwrap().unwrap();
    assert_eq!((stored.version, stored.priority), (2, won[0]));
}

async fn a_taken_chain_position_conflicts(db: &TestDatabase) {
    let store = open(db).await;
    let a = agent("prover", &[]);
    let t = task_of(&a, TaskStatus::Assigned, now());
    let other = task_of(&a, TaskStatus::Assigned, now());
    commit(
        &store,
        WriteBatch {
            agents: vec![a.clone()],
            tasks: vec![t.clone(), other.clone()],
            ..Default::default()
        },
    )
    .await;
    let (e1, e0) = (evidence(&t, &a, 1), evidence(&t, &a, 0));
    // Appended out of order; read back in chain order.
    for e in [&e1, &e0] {
        commit(
            &store,
            WriteBatch {
                evidence: vec![e.clone()],
                ..Default::default()
            },
        )
        .await;
    }
    assert_eq!(
        store.evidence_for_task(t.id).await.unwrap(),
        vec![e0.clone(), e1.clone()]
    );
    // The last link alone, by chain position rather than by when it was written, with
    // its task; a task without evidence has none, and an unknown task is not there.
    assert_eq!(
        store.task_with_last_evidence(t.id).await.unwrap(),
        Some((t.clone(), Some(e1.clone())))
    );
    assert_eq!(
        store.task_with_last_evidence(other.id).await.unwrap(),
        Some((other.clone(), None))
    );
    assert_eq!(
        store.task_with_last_evidence(Uuid::now_v7()).await.unwrap(),
        None
    );

    let clash = evidence(&t, &a, 1);
    let moved = next_task(&t);
    let err = store
        .commit(WriteBatch {
            tasks: vec![moved],
            evidence: vec![clash.clone()],
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Conflict), "{err:?}");
    assert_eq!(store.evidence_for_task(t.id).await.unwrap().len(), 2);
    assert_eq!(store.task(t.id).await.unwrap().unwrap().version, 1);

    // The same position on another task's chain is free.
    let elsewhere = evidence(&other, &a, 1);
    commit(
        &store,
        WriteBatch {
            evidence: vec![elsewhere.clone()],
            ..Default::default()
        },
    )
    .await;
    assert_eq!(
        store.evidence_for_task(other.id).await.unwrap(),
        vec![elsewhere]
    );
}

async fn idempotency_keys_are_unique_per_scope(db: &TestDatabase) {
    let store = open(db).await;
    let first = idempotency("create_task", "key-1");
    commit(
        &store,
        WriteBatch {
            idempotency: vec![first.clone()],
            ..Default::default()
        },
    )
    .await;
    assert_eq!(
        store.idempotency("create_task", "key-1").await.unwrap(),
        Some(first.clone())
    );
    assert_eq!(
        store.idempotency("create_task", "key-2").await.unwrap(),
        None
    );

    let bystander = task("same batch as the repeated key");
    let mut again = idempotency("create_task", "key-1");
    again.fingerprint = "0".repeat(64);
    let err = store
        .commit(WriteBatch {
            tasks: vec![bystander.clone()],
            idempotency: vec![again],
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert!(
        matches!(err, StoreError::Duplicate("idempotency")),
        "{err:?}"
    );
    assert_eq!(store.task(bystander.id).await.unwrap(), None);
    assert_eq!(
        store.idempotency("create_task", "key-1").await.unwrap(),
        Some(first)
    );

    // Another scope may use the same key.
    let other_scope = idempotency("submit_evidence", "key-1");
    commit(
        &store,
        WriteBatch {
            idempotency: vec![other_scope.clone()],
            ..Default::default()
        },
    )
    .await;
    assert_eq!(
        store.idempotency("submit_evidence", "key-1").await.unwrap(),
        Some(other_scope)
    );
}

async fn agents_page_oldest_first(db: &TestDatabase) {
    let store = open(db).await;
    let agents: Vec<Agent> = (0..5).map(|i| agent(&format!("a{i}"), &[])).collect();
    // Separate commits, so registration order is commit order.
    for a in &agents {
        add_agents(&store, std::slice::from_ref(a)).await;
    }
    let filter = AgentFilter::default();
    let mut seen = Vec::new();
    let mut cursor = None;
    let mut sizes = Vec::new();
    loop {
        let listed = store.list_agents(&filter, page(cursor, 2)).await.unwrap();
        sizes.push(listed.items.len());
        seen.extend(ids(&listed.items, |a| a.id));
        match listed.next_cursor {
            Some(next) => cursor = Some(next),
            None => break,
        }
    }
    assert_eq!(sizes, vec![2, 2, 1]);
    assert_eq!(seen, ids(&agents, |a| a.id));

    // Exactly one page's worth has no next page.
    let all = store.list_agents(&filter, page(None, 5)).await.unwrap();
    assert_eq!(all.items, agents);
    assert_eq!(all.next_cursor, None);
}

async fn tasks_page_newest_first(db: &TestDatabase) {
    let store = open(db).await;
    let tasks: Vec<Task> = (0..5).map(|i| task(&format!("t{i}"))).collect();
    add_tasks(&store, &tasks).await;
    let filter = TaskFilter::default();
    let first = store.list_tasks(&filter, page(None, 2)).await.unwrap();
    assert_eq!(ids(&first.items, |t| t.id), vec![tasks[4].id, tasks[3].id]);
    let cursor = first.next_cursor.expect("a second page");
    let second = store
        .list_tasks(&filter, page(Some(cursor), 2))
        .await
        .unwrap();
    assert_eq!(ids(&second.items, |t| t.id), vec![tasks[2].id, tasks[1].id]);
    let third = store
        .list_tasks(&filter, page(second.next_cursor, 2))
        .await
        .unwrap();
    assert!(second.next_cursor.is_some());
    assert_eq!(third.items, vec![tasks[0].clone()]);
    assert_eq!(third.next_cursor, None);
}

async fn actions_page_newest_first_within_a_time_range(db: &TestDatabase) {
    let store = open(db).await;
    let (a, b) = (agent("acted-on", &[]), agent("bystander", &[]));
    let base = now();
    let at = |hours: i64| base - Duration::hours(hours);
    let actions = vec![
        action(&a, ActionKind::Warning, at(5)),
        action(&a, ActionKind::Throttle, at(4)),
        action(&b, ActionKind::Warning, at(3)),
        action(&a, ActionKind::Suspend, at(2)),
        action(&a, ActionKind::Reinstate, at(1)),
    ];
    commit(
        &store,
        WriteBatch {
            agents: vec![a.clone(), b.clone()],
            actions: actions.clone(),
            ..Default::default()
        },
    )
    .await;

    let all = ActionFilter::default();
    let p1 = store.list_actions(&all, page(None, 2)).await.unwrap();
    assert_eq!(p1.items, vec![actions[4].clone(), actions[3].clone()]);
    let p2 = store
        .list_actions(&all, page(p1.next_cursor, 2))
        .await
        .unwrap();
    assert_eq!(p2.items, vec![actions[2].clone(), actions[1].clone()]);
    let p3 = store
        .list_actions(&all, page(p2.next_cursor, 2))
        .await
        .unwrap();
    assert_eq!((p3.items, p3.next_cursor), (vec![actions[0].clone()], None));

    // since is inclusive, until exclusive.
    let window = ActionFilter {
        since: Some(at(4)),
        until: Some(at(2)),
        ..Default::default()
    };
    let listed = store.list_actions(&window, page(None, 10)).await.unwrap();
    assert_eq!(listed.items, vec![actions[2].clone(), actions[1].clone()]);

    let of_a = ActionFilter {
        agent_id: Some(a.id),
        action: Some(ActionKind::Warning),
        ..Default::default()
    };
    let listed = store.list_actions(&of_a, page(None, 10)).await.unwrap();
    assert_eq!(listed.items, vec![actions[0].clone()]);
    let since_only = ActionFilter {
        agent_id: Some(a.id),
        since: Some(at(2)),
        ..Default::default()
    };
    let listed = store
        .list_actions(&since_only, page(None, 10))
        .await
        .unwrap();
    assert_eq!(
        ids(&listed.items, |x| x.id),
        vec![actions[4].id, actions[3].id]
    );
}

async fn agent_filters_take_capabilities_literally(db: &TestDatabase) {
    let store = open(db).await;
    let exact = agent("exact", &["run_tests", "rust"]);
    let lookalike = agent("lookalike", &["runXtests", "rust"]);
    let shouty = agent("shouty", &["RUN_TESTS"]);
    let prefixed = agent("prefixed", &["run_tests_fast"]);
    let suspended = bumped(&agent("suspended", &["run_tests"]), |a| {
        a.status = AgentStatus::Suspended
    });
    let all = [
        exact.clone(),
        lookalike.clone(),
        shouty.clone(),
        prefixed.clone(),
        suspended.clone(),
    ];
    add_agents(&store, &all).await;

    let by_cap = |cap: &str| AgentFilter {
        capability: Some(cap.into()),
        ..Default::default()
    };
    let names = |agents: Vec<Agent>| agents.into_iter().map(|a| a.name).collect::<Vec<_>>();
    let listed = store
        .list_agents(&by_cap("run_tests"), page(None, 10))
        .await
        .unwrap();
    assert_eq!(names(listed.items), vec!["exact", "suspended"]);
    for pattern in ["run%", "%", "_", "run\\_tests"] {
        let listed = store
            .list_agents(&by_cap(pattern), page(None, 10))
            .await
            .unwrap();
        assert!(
            listed.items.is_empty(),
            "{pattern:?} matched {:?}",
            listed.items
        );
    }
    let listed = store
        .list_agents(&by_cap("rust"), page(None, 10))
        .await
        .unwrap();
    assert_eq!(names(listed.items), vec!["exact", "lookalike"]);

    let active_testers = AgentFilter {
        status: Some(AgentStatus::Suspended),
        capability: Some("run_tests".into()),
    };
    let listed = store
        .list_agents(&active_testers, page(None, 10))
        .await
        .unwrap();
    assert_eq!(listed.items, vec![suspended]);
    let active = AgentFilter {
        status: Some(AgentStatus::Active),
        capability: None,
    };
    let listed = store.list_agents(&active, page(None, 10)).await.unwrap();
    assert_eq!(
        names(listed.items),
        vec!["exact", "lookalike", "shouty", "prefixed"]
    );
}

async fn capable_agents_have_every_capability_and_are_not_deregistered(db: &TestDatabase) {
    let store = open(db).await;
    let both = agent("both", &["deploy", "run_tests"]);
    let one = agent("one", &["run_tests"]);
    let gone = bumped(&agent("gone", &["deploy", "run_tests"]), |a| {
        a.status = AgentStatus::Deregistered
    });
    let suspended = bumped(&agent("suspended", &["run_tests", "deploy"]), |a| {
        a.status = AgentStatus::Suspended
    });
    let wildcard = agent("wildcard", &["runXtests", "deploy"]);
    add_agents(
        &store,
        &[
            both.clone(),
            one.clone(),
            gone.clone(),
            suspended.clone(),
            wildcard.clone(),
        ],
    )
    .await;
    let caps = |c: &[&str]| c.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    let names = |agents: Vec<Agent>| agents.into_iter().map(|a| a.name).collect::<Vec<_>>();
    assert_eq!(
        names(
            store
                .capable_agents(&caps(&["run_tests", "deploy"]))
                .await
                .unwrap()
        ),
        vec!["both", "suspended"]
    );
    assert_eq!(
        names(store.capable_agents(&caps(&["run_tests"])).await.unwrap()),
        vec!["both", "one", "suspended"]
    );
    assert_eq!(
        names(store.capable_agents(&[]).await.unwrap()),
        vec!["both", "one", "suspended", "wildcard"]
    );
    assert!(
        store
            .capable_agents(&caps(&["Deploy"]))
            .await
            .unwrap()
            .is_empty()
    );
}

async fn task_filters_select_by_status_and_agent(db: &TestDatabase) {
    let store = open(db).await;
    let (a, b) = (agent("a", &[]), agent("b", &[]));
    let t = now();
    let a_assigned = task_of(&a, TaskStatus::Assigned, t);
    let a_verified = task_of(&a, TaskStatus::Verified, t);
    let b_assigned = task_of(&b, TaskStatus::Assigned, t);
    let pending = task("unassigned");
    commit(
        &store,
        WriteBatch {
            agents: vec![a.clone(), b.clone()],
            tasks: vec![
                a_assigned.clone(),
                a_verified.clone(),
                b_assigned.clone(),
                pending.clone(),
            ],
            ..Default::default()
        },
    )
    .await;
    let list = |filter: TaskFilter| {
        let store = store.clone();
        async move {
            store
                .list_tasks(&filter, page(None, 50))
                .await
                .unwrap()
                .items
                .into_iter()
                .map(|t| t.id)
                .collect::<Vec<_>>()
        }
    };
    assert_eq!(
        list(TaskFilter {
            status: Some(TaskStatus::Assigned),
            agent_id: None
        })
        .await,
        vec![b_assigned.id, a_assigned.id]
    );
    assert_eq!(
        list(TaskFilter {
            status: None,
            agent_id: Some(a.id)
        })
        .await,
        vec![a_verified.id, a_assigned.id]
    );
    assert_eq!(
        list(TaskFilter {
            status: Some(TaskStatus::Assigned),
            agent_id: Some(a.id)
        })
        .await,
        vec![a_assigned.id]
    );
    assert_eq!(
        list(TaskFilter {
            status: Some(TaskStatus::Pending),
            agent_id: None
        })
        .await,
        vec![pending.id]
    );
    assert!(
        list(TaskFilter {
            status: Some(TaskStatus::Failed),
            agent_id: None
        })
        .await
        .is_empty()
    );
}

async fn open_tasks_are_counted_per_agent(db: &TestDatabase) {
    let store = open(db).await;
    let (a, b, idle) = (agent("a", &[]), agent("b", &[]), agent("idle", &[]));
    let t = now();
    let a_tasks = vec![
        task_of(&a, TaskStatus::Assigned, t),
        task_of(&a, TaskStatus::InProgress, t),
        task_of(&a, TaskStatus::Submitted, t),
        task_of(&a, TaskStatus::Verified, t),
        task_of(&a, TaskStatus::Failed, t),
    ];
    let b_tasks = vec![
        task_of(&b, TaskStatus::InProgress, t),
        task_of(&b, TaskStatus::Rejected, t),
    ];
    commit(
        &store,
        WriteBatch {
            agents: vec![a.clone(), b.clone(), idle.clone()],
            tasks: [a_tasks.clone(), b_tasks.clone(), vec![task("pending")]].concat(),
            ..Default::default()
        },
    )
    .await;
    let counts = store.open_task_counts(None).await.unwrap();
    assert_eq!(counts, HashMap::from([(a.id, 3), (b.id, 1)]));
    let of_b = store.open_task_counts(Some(&[b.id])).await.unwrap();
    assert_eq!(of_b, HashMap::from([(b.id, 1)]));
    assert!(store.open_task_counts(Some(&[])).await.unwrap().is_empty());
    assert_eq!(
        store.open_tasks_of(a.id).await.unwrap(),
        a_tasks[..3].to_vec()
    );
    assert_eq!(
        store.open_tasks_of(b.id).await.unwrap(),
        vec![b_tasks[0].clone()]
    );
    assert!(store.open_tasks_of(idle.id).await.unwrap().is_empty());
}

async fn dependents_are_found_by_dependency(db: &TestDatabase) {
    let store = open(db).await;
    let (base, other) = (task("base"), task("other"));
    let needs_base = bumped(&task("needs base"), |t| t.depends_on = vec![base.id]);
    let needs_both = bumped(&task("needs both"), |t| {
        t.depends_on = vec![other.id, base.id]
    });
    let needs_other = bumped(&task("needs other"), |t| t.depends_on = vec![other.id]);
    add_tasks(
        &store,
        &[
            base.clone(),
            other.clone(),
            needs_base.clone(),
            needs_both.clone(),
            needs_other.clone(),
        ],
    )
    .await;
    assert_eq!(
        store.dependents_of(base.id).await.unwrap(),
        vec![needs_base, needs_both.clone()]
    );
    assert_eq!(
        store.dependents_of(other.id).await.unwrap(),
        vec![needs_both, needs_other]
    );
    assert!(
        store
            .dependents_of(Uuid::now_v7())
            .await
            .unwrap()
            .is_empty()
    );
}

async fn task_counts_respect_since(db: &TestDatabase) {
    let store = open(db).await;
    let (a, b) = (agent("counted", &[]), agent("other", &[]));
    let base = now();
    let old = base - Duration::days(3);
    let recent = base - Duration::hours(1);
    commit(
        &store,
        WriteBatch {
            agents: vec![a.clone(), b.clone()],
            tasks: vec![
                task_of(&a, TaskStatus::Verified, old),
                task_of(&a, TaskStatus::Assigned, old),
                task_of(&a, TaskStatus::Submitted, recent),
                task_of(&a, TaskStatus::Rejected, recent),
                task_of(&a, TaskStatus::InProgress, recent),
                task_of(&a, TaskStatus::Failed, base),
                task_of(&b, TaskStatus::Verified, recent),
            ],
            ..Default::default()
        },
    )
    .await;
    assert_eq!(
        store.task_counts(a.id, None).await.unwrap(),
        TaskCounts {
            assigned: 6,
            submitted: 3
        }
    );
    assert_eq!(
        store.task_counts(a.id, Some(recent)).await.unwrap(),
        TaskCounts {
            assigned: 4,
            submitted: 2
        }
    );
    assert_eq!(
        store
            .task_counts(a.id, Some(base + Duration::seconds(1)))
            .await
            .unwrap(),
        TaskCounts::default()
    );
    assert_eq!(
        store.task_counts(Uuid::now_v7(), None).await.unwrap(),
        TaskCounts::default()
    );
}

async fn verifications_by_task_and_by_agent_oldest_first(db: &TestDatabase) {
    let store = open(db).await;
    let (a, b) = (agent("a", &[]), agent("b", &[]));
    let (ta, tb) = (
        task_of(&a, TaskStatus::Verified, now()),
        task_of(&b, TaskStatus::Verified, now()),
    );
    let base = now();
    let v_late = verification(&ta, &a, base - Duration::hours(1));
    let v_early = verification(&ta, &a, base - Duration::hours(5));
    let v_b = verification(&tb, &b, base - Duration::hours(2));
    commit(
        &store,
        WriteBatch {
            agents: vec![a.clone(), b.clone()],
            tasks: vec![ta.clone(), tb.clone()],
            verifications: vec![v_late.clone(), v_b.clone(), v_early.clone()],
            ..Default::default()
        },
    )
    .await;
    assert_eq!(
        store.verifications_for_task(ta.id).await.unwrap(),
        vec![v_early.clone(), v_late.clone()]
    );
    assert_eq!(
        store
            .verifications_for_agent(a.id, TimeRange::default(), 10)
            .await
            .unwrap(),
        vec![v_early.clone(), v_late.clone()]
    );
    assert_eq!(
        store
            .verifications_for_agent(a.id, TimeRange::since(Some(v_late.created_at)), 10)
            .await
            .unwrap(),
        vec![v_late.clone()]
    );
    // The latest only, still oldest first; and a range's end is exclusive.
    assert_eq!(
        store
            .verifications_for_agent(a.id, TimeRange::default(), 1)
            .await
            .unwrap(),
        vec![v_late.clone()]
    );
    let before_late = TimeRange {
        since: None,
        until: Some(v_late.created_at),
    };
    assert_eq!(
        store
            .verifications_for_agent(a.id, before_late, 10)
            .await
            .unwrap(),
        vec![v_early.clone()]
    );
    assert_eq!(
        store.verifications_for_task(tb.id).await.unwrap(),
        vec![v_b]
    );
}

/// Verdicts of every kind, some at the same instant (a manual clock does not move), some
/// without a response time, with discrepancies or with empty evidence.
fn varied_verdicts(task: &Task, agent: &Agent, base: DateTime<Utc>) -> Vec<Verification> {
    let outcomes = [
        Outcome::Rejected,
        Outcome::Verified,
        Outcome::Verified,
        Outcome::Inconclusive,
        Outcome::Rejected,
        Outcome::Rejected,
        Outcome::Verified,
        Outcome::Rejected,
        Outcome::Inconclusive,
        Outcome::Rejected,
        Outcome::Rejected,
    ];
    outcomes
        .iter()
        .enumerate()
        .map(|(i, &outcome)| {
            let mut v = verification(task, agent, base + Duration::seconds(i as i64 / 3));
            v.outcome = outcome;
            v.success = outcome == Outcome::Verified;
            v.quality_score = 0.1 * (i % 7) as f64;
            v.discrepancies = (i % 4 == 1) as i64;
            v.evidence_analysis.substantive_items = (i % 5 != 2) as i64;
            v.response_time_secs = (i % 6 != 3).then_some(1.5 * (11 - i) as f64);
            v
        })
        .collect()
}

fn assert_same_totals(stored: VerdictSummary, expected: VerdictSummary) {
    let close = |a: f64, b: f64| (a - b).abs() < 1e-9;
    assert!(
        close(stored.quality_sum, expected.quality_sum)
            && close(stored.response_time_sum, expected.response_time_sum),
        "{stored:?} vs {expected:?}"
    );
    let rounded = |s: VerdictSummary| VerdictSummary {
        quality_sum: 0.0,
        response_time_sum: 0.0,
        ..s
    };
    assert_eq!(rounded(stored), rounded(expected));
}

async fn verdict_totals_match_the_verdicts_they_total(db: &TestDatabase) {
    let store = open(db).await;
    let (a, other) = (agent("a", &[]), agent("other", &[]));
    let (ta, tother) = (
        task_of(&a, TaskStatus::Rejected, now()),
        task_of(&other, TaskStatus::Verified, now()),
    );
    let base = now() - Duration::hours(1);
    let verdicts = varied_verdicts(&ta, &a, base);
    commit(
        &store,
        WriteBatch {
            agents: vec![a.clone(), other.clone()],
            tasks: vec![ta.clone(), tother.clone()],
            verifications: verdicts
                .iter()
                .cloned()
                .chain([verification(&tother, &other, base)])
                .collect(),
            ..Default::default()
        },
    )
    .await;
    let all = TimeRange::default();
    let expected = VerdictSummary::of(&verdicts);
    assert_eq!((expected.rejection_streak, expected.success_streak), (3, 0));
    assert_same_totals(
        store.verdict_summary(a.id, all, None).await.unwrap(),
        expected,
    );

    // A verdict about to be stored counts as the latest, even at the same instant.
    let mut pending = verification(&ta, &a, verdicts.last().unwrap().created_at);
    pending.response_time_secs = Some(0.25);
    let with_pending: Vec<Verification> =
        verdicts.iter().cloned().chain([pending.clone()]).collect();
    let totals = store
        .verdict_summary(a.id, all, Some(&pending))
        .await
        .unwrap();
    assert_eq!((totals.rejection_streak, totals.success_streak), (0, 1));
    assert_same_totals(totals, VerdictSummary::of(&with_pending));
    // …even when the clock was set back before it.
    let mut behind = pending.clone();
    behind.created_at = base - Duration::hours(2);
    let totals = store
        .verdict_summary(a.id, all, Some(&behind))
        .await
        .unwrap();
    assert_eq!((totals.rejection_streak, totals.success_streak), (0, 1));

    // A range totals only its verdicts.
    let middle = TimeRange {
        since: Some(base + Duration::seconds(1)),
        until: Some(base + Duration::seconds(3)),
    };
    assert_same_totals(
        store.verdict_summary(a.id, middle, None).await.unwrap(),
        VerdictSummary::of(&verdicts[3..9]),
    );
    // No verdicts: all zero, not an error.
    assert_eq!(
        store
            .verdict_summary(Uuid::now_v7(), all, None)
            .await
            .unwrap(),
        VerdictSummary::default()
    );
    // The latest verdicts come back in the order the totals' streaks read them.
    assert_eq!(
        store.verifications_for_agent(a.id, all, 4).await.unwrap(),
        verdicts[7..].to_vec()
    );
}

/// Runs SQL on the test database outside the store.
async fn run_sql(db: &TestDatabase, sql: &str) {
    use sqlx::Connection;
    match db.backend {
        "sqlite" => {
            let mut c = sqlx::SqliteConnection::connect(&db.url).await.unwrap();
            sqlx::raw_sql(sql).execute(&mut c).await.unwrap();
        }
        _ => {
            let mut c = sqlx::PgConnection::connect(&db.url).await.unwrap();
            sqlx::raw_sql(sql).execute(&mut c).await.unwrap();
        }
    }
}

/// Runs the backfill (the first `UPDATE` statement) of a migration, in the backend's own
/// version of it.
async fn run_backfill(db: &TestDatabase, sqlite: &str, postgres: &str) {
    let migration = if db.backend == "sqlite" {
        sqlite
    } else {
        postgres
    };
    let backfill = &migration[migration.find("UPDATE").expect("the backfill")..];
    run_sql(
        db,
        &backfill[..=backfill.find(';').expect("the end of the backfill")],
    )
    .await;
}

async fn verdicts_from_before_the_totals_columns_are_backfilled(db: &TestDatabase) {
    let store = open(db).await;
    let a = agent("a", &[]);
    let ta = task_of(&a, TaskStatus::Rejected, now());
    let verdicts = varied_verdicts(&ta, &a, now());
    commit(
        &store,
        WriteBatch {
            agents: vec![a.clone()],
            tasks: vec![ta.clone()],
            verifications: verdicts.clone(),
            ..Default::default()
        },
    )
    .await;
    // Rows as migration 0007 found them: only the body says what the verdict was.
    run_sql(
        db,
        "UPDATE verifications SET outcome = NULL, quality = NULL, discrepancies = NULL, \
         response_secs = NULL, substantive = NULL",
    )
    .await;
    run_backfill(
        db,
        include_str!("../migrations/sqlite/0007_verdict_totals.sql"),
        include_str!("../migrations/postgres/0007_verdict_totals.sql"),
    )
    .await;
    assert_same_totals(
        store
            .verdict_summary(a.id, TimeRange::default(), None)
            .await
            .unwrap(),
        VerdictSummary::of(&verdicts),
    );
}

async fn overdue_tasks_are_found_by_their_deadline(db: &TestDatabase) {
    let store = open(db).await;
    let a = agent("late", &[]);
    let t0 = now();
    let past = t0 - Duration::minutes(5);
    let with = |status, deadline, assigned_at| Task {
        deadline,
        assigned_at,
        ..task_of(&a, status, t0)
    };
    let overdue = with(
        TaskStatus::Assigned,
        Some(past),
        Some(past - Duration::minutes(1)),
    );
    let overdue_started = with(TaskStatus::InProgress, Some(past), None);
    let not_yet = with(
        TaskStatus::Assigned,
        Some(t0 + Duration::hours(1)),
        Some(past),
    );
    let no_deadline = with(TaskStatus::Assigned, None, Some(past));
    let handed_on_late = with(
        TaskStatus::Assigned,
        Some(past),
        Some(past + Duration::minutes(1)),
    );
    let submitted = with(
        TaskStatus::Submitted,
        Some(past),
        Some(past - Duration::minutes(1)),
    );
    let pending = Task {
        deadline: Some(past),
        ..task("nobody has it")
    };
    commit(
        &store,
        WriteBatch {
            agents: vec![a.clone()],
            tasks: vec![
                overdue.clone(),
                overdue_started.clone(),
                not_yet,
                no_deadline,
                handed_on_late,
                submitted,
                pending,
            ],
            ..Default::default()
        },
    )
    .await;
    let found = |after, limit| {
        let store = store.clone();
        async move { store.overdue_tasks(t0, page(after, limit)).await.unwrap() }
    };
    let all = found(None, 100).await;
    assert_eq!(
        ids(&all.items, |t| t.id),
        vec![overdue.id, overdue_started.id]
    );
    assert_eq!(all.next_cursor, None);
    let first = found(None, 1).await;
    assert_eq!(ids(&first.items, |t| t.id), vec![overdue.id]);
    let second = found(first.next_cursor, 1).await;
    assert_eq!(ids(&second.items, |t| t.id), vec![overdue_started.id]);
    assert_eq!(second.next_cursor, None);
    assert!(
        store
            .overdue_tasks(past - Duration::seconds(1), page(None, 100))
            .await
            .unwrap()
            .items
            .is_empty(),
        "nothing is overdue before its deadline"
    );

    // A deadline moved later takes the task out.
    let extended = bumped(&overdue, |t| {
        t.deadline = Some(t0 + Duration::hours(1));
        t.version = 2;
    });
    commit(
        &store,
        WriteBatch {
            tasks: vec![extended],
            ..Default::default()
        },
    )
    .await;
    assert_eq!(
        ids(&found(None, 100).await.items, |t| t.id),
        vec![overdue_started.id]
    );

    // Rows as migration 0009 found them: only the body has the deadline.
    run_sql(db, "UPDATE tasks SET deadline_us = NULL").await;
    assert!(found(None, 100).await.items.is_empty());
    run_backfill(
        db,
        include_str!("../migrations/sqlite/0009_task_deadlines.sql"),
        include_str!("../migrations/postgres/0009_task_deadlines.sql"),
    )
    .await;
    assert_eq!(
        ids(&found(None, 100).await.items, |t| t.id),
        vec![overdue_started.id]
    );
}

async fn task_snapshots_come_back_oldest_first(db: &TestDatabase) {
    let store = open(db).await;
    let a = agent("snap", &[]);
    let t = task("snapshotted");
    commit(
        &store,
        WriteBatch {
            agents: vec![a.clone()],
            tasks: vec![t.clone()],
            task_snapshots: vec![snapshot(&t, "created")],
            reliability: vec![reliability(&a)],
            ..Default::default()
        },
    )
    .await;
    let mut assigned = next_task(&t);
    assigned.advance(TaskStatus::Assigned, now()).unwrap();
    assigned.agent_id = Some(a.id);
    commit(
        &store,
        WriteBatch {
            tasks: vec![assigned.clone()],
            task_snapshots: vec![snapshot(&assigned, "assigned")],
            ..Default::default()
        },
    )
    .await;
    let snaps = store.task_snapshots(t.id).await.unwrap();
    assert_eq!(
        snaps
            .iter()
            .map(|s| (s.reason.as_str(), s.status))
            .collect::<Vec<_>>(),
        vec![
            ("created", TaskStatus::Pending),
            ("assigned", TaskStatus::Assigned)
        ]
    );
    assert_eq!(snaps[0].task, t);
    assert_eq!(snaps[1].task, assigned);
    assert!(
        store
            .task_snapshots(Uuid::now_v7())
            .await
            .unwrap()
            .is_empty()
    );
}

async fn downstream_connections_upsert_by_name(db: &TestDatabase) {
    let store = open(db).await;
    assert!(store.downstream_connections().await.unwrap().is_empty());
    let fs = DownstreamConnection {
        name: "fs".into(),
        role: "filesystem".into(),
        status: "connected".into(),
        last_ping_at: Some(now()),
        last_error: None,
        latency_ms: Some(1.25),
        updated_at: now(),
    };
    let checker = DownstreamConnection {
        name: "checker".into(),
        role: "code_checker".into(),
        status: "disconnected".into(),
        last_ping_at: None,
        last_error: None,
        latency_ms: None,
        updated_at: now(),
    };
    store.record_downstream(&fs).await.unwrap();
    store.record_downstream(&checker).await.unwrap();
    let failed = DownstreamConnection {
        status: "failed".into(),
        last_error: Some("connection reset".into()),
        latency_ms: None,
        updated_at: now() + Duration::seconds(1),
        ..fs.clone()
    };
    store.record_downstream(&failed).await.unwrap();
    let all = store.downstream_connections().await.unwrap();
    assert_eq!(all, vec![checker, failed]);
}

async fn concurrent_commits_all_land(db: &TestDatabase) {
    let store = open(db).await;
    let a = agent("busy", &[]);
    let seed = task_of(&a, TaskStatus::Assigned, now());
    commit(
        &store,
        WriteBatch {
            agents: vec![a.clone()],
            tasks: vec![seed.clone()],
            ..Default::default()
        },
    )
    .await;
    let handles: Vec<_> = (0..20)
        .map(|i| {
            let store = store.clone();
            let (a, seed) = (a.clone(), seed.clone());
            tokio::spawn(async move {
                let t = task_of(&a, TaskStatus::Assigned, now());
                let v = verification(&seed, &a, now());
                store
                    .commit(WriteBatch {
                        tasks: vec![t.clone()],
                        task_snapshots: vec![snapshot(&t, "created")],
                        evidence: vec![evidence(&seed, &a, i)],
                        verifications: vec![v],
                        actions: vec![action(&a, ActionKind::Warning, now())],
                        ..Default::default()
                    })
                    .await
                    .map(|()| t.id)
            })
        })
        .collect();
    let mut created = Vec::new();
    for h in handles {
        created.push(h.await.unwrap().expect("a concurrent commit"));
    }
    let listed = store
        .list_tasks(&TaskFilter::default(), page(None, 100))
        .await
        .unwrap();
    assert_eq!(listed.items.len(), 21);
    for id in &created {
        assert_eq!(store.task_snapshots(*id).await.unwrap().len(), 1);
    }
    let chain = store.evidence_for_task(seed.id).await.unwrap();
    assert_eq!(
        chain.iter().map(|e| e.chain_index).collect::<Vec<_>>(),
        (0..20).collect::<Vec<_>>()
    );
    assert_eq!(
        store
            .verifications_for_agent(a.id, TimeRange::default(), 1000)
            .await
            .unwrap()
            .len(),
        20
    );
    assert_eq!(store.open_task_counts(None).await.unwrap()[&a.id], 21);
}

/// An audit entry for a batch that registers `agent`, as `Ares::commit` drafts one.
fn audit_draft(agent: &Agent) -> ares::audit::AuditDraft {
    ares::audit::AuditDraft {
        id: Uuid::now_v7(),
        at: now(),
        actor: ares::audit::Actor::system(),
        tool: "register_agent".into(),
        args_digest: ares::audit::args_digest(&json!({ "name": agent.name })),
        outcome: "ok".into(),
        agent_ids: vec![agent.id],
        task_ids: vec![],
    }
}

/// Many commits at once are written in groups (one transaction, a savepoint each): a
/// batch that fails there fails alone, leaves nothing behind, and leaves no gap in the
/// audit chain; every other batch lands whole.
async fn a_failing_commit_among_concurrent_ones_fails_alone(db: &TestDatabase) {
    let store = open(db).await;
    let taken = agent("taken", &[]);
    add_agents(&store, std::slice::from_ref(&taken)).await;
    let calls: Vec<_> = (0..60)
        .map(|i| {
            let store = store.clone();
            tokio::spawn(async move {
                // Every fifth batch registers a name that is already taken.
                let name = if i % 5 == 0 {
                    "taken".to_string()
                } else {
                    format!("a{i}")
                };
                let a = agent(&name, &[]);
                let t = task_of(&a, TaskStatus::Assigned, now());
                let outcome = store
                    .commit(WriteBatch {
                        tasks: vec![t.clone()],
                        task_snapshots: vec![snapshot(&t, "created")],
                        events: vec![event(&a, "agent_registered", now())],
                        audit: vec![audit_draft(&a)],
                        agents: vec![a.clone()],
                        ..Default::default()
                    })
                    .await;
                (i, a, t, outcome)
            })
        })
        .collect();
    let mut landed = 0;
    for call in calls {
        let (i, a, t, outcome) = call.await.unwrap();
        if i % 5 == 0 {
            assert!(
                matches!(outcome, Err(StoreError::Duplicate("agents.name"))),
                "batch {i}: {outcome:?}"
            );
            assert_eq!(store.agent(a.id).await.unwrap(), None, "batch {i}");
            assert_eq!(store.task(t.id).await.unwrap(), None, "batch {i}");
            assert!(store.task_snapshots(t.id).await.unwrap().is_empty());
        } else {
            outcome.unwrap_or_else(|e| panic!("batch {i}: {e:?}"));
            assert_eq!(store.agent(a.id).await.unwrap(), Some(a), "batch {i}");
            assert_eq!(store.task(t.id).await.unwrap(), Some(t.clone()));
            assert_eq!(store.task_snapshots(t.id).await.unwrap().len(), 1);
            landed += 1;
        }
    }
    assert_eq!(landed, 48);
    let log = store.audit_log(None, 1000).await.unwrap();
    assert_eq!(
        log.iter().map(|r| r.seq).collect::<Vec<_>>(),
        (1..=48).collect::<Vec<_>>(),
        "one entry per batch that landed, no gaps"
    );
    ares::audit::verify_chain(&log).expect("the audit chain holds");
    assert_eq!(store.latest_events(1000).await.unwrap().len(), 48);
}

async fn data_survives_closing_and_reopening(db: &TestDatabase) {
    let store = open(db).await;
    let a = agent("durable", &["rust"]);
    let t = task_of(&a, TaskStatus::Assigned, now());
    let key = idempotency("register_agent", "durable");
    commit(
        &store,
        WriteBatch {
            agents: vec![a.clone()],
            tasks: vec![t.clone()],
            idempotency: vec![key.clone()],
            ..Default::default()
        },
    )
    .await;
    store.close().await;
    drop(store);

    let store = open(db).await;
    assert_eq!(store.agent(a.id).await.unwrap(), Some(a.clone()));
    assert_eq!(store.task(t.id).await.unwrap(), Some(t.clone()));
    assert_eq!(
        store
            .idempotency("register_agent", "durable")
            .await
            .unwrap(),
        Some(key)
    );
    // And it keeps working: versions continue from what was stored.
    add_agents(&store, &[next_version(&a)]).await;
    assert_eq!(store.agent(a.id).await.unwrap().unwrap().version, 2);
}

async fn migrating_twice_is_harmless(db: &TestDatabase) {
    let store = open(db).await;
    let a = agent("migrated", &[]);
    add_agents(&store, std::slice::from_ref(&a)).await;
    store.migrate().await.expect("second migrate");
    store.migrate().await.expect("third migrate");
    assert_eq!(store.agent(a.id).await.unwrap(), Some(a.clone()));
    // A second process opening the same database migrates too.
    let again = open(db).await;
    assert_eq!(again.agent(a.id).await.unwrap(), Some(a));
    again.close().await;
}

async fn an_unreadable_body_is_internal_and_names_the_row(db: &TestDatabase) {
    let store = open(db).await;
    let a = agent("corrupted", &[]);
    add_agents(&store, std::slice::from_ref(&a)).await;
    raw_sql(
        db,
        &format!(
            "UPDATE agents SET body = '{{\"id\": 1' WHERE id = '{}'",
            a.id
        ),
    )
    .await;
    let err = store.agent(a.id).await.unwrap_err();
    let shown = format!("{err:#}");
    assert!(matches!(err, StoreError::Internal(_)), "{err:?}");
    assert!(shown.contains("agents"), "{shown}");
    assert!(shown.contains(&a.id.to_string()), "{shown}");
    // The bad row spoils lists that include it, the same way.
    let err = store
        .list_agents(&AgentFilter::default(), page(None, 10))
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Internal(_)), "{err:?}");
}

async fn evidence_for_an_unknown_task_is_refused(db: &TestDatabase) {
    let store = open(db).await;
    let a = agent("orphan-maker", &[]);
    add_agents(&store, std::slice::from_ref(&a)).await;
    let ghost = task("never stored");
    let bystander = task("same batch");
    let err = store
        .commit(WriteBatch {
            tasks: vec![bystander.clone()],
            evidence: vec![evidence(&ghost, &a, 0)],
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Internal(_)), "{err:?}");
    assert_eq!(store.task(bystander.id).await.unwrap(), None);
    assert!(store.evidence_for_task(ghost.id).await.unwrap().is_empty());
}

async fn a_closed_store_is_unavailable(db: &TestDatabase) {
    let store = open(db).await;
    store.close().await;
    let err = store.ping().await.unwrap_err();
    assert!(matches!(err, StoreError::Unavailable(_)), "{err:?}");
    let err = store
        .commit(WriteBatch {
            tasks: vec![task("after close")],
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Unavailable(_)), "{err:?}");
    let err = store.task(Uuid::now_v7()).await.unwrap_err();
    assert!(matches!(err, StoreError::Unavailable(_)), "{err:?}");
    // An empty batch needs no database.
    store.commit(WriteBatch::default()).await.unwrap();
}

fn event(agent: &Agent, event_type: &str, at: DateTime<Utc>) -> ares::events::Event {
    ares::events::Event {
        event_id: Uuid::now_v7(),
        event_type: event_type.to_string(),
        timestamp: at,
        agent_id: Some(agent.id),
        task_id: None,
        data: json!({"name": agent.name, "n": [1, 2.5]}),
        metadata: ares::events::EventMetadata {
            correlation_id: Uuid::now_v7(),
            source: "test".into(),
            instance: "test".into(),
        },
    }
}

async fn events_are_stored_with_their_batch_in_order(db: &TestDatabase) {
    let store = open(db).await;
    let a = agent("eventful", &["rust"]);
    let t0 = now() - Duration::hours(2);
    let first = event(&a, "agent.registered", t0);
    let second = event(&a, "enforcement.warning", t0 + Duration::minutes(1));
    commit(
        &store,
        WriteBatch {
            agents: vec![a.clone()],
            events: vec![first.clone(), second.clone()],
            ..Default::default()
        },
    )
    .await;
    let all = store.events_after(None, 100).await.unwrap();
    assert_eq!(
        all.iter().map(|(_, e)| e.clone()).collect::<Vec<_>>(),
        vec![first.clone(), second.clone()]
    );
    let after_first = store.events_after(Some(all[0].0), 100).await.unwrap();
    assert_eq!(after_first.len(), 1);
    assert_eq!(after_first[0].1, second);
    let latest = store.latest_events(1).await.unwrap();
    assert_eq!(latest.len(), 1);
    assert_eq!(latest[0].1, second);

    // A batch that fails writes none of its events.
    let taken = agent("eventful", &[]);
    let lost = event(&taken, "agent.registered", now());
    let refused = store
        .commit(WriteBatch {
            agents: vec![taken],
            events: vec![lost],
            ..Default::default()
        })
        .await;
    assert!(
        matches!(refused, Err(StoreError::Duplicate(_))),
        "{refused:?}"
    );
    assert_eq!(store.events_after(None, 100).await.unwrap().len(), 2);
}

async fn reliability_history_and_pruning(db: &TestDatabase) {
    let store = open(db).await;
    let a = agent("historic", &["rust"]);
    add_agents(&store, std::slice::from_ref(&a)).await;
    let start = now() - Duration::days(3);
    let snapshots: Vec<Reliability> = (0..5)
        .map(|i| Reliability {
            window: Window::All,
            reliability_score: 0.1 * f64::from(i),
            computed_at: start + Duration::days(i.into()) / 2,
            ..reliability(&a)
        })
        .collect();
    commit(
        &store,
        WriteBatch {
            reliability: snapshots.clone(),
            events: vec![
                event(&a, "agent.updated", start),
                event(&a, "agent.updated", now()),
            ],
            ..Default::default()
        },
    )
    .await;
    let day = store
        .reliability_history(a.id, Window::Day, start, 100)
        .await
        .unwrap();
    assert!(day.is_empty(), "only the asked window: {day:?}");
    let all = store
        .reliability_history(a.id, Window::All, start, 100)
        .await
        .unwrap();
    assert_eq!(all, snapshots, "oldest first");
    let newest_two = store
        .reliability_history(a.id, Window::All, start, 2)
        .await
        .unwrap();
    assert_eq!(newest_two, snapshots[3..].to_vec());

    let cut = start + Duration::days(1);
    let (events, pruned) = store.prune(cut, cut).await.unwrap();
    assert_eq!((events, pruned), (1, 2));
    let left = store
        .reliability_history(a.id, Window::All, start, 100)
        .await
        .unwrap();
    assert_eq!(left, snapshots[2..].to_vec());
    assert_eq!(store.events_after(None, 100).await.unwrap().len(), 1);
    let usage = store.pool_usage();
    assert!(usage.max >= 1 && usage.open <= usage.max, "{usage:?}");
}

// ---------------------------------------------------------------------------------------
// Instantiation on both backends
// ---------------------------------------------------------------------------------------

macro_rules! conformance {
    ($backend:ident: $($name:ident),* $(,)?) => {
        mod $backend {
            use super::db::TestDatabase;
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $name() {
                    let db = TestDatabase::$backend().await;
                    super::$name(&db).await;
                }
            )*
        }
    };
}

macro_rules! suite {
    ($($backend:ident),*) => {
        $(
            conformance!($backend:
                names_its_backend,
                agents_and_tasks_round_trip_exactly,
                tasks_by_id_come_back_in_the_order_asked,
                a_duplicate_name_writes_nothing_of_its_batch,
                a_stale_version_conflicts_and_writes_nothing,
                concurrent_updates_of_one_version_let_exactly_one_win,
                a_taken_chain_position_conflicts,
                idempotency_keys_are_unique_per_scope,
                agents_page_oldest_first,
                tasks_page_newest_first,
                actions_page_newest_first_within_a_time_range,
                agent_filters_take_capabilities_literally,
                capable_agents_have_every_capability_and_are_not_deregistered,
                task_filters_select_by_status_and_agent,
                open_tasks_are_counted_per_agent,
                dependents_are_found_by_dependency,
                task_counts_respect_since,
                verifications_by_task_and_by_agent_oldest_first,
                verdict_totals_match_the_verdicts_they_total,
                verdicts_from_before_the_totals_columns_are_backfilled,
                overdue_tasks_are_found_by_their_deadline,
                task_snapshots_come_back_oldest_first,
                downstream_connections_upsert_by_name,
                concurrent_commits_all_land,
                a_failing_commit_among_concurrent_ones_fails_alone,
                data_survives_closing_and_reopening,
                migrating_twice_is_harmless,
                an_unreadable_body_is_internal_and_names_the_row,
                evidence_for_an_unknown_task_is_refused,
                a_closed_store_is_unavailable,
                events_are_stored_with_their_batch_in_order,
                reliability_history_and_pruning,
            );
        )*
    };
}

suite!(sqlite, postgres);

// ---------------------------------------------------------------------------------------
// Backend-specific behaviour
// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn sqlite_in_memory_works_as_one_shared_database() {
    let store = ares::store::connect("sqlite::memory:").await.unwrap();
    let a = agent("in-memory", &["rust"]);
    add_agents(&store, std::slice::from_ref(&a)).await;
    // Reads and writes see the same database.
    assert_eq!(store.agent(a.id).await.unwrap(), Some(a));
    let other = ares::store::connect("sqlite::memory:").await.unwrap();
    assert!(
        other
            .list_agents(&AgentFilter::default(), page(None, 10))
            .await
            .unwrap()
            .items
            .is_empty(),
        "each in-memory store is its own database"
    );
}

#[tokio::test]
async fn sqlite_creates_the_missing_directory() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("nested").join("deeper").join("ares.db");
    let store = ares::store::connect(&format!("sqlite://{}", path.display()))
        .await
        .unwrap();
    add_agents(&store, &[agent("x", &[])]).await;
    store.close().await;
    assert!(path.exists());
}

#[tokio::test]
async fn postgres_outages_fail_fast_without_leaking_the_password() {
    let started = std::time::Instant::now();
    let err = ares::store::connect("postgres://ares:hunter2@127.0.0.1:1/ares")
        .await
        .err()
        .expect("nothing listens on port 1");
    let shown = format!("{err:#}");
    assert!(!shown.contains("hunter2"), "{shown}");
    assert!(shown.contains("ares:***@127.0.0.1:1"), "{shown}");
    assert!(
        started.elapsed() < std::time::Duration::from_secs(15),
        "took {:?}",
        started.elapsed()
    );
}
