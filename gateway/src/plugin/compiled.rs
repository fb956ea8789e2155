//! Compiled plugins kept on disk, so that a restart or a reload does not compile again.
//!
//! Compiling a component is the slow part of loading a plugin (Cranelift, hundreds of
//! milliseconds for a shipped plugin); loading its compiled artifact back is a copy. Each
//! artifact is a file `<store dir>/plugin-cache/<key>.cwasm`, where the key is the SHA-256 of
//! the component's bytes and of the engine's compilation settings
//! (`Engine::precompile_compatibility_hash`, which covers the target, the Cranelift flags, the
//! wasm features and tunables, and wasmtime's own version). A changed module, a changed engine
//! configuration or another wasmtime therefore looks up another file, never a stale one.
//!
//! Only the embedded store has a directory of its own; a gateway of a fleet (`backend =
//! "postgres"`) compiles at every start and keeps nothing on disk.
//!
//! The cache can only make loading faster, never make it fail: an unreadable, torn or corrupted
//! artifact is compiled again (and rewritten), and a full disk or a read-only directory is a
//! warning. After every successful load the directory is trimmed to the artifacts of the
//! loaded config plus the 16 most recently used others (a rollback does not compile either).

// Loading compiled code is `unsafe` in wasmtime: the bytes are trusted to be machine code that
// `Component::serialize` wrote for a compatible engine, and nothing checks the code itself. This
// module is the one place the gateway does it (the crate denies `unsafe_code` everywhere else),
// and it earns that trust: the file sits in the gateway's own data directory; the gateway wrote
// it, atomically (a temporary name, then a rename), so a reader never sees half a file; its
// SHA-256 is stored in its header and checked against the bytes actually handed to wasmtime
// (read once into memory, so the file cannot change between the check and the load); and
// wasmtime itself validates the artifact's header against the running engine (its version and
// settings) before it uses anything.
#![allow(unsafe_code)]

use std::collections::HashSet;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Instant, SystemTime};

use sha2::{Digest, Sha256};
use wasmtime::component::Component;

use super::engine::Runtime;
use crate::config::{Backend, Config};

/// The cache's directory, inside the store's.
const CACHE_DIR: &str = "plugin-cache";
/// Artifacts' file extension.
const EXTENSION: &str = "cwasm";
/// The first bytes of an artifact file: this format, version 1.
const MAGIC: &[u8; 16] = b"txgate-cwasm-v1\n";
/// The header: the magic, then the SHA-256 of the rest of the file.
const HEADER_BYTES: usize = MAGIC.len() + 32;
/// Largest artifact read back; a compiled plugin is a few MiB.
const ARTIFACT_BYTES_MAX: u64 = 512 * 1024 * 1024;
/// Artifacts kept beyond those of the loaded config, the most recently used first.
const SPARE_ARTIFACTS_MAX: usize = 16;
/// Directory entries looked at when trimming.
const ENTRIES_SCANNED_MAX: usize = 10_000;

/// Where compiled plugins are kept, if anywhere.
#[derive(Debug, Clone)]
pub(super) struct Artifacts {
    dir: Option<PathBuf>,
}

/// A compiled component, and the key its artifact is kept under.
pub(super) struct Compiled {
    pub(super) component: Component,
    pub(super) key: String,
}

impl Artifacts {
    /// No cache: every component compiled, nothing kept (`txgate check`).
    pub(super) fn none() -> Self {
        Self { dir: None }
    }

    /// The artifacts kept for `config`: in its store dir (embedded), none in a fleet.
    pub(super) fn for_config(config: &Config) -> Self {
        let dir = match config.store.backend {
            Backend::Embedded => Some(config.resolve(&config.store.dir).join(CACHE_DIR)),
            Backend::Postgres => None,
        };
        Self { dir }
    }

