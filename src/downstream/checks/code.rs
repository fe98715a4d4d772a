//! The code_checker role: `command_succeeds` through `ares code-checker`'s `run_command`,
//! `lint_clean` through ESLint's `lint-files`.

use super::{Connection, Session, Unavailable, absent, claims, pick, tail, verdict};
use crate::downstream::connection::{args, text_of};
use crate::evidence::EvidenceItem;
use crate::verification::{Criterion, CriterionResult, CriterionStatus};
use rmcp::model::CallToolResult;
use serde_json::{Value, json};
use std::path::{Component, Path, PathBuf};
use std::sync::Arc;

const RUN_TOOLS: [&str; 1] = ["run_command"];
const LINT_TOOLS: [&str; 2] = ["lint-files", "lint_files"];

pub(super) async fn command_succeeds(
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
    if let Some(claim) = claims::claimed_success(items, command) {
        r.discrepancy = true;
        r.detail = format!("{}; the evidence claimed {claim}", r.detail);
    }
    Ok(r)
}

pub(super) async fn lint_clean(
    conn: &Connection,
    session: &Arc<Session>,
    criterion: &Criterion,
    path: &str,
    items: &[EvidenceItem],
) -> Result<CriterionResult, Unavailable> {
    let tool = pick(conn, session, &LINT_TOOLS)?;
    // ESLint's server wants absolute paths; relative ones are taken from the server's root.
    let absolute = lint_path(conn, tool, path)?;
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

/// The absolute path ESLint's server wants: relative paths are taken from the server's root,
/// and with a root, nothing may point outside it (`..` is resolved lexically: the file lives
/// on the server's side).
fn lint_path(conn: &Connection, tool: &str, path: &str) -> Result<String, Unavailable> {
    let Some(root) = conn.config.root.as_ref() else {
        return if Path::new(path).is_absolute() {
            Ok(path.to_string())
        } else {
            Err(Unavailable::new(format!(
                "`{tool}` needs an absolute path; give `{}` a `root` or `cwd` to resolve {path} against",
                conn.name()
            )))
        };
    };
    let mut resolved = PathBuf::new();
    for part in root.join(path).components() {
        match part {
            Component::ParentDir => {
                resolved.pop();
            }
            Component::CurDir => {}
            other => resolved.push(other),
        }
    }
    if resolved.starts_with(root) {
        Ok(resolved.display().to_string())
    } else {
        Err(Unavailable::new(format!(
            "{path} is outside `{}`'s root {}",
            conn.name(),
            root.display()
        )))
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

#[cfg(test)]
mod tests {
    use super::*;

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
