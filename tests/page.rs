//! `page_contains` through Playwright's MCP server driving Debian's chromium: a page that
//! shows the text is met, one that does not is unmet, one that cannot load is unverifiable.

mod common;

use common::db::TestDatabase;
use common::ground_truth::*;
use serde_json::json;

const RELEASE_PAGE: &str = "<!doctype html><html><head><title>Release</title></head><body>\
<h1>Release notes</h1><p>The parser is <b>twice as fast</b> now.</p>\
<script>document.body.insertAdjacentHTML('beforeend', '<p id=late>Rendered by script</p>')</script>\
</body></html>";

#[tokio::test]
async fn a_page_that_shows_the_text_is_met_and_one_that_does_not_is_unmet() {
    let db = TestDatabase::sqlite().await;
    let ws = Workspace::new();
    let page = Page::serve(RELEASE_PAGE).await;
    let config = Servers::new().playwright(&ws).write(&ws);
    let mcp = ares(&db.url, Some(&config), 60).await;

    let shown = verdict(
        &mcp,
        json!([
            { "type": "page_contains", "url": page.url, "text": "The parser is twice as fast now." },
            { "type": "page_contains", "url": format!("{}release", page.url), "text": "Rendered by script" }
        ]),
        json!([{ "kind": "api_interaction", "request": format!("GET {}", page.url), "status": 200 }]),
    )
    .await;
    assert_eq!(shown["success"], true, "{shown:#}");
    assert_result(&shown, 0, "met", "playwright/browser_evaluate", false);
    assert_result(&shown, 1, "met", "playwright/browser_evaluate", false);

    let missing = verdict(
        &mcp,
        json!([{ "type": "page_contains", "url": page.url, "text": "Dark mode is available" }]),
        json!([{ "kind": "log", "content": "shipped dark mode" }]),
    )
    .await;
    assert_eq!(missing["task_status"], "rejected");
    assert_result(&missing, 0, "unmet", "playwright/browser_evaluate", false);
    let why = detail(&missing, 0);
    assert!(
        why.contains("does not show") && why.contains("Release notes"),
        "{why}"
    );
    mcp.close().await;
}

#[tokio::test]
async fn a_page_that_cannot_load_is_unverifiable_with_the_reason() {
    let db = TestDatabase::sqlite().await;
    let ws = Workspace::new();
    // Bind and drop: a loopback port with nothing listening.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let config = Servers::new().playwright(&ws).write(&ws);
    let mcp = ares(&db.url, Some(&config), 60).await;

    let verdict = verdict(
        &mcp,
        json!([{ "type": "page_contains", "url": format!("http://127.0.0.1:{port}/"), "text": "anything" }]),
        json!([{ "kind": "log", "content": "deployed" }]),
    )
    .await;

    assert_result(
        &verdict,
        0,
        "unverifiable",
        "playwright/browser_navigate",
        false,
    );
    assert!(
        detail(&verdict, 0).contains("ERR_CONNECTION_REFUSED"),
        "{verdict:#}"
    );
    assert_eq!(verdict["task_status"], "submitted");
    mcp.close().await;
}

#[tokio::test]
async fn playwright_over_streamable_http_checks_pages_too() {
    let db = TestDatabase::sqlite().await;
    let ws = Workspace::new();
    let page = Page::serve(RELEASE_PAGE).await;
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut server = tokio::process::Command::new(node_bin("playwright-mcp"))
        .args([
            "--headless",
            "--browser",
            "chromium",
            "--executable-path",
            chromium(),
        ])
        .args([
            "--isolated",
            "--no-sandbox",
            "--host",
            "127.0.0.1",
            "--port",
            &port.to_string(),
        ])
        .current_dir(&ws.scratch)
        .stdout(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .is_err()
    {
        assert!(
            std::time::Instant::now() < deadline,
            "playwright never listened on {port}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    // Playwright only answers to the host name it printed.
    let config = Servers::new()
        .with(
            "playwright",
            json!({ "url": format!("http://localhost:{port}/mcp"), "headers": { "X-Requested-By": "ares-tests" } }),
        )
        .write(&ws);
    let mcp = ares(&db.url, Some(&config), 60).await;

    let verdict = verdict(
        &mcp,
        json!([{ "type": "page_contains", "url": page.url, "text": "twice as fast" }]),
        json!([{ "kind": "log", "content": "released" }]),
    )
    .await;

    assert_result(&verdict, 0, "met", "playwright/browser_evaluate", false);
    wait_for_health(&mcp, "playwright", "ok").await;
    mcp.close().await;
    server.start_kill().unwrap();
    let _ = server.wait().await;
}
