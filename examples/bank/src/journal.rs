//! Optional persistence (`--data FILE`): every change is appended as one JSON line before the
//! answer is sent, and replayed at start. Lines are written without fsync: they survive the bank
//! process being killed (the page cache keeps them), which is what the fault tests do to it. A
//! torn last line, from a kill mid-write, is skipped.

use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::path::Path;

use crate::ledger::{Change, Ledger};

/// An open journal.
#[derive(Debug)]
pub struct Journal {
    file: File,
}

impl Journal {
    /// Opens (creating) the journal and replays it into `ledger`. Returns the lines replayed.
    pub fn open(path: &Path, ledger: &mut Ledger) -> std::io::Result<(Self, usize)> {
        let mut replayed = 0;
        if path.exists() {
            for line in BufReader::new(File::open(path)?).lines() {
                match serde_json::from_str::<Change>(&line?) {
                    Ok(change) => {
                        ledger.restore(change);
                        replayed += 1;
                    }
                    Err(error) => eprintln!("bank: skipping a torn journal line: {error}"),
                }
            }
        }
        let file = OpenOptions::new().create(true).append(true).open(path)?;
        Ok((Self { file }, replayed))
    }

    /// Appends one change.
    pub fn append(&mut self, change: &Change) -> std::io::Result<()> {
        if change.answer.is_none() && change.barrier.is_none() && change.account.is_none() {
            return Ok(());
        }
        let mut line = serde_json::to_vec(change).map_err(std::io::Error::other)?;
        line.push(b'\n');
        self.file.write_all(&line)
    }
}
