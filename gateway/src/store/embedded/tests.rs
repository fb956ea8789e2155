//! What only the embedded store has, against a real SQLite file in a temp directory: its files,
//! pragmas, group commit, the sagas' quota and the directory's lock. The behaviour both backends
//! share is the contract suite's (`tests/integration/store_contract.rs`).

use std::sync::Arc;

use bytes::Bytes;

use super::*;
use crate::store::{SagaKey, SagaRow};

const ROOMY: EmbeddedLimits = EmbeddedLimits {
    cache_entries_max: 100,
    sagas: Quota::UNLIMITED,
    retention_ms: 0,
};

fn open(dir: &Path) -> Embedded {
    Embedded::open(dir, ROOMY, None).unwrap()
}

fn put(value: &str) -> Mutation {
    Mutation::Put {
        value: Bytes::from(value.to_string()),
        ttl_ms: None,
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
async fn durable_writes_survive_a_reopen_and_volatile_ones_do_not() {
    let dir = tempfile::tempdir().unwrap();
    {
        let store = open(dir.path());
        for i in 0..10 {
            store
                .mutate(
                    "p",
                    &format!("k{i}"),
                    put(&format!("v{i}")),
                    Durability::Durable,
                )
                .await
                .unwrap();
        }
        store
            .mutate("p", "k3", Mutation::Delete, Durability::Durable)
            .await
            .unwrap();
        store
            .mutate("p", "gone", put("x"), Durability::Volatile)
            .await
            .unwrap();
        store.close();
    }
    let store = open(dir.path());
    let get = |key: &'static str, durability| {
        let store = &store;
        async move { store.get("p", key, durability).await.unwrap() }
    };
    assert_eq!(get("k9", Durability::Durable).await.unwrap(), "v9");
    assert_eq!(get("k3", Durability::Durable).await, None);
    assert_eq!(get("gone", Durability::Volatile).await, None);
    assert_eq!(store.describe()["usage"]["kv:p"]["keys"], 9);
}

#[tokio::test]
async fn the_running_store_reports_wal_and_full_synchronous_from_its_writer() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let described = store.describe();
    assert_eq!(described["journal_mode"], "wal");
    assert_eq!(described["synchronous"], "full");
}

#[tokio::test]
async fn sagas_stop_at_their_quota() {
    let dir = tempfile::tempdir().unwrap();
    let limits = EmbeddedLimits {
        cache_entries_max: 10,
        sagas: Quota {
            keys_max: 1,
            bytes_max: u64::MAX,
        },
        retention_ms: 0,
    };
    let store = Embedded::open(dir.path(), limits, None).unwrap();
    store
        .claim_saga(saga("a", "a", "pending", None))
        .await
        .unwrap();
    let refused = store.claim_saga(saga("b", "b", "pending", None)).await;
    assert!(matches!(
        refused,
        Err(StoreError::LimitReached { what: "keys", .. })
    ));
    let repeat = store
        .claim_saga(saga("c", "a", "pending", None))
        .await
        .unwrap();
    assert!(
        matches!(repeat, Claim::Exists(_)),
        "a repeat is answered even when full"
    );
}

#[tokio::test]
async fn concurrent_writers_share_commits() {
    let dir = tempfile::tempdir().unwrap();
    let metrics = Arc::new(Metrics::new());
    let store = Arc::new(Embedded::open(dir.path(), ROOMY, Some(metrics.clone())).unwrap());
    let writers: Vec<_> = (0..16)
        .map(|w| {
            let store = store.clone();
            tokio::spawn(async move {
                for i in 0..50 {
                    let key = format!("w{w}-{i}");
                    store
                        .mutate("p", &key, put("v"), Durability::Durable)
                        .await
                        .unwrap();
                }
            })
        })
        .collect();
    for writer in writers {
        writer.await.unwrap();
    }
    let text = metrics.encode();
    let commits: u64 = text
        .lines()
        .find_map(|l| l.strip_prefix("txgate_store_commit_duration_seconds_count "))
        .and_then(|n| n.trim().parse().ok())
        .unwrap();
    assert!(commits < 800, "800 writes took {commits} commits");
    assert_eq!(store.describe()["usage"]["kv:p"]["keys"], 800);
}

#[tokio::test]
async fn a_second_process_cannot_share_the_directory() {
    let dir = tempfile::tempdir().unwrap();
    let _first = open(dir.path());
    let error = Embedded::open(dir.path(), ROOMY, None).unwrap_err();
    assert!(error.to_string().contains("another process"), "{error}");
}

#[test]
fn an_old_format_directory_is_refused_with_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("wal-000000000001.log"), b"old").unwrap();
    let error = Embedded::open(dir.path(), ROOMY, None).unwrap_err();
    assert!(error.to_string().contains("old log format"), "{error}");
}

#[test]
fn a_file_that_is_not_a_database_is_refused_and_named() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("txgate.db");
    std::fs::write(&file, vec![0x5a; 8192]).unwrap();
    let error = Embedded::open(dir.path(), ROOMY, None).unwrap_err();
    let text = error.to_string();
    assert!(
        text.contains("txgate.db") && text.contains("not a SQLite database"),
        "{text}"
    );
    assert_eq!(
        std::fs::read(&file).unwrap(),
        vec![0x5a; 8192],
        "left untouched"
    );
}

