//! Bodies as the saga's route's `mask` plugin shows them (SPEC §6): an operator reading a saga
//! sees what a client of the route would, card numbers and e-mail addresses masked alike.
//!
//! The route's mask plugin is the one named `mask`, or whose module is `mask*.wasm`; only it runs
//! (an `audit` plugin beside it must not log an operator's look as a request). Should it fail, or
//! should a plugin the saga ran with be gone from the running config, the body is withheld,
//! never shown unmasked.

use std::net::{IpAddr, Ipv4Addr};
use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Method, Response, header};
use http_body_util::{BodyExt, Full};

use crate::config::Config;
use crate::gateway::Gateway;
use crate::plugin::{RequestFacts, RequestScope};
use crate::saga::SagaRecord;

/// A body for the page: what it is, and its text as shown.
pub(crate) struct Shown {
    /// "Request", or the step whose answer it is.
    pub(crate) what: String,
    /// The text, masked when the route has a mask plugin.
    pub(crate) text: String,
}

/// Whether `name` is a mask plugin.
fn is_mask(config: &Config, name: &str) -> bool {
    let module = config.plugins.get(name).map(|p| p.module.as_path());
    let stem = module
        .and_then(Path::file_stem)
        .and_then(|s| s.to_str())
        .unwrap_or("");
    name == "mask" || stem.starts_with("mask")
}

/// The saga's request body and each step's answer, as its route's mask plugin shows them.
pub(crate) async fn bodies(gateway: &Gateway, record: &SagaRecord) -> (Vec<Shown>, bool) {
    let mut bodies = vec![("Request".to_string(), record.body.clone())];
    for (step, state) in record.plan.iter().zip(&record.steps) {
        if let Some(answer) = &state.answer {
            let what = format!("{} answered {}", step.name, answer.status);
            bodies.push((what, Bytes::from(answer.body.clone())));
        }
    }
    let version = gateway.version();
    // The saga's own plugins, as it started; older records name none, so the route's.
    let plugins = match record.plugins.as_deref() {
        Some(plugins) => plugins,
        None => (version.config.routes.iter())
            .find(|r| *r.name == *record.route)
            .map_or(&[][..], |r| &r.plugins[..]),
    };
    let names: Vec<String> = (plugins.iter())
        .filter(|name| is_mask(&version.config, name))
        .cloned()
        .collect();
    // A plugin the saga ran with that the running config no longer loads may have been its
    // mask: what it would show cannot be told, so nothing is shown.
    if let Some(gone) = plugins
        .iter()
        .find(|name| !version.config.plugins.contains_key(*name))
    {
        let why = format!("(withheld: the saga's plugin `{gone}` is not in the running config)");
        return (
            bodies.into_iter().map(|b| withheld(b, &why)).collect(),
            true,
        );
    }
    let chain = match version.chain_of(&names) {
        Ok(Some(chain)) => chain.without_reuse(),
        Ok(None) => return (bodies.into_iter().map(plain).collect(), false),
        Err(why) => {
            let why = format!("(withheld: {why})");
            return (
                bodies.into_iter().map(|b| withheld(b, &why)).collect(),
                true,
            );
        }
    };
    let scope = RequestScope::new();
    let facts = Arc::new(request_facts(record));
    let mut shown = Vec::with_capacity(bodies.len());
    for (what, body) in bodies {
        let response = json_response(body);
        let text = match chain
            .on_response(chain.len(), &facts, response, &scope)
            .await
        {
            Ok(masked) => match masked.into_body().collect().await {
                Ok(body) => String::from_utf8_lossy(&body.to_bytes()).into_owned(),
                Err(never) => match never {},
            },
            Err(error) => format!("(withheld: the mask plugin failed: {})", error.detail()),
        };
        shown.push(Shown { what, text });
    }
    (shown, true)
}

fn withheld((what, _): (String, Bytes), why: &str) -> Shown {
    Shown {
        what,
        text: why.to_string(),
    }
}

fn plain((what, body): (String, Bytes)) -> Shown {
    Shown {
        what,
        text: String::from_utf8_lossy(&body).into_owned(),
    }
}

fn json_response(body: Bytes) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(body));
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}

/// The saga's request as its plugins saw it, near enough for `on-response`.
fn request_facts(record: &SagaRecord) -> RequestFacts {
    let mut headers = HeaderMap::new();
    if let Some(value) = record
        .content_type
        .as_deref()
        .and_then(|ct| HeaderValue::from_str(ct).ok())
    {
        headers.insert(header::CONTENT_TYPE, value);
    }
    RequestFacts {
        route: Arc::new(record.route.to_string()),
        method: Method::POST,
        path: "/".to_string(),
        headers,
        body: record.body.clone(),
        client_ip: IpAddr::V4(Ipv4Addr::LOCALHOST),
        request_id: HeaderValue::from_str(&record.request_id)
            .unwrap_or(HeaderValue::from_static("")),
        id_from_client: true,
        saga_route: true,
        client_key: None,
        received: Instant::now(),
    }
}
