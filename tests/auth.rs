//! Identity on the network, over real HTTP: every refusal holds and every allowed path
//! still works.

mod common;

use common::{ADMIN_TOKEN, HttpServer, Mcp, db::TestDatabase, scenarios::register, test_options};
use serde_json::{Value, json};

fn initialize() -> Value {
    json!({
        "jsonrpc": "2.0", "id": 1, "method": "initialize",
        "params": { "protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": { "name": "t", "version": "1" } }
    })
}

async fn post(base: &str, auth: Option<&str>) -> reqwest::Response {
    let mut req = reqwest::Client::new()
        .post(format!("{base}/mcp"))
        .header("accept", "application/json, text/event-stream")
        .json(&initialize());
    if let Some(a) = auth {
        req = req.header("authorization", a);
    }
    req.send().await.unwrap()
}

async fn key(admin: &Mcp, role: &str, agent: Option<&Value>) -> String {
    let mut args = json!({ "role": role });
    if let Some(a) = agent {
        args["agent_id"] = a["id"].clone();
    }
    let created = admin.call("create_api_key", args).await;
    assert!(
        created["api_key"].get("secret_hash").is_none(),
        "the hash never leaves ARES"
    );
    created["key"].as_str().unwrap().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_without_a_valid_key_get_401_with_a_challenge() {
    let db = TestDatabase::sqlite().await;
    let server = HttpServer::start(&db.url).await;
    let admin = Mcp::http(&server.base).await;
    let revoked = key(&admin, "observer", None).await;
    let id = revoked.split('_').nth(1).unwrap().to_string();
    admin.call("revoke_api_key", json!({ "key_id": id })).await;

    let wrong_secret = {
        let k = key(&admin, "observer", None).await;
        format!("{}x", &k[..k.len() - 1])
    };
    for auth in [
        None,
        Some("Basic YWRtaW46YWRtaW4=".to_string()),
        Some("Bearer nonsense".to_string()),
        Some("Bearer ares_0123456789ab_aaaaaaaaaaaaaaaaaaaaaaaaaaaaaa".to_string()),
        Some(format!("Bearer {wrong_secret}")),
        Some(format!("Bearer {revoked}")),
    ] {
        let res = post(&server.base, auth.as_deref()).await;
        assert_eq!(res.status(), 401, "{auth:?}");
        let challenge = res.headers()["www-authenticate"].to_str().unwrap();
        assert!(
            challenge.starts_with("Bearer realm=\"ares\""),
            "{challenge}"
        );
    }
    assert_eq!(
        post(&server.base, Some(&format!("Bearer {ADMIN_TOKEN}")))
            .await
            .status(),
        200
    );
    // /health stays open for load balancers.
    let health = reqwest::get(format!("{}/health", server.base))
        .await
        .unwrap();
    assert_eq!(health.status(), 200);
    admin.close().await;
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_observer_reads_but_every_write_names_the_missing_permission() {
    let db = TestDatabase::postgres().await;
    let server = HttpServer::start(&db.url).await;
    let admin = Mcp::http(&server.base).await;
    let agent = register(&admin, &[]).await;
    let observer = Mcp::http_as(&server.base, &key(&admin, "observer", None).await).await;

    assert_eq!(
        observer
            .call("get_agent", json!({ "agent_id": agent["id"] }))
            .await["id"],
        agent["id"]
    );
    assert!(
        !observer.call("list_agents", json!({})).await["agents"]
            .as_array()
            .unwrap()
            .is_empty()
    );
    for (tool, args, permission) in [
        (
            "register_agent",
            json!({ "name": "sneaky" }),
            "manage_agents",
        ),
        (
            "create_task",
            json!({ "description": "d", "criteria": [{ "type": "signed" }] }),
            "manage_tasks",
        ),
        (
            "enforce",
            json!({ "agent_id": agent["id"], "action": "suspend", "reason": "x" }),
            "enforce",
        ),
        ("create_api_key", json!({ "role": "admin" }), "manage_keys"),
        (
            "submit_evidence",
            json!({ "task_id": agent["id"], "agent_id": agent["id"], "evidence": [] }),
            "act_as_agent",
        ),
        ("get_audit_log", json!({}), "audit"),
    ] {
        let refusal = observer.refused(tool, args).await;
        assert!(
            refusal.contains(&format!(
                "`observer` role lacks the `{permission}` permission"
            )),
            "{tool}: {refusal}"
        );
    }
    let after = admin.call("list_agents", json!({})).await;
    assert_eq!(
        after["agents"].as_array().unwrap().len(),
        1,
        "nothing was written"
    );
    observer.close().await;
    admin.close().await;
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_key_acts_only_as_its_own_agent() {
    let db = TestDatabase::sqlite().await;
    let server = HttpServer::start(&db.url).await;
    let admin = Mcp::http(&server.base).await;
    let me = register(&admin, &[]).await;
    let other = register(&admin, &[]).await;
    let criteria = json!([{ "type": "tests_pass" }]);
    let mine = admin
        .call(
            "create_task",
            json!({ "description": "mine", "criteria": criteria, "agent_id": me["id"] }),
        )
        .await;
    let theirs = admin
        .call(
            "create_task",
            json!({ "description": "theirs", "criteria": criteria, "agent_id": other["id"] }),
        )
        .await;
    let agent = Mcp::http_as(&server.base, &key(&admin, "agent", Some(&me)).await).await;

    // Its own work goes through, and verification of its own task too.
    let evidence = json!([{ "kind": "test_results", "passed": 4, "failed": 0 }]);
    agent
        .call(
            "submit_evidence",
            json!({ "task_id": mine["id"], "agent_id": me["id"], "evidence": evidence }),
        )
        .await;
    assert_eq!(
        agent
            .call("verify_task", json!({ "task_id": mine["id"] }))
            .await["success"],
        true
    );
    assert_eq!(
        agent
            .call("get_task", json!({ "task_id": mine["id"] }))
            .await["status"],
        "verified"
    );
    let listed = agent.call("list_tasks", json!({})).await;
    let ids: Vec<&Value> = listed["tasks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| &t["id"])
        .collect();
    assert_eq!(ids, [&mine["id"]], "lists show only its own tasks");
    agent
        .call("get_reliability", json!({ "agent_id": me["id"] }))
        .await;

    // Anything about another agent is refused: an id is a name, not a capability.
    let refusals = [
        (
            "submit_evidence",
            json!({ "task_id": theirs["id"], "agent_id": other["id"], "evidence": evidence }),
        ),
        (
            "submit_evidence",
            json!({ "task_id": theirs["id"], "agent_id": me["id"], "evidence": evidence }),
        ),
        ("get_task", json!({ "task_id": theirs["id"] })),
        ("get_agent", json!({ "agent_id": other["id"] })),
        ("get_agent", json!({ "name": other["name"] })),
        ("get_reliability", json!({ "agent_id": other["id"] })),
        ("list_tasks", json!({ "agent_id": other["id"] })),
        ("list_agents", json!({})),
    ];
    for (tool, args) in refusals {
        let refusal = agent.refused(tool, args.clone()).await;
        assert!(
            refusal.starts_with("forbidden"),
            "{tool}({args}): {refusal}"
        );
    }
    let manage = agent
        .refused(
            "create_task",
            json!({ "description": "d", "criteria": criteria }),
        )
        .await;
    assert!(
        manage.contains("`agent` role lacks the `manage_tasks` permission"),
        "{manage}"
    );
    let untouched = admin
        .call("get_task", json!({ "task_id": theirs["id"] }))
        .await;
    assert_eq!(untouched["evidence"].as_array().unwrap().len(), 0);

    // The audit log records the key, not "local".
    let log = admin.call("get_audit_log", json!({})).await;
    let submitted = log["entries"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["tool"] == "submit_evidence")
        .unwrap()
        .clone();
    assert_eq!(submitted["actor"]["role"], "agent");
    assert_eq!(submitted["actor"]["agent_id"], me["id"]);
    agent.close().await;
    admin.close().await;
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_over_its_rate_gets_429_with_retry_after() {
    let db = TestDatabase::sqlite().await;
    let options = ares::server::HttpOptions {
        rate_limit: 2,
        ..test_options()
    };
    let server = HttpServer::start_with(&db.url, options).await;
    let mut statuses = Vec::new();
    let mut retry_after = None;
    for _ in 0..10 {
        let res = post(&server.base, Some(&format!("Bearer {ADMIN_TOKEN}"))).await;
        if res.status() == 429 {
            retry_after = res
                .headers()
                .get("retry-after")
                .map(|v| v.to_str().unwrap().to_string());
        }
        statuses.push(res.status().as_u16());
    }
    assert!(
        statuses.contains(&200) && statuses.contains(&429),
        "{statuses:?}"
    );
    let secs: u64 = retry_after.expect("Retry-After on 429").parse().unwrap();
    assert!((1..=2).contains(&secs), "{secs}");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_mints_a_key_as_its_last_word_and_the_binary_honours_it() {
    let db = TestDatabase::sqlite().await;
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_ares"))
        .args(["key", "create", "--role", "admin", "--name", "ops"])
        .env("DATABASE_URL", &db.url)
        .output()
        .await
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8(out.stdout).unwrap();
    let minted = stdout.split_whitespace().last().unwrap().to_string();
    assert!(minted.starts_with("ares_"), "{stdout}");

    let (child, base) = common::spawn_http(&db.url, &[("ARES_LOG", "debug")]).await;
    assert_eq!(post(&base, None).await.status(), 401);
    let wrong = format!("Bearer {}x", &minted[..minted.len() - 1]);
    assert_eq!(post(&base, Some(&wrong)).await.status(), 401);
    let ops = Mcp::http_as(&base, &minted).await;
    assert_eq!(ops.call("health", json!({})).await["status"], "healthy");
    let keys = ops.call("list_api_keys", json!({})).await;
    assert_eq!(keys["keys"][0]["name"], "ops");
    ops.close().await;

    let list = tokio::process::Command::new(env!("CARGO_BIN_EXE_ares"))
        .args(["key", "list"])
        .env("DATABASE_URL", &db.url)
        .output()
        .await
        .unwrap();
    let listing = String::from_utf8(list.stdout).unwrap();
    assert!(
        listing.contains("admin") && listing.contains("ops"),
        "{listing}"
    );
    // The secret is everything after `ares_<id>_`; it is base64url, so it may hold `_` too.
    let secret = minted.splitn(3, '_').nth(2).unwrap();
    assert!(secret.len() >= 20, "{minted}");
    assert!(!listing.contains(secret), "secrets are never listed");

    let (code, logs) = common::terminate(child).await;
    assert_eq!(code, Some(0));
    assert!(!logs.contains(secret), "secrets never reach the logs");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn running_without_auth_needs_the_flag_and_says_so_loudly() {
    let db = TestDatabase::sqlite().await;
    let (child, base) = common::spawn_http(&db.url, &[("ARES_NO_AUTH", "1")]).await;
    assert_eq!(post(&base, None).await.status(), 200);
    let (code, logs) = common::terminate(child).await;
    assert_eq!(code, Some(0));
    assert!(logs.contains("AUTHENTICATION IS DISABLED"), "{logs}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revoked_key_is_refused_at_once() {
    let db = TestDatabase::sqlite().await;
    let server = HttpServer::start(&db.url).await;
    let admin = Mcp::http(&server.base).await;
    let observer = key(&admin, "observer", None).await;
    let bearer = format!("Bearer {observer}");
    assert_eq!(
        post(&server.base, Some(&bearer)).await.status(),
        200,
        "the key works and is cached"
    );
    let id = observer.split('_').nth(1).unwrap();
    admin.call("revoke_api_key", json!({ "key_id": id })).await;
    assert_eq!(
        post(&server.base, Some(&bearer)).await.status(),
        401,
        "refused without waiting for the cache"
    );
    let again = admin
        .refused("revoke_api_key", json!({ "key_id": id }))
        .await;
    assert!(again.contains("already revoked"), "{again}");
    admin.close().await;
    server.stop().await;
}
