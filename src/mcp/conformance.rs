//! The fixtures the official MCP conformance suite (`@modelcontextprotocol/conformance`,
//! server mode) calls by name: `test_*` tools and prompts and `test://` resources, as its
//! reference "everything server" defines them. Built only with the `conformance` feature,
//! so a normal ARES never offers them; `.ci/conformance` runs the suite against such a build.
#![allow(deprecated)] // MCP's logging is deprecated (SEP-2577), and the suite still tests it.

use rmcp::model::{
    CallToolResult, ContentBlock, CreateMessageRequestParams, ElicitRequestParams, ErrorData,
    GetPromptResult, JsonObject, LoggingLevel, LoggingMessageNotificationParam,
    ProgressNotificationParam, Prompt, PromptArgument, PromptMessage, ReadResourceResult, Resource,
    ResourceContents, ResourceTemplate, Role, Tool,
};
use rmcp::service::RequestContext;
use rmcp::{Peer, RoleServer};
use serde_json::{Value, json};
use std::sync::Arc;

/// A 1×1 red PNG.
const IMAGE: &str = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8DwHwAFBQIAX8jx0gAAAABJRU5ErkJggg==";
/// A minimal WAV file.
const AUDIO: &str = "UklGRiYAAABXQVZFZm10IBAAAAABAAEAQB8AAAB9AAACABAAZGF0YQIAAAA=";

/// The fixture tools: name, description, input schema.
fn tool_table() -> Vec<(&'static str, &'static str, Value)> {
    let empty = json!({ "type": "object", "properties": {} });
    let text = |name: &str, description: &str| {
        json!({
            "type": "object",
            "properties": { name: { "type": "string", "description": description } },
            "required": [name]
        })
    };
    vec![
        (
            "test_simple_text",
            "Tests simple text content response",
            empty.clone(),
        ),
        (
            "test_image_content",
            "Tests image content response",
            empty.clone(),
        ),
        (
            "test_audio_content",
            "Tests audio content response",
            empty.clone(),
        ),
        (
            "test_embedded_resource",
            "Tests embedded resource content response",
            empty.clone(),
        ),
        (
            "test_multiple_content_types",
            "Tests response with multiple content types (text, image, resource)",
            empty.clone(),
        ),
        (
            "test_tool_with_logging",
            "Tests tool that emits log messages during execution",
            empty.clone(),
        ),
        (
            "test_tool_with_progress",
            "Tests tool that reports progress notifications",
            empty.clone(),
        ),
        (
            "test_error_handling",
            "Tests error response handling",
            empty.clone(),
        ),
        (
            "test_sampling",
            "Tests server-initiated sampling (LLM completion request)",
            text("prompt", "The prompt to send to the LLM"),
        ),
        (
            "test_elicitation",
            "Tests server-initiated elicitation (user input request)",
            text("message", "The message to show the user"),
        ),
        (
            "test_elicitation_sep1034_defaults",
            "Tests elicitation with default values per SEP-1034",
            empty.clone(),
        ),
        (
            "test_elicitation_sep1330_enums",
            "Tests elicitation with enum schema improvements per SEP-1330",
            empty,
        ),
        (
            "json_schema_2020_12_tool",
            "Tool with JSON Schema 2020-12 features for conformance testing (SEP-1613)",
            json!({
                "$schema": "https://json-schema.org/draft/2020-12/schema",
                "type": "object",
                "$defs": { "address": { "type": "object", "properties": { "street": { "type": "string" }, "city": { "type": "string" } } } },
                "properties": { "name": { "type": "string" }, "address": { "$ref": "#/$defs/address" } },
                "additionalProperties": false
            }),
        ),
    ]
}

pub fn tools() -> Vec<Tool> {
    tool_table()
        .into_iter()
        .map(|(name, description, schema)| {
            let Value::Object(schema) = schema else {
                unreachable!("schemas are objects")
            };
            Tool::new(name, description, Arc::new(schema))
        })
        .collect()
}

pub fn is_tool(name: &str) -> bool {
    tool_table().iter().any(|(n, ..)| *n == name)
}

