//! The playwright role: `page_contains` — navigate, then read the page's visible text
//! (`browser_evaluate` of `document.body.innerText`, or the accessibility snapshot).

use super::{Connection, Session, Unavailable, pick, tail, verdict};
use crate::downstream::connection::{args, text_of};
use crate::verification::{Criterion, CriterionResult, CriterionStatus};
use serde_json::json;
use std::sync::Arc;

const READ_PAGE_TOOLS: [&str; 2] = ["browser_evaluate", "browser_snapshot"];

pub(super) async fn page_contains(
    conn: &Connection,
    session: &Arc<Session>,
    criterion: &Criterion,
    url: &str,
    needle: &str,
) -> Result<CriterionResult, Unavailable> {
    let read = pick(conn, session, &READ_PAGE_TOOLS)?;
    let navigate = pick(conn, session, &["browser_navigate"])?;
    // One browser tab: navigating and reading must not interleave with another check.
    let _tab = tokio::time::timeout(conn.timeout, conn.exclusive.lock())
        .await
        .map_err(|_| {
            Unavailable::new(format!(
                "the browser stayed busy with another page for {:.1} s",
                conn.timeout.as_secs_f64()
            ))
        })?;
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn evaluate_answers_are_unwrapped_to_the_page_text() {
        let raw =
            "### Result\n\"Release notes\\n\\nHello world\"\n### Ran Playwright code\n```js\n```";
        assert_eq!(evaluated_text(raw), "Release notes\n\nHello world");
        assert_eq!(normalise(" a \n\n b "), "a b");
    }
}
