//! The fleet's tables in PostgreSQL: the same shape as the embedded store's (`sqlite/schema.rs`),
//! plus what a fleet needs. Created or migrated by `txgate serve` on start and by `txgate
//! migrate`, under an advisory lock, so gateways starting together never race on the DDL.
//!
//! - `sagas`: as embedded, and `owner`/`epoch` in use: the gateway running the saga, and the
//!   fencing token that a takeover bumps. `admin` holds an operator's request for the owner;
//! - `kv`: durable plugin keys; `kv_volatile`: the volatile ones, `UNLOGGED` (shared by the
//!   fleet and fast, and emptied if the database itself crashes);
//! - `holds`: the keys requests under way hold, `UNLOGGED`, each with an expiry its gateway
//!   renews, so a dead gateway's holds end by themselves;
//! - `gateways`: one row per gateway, with the heartbeat that is its lease;
//! - `usage`: keys and bytes per plugin namespace, one row per gateway (the fleet's usage is the
//!   sum), so gateways never contend on one row;
//! - `txgate_schema`: the schema version.

use tokio_postgres::Client;

/// The schema this build reads and writes.
pub(super) const SCHEMA_VERSION: i32 = 1;
/// `pg_advisory_xact_lock` key for migrations: "TXGT".
const MIGRATION_LOCK: i64 = 0x5458_4754;

const SCHEMA: &str = "
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

/// What the migration found and did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Migrated {
    /// The tables were created.
    Created,
    /// They were there, at this version.
    Current,
}

/// Creates the tables, or checks that they are of this schema. A database written by a newer
/// build is refused.
pub(super) async fn migrate(client: &mut Client) -> Result<Migrated, String> {
    let tx = client.transaction().await.map_err(|e| e.to_string())?;
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
        _ => {
            tx.batch_execute(SCHEMA).await.map_err(|e| e.to_string())?;
            tx.execute("DELETE FROM txgate_schema", &[])
                .await
                .map_err(|e| e.to_string())?;
            tx.execute(
                "INSERT INTO txgate_schema (version) VALUES ($1)",
                &[&SCHEMA_VERSION],
            )
            .await
            .map_err(|e| e.to_string())?;
            Migrated::Created
        }
    };
    tx.commit().await.map_err(|e| e.to_string())?;
    Ok(migrated)
}
