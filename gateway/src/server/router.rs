//! Route matching (SPEC §2): routes in file order, exact path or prefix. The first route whose path
//! and method both match wins; a path that some route matches with another method gets 405 with
//! `Allow`; anything else gets 404. `CONNECT` and `TRACE` are never proxied (SPEC §3): one would
//! open a tunnel through the gateway, the other echo the client's headers back; both get 405.

use http::{HeaderValue, Method, header};

use crate::error::{Error, ErrorKind};

/// Methods no route ever serves.
const NEVER_ROUTED: [Method; 2] = [Method::CONNECT, Method::TRACE];
/// What a route without `methods` serves.
const ANY_METHOD: [Method; 7] = [
    Method::GET,
    Method::HEAD,
    Method::POST,
    Method::PUT,
    Method::PATCH,
    Method::DELETE,
    Method::OPTIONS,
];

/// How a route matches paths.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PathMatch {
    /// The path equals this.
    Exact(String),
    /// The path starts with this.
    Prefix(String),
}

impl PathMatch {
    fn matches(&self, path: &str) -> bool {
        match self {
            Self::Exact(exact) => path == exact,
            Self::Prefix(prefix) => path.starts_with(prefix.as_str()),
        }
    }
}

/// The matching part of one route; `T` is what the route leads to.
#[derive(Debug)]
pub struct Entry<T> {
    /// Path rule.
    pub path: PathMatch,
    /// Allowed methods; empty means any.
    pub methods: Vec<Method>,
    /// The route itself.
    pub target: T,
}

/// Routes in file order.
#[derive(Debug)]
pub struct Router<T> {
    entries: Vec<Entry<T>>,
}

impl<T> Router<T> {
    /// A router over entries in file order.
    pub fn new(entries: Vec<Entry<T>>) -> Self {
        Self { entries }
    }

    /// The targets in file order.
    pub fn targets(&self) -> impl Iterator<Item = &T> {
        self.entries.iter().map(|e| &e.target)
    }

    /// Finds the route for a request.
    pub fn find(&self, method: &Method, path: &str) -> Result<&T, Error> {
        if NEVER_ROUTED.contains(method) {
            return Err(self.not_allowed(method, path));
        }
        let mut path_matched = false;
        for entry in &self.entries {
            if !entry.path.matches(path) {
                continue;
            }
            if entry.methods.is_empty() || entry.methods.contains(method) {
                return Ok(&entry.target);
            }
            path_matched = true;
        }
        if path_matched {
            Err(self.not_allowed(method, path))
        } else {
            Err(Error::new(
                ErrorKind::NotFound,
                format!("no route matches {path}"),
            ))
        }
    }

    fn not_allowed(&self, method: &Method, path: &str) -> Error {
        let mut allowed: Vec<&str> = Vec::new();
        for entry in self.entries.iter().filter(|e| e.path.matches(path)) {
            let methods = if entry.methods.is_empty() {
                &ANY_METHOD[..]
            } else {
                &entry.methods[..]
            };
            for m in methods {
                if !allowed.contains(&m.as_str()) {
                    allowed.push(m.as_str());
                }
            }
        }
        let allow = allowed.join(", ");
        let detail = format!("{method} is not allowed on {path}; allowed: {allow}");
        let error = Error::new(ErrorKind::MethodNotAllowed, detail);
        match HeaderValue::from_str(&allow) {
            Ok(value) => error.with_header(header::ALLOW, value),
            Err(_) => error,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn router() -> Router<&'static str> {
        Router::new(vec![
            Entry {
                path: PathMatch::Exact("/transfers".into()),
                methods: vec![Method::POST],
                target: "transfers",
            },
            Entry {
                path: PathMatch::Prefix("/api/".into()),
                methods: vec![Method::GET],
                target: "api-read",
            },
            Entry {
                path: PathMatch::Prefix("/api/".into()),
                methods: vec![],
                target: "api-any",
            },
        ])
    }

    #[test]
    fn first_route_matching_path_and_method_wins() {
        let router = router();
        assert_eq!(*router.find(&Method::GET, "/api/x").unwrap(), "api-read");
        assert_eq!(*router.find(&Method::PUT, "/api/x").unwrap(), "api-any");
        assert_eq!(
            *router.find(&Method::POST, "/transfers").unwrap(),
            "transfers"
        );
    }

    #[test]
    fn wrong_method_is_405_with_allow_and_unknown_path_is_404() {
        let router = router();
        let error = router.find(&Method::GET, "/transfers").unwrap_err();
        assert_eq!(error.kind(), ErrorKind::MethodNotAllowed);
        let response = error.into_response(None);
        assert_eq!(response.headers()[header::ALLOW], "POST");
        let error = router.find(&Method::GET, "/transfers/1").unwrap_err();
        assert_eq!(error.kind(), ErrorKind::NotFound);
    }

    #[test]
    fn connect_and_trace_are_never_routed() {
        let router = router();
        for method in [Method::CONNECT, Method::TRACE] {
            let error = router.find(&method, "/api/x").unwrap_err();
            assert_eq!(error.kind(), ErrorKind::MethodNotAllowed);
            let allow = error.into_response(None).headers()[header::ALLOW].clone();
            assert!(
                allow.to_str().unwrap().contains("GET")
                    && !allow.to_str().unwrap().contains("TRACE"),
                "{allow:?}"
            );
        }
    }
}
