//! The wasmtime engine: its settings (pooling allocator, epoch interruption), the linkers,
//! and component loading with an on-disk cache of compiled code.

use crate::config::Limits;
use crate::wasm::bindings::ObjectPre;
use crate::wasm::state::{EPOCH_TICK, ObjectState, WorkerState};
use anyhow::{Context, Result, anyhow};
use sha2::{Digest, Sha256};
use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use wasmtime::component::{Component, Linker};
use wasmtime::{Config, Engine, InstanceAllocationStrategy, PoolingAllocationConfig};

/// Core instances one component may hold: a Rust `wasm32-wasip2` component has a handful
/// (its module plus wit-component's shims); Python and JavaScript ones a few more.
const CORE_INSTANCES_PER_COMPONENT: u32 = 20;

/// Memory mappings the pool holds per instance slot while it is empty (measured: 2), and
/// per live instance on top (about 8), and what the rest of the process takes.
const MAPS_PER_SLOT: u64 = 2;
const MAPS_PER_LIVE: u64 = 8;
const MAPS_BESIDE_THE_POOL: u64 = 2_000;

/// Refuses a pool the kernel's `vm.max_map_count` could not even create (it would fail with
/// a bare "Cannot allocate memory"), and warns when it could not hold every slot live.
fn check_map_count(slots: u32, cap: Option<u64>) -> Result<()> {
    let Some(cap) = cap else { return Ok(()) };
    let empty = u64::from(slots) * MAPS_PER_SLOT + MAPS_BESIDE_THE_POOL;
    let full = empty + u64::from(slots) * MAPS_PER_LIVE;
    if empty > cap {
        anyhow::bail!(
            "max_live_objects, max_deferring_objects and max_worker_instances make {slots} \
             instance slots, which need about {empty} memory mappings before any object \
             runs; the kernel allows {cap} (vm.max_map_count): lower --max-live-objects, or \
             raise the cap (sysctl -w vm.max_map_count={full})"
        );
    }
    if full > cap {
        let fits = (cap - empty) / MAPS_PER_LIVE;
        tracing::warn!(
            "{slots} instance slots (max_live_objects, max_deferring_objects and \
             max_worker_instances) need about {full} memory mappings when every instance is \
             live; the kernel allows {cap} (vm.max_map_count), so instances past about \
             {fits} will fail with \"Cannot allocate memory\": raise it \
             (sysctl -w vm.max_map_count={full}) or lower --max-live-objects"
        );
    }
    Ok(())
}

/// Builds the engine every class shares.
pub fn build_engine(limits: &Limits) -> Result<Engine> {
    let mut pool = PoolingAllocationConfig::new();
    // Objects and workers have separate slots (see `Runtime::instance_permit`), both here.
    let n = limits
        .max_live_objects
        .saturating_add(limits.max_deferring_objects)
        .saturating_add(limits.max_worker_instances);
    check_map_count(n, crate::config::machine::max_map_count())?;
    pool.total_component_instances(n)
        .total_core_instances(n.saturating_mul(CORE_INSTANCES_PER_COMPONENT))
        .max_core_instances_per_component(CORE_INSTANCES_PER_COMPONENT)
        .total_memories(n.saturating_mul(2))
        .max_memories_per_component(2)
        .total_tables(n.saturating_mul(CORE_INSTANCES_PER_COMPONENT))
        .max_tables_per_component(CORE_INSTANCES_PER_COMPONENT)
        .total_stacks(n)
        .max_memory_size(limits.memory_per_instance)
        // Keep no more idle slots than needed so RSS follows the live set.
        .max_unused_warm_slots(n.min(100));
    let mut config = Config::new();
    // Each memory slot normally reserves 4 GiB of address space so bounds checks can be
    // elided; a pool of many thousand objects would then ask for more than the 128 TiB a
    // process has. Past this size the slots reserve only the per-instance limit (wasmtime
    // then checks bounds explicitly).
    const ADDRESS_SPACE_BUDGET: u64 = 32 << 40;
    if u64::from(n) * 2 * (4 << 30) > ADDRESS_SPACE_BUDGET {
        config.memory_reservation(limits.memory_per_instance as u64);
    }
    config
        .wasm_component_model(true)
        .epoch_interruption(true)
        .allocation_strategy(InstanceAllocationStrategy::Pooling(pool))
        .cranelift_opt_level(wasmtime::OptLevel::Speed);
    Engine::new(&config).map_err(|e| anyhow!("cannot configure the WebAssembly engine: {e:#}"))
}

