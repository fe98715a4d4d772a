//! Each ground-truth criterion checked through one server: which tool to call, with what,
//! and what its answer means. A verdict (`met` / `unmet`) comes only from a real answer;
//! anything else is `Unavailable`, so the manager can try a fallback server or report the
//! criterion `unverifiable`.

use super::connection::{Connection, Session, Unavailable, args, text_of};
use crate::evidence::EvidenceItem;
use crate::verification::{Criterion, CriterionResult, CriterionStatus};
use base64::Engine;
use rmcp::model::{CallToolResult, ContentBlock, ResourceContents};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use std::path::Path;
use std::sync::Arc;

/// Tools that say whether a path exists, best first.
const STAT_TOOLS: [&str; 3] = ["get_file_info", "read_text_file", "read_file"];
/// Tools that return a file's text.
const TEXT_TOOLS: [&str; 2] = ["read_text_file", "read_file"];
/// Tools that return a file's exact bytes (base64), then the text fallbacks.
const BYTES_TOOLS: [&str; 3] = ["read_media_file", "read_text_file", "read_file"];
const RUN_TOOLS: [&str; 1] = ["run_command"];
const LINT_TOOLS: [&str; 2] = ["lint-files", "lint_files"];
const READ_PAGE_TOOLS: [&str; 2] = ["browser_evaluate", "browser_snapshot"];

/// Output kept in a result's detail.
const DETAIL_TAIL: usize = 600;

/// Checks `criterion` through `conn`: a result, or why this server could not decide.
pub async fn check(
    conn: &Connection,
    criterion: &Criterion,
    items: &[EvidenceItem],
) -> Result<CriterionResult, Unavailable> {
    let session = conn.session().await?;
    match criterion {
        Criterion::FileExists { path } => file_exists(conn, &session, criterion, path, items).await,
        Criterion::FileContains {
            path,
            pattern,
            regex,
        } => file_contains(conn, &session, criterion, path, pattern, *regex, items).await,
        Criterion::FileMatchesEvidence { path } => {
            file_matches(conn, &session, criterion, path, items).await
        }
        Criterion::CommandSucceeds { command } => {
            command_succeeds(conn, &session, criterion, command, items).await
        }
        Criterion::LintClean { path } => lint_clean(conn, &session, criterion, path, items).await,
        Criterion::PageContains { url, text } => {
            page_contains(conn, &session, criterion, url, text).await
        }
        other => Err(Unavailable::new(format!(
            "`{}` is not a ground-truth criterion",
            other.type_name()
        ))),
    }
}

fn pick<'a>(
    conn: &Connection,
    session: &Session,
    tools: &[&'a str],
) -> Result<&'a str, Unavailable> {
    session.pick(tools).ok_or_else(|| {
        Unavailable::lacks_tool(format!(
            "`{}` offers none of the tools this check needs ({})",
            conn.name(),
            tools.join(", ")
        ))
    })
}

fn verdict(
    conn: &Connection,
    tool: &str,
    criterion: &Criterion,
    status: CriterionStatus,
    detail: String,
) -> CriterionResult {
    let mut r = CriterionResult::new(criterion, status, detail);
    r.checked_via = format!("{}/{tool}", conn.name());
    r
}

async fn file_exists(
    conn: &Connection,
    session: &Arc<Session>,
    criterion: &Criterion,
    path: &str,
    items: &[EvidenceItem],
) -> Result<CriterionResult, Unavailable> {
    let tool = pick(conn, session, &STAT_TOOLS)?;
    let answer = conn
        .call(session, tool, args(&[("path", json!(path))]))
        .await?;
    let text = text_of(&answer);
    if answer.is_error == Some(true) {
        return absent_or_unavailable(conn, tool, criterion, path, &text, items);
    }
    if tool == "get_file_info" && text.contains("isDirectory: true") {
        return Ok(verdict(
            conn,
            tool,
            criterion,
            CriterionStatus::Unmet,
            format!("{path} is a directory, not a file"),
        ));
    }
    let size = text
        .lines()
        .find_map(|l| l.strip_prefix("size: "))
        .map(|s| format!(" ({s} bytes)"))
        .unwrap_or_default();
    Ok(verdict(
        conn,
        tool,
        criterion,
        CriterionStatus::Met,
        format!("{path} exists{size}"),
    ))
}

