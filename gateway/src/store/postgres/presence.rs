//! This gateway's presence in the fleet: one connection of its own, apart from the pool that
//! serves requests, through which it holds its `gateway_id` and renews its lease.
//!
//! - **One process per id.** The connection holds a session advisory lock on the id for as
//!   long as the process lives. A second process started with the id of a live one cannot take
//!   it, and refuses to start, naming the id (SPEC §8): twins would share one heartbeat, so a
//!   dead twin's sagas would never be taken over. A process that dies loses its connection, and
//!   the lock with it, at once; so a restart of a dead gateway's id goes ahead (waiting a moment
//!   for the old session to end).
//! - **A lease that never queues.** Renewals go through this connection, never behind the
//!   requests in the pool, each with a deadline of half a lease. When one fails, the
//!   connection is dropped and the next renewal opens a new one, taking the lock again. If the
//!   old session still holds the lock (the server has not yet seen the network drop), it is
//!   ended first; if another process holds it, a twin started while this one was cut off: this
//!   one stays unready for good (the twin's start fenced its sagas off anyway).

use std::time::{Duration, Instant};

use tokio::runtime::Handle;
use tokio::task::JoinHandle;
use tokio_postgres::{Client, Config};

use super::connect;
use super::deadline::within_for;
use super::lease::{DB_NOW_MS, Lease};

/// How long a start waits for the session of a dead process with the same id to end.
const PREDECESSOR_WAIT: Duration = Duration::from_secs(3);
/// How often the lock is tried again meanwhile.
const LOCK_RETRY: Duration = Duration::from_millis(100);

/// The presence connection and what it holds.
#[derive(Debug)]
pub(super) struct Presence {
    config: Config,
    runtime: Handle,
    gateway: String,
    instance: String,
    lock_key: i64,
    held: tokio::sync::Mutex<Option<Held>>,
    /// The server process of the last connection dropped: it may still hold the lock.
    previous: std::sync::Mutex<Option<i32>>,
    /// Why this process may not act as its gateway any more: another took the id.
    usurped: std::sync::Mutex<Option<String>>,
}

/// An open presence connection holding the lock.
#[derive(Debug)]
struct Held {
    client: Client,
    /// Its server process.
    pid: i32,
    _driver: JoinHandle<()>,
}

/// Why the id could not be taken.
enum NotTaken {
    /// The database could not be asked.
    Unreachable(String),
    /// Another live session holds it: what we know of that session.
    Held(String),
}

impl Presence {
    /// Presence for `gateway`, this process being `instance`.
    pub(super) fn new(config: Config, runtime: Handle, gateway: &str, instance: &str) -> Self {
        Self {
            config,
            runtime,
            gateway: gateway.to_string(),
            instance: instance.to_string(),
            lock_key: lock_key(gateway),
            held: tokio::sync::Mutex::new(None),
            previous: std::sync::Mutex::new(None),
            usurped: std::sync::Mutex::new(None),
        }
    }

    /// Why this process must not act as its gateway, if another process took the id.
    pub(super) fn usurped(&self) -> Option<String> {
        self.usurped.lock().expect("usurped").clone()
    }

    /// At start: takes the id (or says which live process holds it), then renews the lease.
    pub(super) async fn start(&self, lease: &Lease) -> Result<(), String> {
        match self.take(PREDECESSOR_WAIT).await {
            Ok(held) => *self.held.lock().await = Some(held),
            Err(NotTaken::Unreachable(error)) => return Err(error),
            Err(NotTaken::Held(holder)) => return Err(self.twin(&holder)),
        }
        self.renew(lease).await.map(|_| ())
    }

    /// Renews the lease (reconnecting and taking the id again first when needed), within half a
    /// lease: a renewal is worth waiting for while it can still extend the lease, which it does
    /// from when it was sent. Returns how long the renewal took.
    pub(super) async fn renew(&self, lease: &Lease) -> Result<Duration, String> {
        if let Some(reason) = self.usurped() {
            return Err(reason);
        }
        let mut held = self.held.lock().await;
        if held.is_none() {
            match self.take(lease.lease / 2).await {
                Ok(taken) => *held = Some(taken),
                Err(NotTaken::Unreachable(error)) => return Err(error),
                Err(NotTaken::Held(holder)) => {
                    let reason = self.twin(&holder);
                    tracing::error!(%reason, "another process took this gateway's id; this one stops acting for it");
                    *self.usurped.lock().expect("usurped") = Some(reason.clone());
                    return Err(reason);
                }
            }
        }
        let client = &held.as_ref().expect("taken above").client;
        let sent = Instant::now();
        let statement = format!(
            "INSERT INTO gateways (id, started_ms, heartbeat_ms, lease_ms, instance)
             VALUES ($1, {DB_NOW_MS}, {DB_NOW_MS}, $2, $3)
             ON CONFLICT (id) DO UPDATE SET heartbeat_ms = {DB_NOW_MS}, lease_ms = $2, instance = $3"
        );
        let lease_ms = i64::try_from(lease.lease.as_millis()).unwrap_or(i64::MAX);
        let params: [&(dyn tokio_postgres::types::ToSql + Sync); 3] =
            [&self.gateway, &lease_ms, &self.instance];
        let renewed = within_for(lease.lease / 2, async {
            client
                .execute(&statement, &params)
                .await
                .map_err(|e| e.to_string())
        })
        .await;
        match renewed {
            Ok(_) => {
                lease.renewed(sent);
                Ok(sent.elapsed())
            }
            Err(error) => {
                // Broken or silent: a fresh connection next time, which ends this one's session
                // should the server still keep it.
                let pid = held.take().map(|h| h.pid);
                *self.previous.lock().expect("previous") = pid;
                Err(error)
            }
        }
    }

