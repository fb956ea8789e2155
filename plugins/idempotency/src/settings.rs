//! The plugin's config, and what it derives from a request: the store key and the fingerprint.

use serde::Deserialize;
use sha2::{Digest, Sha256};
use txgate_plugin_sdk::Request;

/// `[plugins.NAME.config]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub(crate) struct Settings {
    /// How long a finished response is replayed.
    pub(crate) ttl_secs: u64,
    /// Partitions keys per client: `"header:NAME"` or `"ip"`.
    pub(crate) client_key: Option<String>,
    /// Methods the plugin applies to; others pass through untouched.
    pub(crate) methods: Vec<String>,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            ttl_secs: 86_400,
            client_key: None,
            methods: ["POST", "PUT", "PATCH", "DELETE"]
                .map(String::from)
                .to_vec(),
        }
    }
}

impl Settings {
    /// Whether the request's method is covered.
    pub(crate) fn covers(&self, request: &Request<'_>) -> bool {
        let method = request.method();
        self.methods.iter().any(|m| m.eq_ignore_ascii_case(&method))
    }

    /// The store key: route, client partition and X-Request-ID. The client part is hashed so a
    /// long header value cannot push the key past the store's limit.
    pub(crate) fn key(&self, request: &Request<'_>) -> String {
        let client = match self.client_key.as_deref() {
            Some("ip") => request.client_ip(),
            Some(spec) => spec
                .strip_prefix("header:")
                .and_then(|name| request.header(name))
                .unwrap_or_else(|| "-".to_string()),
            None => String::new(),
        };
        let partition = if client.is_empty() {
            "-".to_string()
        } else {
            hex(&Sha256::digest(client.as_bytes())[..8])
        };
        format!("{}/{}/{}", request.route(), partition, request.request_id())
    }

    /// Milliseconds a record lives.
    pub(crate) fn ttl_ms(&self) -> u64 {
        self.ttl_secs.saturating_mul(1000)
    }
}

/// The request's fingerprint: method, path and body.
pub(crate) fn fingerprint(request: &Request<'_>) -> String {
    let mut hash = Sha256::new();
    hash.update(request.method().as_bytes());
    hash.update([0]);
    hash.update(request.path().as_bytes());
    hash.update([0]);
    hash.update(request.body());
    hex(&hash.finalize()[..16])
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn on(method: &str, path: &str, body: &str) -> Request<'static> {
        Request::new(method, path)
            .with_header("x-request-id", "r-1")
            .with_header("x-client", "acme")
            .with_body(body)
    }

    fn request(body: &str) -> Request<'static> {
        on("POST", "/transfers", body)
    }

    #[test]
    fn fingerprint_covers_method_path_and_body() {
        let base = fingerprint(&request("{\"amount\":1}"));
        assert_eq!(base, fingerprint(&request("{\"amount\":1}")));
        assert_ne!(base, fingerprint(&request("{\"amount\":2}")));
        let other_path = on("POST", "/transfers?x=1", "{\"amount\":1}");
        assert_ne!(base, fingerprint(&other_path));
        let other_method = on("PUT", "/transfers", "{\"amount\":1}");
        assert_ne!(base, fingerprint(&other_method));
    }

    #[test]
    fn a_body_boundary_cannot_be_shifted_into_the_path() {
        let a = on("POST", "/a", "b");
        let b = on("POST", "/ab", "");
        assert_ne!(fingerprint(&a), fingerprint(&b));
    }

    #[test]
    fn keys_partition_by_client_when_configured() {
        let mut settings = Settings::default();
        let shared = settings.key(&request(""));
        settings.client_key = Some("header:x-client".into());
        let acme = settings.key(&request(""));
        assert_ne!(shared, acme);
        let other = Request::new("POST", "/transfers").with_header("x-request-id", "r-1");
        assert_ne!(
            acme,
            settings.key(&other),
            "a missing client header is its own partition"
        );
        settings.client_key = Some("ip".into());
        assert!(settings.key(&request("")).len() < 512);
    }

    #[test]
    fn methods_default_to_the_unsafe_ones() {
        let settings = Settings::default();
        assert!(settings.covers(&request("")));
        assert!(!settings.covers(&Request::new("GET", "/")));
    }
}
