//! Tries to get out of the sandbox — read a file, open a TCP socket, read the environment and
//! the arguments — and answers with what happened to each attempt, as JSON.

use std::io::Read;

use txgate_plugin_sdk::{HookError, Plugin, Request, RequestDecision, Response};

/// The plugin.
pub struct Escape;

fn attempt<T>(result: std::io::Result<T>) -> String {
    match result {
        Ok(_) => "access".to_string(),
        Err(error) => format!("error: {error}"),
    }
}

#[txgate_plugin_sdk::plugin]
impl Plugin for Escape {
    fn on_request(_request: &Request<'_>) -> Result<RequestDecision, HookError> {
        let file = attempt(std::fs::File::open("/etc/passwd").and_then(|mut f| {
            let mut text = String::new();
            f.read_to_string(&mut text).map(|_| text)
        }));
        let cwd_listing = attempt(std::fs::read_dir("."));
        let socket = attempt(std::net::TcpStream::connect("127.0.0.1:1"));
        let env: Vec<(String, String)> = std::env::vars().collect();
        let args: Vec<String> = std::env::args().collect();
        let report = format!(
            "{{\"file\":{:?},\"dir\":{:?},\"socket\":{:?},\"env_vars\":{},\"args\":{}}}",
            file,
            cwd_listing,
            socket,
            env.len(),
            args.len()
        );
        Ok(RequestDecision::Respond(
            Response::new(200).with_body(report),
        ))
    }
}

txgate_plugin_sdk::export!(Escape);
