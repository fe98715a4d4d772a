//! Bad input at volume below the tools: thousands of generated malformed HTTP requests to a
//! real `ares serve --http` (raw reqwest, no MCP client), over the handshake protocol
//! (2025-06-18 / 2025-11-25 sessions) and the per-request protocol (2026-07-28). Every one
//! must get a clear refusal — the status and JSON-RPC error its class expects (the table in
//! [`Expect`] and each generator's doc) — never a 5xx, a hang or a dropped connection; the
//! server stays up between classes and no agent, task, key or audit entry changes.
//! (Malformed tool *arguments* are tests/bad_input.rs's.)
//!
//! Reproduce a run with `ARES_ABUSE_SEED=<seed from the output>`.

mod common;

use common::{ADMIN_TOKEN, Mcp, db::TestDatabase};
use futures_util::StreamExt;
use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

/// The server's body limit (`--max-body-bytes`), small enough that oversized bodies are cheap.
const MAX_BODY: usize = 1024 * 1024;

/// A seeded xorshift64*: failures reproduce from the printed seed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }
}

/// A fresh request id. Ids stay unique within a session, as MCP requires: rmcp routes a
/// session's answers by id, so a client that reuses an id still in flight never hears
/// back on the earlier request (its own stream; nothing else is affected).
fn next_id() -> u64 {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(100);
    NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
}

/// Which protocol generation a request speaks.
#[derive(Clone)]
enum Protocol {
    /// Inside a session opened with `initialize` at this version.
    Handshake { session: String, version: String },
    /// 2026-07-28: no session; `_meta` and the `MCP-Protocol-Version`/`Mcp-Method` headers
    /// on every request.
    PerRequest,
}

impl Protocol {
    fn label(&self) -> &'static str {
        match self {
            Protocol::Handshake { .. } => "handshake",
            Protocol::PerRequest => "per-request",
        }
    }
}

const PER_REQUEST_VERSION: &str = "2026-07-28";

fn per_request_meta() -> Value {
    json!({
        "io.modelcontextprotocol/protocolVersion": PER_REQUEST_VERSION,
        "io.modelcontextprotocol/clientCapabilities": {},
        "io.modelcontextprotocol/clientInfo": { "name": "abuse", "version": "1" },
    })
}

