//! One store contract, two backends: every test here runs against the embedded store (a real
//! SQLite file in a temp directory) and the fleet's store (a real PostgreSQL, private to the
//! test), through the same `Store` trait the gateway uses. What only one backend has (SQLite's
//! files and pragmas, a fleet's leases and fencing) is tested beside that backend.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use txgate::store::{
    Applied, Claim, Durability, Embedded, EmbeddedLimits, FleetSettings, Health, Mutation,
    Postgres as PostgresStore, Quota, SagaFilter, SagaKey, SagaRow, Store, StoreError,
};

use crate::support::postgres::Postgres;
use crate::support::wait_until;

/// A store under test, and what must live as long as it.
struct Backend {
    name: &'static str,
    store: Arc<dyn Store>,
    /// Removes a saga's row behind the store's back, as an operator's hand would.
    remove: Box<dyn Fn(&str) + Send + Sync>,
    _dir: Option<tempfile::TempDir>,
    _db: Option<Arc<Postgres>>,
}

/// Both backends, fresh.
async fn backends() -> Vec<Backend> {
    vec![embedded(), postgres().await]
}

fn embedded() -> Backend {
    let dir = tempfile::tempdir().unwrap();
    let limits = EmbeddedLimits {
        cache_entries_max: 100,
        sagas: Quota::UNLIMITED,
        retention_ms: 0,
    };
    let store = Arc::new(Embedded::open(dir.path(), limits, None).unwrap());
    let file = dir.path().join("txgate.db");
    let remove = move |id: &str| {
        let conn = rusqlite::Connection::open(&file).unwrap();
        conn.execute("DELETE FROM sagas WHERE id = ?1", [id])
            .unwrap();
    };
    Backend {
        name: "embedded",
        store,
        remove: Box::new(remove),
        _dir: Some(dir),
        _db: None,
    }
}

async fn postgres() -> Backend {
    let db = Arc::new(Postgres::start());
    let settings = FleetSettings {
        url: db.url(),
        gateway: "contract".into(),
        instance: "contract-test".into(),
        lease: Duration::from_millis(1000),
        retention_ms: 0,
    };
    let store = tokio::task::spawn_blocking(move || PostgresStore::open(settings, None))
        .await
        .unwrap()
        .unwrap();
    let sql = db.clone();
    let remove = move |id: &str| {
        sql.sql(&format!("DELETE FROM sagas WHERE id = '{id}'"));
    };
    Backend {
        name: "postgres",
        store: Arc::new(store),
        remove: Box::new(remove),
        _dir: None,
        _db: Some(db),
    }
}

fn put(value: &str, ttl_ms: Option<u64>) -> Mutation {
    Mutation::Put {
        value: Bytes::from(value.to_string()),
        ttl_ms,
    }
}

/// A saga row; `id` sorts like a UUID v7 created long ago.
fn saga(id: &str, request_id: &str, status: &'static str, expires_at_ms: Option<u64>) -> SagaRow {
    SagaRow {
        id: id.into(),
        key: SagaKey {
            route: "transfers".into(),
            client: "".into(),
            request_id: request_id.into(),
        },
        status,
        created_ms: 1,
        updated_ms: 2,
        expires_at_ms,
        record: Bytes::from_static(b"record"),
        replaces_bytes: 6,
        epoch: 1,
        admin: None,
    }
}

#[tokio::test]
async fn a_saga_key_is_claimed_once_and_the_loser_sees_the_winner() {
    for Backend { name, store, .. } in backends().await {
        let first = store.claim_saga(saga("s1", "r1", "pending", None)).await;
        assert_eq!(first, Ok(Claim::Won), "{name}");
        match store.claim_saga(saga("s2", "r1", "pending", None)).await {
            Ok(Claim::Exists(row)) => assert_eq!(&*row.id, "s1", "{name}"),
            other => panic!("{name}: two sagas for one key: {other:?}"),
        }
        let mut other_client = saga("s3", "r1", "pending", None);
        other_client.key.client = "acme".into();
        assert_eq!(
            store.claim_saga(other_client).await,
            Ok(Claim::Won),
            "{name}: clients are apart"
        );
    }
}