/// Runs a fixture tool.
pub async fn call_tool(
    name: &str,
    args: &JsonObject,
    context: &RequestContext<RoleServer>,
) -> Result<CallToolResult, ErrorData> {
    let peer = &context.peer;
    let content = match name {
        "test_simple_text" => vec![ContentBlock::text(
            "This is a simple text response for testing.",
        )],
        "test_image_content" => vec![ContentBlock::image(IMAGE, "image/png")],
        "test_audio_content" => vec![ContentBlock::audio(AUDIO, "audio/wav")],
        "test_embedded_resource" => vec![embedded(
            "test://embedded-resource",
            "text/plain",
            "This is an embedded resource content.",
        )],
        "test_multiple_content_types" => vec![
            ContentBlock::text("Multiple content types test:"),
            ContentBlock::image(IMAGE, "image/png"),
            embedded(
                "test://mixed-content-resource",
                "application/json",
                r#"{"test":"data","value":123}"#,
            ),
        ],
        "test_tool_with_logging" => {
            for message in [
                "Tool execution started",
                "Tool processing data",
                "Tool execution completed",
            ] {
                let param =
                    LoggingMessageNotificationParam::new(LoggingLevel::Info, json!(message));
                let _ = peer.notify_logging_message(param).await;
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            }
            vec![ContentBlock::text(
                "Tool with logging executed successfully",
            )]
        }
        "test_tool_with_progress" => {
            let token = context.meta.get_progress_token();
            if let Some(token) = &token {
                for step in [0u32, 50, 100] {
                    let param = ProgressNotificationParam::new(token.clone(), step.into())
                        .with_total(100.into())
                        .with_message(format!("Completed step {step} of 100"));
                    let _ = peer.notify_progress(param).await;
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                }
            }
            let shown = token.map(|t| json!(t.0).to_string()).unwrap_or_default();
            vec![ContentBlock::text(shown)]
        }
        "test_error_handling" => {
            return Ok(CallToolResult::error(vec![ContentBlock::text(
                "This tool intentionally returns an error for testing",
            )]));
        }
        "test_sampling" => vec![ContentBlock::text(sample(peer, args).await)],
        "test_elicitation" => {
            let message = args
                .get("message")
                .and_then(Value::as_str)
                .unwrap_or_default();
            let schema = json!({
                "type": "object",
                "properties": { "response": { "type": "string", "description": "User's response" } },
                "required": ["response"]
            });
            vec![ContentBlock::text(elicit(peer, message, schema).await)]
        }
        "test_elicitation_sep1034_defaults" => {
            let schema = json!({
                "type": "object",
                "properties": {
                    "name": { "type": "string", "description": "User name", "default": "John Doe" },
                    "age": { "type": "integer", "description": "User age", "default": 30 },
                    "score": { "type": "number", "description": "User score", "default": 95.5 },
                    "status": { "type": "string", "description": "User status", "enum": ["active", "inactive", "pending"], "default": "active" },
                    "verified": { "type": "boolean", "description": "Verification status", "default": true }
                },
                "required": []
            });
            let message = "Please review and update the form fields with defaults";
            vec![ContentBlock::text(elicit(peer, message, schema).await)]
        }
        "test_elicitation_sep1330_enums" => {
            let schema = json!({
                "type": "object",
                "properties": {
                    "untitledSingle": { "type": "string", "description": "Select one option", "enum": ["option1", "option2", "option3"] },
                    "titledSingle": { "type": "string", "description": "Select one option with titles", "oneOf": [
                        { "const": "value1", "title": "First Option" },
                        { "const": "value2", "title": "Second Option" },
                        { "const": "value3", "title": "Third Option" }
                    ] },
                    "legacyEnum": { "type": "string", "description": "Select one option (legacy)", "enum": ["opt1", "opt2", "opt3"], "enumNames": ["Option One", "Option Two", "Option Three"] },
                    "untitledMulti": { "type": "array", "description": "Select multiple options", "minItems": 1, "maxItems": 3,
                        "items": { "type": "string", "enum": ["option1", "option2", "option3"] } },
                    "titledMulti": { "type": "array", "description": "Select multiple options with titles", "minItems": 1, "maxItems": 3,
                        "items": { "anyOf": [
                            { "const": "value1", "title": "First Choice" },
                            { "const": "value2", "title": "Second Choice" },
                            { "const": "value3", "title": "Third Choice" }
                        ] } }
                },
                "required": []
            });
            let message = "Please select options from the enum fields";
            vec![ContentBlock::text(elicit(peer, message, schema).await)]
        }
        "json_schema_2020_12_tool" => vec![ContentBlock::text(format!(
            "JSON Schema 2020-12 tool called with: {}",
            Value::Object(args.clone())
        ))],
        other => {
            return Err(ErrorData::invalid_params(
                format!("unknown fixture tool `{other}`"),
                None,
            ));
        }
    };
    Ok(CallToolResult::success(content))
}

fn embedded(uri: &str, mime_type: &str, text: &str) -> ContentBlock {
    ContentBlock::resource(ResourceContents::TextResourceContents {
        uri: uri.into(),
        mime_type: Some(mime_type.into()),
        text: text.into(),
        meta: None,
    })
}

/// Asks the client's model to answer the `prompt` argument.
async fn sample(peer: &Peer<RoleServer>, args: &JsonObject) -> String {
    let prompt = args
        .get("prompt")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let request: CreateMessageRequestParams = match serde_json::from_value(json!({
        "messages": [{ "role": "user", "content": { "type": "text", "text": prompt } }],
        "maxTokens": 100
    })) {
        Ok(r) => r,
        Err(e) => return format!("Sampling not supported or error: {e}"),
    };
    match peer.create_message(request).await {
        Ok(result) => {
            let answer = serde_json::to_value(&result).unwrap_or_default();
            let text = answer["content"]["text"].as_str().unwrap_or("No response");
            format!("LLM response: {text}")
        }
        Err(e) => format!("Sampling not supported or error: {e}"),
    }
}

