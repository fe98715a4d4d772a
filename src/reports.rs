//! Reports: tables of reliability or enforcement data, rendered as JSON, CSV or Markdown.

use crate::agents::Agent;
use crate::enforcement::EnforcementAction;
use crate::reliability::Reliability;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum ReportKind {
    Reliability,
    Enforcement,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Format {
    Json,
    Csv,
    Markdown,
}

/// A header and rows of cells, rendered in any format.
#[derive(Debug, Clone, PartialEq)]
pub struct Table {
    pub columns: Vec<&'static str>,
    pub rows: Vec<Vec<Value>>,
}

impl Table {
    pub fn render(&self, format: Format) -> String {
        match format {
            Format::Json => {
                let rows: Vec<Value> = self
                    .rows
                    .iter()
                    .map(|r| {
                        let obj: Map<String, Value> = self
                            .columns
                            .iter()
                            .zip(r)
                            .map(|(c, v)| (c.to_string(), v.clone()))
                            .collect();
                        Value::Object(obj)
                    })
                    .collect();
                serde_json::to_string_pretty(&rows).expect("JSON values serialize")
            }
            Format::Csv => {
                let mut out = self.columns.join(",");
                out.push('\n');
                for row in &self.rows {
                    let cells: Vec<String> = row.iter().map(|v| csv_cell(&cell(v))).collect();
                    out.push_str(&cells.join(","));
                    out.push('\n');
                }
                out
            }
            Format::Markdown => {
                let mut out = format!("| {} |\n", self.columns.join(" | "));
                out.push_str(&format!("|{}\n", " --- |".repeat(self.columns.len())));
                for row in &self.rows {
                    let cells: Vec<String> = row
                        .iter()
                        .map(|v| cell(v).replace('|', "\\|").replace('\n', " "))
                        .collect();
                    out.push_str(&format!("| {} |\n", cells.join(" | ")));
                }
                out
            }
        }
    }
}

fn cell(v: &Value) -> String {
    match v {
        Value::Null => String::new(),
        Value::String(s) => s.clone(),
        Value::Number(n) => match n.as_f64() {
            Some(f) if n.is_f64() => format!("{f:.3}"),
            _ => n.to_string(),
        },
        other => other.to_string(),
    }
}

/// Quotes a CSV cell when it holds a separator, quote or newline (RFC 4180), and defuses
/// cells a spreadsheet would run as a formula.
fn csv_cell(s: &str) -> String {
    let s = if s.starts_with(['=', '+', '-', '@']) && s.parse::<f64>().is_err() {
        format!("'{s}")
    } else {
        s.to_string()
    };
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s
    }
}

pub fn reliability_table(rows: &[(Agent, Reliability)]) -> Table {
    Table {
        columns: vec![
            "agent_id",
            "agent_name",
            "status",
            "reliability_score",
            "success_rate",
            "completion_rate",
            "quality_score",
            "discrepancy_rate",
            "response_time_avg",
            "response_time_p95",
            "verifications",
            "verified",
            "rejected",
        ],
        rows: rows
            .iter()
            .map(|(a, r)| {
                vec![
                    a.id.to_string().into(),
                    a.name.clone().into(),
                    a.status.as_str().into(),
                    r.reliability_score.into(),
                    r.success_rate.into(),
                    r.completion_rate.into(),
                    r.quality_score.into(),
                    r.discrepancy_rate.into(),
                    r.response_time_avg.into(),
                    r.response_time_p95.into(),
                    r.verifications.into(),
                    r.verified.into(),
                    r.rejected.into(),
                ]
            })
            .collect(),
    }
}

pub fn enforcement_table(actions: &[EnforcementAction]) -> Table {
    Table {
        columns: vec![
            "id",
            "agent_id",
            "action",
            "triggered_by",
            "reason",
            "created_at",
            "expires_at",
        ],
        rows: actions
            .iter()
            .map(|a| {
                vec![
                    a.id.to_string().into(),
                    a.agent_id.to_string().into(),
                    a.action.as_str().into(),
                    serde_json::to_value(a.triggered_by).unwrap_or(Value::Null),
                    a.reason.clone().into(),
                    a.created_at.to_rfc3339().into(),
                    a.expires_at.map(|t| t.to_rfc3339()).into(),
                ]
            })
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn table() -> Table {
        Table {
            columns: vec!["name", "score"],
            rows: vec![
                vec![json!("a,\"b\""), json!(0.5)],
                vec![json!("=cmd()"), json!(1)],
            ],
        }
    }

    #[test]
    fn csv_quotes_separators_and_defuses_formulas() {
        let csv = table().render(Format::Csv);
        assert_eq!(csv, "name,score\n\"a,\"\"b\"\"\",0.500\n'=cmd(),1\n");
    }

    #[test]
    fn markdown_has_a_header_rule_and_escapes_pipes() {
        let t = Table {
            columns: vec!["x"],
            rows: vec![vec![json!("a|b")]],
        };
        assert_eq!(t.render(Format::Markdown), "| x |\n| --- |\n| a\\|b |\n");
    }

    #[test]
    fn json_rows_are_objects_keyed_by_column() {
        let v: Value = serde_json::from_str(&table().render(Format::Json)).unwrap();
        assert_eq!(v[1]["score"], json!(1));
    }
}
