//! Holds: which request under way has taken which key. A hold is not a stored value; it lives
//! only as long as its request, and only in this process, so a crash can never leave a key
//! taken. The host releases a request's holds when the request ends, however it ends.

use bytes::Bytes;
use dashmap::DashMap;
use dashmap::mapref::entry::Entry;

/// The holds of this gateway.
#[derive(Debug, Default)]
pub(super) struct Holds {
    taken: DashMap<(Box<str>, Box<str>), (u64, Bytes)>,
}

impl Holds {
    /// Takes `key` for `holder`: `None` when it holds it now, or the value of the request that
    /// holds it.
    pub(super) fn hold(
        &self,
        namespace: &str,
        key: &str,
        holder: u64,
        value: Bytes,
    ) -> Option<Bytes> {
        match self.taken.entry((namespace.into(), key.into())) {
            Entry::Vacant(e) => {
                e.insert((holder, value));
                None
            }
            Entry::Occupied(e) if e.get().0 == holder => None,
            Entry::Occupied(e) => Some(e.get().1.clone()),
        }
    }

    /// Ends `holder`'s hold on `key`.
    pub(super) fn release(&self, namespace: &str, key: &str, holder: u64) {
        self.taken
            .remove_if(&(namespace.into(), key.into()), |_, (by, _)| *by == holder);
    }

    /// Holds taken now.
    pub(super) fn len(&self) -> usize {
        self.taken.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_request_holds_a_key_until_it_releases_it() {
        let holds = Holds::default();
        let fp = Bytes::from_static(b"fp-1");
        assert_eq!(holds.hold("p", "k", 1, fp.clone()), None);
        assert_eq!(
            holds.hold("p", "k", 1, fp.clone()),
            None,
            "again by the holder"
        );
        assert_eq!(holds.hold("p", "k", 2, Bytes::new()), Some(fp));
        holds.release("p", "k", 2);
        assert_eq!(holds.len(), 1, "only the holder releases");
        holds.release("p", "k", 1);
        assert_eq!(holds.hold("p", "k", 2, Bytes::new()), None);
    }
}
