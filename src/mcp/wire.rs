//! Decoding what arrives on the wire: tool arguments, where every failure names the field and
//! what was expected, and whole JSON-RPC messages rmcp could not route, where every refusal
//! says what is wrong with the message.

use rmcp::model::{
    CallToolRequestParams, CompleteRequestParams, ErrorData, GetPromptRequestParams,
    InitializeRequestParams, PaginatedRequestParams, ReadResourceRequestParams,
    SubscribeRequestParams, UnsubscribeRequestParams,
};
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

/// The answer to a request rmcp handed over as "custom": an MCP method whose `params` did
/// not decode (`-32602`, naming the problem), or a method MCP does not have (`-32601`).
pub fn unroutable_request(method: &str, params: Option<&Value>) -> ErrorData {
    fn check<T: DeserializeOwned>(params: &Value) -> Result<(), String> {
        serde_json::from_value::<T>(params.clone())
            .map(|_| ())
            .map_err(|e| tidy(&e.to_string()))
    }
    let checked = match method {
        "initialize" => check::<InitializeRequestParams>,
        "tools/call" => check::<CallToolRequestParams>,
        "resources/read" => check::<ReadResourceRequestParams>,
        "resources/subscribe" => check::<SubscribeRequestParams>,
        "resources/unsubscribe" => check::<UnsubscribeRequestParams>,
        "prompts/get" => check::<GetPromptRequestParams>,
        "completion/complete" => check::<CompleteRequestParams>,
        "tools/list" | "resources/list" | "resources/templates/list" | "prompts/list" => {
            check::<PaginatedRequestParams>
        }
        "ping" | "server/discover" | "subscriptions/listen" => {
            |_: &Value| Err("expected an object with at most `_meta`".to_string())
        }
        other => {
            let shown: String = other.chars().take(100).collect();
            return ErrorData::new(
                rmcp::model::ErrorCode::METHOD_NOT_FOUND,
                format!(
                    "unknown method `{shown}`; ARES serves MCP's tools/*, resources/*, prompts/*, completion/complete and ping"
                ),
                None,
            );
        }
    };
    let problem = match params {
        None | Some(Value::Null) => "missing `params`".to_string(),
        Some(p) if !p.is_object() => "`params` must be an object".to_string(),
        Some(p) => checked(p)
            .err()
            .unwrap_or_else(|| "not accepted".to_string()),
    };
    ErrorData::invalid_params(
        format!("invalid params for `{method}`: {problem}"),
        Some(json!({ "method": method })),
    )
}

/// Why a POSTed body is not a JSON-RPC message ARES takes: a parse error (`-32700`) for
/// bytes that are not JSON, an invalid request (`-32600`) for JSON that is not one message.
/// Returns the request's id when it has a usable one, to echo back.
pub fn malformed_message(body: &[u8]) -> (Option<Value>, ErrorData) {
    let parse_error = |why: String| ErrorData::parse_error(format!("Parse error: {why}"), None);
    if let Err(e) = std::str::from_utf8(body) {
        let at = e.valid_up_to();
        return (
            None,
            parse_error(format!("the body is not UTF-8 (bad byte at offset {at})")),
        );
    }
    let value: Value = match serde_json::from_slice(body) {
        Ok(v) => v,
        Err(e) if e.to_string().starts_with("recursion limit exceeded") => {
            return (
                None,
                parse_error(format!("nested more than 128 levels deep ({e})")),
            );
        }
        Err(e) => return (None, parse_error(format!("not JSON: {e}"))),
    };
    let invalid = |why: &str| ErrorData::invalid_request(format!("Invalid Request: {why}"), None);
    let Value::Object(message) = &value else {
        let why = if value.is_array() {
            "batches (JSON arrays) are not supported; send one message per request"
        } else {
            "a JSON-RPC message must be an object"
        };
        return (None, invalid(why));
    };
    if message.get("jsonrpc") != Some(&json!("2.0")) {
        return (None, invalid("`jsonrpc` must be \"2.0\""));
    }
    let id = message.get("id");
    let id_ok = id.is_none_or(|id| id.is_string() || id.is_i64());
    if !id_ok {
        return (
            None,
            invalid(
                "`id` must be a string or an integer (not null, a fraction, an object or an array)",
            ),
        );
    }
    let id = id.cloned();
    let why = match (message.get("method"), message.get("params")) {
        (Some(m), _) if !m.is_string() => "`method` must be a string",
        (Some(_), Some(p)) if !p.is_object() => "`params` must be an object",
        (Some(_), _) => "not a request or notification MCP defines",
        (None, _) if message.contains_key("result") || message.contains_key("error") => {
            "a response must answer a request ARES sent"
        }
        (None, _) => "missing `method`",
    };
    (id, invalid(why))
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

    #[test]
    fn malformed_messages_say_what_is_wrong() {
        let code = |body: &[u8]| malformed_message(body).1.code.0;
        let message = |body: &[u8]| malformed_message(body).1.message.to_string();
        assert_eq!(code(b"{\"jsonrpc\": "), -32700);
        assert!(message(b"{} x").contains("trailing characters"));
        assert!(message(b"\"\xff\"").contains("not UTF-8"));
        assert!(message("[".repeat(100_000).as_bytes()).contains("128 levels"));
        assert!(message(b"[{}]").contains("batches"));
        assert!(message(br#"{"jsonrpc":"1.0","id":1,"method":"ping"}"#).contains("jsonrpc"));
        for id in ["null", "1.5", "{}", "[]", "1e30"] {
            let body = format!(r#"{{"jsonrpc":"2.0","id":{id},"method":"ping"}}"#);
            assert!(message(body.as_bytes()).contains("`id`"), "{id}");
        }
        let (id, e) = malformed_message(br#"{"jsonrpc":"2.0","id":7,"method":"x","params":1}"#);
        assert_eq!((id, e.code.0), (Some(json!(7)), -32600));
        assert!(e.message.contains("`params`"));
    }

    #[test]
    fn unroutable_requests_name_the_params_or_the_method() {
        let e = unroutable_request("tools/call", Some(&json!({ "name": 5 })));
        assert_eq!(e.code.0, -32602);
        assert!(
            e.message.contains("tools/call") && e.message.contains("got integer"),
            "{}",
            e.message
        );
        let e = unroutable_request("resources/read", None);
        assert!(e.message.contains("missing `params`"), "{}", e.message);
        let e = unroutable_request("initialize", Some(&json!({ "protocolVersion": 5 })));
        assert_eq!(e.code.0, -32602);
        let e = unroutable_request("teleport", None);
        assert_eq!(e.code.0, -32601);
        assert!(e.message.contains("`teleport`"));
    }
}
