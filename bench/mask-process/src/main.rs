//! # txgate-bench-mask-process
//!
//! The anchor `bench/startup.sh` measures Wasm plugins against: the same masking, done by a
//! process of its own, as an external plugin server (Kong's Go plugin server, an `ext_proc`
//! sidecar) would do it. It links the mask plugin's own crate natively and runs its
//! `on_response` hook through the SDK's native host, so the code that masks is the code the
//! Wasm component runs; only the isolation differs (a process and a pipe instead of a sandboxed
//! instance in the gateway).
//!
//! Protocol, on stdin and stdout: each frame is a 4-byte big-endian length and that many bytes;
//! a request frame is a JSON response body, the answer frame the masked body. The config (the
//! plugin's `[plugins.mask.config]` as JSON) is the first argument.
//!
//! ```sh
//! txgate-bench-mask-process '{"rules": [{"path": "$..card", "mask": "keep_last"}]}'
//! ```

use std::io::{Read, Write};

use txgate_plugin_mask::MaskPlugin;
use txgate_plugin_sdk::testing::Harness;
use txgate_plugin_sdk::{Request, Response};

/// Largest frame read: the mask plugin's default `body_bytes_max`.
const FRAME_BYTES_MAX: usize = 1024 * 1024;

fn main() -> Result<(), String> {
    let config = std::env::args()
        .nth(1)
        .ok_or("usage: txgate-bench-mask-process CONFIG_JSON")?;
    let config = serde_json::from_str(&config).map_err(|e| format!("config: {e}"))?;
    let host = Harness::new().with_config(config);
    let request = Request::new("GET", "/accounts").with_route("api");
    let (mut input, mut output) = (std::io::stdin().lock(), std::io::stdout().lock());
    while let Some(body) = read_frame(&mut input)? {
        let response = Response::new(200)
            .with_header("content-type", "application/json")
            .with_body(body);
        let masked = host
            .on_response::<MaskPlugin>(request.clone(), response)
            .map_err(|e| format!("mask: {e:?}"))?;
        write_frame(&mut output, &masked.body)?;
    }
    Ok(())
}

/// The next frame, or `None` at the end of the input.
fn read_frame(input: &mut impl Read) -> Result<Option<Vec<u8>>, String> {
    let mut length = [0u8; 4];
    match input.read_exact(&mut length) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(e.to_string()),
    }
    let length = u32::from_be_bytes(length) as usize;
    if length > FRAME_BYTES_MAX {
        return Err(format!(
            "a frame of {length} bytes; the limit is {FRAME_BYTES_MAX}"
        ));
    }
    let mut body = vec![0; length];
    input.read_exact(&mut body).map_err(|e| e.to_string())?;
    Ok(Some(body))
}

fn write_frame(output: &mut impl Write, body: &[u8]) -> Result<(), String> {
    let length = u32::try_from(body.len()).map_err(|e| e.to_string())?;
    output
        .write_all(&length.to_be_bytes())
        .and_then(|()| output.write_all(body))
        .and_then(|()| output.flush())
        .map_err(|e| e.to_string())
}
