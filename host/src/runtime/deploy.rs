//! Code updates without a restart: a class's new component is compiled and checked while
//! the old one keeps serving (a bad one is refused, naming why), then swapped in; every
//! object of the class finishes its current event and runs its next on a fresh instance of
//! the new code, built from storage. Sockets belong to the host and stay connected. A
//! reload (SIGHUP) deploys every class whose component file changed.

use super::Runtime;
use super::inspect::InspectError;
use crate::wasm::engine;
use sha2::{Digest, Sha256};
use std::sync::Arc;

/// What tells one component's bytes from another's.
pub fn hash(component: &[u8]) -> [u8; 32] {
    Sha256::digest(component).into()
}

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
        let new_hash = hash(&component);
        let rt = self.clone();
        // Messages name the component by its class, never by a path in the data directory.
        let name = format!("the component deployed to {binding:?}");
        let pre = tokio::task::spawn_blocking(move || {
            let component =
                engine::load_component_bytes(&rt.env.engine, component, &name, &rt.cache_dir)?;
            engine::check_initial_memory(&component, &name, rt.limits())?;
            engine::prepare(&rt.linker, &component, &name)
        })
        .await
        .map_err(|e| InspectError::Unavailable(format!("the deploy stopped: {e}")))?
        .map_err(|e| InspectError::BadRequest(format!("the new code was refused: {e:#}")))?;
        let version = class.deploy(pre);
        if let Some(entry) = self
            .deployed
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get_mut(binding)
        {
            entry.1 = new_hash;
        }
        tracing::info!(
            binding,
            version,
            "class code updated: each object's next event runs on it"
        );
        Ok(version)
    }

    /// Deploys every class whose component file differs from the code it runs; answers
    /// what happened to each (an unreadable or refused file leaves its class as it was).
    pub async fn reload(self: &Arc<Self>) -> Vec<(String, Result<u64, InspectError>)> {
        let files: Vec<(String, std::path::PathBuf, [u8; 32])> = self
            .deployed
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .map(|(b, (path, hash))| (b.clone(), path.clone(), *hash))
            .collect();
        let mut done = Vec::new();
        for (binding, path, running) in files {
            let outcome = match std::fs::read(&path) {
                Err(e) => Err(InspectError::BadRequest(format!(
                    "cannot read {}: {e}",
                    path.display()
                ))),
                Ok(bytes) if hash(&bytes) == running => continue,
                Ok(bytes) => self.deploy(&binding, bytes).await,
            };
            done.push((binding, outcome));
        }
        done
    }
}