/// Keeps the epoch moving while alive.
pub struct EpochTicker {
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl EpochTicker {
    pub fn start(engine: Engine) -> Result<Self> {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::Builder::new()
            .name("dohost-epoch".into())
            .spawn(move || {
                while !flag.load(Ordering::Relaxed) {
                    std::thread::sleep(EPOCH_TICK);
                    engine.increment_epoch();
                }
            })
            .context("cannot start the epoch thread")?;
        Ok(EpochTicker {
            stop,
            thread: Some(thread),
        })
    }
}

impl Drop for EpochTicker {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// The linker every object instance is built from: WASI (with no filesystem, network or
/// host environment granted in each store's context) and dohost's own imports.
pub fn build_linker(engine: &Engine) -> Result<Linker<ObjectState>> {
    let mut linker = Linker::new(engine);
    wasmtime_wasi::p2::add_to_linker_async(&mut linker)?;
    crate::wasm::storage::add_to_linker(&mut linker, |s: &mut ObjectState| &mut s.storage)?;
    crate::wasm::alarms::add_to_linker(&mut linker, |s: &mut ObjectState| &mut s.storage)?;
    crate::wasm::objects::add_to_linker(&mut linker, |s: &mut ObjectState| &mut s.objects)?;
    crate::wasm::requests::add_to_linker(&mut linker, |s: &mut ObjectState| &mut s.requests)?;
    crate::wasm::websockets::add_to_linker(&mut linker, |s: &mut ObjectState| &mut s.websockets)?;
    Ok(linker)
}

/// The linker of the stateless worker: WASI as for objects, and only `objects`.
pub fn build_worker_linker(engine: &Engine) -> Result<Linker<WorkerState>> {
    let mut linker = Linker::new(engine);
    wasmtime_wasi::p2::add_to_linker_async(&mut linker)?;
    crate::wasm::objects::add_to_linker(&mut linker, |s: &mut WorkerState| &mut s.objects)?;
    Ok(linker)
}

/// Pre-links the worker component, checking it exports the worker handler.
pub fn prepare_worker(
    linker: &Linker<WorkerState>,
    component: &Component,
    path: &Path,
) -> Result<crate::wasm::bindings::worker::WorkerPre<WorkerState>> {
    let pre = linker.instantiate_pre(component).map_err(|e| {
        anyhow!(
            "{} does not fit dohost's worker world (a worker may import only `objects` and \
             WASI): {e:#}",
            path.display()
        )
    })?;
    crate::wasm::bindings::worker::WorkerPre::new(pre).map_err(|e| {
        anyhow!(
            "{} is not a dohost worker (it must export dohost:object/worker-handler): {e:#}",
            path.display()
        )
    })
}

/// Loads a component, compiling it only when the cache in `cache_dir` has no code for this
/// exact file and engine.
pub fn load_component(engine: &Engine, path: &Path, cache_dir: &Path) -> Result<Component> {
    let bytes = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
    if !bytes.starts_with(b"\0asm") {
        return Err(anyhow!(
            "{} is not a WebAssembly file (it does not start with the \\0asm magic)",
            path.display()
        ));
    }
    let cache_file = cache_path(engine, &bytes, cache_dir);
    if cache_file.exists() {
        // SAFETY: the file was written by `precompile_component` of an engine with the same
        // compatibility hash (part of its name) into the host's own data directory.
        match unsafe { Component::deserialize_file(engine, &cache_file) } {
            Ok(c) => return Ok(c),
            Err(e) => {
                tracing::warn!(file = %cache_file.display(), error = %e, "ignoring unusable compiled-code cache entry")
            }
        }
    }
    tracing::info!(
        component = %path.display(),
        bytes = bytes.len(),
        "compiling component (large Python or JavaScript components take seconds; the code \
         is cached for the next start)"
    );
    let started = std::time::Instant::now();
    let compiled = engine.precompile_component(&bytes).map_err(|e| {
        anyhow!(
            "{} is not a valid WebAssembly component: {e:#}",
            path.display()
        )
    })?;
    tracing::info!(component = %path.display(), elapsed = ?started.elapsed(), "compiled");
    if let Err(e) = write_cache(&cache_file, &compiled) {
        tracing::warn!(file = %cache_file.display(), error = %e, "cannot write the compiled-code cache");
    }
    // SAFETY: `compiled` was just produced by this engine.
    unsafe { Component::deserialize(engine, &compiled) }
        .map_err(|e| anyhow!("cannot load the compiled code of {}: {e:#}", path.display()))
}

fn cache_path(engine: &Engine, bytes: &[u8], cache_dir: &Path) -> PathBuf {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    engine.precompile_compatibility_hash().hash(&mut h);
    let digest = Sha256::new()
        .chain_update(bytes)
        .chain_update(h.finish().to_le_bytes())
        .finalize();
    cache_dir.join(format!("{}.cwasm", hex::encode(&digest[..16])))
}

fn write_cache(file: &Path, compiled: &[u8]) -> Result<()> {
    let dir = file.parent().context("cache file has no directory")?;
    std::fs::create_dir_all(dir)?;
    // Write then rename, so a crash never leaves a half-written entry under the real name.
    let tmp = file.with_extension("tmp");
    std::fs::write(&tmp, compiled)?;
    std::fs::rename(&tmp, file)?;
    Ok(())
}

/// Pre-links a component against the object world, checking it is an object class.
pub fn prepare(
    linker: &Linker<ObjectState>,
    component: &Component,
    path: &Path,
) -> Result<ObjectPre<ObjectState>> {
    let pre = linker.instantiate_pre(component).map_err(|e| {
        anyhow!(
            "{} does not fit dohost's object world (does it import something dohost does not \
             provide?): {e:#}",
            path.display()
        )
    })?;
    ObjectPre::new(pre).map_err(|e| {
        anyhow!(
            "{} is not a dohost object class (it must export dohost:object/handler): {e:#}",
            path.display()
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pool_the_map_count_cannot_create_is_refused_naming_the_setting() {
        assert!(
            check_map_count(1_000, None).is_ok(),
            "unknown cap: no check"
        );
        assert!(check_map_count(1_000, Some(65_530)).is_ok());
        let e = check_map_count(40_000, Some(65_530))
            .unwrap_err()
            .to_string();
        assert!(e.contains("vm.max_map_count"), "{e}");
        assert!(e.contains("--max-live-objects"), "{e}");
    }
}
