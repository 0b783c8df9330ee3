//! Builds an object crate into its component with cargo, as `cargo build --release
//! --target wasm32-wasip2` would, and finds the `.wasm` files it wrote.

use anyhow::{Context, Result, bail};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;

/// The components (`.wasm` files) the crate at `dir` builds into. Builds of one test
/// binary take turns: cargo would only wait on its own lock, printing about it.
pub fn build_crate(dir: &Path) -> Result<Vec<PathBuf>> {
    static BUILDING: Mutex<()> = Mutex::new(());
    let _turn = BUILDING.lock().unwrap_or_else(|p| p.into_inner());
    // The cargo running the tests, when there is one.
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let output = Command::new(&cargo)
        .args([
            "build",
            "--release",
            "--target",
            "wasm32-wasip2",
            "--message-format=json-render-diagnostics",
        ])
        .current_dir(dir)
        // The outer `cargo test` sets these for its own build; the component has its own.
        .env_remove("CARGO_BUILD_TARGET")
        .env_remove("RUSTFLAGS")
        .env_remove("CARGO_ENCODED_RUSTFLAGS")
        .stderr(std::process::Stdio::inherit())
        .output()
        .with_context(|| format!("running {cargo:?} build in {}", dir.display()))?;
    if !output.status.success() {
        bail!(
            "`cargo build --release --target wasm32-wasip2` failed in {} (its errors are above)",
            dir.display()
        );
    }
    let mut wasm = Vec::new();
    for line in output.stdout.split(|b| *b == b'\n') {
        let Ok(message) = serde_json::from_slice::<serde_json::Value>(line) else {
            continue;
        };
        if message["reason"] != "compiler-artifact" {
            continue;
        }
        for file in message["filenames"].as_array().into_iter().flatten() {
            if let Some(file) = file.as_str().filter(|f| f.ends_with(".wasm")) {
                wasm.push(PathBuf::from(file));
            }
        }
    }
    if wasm.is_empty() {
        bail!(
            "building {} wrote no .wasm file: an object crate needs \
             `[lib] crate-type = [\"cdylib\"]` in its Cargo.toml",
            dir.display()
        );
    }
    Ok(wasm)
}