async fn file_contains(
    conn: &Connection,
    session: &Arc<Session>,
    criterion: &Criterion,
    path: &str,
    pattern: &str,
    regex: bool,
    items: &[EvidenceItem],
) -> Result<CriterionResult, Unavailable> {
    let tool = pick(conn, session, &TEXT_TOOLS)?;
    let answer = conn
        .call(session, tool, args(&[("path", json!(path))]))
        .await?;
    if answer.is_error == Some(true) {
        return absent_or_unavailable(conn, tool, criterion, path, &text_of(&answer), items);
    }
    let content = file_text(&answer)
        .ok_or_else(|| Unavailable::new(format!("`{tool}` answered without the file's text")))?;
    let (status, detail) = match find(&content, pattern, regex) {
        Ok(Some(line)) => (
            CriterionStatus::Met,
            format!("{path} contains {} at line {line}", shown(pattern, regex)),
        ),
        Ok(None) => (
            CriterionStatus::Unmet,
            format!(
                "{path} ({} bytes) does not contain {}",
                content.len(),
                shown(pattern, regex)
            ),
        ),
        Err(e) => (
            CriterionStatus::Unverifiable,
            format!("the pattern is not a valid regular expression: {e}"),
        ),
    };
    Ok(verdict(conn, tool, criterion, status, detail))
}

async fn file_matches(
    conn: &Connection,
    session: &Arc<Session>,
    criterion: &Criterion,
    path: &str,
    items: &[EvidenceItem],
) -> Result<CriterionResult, Unavailable> {
    let Some(claimed) = claimed_digest(items, path) else {
        return Ok(CriterionResult::new(
            criterion,
            CriterionStatus::Unmet,
            format!(
                "the evidence claims no sha256 for {path}: submit a `file` item with its digest"
            ),
        ));
    };
    let tool = pick(conn, session, &BYTES_TOOLS)?;
    let answer = conn
        .call(session, tool, args(&[("path", json!(path))]))
        .await?;
    if answer.is_error == Some(true) {
        return absent_or_unavailable(conn, tool, criterion, path, &text_of(&answer), items);
    }
    let bytes = if tool == "read_media_file" {
        media_bytes(&answer)
    } else {
        file_text(&answer).map(String::into_bytes)
    }
    .ok_or_else(|| Unavailable::new(format!("`{tool}` answered without the file's content")))?;
    let actual = hex::encode(Sha256::digest(&bytes));
    let mut r = if actual.eq_ignore_ascii_case(&claimed) {
        verdict(
            conn,
            tool,
            criterion,
            CriterionStatus::Met,
            format!(
                "sha256 of {path} ({} bytes) is {actual}, as claimed",
                bytes.len()
            ),
        )
    } else {
        verdict(
            conn,
            tool,
            criterion,
            CriterionStatus::Unmet,
            format!("sha256 of {path} is {actual}, but the evidence claims {claimed}"),
        )
    };
    r.discrepancy = r.status == CriterionStatus::Unmet;
    Ok(r)
}