#[test]
fn another_sqlite_database_is_refused_untouched() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("txgate.db");
    let foreign = rusqlite::Connection::open(&file).unwrap();
    foreign
        .execute_batch("CREATE TABLE notes (body TEXT)")
        .unwrap();
    drop(foreign);
    let before = std::fs::read(&file).unwrap();
    let error = Embedded::open(dir.path(), ROOMY, None).unwrap_err();
    assert!(error.to_string().contains("not a txgate store"), "{error}");
    assert_eq!(std::fs::read(&file).unwrap(), before);
}

#[test]
fn a_damaged_schema_refuses_to_start_without_a_panic() {
    let dir = tempfile::tempdir().unwrap();
    {
        let store = open(dir.path());
        store.close();
    }
    let file = dir.path().join("txgate.db");
    let mut bytes = std::fs::read(&file).unwrap();
    // Page 1 holds the schema, right after the 100-byte header.
    for byte in &mut bytes[100..4096] {
        *byte = 0xA5;
    }
    std::fs::write(&file, &bytes).unwrap();
    let error = Embedded::open(dir.path(), ROOMY, None).unwrap_err();
    assert!(error.to_string().contains("txgate.db"), "{error}");
}

/// The steps of `sql`'s query plan.
fn plan_of(conn: &rusqlite::Connection, sql: &str, values: &[&dyn rusqlite::ToSql]) -> Vec<String> {
    conn.prepare(&format!("EXPLAIN QUERY PLAN {sql}"))
        .unwrap()
        .query_map(values, |r| r.get::<_, String>(3))
        .unwrap()
        .map(Result::unwrap)
        .collect()
}

#[tokio::test]
async fn an_operators_listings_and_counts_read_through_indexes() {
    let dir = tempfile::tempdir().unwrap();
    let _store = open(dir.path());
    let conn = rusqlite::Connection::open(dir.path().join("txgate.db")).unwrap();
    let status = SagaFilter {
        status: Some("compensated"),
        ..SagaFilter::default()
    };
    let route = SagaFilter {
        route: Some("transfers".into()),
        ..SagaFilter::default()
    };
    let before = SagaFilter {
        before_ms: Some(1_700_000_000_000),
        ..SagaFilter::default()
    };
    for (filter, index) in [
        (status, "sagas_status"),
        (route, "sagas_route"),
        (before, "sqlite_autoindex_sagas_1"),
    ] {
        let (sql, values) = crate::store::sqlite::listing(&filter);
        let mut params: Vec<&dyn rusqlite::ToSql> =
            values.iter().map(|v| v as &dyn rusqlite::ToSql).collect();
        params.push(&50);
        let plan = plan_of(&conn, &sql, &params);
        assert!(
            plan.iter().any(|step| step.contains(index)),
            "{filter:?}: {plan:?}"
        );
    }
    let plan = plan_of(
        &conn,
        crate::store::sqlite::SAGAS_COUNT,
        rusqlite::params!["completed", 10_000],
    );
    assert!(
        plan.iter().any(|step| step.contains("sagas_status")),
        "{plan:?}"
    );
}

#[tokio::test]
async fn an_operators_search_reads_through_indexes_never_the_table() {
    let dir = tempfile::tempdir().unwrap();
    let _store = open(dir.path());
    let conn = rusqlite::Connection::open(dir.path().join("txgate.db")).unwrap();
    let plan: Vec<String> = conn
        .prepare(&format!(
            "EXPLAIN QUERY PLAN {}",
            crate::store::sqlite::SAGAS_SEARCH
        ))
        .unwrap()
        .query_map(rusqlite::params!["order-7", "", 50], |r| {
            r.get::<_, String>(3)
        })
        .unwrap()
        .map(Result::unwrap)
        .collect();
    assert!(
        plan.iter().all(|step| !step.starts_with("SCAN sagas")),
        "{plan:?}"
    );
    for index in ["sagas_request_id", "sagas_client"] {
        assert!(plan.iter().any(|step| step.contains(index)), "{plan:?}");
    }
}

#[tokio::test]
async fn a_store_of_schema_3_gains_reconcile_runs_and_keeps_the_newest() {
    // A file written before reconcile existed is upgraded on open; reconcile's own connection
    // (beside the running store) records runs, and only the newest `RUNS_KEPT` stay.
    use crate::store::books::RUNS_KEPT;
    use crate::store::sqlite::books;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("txgate.db");
    open(dir.path()).close();
    rusqlite::Connection::open(&file)
        .unwrap()
        .execute_batch("DROP TABLE reconcile_runs; PRAGMA user_version = 3;")
        .unwrap();
    let error = books::open(&file).map(drop).unwrap_err();
    assert!(error.to_string().contains("txgate migrate"), "{error}");
    let store = open(dir.path());
    assert!(store.reconcile_runs(10).await.unwrap().is_empty());
    let mut conn = books::open(&file).unwrap();
    for n in 0..=RUNS_KEPT {
        books::record_run(&mut conn, &format!("run-{n:04}"), &format!("{{\"n\":{n}}}")).unwrap();
    }
    let runs = store.reconcile_runs(RUNS_KEPT * 2).await.unwrap();
    assert_eq!(runs.len(), RUNS_KEPT);
    assert_eq!(runs[0], format!("{{\"n\":{RUNS_KEPT}}}"), "newest first");
    assert_eq!(runs[RUNS_KEPT - 1], "{\"n\":1}", "the oldest went");
}
