//! Damage to the store's files, at every kind of offset: each start either recovers (cutting a
//! torn tail, with a warning) or refuses with an error naming the file and the byte; none
//! panics, and every record written before the damage survives a recovery.

use std::path::{Path, PathBuf};

use bytes::Bytes;

use super::{Durability, EmbeddedStore, Mutation, Store};

const KEYS: usize = 60;
/// Every record written here has the same size, so record `i` spans `[i * R, (i + 1) * R)`.
const RECORD_BYTES: usize = 12 + 1 + 2 + 2 + 4 + 5 + 8 + 4 + 20;

fn key(i: usize) -> String {
    format!("k{i:04}")
}

async fn write_fixture(dir: &Path) -> PathBuf {
    let (store, _) = EmbeddedStore::open(dir, 1000, None).unwrap();
    for i in 0..KEYS {
        let value = Bytes::from(format!("{:020}", i));
        let put = Mutation::Put {
            value,
            ttl_ms: None,
        };
        store
            .mutate("ns", &key(i), put, Durability::Durable)
            .await
            .unwrap();
    }
    store.close();
    let segment = std::fs::read_dir(dir)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .find(|p| {
            p.extension().is_some_and(|x| x == "log") && std::fs::metadata(p).unwrap().len() > 0
        })
        .unwrap();
    assert_eq!(
        std::fs::metadata(&segment).unwrap().len() as usize,
        KEYS * RECORD_BYTES
    );
    segment
}

fn copy_dir(from: &Path, to: &Path) {
    for entry in std::fs::read_dir(from).unwrap().flatten() {
        if entry.file_name() != "LOCK" {
            std::fs::copy(entry.path(), to.join(entry.file_name())).unwrap();
        }
    }
}

/// Opens a damaged copy; returns the keys it recovered, or the error.
async fn open_damaged(
    pristine: &Path,
    segment: &Path,
    damage: impl FnOnce(&Path),
) -> Result<Vec<usize>, String> {
    let dir = tempfile::tempdir().unwrap();
    copy_dir(pristine, dir.path());
    damage(&dir.path().join(segment.file_name().unwrap()));
    let opened =
        std::panic::AssertUnwindSafe(async { EmbeddedStore::open(dir.path(), 1000, None) });
    let (store, _) = match futures_util::FutureExt::catch_unwind(opened).await {
        Ok(Ok(opened)) => opened,
        Ok(Err(error)) => return Err(error.to_string()),
        Err(_) => panic!("opening a damaged store panicked"),
    };
    let mut present = Vec::new();
    for i in 0..KEYS {
        if store.get("ns", &key(i)).await.is_some() {
            present.push(i);
        }
    }
    Ok(present)
}

#[tokio::test]
async fn truncation_at_any_offset_keeps_every_earlier_record() {
    let pristine = tempfile::tempdir().unwrap();
    let segment = write_fixture(pristine.path()).await;
    for cut in (0..KEYS * RECORD_BYTES).step_by(7) {
        let recovered = open_damaged(pristine.path(), &segment, |file| {
            let handle = std::fs::OpenOptions::new().write(true).open(file).unwrap();
            handle.set_len(cut as u64).unwrap();
        })
        .await
        .unwrap_or_else(|error| panic!("a cut at {cut} must recover, got: {error}"));
        let whole = cut / RECORD_BYTES;
        assert_eq!(
            recovered,
            (0..whole).collect::<Vec<_>>(),
            "cut at byte {cut}"
        );
    }
}

#[tokio::test]
async fn a_flipped_byte_is_cut_as_a_tail_or_refused_with_its_position() {
    let pristine = tempfile::tempdir().unwrap();
    let segment = write_fixture(pristine.path()).await;
    for at in (0..KEYS * RECORD_BYTES).step_by(11) {
        let result = open_damaged(pristine.path(), &segment, |file| {
            let mut bytes = std::fs::read(file).unwrap();
            bytes[at] ^= 0x5A;
            std::fs::write(file, bytes).unwrap();
        })
        .await;
        let damaged = at / RECORD_BYTES;
        match result {
            Ok(recovered) => {
                assert_eq!(
                    damaged,
                    KEYS - 1,
                    "only damage in the last record is a tail (byte {at})"
                );
                assert_eq!(
                    recovered,
                    (0..damaged).collect::<Vec<_>>(),
                    "flip at byte {at}"
                );
            }
            Err(error) => {
                assert!(
                    damaged < KEYS - 1,
                    "damage in the last record must be cut, not refused: {error}"
                );
                let offset = damaged * RECORD_BYTES;
                assert!(
                    error.contains("wal-") && error.contains(&format!("at byte {offset}")),
                    "{error}"
                );
            }
        }
    }
}

#[tokio::test]
async fn a_damaged_snapshot_is_refused_with_its_name() {
    let pristine = tempfile::tempdir().unwrap();
    write_fixture(pristine.path()).await;
    {
        let (store, _) = EmbeddedStore::open(pristine.path(), 1000, None).unwrap();
        super::disk::snapshot_now(pristine.path(), 50, store.memory()).unwrap();
        store.close();
    }
    let snapshot = pristine.path().join(super::disk::snapshot_name(50));
    let size = std::fs::metadata(&snapshot).unwrap().len() as usize;
    for at in [0, RECORD_BYTES / 2, size / 2, size - 1] {
        let dir = tempfile::tempdir().unwrap();
        copy_dir(pristine.path(), dir.path());
        let copy = dir.path().join(snapshot.file_name().unwrap());
        let mut bytes = std::fs::read(&copy).unwrap();
        bytes[at] ^= 0x01;
        std::fs::write(&copy, bytes).unwrap();
        let error = EmbeddedStore::open(dir.path(), 1000, None)
            .unwrap_err()
            .to_string();
        assert!(
            error.contains("snapshot-") && error.contains("at byte"),
            "{error}"
        );
    }
}
