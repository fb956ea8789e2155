//! The fleet's tables in PostgreSQL: the same shape as the embedded store's (`sqlite/schema.rs`),
//! plus what a fleet needs. Created or migrated by `txgate serve` on start and by `txgate
//! migrate`, under an advisory lock, so gateways starting together never race on the DDL.
//!
//! - `sagas`: as embedded, and `owner`/`epoch` in use: the gateway running the saga, and the
//!   fencing token that a takeover bumps. `admin` holds an operator's request for the owner;
//! - `kv`: durable plugin keys; `kv_volatile`: the volatile ones, `UNLOGGED` (shared by the
//!   fleet and fast, and emptied if the database itself crashes);
//! - `kv_usage`, `kv_volatile_usage`: the keys and bytes each namespace holds, kept by triggers
//!   on `kv` and `kv_volatile` in the same transaction as every change, whoever makes it (a
//!   write, the expiry sweep, an operator's `DELETE`): so a quota counts the keys that exist,
//!   and expired keys give their room back. Each connection adds to its own row (its backend
//!   pid), so no two writers ever wait on one row; the sum is the namespace's usage. The volatile
//!   one is `UNLOGGED` too, so a crash empties it with the keys it counts;
//! - `holds`: the keys requests under way hold, `UNLOGGED`, each with an expiry its gateway
//!   renews, so a dead gateway's holds end by themselves;
//! - `gateways`: one row per gateway: its heartbeat (the database's clock) and the lease it
//!   declared, which is what it is judged by; the process (`instance`) that renews it;
//! - `usage`: the first schema's quota bookkeeping, read by no gateway of this one;
//! - `txgate_schema`: the schema version.
//!
//! Version 2 added the usage triggers (counting what `kv` holds once, as they are created), each
//! gateway's declared lease and instance, and an index of sagas by status for operators.
//! Version 3 indexes sagas by X-Request-ID and by client, for an operator's search.
//! Version 4 keeps the runs of `txgate reconcile` (`reconcile_runs`), which the console shows.

use tokio_postgres::Client;

/// The schema this build reads and writes.
pub(super) const SCHEMA_VERSION: i32 = 4;
/// `pg_advisory_xact_lock` key for migrations: "TXGT".
const MIGRATION_LOCK: i64 = 0x5458_4754;

/// The first schema.
const SCHEMA_1: &str = "
CREATE TABLE IF NOT EXISTS sagas (
    id TEXT PRIMARY KEY,
    route TEXT NOT NULL,
    client TEXT NOT NULL,
    request_id TEXT NOT NULL,
    status TEXT NOT NULL,
    created_ms BIGINT NOT NULL,
    updated_ms BIGINT NOT NULL,
    expires_at_ms BIGINT,
    owner TEXT NOT NULL DEFAULT '',
    epoch BIGINT NOT NULL DEFAULT 1,
    record BYTEA NOT NULL,
    admin TEXT,
    UNIQUE (route, client, request_id)
);
CREATE INDEX IF NOT EXISTS sagas_unfinished ON sagas (owner, id) WHERE expires_at_ms IS NULL;
CREATE TABLE IF NOT EXISTS kv (
    namespace TEXT NOT NULL,
    key TEXT NOT NULL,
    value BYTEA NOT NULL,
    expires_at_ms BIGINT,
    PRIMARY KEY (namespace, key)
);
CREATE INDEX IF NOT EXISTS kv_expiry ON kv (expires_at_ms) WHERE expires_at_ms IS NOT NULL;
CREATE UNLOGGED TABLE IF NOT EXISTS kv_volatile (
    namespace TEXT NOT NULL,
    key TEXT NOT NULL,
    value BYTEA NOT NULL,
    expires_at_ms BIGINT,
    PRIMARY KEY (namespace, key)
);
CREATE INDEX IF NOT EXISTS kv_volatile_expiry ON kv_volatile (expires_at_ms)
    WHERE expires_at_ms IS NOT NULL;