    /// Connects and takes the lock, trying for up to `wait` while it is held by a session that
    /// may be ending: the previous connection's (ended here), or a dead process's.
    async fn take(&self, wait: Duration) -> Result<Held, NotTaken> {
        let unreachable = |e: String| NotTaken::Unreachable(e);
        let (client, driver) = within_for(wait.max(Duration::from_secs(1)), async {
            connect::open(self.config.clone(), self.runtime.clone())
                .await
                .map_err(|e| e.to_string())
        })
        .await
        .map_err(unreachable)?;
        let ask = |sql: &'static str| {
            let client = &client;
            let key = self.lock_key;
            async move {
                within_for(wait.max(Duration::from_secs(1)), async {
                    client.query(sql, &[&key]).await.map_err(|e| e.to_string())
                })
                .await
            }
        };
        let pid: i32 = within_for(wait.max(Duration::from_secs(1)), async {
            client
                .query_one("SELECT pg_backend_pid()", &[])
                .await
                .map_err(|e| e.to_string())
        })
        .await
        .map_err(unreachable)?
        .get(0);
        let previous = *self.previous.lock().expect("previous");
        let deadline = Instant::now() + wait;
        loop {
            let locked = ask("SELECT pg_try_advisory_lock($1)")
                .await
                .map_err(unreachable)?;
            if locked.first().is_some_and(|row| row.get::<_, bool>(0)) {
                *self.previous.lock().expect("previous") = None;
                return Ok(Held {
                    client,
                    pid,
                    _driver: driver,
                });
            }
            let holder = ask(HOLDER).await.map_err(unreachable)?;
            let holder = holder.first().map(|row| {
                (
                    row.get::<_, i32>(0),
                    format!(
                        "its database session {} from {}, open since {}",
                        row.get::<_, i32>(0),
                        row.get::<_, String>(2),
                        row.get::<_, String>(1)
                    ),
                )
            });
            if let (Some((holder_pid, _)), Some(previous)) = (&holder, previous)
                && *holder_pid == previous
            {
                let end = "SELECT pg_terminate_backend($1::BIGINT::INT)";
                let _ = within_for(wait.max(Duration::from_secs(1)), async {
                    client
                        .query(end, &[&i64::from(previous)])
                        .await
                        .map_err(|e| e.to_string())
                })
                .await;
            }
            if Instant::now() >= deadline {
                return Err(match holder {
                    Some((holder_pid, _)) if Some(holder_pid) == previous => NotTaken::Unreachable(
                        "this gateway's previous session is still ending".into(),
                    ),
                    Some((_, about)) => NotTaken::Held(about),
                    None => NotTaken::Unreachable("the id's lock is changing hands".into()),
                });
            }
            tokio::time::sleep(LOCK_RETRY).await;
        }
    }

    /// The refusal of a twin, naming the id.
    fn twin(&self, holder: &str) -> String {
        format!(
            "store.gateway_id `{}` is in use by a live gateway ({holder}); every gateway of a \
             fleet needs its own gateway_id. If that gateway is gone, its session ends within \
             seconds: start again then",
            self.gateway
        )
    }
}

/// The session that holds a 64-bit advisory lock: its pid, since when, and from where.
const HOLDER: &str =
    "SELECT l.pid, a.backend_start::TEXT, coalesce(host(a.client_addr), 'a local socket')
     FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid
     WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 1
       AND l.classid = (($1::BIGINT >> 32) & 4294967295)::OID
       AND l.objid = ($1::BIGINT & 4294967295)::OID";

/// The advisory lock's key for a gateway id: 64 bits of its SHA-256, so two ids never share one.
fn lock_key(gateway: &str) -> i64 {
    use sha2::{Digest, Sha256};
    let digest = Sha256::digest(format!("txgate gateway {gateway}").as_bytes());
    let mut bytes = [0u8; 8];
    bytes.copy_from_slice(&digest[..8]);
    i64::from_be_bytes(bytes)
}
