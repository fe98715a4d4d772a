//! `GET /reports/{reliability|enforcement}?format=…&since=…&until=…&agent_id=…`: the
//! reports `get_report` builds, as files to download. An agent key gets its own agent's
//! report, as over MCP.

use super::{Refusal, query};
use crate::auth::{Caller, Role};
use crate::reports::{Format, ReportKind};
use crate::service::Ares;
use crate::service::reliability::GetReport;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Extension, Path, Query, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use std::sync::Arc;
use uuid::Uuid;

const PARAMETERS: [&str; 4] = ["format", "since", "until", "agent_id"];

/// `GET /reports/{report}`
#[tracing::instrument(skip_all, fields(report = %report))]
pub async fn report(
    State(ares): State<Arc<Ares>>,
    Extension(caller): Extension<Caller>,
    Path(report): Path<String>,
    params: Result<Query<Vec<(String, String)>>, QueryRejection>,
) -> Result<Response, Refusal> {
    let request = request(&caller, &report, params)?;
    let report = ares.get_report(request).await?;
    let (content_type, extension) = match report.format {
        Format::Json => ("application/json", "json"),
        Format::Csv => ("text/csv; charset=utf-8", "csv"),
        Format::Markdown => ("text/markdown; charset=utf-8", "md"),
    };
    let filename = format!(
        "ares-{}-report-{}.{extension}",
        kind_name(report.report),
        report.generated_at.format("%Y%m%dT%H%M%SZ")
    );
    let disposition = format!("attachment; filename=\"{filename}\"");
    let mut response = (StatusCode::OK, report.content).into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    headers.insert(
        header::CONTENT_DISPOSITION,
        HeaderValue::from_str(&disposition).expect("the filename is ASCII"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert("x-report-rows", HeaderValue::from(report.rows));
    Ok(response)
}

fn kind_name(kind: ReportKind) -> &'static str {
    match kind {
        ReportKind::Reliability => "reliability",
        ReportKind::Enforcement => "enforcement",
    }
}

/// The `get_report` request these parameters ask for, or a 400/403 saying what is wrong.
fn request(
    caller: &Caller,
    report: &str,
    params: Result<Query<Vec<(String, String)>>, QueryRejection>,
) -> Result<GetReport, Refusal> {
    let kind = match report {
        "reliability" => ReportKind::Reliability,
        "enforcement" => ReportKind::Enforcement,
        other => {
            return Err(Refusal::bad_parameter(
                "report",
                &format!(
                    "expected reliability or enforcement in /reports/{{report}}, got {other:?}"
                ),
            ));
        }
    };
    let mut params = query(params, &PARAMETERS)?;
    let format = match params.remove("format").as_deref() {
        None | Some("json") => Format::Json,
        Some("csv") => Format::Csv,
        Some("markdown" | "md") => Format::Markdown,
        Some(other) => {
            return Err(Refusal::bad_parameter(
                "format",
                &format!("expected json, csv or markdown, got {other:?}"),
            ));
        }
    };
    let agent_id = match params.remove("agent_id") {
        None => None,
        Some(id) => Some(Uuid::parse_str(&id).map_err(|_| {
            Refusal::bad_parameter(
                "agent_id",
                &format!("expected an agent id (a UUID), got {id:?}"),
            )
        })?),
    };
    let agent_id = match (caller.role, caller.agent_id, agent_id) {
        (Role::Agent, Some(own), Some(asked)) if asked != own => {
            return Err(Refusal::forbidden(format!(
                "key {} acts only as agent {own}; it may not read agent {asked}",
                caller.key_id
            )));
        }
        (Role::Agent, Some(own), _) => Some(own),
        (Role::Agent, None, _) => {
            return Err(Refusal::forbidden(format!(
                "agent key {} is bound to no agent",
                caller.key_id
            )));
        }
        (_, _, asked) => asked,
    };
    Ok(GetReport {
        report: kind,
        format: Some(format),
        since: params.remove("since"),
        until: params.remove("until"),
        agent_id,
    })
}
