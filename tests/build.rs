//! Builds the WebAssembly components the integration tests load — the shipped plugins in
//! `plugins/` and the misbehaving test programs in `tests/programs/` — from source, for
//! `wasm32-wasip2`, and writes their paths as constants into `$OUT_DIR/wasm.rs`.
//!
//! Every program is a constant; one that no test uses is dead code, which the lint gate refuses.
//! So a program cannot be added without a test that loads it.

use std::path::{Path, PathBuf};
use std::process::Command;

fn main() {
    let tests = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").expect("manifest dir"));
    let root = tests.parent().expect("workspace root").to_path_buf();
    let components = list(&root.join("plugins"), "txgate-plugin-")
        .into_iter()
        .chain(list(&tests.join("programs"), "txgate-test-"))
        .collect::<Vec<_>>();
    for dir in [
        "plugins",
        "tests/programs",
        "plugin-sdk/src",
        "plugin-sdk/wit",
        "plugin-sdk/macros",
    ] {
        println!("cargo:rerun-if-changed={}", root.join(dir).display());
    }
    let target_dir = root.join("target").join("wasm");
    build(&root, &target_dir, &components);
    let out = PathBuf::from(std::env::var("OUT_DIR").expect("out dir"));
    let release = target_dir.join("wasm32-wasip2").join("release");
    let constants: String = components
        .iter()
        .map(|(constant, package)| {
            let file = release.join(format!("{}.wasm", package.replace('-', "_")));
            assert!(file.exists(), "{} was not built", file.display());
            format!(
                "pub(crate) const {constant}: &str = {:?};\n",
                file.display().to_string()
            )
        })
        .collect();
    std::fs::write(out.join("wasm.rs"), constants).expect("write wasm.rs");
}

/// `(CONSTANT_NAME, package-name)` for every crate directory under `dir`.
fn list(dir: &Path, prefix: &str) -> Vec<(String, String)> {
    let mut found: Vec<(String, String)> = std::fs::read_dir(dir)
        .expect("read component dirs")
        .filter_map(Result::ok)
        .filter(|entry| entry.path().join("Cargo.toml").exists())
        .map(|entry| {
            let name = entry.file_name().to_string_lossy().into_owned();
            (
                name.replace('-', "_").to_uppercase(),
                format!("{prefix}{name}"),
            )
        })
        .collect();
    found.sort();
    found
}

fn build(root: &Path, target_dir: &Path, components: &[(String, String)]) {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut command = Command::new(cargo);
    command
        .current_dir(root)
        .args([
            "build",
            "--release",
            "--target",
            "wasm32-wasip2",
            "--target-dir",
        ])
        .arg(target_dir);
    for (_, package) in components {
        command.args(["-p", package]);
    }
    // The outer build's settings (clippy's wrapper, host flags) must not leak into this one.
    for var in [
        "RUSTC_WRAPPER",
        "RUSTC_WORKSPACE_WRAPPER",
        "RUSTFLAGS",
        "CARGO_ENCODED_RUSTFLAGS",
        "CARGO_BUILD_TARGET",
        "CARGO_TARGET_DIR",
        "CARGO_MAKEFLAGS",
        "MAKEFLAGS",
    ] {
        command.env_remove(var);
    }
    let status = command.status().expect("run cargo for the wasm components");
    assert!(
        status.success(),
        "building the wasm components failed; is the target installed? (rustup target add wasm32-wasip2)"
    );
}
