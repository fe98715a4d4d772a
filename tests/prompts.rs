//! Prompts and argument completion over real transports: what each prompt tells an agent,
//! completion of agent and task ids under each key's rights, and bad input answered with an
//! error that names the argument.

mod common;

use base64::Engine;
use common::db::TestDatabase;
use common::scenarios::{assigned_task, register};
use common::{HttpServer, Mcp};
use rmcp::model::{ErrorCode, GetPromptRequestParams, GetPromptResult};
use rmcp::service::ServiceError;
use serde_json::{Value, json};

async fn prompt(mcp: &Mcp, name: &str, args: Value) -> Result<GetPromptResult, ServiceError> {
    let Value::Object(args) = args else {
        panic!("prompt arguments are an object")
    };
    mcp.client
        .get_prompt(GetPromptRequestParams::new(name).with_arguments(args))
        .await
}

/// The prompt's one message, as text.
async fn prompt_text(mcp: &Mcp, name: &str, args: Value) -> String {
    let result = prompt(mcp, name, args.clone())
        .await
        .unwrap_or_else(|e| panic!("{name}({args}) failed: {e}"));
    assert_eq!(result.messages.len(), 1, "{name} is one message");
    let text = result.messages[0]
        .content
        .as_text()
        .expect("a text message");
    text.text.clone()
}

/// A prompt call that must fail with invalid params: its message and `data.field`.
async fn prompt_refused(mcp: &Mcp, name: &str, args: Value) -> (ErrorCode, String, Value) {
    match prompt(mcp, name, args.clone()).await {
        Err(ServiceError::McpError(e)) => (
            e.code,
            e.message.to_string(),
            e.data
                .and_then(|d| d.get("field").cloned())
                .unwrap_or_default(),
        ),
        other => panic!("{name}({args}) should fail, got {other:?}"),
    }
}

async fn complete(mcp: &Mcp, prompt: &str, argument: &str, typed: &str) -> Vec<String> {
    mcp.client
        .complete_prompt_simple(prompt, argument, typed)
        .await
        .unwrap_or_else(|e| panic!("completing {prompt}.{argument}={typed:?} failed: {e}"))
}

fn public_key() -> String {
    let key = ed25519_dalek::SigningKey::from_bytes(&[7u8; 32]);
    base64::engine::general_purpose::STANDARD.encode(key.verifying_key().as_bytes())
}