async fn command_succeeds(
    conn: &Connection,
    session: &Arc<Session>,
    criterion: &Criterion,
    command: &str,
    items: &[EvidenceItem],
) -> Result<CriterionResult, Unavailable> {
    let tool = pick(conn, session, &RUN_TOOLS)?;
    let answer = conn
        .call(session, tool, args(&[("command", json!(command))]))
        .await?;
    if answer.is_error == Some(true) {
        return Ok(verdict(
            conn,
            tool,
            criterion,
            CriterionStatus::Unverifiable,
            format!("the code checker refused to run it: {}", text_of(&answer)),
        ));
    }
    let run = answer
        .structured_content
        .clone()
        .ok_or_else(|| Unavailable::new(format!("`{tool}` answered without structured content")))?;
    let exit = run.get("exit_code").and_then(Value::as_i64);
    let ms = run.get("duration_ms").and_then(Value::as_u64).unwrap_or(0);
    let tests = match (
        run.pointer("/tests/passed").and_then(Value::as_i64),
        run.pointer("/tests/failed").and_then(Value::as_i64),
    ) {
        (Some(p), Some(f)) => format!("; tests: {p} passed, {f} failed"),
        _ => String::new(),
    };
    let tail = tail(run.get("output_tail").and_then(Value::as_str).unwrap_or(""));
    if run.get("timed_out").and_then(Value::as_bool) == Some(true) {
        return Ok(verdict(
            conn,
            tool,
            criterion,
            CriterionStatus::Unverifiable,
            format!(
                "`{command}` did not finish within the code checker's time limit ({ms} ms); output tail: {tail}"
            ),
        ));
    }
    let Some(code) = exit else {
        return Err(Unavailable::new(format!(
            "`{tool}` answered without an exit_code"
        )));
    };
    if code == 0 {
        return Ok(verdict(
            conn,
            tool,
            criterion,
            CriterionStatus::Met,
            format!("`{command}` exited 0 in {ms} ms{tests}"),
        ));
    }
    let mut r = verdict(
        conn,
        tool,
        criterion,
        CriterionStatus::Unmet,
        format!("`{command}` exited {code} in {ms} ms{tests}; output tail: {tail}"),
    );
    if let Some(claim) = claimed_success(items, command) {
        r.discrepancy = true;
        r.detail = format!("{}; the evidence claimed {claim}", r.detail);
    }
    Ok(r)
}

async fn lint_clean(
    conn: &Connection,
    session: &Arc<Session>,
    criterion: &Criterion,
    path: &str,
    items: &[EvidenceItem],
) -> Result<CriterionResult, Unavailable> {
    let tool = pick(conn, session, &LINT_TOOLS)?;
    // ESLint's server wants absolute paths; relative ones are taken from the server's root.
    let absolute = if Path::new(path).is_absolute() {
        path.to_string()
    } else {
        let root = conn.config.root.as_ref().ok_or_else(|| {
            Unavailable::new(format!(
                "`{tool}` needs an absolute path; give `{}` a `root` or `cwd` to resolve {path} against",
                conn.name()
            ))
        })?;
        root.join(path).display().to_string()
    };
    let answer = conn
        .call(session, tool, args(&[("filePaths", json!([absolute]))]))
        .await?;
    let text = text_of(&answer);
    if answer.is_error == Some(true) {
        if text.contains("No files matching") {
            return absent(conn, tool, criterion, path, &text, items);
        }
        return Err(Unavailable::new(format!(
            "`{tool}` failed: {}",
            tail(&text)
        )));
    }
    let reports = lint_reports(&answer);
    if reports.is_empty() {
        return Err(Unavailable::new(format!(
            "`{tool}` answered without lint results: {}",
            tail(&text)
        )));
    }
    let problems: Vec<String> = reports.iter().flat_map(problems).collect();
    if let Some(ignored) = problems.iter().find(|p| p.contains("File ignored")) {
        return Ok(verdict(
            conn,
            tool,
            criterion,
            CriterionStatus::Unverifiable,
            format!("the linter did not check {path}: {ignored}"),
        ));
    }
    let (status, detail) = if problems.is_empty() {
        (CriterionStatus::Met, format!("no lint problems in {path}"))
    } else {
        (
            CriterionStatus::Unmet,
            format!(
                "{} lint problem(s) in {path}: {}",
                problems.len(),
                problems
                    .iter()
                    .take(5)
                    .cloned()
                    .collect::<Vec<_>>()
                    .join("; ")
            ),
        )
    };
    Ok(verdict(conn, tool, criterion, status, detail))
}