    /// The component of `wasm`, from its artifact when one is kept and sound, otherwise
    /// compiled (and kept for the next load). Errors are the compiler's.
    pub(super) fn component(
        &self,
        runtime: &Runtime,
        plugin: &str,
        wasm: &[u8],
    ) -> Result<Compiled, String> {
        let started = Instant::now();
        let key = key(runtime, wasm);
        let path = self.dir.as_ref().map(|dir| artifact_path(dir, &key));
        if let Some(path) = &path {
            match read(runtime, path) {
                Ok(Some(component)) => {
                    touch(path);
                    let load_us = started.elapsed().as_micros();
                    tracing::info!(plugin, load_us, artifact = %path.display(), "plugin loaded from the compile cache");
                    return Ok(Compiled { component, key });
                }
                Ok(None) => {}
                Err(reason) => tracing::warn!(
                    plugin,
                    artifact = %path.display(),
                    %reason,
                    "compiled plugin unusable; compiling it again"
                ),
            }
        }
        let component = runtime.compile(wasm)?;
        let compile_ms = started.elapsed().as_millis();
        tracing::info!(plugin, compile_ms, "plugin compiled");
        if let (Some(dir), Some(path)) = (&self.dir, &path)
            && let Err(reason) = write(dir, path, &component)
        {
            tracing::warn!(
                plugin,
                dir = %dir.display(),
                %reason,
                "cannot keep the compiled plugin; the next start compiles it again"
            );
        }
        Ok(Compiled { component, key })
    }

    /// Removes every artifact but those of `keys` and the [`SPARE_ARTIFACTS_MAX`] most recently
    /// used others, and any temporary file a crash left. Failures are warnings.
    pub(super) fn retain(&self, keys: &HashSet<String>) {
        let Some(dir) = &self.dir else { return };
        if let Err(error) = trim(dir, keys) {
            tracing::warn!(dir = %dir.display(), %error, "cannot trim the compile cache");
        }
    }
}

