//! Shared by the harness's own tests: the repository's built guests.

use std::path::PathBuf;
use std::sync::OnceLock;

/// A built guest of `guests/` (all built once per test binary, as `make rust-guests` does).
pub fn guest(name: &str) -> PathBuf {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    static BUILT: OnceLock<()> = OnceLock::new();
    BUILT.get_or_init(|| {
        let status = std::process::Command::new("make")
            .args(["-s", "rust-guests"])
            .current_dir(&root)
            .status()
            .expect("run `make rust-guests`");
        assert!(status.success(), "`make rust-guests` failed");
    });
    root.join("target/guests").join(format!("{name}.wasm"))
}