async fn page_contains(
    conn: &Connection,
    session: &Arc<Session>,
    criterion: &Criterion,
    url: &str,
    needle: &str,
) -> Result<CriterionResult, Unavailable> {
    let read = pick(conn, session, &READ_PAGE_TOOLS)?;
    let navigate = pick(conn, session, &["browser_navigate"])?;
    // One browser tab: navigating and reading must not interleave with another check.
    let _tab = conn.exclusive.lock().await;
    let answer = conn
        .call(session, navigate, args(&[("url", json!(url))]))
        .await?;
    if answer.is_error == Some(true) {
        return Ok(verdict(
            conn,
            navigate,
            criterion,
            CriterionStatus::Unverifiable,
            format!("could not load {url}: {}", tail(&text_of(&answer))),
        ));
    }
    let arguments = if read == "browser_evaluate" {
        args(&[("function", json!("() => document.body.innerText"))])
    } else {
        args(&[])
    };
    let answer = conn.call(session, read, arguments).await?;
    let raw = text_of(&answer);
    if answer.is_error == Some(true) {
        return Err(Unavailable::new(format!("`{read}` failed: {}", tail(&raw))));
    }
    let page = if read == "browser_evaluate" {
        evaluated_text(&raw)
    } else {
        raw
    };
    let (status, detail) = if normalise(&page).contains(&normalise(needle)) {
        (CriterionStatus::Met, format!("{url} shows {needle:?}"))
    } else {
        (
            CriterionStatus::Unmet,
            format!(
                "{url} does not show {needle:?}; the page reads: {}",
                tail(&normalise(&page))
            ),
        )
    };
    Ok(verdict(conn, read, criterion, status, detail))
}

/// A tool error about a path: absence is a verdict (`unmet`), anything else (access denied,
/// a server fault) means this server cannot decide.
fn absent_or_unavailable(
    conn: &Connection,
    tool: &str,
    criterion: &Criterion,
    path: &str,
    error: &str,
    items: &[EvidenceItem],
) -> Result<CriterionResult, Unavailable> {
    if is_absent(error) {
        absent(conn, tool, criterion, path, error, items)
    } else {
        Err(Unavailable::new(format!(
            "`{tool}` failed for {path}: {}",
            tail(error)
        )))
    }
}

fn absent(
    conn: &Connection,
    tool: &str,
    criterion: &Criterion,
    path: &str,
    error: &str,
    items: &[EvidenceItem],
) -> Result<CriterionResult, Unavailable> {
    let listed = lists_file(items, path);
    let mut r = verdict(
        conn,
        tool,
        criterion,
        CriterionStatus::Unmet,
        format!(
            "{path} does not exist{} (the server said: {})",
            if listed {
                ", though the evidence lists it"
            } else {
                ""
            },
            tail(error)
        ),
    );
    r.discrepancy = listed;
    Ok(r)
}

/// Whether a tool error says the path is not there.
pub fn is_absent(error: &str) -> bool {
    [
        "ENOENT",
        "no such file",
        "Parent directory does not exist",
        "not found",
        "does not exist",
    ]
    .iter()
    .any(|m| error.contains(m))
}

/// Paths compared the way an agent writes them: `./src/a.rs` is `src/a.rs`, and an
/// absolute path matches the relative one it ends with.
pub fn same_path(a: &str, b: &str) -> bool {
    let norm = |p: &str| {
        p.split('/')
            .filter(|s| !s.is_empty() && *s != ".")
            .collect::<Vec<_>>()
            .join("/")
    };
    let (a, b) = (norm(a), norm(b));
    if a.is_empty() || b.is_empty() {
        return false;
    }
    a == b || a.ends_with(&format!("/{b}")) || b.ends_with(&format!("/{a}"))
}

/// Whether the evidence lists `path` as a file it produced.
pub fn lists_file(items: &[EvidenceItem], path: &str) -> bool {
    items
        .iter()
        .any(|i| matches!(i, EvidenceItem::File { path: p, .. } if same_path(p, path)))
}

