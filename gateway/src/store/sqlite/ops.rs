//! The writes one batch can hold, and how each is done inside the batch's transaction.
//!
//! Each op returns two layers of result: the outer `rusqlite::Result` fails the whole batch (the
//! disk said no: the writer rolls back and probes), the inner one is the op's own answer
//! (`limit-reached`, `not-a-number`), which leaves the rest of the batch alone.

use std::collections::HashMap;

use bytes::Bytes;
use rusqlite::{OptionalExtension, Transaction, params};

use super::super::quota::{Delta, Quota, Usage};
use super::super::{Applied, Claim, Mutation, SagaKey, SagaRow, StoreError, apply, to_i64};

/// The usage namespace of the sagas (plugin namespaces are `kv:<plugin>`).
pub(super) const SAGAS: &str = "sagas";

/// A write, queued for the writer.
#[derive(Debug)]
pub(super) enum Op {
    /// Create a saga unless its key exists.
    Claim(SagaRow),
    /// Update a saga.
    Save(SagaRow),
    /// Mutate a plugin key.
    Kv {
        namespace: Box<str>,
        key: Box<str>,
        mutation: Mutation,
    },
    /// Delete up to `limit` expired sagas and as many expired keys. Sagas are looked for among
    /// those created before `created_before` (a saga id prefix: see `schema.rs`).
    Expire { limit: u64, created_before: String },
}

/// What an op did.
#[derive(Debug)]
pub(super) enum Done {
    Claim(Claim),
    Saved,
    Kv(Applied),
    Expired(u64),
}

/// A plugin key's new committed state, for the read cache.
#[derive(Debug)]
pub(super) struct KeyChange {
    pub(super) namespace: Box<str>,
    pub(super) key: Box<str>,
    pub(super) value: Option<(Bytes, Option<u64>)>,
}

/// Usage as committed, plus what the open batch changed.
#[derive(Debug, Default)]
pub(super) struct Book {
    pub(super) committed: HashMap<String, Usage>,
    pub(super) pending: HashMap<String, Delta>,
}

impl Book {
    fn usage(&self, namespace: &str) -> Usage {
        let base = self.committed.get(namespace).copied().unwrap_or_default();
        match self.pending.get(namespace) {
            Some(delta) => base.after(*delta),
            None => base,
        }
    }

    fn charge(
        &mut self,
        namespace: &str,
        delta: Delta,
        quota: Option<Quota>,
    ) -> Result<(), StoreError> {
        if let Some(quota) = quota {
            self.usage(namespace).admit(delta, quota, namespace)?;
        }
        self.pending
            .entry(namespace.to_string())
            .or_default()
            .add(delta);
        Ok(())
    }

    /// Writes the batch's changes into the `usage` table.
    pub(super) fn persist(&self, tx: &Transaction<'_>) -> rusqlite::Result<()> {
        let mut upsert = tx.prepare_cached(
            "INSERT INTO usage (namespace, keys, bytes) VALUES (?1, ?2, ?3)
             ON CONFLICT (namespace) DO UPDATE SET keys = excluded.keys, bytes = excluded.bytes",
        )?;
        for namespace in self.pending.keys() {
            let usage = self.usage(namespace);
            upsert.execute(params![namespace, to_i64(usage.keys), to_i64(usage.bytes)])?;
        }
        Ok(())
    }

    /// The batch committed: its changes become the base.
    pub(super) fn settle(&mut self) {
        for (namespace, delta) in self.pending.drain() {
            let usage = self.committed.entry(namespace).or_default();
            *usage = usage.after(delta);
        }
    }
}

fn saga_size(key: &SagaKey, record: usize) -> usize {
    key.route.len() + key.client.len() + key.request_id.len() + record
}

/// What the ops need besides the transaction.
pub(super) struct Context<'a> {
    pub(super) book: &'a mut Book,
    pub(super) quota: &'a dyn Fn(&str) -> Option<Quota>,
    pub(super) changes: &'a mut Vec<KeyChange>,
    pub(super) now_ms: u64,
}