CREATE UNLOGGED TABLE IF NOT EXISTS holds (
    namespace TEXT NOT NULL,
    key TEXT NOT NULL,
    gateway TEXT NOT NULL,
    holder BIGINT NOT NULL,
    value BYTEA NOT NULL,
    expires_at_ms BIGINT NOT NULL,
    PRIMARY KEY (namespace, key)
);
CREATE TABLE IF NOT EXISTS gateways (
    id TEXT PRIMARY KEY,
    started_ms BIGINT NOT NULL,
    heartbeat_ms BIGINT NOT NULL
);
CREATE TABLE IF NOT EXISTS usage (
    namespace TEXT NOT NULL,
    gateway TEXT NOT NULL,
    keys BIGINT NOT NULL,
    bytes BIGINT NOT NULL,
    PRIMARY KEY (namespace, gateway)
);
";

/// From the first schema to the second; `{usage_functions}` stands for the trigger functions.
/// The triggers are created before the count, in one transaction: creating a trigger waits for
/// the writers of its table and holds new ones off until the commit, so no write is counted twice
/// or missed.
const SCHEMA_2: &str = "
ALTER TABLE gateways ADD COLUMN IF NOT EXISTS lease_ms BIGINT;
ALTER TABLE gateways ADD COLUMN IF NOT EXISTS instance TEXT NOT NULL DEFAULT '';
CREATE INDEX IF NOT EXISTS sagas_status ON sagas (status, id);
CREATE TABLE IF NOT EXISTS kv_usage (
    namespace TEXT NOT NULL,
    slot INT NOT NULL,
    keys BIGINT NOT NULL,
    bytes BIGINT NOT NULL,
    PRIMARY KEY (namespace, slot)
);
CREATE UNLOGGED TABLE IF NOT EXISTS kv_volatile_usage (
    namespace TEXT NOT NULL,
    slot INT NOT NULL,
    keys BIGINT NOT NULL,
    bytes BIGINT NOT NULL,
    PRIMARY KEY (namespace, slot)
);
{usage_functions}
DROP TRIGGER IF EXISTS kv_usage ON kv;
CREATE TRIGGER kv_usage AFTER INSERT OR UPDATE OR DELETE ON kv
    FOR EACH ROW EXECUTE FUNCTION txgate_kv_usage();
DROP TRIGGER IF EXISTS kv_volatile_usage ON kv_volatile;
CREATE TRIGGER kv_volatile_usage AFTER INSERT OR UPDATE OR DELETE ON kv_volatile
    FOR EACH ROW EXECUTE FUNCTION txgate_kv_volatile_usage();
DELETE FROM kv_usage;
INSERT INTO kv_usage (namespace, slot, keys, bytes)
    SELECT namespace, 0, count(*), sum(octet_length(key) + octet_length(value)) FROM kv
    GROUP BY namespace;
DELETE FROM kv_volatile_usage;
INSERT INTO kv_volatile_usage (namespace, slot, keys, bytes)
    SELECT namespace, 0, count(*), sum(octet_length(key) + octet_length(value)) FROM kv_volatile
    GROUP BY namespace;
";

/// The trigger function that books a row's change of `{table}` into `{table}_usage`, under this
/// connection's slot (its backend pid). Static SQL, one function per table, so its plan is kept.
const USAGE_FUNCTION: &str = "
CREATE OR REPLACE FUNCTION txgate_{table}_usage() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    ns TEXT;
    keys BIGINT := 0;
    bytes BIGINT := 0;