#[tokio::test]
async fn a_save_replaces_the_record_and_a_save_of_a_vanished_row_is_refused() {
    for backend in backends().await {
        let (name, store) = (backend.name, &backend.store);
        store
            .claim_saga(saga("s1", "r1", "pending", None))
            .await
            .unwrap();
        let mut next = saga("s1", "r1", "compensating", None);
        next.record = Bytes::from_static(b"record, later");
        store.save_saga(next).await.unwrap();
        let row = store.saga_by_id("s1").await.unwrap().unwrap();
        assert_eq!(
            (row.status, &row.record[..]),
            ("compensating", &b"record, later"[..]),
            "{name}"
        );
        (backend.remove)("s1");
        let refused = store
            .save_saga(saga("s1", "r1", "completed", Some(1)))
            .await;
        assert_eq!(
            refused,
            Err(StoreError::Fenced),
            "{name}: never a silent success"
        );
    }
}

#[tokio::test]
async fn finished_sagas_expire_listings_filter_by_status_and_the_unfinished_are_found() {
    for Backend { name, store, .. } in backends().await {
        for (id, status) in [("00a", "pending"), ("00b", "pending"), ("00c", "stuck")] {
            store.claim_saga(saga(id, id, status, None)).await.unwrap();
        }
        store
            .save_saga(saga("00a", "00a", "completed", Some(1)))
            .await
            .unwrap();
        let mut unfinished: Vec<String> = store
            .unfinished_sagas()
            .await
            .unwrap()
            .iter()
            .map(|r| r.id.to_string())
            .collect();
        unfinished.sort();
        assert_eq!(unfinished, ["00b", "00c"], "{name}");
        for (status, expected) in [("stuck", 1), ("completed", 1), ("pending", 1)] {
            let filter = SagaFilter {
                status: Some(status),
                limit: 10,
                ..SagaFilter::default()
            };
            let listed = store.sagas(filter).await.unwrap();
            assert_eq!(listed.len(), expected, "{name}: {status}");
            assert!(listed.iter().all(|row| row.status == status), "{name}");
        }
        let listed = |filter: SagaFilter| {
            let store = store.clone();
            async move {
                let rows = store.sagas(filter).await.unwrap();
                rows.iter().map(|r| r.id.to_string()).collect::<Vec<_>>()
            }
        };
        let of = |route: Option<&str>, before_ms: Option<u64>| SagaFilter {
            route: route.map(str::to_string),
            before_ms,
            limit: 10,
            ..SagaFilter::default()
        };
        let all = ["00c", "00b", "00a"];
        assert_eq!(listed(of(Some("transfers"), None)).await, all, "{name}");
        assert!(listed(of(Some("refunds"), None)).await.is_empty(), "{name}");
        // Ids sort by creation time: "00…" ones were made after the epoch's first millisecond.
        assert!(listed(of(None, Some(0))).await.is_empty(), "{name}");
        assert_eq!(listed(of(None, Some(u64::MAX >> 16))).await, all, "{name}");
        let counts = store.saga_counts(1).await.unwrap();
        assert_eq!(
            counts,
            [
                ("pending", 1),
                ("compensating", 0),
                ("stuck", 1),
                ("completed", 1),
                ("compensated", 0)
            ],
            "{name}: each status counted, up to the cap"
        );
        assert_eq!(store.expire().await.unwrap(), 1, "{name}");
        assert_eq!(store.saga_by_id("00a").await.unwrap(), None, "{name}");
        assert_eq!(
            store.saga_by_id("00b").await.unwrap().unwrap().status,
            "pending",
            "{name}"
        );
    }
}

