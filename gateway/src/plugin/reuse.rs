//! Decisions the gateway reuses (`txgate:plugin/decisions`, since 0.2.2). A plugin declares,
//! during `on-request`, that the `continue` it returns depends only on its config, the route and
//! the values of a few request headers, for a while; a later request of the route with the same
//! values gets the same header changes without a call. Since 0.2.3 the same holds for the
//! changes an `on-response` call returns, when they do not depend on the response (a header
//! every response gets): each hook keeps its own map, of the changes it returns.
//!
//! Why: an identity check reads one header, and a client sends the same token for minutes. The
//! plugin can remember the tokens it verified, but a call into it still costs microseconds (the
//! fiber, the lent view, copying the headers in and the changes out); a lookup here costs a
//! hash of the header values.
//!
//! What keeps it right: the key holds the route, and each varied header's name and every value
//! (an absent header is its own value), compared in full, so two requests share a decision only
//! when everything the plugin said it read is the same. A decision lives with its plugin
//! version, so a reload (new keys, new config) starts empty; each one expires after the time the
//! plugin gave. The map is bounded in entries and in key bytes: one that does not fit is not
//! remembered, and the next request calls the plugin as before.

use std::cell::RefCell;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use dashmap::DashMap;
use http::HeaderName;
use prometheus_client::metrics::counter::Counter;

use super::convert::{Edits, ResponseEdits};
use super::view::RequestFacts;

/// Decisions one plugin version keeps, per hook.
const ENTRIES_MAX: usize = 1024;
/// Largest changes remembered (header names and values, added up): a reusable decision is a
/// few headers. Larger ones are not kept, so a plugin's map stays within a few tens of MiB
/// whatever it returns; the next request calls the plugin as before.
const CHANGES_BYTES_MAX: usize = 16 * 1024;
/// Longest key (the varied headers' values): a larger request is not remembered.
const KEY_BYTES_MAX: usize = 8 * 1024;

thread_local! {
    /// The key of a lookup, built again for each request; it grows to [`KEY_BYTES_MAX`] at most.
    static LOOKUP_KEY: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
}

/// What a call declared: the headers its decision depends on, and for how long it holds.
#[derive(Debug, Clone)]
pub(crate) struct Reuse {
    /// The request headers the decision depends on.
    pub vary: Arc<[HeaderName]>,
    /// How long it stays right.
    pub ttl: Duration,
}

/// A decision about to be remembered: its key, from the request as the plugin saw it.
#[derive(Debug)]
pub(super) struct Reusable {
    key: Box<[u8]>,
    reuse: Reuse,
}

impl Reusable {
    /// The key of `request` under `reuse`; `None` past [`KEY_BYTES_MAX`].
    pub(super) fn new(request: &RequestFacts, reuse: Reuse) -> Option<Self> {
        let key = key(request, &reuse.vary)?;
        Some(Self { key, reuse })
    }
}

struct Entry<C> {
    changes: Arc<C>,
    until: Instant,
}

/// One plugin version's reusable decisions, of both hooks that may declare them, kept checked
/// and parsed.
pub(super) struct Decisions {
    /// `on-request` decisions to continue: their header edits.
    pub requests: Reused<Edits>,
    /// `on-response` changes (status and headers; a new body is never remembered).
    pub responses: Reused<ResponseEdits>,
}

impl Decisions {
    /// Empty; each hook's decisions given again count in its counter.
    pub(super) fn new(requests: Counter, responses: Counter) -> Self {
        Self {
            requests: Reused::new(requests),
            responses: Reused::new(responses),
        }
    }
}

/// What a hook returns that may be remembered (`convert.rs` implements it), and its size.
pub(super) trait Changes {
    /// Header names and values, in bytes.
    fn bytes(&self) -> usize;
}

/// One plugin version's reusable decisions of one hook: the changes `C` it returned.
pub(super) struct Reused<C> {
    /// Whether the plugin ever declared a decision reusable: most never do, and their calls
    /// then pay one load here, not a lock.
    declared: AtomicBool,
    /// The header names the plugin last declared: later requests are looked up by them.
    vary: RwLock<Option<Arc<[HeaderName]>>>,
    entries: DashMap<Box<[u8]>, Entry<C>>,
    /// Decisions given again.
    reused: Counter,
}

impl<C: Changes> Reused<C> {
    /// Empty; each decision given again counts in `reused`.
    pub(super) fn new(reused: Counter) -> Self {
        Self {
            declared: AtomicBool::new(false),
            vary: RwLock::new(None),
            entries: DashMap::new(),
            reused,
        }
    }

