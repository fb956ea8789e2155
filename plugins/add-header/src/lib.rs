//! # txgate-plugin-add-header
//!
//! The smallest useful txgate plugin: it adds a header, named and valued by its config, to every
//! request on its way upstream and to every response on its way to the client.
//!
//! ```toml
//! [plugins.add_header]
//! module = "add_header.wasm"
//! [plugins.add_header.config]
//! name = "x-served-by"      # default "x-txgate-plugin"
//! value = "txgate"          # default "add-header"
//! ```
//!
//! Both headers depend on the config alone, so the plugin tells the gateway it may reuse both
//! (`decisions::reuse` and `decisions::reuse_response`, varying on no header): after the first
//! request of a route, the gateway adds them itself until the decisions expire or a reload
//! renews the config.

use serde::Deserialize;
use txgate_plugin_sdk::{
    HeaderChanges, HookError, Plugin, Request, RequestDecision, ResponseChanges, ResponseView,
    config, decisions, log,
};

/// The plugin's config.
#[derive(Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Settings {
    /// Header name.
    pub name: String,
    /// Header value.
    pub value: String,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            name: "x-txgate-plugin".into(),
            value: "add-header".into(),
        }
    }
}

/// The plugin.
pub struct AddHeader;

#[txgate_plugin_sdk::plugin]
impl Plugin for AddHeader {
    fn on_request(_request: &Request<'_>) -> Result<RequestDecision, HookError> {
        let settings = config::shared::<Settings>()?;
        let changes = HeaderChanges::none().set(&settings.name, &settings.value);
        // Nothing of the request is read: the same edit holds for every request of the route.
        if let Err(error) = decisions::reuse(&[], decisions::TTL_MS_MAX) {
            log::warn(&format!("the decision is not reusable: {error}"));
        }
        Ok(RequestDecision::Continue(changes))
    }

    fn on_response(
        _request: &Request<'_>,
        _response: &ResponseView<'_>,
    ) -> Result<ResponseChanges, HookError> {
        let settings = config::shared::<Settings>()?;
        // Nothing of the response is read either.
        if let Err(error) = decisions::reuse_response(&[], decisions::TTL_MS_MAX) {
            log::warn(&format!("the response's edit is not reusable: {error}"));
        }
        Ok(ResponseChanges::none().set(&settings.name, &settings.value))
    }
}

txgate_plugin_sdk::export!(AddHeader);

#[cfg(test)]
mod tests {
    use super::*;
    use txgate_plugin_sdk::Response;
    use txgate_plugin_sdk::serde_json::json;
    use txgate_plugin_sdk::testing::Harness;

    #[test]
    fn adds_the_configured_header_both_ways() {
        let host = Harness::new().with_config(json!({"name": "x-served-by", "value": "edge-1"}));
        let decision = host
            .on_request::<AddHeader>(Request::new("GET", "/"))
            .unwrap();
        let RequestDecision::Continue(changes) = decision else {
            panic!("the plugin never answers on its own")
        };
        assert_eq!(changes.set[0].name, "x-served-by");
        assert_eq!(changes.set[0].value, "edge-1");
        assert_eq!(
            host.reuse_declared(),
            vec![(
                Vec::<String>::new(),
                txgate_plugin_sdk::decisions::TTL_MS_MAX
            )],
            "the request's edit depends on no header"
        );
        let response = host
            .on_response::<AddHeader>(Request::new("GET", "/"), Response::new(200))
            .unwrap();
        assert_eq!(response.header("x-served-by"), Some("edge-1"));
        assert_eq!(
            host.response_reuse_declared(),
            vec![(
                Vec::<String>::new(),
                txgate_plugin_sdk::decisions::TTL_MS_MAX
            )],
            "the response's edit depends on nothing of the response"
        );
    }

    #[test]
    fn defaults_apply_without_config() {
        let host = Harness::new();
        let response = host
            .on_response::<AddHeader>(Request::new("GET", "/"), Response::new(204))
            .unwrap();
        assert_eq!(response.header("x-txgate-plugin"), Some("add-header"));
    }

    #[test]
    fn a_config_typo_is_a_failure_not_a_silent_default() {
        let host = Harness::new().with_config(json!({"nmae": "x"}));
        let error = host
            .on_request::<AddHeader>(Request::new("GET", "/"))
            .unwrap_err();
        assert!(matches!(error, HookError::Failed(reason) if reason.contains("nmae")));
    }
}