#[tokio::test]
async fn a_search_finds_sagas_by_id_request_id_or_client_newest_first_and_a_key_finds_one() {
    for Backend { name, store, .. } in backends().await {
        let rows = [
            ("01a", "order-7", "", "completed"),
            ("01b", "order-7", "acme", "stuck"),
            ("01c", "order-8", "acme", "pending"),
            ("01d", "order-9", "other", "pending"),
        ];
        for (id, request_id, client, status) in rows {
            let mut row = saga(id, request_id, status, None);
            row.key.client = client.into();
            store.claim_saga(row).await.unwrap();
        }
        let ids = |rows: Vec<SagaRow>| -> Vec<String> {
            rows.iter().map(|row| row.id.to_string()).collect()
        };
        let all = SagaFilter {
            limit: 10,
            ..SagaFilter::default()
        };
        let search = |text: &'static str, filter| {
            let store = store.clone();
            async move { ids(store.search_sagas(text, filter).await.unwrap()) }
        };
        assert_eq!(
            search("order-7", all.clone()).await,
            ["01b", "01a"],
            "{name}"
        );
        assert_eq!(search("acme", all.clone()).await, ["01c", "01b"], "{name}");
        assert_eq!(search("01d", all.clone()).await, ["01d"], "{name}");
        assert!(
            search("order", all.clone()).await.is_empty(),
            "{name}: exact only"
        );
        assert!(search("01", all).await.is_empty(), "{name}: exact only");
        let key = |client: &str, request_id: &str| SagaKey {
            route: "transfers".into(),
            client: client.into(),
            request_id: request_id.into(),
        };
        let by_key = |key| {
            let store = store.clone();
            async move {
                store
                    .saga_by_key(&key)
                    .await
                    .unwrap()
                    .map(|row| row.id.to_string())
            }
        };
        assert_eq!(
            by_key(key("acme", "order-7")).await.as_deref(),
            Some("01b"),
            "{name}"
        );
        assert_eq!(
            by_key(key("", "order-7")).await.as_deref(),
            Some("01a"),
            "{name}"
        );
        assert_eq!(
            by_key(key("other", "order-7")).await,
            None,
            "{name}: the client counts"
        );
        let stuck = SagaFilter {
            status: Some("stuck"),
            limit: 10,
            ..SagaFilter::default()
        };
        assert_eq!(search("acme", stuck).await, ["01b"], "{name}");
        let one = SagaFilter {
            limit: 1,
            ..SagaFilter::default()
        };
        assert_eq!(search("acme", one).await, ["01c"], "{name}");
    }
}

#[tokio::test]
async fn keys_follow_put_delete_compare_and_swap_and_increment_in_both_durabilities() {
    for Backend { name, store, .. } in backends().await {
        for durability in [Durability::Durable, Durability::Volatile] {
            let apply = |key: &'static str, mutation| store.mutate("p", key, mutation, durability);
            assert_eq!(apply("k", put("v1", None)).await, Ok(Applied::Stored));
            let swap = |expected: Option<&str>, new: Option<&str>| Mutation::CompareAndSwap {
                expected: expected.map(|e| Bytes::from(e.to_string())),
                new: new.map(|n| Bytes::from(n.to_string())),
                ttl_ms: None,
            };
            assert_eq!(
                apply("k", swap(Some("v0"), Some("x"))).await,
                Ok(Applied::Swapped(false))
            );
            assert_eq!(
                apply("k", swap(Some("v1"), Some("v2"))).await,
                Ok(Applied::Swapped(true))
            );
            assert_eq!(
                apply("fresh", swap(None, Some("n"))).await,
                Ok(Applied::Swapped(true))
            );
            assert_eq!(
                apply("fresh", swap(None, Some("n"))).await,
                Ok(Applied::Swapped(false))
            );
            let got = store.get("p", "k", durability).await.unwrap();
            assert_eq!(got.as_deref(), Some(&b"v2"[..]), "{name} {durability:?}");
            let add = |delta| Mutation::Increment {
                delta,
                ttl_ms: None,
            };
            assert_eq!(apply("n", add(2)).await, Ok(Applied::Counter(2)));
            assert_eq!(apply("n", add(-5)).await, Ok(Applied::Counter(-3)));
            assert_eq!(
                apply("k", add(1)).await,
                Err(StoreError::NotANumber),
                "{name}"
            );
            assert_eq!(
                apply("k", Mutation::Delete).await,
                Ok(Applied::Deleted(true))
            );
            assert_eq!(
                apply("k", Mutation::Delete).await,
                Ok(Applied::Deleted(false))
            );
            assert_eq!(store.get("p", "k", durability).await.unwrap(), None);
        }
    }
}