/// Runs one op.
pub(super) fn run(
    tx: &Transaction<'_>,
    op: &Op,
    cx: &mut Context<'_>,
) -> rusqlite::Result<Result<Done, StoreError>> {
    match op {
        Op::Claim(row) => claim(tx, row, cx),
        Op::Save(row) => save(tx, row, cx),
        Op::Kv {
            namespace,
            key,
            mutation,
        } => kv(tx, namespace, key, mutation.clone(), cx),
        Op::Expire {
            limit,
            created_before,
        } => expire(tx, *limit, created_before, cx).map(|n| Ok(Done::Expired(n))),
    }
}

fn claim(
    tx: &Transaction<'_>,
    row: &SagaRow,
    cx: &mut Context<'_>,
) -> rusqlite::Result<Result<Done, StoreError>> {
    let delta = Delta::between(None, Some(saga_size(&row.key, row.record.len())));
    // A repeat is answered even when the sagas are at their quota: the quota only refuses a
    // row that would be new.
    let refused = cx.book.charge(SAGAS, delta, (cx.quota)(SAGAS)).err();
    if refused.is_none() {
        let inserted = tx
            .prepare_cached(
                "INSERT INTO sagas (id, route, client, request_id, status, created_ms, updated_ms,
                                    expires_at_ms, record)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)
                 ON CONFLICT (route, client, request_id) DO NOTHING",
            )?
            .execute(params![
                &*row.id,
                &*row.key.route,
                &*row.key.client,
                &*row.key.request_id,
                row.status,
                to_i64(row.created_ms),
                to_i64(row.updated_ms),
                row.expires_at_ms.map(to_i64),
                &row.record[..],
            ])?;
        if inserted == 1 {
            return Ok(Ok(Done::Claim(Claim::Won)));
        }
        let _ = cx.book.charge(
            SAGAS,
            Delta {
                keys: -delta.keys,
                bytes: -delta.bytes,
            },
            None,
        );
    }
    let existing = tx
        .prepare_cached(
            "SELECT id, status, created_ms, updated_ms, expires_at_ms, record FROM sagas
             WHERE route = ?1 AND client = ?2 AND request_id = ?3",
        )?
        .query_row(
            params![&*row.key.route, &*row.key.client, &*row.key.request_id],
            |r| super::read::saga_columns(r, row.key.clone()),
        )
        .optional()?;
    Ok(match (existing, refused) {
        (Some(existing), _) => Ok(Done::Claim(Claim::Exists(existing))),
        (None, Some(refused)) => Err(refused),
        (None, None) => Err(StoreError::Unavailable(
            "the saga's row vanished while it was claimed".into(),
        )),
    })
}

fn save(
    tx: &Transaction<'_>,
    row: &SagaRow,
    cx: &mut Context<'_>,
) -> rusqlite::Result<Result<Done, StoreError>> {
    let updated = tx
        .prepare_cached(
            "UPDATE sagas SET status = ?2, updated_ms = ?3, expires_at_ms = ?4, record = ?5
             WHERE id = ?1",
        )?
        .execute(params![
            &*row.id,
            row.status,
            to_i64(row.updated_ms),
            row.expires_at_ms.map(to_i64),
            &row.record[..],
        ])?;
    if updated == 0 {
        // Removed by an operator's hand meanwhile: nothing to update, nothing to recreate, and
        // the saga's task must stop rather than believe its step recorded.
        tracing::warn!(saga = %row.id, "the saga's row is gone; its update is refused");
        return Ok(Err(StoreError::Fenced));
    }
    let delta = Delta::between(Some(row.replaces_bytes), Some(row.record.len()));
    // A running saga's growth is booked but never refused: it must not lose a step.
    let _ = cx.book.charge(SAGAS, delta, None);
    Ok(Ok(Done::Saved))
}

