//! The filesystem role: `file_exists`, `file_contains`, `file_matches_evidence`, through
//! the official filesystem server's tools (or any server offering them).

use super::{Connection, Session, Unavailable, absent_or_unavailable, claims, pick, verdict};
use crate::downstream::connection::{args, text_of};
use crate::evidence::EvidenceItem;
use crate::verification::{Criterion, CriterionResult, CriterionStatus};
use base64::Engine;
use rmcp::model::{CallToolResult, ContentBlock, ResourceContents};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use std::sync::Arc;

/// Tools that say whether a path exists, best first.
const STAT_TOOLS: [&str; 3] = ["get_file_info", "read_text_file", "read_file"];
/// Tools that return a file's text.
const TEXT_TOOLS: [&str; 2] = ["read_text_file", "read_file"];
/// Tools that return a file's exact bytes (base64), then the text fallbacks.
const BYTES_TOOLS: [&str; 3] = ["read_media_file", "read_text_file", "read_file"];

pub(super) async fn file_exists(
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

pub(super) async fn file_contains(
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

pub(super) async fn file_matches(
    conn: &Connection,
    session: &Arc<Session>,
    criterion: &Criterion,
    path: &str,
    items: &[EvidenceItem],
) -> Result<CriterionResult, Unavailable> {
    let Some(claimed) = claims::claimed_digest(items, path) else {
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

#[cfg(test)]
mod tests {
    use super::*;

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
}