BEGIN
    IF TG_OP <> 'INSERT' THEN
        ns := OLD.namespace;
        keys := keys - 1;
        bytes := bytes - octet_length(OLD.key) - octet_length(OLD.value);
    END IF;
    IF TG_OP <> 'DELETE' THEN
        ns := NEW.namespace;
        keys := keys + 1;
        bytes := bytes + octet_length(NEW.key) + octet_length(NEW.value);
    END IF;
    IF keys <> 0 OR bytes <> 0 THEN
        INSERT INTO {table}_usage (namespace, slot, keys, bytes)
        VALUES (ns, pg_backend_pid(), keys, bytes)
        ON CONFLICT (namespace, slot) DO UPDATE
        SET keys = {table}_usage.keys + excluded.keys,
            bytes = {table}_usage.bytes + excluded.bytes;
    END IF;
    RETURN NULL;
END $$;
";

/// The second schema's statements, its trigger functions filled in.
fn schema_2() -> String {
    let functions: String = ["kv", "kv_volatile"]
        .iter()
        .map(|table| USAGE_FUNCTION.replace("{table}", table))
        .collect();
    SCHEMA_2.replace("{usage_functions}", &functions)
}

/// From the second schema to the third. Building the indexes holds writes to `sagas` off
/// until they are built (about a second per million sagas): run `txgate migrate` from one
/// gateway before upgrading the others.
const SCHEMA_3: &str = "
CREATE INDEX IF NOT EXISTS sagas_request_id ON sagas (request_id, id);
CREATE INDEX IF NOT EXISTS sagas_client ON sagas (client, id);
CREATE INDEX IF NOT EXISTS sagas_route ON sagas (route, id);
";

/// From the third schema to the fourth: the runs of `txgate reconcile`, each its JSON report.
const SCHEMA_4: &str = "
CREATE TABLE IF NOT EXISTS reconcile_runs (
    id TEXT NOT NULL PRIMARY KEY,
    report TEXT NOT NULL
);
";

/// What the migration found and did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Migrated {
    /// The tables were created.
    Created,
    /// They were of an older version, and were brought to this one.
    Upgraded,
    /// They were there, at this version.
    Current,
}

/// Creates the tables, or checks that they are of this schema. A database written by a newer
/// build is refused.
pub(super) async fn migrate(client: &mut Client) -> Result<Migrated, String> {
    let tx = client.transaction().await.map_err(|e| e.to_string())?;
    // `IF NOT EXISTS` and `IF EXISTS` report what they skipped as notices: not news here.
    tx.batch_execute("SET LOCAL client_min_messages = warning")
        .await
        .map_err(|e| e.to_string())?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])
        .await
        .map_err(|e| e.to_string())?;
    tx.batch_execute("CREATE TABLE IF NOT EXISTS txgate_schema (version INT NOT NULL)")
        .await
        .map_err(|e| e.to_string())?;
    let version: Option<i32> = tx
        .query_opt("SELECT version FROM txgate_schema", &[])
        .await
        .map_err(|e| e.to_string())?
        .map(|row| row.get(0));
    let migrated = match version {
        Some(v) if v == SCHEMA_VERSION => Migrated::Current,
        Some(v) if v > SCHEMA_VERSION => {
            return Err(format!(
                "the database holds txgate schema {v}; this build reads {SCHEMA_VERSION}: upgrade txgate"
            ));
        }
        found => {
            if found.is_none() {
                tx.batch_execute(SCHEMA_1)
                    .await
                    .map_err(|e| e.to_string())?;
            }
            tx.batch_execute(&schema_2())
                .await
                .map_err(|e| e.to_string())?;
            tx.batch_execute(SCHEMA_3)
                .await
                .map_err(|e| e.to_string())?;
            tx.batch_execute(SCHEMA_4)
                .await
                .map_err(|e| e.to_string())?;
            tx.execute("DELETE FROM txgate_schema", &[])
                .await
                .map_err(|e| e.to_string())?;
            tx.execute(
                "INSERT INTO txgate_schema (version) VALUES ($1)",
                &[&SCHEMA_VERSION],
            )
            .await
            .map_err(|e| e.to_string())?;
            if found.is_none() {
                Migrated::Created
            } else {
                Migrated::Upgraded
            }
        }
    };
    tx.commit().await.map_err(|e| e.to_string())?;
    Ok(migrated)
}
