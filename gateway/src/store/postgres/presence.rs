//! This gateway's presence in the fleet: one connection of its own, apart from the pool that
//! serves requests, through which it holds its `gateway_id` and renews its lease.
//!
//! - **One process per id.** The connection holds a session advisory lock on the id for as long
//!   as the process lives, and the process renews the id's heartbeat. A process that starts
//!   watches the id's heartbeat until the lease it declared has run out, and takes the lock. If
//!   the heartbeat moves meanwhile, a live gateway has the id (one whose session was cut, by a
//!   database restart or a network blip, holds no lock for a moment, but still renews): the new
//!   process refuses to start, naming the id (SPEC §8). Twins would share one heartbeat, so a dead
//!   twin's sagas would never be taken over. A lock still held once the heartbeat has run out was
//!   left by a dead process whose last packets were lost, so the server has not seen its session
//!   end: that session is ended. A restart of a dead gateway's id thus waits at most for its old
//!   lease to run out (at once after a graceful stop, which gives the heartbeat up), then resumes
//!   its sagas.
//! - **A lease that never queues.** Renewals go through this connection, never behind the
//!   requests in the pool, each within half a lease. When one fails, the connection is dropped,
//!   and the next renewal opens a new one and takes the lock again; should the old session still
//!   hold it (the server has not yet seen the network drop), it is ended first. A gateway that
//!   finds its lock held by another process keeps renewing for up to a lease, so that a process
//!   starting with its id sees it alive and gives up; past that, another process has the id for
//!   good, and this one stands down: its lease is void (it sends nothing more) and it stays
//!   unready.

use std::time::{Duration, Instant};

use tokio::runtime::Handle;
use tokio::task::JoinHandle;
use tokio_postgres::{Client, Config};

use super::connect;
use super::deadline::within_for;
use super::lease::{DB_NOW_MS, Lease};

/// How long a start waits for the session of a dead process with the same id to end.
const PREDECESSOR_WAIT: Duration = Duration::from_secs(3);
/// How often a held lock, or a predecessor's heartbeat, is looked at again.
const LOOK_AGAIN: Duration = Duration::from_millis(100);

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

/// An open presence connection.
#[derive(Debug)]
struct Held {
    client: Client,
    /// Its server process.
    pid: i32,
    /// Whether it holds the id's lock; since when it has tried in vain, if it does not.
    locked: Result<(), Instant>,
    _driver: JoinHandle<()>,
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

    /// At start: takes the id, or says which live process has it; then renews the lease.
    ///
    /// The id is this process's once it holds the lock and the id's last heartbeat has run out
    /// the lease it declared, without moving. A heartbeat that moves is a live gateway's: refused.
    /// A lock still held once that heartbeat has run out belongs to a dead process whose session
    /// the server has not yet seen end (its last packets lost): that session is ended.
    pub(super) async fn start(&self, lease: &Lease) -> Result<(), String> {
        let mut held = self.connect(PREDECESSOR_WAIT).await?;
        let started = Instant::now();
        let (mut first, mut told) = (None, false);
        loop {
            let left = match self.last_heartbeat(&held.client).await? {
                Some((heartbeat, _)) if *first.get_or_insert(heartbeat) != heartbeat => {
                    let holder = self.holder(&held.client, PREDECESSOR_WAIT).await?;
                    return Err(self.twin(&holder));
                }
                Some((_, left_ms)) => left_ms,
                // No heartbeat yet: a process that died before its first, or none at all.
                None => -i64::from(started.elapsed() >= PREDECESSOR_WAIT),
            };
            match (held.locked.is_ok(), left < 0) {
                (true, true) => break,
                (false, true) => self.end_holder(&held.client).await?,
                (_, false) => {}
            }
            if left >= 0 && !told {
                told = true;
                tracing::info!(
                    wait_ms = left,
                    "the id's last lease has not run out: waiting for it, to be sure its gateway is gone"
                );
            }
            let wait = Duration::from_millis(u64::try_from(left).unwrap_or(0));
            tokio::time::sleep(wait.clamp(LOOK_AGAIN, LOOK_AGAIN * 5)).await;
            if held.locked.is_err() {
                self.try_lock(&mut held, PREDECESSOR_WAIT).await?;
            }
        }
        *self.held.lock().await = Some(held);
        self.renew(lease).await.map(|_| ())
    }

