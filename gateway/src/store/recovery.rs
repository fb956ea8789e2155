//! Opening the store directory: lock it, load the newest snapshot, replay the log after it, and
//! decide what to do with damage.
//!
//! - A torn or corrupt **tail** of the newest segment (no intact record after the damage: the
//!   usual result of a crash mid-write) is cut at the last intact record, with a warning.
//! - Damage **anywhere else** — in a snapshot, in an older segment, or with intact records after
//!   it — stops the start with an error naming the file and the byte offset. Nothing is modified,
//!   so an operator can inspect or repair the files.
//!
//! Neither case panics: every length and offset read from disk is checked before use.

use std::fs::{File, OpenOptions};
use std::path::{Path, PathBuf};

use super::disk::{self, Segment, parse_number, segment_name, snapshot_name};
use super::memory::Memory;
use super::record::Record;
use crate::error::{Error, ErrorKind};

/// What recovery found.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Recovered {
    /// Records loaded from the snapshot.
    pub snapshot_records: u64,
    /// Records replayed from the log.
    pub log_records: u64,
    /// Bytes cut from a torn tail.
    pub tail_bytes_cut: u64,
}

/// Locks and loads `dir` into `memory`; returns the segment to append to and what was found.
pub(super) fn open(dir: &Path, memory: &Memory) -> Result<(Segment, File, Recovered), Error> {
    std::fs::create_dir_all(dir).map_err(io(dir, "cannot create the store directory"))?;
    let lock = lock_dir(dir)?;
    let (snapshots, segments) = list(dir)?;
    let mut recovered = Recovered::default();
    let base = snapshots.last().copied().unwrap_or(0);
    let mut snapshot_bytes = 0;
    if let Some(&number) = snapshots.last() {
        let path = dir.join(snapshot_name(number));
        let bytes = read(&path)?;
        snapshot_bytes = bytes.len() as u64;
        recovered.snapshot_records = replay(&path, &bytes, memory, false)?.0;
    }
    let live: Vec<u64> = segments.into_iter().filter(|&n| n >= base).collect();
    let mut log_bytes = 0;
    for (i, &number) in live.iter().enumerate() {
        let path = dir.join(segment_name(number));
        let bytes = read(&path)?;
        log_bytes += bytes.len() as u64;
        let newest = i + 1 == live.len();
        let (records, cut_at) = replay(&path, &bytes, memory, newest)?;
        recovered.log_records += records;
        if let Some(offset) = cut_at {
            recovered.tail_bytes_cut = (bytes.len() - offset) as u64;
            tracing::warn!(
                file = %path.display(),
                offset,
                bytes_cut = recovered.tail_bytes_cut,
                "store: torn tail cut at the last intact record"
            );
            truncate(&path, offset as u64)?;
        }
    }
    let number = live.last().map_or(base.max(1), |n| n + 1);
    let file = disk::create_segment(dir, number).map_err(io(dir, "cannot create a log segment"))?;
    let segment = Segment {
        dir: dir.to_path_buf(),
        file,
        number,
        bytes_since_snapshot: log_bytes,
        snapshot_bytes,
    };
    Ok((segment, lock, recovered))
}

/// Loads every record of a file. In the newest segment, damage with nothing intact after it is
/// a torn tail: its offset is returned for cutting. Any other damage is an error.
fn replay(
    path: &Path,
    bytes: &[u8],
    memory: &Memory,
    newest_segment: bool,
) -> Result<(u64, Option<usize>), Error> {
    let mut offset = 0;
    let mut records = 0;
    loop {
        match Record::decode(bytes, offset) {
            Ok(Some((record, next))) => {
                memory.restore(record);
                records += 1;
                offset = next;
            }
            Ok(None) => return Ok((records, None)),
            Err(damage) if newest_segment && !Record::any_intact_after(bytes, damage.offset) => {
                return Ok((records, Some(damage.offset)));
            }
            Err(damage) => {
                let why = if newest_segment {
                    "intact records follow it, so it is not a torn tail"
                } else {
                    "only the newest log segment can end torn"
                };
                return Err(Error::new(
                    ErrorKind::Store,
                    format!(
                        "{}: damaged record at byte {} ({}); {why}. The files are left as they are for inspection",
                        path.display(),
                        damage.offset,
                        damage.reason
                    ),
                ));
            }
        }
    }
}

/// Snapshot and segment numbers in the directory, each sorted; stray `.tmp` files are removed.
fn list(dir: &Path) -> Result<(Vec<u64>, Vec<u64>), Error> {
    let mut snapshots = Vec::new();
    let mut segments = Vec::new();
    let entries = std::fs::read_dir(dir).map_err(io(dir, "cannot list the store directory"))?;
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.ends_with(".tmp") {
            // An unfinished snapshot from a crash during compaction: the log still has its data.
            let _ = std::fs::remove_file(entry.path());
            continue;
        }
        match parse_number(&name) {
            Some(("snapshot", n)) => snapshots.push(n),
            Some(("wal", n)) => segments.push(n),
            _ => {}
        }
    }
    snapshots.sort_unstable();
    segments.sort_unstable();
    Ok((snapshots, segments))
}

fn lock_dir(dir: &Path) -> Result<File, Error> {
    let path = dir.join("LOCK");
    let file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(io(&path, "cannot open the lock file"))?;
    file.try_lock().map_err(|_| {
        Error::new(
            ErrorKind::Store,
            format!(
                "{}: another process is using this store directory",
                dir.display()
            ),
        )
    })?;
    Ok(file)
}

fn read(path: &Path) -> Result<Vec<u8>, Error> {
    std::fs::read(path).map_err(io(path, "cannot read"))
}

fn truncate(path: &Path, len: u64) -> Result<(), Error> {
    let file = OpenOptions::new()
        .write(true)
        .open(path)
        .map_err(io(path, "cannot open to cut the torn tail"))?;
    file.set_len(len)
        .and_then(|()| file.sync_all())
        .map_err(io(path, "cannot cut the torn tail"))
}

fn io(path: &Path, what: &'static str) -> impl Fn(std::io::Error) -> Error {
    let path: PathBuf = path.to_path_buf();
    move |e| Error::new(ErrorKind::Store, format!("{}: {what}", path.display())).with_cause(e)
}
