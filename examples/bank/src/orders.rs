//! A small orders service beside the bank, for transactional messages (SPEC §9): its local
//! transaction, and the back-check txgate asks when a message was neither submitted nor aborted.
//! It keeps the barrier the README shows backend owners, in SQLite:
//!
//! - `POST /orders/{id}/commit[?hold_ms=N]`: the local transaction. It inserts the barrier row
//!   `(id, 'committed')` and commits (after holding the transaction open `N` ms, to show a
//!   back-check meeting an open transaction). 409 if the back-check already decided "rolled
//!   back": the row is taken, so the order cannot commit any more.
//! - `POST /orders/check` with `X-Request-ID`: the back-check. In a transaction of its own it
//!   inserts `(id, 'rolled_back')` if no row is there, then reads the row back: 200 committed,
//!   409 rolled back. While a local transaction holds the database, it answers 425 ("still
//!   running, ask again") rather than guess.
//!
//! A rolled-back order simply never inserts its row.

use std::path::{Path, PathBuf};
use std::time::Duration;

use rusqlite::{Connection, ErrorCode, OptionalExtension, TransactionBehavior, params};

/// How long a back-check waits for an open transaction before it answers 425.
const CHECK_WAIT: Duration = Duration::from_millis(100);
/// The longest `hold_ms`.
const HOLD_MS_MAX: u64 = 60_000;

const SCHEMA: &str = "CREATE TABLE IF NOT EXISTS msg_barrier (
    msg_id TEXT PRIMARY KEY,
    outcome TEXT NOT NULL,
    created_at INTEGER NOT NULL
)";

/// The orders service's database.
#[derive(Debug)]
pub struct Orders {
    path: PathBuf,
    /// A temporary directory holding the file when none was given.
    _temp: Option<TempDir>,
}

/// What the back-check found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Checked {
    /// The order committed: deliver (200).
    Committed,
    /// It rolled back, or never ran: abort (409).
    RolledBack,
    /// A transaction is open: ask again (425).
    Running,
}

impl Orders {
    /// Opens (creating) the database at `path`, or in a temporary directory.
    pub fn open(path: Option<&Path>) -> Result<Self, String> {
        let (path, temp) = match path {
            Some(path) => (path.to_path_buf(), None),
            None => {
                let temp = TempDir::new()?;
                (temp.0.join("orders.db"), Some(temp))
            }
        };
        let conn = Connection::open(&path).map_err(|e| e.to_string())?;
        conn.execute_batch(&format!("PRAGMA journal_mode = WAL; {SCHEMA}"))
            .map_err(|e| e.to_string())?;
        Ok(Self { path, _temp: temp })
    }

    fn connect(&self, wait: Duration) -> rusqlite::Result<Connection> {
        let conn = Connection::open(&self.path)?;
        conn.busy_timeout(wait)?;
        Ok(conn)
    }

    /// The local transaction of order `id`: `Ok(false)` when the back-check rolled it back first.
    pub fn commit(&self, id: &str, hold_ms: u64) -> Result<bool, String> {
        let mut conn = self
            .connect(Duration::from_millis(HOLD_MS_MAX))
            .map_err(|e| e.to_string())?;
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(|e| e.to_string())?;
        tx.execute(
            "INSERT INTO msg_barrier VALUES (?1, 'committed', unixepoch()) ON CONFLICT DO NOTHING",
            params![id],
        )
        .map_err(|e| e.to_string())?;
        // A repeat of a commit that went through (its answer was lost) is committed still.
        let outcome: String = tx
            .query_row(
                "SELECT outcome FROM msg_barrier WHERE msg_id = ?1",
                params![id],
                |r| r.get(0),
            )
            .map_err(|e| e.to_string())?;
        std::thread::sleep(Duration::from_millis(hold_ms.min(HOLD_MS_MAX)));
        tx.commit().map_err(|e| e.to_string())?;
        Ok(outcome == "committed")
    }

    /// The back-check of message `id`.
    pub fn check(&self, id: &str) -> Result<Checked, String> {
        let decide = || -> rusqlite::Result<Checked> {
            let mut conn = self.connect(CHECK_WAIT)?;
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            tx.execute(
                "INSERT INTO msg_barrier VALUES (?1, 'rolled_back', unixepoch()) ON CONFLICT DO NOTHING",
                params![id],
            )?;
            let outcome: Option<String> = tx
                .query_row(
                    "SELECT outcome FROM msg_barrier WHERE msg_id = ?1",
                    params![id],
                    |r| r.get(0),
                )
                .optional()?;
            tx.commit()?;
            Ok(match outcome.as_deref() {
                Some("committed") => Checked::Committed,
                _ => Checked::RolledBack,
            })
        };
        match decide() {
            Ok(checked) => Ok(checked),
            Err(e) if e.sqlite_error_code() == Some(ErrorCode::DatabaseBusy) => {
                Ok(Checked::Running)
            }
            Err(e) => Err(e.to_string()),
        }
    }
}

/// A directory removed when dropped.
#[derive(Debug)]
struct TempDir(PathBuf);

impl TempDir {
    fn new() -> Result<Self, String> {
        let dir = std::env::temp_dir().join(format!(
            "txgate-orders-{}-{}",
            std::process::id(),
            fastrand::u64(..)
        ));
        std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
        Ok(Self(dir))
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_back_check_never_takes_an_open_transaction_for_a_rolled_back_one() {
        let orders = std::sync::Arc::new(Orders::open(None).unwrap());
        assert!(orders.commit("o1", 0).unwrap());
        assert!(
            orders.commit("o1", 0).unwrap(),
            "a repeat is committed still"
        );
        assert_eq!(orders.check("o1").unwrap(), Checked::Committed);
        assert_eq!(
            orders.check("o2").unwrap(),
            Checked::RolledBack,
            "never ran"
        );
        assert!(
            !orders.commit("o2", 0).unwrap(),
            "too late: it was rolled back"
        );
        assert_eq!(orders.check("o2").unwrap(), Checked::RolledBack);
        let open = {
            let orders = orders.clone();
            std::thread::spawn(move || orders.commit("o3", 600))
        };
        std::thread::sleep(Duration::from_millis(150));
        assert_eq!(orders.check("o3").unwrap(), Checked::Running);
        assert!(open.join().unwrap().unwrap());
        assert_eq!(orders.check("o3").unwrap(), Checked::Committed);
    }
}