    /// The changes remembered for `request`, if a decision for the same header values holds:
    /// the plugin is not called. Counted once they apply ([`Reused::given`]).
    pub(super) fn find(&self, request: &RequestFacts) -> Option<Arc<C>> {
        if !self.declared.load(Ordering::Relaxed) {
            return None;
        }
        let vary = self.vary.read().expect("reused vary");
        let vary = vary.as_deref()?;
        // Looked up with this thread's buffer: a lookup allocates nothing.
        LOOKUP_KEY.with_borrow_mut(|key| {
            write_key(key, request, vary)?;
            let entry = self.entries.get(&key[..])?;
            (Instant::now() < entry.until).then(|| entry.changes.clone())
        })
    }

    /// Counts a decision found and applied: one the gateway refused for this request is the
    /// plugin's failure (`output`), not a reuse.
    pub(super) fn given(&self) {
        self.reused.inc();
    }

    /// Remembers `changes` for requests with the key of `reusable`, for as long as it says;
    /// not past [`CHANGES_BYTES_MAX`].
    pub(super) fn remember(&self, reusable: Reusable, changes: C) {
        if changes.bytes() > CHANGES_BYTES_MAX {
            return;
        }
        let Reusable { key, reuse } = reusable;
        let now = Instant::now();
        {
            let mut vary = self.vary.write().expect("reused vary");
            if vary.as_deref() != Some(&reuse.vary[..]) {
                // Keys built from other names never match again: make room.
                self.entries.clear();
                *vary = Some(reuse.vary.clone());
            }
        }
        self.declared.store(true, Ordering::Relaxed);
        if self.entries.len() >= ENTRIES_MAX {
            self.entries.retain(|_, entry| entry.until > now);
            if self.entries.len() >= ENTRIES_MAX {
                return;
            }
        }
        let entry = Entry {
            changes: Arc::new(changes),
            until: now + reuse.ttl,
        };
        self.entries.insert(key, entry);
    }
}

/// The route, then each varied header's name, its number of values and each value, all
/// length-prefixed so that no two different requests make the same bytes. `None` past
/// [`KEY_BYTES_MAX`].
fn key(request: &RequestFacts, vary: &[HeaderName]) -> Option<Box<[u8]>> {
    let mut key = Vec::new();
    write_key(&mut key, request, vary)?;
    Some(key.into_boxed_slice())
}

/// Writes the key of `request` into `key`, which it clears first; `None` past
/// [`KEY_BYTES_MAX`].
fn write_key(key: &mut Vec<u8>, request: &RequestFacts, vary: &[HeaderName]) -> Option<()> {
    key.clear();
    // Sized once: a bearer token alone is about a kilobyte.
    let size = 4
        + request.route.len()
        + vary
            .iter()
            .map(|name| {
                let values = request.headers.get_all(name).iter();
                8 + name.as_str().len() + values.map(|v| 4 + v.len()).sum::<usize>()
            })
            .sum::<usize>();
    if size > KEY_BYTES_MAX {
        return None;
    }
    key.reserve_exact(size);
    push(key, request.route.as_bytes());
    for name in vary {
        push(key, name.as_str().as_bytes());
        let values = request.headers.get_all(name);
        let count = u32::try_from(values.iter().count()).ok()?;
        key.extend_from_slice(&count.to_le_bytes());
        for value in values {
            push(key, value.as_bytes());
        }
    }
    Some(())
}