/// Every prompt, every completion and every refusal, as one client sees them.
async fn prompts_and_completions(mcp: &Mcp) {
    // The prompts are listed with their arguments.
    let listed = mcp.client.list_all_prompts().await.expect("prompts/list");
    let names: Vec<&str> = listed.iter().map(|p| p.name.as_str()).collect();
    for name in [
        "submit_complete_evidence",
        "explain_reliability",
        "plan_task_criteria",
    ] {
        assert!(names.contains(&name), "{name} is listed: {names:?}");
    }
    let submit = listed
        .iter()
        .find(|p| p.name == "submit_complete_evidence")
        .unwrap();
    let args = submit.arguments.as_ref().unwrap();
    assert_eq!(args[0].name, "task_id");
    assert_eq!(args[0].required, Some(true));

    // An agent that signs, and a task whose criteria need different evidence.
    let name = format!("signer-{}", uuid::Uuid::new_v4().simple());
    let agent = mcp
        .call(
            "register_agent",
            json!({ "name": name, "capabilities": ["rust"], "public_key": public_key() }),
        )
        .await;
    let task = mcp
        .call(
            "create_task",
            json!({
                "description": "fix the tokenizer",
                "required_capabilities": ["rust"],
                "criteria": [
                    { "type": "tests_pass", "min_passed": 5 },
                    { "type": "file_matches_evidence", "path": "src/token.rs" },
                    { "type": "metric_at_most", "name": "p95_ms", "max": 50.0 }
                ],
                "agent_id": agent["id"]
            }),
        )
        .await;
    let task_id = task["id"].as_str().unwrap();

    let text = prompt_text(
        mcp,
        "submit_complete_evidence",
        json!({ "task_id": task_id }),
    )
    .await;
    assert!(
        text.contains(task_id) && text.contains("fix the tokenizer"),
        "{text}"
    );
    assert!(
        text.contains("`test_results` item") && text.contains("at least 5 passed"),
        "tests_pass asks for test results: {text}"
    );
    assert!(
        text.contains("`sha256`") && text.contains("src/token.rs"),
        "file_matches_evidence asks for the file's digest: {text}"
    );
    assert!(
        text.contains("`p95_ms` is at most 50"),
        "the metric is named: {text}"
    );
    assert!(
        text.contains("must be signed") && text.contains("RFC 8785"),
        "an agent with a key is told to sign, and how: {text}"
    );
    assert!(
        text.contains("\"kind\": \"test_results\"") && text.contains("\"idempotency_key\""),
        "the call to make is spelled out: {text}"
    );

    // A task with no agent yet: the prompt says to assign it first.
    let unassigned = mcp
        .call(
            "create_task",
            json!({ "description": "write docs", "required_capabilities": ["docs"],
                    "criteria": [{ "type": "evidence_present", "kind": "documentation" }] }),
        )
        .await;
    let text = prompt_text(
        mcp,
        "submit_complete_evidence",
        json!({ "task_id": unassigned["id"] }),
    )
    .await;
    assert!(text.contains("assign_task"), "{text}");

    let text = prompt_text(
        mcp,
        "explain_reliability",
        json!({ "agent_id": agent["id"], "window": "7d" }),
    )
    .await;
    assert!(text.contains(&name) && text.contains("window 7d"), "{text}");
    assert!(
        text.contains("reliability_score") && text.contains("discrepancy_rate"),
        "{text}"
    );
    assert!(
        text.contains("a warning after"),
        "the ladder is explained: {text}"
    );

    let text = prompt_text(
        mcp,
        "plan_task_criteria",
        json!({ "description": "ship the login page" }),
    )
    .await;
    assert!(text.contains("ship the login page"), "{text}");
    assert!(
        text.contains("NOT configured here"),
        "with no downstream servers, ground-truth criteria are said to be unverifiable: {text}"
    );

    // Completion: agents by name or id prefix, tasks by id or description, fixed values.
    let by_name = complete(mcp, "explain_reliability", "agent_id", &name[..10]).await;
    assert_eq!(by_name, vec![agent["id"].as_str().unwrap().to_string()]);
    let by_id = complete(
        mcp,
        "explain_reliability",
        "agent_id",
        &agent["id"].as_str().unwrap()[..8],
    )
    .await;
    assert!(
        by_id.contains(&agent["id"].as_str().unwrap().to_string()),
        "{by_id:?}"
    );
    let tasks = complete(mcp, "submit_complete_evidence", "task_id", "fix the tok").await;
    assert_eq!(tasks, vec![task_id.to_string()]);
    assert_eq!(
        complete(mcp, "explain_reliability", "window", "2").await,
        vec!["24h"]
    );
    assert!(
        complete(mcp, "explain_reliability", "agent_id", "no-such-agent")
            .await
            .is_empty()
    );
    let via_template = mcp
        .client
        .complete_resource_simple("ares://tasks/{id}", "id", &task_id[..13])
        .await
        .expect("complete a resource template's id");
    assert_eq!(via_template, vec![task_id.to_string()]);

    // Bad input: each error names what is wrong.
    let (code, message, field) = prompt_refused(mcp, "no_such_prompt", json!({})).await;
    assert_eq!(code, ErrorCode::INVALID_PARAMS);
    assert!(
        message.contains("unknown prompt `no_such_prompt`")
            && message.contains("submit_complete_evidence"),
        "{message}"
    );
    assert_eq!(field, "name");
    let (code, message, field) = prompt_refused(mcp, "submit_complete_evidence", json!({})).await;
    assert_eq!(code, ErrorCode::INVALID_PARAMS);
    assert!(
        message.contains("`task_id`") && message.contains("missing"),
        "{message}"
    );
    assert_eq!(field, "task_id");
    let (_, message, field) =
        prompt_refused(mcp, "explain_reliability", json!({ "agent_id": "bob" })).await;
    assert!(
        message.contains("`agent_id`") && message.contains("UUID"),
        "{message}"
    );
    assert_eq!(field, "agent_id");
    let missing = uuid::Uuid::new_v4();
    let (_, message, field) = prompt_refused(
        mcp,
        "submit_complete_evidence",
        json!({ "task_id": missing }),
    )
    .await;
    assert!(
        message.contains(&format!("task not found: {missing}")),
        "{message}"
    );
    assert_eq!(field, "task_id");
    let (_, message, field) = prompt_refused(
        mcp,
        "explain_reliability",
        json!({ "agent_id": agent["id"], "window": "fortnight" }),
    )
    .await;
    assert!(
        message.contains("`window`") && message.contains("1h, 24h, 7d, all"),
        "{message}"
    );
    assert_eq!(field, "window");
    match mcp
        .client
        .complete_prompt_simple("no_such_prompt", "task_id", "")
        .await
    {
        Err(ServiceError::McpError(e)) => {
            assert!(e.message.contains("`ref.name`"), "{}", e.message)
        }
        other => panic!("completing an unknown prompt should fail, got {other:?}"),
    }
    match mcp
        .client
        .complete_prompt_simple("explain_reliability", "task_id", "")
        .await
    {
        Err(ServiceError::McpError(e)) => assert!(
            e.message.contains("`argument.name`") && e.message.contains("agent_id, window"),
            "{}",
            e.message
        ),
        other => panic!("completing an unknown argument should fail, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prompts_and_completions_over_stdio() {
    let db = TestDatabase::sqlite().await;
    let mcp = Mcp::stdio(&db.url).await;
    prompts_and_completions(&mcp).await;
    mcp.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prompts_and_completions_over_http() {
    let db = TestDatabase::sqlite().await;
    let server = HttpServer::start(&db.url).await;
    let mcp = Mcp::http(&server.base).await;
    prompts_and_completions(&mcp).await;
    mcp.close().await;
    // Per request (2026-07-28), with no session: the same prompt answers.
    let per_request = Mcp::http_per_request(&server.base).await;
    let text = prompt_text(
        &per_request,
        "plan_task_criteria",
        json!({ "description": "x" }),
    )
    .await;
    assert!(text.contains("criteria"), "{text}");
    per_request.close().await;
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_key_completes_and_reads_only_its_own_agent_and_tasks() {
    let db = TestDatabase::sqlite().await;
    let server = HttpServer::start(&db.url).await;
    let admin = Mcp::http(&server.base).await;
    let mine = register(&admin, &["rust"]).await;
    let theirs = register(&admin, &["rust"]).await;
    let my_task = assigned_task(&admin, &mine["id"], &["rust"]).await;
    let their_task = assigned_task(&admin, &theirs["id"], &["rust"]).await;
    let key = admin
        .call(
            "create_api_key",
            json!({ "role": "agent", "agent_id": mine["id"] }),
        )
        .await["key"]
        .as_str()
        .unwrap()
        .to_string();
    let agent = Mcp::http_as(&server.base, &key).await;

    assert_eq!(
        complete(&agent, "explain_reliability", "agent_id", "").await,
        vec![mine["id"].as_str().unwrap().to_string()],
        "an agent key is offered only its own agent"
    );
    assert_eq!(
        complete(&agent, "submit_complete_evidence", "task_id", "").await,
        vec![my_task["id"].as_str().unwrap().to_string()],
        "and only its own tasks"
    );
    let everyone = complete(&admin, "explain_reliability", "agent_id", "").await;
    assert!(
        everyone.len() >= 2,
        "an admin is offered every agent: {everyone:?}"
    );

    let text = prompt_text(
        &agent,
        "submit_complete_evidence",
        json!({ "task_id": my_task["id"] }),
    )
    .await;
    assert!(text.contains("not required for this agent"), "{text}");
    let (_, message, _) = prompt_refused(
        &agent,
        "submit_complete_evidence",
        json!({ "task_id": their_task["id"] }),
    )
    .await;
    assert!(
        message.contains("forbidden") && message.contains("not assigned to it"),
        "{message}"
    );
    let (_, message, _) = prompt_refused(
        &agent,
        "explain_reliability",
        json!({ "agent_id": theirs["id"] }),
    )
    .await;
    assert!(message.contains("forbidden"), "{message}");

    agent.close().await;
    admin.close().await;
    server.stop().await;
}