/// The last digest the evidence claims for `path`.
pub fn claimed_digest(items: &[EvidenceItem], path: &str) -> Option<String> {
    items.iter().rev().find_map(|i| match i {
        EvidenceItem::File {
            path: p,
            sha256: Some(d),
        } if same_path(p, path) => Some(d.clone()),
        _ => None,
    })
}

/// What in the evidence says this command passed: a `command` item with the same argv
/// that exited 0, or test results with no failures.
pub fn claimed_success(items: &[EvidenceItem], command: &str) -> Option<String> {
    let argv = |c: &str| shell_words::split(c).unwrap_or_else(|_| vec![c.to_string()]);
    let wanted = argv(command);
    items.iter().find_map(|i| match i {
        EvidenceItem::Command {
            command: c,
            exit_code: 0,
            ..
        } if argv(c) == wanted => Some(format!("`{c}` exited 0")),
        EvidenceItem::TestResults {
            passed, failed: 0, ..
        } if *passed > 0 => Some(format!("{passed} tests passed and none failed")),
        _ => None,
    })
}

/// The file's text from a read tool: `structuredContent.content`, else the text parts.
fn file_text(answer: &CallToolResult) -> Option<String> {
    if let Some(s) = answer
        .structured_content
        .as_ref()
        .and_then(|v| v.get("content"))
        .and_then(Value::as_str)
    {
        return Some(s.to_string());
    }
    let texts: Vec<&str> = answer
        .content
        .iter()
        .filter_map(|c| c.as_text().map(|t| t.text.as_str()))
        .collect();
    (!texts.is_empty()).then(|| texts.concat())
}

/// The exact bytes from `read_media_file`: image / audio data or an embedded blob.
fn media_bytes(answer: &CallToolResult) -> Option<Vec<u8>> {
    let b64 = answer.content.iter().find_map(|c| match c {
        ContentBlock::Image(i) => Some(i.data.clone()),
        ContentBlock::Audio(a) => Some(a.data.clone()),
        ContentBlock::Resource(r) => match &r.resource {
            ResourceContents::BlobResourceContents { blob, .. } => Some(blob.clone()),
            ResourceContents::TextResourceContents { text, .. } => {
                Some(base64::engine::general_purpose::STANDARD.encode(text))
            }
            #[allow(unreachable_patterns)]
            _ => None,
        },
        _ => None,
    })?;
    base64::engine::general_purpose::STANDARD.decode(b64).ok()
}

/// The line (from 1) of the first match.
pub fn find(content: &str, pattern: &str, regex: bool) -> Result<Option<usize>, regex::Error> {
    let at = if regex {
        regex::Regex::new(pattern)?.find(content).map(|m| m.start())
    } else {
        content.find(pattern)
    };
    Ok(at.map(|i| content[..i].matches('\n').count() + 1))
}

fn shown(pattern: &str, regex: bool) -> String {
    if regex {
        format!("a match for /{pattern}/")
    } else {
        format!("{pattern:?}")
    }
}

/// ESLint's per-file results: the text parts that parse as a result object.
pub fn lint_reports(answer: &CallToolResult) -> Vec<Value> {
    answer
        .content
        .iter()
        .filter_map(|c| c.as_text())
        .filter_map(|t| serde_json::from_str::<Value>(&t.text).ok())
        .filter(|v| v.get("messages").is_some_and(Value::is_array))
        .collect()
}

/// One line per ESLint message: `line 3: 'x' is defined but never used (no-unused-vars)`.
pub fn problems(report: &Value) -> Vec<String> {
    report["messages"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|m| {
            let line = m.get("line").and_then(Value::as_i64).unwrap_or(0);
            let message = m.get("message").and_then(Value::as_str).unwrap_or("?");
            match m.get("ruleId").and_then(Value::as_str) {
                Some(rule) => format!("line {line}: {message} ({rule})"),
                None => format!("line {line}: {message}"),
            }
        })
        .collect()
}