/// Asks the client's user to fill in `schema`.
async fn elicit(peer: &Peer<RoleServer>, message: &str, schema: Value) -> String {
    let request: ElicitRequestParams = match serde_json::from_value(json!({
        "message": message,
        "requestedSchema": schema
    })) {
        Ok(r) => r,
        Err(e) => return format!("Elicitation not supported or error: {e}"),
    };
    match peer.create_elicitation(request).await {
        Ok(result) => {
            let answer = serde_json::to_value(&result).unwrap_or_default();
            format!(
                "User response: action={}, content={}",
                answer["action"].as_str().unwrap_or_default(),
                answer.get("content").cloned().unwrap_or(json!({}))
            )
        }
        Err(e) => format!("Elicitation not supported or error: {e}"),
    }
}

/// The fixed fixture resources: uri, name, mime type.
const RESOURCES: [(&str, &str, &str); 3] = [
    ("test://static-text", "static-text", "text/plain"),
    ("test://static-binary", "static-binary", "image/png"),
    ("test://watched-resource", "watched-resource", "text/plain"),
];

pub fn resources() -> Vec<Resource> {
    RESOURCES
        .iter()
        .map(|(uri, name, mime)| {
            Resource::new(*uri, *name)
                .with_description(format!("Conformance fixture {name}"))
                .with_mime_type(*mime)
        })
        .collect()
}

pub fn templates() -> Vec<ResourceTemplate> {
    vec![
        ResourceTemplate::new("test://template/{id}/data", "template")
            .with_description("A resource template with parameter substitution")
            .with_mime_type("application/json"),
    ]
}

/// Reads a `test://` resource; None for any other URI.
pub fn read_resource(uri: &str) -> Option<Result<ReadResourceResult, ErrorData>> {
    let text = |mime: &str, text: String| {
        Ok(ReadResourceResult::new(vec![
            ResourceContents::TextResourceContents {
                uri: uri.into(),
                mime_type: Some(mime.into()),
                text,
                meta: None,
            },
        ]))
    };
    Some(match uri {
        "test://static-text" => text(
            "text/plain",
            "This is the content of the static text resource.".into(),
        ),
        "test://watched-resource" => text("text/plain", "Watched resource content".into()),
        "test://static-binary" => Ok(ReadResourceResult::new(vec![
            ResourceContents::BlobResourceContents {
                uri: uri.into(),
                mime_type: Some("image/png".into()),
                blob: IMAGE.into(),
                meta: None,
            },
        ])),
        _ => {
            let id = uri
                .strip_prefix("test://template/")?
                .strip_suffix("/data")?;
            let body =
                json!({ "id": id, "templateTest": true, "data": format!("Data for ID: {id}") });
            text("application/json", body.to_string())
        }
    })
}

const PROMPTS: [&str; 4] = [
    "test_simple_prompt",
    "test_prompt_with_arguments",
    "test_prompt_with_embedded_resource",
    "test_prompt_with_image",
];

pub fn is_prompt(name: &str) -> bool {
    PROMPTS.contains(&name)
}

pub fn prompts() -> Vec<Prompt> {
    let arg = |name: &str, description: &str| {
        PromptArgument::new(name)
            .with_description(description)
            .with_required(true)
    };
    vec![
        Prompt::new(PROMPTS[0], Some("A simple prompt without arguments"), None),
        Prompt::new(
            PROMPTS[1],
            Some("A prompt with required arguments"),
            Some(vec![
                arg("arg1", "First test argument"),
                arg("arg2", "Second test argument"),
            ]),
        ),
        Prompt::new(
            PROMPTS[2],
            Some("A prompt that includes an embedded resource"),
            Some(vec![arg("resourceUri", "URI of the resource to embed")]),
        ),
        Prompt::new(
            PROMPTS[3],
            Some("A prompt that includes image content"),
            None,
        ),
    ]
}

/// Renders a fixture prompt.
pub fn get_prompt(name: &str, args: &JsonObject) -> Result<GetPromptResult, ErrorData> {
    let arg = |name: &str| args.get(name).and_then(Value::as_str).unwrap_or_default();
    let messages = match name {
        "test_simple_prompt" => vec![PromptMessage::new_text(
            Role::User,
            "This is a simple prompt for testing.",
        )],
        "test_prompt_with_arguments" => vec![PromptMessage::new_text(
            Role::User,
            format!(
                "Prompt with arguments: arg1='{}', arg2='{}'",
                arg("arg1"),
                arg("arg2")
            ),
        )],
        "test_prompt_with_embedded_resource" => vec![
            PromptMessage::new(
                Role::User,
                embedded(
                    arg("resourceUri"),
                    "text/plain",
                    "Embedded resource content for testing.",
                ),
            ),
            PromptMessage::new_text(Role::User, "Please process the embedded resource above."),
        ],
        "test_prompt_with_image" => vec![
            PromptMessage::new(Role::User, ContentBlock::image(IMAGE, "image/png")),
            PromptMessage::new_text(Role::User, "Please analyze the image above."),
        ],
        other => {
            return Err(ErrorData::invalid_params(
                format!("unknown fixture prompt `{other}`"),
                None,
            ));
        }
    };
    Ok(GetPromptResult::new(messages))
}
