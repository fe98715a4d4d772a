//! Each ground-truth criterion checked through one server: which tool to call, with what,
//! and what its answer means. A verdict (`met` / `unmet`) comes only from a real answer;
//! anything else is `Unavailable`, so the manager can try a fallback server or report the
//! criterion `unverifiable`. [`files`], [`code`] and [`page`] hold the checks by role;
//! [`claims`] reads what the evidence asserts, to spot contradictions.

pub mod claims;
mod code;
mod files;
mod page;

use super::connection::{Connection, Session, Unavailable};
use crate::evidence::EvidenceItem;
use crate::verification::{Criterion, CriterionResult, CriterionStatus};

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
        Criterion::FileExists { path } => {
            files::file_exists(conn, &session, criterion, path, items).await
        }
        Criterion::FileContains {
            path,
            pattern,
            regex,
        } => files::file_contains(conn, &session, criterion, path, pattern, *regex, items).await,
        Criterion::FileMatchesEvidence { path } => {
            files::file_matches(conn, &session, criterion, path, items).await
        }
        Criterion::CommandSucceeds { command } => {
            code::command_succeeds(conn, &session, criterion, command, items).await
        }
        Criterion::LintClean { path } => {
            code::lint_clean(conn, &session, criterion, path, items).await
        }
        Criterion::PageContains { url, text } => {
            page::page_contains(conn, &session, criterion, url, text).await
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
    if files::is_absent(error) {
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
    let listed = claims::lists_file(items, path);
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

/// The last `DETAIL_TAIL` characters, on one line.
fn tail(s: &str) -> String {
    let s = s.trim();
    let chars: Vec<char> = s.chars().collect();
    let start = chars.len().saturating_sub(DETAIL_TAIL);
    let t: String = chars[start..].iter().collect();
    let t = t.replace('\n', " ⏎ ");
    if start > 0 { format!("…{t}") } else { t }
}