/// The value a `browser_evaluate` returned: the JSON string after `### Result`.
pub fn evaluated_text(raw: &str) -> String {
    let Some(rest) = raw.split("### Result").nth(1) else {
        return raw.to_string();
    };
    let body = rest.split("\n### ").next().unwrap_or(rest).trim();
    serde_json::from_str::<String>(body).unwrap_or_else(|_| body.to_string())
}

/// Whitespace runs as one space, so line breaks on the page do not hide a phrase.
pub fn normalise(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// The last `DETAIL_TAIL` characters, on one line.
fn tail(s: &str) -> String {
    let s = s.trim();
    let chars: Vec<char> = s.chars().collect();
    let start = chars.len().saturating_sub(DETAIL_TAIL);
    let t: String = chars[start..].iter().collect();
    let t = t.replace('\n', " ⏎ ");
    if start > 0 { format!("…{t}") } else { t }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(path: &str, sha: Option<&str>) -> EvidenceItem {
        EvidenceItem::File {
            path: path.into(),
            sha256: sha.map(String::from),
        }
    }

    #[test]
    fn paths_match_the_way_agents_write_them() {
        assert!(same_path("./src/a.rs", "src/a.rs"));
        assert!(same_path("/work/repo/src/a.rs", "src/a.rs"));
        assert!(!same_path("src/a.rs", "src/b.rs"));
        assert!(!same_path("a.rs", "xa.rs"));
        assert!(!same_path("", "a"));
    }

    #[test]
    fn the_last_claimed_digest_for_a_path_counts() {
        let items = [
            file("a", Some("11")),
            file("b", Some("22")),
            file("./a", Some("33")),
        ];
        assert_eq!(claimed_digest(&items, "a").as_deref(), Some("33"));
        assert_eq!(claimed_digest(&[file("a", None)], "a"), None);
    }

    #[test]
    fn a_passing_claim_is_a_zero_exit_of_the_same_argv_or_clean_tests() {
        let ran = |c: &str, code| EvidenceItem::Command {
            command: c.into(),
            exit_code: code,
            output: None,
        };
        assert!(claimed_success(&[ran("cargo  test", 0)], "cargo test").is_some());
        assert!(claimed_success(&[ran("cargo test", 1)], "cargo test").is_none());
        assert!(claimed_success(&[ran("cargo build", 0)], "cargo test").is_none());
        let tests = EvidenceItem::TestResults {
            passed: 4,
            failed: 0,
            skipped: 0,
            output: None,
        };
        assert!(claimed_success(&[tests], "pytest").is_some());
    }

    #[test]
    fn patterns_report_the_line_of_the_first_match() {
        let text = "fn a() {}\npub fn parse() {}\n";
        assert_eq!(find(text, "pub fn parse", false).unwrap(), Some(2));
        assert_eq!(find(text, r"fn \w+\(\)", true).unwrap(), Some(1));
        assert_eq!(find(text, "missing", false).unwrap(), None);
        assert!(find(text, "(", true).is_err());
    }

    #[test]
    fn server_errors_about_missing_paths_read_as_absence() {
        assert!(is_absent(
            "Error: ENOENT: no such file or directory, stat '/w/x'"
        ));
        assert!(is_absent("Parent directory does not exist: /w/nope"));
        assert!(!is_absent(
            "Access denied - path outside allowed directories"
        ));
    }

    #[test]
    fn evaluate_answers_are_unwrapped_to_the_page_text() {
        let raw =
            "### Result\n\"Release notes\\n\\nHello world\"\n### Ran Playwright code\n```js\n```";
        assert_eq!(evaluated_text(raw), "Release notes\n\nHello world");
        assert_eq!(normalise(" a \n\n b "), "a b");
    }

    #[test]
    fn eslint_messages_become_one_line_each() {
        let report = json!({ "messages": [
            { "line": 1, "message": "'x' is defined but never used.", "ruleId": "no-unused-vars" }
        ] });
        assert_eq!(
            problems(&report),
            ["line 1: 'x' is defined but never used. (no-unused-vars)"]
        );
    }
}