fn kv(
    tx: &Transaction<'_>,
    namespace: &str,
    key: &str,
    mutation: Mutation,
    cx: &mut Context<'_>,
) -> rusqlite::Result<Result<Done, StoreError>> {
    let present: Option<(Vec<u8>, Option<i64>)> = tx
        .prepare_cached("SELECT value, expires_at_ms FROM kv WHERE namespace = ?1 AND key = ?2")?
        .query_row(params![namespace, key], |r| Ok((r.get(0)?, r.get(1)?)))
        .optional()?;
    let present = present.map(|(value, at)| (Bytes::from(value), at.map(|at| at.max(0) as u64)));
    let live = present
        .as_ref()
        .filter(|(_, at)| at.is_none_or(|at| at > cx.now_ms));
    let (applied, change) = match apply(live.map(|(v, at)| (v, *at)), mutation, cx.now_ms) {
        Ok(result) => result,
        Err(refused) => return Ok(Err(refused)),
    };
    let Some(next) = change else {
        return Ok(Ok(Done::Kv(applied)));
    };
    let usage_namespace = format!("kv:{namespace}");
    let delta = Delta::between(
        present.as_ref().map(|(v, _)| key.len() + v.len()),
        next.as_ref().map(|(v, _)| key.len() + v.len()),
    );
    if let Err(refused) = cx
        .book
        .charge(&usage_namespace, delta, (cx.quota)(&usage_namespace))
    {
        return Ok(Err(refused));
    }
    match &next {
        Some((value, expires_at_ms)) => tx
            .prepare_cached(
                "INSERT INTO kv (namespace, key, value, expires_at_ms) VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT (namespace, key)
                 DO UPDATE SET value = excluded.value, expires_at_ms = excluded.expires_at_ms",
            )?
            .execute(params![
                namespace,
                key,
                &value[..],
                expires_at_ms.map(to_i64)
            ])?,
        None => tx
            .prepare_cached("DELETE FROM kv WHERE namespace = ?1 AND key = ?2")?
            .execute(params![namespace, key])?,
    };
    cx.changes.push(KeyChange {
        namespace: namespace.into(),
        key: key.into(),
        value: next,
    });
    Ok(Ok(Done::Kv(applied)))
}

fn expire(
    tx: &Transaction<'_>,
    limit: u64,
    created_before: &str,
    cx: &mut Context<'_>,
) -> rusqlite::Result<u64> {
    let now = to_i64(cx.now_ms);
    let limit = to_i64(limit);
    let mut removed = 0;
    let mut sagas = tx.prepare_cached(
        "DELETE FROM sagas WHERE id IN
             (SELECT id FROM sagas WHERE id < ?3 AND expires_at_ms <= ?1 ORDER BY id LIMIT ?2)
         RETURNING octet_length(route) + octet_length(client) + octet_length(request_id)
                   + length(record)",
    )?;
    let mut rows = sagas.query(params![now, limit, created_before])?;
    while let Some(row) = rows.next()? {
        let size: i64 = row.get(0)?;
        let _ = cx.book.charge(
            SAGAS,
            Delta {
                keys: -1,
                bytes: -size,
            },
            None,
        );
        removed += 1;
    }
    let mut keys = tx.prepare_cached(
        "DELETE FROM kv WHERE rowid IN
             (SELECT rowid FROM kv WHERE expires_at_ms <= ?1 ORDER BY expires_at_ms LIMIT ?2)
         RETURNING namespace, key, octet_length(key) + length(value)",
    )?;
    let mut rows = keys.query(params![now, limit])?;
    while let Some(row) = rows.next()? {
        let namespace: String = row.get(0)?;
        let key: String = row.get(1)?;
        let size: i64 = row.get(2)?;
        let _ = cx.book.charge(
            &format!("kv:{namespace}"),
            Delta {
                keys: -1,
                bytes: -size,
            },
            None,
        );
        cx.changes.push(KeyChange {
            namespace: namespace.into(),
            key: key.into(),
            value: None,
        });
        removed += 1;
    }
    Ok(removed)
}