/// The artifact's key: what the compiled code depends on, the component and the engine.
fn key(runtime: &Runtime, wasm: &[u8]) -> String {
    // The compatibility hash includes wasmtime's version, the target and every compilation
    // setting. `DefaultHasher::new()` is the same function in every run of this binary; another
    // build of the gateway may hash differently, which only costs one compilation.
    let mut engine = DefaultHasher::new();
    runtime
        .engine()
        .precompile_compatibility_hash()
        .hash(&mut engine);
    let mut hash = Sha256::new();
    hash.update(MAGIC);
    hash.update(engine.finish().to_le_bytes());
    hash.update(wasm);
    hex(&hash.finalize())
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn artifact_path(dir: &Path, key: &str) -> PathBuf {
    dir.join(format!("{key}.{EXTENSION}"))
}

/// The artifact at `path`: `None` when there is none, an error when it is there but unusable
/// (torn, corrupted, or refused by wasmtime), in which case the file is removed.
fn read(runtime: &Runtime, path: &Path) -> Result<Option<Component>, String> {
    let bytes = match read_bounded(path) {
        Ok(bytes) => bytes,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(error) => return Err(format!("cannot read it: {error}")),
    };
    let loaded = verified(&bytes).and_then(|code| {
        // SAFETY: `code` is exactly the bytes whose SHA-256 the gateway stored when it wrote the
        // file from `Component::serialize` (see the module's comment); wasmtime checks that they
        // were compiled by a compatible engine before using them.
        unsafe { Component::deserialize(runtime.engine(), code) }
            .map_err(|error| format!("wasmtime refused it: {error:#}"))
    });
    if loaded.is_err() {
        let _ = std::fs::remove_file(path);
    }
    loaded.map(Some)
}

fn read_bounded(path: &Path) -> std::io::Result<Vec<u8>> {
    let file = std::fs::File::open(path)?;
    // Sized up front: growing the buffer while reading cost as much as the read.
    let size = file.metadata()?.len().min(ARTIFACT_BYTES_MAX + 1);
    let mut bytes = Vec::with_capacity(usize::try_from(size).unwrap_or(0));
    file.take(ARTIFACT_BYTES_MAX + 1).read_to_end(&mut bytes)?;
    if bytes.len() as u64 > ARTIFACT_BYTES_MAX {
        return Err(std::io::Error::other(format!(
            "larger than {ARTIFACT_BYTES_MAX} bytes"
        )));
    }
    Ok(bytes)
}

/// The compiled code of an artifact file, if its header is ours and its checksum matches.
fn verified(bytes: &[u8]) -> Result<&[u8], String> {
    if bytes.len() < HEADER_BYTES || !bytes.starts_with(MAGIC) {
        return Err("not an artifact written by this gateway (torn or foreign)".into());
    }
    let (header, code) = bytes.split_at(HEADER_BYTES);
    if Sha256::digest(code).as_slice() != &header[MAGIC.len()..] {
        return Err("its checksum does not match (torn or corrupted)".into());
    }
    Ok(code)
}

/// Marks an artifact as just used, so that trimming keeps the artifacts of the configs live most
/// recently (a rollback to the previous config compiles nothing). Best effort.
fn touch(path: &Path) {
    let touched = std::fs::File::open(path).and_then(|file| file.set_modified(SystemTime::now()));
    if let Err(error) = touched {
        tracing::debug!(artifact = %path.display(), %error, "cannot mark the artifact used");
    }
}

/// Writes the artifact under a temporary name and renames it into place, so a reader sees the
/// whole file or none. Not synced: a file torn by a power loss fails its checksum and is
/// compiled again, which is all a sync would save.
fn write(dir: &Path, path: &Path, component: &Component) -> Result<(), String> {
    static WRITES: AtomicU64 = AtomicU64::new(0);
    let code = component
        .serialize()
        .map_err(|error| format!("cannot serialise it: {error:#}"))?;
    let mut file = Vec::with_capacity(HEADER_BYTES + code.len());
    file.extend_from_slice(MAGIC);
    file.extend_from_slice(&Sha256::digest(&code));
    file.extend_from_slice(&code);
    std::fs::create_dir_all(dir).map_err(|error| error.to_string())?;
    let temporary = dir.join(format!(
        ".{}.{}.tmp",
        std::process::id(),
        WRITES.fetch_add(1, Ordering::Relaxed)
    ));
    let written =
        std::fs::write(&temporary, &file).and_then(|()| std::fs::rename(&temporary, path));
    if let Err(error) = written {
        let _ = std::fs::remove_file(&temporary);
        return Err(error.to_string());
    }
    Ok(())
}

/// Keeps the artifacts of `keys` and the few others used most recently (written or loaded,
/// by their modification time); removes the rest and stale temporary files.
fn trim(dir: &Path, keys: &HashSet<String>) -> std::io::Result<()> {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(error) => return Err(error),
    };
    let mut others: Vec<(SystemTime, PathBuf)> = Vec::new();
    for entry in entries.take(ENTRIES_SCANNED_MAX) {
        let path = entry?.path();
        let Some(name) = path.file_name().and_then(|name| name.to_str()) else {
            continue;
        };
        if name.starts_with('.') && name.ends_with(".tmp") {
            // A write that a crash interrupted: loads run one at a time, none is under way.
            let _ = std::fs::remove_file(&path);
            continue;
        }
        let Some(key) = name.strip_suffix(&format!(".{EXTENSION}")) else {
            continue;
        };
        if !keys.contains(key) {
            let modified = std::fs::metadata(&path)
                .and_then(|meta| meta.modified())
                .unwrap_or(SystemTime::UNIX_EPOCH);
            others.push((modified, path));
        }
    }
    others.sort_by_key(|(modified, _)| std::cmp::Reverse(*modified));
    for (_, path) in others.into_iter().skip(SPARE_ARTIFACTS_MAX) {
        std::fs::remove_file(&path)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The smallest component, as text (the engine reads the text format too): compiles in
    /// milliseconds.
    const EMPTY_COMPONENT: &str = "(component)";

    fn compiled_once(artifacts: &Artifacts, runtime: &Runtime, wat: &str) -> Compiled {
        artifacts
            .component(runtime, "test", wat.as_bytes())
            .unwrap()
    }

    fn cache_in(dir: &tempfile::TempDir) -> Artifacts {
        Artifacts {
            dir: Some(dir.path().join(CACHE_DIR)),
        }
    }

    #[test]
    fn an_artifact_is_written_once_and_read_back() {
        let runtime = Runtime::new().unwrap();
        let dir = tempfile::tempdir().unwrap();
        let artifacts = cache_in(&dir);
        let first = compiled_once(&artifacts, &runtime, EMPTY_COMPONENT);
        let path = artifact_path(&dir.path().join(CACHE_DIR), &first.key);
        let written = std::fs::read(&path).unwrap();
        assert!(verified(&written).is_ok());
        assert!(read(&runtime, &path).unwrap().is_some());
        let again = compiled_once(&artifacts, &runtime, EMPTY_COMPONENT);
        assert_eq!(again.key, first.key);
    }

    #[test]
    fn a_corrupted_or_torn_artifact_is_refused_and_removed() {
        let runtime = Runtime::new().unwrap();
        let dir = tempfile::tempdir().unwrap();
        let artifacts = cache_in(&dir);
        let compiled = compiled_once(&artifacts, &runtime, EMPTY_COMPONENT);
        let path = artifact_path(&dir.path().join(CACHE_DIR), &compiled.key);
        let mut bytes = std::fs::read(&path).unwrap();
        let last = bytes.len() - 1;
        bytes[last] ^= 0xff;
        std::fs::write(&path, &bytes).unwrap();
        assert!(read(&runtime, &path).unwrap_err().contains("checksum"));
        assert!(!path.exists(), "a corrupted artifact is removed");
        std::fs::write(&path, &bytes[..HEADER_BYTES / 2]).unwrap();
        assert!(read(&runtime, &path).unwrap_err().contains("torn"));
        assert!(read(&runtime, &path).unwrap().is_none());
    }

    #[test]
    fn another_module_has_another_key() {
        let runtime = Runtime::new().unwrap();
        let artifacts = Artifacts { dir: None };
        let empty = compiled_once(&artifacts, &runtime, EMPTY_COMPONENT);
        let other = compiled_once(&artifacts, &runtime, "(component (core module))");
        assert_ne!(empty.key, other.key);
    }

    #[test]
    fn trimming_keeps_the_used_and_the_newest_spares() {
        let dir = tempfile::tempdir().unwrap();
        for n in 0..SPARE_ARTIFACTS_MAX + 5 {
            std::fs::write(dir.path().join(format!("k{n:02}.{EXTENSION}")), b"x").unwrap();
        }
        std::fs::write(dir.path().join(".1.2.tmp"), b"x").unwrap();
        std::fs::write(dir.path().join("unrelated"), b"x").unwrap();
        let used: HashSet<String> = ["k00".to_string()].into();
        trim(dir.path(), &used).unwrap();
        let left: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|entry| entry.unwrap().file_name().into_string().unwrap())
            .collect();
        assert!(left.contains(&format!("k00.{EXTENSION}")));
        assert!(left.contains(&"unrelated".to_string()));
        assert!(!left.contains(&".1.2.tmp".to_string()));
        assert_eq!(left.len(), 1 + SPARE_ARTIFACTS_MAX + 1);
    }

    #[test]
    fn a_loaded_artifact_counts_as_recently_used() {
        let dir = tempfile::tempdir().unwrap();
        let old = SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1_000_000);
        let path = |n: usize| dir.path().join(format!("k{n:02}.{EXTENSION}"));
        for n in 0..=SPARE_ARTIFACTS_MAX {
            std::fs::write(path(n), b"x").unwrap();
        }
        for n in [0, 1] {
            let file = std::fs::File::options().write(true).open(path(n)).unwrap();
            file.set_modified(old).unwrap();
        }
        touch(&path(0));
        trim(dir.path(), &HashSet::new()).unwrap();
        assert!(path(0).exists(), "the loaded one stays");
        assert!(!path(1).exists(), "the one unused longest goes");
    }

    #[test]
    fn an_unwritable_cache_still_loads() {
        let runtime = Runtime::new().unwrap();
        let dir = tempfile::tempdir().unwrap();
        // A file where the directory should be: nothing can be written under it.
        std::fs::write(dir.path().join(CACHE_DIR), b"not a directory").unwrap();
        let artifacts = cache_in(&dir);
        assert!(
            compiled_once(&artifacts, &runtime, EMPTY_COMPONENT)
                .key
                .len()
                == 64
        );
    }
}
