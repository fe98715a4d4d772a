//! Tool schemas every client can take: schemars spells an `Option<T>` as a type array
//! (`"type": ["string", "null"]`), which clients that map schemas onto a single-`type`
//! dialect (Gemini's function declarations among them) reject or misread. Here such a
//! schema becomes `anyOf` branches of one type each, as the MCP Inspector's strict mode asks.

use rmcp::model::JsonObject;
use serde_json::{Map, Value};
use std::sync::Arc;

/// Keywords that constrain one type only: they move into that type's branch.
const TYPED_KEYWORDS: [&str; 19] = [
    "format",
    "minimum",
    "maximum",
    "exclusiveMinimum",
    "exclusiveMaximum",
    "multipleOf",
    "minLength",
    "maxLength",
    "pattern",
    "items",
    "prefixItems",
    "minItems",
    "maxItems",
    "uniqueItems",
    "properties",
    "required",
    "additionalProperties",
    "minProperties",
    "maxProperties",
];

/// The schema with every type array rewritten as `anyOf` branches, at any depth.
pub fn schema(schema: Arc<JsonObject>) -> Arc<JsonObject> {
    let mut value = Value::Object((*schema).clone());
    rewrite(&mut value);
    match value {
        Value::Object(map) => Arc::new(map),
        _ => schema,
    }
}

fn rewrite(value: &mut Value) {
    match value {
        Value::Object(map) => {
            for child in map.values_mut() {
                rewrite(child);
            }
            split_type_array(map);
        }
        Value::Array(items) => items.iter_mut().for_each(rewrite),
        _ => {}
    }
}

/// `{"type": ["integer", "null"], "minimum": 1, "description": …}` becomes
/// `{"anyOf": [{"type": "integer", "minimum": 1}, {"type": "null"}], "description": …}`.
fn split_type_array(map: &mut Map<String, Value>) {
    let Some(Value::Array(types)) = map.get("type") else {
        return;
    };
    let types = types.clone();
    map.remove("type");
    let typed: Map<String, Value> = TYPED_KEYWORDS
        .iter()
        .filter_map(|k| map.remove(*k).map(|v| (k.to_string(), v)))
        .collect();
    let branches: Vec<Value> = types
        .into_iter()
        .map(|t| {
            let mut branch = Map::new();
            if t != "null" {
                branch.extend(typed.clone());
            }
            branch.insert("type".into(), t);
            Value::Object(branch)
        })
        .collect();
    // An enum of a nullable type keeps its values (null among them) beside the branches.
    match map.get_mut("anyOf") {
        Some(Value::Array(existing)) => existing.extend(branches),
        _ => {
            map.insert("anyOf".into(), Value::Array(branches));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn portable(v: Value) -> Value {
        let Value::Object(map) = v else { panic!() };
        Value::Object((*schema(Arc::new(map))).clone())
    }

    #[test]
    fn nullable_integer_becomes_two_single_type_branches() {
        let out = portable(json!({
            "type": "object",
            "properties": {"limit": {"type": ["integer", "null"], "format": "int32", "minimum": 1, "description": "How many"}}
        }));
        assert_eq!(
            out["properties"]["limit"],
            json!({
                "anyOf": [{"type": "integer", "format": "int32", "minimum": 1}, {"type": "null"}],
                "description": "How many"
            })
        );
    }

    /// What the Inspector's strict mode objects to, anywhere in a schema: a type array, or a
    /// property that constrains nothing. Returns the paths.
    fn problems(schema: &Value, path: String, found: &mut Vec<String>) {
        match schema {
            Value::Object(map) => {
                if map.get("type").is_some_and(Value::is_array) {
                    found.push(format!("{path}: type array"));
                }
                for (key, child) in map {
                    if key == "properties"
                        && let Value::Object(props) = child
                    {
                        for (name, prop) in props {
                            let constrained = prop.as_object().is_some_and(|p| {
                                p.keys().any(|k| {
                                    !matches!(k.as_str(), "description" | "title" | "default")
                                })
                            });
                            if !constrained {
                                found.push(format!("{path}.properties.{name}: constrains nothing"));
                            }
                        }
                    }
                    problems(child, format!("{path}.{key}"), found);
                }
            }
            Value::Array(items) => items.iter().for_each(|v| problems(v, path.clone(), found)),
            _ => {}
        }
    }

    #[test]
    fn every_tool_schema_is_portable() {
        let mut found = Vec::new();
        for tool in crate::mcp::tools::list() {
            let input = Value::Object((*tool.input_schema).clone());
            problems(&input, format!("{}.inputSchema", tool.name), &mut found);
            let output = Value::Object((*tool.output_schema.unwrap()).clone());
            problems(&output, format!("{}.outputSchema", tool.name), &mut found);
        }
        assert!(found.is_empty(), "unportable schemas: {found:#?}");
    }

    #[test]
    fn single_types_and_definitions_are_left_alone_but_nested_ones_are_rewritten() {
        let out = portable(json!({
            "type": "object",
            "$defs": {"A": {"type": "object", "properties": {"x": {"type": ["string", "null"]}}}},
            "properties": {"n": {"type": "string"}}
        }));
        assert_eq!(out["properties"]["n"], json!({"type": "string"}));
        assert_eq!(
            out["$defs"]["A"]["properties"]["x"],
            json!({"anyOf": [{"type": "string"}, {"type": "null"}]})
        );
        assert_eq!(out["type"], "object");
    }
}
