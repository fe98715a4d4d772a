//! Decoding tool arguments: every failure names the field and what was expected.

use rmcp::model::ErrorData;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

/// Decodes a tool's arguments, refusing with `-32602` and `data.field` on the first problem.
pub fn decode<T: DeserializeOwned>(value: &Value) -> Result<T, ErrorData> {
    if let Some(field) = find_nul(value, String::new()) {
        return Err(invalid(&field, "expected text without NUL characters"));
    }
    serde_path_to_error::deserialize(value).map_err(|e| {
        let path = e.path().to_string();
        let message = e.inner().to_string();
        let field = field_of(&path, &message);
        invalid(&field, &tidy(&message))
    })
}

/// The field an error is about: the path, or for a missing or unknown field at that path,
/// the field the message names.
fn field_of(path: &str, message: &str) -> String {
    let named = ["missing field `", "unknown field `"]
        .iter()
        .find_map(|p| message.strip_prefix(p))
        .and_then(|rest| rest.split('`').next());
    let base = if path == "." { "" } else { path };
    match named {
        Some(name) if base.is_empty() => name.to_string(),
        Some(name) if message.starts_with("missing") => format!("{base}.{name}"),
        Some(name) if !base.ends_with(name) => format!("{base}.{name}"),
        _ if base.is_empty() => "arguments".to_string(),
        _ => base.to_string(),
    }
}

/// serde's messages are good; they only need the type names made plain.
fn tidy(message: &str) -> String {
    message
        .replace("invalid type: ", "wrong type: got ")
        .replace("UUID parsing failed: ", "expected a UUID: ")
}

pub fn invalid(field: &str, message: &str) -> ErrorData {
    ErrorData::invalid_params(
        format!("invalid `{field}`: {message}"),
        Some(json!({ "field": field })),
    )
}

/// The path of the first string (or key) containing NUL, which no store can keep.
fn find_nul(value: &Value, path: String) -> Option<String> {
    match value {
        Value::String(s) if s.contains('\0') => Some(path),
        Value::Array(items) => items
            .iter()
            .enumerate()
            .find_map(|(i, v)| find_nul(v, format!("{path}[{i}]"))),
        Value::Object(map) => map.iter().find_map(|(k, v)| {
            let p = if path.is_empty() {
                k.clone()
            } else {
                format!("{path}.{k}")
            };
            if k.contains('\0') {
                Some(p)
            } else {
                find_nul(v, p)
            }
        }),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Inner {
        #[allow(dead_code)]
        n: i64,
    }

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Outer {
        #[allow(dead_code)]
        name: String,
        #[allow(dead_code)]
        items: Vec<Inner>,
    }

    fn err(v: Value) -> String {
        let e = decode::<Outer>(&v).unwrap_err();
        e.data.unwrap()["field"].as_str().unwrap().to_string()
    }

    #[test]
    fn names_the_missing_wrong_and_unknown_fields() {
        assert_eq!(err(json!({"items": []})), "name");
        assert_eq!(err(json!({"name": 1, "items": []})), "name");
        assert_eq!(
            err(json!({"name": "a", "items": [{"n": "x"}]})),
            "items[0].n"
        );
        assert_eq!(err(json!({"name": "a", "items": [{}]})), "items[0].n");
        assert_eq!(err(json!({"name": "a", "items": [], "extra": 1})), "extra");
        assert_eq!(err(json!({"name": "a\u{0}", "items": []})), "name");
    }
}