/// What a class of malformed request must get back.
#[derive(Clone, Debug)]
enum Expect {
    /// This status, and a body that says `says` (rmcp's plain-text refusals).
    Http(u16, &'static str),
    /// One of these statuses and a JSON-RPC error (JSON or SSE) with `code`, whose message
    /// contains `says`.
    Rpc(&'static [u16], i32, String),
    /// A known method whose params do not decode: `-32602` naming the method and the
    /// params problem.
    WrongParams(&'static [u16], String),
    /// Not an error: a success (a forged session id is meaningless without sessions).
    Ok,
    /// One of several concurrent requests sharing an id in one session: its result, or 400
    /// with `-32600` "already in flight" — never no answer.
    ResultOrDuplicate,
}

struct Case {
    class: &'static str,
    protocol: &'static str,
    method: reqwest::Method,
    headers: HeaderMap,
    body: Vec<u8>,
    expect: Expect,
}

/// The answer to one case, as the checker saw it.
enum Verdict {
    /// A refusal that met the class's expectation.
    Refused,
    /// A success the class expected.
    Served,
    /// Wrong answer (a bug, not a crash).
    Wrong(String),
    /// 5xx, timeout or dropped connection.
    Crash(String),
}

fn header(name: &str, value: &str) -> (HeaderName, HeaderValue) {
    (
        HeaderName::from_bytes(name.as_bytes()).unwrap(),
        HeaderValue::from_str(value).unwrap(),
    )
}

/// The headers a well-formed request of `protocol` carries for `body`.
fn headers_for(protocol: &Protocol, body: &Value) -> HeaderMap {
    let mut h = HeaderMap::new();
    for (k, v) in [
        header("authorization", &format!("Bearer {ADMIN_TOKEN}")),
        header("accept", "application/json, text/event-stream"),
        header("content-type", "application/json"),
    ] {
        h.insert(k, v);
    }
    match protocol {
        Protocol::Handshake { session, version } => {
            h.insert("mcp-session-id", HeaderValue::from_str(session).unwrap());
            h.insert(
                "mcp-protocol-version",
                HeaderValue::from_str(version).unwrap(),
            );
        }
        Protocol::PerRequest => {
            h.insert(
                "mcp-protocol-version",
                HeaderValue::from_static(PER_REQUEST_VERSION),
            );
            if let Some(method) = body["method"].as_str()
                && let Ok(v) = HeaderValue::from_str(method)
            {
                h.insert("mcp-method", v);
            }
            let name = body["params"]["name"]
                .as_str()
                .or(body["params"]["uri"].as_str());
            if let Some(name) = name
                && let Ok(v) = HeaderValue::from_str(name)
            {
                h.insert("mcp-name", v);
            }
        }
    }
    h
}

/// A well-formed request that would change data if it got through (or read it), with the
/// per-request `_meta` where the protocol needs it. ASCII only, so any cut is at a char edge.
fn valid_request(rng: &mut Rng, protocol: &Protocol) -> Value {
    let n = rng.next();
    let id = json!(next_id());
    let mut request = match rng.below(5) {
        0 => json!({ "jsonrpc": "2.0", "id": id, "method": "tools/call", "params": {
            "name": "register_agent",
            "arguments": { "name": format!("abuse-{n:x}"), "capabilities": ["rust"] } } }),
        1 => json!({ "jsonrpc": "2.0", "id": id, "method": "tools/call", "params": {
            "name": "create_task",
            "arguments": { "description": format!("abuse {n}"), "criteria": [
                { "type": "evidence_present", "kind": "diff" } ] } } }),
        2 => json!({ "jsonrpc": "2.0", "id": id, "method": "tools/call", "params": {
            "name": "create_api_key", "arguments": { "role": "observer" } } }),
        3 => json!({ "jsonrpc": "2.0", "id": id, "method": "resources/read",
            "params": { "uri": "ares://agents" } }),
        _ => json!({ "jsonrpc": "2.0", "id": id, "method": "tools/list", "params": {} }),
    };
    if matches!(protocol, Protocol::PerRequest) {
        request["params"]["_meta"] = per_request_meta();
    }
    request
}

fn case(
    class: &'static str,
    protocol: &Protocol,
    headers: HeaderMap,
    body: Vec<u8>,
    expect: Expect,
) -> Case {
    Case {
        class,
        protocol: protocol.label(),
        method: reqwest::Method::POST,
        headers,
        body,
        expect,
    }
}

fn parse_error(says: &str) -> Expect {
    Expect::Rpc(&[400], -32700, says.into())
}

fn invalid_request(says: &str) -> Expect {
    Expect::Rpc(&[400], -32600, says.into())
}

/// Cut anywhere: `-32700` (400) "Parse error".
fn truncated(rng: &mut Rng, p: &Protocol) -> Case {
    let v = valid_request(rng, p);
    let body = serde_json::to_vec(&v).unwrap();
    let cut = rng.below(body.len());
    case(
        "truncated",
        p,
        headers_for(p, &v),
        body[..cut].to_vec(),
        parse_error("Parse error"),
    )
}

/// A whole message followed by non-whitespace: `-32700` (400).
fn trailing_garbage(rng: &mut Rng, p: &Protocol) -> Case {
    let v = valid_request(rng, p);
    let mut body = serde_json::to_vec(&v).unwrap();
    body.push(*rng.pick(b"x}],:\"{[01tn"));
    for _ in 0..rng.below(64) {
        body.push(rng.next() as u8);
    }
    case(
        "trailing garbage",
        p,
        headers_for(p, &v),
        body,
        parse_error("Parse error"),
    )
}

/// Bytes that are not UTF-8 spliced in anywhere: `-32700` (400) "not UTF-8".
fn invalid_utf8(rng: &mut Rng, p: &Protocol) -> Case {
    let v = valid_request(rng, p);
    let mut body = serde_json::to_vec(&v).unwrap();
    let bad: &[&[u8]] = &[
        b"\xff",
        b"\xfe\xff",
        b"\xc0\x80",
        b"\x80",
        b"\xed\xa0\x80",
        b"\xf8\x88\x80\x80\x80",
        b"\xe2\x82",
    ];
    let at = rng.below(body.len() + 1);
    body.splice(at..at, rng.pick(bad).iter().copied());
    case(
        "invalid UTF-8",
        p,
        headers_for(p, &v),
        body,
        parse_error("not UTF-8"),
    )
}

/// Nesting past serde_json's 128 levels, bare or inside a tool's arguments, up to 150,000
/// deep: `-32700` (400) naming the depth. Never a stack overflow.
fn deep_nesting(rng: &mut Rng, p: &Protocol, depth: usize) -> Case {
    let v = json!({ "jsonrpc": "2.0", "id": 1, "method": "tools/call",
        "params": { "name": "list_agents", "arguments": {} } });
    let body = match rng.below(3) {
        0 => "[".repeat(depth),
        1 => format!("{}1{}", "{\"a\":".repeat(depth), "}".repeat(depth)),
        _ => format!(
            r#"{{"jsonrpc":"2.0","id":{},"method":"tools/call","params":{{"name":"list_agents","arguments":{{"x":{}{}}}}}}}"#,
            next_id(),
            "[".repeat(depth),
            "]".repeat(depth)
        ),
    };
    case(
        "deep nesting",
        p,
        headers_for(p, &v),
        body.into_bytes(),
        parse_error("128 levels"),
    )
}

/// Past `--max-body-bytes`: 413 before any of it is parsed.
fn huge_body(rng: &mut Rng, p: &Protocol) -> Case {
    let v = valid_request(rng, p);
    let size = MAX_BODY + 1 + rng.below(3 * MAX_BODY);
    let body = match rng.below(3) {
        0 => {
            let mut big = v.clone();
            big["params"]["arguments"]["padding"] = json!("x".repeat(size));
            serde_json::to_vec(&big).unwrap()
        }
        1 => "[".repeat(size).into_bytes(),
        _ => (0..size).map(|_| rng.next() as u8).collect(),
    };
    case(
        "huge body",
        p,
        headers_for(p, &v),
        body,
        Expect::Http(413, "Payload Too Large"),
    )
}

/// Just under the limit: read and answered (the padding is an unknown argument, `-32602`).
fn body_just_under_limit(p: &Protocol) -> Case {
    let mut v = json!({ "jsonrpc": "2.0", "id": next_id(), "method": "tools/call",
        "params": { "name": "health", "arguments": { "padding": "" } } });
    if matches!(p, Protocol::PerRequest) {
        v["params"]["_meta"] = per_request_meta();
    }
    v["params"]["arguments"]["padding"] = json!("y".repeat(MAX_BODY - 1024));
    let statuses: &'static [u16] = &[200];
    case(
        "huge body",
        p,
        headers_for(p, &v),
        serde_json::to_vec(&v).unwrap(),
        Expect::Rpc(statuses, -32602, "padding".into()),
    )
}

/// `jsonrpc` anything but "2.0": `-32600` (400) naming `jsonrpc`.
fn wrong_version(rng: &mut Rng, p: &Protocol) -> Case {
    let mut v = valid_request(rng, p);
    let headers = headers_for(p, &v);
    let versions = [
        json!("1.0"),
        json!("2"),
        json!("2.00"),
        json!(""),
        json!(null),
        json!(2.0),
        json!(2),
        json!(true),
        json!({}),
        json!(["2.0"]),
    ];
    match rng.below(versions.len() + 1) {
        i if i == versions.len() => {
            v.as_object_mut().unwrap().remove("jsonrpc");
        }
        i => v["jsonrpc"] = versions[i].clone(),
    }
    case(
        "wrong jsonrpc version",
        p,
        headers,
        serde_json::to_vec(&v).unwrap(),
        invalid_request("`jsonrpc`"),
    )
}

/// An `id` that is not a string or an integer: `-32600` (400) naming `id`.
fn wrong_id(rng: &mut Rng, p: &Protocol) -> Case {
    let mut v = valid_request(rng, p);
    let headers = headers_for(p, &v);
    let ids = [
        "{}",
        "{\"a\":1}",
        "[]",
        "[1]",
        "1.5",
        "-0.25",
        "null",
        "1e30",
        "99999999999999999999999",
        "true",
    ];
    v["id"] = json!("__ID__");
    let id = *rng.pick(&ids);
    let body = serde_json::to_string(&v).unwrap().replace("\"__ID__\"", id);
    case(
        "wrong id type",
        p,
        headers,
        body.into_bytes(),
        invalid_request("`id`"),
    )
}

/// No `method` (`-32600`, 400), a non-string one (`-32600`, 400), or one MCP does not have
/// (`-32601`: 200 in a session, 404 per request, naming it).
fn bad_method(rng: &mut Rng, p: &Protocol) -> Case {
    let mut v = valid_request(rng, p);
    match rng.below(3) {
        0 => {
            v.as_object_mut().unwrap().remove("method");
            case(
                "missing/unknown method",
                p,
                headers_for(p, &v),
                serde_json::to_vec(&v).unwrap(),
                invalid_request("missing `method`"),
            )
        }
        1 => {
            v["method"] = rng
                .pick(&[json!(5), json!({}), json!(["tools/call"]), json!(null)])
                .clone();
            case(
                "missing/unknown method",
                p,
                headers_for(p, &v),
                serde_json::to_vec(&v).unwrap(),
                invalid_request("`method` must be a string"),
            )
        }
        _ => {
            let name = format!(
                "{}{:x}",
                rng.pick(&["tools/explode", "x", "TOOLS/CALL", "resources/", "rpc."]),
                rng.next() % 1000
            );
            v["method"] = json!(name);
            let statuses: &'static [u16] = match p {
                Protocol::Handshake { .. } => &[200],
                Protocol::PerRequest => &[404],
            };
            case(
                "missing/unknown method",
                p,
                headers_for(p, &v),
                serde_json::to_vec(&v).unwrap(),
                Expect::Rpc(statuses, -32601, name),
            )
        }
    }
}

/// Params of the wrong shape for tools/call and resources/read: a non-object (`-32600`,
/// 400) or an object whose fields do not decode ([`Expect::WrongParams`]).
fn wrong_params(rng: &mut Rng, p: &Protocol) -> Case {
    let (method, params) = rng
        .pick(&[
            ("tools/call", json!({ "name": 5 })),
            ("tools/call", json!({ "name": null, "arguments": {} })),
            ("tools/call", json!({ "arguments": {} })),
            ("tools/call", json!({ "name": "health", "arguments": [1] })),
            ("tools/call", json!({ "name": "health", "arguments": "x" })),
            ("tools/call", json!({ "name": ["health"] })),
            ("resources/read", json!({ "uri": 7 })),
            ("resources/read", json!({})),
            (
                "resources/read",
                json!({ "uri": { "href": "ares://agents" } }),
            ),
            ("tools/call", json!("register_agent")),
            ("tools/call", json!([1, 2])),
            ("resources/read", json!(42)),
            ("tools/list", json!(true)),
        ])
        .clone();
    let object = params.is_object();
    let mut v = json!({ "jsonrpc": "2.0", "id": next_id(), "method": method, "params": params });
    if object && matches!(p, Protocol::PerRequest) {
        v["params"]["_meta"] = per_request_meta();
    }
    let expect = if !object {
        invalid_request("`params` must be an object")
    } else {
        let statuses: &'static [u16] = match p {
            Protocol::Handshake { .. } => &[200],
            Protocol::PerRequest => &[200, 404],
        };
        Expect::WrongParams(statuses, method.to_string())
    };
    case(
        "wrong params",
        p,
        headers_for(p, &v),
        serde_json::to_vec(&v).unwrap(),
        expect,
    )
}

/// `initialize` whose params do not decode, without a session: `-32602` (400) naming
/// `initialize` (rmcp alone would say "Session ID is required").
fn bad_initialize(rng: &mut Rng) -> Case {
    let params = rng
        .pick(&[
            json!({ "protocolVersion": 5, "capabilities": {}, "clientInfo": { "name": "c", "version": "1" } }),
            json!({ "protocolVersion": "2025-06-18", "capabilities": "all", "clientInfo": { "name": "c", "version": "1" } }),
            json!({ "protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": 7 }),
            json!({ "protocolVersion": "2025-06-18", "capabilities": {} }),
            json!({ "capabilities": {}, "clientInfo": { "name": "c", "version": "1" } }),
            json!({ "protocolVersion": ["2025-06-18"], "capabilities": {}, "clientInfo": { "name": "c", "version": "1" } }),
        ])
        .clone();
    let v = json!({ "jsonrpc": "2.0", "id": 1, "method": "initialize", "params": params });
    let mut h = base_headers();
    h.insert("content-type", HeaderValue::from_static("application/json"));
    let p = Protocol::Handshake {
        session: String::new(),
        version: String::new(),
    };
    case(
        "wrong params",
        &p,
        h,
        serde_json::to_vec(&v).unwrap(),
        Expect::Rpc(&[400], -32602, "invalid params for `initialize`".into()),
    )
}

/// A JSON array: `-32600` (400) "batches" (MCP dropped JSON-RPC batching in 2025-06-18).
fn batch(rng: &mut Rng, p: &Protocol) -> Case {
    let n = rng.below(5);
    let items: Vec<Value> = (0..n).map(|_| valid_request(rng, p)).collect();
    let body = if rng.below(4) == 0 {
        json!([items])
    } else {
        json!(items)
    };
    let first = items.first().cloned().unwrap_or(json!({}));
    case(
        "batch",
        p,
        headers_for(p, &first),
        serde_json::to_vec(&body).unwrap(),
        invalid_request("batches"),
    )
}

/// A well-formed request with some other Content-Type, or none: 415.
fn wrong_content_type(rng: &mut Rng, p: &Protocol) -> Case {
    let v = valid_request(rng, p);
    let mut h = headers_for(p, &v);
    let types = [
        "text/plain",
        "application/xml",
        "application/jsonx",
        "application/x-www-form-urlencoded",
        "multipart/form-data; boundary=x",
        "json",
        "application/json-rpc",
        "text/event-stream",
    ];
    match rng.below(types.len() + 1) {
        i if i == types.len() => {
            h.remove("content-type");
        }
        i => {
            h.insert("content-type", HeaderValue::from_static(types[i]));
        }
    }
    case(
        "wrong Content-Type",
        p,
        h,
        serde_json::to_vec(&v).unwrap(),
        Expect::Http(415, "Content-Type must be application/json"),
    )
}

/// An Accept without both application/json and text/event-stream, or none: 406.
fn wrong_accept(rng: &mut Rng, p: &Protocol) -> Case {
    let v = valid_request(rng, p);
    let mut h = headers_for(p, &v);
    let accepts = [
        "application/json",
        "text/event-stream",
        "text/html",
        "application/xml, text/plain",
        "application/jsonx, text/event-streams",
    ];
    match rng.below(accepts.len() + 1) {
        i if i == accepts.len() => {
            h.remove("accept");
        }
        i => {
            h.insert("accept", HeaderValue::from_static(accepts[i]));
        }
    }
    case(
        "wrong Accept",
        p,
        h,
        serde_json::to_vec(&v).unwrap(),
        Expect::Http(406, "Not Acceptable"),
    )
}

fn base_headers() -> HeaderMap {
    let mut h = HeaderMap::new();
    let (k, v) = header("authorization", &format!("Bearer {ADMIN_TOKEN}"));
    h.insert(k, v);
    h.insert(
        "accept",
        HeaderValue::from_static("application/json, text/event-stream"),
    );
    h
}

/// A session id ARES never issued. Handshake: POST and GET get 404 "Session not found"; an
/// id that is not text, or none, gets 400 "Session ID is required"; DELETE is idempotent
/// (204, nothing to end). Per-request: sessions do not exist, so the header is ignored and
/// a read-only call is served.
fn forged_session(rng: &mut Rng, p: &Protocol) -> Case {
    let forged = match rng.below(5) {
        0 => uuid::Uuid::new_v4().to_string(),
        1 => format!("{:x}", rng.next()),
        2 => String::new(),
        3 => "../../../etc/passwd".into(),
        _ => "s".repeat(1 + rng.below(4096)),
    };
    let v = valid_request(rng, p);
    let mut h = headers_for(p, &v);
    let body = serde_json::to_vec(&v).unwrap();
    if matches!(p, Protocol::PerRequest) {
        let mut read = json!({ "jsonrpc": "2.0", "id": 3, "method": "tools/call",
            "params": { "name": "list_agents", "arguments": {}, "_meta": per_request_meta() } });
        read["id"] = json!(next_id());
        let mut h = headers_for(p, &read);
        h.insert("mcp-session-id", HeaderValue::from_str(&forged).unwrap());
        return case(
            "forged session",
            p,
            h,
            serde_json::to_vec(&read).unwrap(),
            Expect::Ok,
        );
    }
    let mut c = match rng.below(6) {
        0 => {
            h.insert(
                "mcp-session-id",
                HeaderValue::from_bytes(b"\xff\xfe").unwrap(),
            );
            case(
                "forged session",
                p,
                h,
                body,
                Expect::Http(400, "Session ID is required"),
            )
        }
        1 => {
            h.remove("mcp-session-id");
            case(
                "forged session",
                p,
                h,
                body,
                Expect::Http(400, "Session ID is required"),
            )
        }
        2 | 3 => {
            h.insert("mcp-session-id", HeaderValue::from_str(&forged).unwrap());
            h.insert("accept", HeaderValue::from_static("text/event-stream"));
            h.remove("content-type");
            let mut c = case(
                "forged session",
                p,
                h,
                Vec::new(),
                Expect::Http(404, "Session not found"),
            );
            c.method = reqwest::Method::GET;
            c
        }
        _ => {
            h.insert("mcp-session-id", HeaderValue::from_str(&forged).unwrap());
            case(
                "forged session",
                p,
                h,
                body,
                Expect::Http(404, "Session not found"),
            )
        }
    };
    let forged_text = c
        .headers
        .get("mcp-session-id")
        .is_some_and(|v| v.to_str().is_ok());
    if forged_text && rng.below(8) == 0 {
        c.method = reqwest::Method::DELETE;
        c.body.clear();
        c.expect = Expect::Http(204, "");
    }
    c
}

/// An `MCP-Protocol-Version` header naming no version ARES knows: 400 naming the header.
fn wrong_protocol_header(rng: &mut Rng, p: &Protocol) -> Case {
    let v = valid_request(rng, p);
    let mut h = headers_for(p, &v);
    let mut body = v.clone();
    if matches!(p, Protocol::PerRequest) {
        // The header must match _meta; drop _meta so only the header is wrong.
        body["params"].as_object_mut().unwrap().remove("_meta");
    }
    let expect = match rng.below(6) {
        0 => {
            h.insert(
                "mcp-protocol-version",
                HeaderValue::from_bytes(b"2025-\xff").unwrap(),
            );
            Expect::Http(400, "MCP-Protocol-Version")
        }
        i => {
            let version = ["1999-01-01", "2025-13-45", "latest", "", "2025-06-18 x"][i - 1];
            h.insert(
                "mcp-protocol-version",
                HeaderValue::from_str(version).unwrap(),
            );
            Expect::Http(400, "Unsupported MCP-Protocol-Version")
        }
    };
    case(
        "wrong protocol header",
        p,
        h,
        serde_json::to_vec(&body).unwrap(),
        expect,
    )
}

/// 2026-07-28 only: what the per-request contract requires, missing or contradicted. A
/// missing or malformed `_meta` is `-32602` (400); headers that disagree with the body are
/// `-32020` (400); a `_meta` version ARES does not speak is `-32022` (400).
fn per_request_contract(rng: &mut Rng) -> Case {
    let p = Protocol::PerRequest;
    let mut v = valid_request(rng, &p);
    let mut h = headers_for(&p, &v);
    let expect = match rng.below(7) {
        0 => {
            v["params"].as_object_mut().unwrap().remove("_meta");
            Expect::Rpc(&[400], -32602, "_meta".into())
        }
        1 => {
            v["params"]["_meta"]["io.modelcontextprotocol/clientCapabilities"] = json!("all");
            Expect::Rpc(&[400], -32602, "clientCapabilities".into())
        }
        2 => {
            h.remove("mcp-protocol-version");
            Expect::Rpc(&[400], -32020, "MCP-Protocol-Version".into())
        }
        3 => {
            h.insert(
                "mcp-protocol-version",
                HeaderValue::from_static("2025-06-18"),
            );
            Expect::Rpc(&[400], -32020, "does not match".into())
        }
        4 => {
            h.remove("mcp-method");
            Expect::Rpc(&[400], -32020, "Mcp-Method".into())
        }
        5 => {
            h.insert("mcp-method", HeaderValue::from_static("tools/list"));
            if v["method"] == "tools/list" {
                h.insert("mcp-method", HeaderValue::from_static("tools/call"));
            }
            Expect::Rpc(&[400], -32020, "Mcp-Method".into())
        }
        _ => {
            v["params"]["_meta"]["io.modelcontextprotocol/protocolVersion"] = json!("2099-01-01");
            h.insert(
                "mcp-protocol-version",
                HeaderValue::from_static("2099-01-01"),
            );
            Expect::Rpc(&[400], -32022, "Unsupported protocol version".into())
        }
    };
    case(
        "per-request contract",
        &p,
        h,
        serde_json::to_vec(&v).unwrap(),
        expect,
    )
}

/// The same id sent several times at once in one session (MCP forbids reusing an id in a
/// session; some clients do it anyway): each copy is answered, with its result or `-32600`
/// (400) "already in flight", and none is left hanging. Read-only, so nothing changes.
fn duplicate_ids(p: &Protocol, copies: usize) -> Vec<Case> {
    let id = next_id();
    let v = json!({ "jsonrpc": "2.0", "id": id, "method": "tools/call",
        "params": { "name": "list_agents", "arguments": {} } });
    (0..copies)
        .map(|_| {
            case(
                "duplicate id in flight",
                p,
                headers_for(p, &v),
                serde_json::to_vec(&v).unwrap(),
                Expect::ResultOrDuplicate,
            )
        })
        .collect()
}

/// The JSON-RPC error in a body, whether plain JSON or the last `data:` of an SSE stream.
fn rpc_error(body: &str) -> Option<(i64, String)> {
    let json: Option<Value> = serde_json::from_str(body).ok().or_else(|| {
        body.lines()
            .filter_map(|l| l.strip_prefix("data:"))
            .filter_map(|d| serde_json::from_str::<Value>(d.trim()).ok())
            .next_back()
    });
    let error = json?.get("error")?.clone();
    Some((
        error["code"].as_i64()?,
        error["message"].as_str()?.to_string(),
    ))
}

fn rpc_result(body: &str) -> bool {
    let json: Option<Value> = serde_json::from_str(body).ok().or_else(|| {
        body.lines()
            .filter_map(|l| l.strip_prefix("data:"))
            .filter_map(|d| serde_json::from_str::<Value>(d.trim()).ok())
            .next_back()
    });
    json.is_some_and(|j| j.get("result").is_some())
}

fn judge(expect: &Expect, status: u16, body: &str) -> Verdict {
    if status >= 500 {
        return Verdict::Crash(format!("{status}: {body:.200}"));
    }
    let shown = || format!("{status} {}", body.chars().take(300).collect::<String>());
    match expect {
        Expect::Http(want, says) => {
            if status == *want && body.contains(says) {
                Verdict::Refused
            } else {
                Verdict::Wrong(format!("wanted {want} saying {says:?}, got {}", shown()))
            }
        }
        Expect::Rpc(statuses, code, says) => match rpc_error(body) {
            Some((c, m))
                if statuses.contains(&status)
                    && c == i64::from(*code)
                    && m.contains(says.as_str()) =>
            {
                Verdict::Refused
            }
            _ => Verdict::Wrong(format!(
                "wanted {statuses:?} with JSON-RPC {code} saying {says:?}, got {}",
                shown()
            )),
        },
        Expect::WrongParams(statuses, method) => match rpc_error(body) {
            Some((-32602, m)) if statuses.contains(&status) && m.contains(method.as_str()) => {
                Verdict::Refused
            }
            _ => Verdict::Wrong(format!(
                "wanted {statuses:?} with -32602 naming {method}, got {}",
                shown()
            )),
        },
        Expect::ResultOrDuplicate => match rpc_error(body) {
            Some((-32600, m)) if status == 400 && m.contains("already in flight") => {
                Verdict::Refused
            }
            None if status == 200 && rpc_result(body) => Verdict::Served,
            _ => Verdict::Wrong(format!("wanted a result or -32600, got {}", shown())),
        },
        Expect::Ok => {
            if status == 200 && rpc_result(body) {
                Verdict::Served
            } else {
                Verdict::Wrong(format!("wanted a result, got {}", shown()))
            }
        }
    }
}

async fn send(client: &reqwest::Client, base: &str, c: &Case) -> Verdict {
    let request = client
        .request(c.method.clone(), format!("{base}/mcp"))
        .headers(c.headers.clone())
        .body(c.body.clone());
    let response = match request.send().await {
        Ok(r) => r,
        Err(e) => return Verdict::Crash(format!("no answer: {e}")),
    };
    let status = response.status().as_u16();
    match response.bytes().await {
        Ok(b) => judge(&c.expect, status, &String::from_utf8_lossy(&b)),
        Err(e) => Verdict::Crash(format!("{status}, then the body broke off: {e}")),
    }
}

/// What must not change: agents, tasks, keys, and the audit log (its length and integrity).
async fn snapshot(base: &str) -> Value {
    let mcp = Mcp::http(base).await;
    let agents = mcp.call("list_agents", json!({ "limit": 500 })).await;
    let tasks = mcp.call("list_tasks", json!({ "limit": 500 })).await;
    let keys = mcp.call("list_api_keys", json!({})).await;
    let audit = mcp.call("verify_audit_log", json!({})).await;
    mcp.close().await;
    assert_eq!(audit["intact"], true, "the audit log verifies: {audit}");
    json!({
        "agents": agents["agents"], "tasks": tasks["tasks"], "keys": keys["keys"],
        "audit_entries": audit["entries"], "audit_head": audit["head_hash"],
    })
}

async fn still_up(
    client: &reqwest::Client,
    base: &str,
    child: &mut tokio::process::Child,
    after: &str,
) {
    assert!(
        child.try_wait().unwrap().is_none(),
        "ares exited during {after}"
    );
    let health = client.get(format!("{base}/health")).send().await;
    assert_eq!(
        health.map(|r| r.status().as_u16()).ok(),
        Some(200),
        "/health after {after}"
    );
}

type Generator = fn(&mut Rng, &Protocol) -> Case;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn malformed_requests_at_volume_get_clear_errors_and_change_nothing() {
    let seed = std::env::var("ARES_ABUSE_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0x5EED_AB05_E000_0001_u64);
    println!("seed {seed} (ARES_ABUSE_SEED={seed} reproduces this run)");
    let mut rng = Rng(seed | 1);
    let started = Instant::now();

    let db = TestDatabase::sqlite().await;
    let max_body = MAX_BODY.to_string();
    let (mut child, base) = common::spawn_http(
        &db.url,
        &[
            ("ARES_ADMIN_TOKEN", ADMIN_TOKEN),
            ("ARES_RATE_LIMIT", "1000000"),
            ("ARES_MAX_BODY_BYTES", &max_body),
            ("ARES_LOG", "warn"),
        ],
    )
    .await;
    // The server's log, read as it comes so a full pipe never stalls it.
    let stderr = child.stderr.take().unwrap();
    let log = tokio::spawn(async move {
        use tokio::io::AsyncBufReadExt;
        let mut lines = tokio::io::BufReader::new(stderr).lines();
        let mut kept = Vec::new();
        while let Ok(Some(line)) = lines.next_line().await {
            if line.contains("panicked") || line.contains("ERROR") {
                kept.push(line);
            }
        }
        kept
    });

    // Something to protect: agents, tasks and audit entries that must come through intact.
    let seeding = Mcp::http(&base).await;
    for _ in 0..3 {
        let agent = common::scenarios::register(&seeding, &["rust"]).await;
        common::scenarios::assigned_task(&seeding, &agent["id"], &["rust"]).await;
    }
    seeding.close().await;
    let before = snapshot(&base).await;

    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(20))
        .build()
        .unwrap();
    let protocols = [
        Protocol::Handshake {
            session: common::raw_session(&client, &base, "2025-06-18").await,
            version: "2025-06-18".into(),
        },
        Protocol::Handshake {
            session: common::raw_session(&client, &base, "2025-11-25").await,
            version: "2025-11-25".into(),
        },
        Protocol::PerRequest,
    ];
    let per_protocol = |rng: &mut Rng, n: usize, make: Generator| -> Vec<Case> {
        (0..n)
            .map(|i| make(rng, &protocols[i % protocols.len()]))
            .collect()
    };

    let mut batches: Vec<(&str, Vec<Case>)> = vec![
        ("truncated", per_protocol(&mut rng, 900, truncated)),
        (
            "trailing garbage",
            per_protocol(&mut rng, 600, trailing_garbage),
        ),
        ("invalid UTF-8", per_protocol(&mut rng, 600, invalid_utf8)),
        (
            "wrong jsonrpc version",
            per_protocol(&mut rng, 600, wrong_version),
        ),
        ("wrong id type", per_protocol(&mut rng, 600, wrong_id)),
        (
            "missing/unknown method",
            per_protocol(&mut rng, 900, bad_method),
        ),
        ("wrong params", per_protocol(&mut rng, 900, wrong_params)),
        ("batch", per_protocol(&mut rng, 480, batch)),
        (
            "wrong Content-Type",
            per_protocol(&mut rng, 480, wrong_content_type),
        ),
        ("wrong Accept", per_protocol(&mut rng, 480, wrong_accept)),
        (
            "forged session",
            per_protocol(&mut rng, 720, forged_session),
        ),
        (
            "wrong protocol header",
            per_protocol(&mut rng, 480, wrong_protocol_header),
        ),
    ];
    let mut initialize: Vec<Case> = (0..240).map(|_| bad_initialize(&mut rng)).collect();
    batches[6].1.append(&mut initialize);
    batches.push((
        "per-request contract",
        (0..600).map(|_| per_request_contract(&mut rng)).collect(),
    ));
    let mut deep: Vec<Case> = (0..90)
        .map(|i| {
            let depth = 129 + rng.below(150_000);
            deep_nesting(&mut rng, &protocols[i % 3], depth)
        })
        .collect();
    for p in &protocols {
        let mut c = deep_nesting(&mut rng, p, 100_000);
        c.body = "[".repeat(100_000).into_bytes();
        deep.push(c);
    }
    batches.push(("deep nesting", deep));
    let mut huge: Vec<Case> = (0..24)
        .map(|i| huge_body(&mut rng, &protocols[i % 3]))
        .collect();
    huge.extend(protocols.iter().map(body_just_under_limit));
    batches.push(("huge body", huge));

    let duplicates = (0..6)
        .flat_map(|i| duplicate_ids(&protocols[i % 2], 8))
        .collect();
    batches.push(("duplicate id in flight", duplicates));

    let mut figures: BTreeMap<&str, (usize, usize, usize)> = BTreeMap::new();
    let mut wrong: Vec<String> = Vec::new();
    let mut crashes: Vec<String> = Vec::new();
    for (class, cases) in &batches {
        let concurrency = if *class == "huge body" { 4 } else { 16 };
        let verdicts: Vec<(&Case, Verdict)> = futures_util::stream::iter(cases)
            .map(|c| {
                let (client, base) = (&client, &base);
                async move { (c, send(client, base, c).await) }
            })
            .buffer_unordered(concurrency)
            .collect()
            .await;
        for (c, verdict) in verdicts {
            let entry = figures.entry(c.class).or_default();
            entry.0 += 1;
            let what = || {
                let (class, protocol, method) = (c.class, c.protocol, &c.method);
                format!("[{class} / {protocol} / {method}] {}", preview(&c.body))
            };
            match verdict {
                Verdict::Refused => entry.1 += 1,
                Verdict::Served => entry.2 += 1,
                Verdict::Wrong(why) => wrong.push(format!("{}: {why}", what())),
                Verdict::Crash(why) => crashes.push(format!("{}: {why}", what())),
            }
        }
        still_up(&client, &base, &mut child, class).await;
    }

    // The sessions the abuse went through still work, and a new client is served.
    for p in &protocols[..2] {
        let Protocol::Handshake { session, version } = p else {
            unreachable!()
        };
        let ping = client
            .post(format!("{base}/mcp"))
            .headers(base_headers())
            .header("mcp-session-id", session)
            .header("mcp-protocol-version", version)
            .json(&json!({ "jsonrpc": "2.0", "id": 9, "method": "ping" }))
            .send()
            .await
            .unwrap();
        assert_eq!(ping.status(), 200, "session {version} survives");
    }
    let after = snapshot(&base).await;
    let changes = usize::from(before != after);

    let (code, _) = common::terminate(child).await;
    let logged = log.await.unwrap();
    let sent: usize = figures.values().map(|f| f.0).sum();
    let refused: usize = figures.values().map(|f| f.1).sum();
    let classes: Vec<String> = figures
        .iter()
        .map(|(class, (n, e, ok))| {
            let served = if *ok > 0 {
                format!(", {ok} served")
            } else {
                String::new()
            };
            format!("{class} {n} sent/{e} errors{served}")
        })
        .collect();
    println!(
        "FIGURES: protocol abuse: {sent} requests, {refused} errors, {} wrong answers, {} crashes, {changes} data changes, {:.1} s; {}",
        wrong.len(),
        crashes.len(),
        started.elapsed().as_secs_f64(),
        classes.join("; ")
    );
    for line in wrong.iter().chain(&crashes).take(30) {
        println!("  {line}");
    }
    assert!(
        crashes.is_empty(),
        "5xx, hangs or dropped connections: {crashes:#?}"
    );
    assert!(
        wrong.is_empty(),
        "{} answers not as expected (first ones above)",
        wrong.len()
    );
    assert_eq!(before, after, "bad input changed data");
    assert!(
        logged.iter().all(|l| !l.contains("panicked")),
        "the server panicked: {logged:#?}"
    );
    assert_eq!(code, Some(0), "ares shuts down cleanly after the abuse");
}

fn preview(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(&body[..body.len().min(120)]).into_owned();
    if body.len() > 120 {
        format!("{text}… ({} bytes)", body.len())
    } else {
        text
    }
}
