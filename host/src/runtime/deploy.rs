//! Code updates without a restart: a class's new component is compiled and checked while
//! the old one keeps serving (a bad one is refused, naming why), then swapped in; every
//! object of the class finishes its current event and runs its next on a fresh instance of
//! the new code, built from storage. Sockets belong to the host and stay connected.

use super::Runtime;
use super::inspect::InspectError;
use crate::wasm::engine;
use std::sync::Arc;

impl Runtime {
    /// Deploys `component` (a .wasm file's bytes) as the code of `binding`'s class;
    /// answers the class's new code version.
    pub async fn deploy(
        self: &Arc<Self>,
        binding: &str,
        component: Vec<u8>,
    ) -> Result<u64, InspectError> {
        let class = self
            .class(binding)
            .cloned()
            .ok_or_else(|| InspectError::NotFound(format!("no binding named {binding:?}")))?;
        let rt = self.clone();
        static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let path = self.cache_dir.join(format!("{binding}.deploy-{n}.wasm"));
        let pre = tokio::task::spawn_blocking(move || {
            std::fs::create_dir_all(&rt.cache_dir)?;
            std::fs::write(&path, &component)?;
            let compiled = engine::load_component(&rt.env.engine, &path, &rt.cache_dir)
                .and_then(|c| engine::prepare(&rt.linker, &c, &path));
            let _ = std::fs::remove_file(&path);
            compiled
        })
        .await
        .map_err(|e| InspectError::Unavailable(format!("the deploy stopped: {e}")))?
        .map_err(|e| InspectError::BadRequest(format!("the new code was refused: {e:#}")))?;
        let version = class.deploy(pre);
        tracing::info!(
            binding,
            version,
            "class code updated: each object's next event runs on it"
        );
        Ok(version)
    }
}
