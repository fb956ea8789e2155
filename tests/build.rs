//! Builds the WebAssembly components the integration tests load — the shipped plugins in
//! `plugins/` and the misbehaving test programs in `tests/programs/` — from source, for
//! `wasm32-wasip2`, and writes their paths as constants into `$OUT_DIR/wasm.rs`. The mask
//! plugin is also built from Python (`plugins/mask-py`) when componentize-py is installed.
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
    let mask_py = build_python_mask(&root, &target_dir);
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
    let constants = format!(
        "{constants}/// The mask plugin built from Python (`plugins/mask-py`); `None` when componentize-py is\n\
         /// not installed.\npub(crate) const MASK_PY: Option<&str> = {mask_py:?};\n"
    );
    std::fs::write(out.join("wasm.rs"), constants).expect("write wasm.rs");
}

/// Builds the mask plugin from Python with componentize-py (`plugins/mask-py/build`) into
/// `target/wasm/python/mask_py.wasm`, when the tool is installed; `None` when it is not (the
/// Python build's tests then fail and say how to install it). Building takes CPython's
/// snapshot, some 20 s, so a component newer than its sources and the WIT is kept.
fn build_python_mask(root: &Path, target_dir: &Path) -> Option<String> {
    let installed = Command::new("componentize-py")
        .arg("--version")
        .output()
        .is_ok_and(|output| output.status.success());
    if !installed {
        println!(
            "cargo:warning=componentize-py is not installed, so the Python build of the mask plugin is not built: pip install -r plugins/mask-py/requirements.txt"
        );
        return None;
    }
    let sources = root.join("plugins").join("mask-py");
    let wit = root.join("plugin-sdk").join("wit");
    let wasm = target_dir.join("python").join("mask_py.wasm");
    let newest_input = [&sources, &wit]
        .iter()
        .filter_map(|dir| std::fs::read_dir(dir).ok())
        .flatten()
        .filter_map(Result::ok)
        .filter(|entry| entry.path().is_file())
        .filter_map(|entry| entry.metadata().and_then(|m| m.modified()).ok())
        .max();
    let built = std::fs::metadata(&wasm).and_then(|m| m.modified()).ok();
    let fresh = matches!((built, newest_input), (Some(built), Some(input)) if built > input);
    if !fresh {
        let status = Command::new("bash")
            .arg(sources.join("build"))
            .arg(&wasm)
            .status()
            .expect("run plugins/mask-py/build");
        assert!(
            status.success(),
            "building the Python mask plugin failed (plugins/mask-py/build)"
        );
    }
    Some(wasm.display().to_string())
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
