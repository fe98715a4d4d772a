//! Bad input at volume: thousands of generated argument objects — wrong types, huge and odd
//! strings, deep nesting, unknown fields — thrown at every tool. Each must come back as an
//! answer (a result or a clear error), never a panic, and a refused call must change nothing.

mod common;

use ares::Ares;
use ares::mcp::tools;
use common::db::TestDatabase;
use proptest::prelude::*;
use proptest::strategy::ValueTree;
use proptest::test_runner::{Config, TestRunner};
use serde_json::{Map, Value, json};
use std::sync::Arc;

fn leaf() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|n| json!(n)),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(|f| json!(f)),
        ".{0,40}".prop_map(Value::String),
        Just(json!("x".repeat(70_000))),
        Just(json!("\u{0}nul")),
        Just(json!("00000000-0000-0000-0000-000000000000")),
        Just(json!("2026-01-31T12:00:00Z")),
    ]
}

fn value() -> impl Strategy<Value = Value> {
    leaf().prop_recursive(6, 64, 8, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::btree_map("[a-z_]{1,12}", inner, 0..6)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// Argument objects built from the real field names, so decoding gets past the first field.
fn args() -> impl Strategy<Value = Map<String, Value>> {
    let fields = prop::sample::select(vec![
        "name",
        "capabilities",
        "public_key",
        "configuration",
        "max_concurrent_tasks",
        "agent_id",
        "task_id",
        "description",
        "criteria",
        "evidence",
        "required_capabilities",
        "priority",
        "deadline",
        "depends_on",
        "idempotency_key",
        "status",
        "limit",
        "cursor",
        "window",
        "action",
        "reason",
        "report",
        "format",
        "since",
        "until",
        "nonce",
        "timestamp",
        "signature",
        "role",
        "key_id",
        "after",
    ]);
    prop::collection::btree_map(fields.prop_map(String::from), value(), 0..6)
        .prop_map(|m| m.into_iter().collect())
}

/// How many rows of each kind exist.
async fn census(ares: &Ares) -> (usize, usize, usize) {
    use ares::store::{AgentFilter, Page, TaskFilter};
    let page = Page {
        after: None,
        limit: 10_000,
    };
    (
        ares.store
            .list_agents(&AgentFilter::default(), page)
            .await
            .unwrap()
            .items
            .len(),
        ares.store
            .list_tasks(&TaskFilter::default(), page)
            .await
            .unwrap()
            .items
            .len(),
        ares.store.list_api_keys().await.unwrap().len(),
    )
}

fn deep(depth: usize) -> Value {
    (0..depth).fold(json!(1), |v, _| json!([v]))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thousands_of_malformed_calls_get_answers_and_change_nothing_they_refuse() {
    let db = TestDatabase::sqlite().await;
    let store = ares::store::connect(&db.url).await.unwrap();
    let ares = Arc::new(Ares::new(store));
    let names: Vec<String> = tools::list().iter().map(|t| t.name.to_string()).collect();
    let mut runner = TestRunner::new(Config {
        cases: 2000,
        ..Config::default()
    });
    let strategy = (prop::sample::select(names.clone()), args());
    let mut calls: Vec<(String, Map<String, Value>)> = Vec::new();
    for _ in 0..2000 {
        calls.push(strategy.new_tree(&mut runner).unwrap().current());
    }
    // Plus the classics: deep nesting, unknown tools, non-object shapes inside.
    for name in &names {
        let mut deep_args = Map::new();
        deep_args.insert("evidence".into(), deep(120));
        calls.push((name.clone(), deep_args));
    }
    calls.push(("no_such_tool".into(), Map::new()));
    calls.push(("\u{0}".into(), Map::new()));

    let mut answered = 0;
    let mut refused = 0;
    for (name, args) in calls {
        let before = census(&ares).await;
        let decodes = tools::decode_only(&name, &Value::Object(args.clone())).is_ok();
        let server = ares.clone();
        let outcome = tokio::spawn(async move { tools::call(&server, &name, Some(args)).await })
            .await
            .expect("a malformed call never panics the server");
        let was_refused = match &outcome {
            Ok(result) => result.is_error == Some(true),
            Err(_) => true,
        };
        if was_refused {
            refused += 1;
            assert_eq!(
                census(&ares).await,
                before,
                "a refused call changed nothing"
            );
        }
        match outcome {
            Ok(result) => {
                assert!(
                    decodes || result.is_error == Some(true),
                    "a call that does not decode cannot succeed"
                );
            }
            Err(e) => {
                assert!(e.code.0 == -32602 || e.code.0 == -32603, "{e:?}");
                assert!(!e.message.is_empty());
                if e.code.0 == -32602 && e.data.is_some() {
                    assert!(e.message.starts_with("invalid `"), "{}", e.message);
                }
            }
        }
        answered += 1;
    }
    assert!(answered > 2000);
    assert!(
        refused > 1500,
        "the generator mostly produces bad input ({refused})"
    );
    // The server still serves a real lifecycle afterwards.
    let agent = ares
        .register_agent(serde_json::from_value(json!({ "name": "after-the-storm" })).unwrap())
        .await
        .unwrap();
    assert_eq!(agent.name, "after-the-storm");
}

proptest! {
    #![proptest_config(Config { cases: 3000, ..Config::default() })]

    /// Decoding alone, at speed: never panics, and every refusal names a field.
    #[test]
    fn decoding_never_panics_and_names_the_field(
        name in prop::sample::select(tools::list().iter().map(|t| t.name.to_string()).collect::<Vec<_>>()),
        args in args(),
    ) {
        if let Err(e) = tools::decode_only(&name, &Value::Object(args)) {
            prop_assert_eq!(e.code.0, -32602);
            let field = e.data.as_ref().and_then(|d| d.get("field")).and_then(Value::as_str).unwrap_or_default().to_string();
            prop_assert!(!field.is_empty(), "{}", e.message);
            prop_assert!(e.message.contains(&field), "{}", e.message);
        }
    }
}
