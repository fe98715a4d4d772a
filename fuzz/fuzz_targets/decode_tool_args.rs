//! Fuzzes tool-argument decoding: any bytes that parse as JSON are decoded as every tool's
//! arguments. Decoding may refuse; it must never panic, and a refusal names a field.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(value) = serde_json::from_slice::<serde_json::Value>(data) else {
        return;
    };
    for tool in ares::mcp::tools::list() {
        if let Err(e) = ares::mcp::tools::decode_only(&tool.name, &value) {
            assert!(!e.message.is_empty());
        }
    }
});