#[tokio::test]
async fn a_key_past_its_ttl_is_gone_and_gives_its_room_back() {
    // The quota counts the keys that exist: two keys that expired and were swept leave room for
    // two more (SPEC §8; on PostgreSQL, within a lease).
    for Backend { name, store, .. } in backends().await {
        let two = Quota {
            keys_max: 2,
            bytes_max: u64::MAX,
        };
        store.set_quota("rate", two);
        for key in ["a", "b"] {
            store
                .mutate("rate", key, put("1", Some(150)), Durability::Volatile)
                .await
                .unwrap();
            store
                .mutate("rate", key, put("1", Some(150)), Durability::Durable)
                .await
                .unwrap();
        }
        for durability in [Durability::Durable, Durability::Volatile] {
            let refused = store.mutate("rate", "c", put("1", None), durability).await;
            assert!(
                matches!(refused, Err(StoreError::LimitReached { what: "keys", .. })),
                "{name}: {refused:?}"
            );
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert_eq!(
            store.get("rate", "a", Durability::Durable).await.unwrap(),
            None
        );
        assert_eq!(
            store.get("rate", "a", Durability::Volatile).await.unwrap(),
            None
        );
        assert!(store.expire().await.unwrap() >= 4, "{name}");
        wait_until(Duration::from_secs(5), "the room to come back", || async {
            let mut fits = true;
            for durability in [Durability::Durable, Durability::Volatile] {
                for key in ["c", "d"] {
                    fits &= store
                        .mutate("rate", key, put("1", None), durability)
                        .await
                        .is_ok();
                }
            }
            fits
        })
        .await;
    }
}

#[tokio::test]
async fn a_namespace_at_its_byte_quota_is_refused_while_others_go_on() {
    for Backend { name, store, .. } in backends().await {
        let small = Quota {
            keys_max: 100,
            bytes_max: 64,
        };
        store.set_quota("flood", small);
        let forty = "x".repeat(40);
        store
            .mutate("flood", "a", put(&forty, None), Durability::Durable)
            .await
            .unwrap();
        let refused = store
            .mutate("flood", "b", put(&forty, None), Durability::Durable)
            .await;
        assert!(
            matches!(refused, Err(StoreError::LimitReached { what: "bytes", .. })),
            "{name}: {refused:?}"
        );
        store
            .mutate("other", "b", put(&forty, None), Durability::Durable)
            .await
            .unwrap();
        store
            .mutate("flood", "a", Mutation::Delete, Durability::Durable)
            .await
            .unwrap();
        store
            .mutate("flood", "b", put(&forty, None), Durability::Durable)
            .await
            .unwrap_or_else(|e| panic!("{name}: room again after a delete: {e}"));
    }
}

#[tokio::test]
async fn a_hold_belongs_to_one_request_until_it_is_released() {
    for Backend { name, store, .. } in backends().await {
        let first = store
            .hold("idem", "k", 1, Bytes::from_static(b"first"))
            .await
            .unwrap();
        assert_eq!(first, None, "{name}: taken");
        let again = store.hold("idem", "k", 1, Bytes::new()).await.unwrap();
        assert_eq!(again, None, "{name}: the holder holds it still");
        let other = store
            .hold("idem", "k", 2, Bytes::from_static(b"second"))
            .await
            .unwrap();
        assert_eq!(
            other.as_deref(),
            Some(&b"first"[..]),
            "{name}: held by the first"
        );
        store.release("idem", "k", 1);
        wait_until(Duration::from_secs(5), "the hold to be free", || async {
            store
                .hold("idem", "k", 2, Bytes::new())
                .await
                .unwrap()
                .is_none()
        })
        .await;
    }
}

#[tokio::test]
async fn a_healthy_store_is_writable_and_its_writer_moves() {
    for Backend { name, store, .. } in backends().await {
        assert_eq!(store.health(), Health::Writable, "{name}");
        let before = store.progress().commits;
        store
            .claim_saga(saga("s1", "r1", "pending", None))
            .await
            .unwrap();
        let after = store.progress();
        assert!(after.commits > before, "{name}: {after:?}");
        assert_eq!(after.busy, None, "{name}: idle again");
    }
}