    /// Renews the lease (reconnecting, and taking the lock again, first when needed), within
    /// half a lease: a renewal is worth waiting for while it can still extend the lease, which
    /// it does from when it was sent. Returns how long the renewal took.
    pub(super) async fn renew(&self, lease: &Lease) -> Result<Duration, String> {
        if let Some(reason) = self.usurped() {
            return Err(reason);
        }
        let deadline = lease.lease / 2;
        let mut held = self.held.lock().await;
        if held.is_none() {
            *held = Some(self.connect(deadline).await?);
        }
        let connection = held.as_mut().expect("connected above");
        if let Err(since) = connection.locked {
            self.try_lock(connection, deadline).await?;
            if connection.locked.is_err() && since.elapsed() > lease.lease {
                let holder = self.holder(&connection.client, deadline).await?;
                return Err(self.stand_down(lease, &holder));
            }
        }
        let sent = Instant::now();
        match self.heartbeat(&connection.client, lease).await {
            Ok(()) => {
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

    /// A graceful stop: the heartbeat is given up, so that this gateway's next start, or the
    /// others' takeover of what it left unfinished, need not wait for its lease to run out.
    pub(super) async fn leave(&self) {
        let held = self.held.lock().await;
        let Some(held) = held.as_ref().filter(|h| h.locked.is_ok()) else {
            return;
        };
        let left = within_for(PREDECESSOR_WAIT, async {
            held.client
                .execute(
                    "UPDATE gateways SET heartbeat_ms = 0 WHERE id = $1 AND instance = $2",
                    &[&self.gateway, &self.instance],
                )
                .await
                .map_err(|e| e.to_string())
        })
        .await;
        if let Err(error) = left {
            tracing::warn!(%error, "the heartbeat was not given up; the next start waits for the lease");
        }
    }

    /// The id's heartbeat, and the lease this gateway declares with it.
    async fn heartbeat(&self, client: &Client, lease: &Lease) -> Result<(), String> {
        let statement = format!(
            "INSERT INTO gateways (id, started_ms, heartbeat_ms, lease_ms, instance)
             VALUES ($1, {DB_NOW_MS}, {DB_NOW_MS}, $2, $3)
             ON CONFLICT (id) DO UPDATE SET heartbeat_ms = {DB_NOW_MS}, lease_ms = $2, instance = $3"
        );
        let lease_ms = i64::try_from(lease.lease.as_millis()).unwrap_or(i64::MAX);
        within_for(lease.lease / 2, async {
            client
                .execute(&statement, &[&self.gateway, &lease_ms, &self.instance])
                .await
                .map(|_| ())
                .map_err(|e| e.to_string())
        })
        .await
    }

    /// Another process has had the id's lock for longer than a lease: it runs as this gateway.
    /// This one voids its lease, so that it sends nothing more, and stays unready.
    fn stand_down(&self, lease: &Lease, holder: &str) -> String {
        let reason = format!(
            "another process took store.gateway_id `{}` ({holder}); this one no longer acts for it",
            self.gateway
        );
        tracing::error!(%reason, "standing down");
        lease.void();
        *self.usurped.lock().expect("usurped") = Some(reason.clone());
        reason
    }

    /// Opens a presence connection and tries the lock once.
    async fn connect(&self, deadline: Duration) -> Result<Held, String> {
        let deadline = deadline.max(Duration::from_secs(1));
        let (client, driver) = within_for(deadline, async {
            connect::open(self.config.clone(), self.runtime.clone())
                .await
                .map_err(|e| e.to_string())
        })
        .await?;
        let pid = within_for(deadline, async {
            let row = client
                .query_one("SELECT pg_backend_pid()", &[])
                .await
                .map_err(|e| e.to_string())?;
            Ok::<i32, String>(row.get(0))
        })
        .await?;
        let mut held = Held {
            client,
            pid,
            locked: Err(Instant::now()),
            _driver: driver,
        };
        self.try_lock(&mut held, deadline).await?;
        Ok(held)
    }

    /// Tries the id's lock; ends first the session of this gateway's previous connection,
    /// should it still hold the lock.
    async fn try_lock(&self, held: &mut Held, deadline: Duration) -> Result<(), String> {
        let key = self.lock_key;
        let ask = |sql: &'static str| {
            let client = &held.client;
            within_for(deadline.max(Duration::from_secs(1)), async move {
                let row = client.query_one(sql, &[&key]).await;
                row.map_err(|e| e.to_string())
            })
        };
        let taken: bool = ask("SELECT pg_try_advisory_lock($1)").await?.get(0);
        if taken {
            held.locked = Ok(());
            *self.previous.lock().expect("previous") = None;
            return Ok(());
        }
        let previous = *self.previous.lock().expect("previous");
        if let Some(previous) = previous {
            let end = "SELECT pg_terminate_backend(pid) FROM pg_locks WHERE pid = $2 \
                       AND locktype = 'advisory' AND granted AND objsubid = 1 \
                       AND classid = (($1::BIGINT >> 32) & 4294967295)::OID \
                       AND objid = ($1::BIGINT & 4294967295)::OID";
            let _ = within_for(deadline.max(Duration::from_secs(1)), async {
                held.client
                    .execute(end, &[&key, &previous])
                    .await
                    .map_err(|e| e.to_string())
            })
            .await;
        }
        if held.locked.is_ok() {
            held.locked = Err(Instant::now());
        }
        Ok(())
    }

    /// Who holds the id's lock, as an operator can find it.
    async fn holder(&self, client: &Client, deadline: Duration) -> Result<String, String> {
        let key = self.lock_key;
        let row = within_for(deadline.max(Duration::from_secs(1)), async {
            client
                .query_opt(HOLDER, &[&key])
                .await
                .map_err(|e| e.to_string())
        })
        .await?;
        Ok(row.map_or_else(
            || "a session that has just ended".to_string(),
            |row| {
                format!(
                    "database session {} from {}, open since {}",
                    row.get::<_, i32>(0),
                    row.get::<_, String>(2),
                    row.get::<_, String>(1)
                )
            },
        ))
    }

    /// The id's last heartbeat, and how long until the lease it declared runs out (negative once
    /// it has), in the database's clock; `None` when the id has none.
    async fn last_heartbeat(&self, client: &Client) -> Result<Option<(i64, i64)>, String> {
        let sql = format!(
            "SELECT heartbeat_ms, heartbeat_ms + coalesce(lease_ms, 0) - {DB_NOW_MS}
             FROM gateways WHERE id = $1"
        );
        let row = within_for(PREDECESSOR_WAIT, async {
            client
                .query_opt(&sql, &[&self.gateway])
                .await
                .map_err(|e| e.to_string())
        })
        .await?;
        Ok(row.map(|row| (row.get(0), row.get(1))))
    }

    /// Ends the session that holds the id's lock: one a dead process left behind.
    async fn end_holder(&self, client: &Client) -> Result<(), String> {
        let end = "SELECT pg_terminate_backend(pid) FROM pg_locks WHERE locktype = 'advisory' \
                   AND granted AND objsubid = 1 \
                   AND classid = (($1::BIGINT >> 32) & 4294967295)::OID \
                   AND objid = ($1::BIGINT & 4294967295)::OID";
        tracing::warn!(
            "the id's lock is held by a session of a gateway whose lease ran out; ending it"
        );
        within_for(PREDECESSOR_WAIT, async {
            client
                .execute(end, &[&self.lock_key])
                .await
                .map(|_| ())
                .map_err(|e| e.to_string())
        })
        .await
    }

    /// The refusal of a twin, naming the id.
    fn twin(&self, holder: &str) -> String {
        format!(
            "store.gateway_id `{}` is in use by a live gateway ({holder}); every gateway of a \
             fleet needs its own gateway_id. If that gateway is gone, its session ends and its \
             lease runs out within lease_ms: start again then",
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