fn push(key: &mut Vec<u8>, bytes: &[u8]) {
    let len = u32::try_from(bytes.len()).unwrap_or(u32::MAX);
    key.extend_from_slice(&len.to_le_bytes());
    key.extend_from_slice(bytes);
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{IpAddr, Ipv4Addr};

    use crate::plugin::bindings::txgate::plugin::types as wit;

    type Remembered = Reused<Edits>;

    fn vary(names: &[&'static str]) -> Reuse {
        Reuse {
            vary: names.iter().map(|n| HeaderName::from_static(n)).collect(),
            ttl: Duration::from_secs(60),
        }
    }

    fn keep(reused: &Remembered, request: &RequestFacts, reuse: Reuse, changes: &Edits) {
        let reusable = Reusable::new(request, reuse).expect("a key");
        reused.remember(reusable, changes.clone());
    }

    fn header_changes(value: &str) -> wit::HeaderChanges {
        wit::HeaderChanges {
            set: vec![wit::Header {
                name: "x-user-id".into(),
                value: value.into(),
            }],
            remove: vec!["x-user-id".into()],
        }
    }

    fn changes(value: &str) -> Edits {
        Edits::parse(&header_changes(value)).expect("valid edits")
    }

    /// The user a remembered decision names, as a request it is given to gets it.
    fn user(found: &Edits) -> String {
        let mut headers = http::HeaderMap::new();
        found.apply(&mut headers);
        headers["x-user-id"].to_str().expect("text").to_string()
    }

    fn request(route: &str, headers: &[(&'static str, &str)]) -> RequestFacts {
        let mut facts = RequestFacts {
            route: Arc::new(route.to_string()),
            method: http::Method::GET,
            path: "/".into(),
            headers: http::HeaderMap::new(),
            body: bytes::Bytes::new(),
            client_ip: IpAddr::V4(Ipv4Addr::LOCALHOST),
            request_id: http::HeaderValue::from_static("r-1"),
            id_from_client: true,
            saga_route: false,
            client_key: None,
            received: Instant::now(),
        };
        for (name, value) in headers {
            facts
                .headers
                .append(*name, value.parse().expect("a header value"));
        }
        facts
    }

    #[test]
    fn a_decision_given_again_is_counted() {
        let alice = request("pay", &[("authorization", "Bearer a")]);
        let count = Counter::default();
        let reused = Remembered::new(count.clone());
        keep(&reused, &alice, vary(&["authorization"]), &changes("alice"));
        assert!(reused.find(&alice).is_some());
        assert!(reused.find(&request("pay", &[])).is_none());
        assert_eq!(count.get(), 0, "found is not yet given");
        reused.given();
        assert_eq!(count.get(), 1);
    }

    #[test]
    fn large_changes_are_not_remembered() {
        let alice = request("pay", &[("authorization", "Bearer a")]);
        let reused = Remembered::new(Counter::default());
        let mut large = header_changes("alice");
        large.remove = vec!["x-a".repeat(100); 60];
        let large = Edits::parse(&large).expect("valid edits");
        assert!(large.bytes() > CHANGES_BYTES_MAX);
        keep(&reused, &alice, vary(&["authorization"]), &large);
        assert!(reused.find(&alice).is_none(), "called again instead");
        keep(&reused, &alice, vary(&["authorization"]), &changes("alice"));
        assert!(reused.find(&alice).is_some());
    }

    #[test]
    fn only_the_same_route_and_header_values_share_a_decision() {
        let reused = Remembered::new(Counter::default());
        let alice = request("pay", &[("authorization", "Bearer a"), ("x-other", "1")]);
        keep(&reused, &alice, vary(&["authorization"]), &changes("alice"));
        let again = request("pay", &[("authorization", "Bearer a"), ("x-other", "2")]);
        let found = reused.find(&again).expect("the same token");
        assert_eq!(user(&found), "alice");
        assert!(
            reused
                .find(&request("pay", &[("authorization", "Bearer b")]))
                .is_none()
        );
        assert!(
            reused
                .find(&request("admin", &[("authorization", "Bearer a")]))
                .is_none()
        );
        assert!(
            reused.find(&request("pay", &[])).is_none(),
            "absent is its own value"
        );
        let twice = request(
            "pay",
            &[("authorization", "Bearer a"), ("authorization", "Bearer a")],
        );
        assert!(reused.find(&twice).is_none(), "every value counts");
    }

    #[test]
    fn values_of_other_names_never_match() {
        let reused = Remembered::new(Counter::default());
        keep(
            &reused,
            &request("pay", &[("authorization", "t")]),
            vary(&["authorization"]),
            &changes("a"),
        );
        keep(
            &reused,
            &request("pay", &[("x-key", "t")]),
            vary(&["x-key"]),
            &changes("b"),
        );
        let found = reused
            .find(&request("pay", &[("x-key", "t")]))
            .expect("x-key");
        assert_eq!(user(&found), "b");
        assert!(
            reused
                .find(&request("pay", &[("authorization", "t")]))
                .is_none(),
            "a new set of names starts afresh"
        );
    }

    #[test]
    fn a_decision_expires_and_the_map_is_bounded() {
        let reused = Remembered::new(Counter::default());
        let short = Reuse {
            ttl: Duration::ZERO,
            ..vary(&["authorization"])
        };
        let alice = request("pay", &[("authorization", "a")]);
        keep(&reused, &alice, short, &changes("a"));
        assert!(reused.find(&alice).is_none(), "expired");
        for n in 0..ENTRIES_MAX + 10 {
            let token = format!("t{n}");
            let one = request("pay", &[("authorization", &token)]);
            keep(&reused, &one, vary(&["authorization"]), &changes(&token));
        }
        assert_eq!(reused.entries.len(), ENTRIES_MAX);
        let huge = "x".repeat(KEY_BYTES_MAX);
        let big = request("other", &[("authorization", &huge)]);
        assert!(key(&big, &[HeaderName::from_static("authorization")]).is_none());
    }
}
