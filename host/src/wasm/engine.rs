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
/// per live instance on top (about 8), and the headroom left for what the rest of the
/// process maps later (threads' stacks, the database, the allocator's arenas).
const MAPS_PER_SLOT: u64 = 2;
const MAPS_PER_LIVE: u64 = 8;
const MAPS_HEADROOM: u64 = 2_000;

/// Memory a live object is assumed to take when `max_live_objects` is sized from
/// `max_memory`: an idle Rust object holds about 60 KiB, but Python and JavaScript objects
/// touch more of their larger images, and every object holds more while it works.
pub const BYTES_PER_LIVE_OBJECT: u64 = 1 << 20;

/// Address space the pool may reserve. Each memory slot normally reserves 4 GiB (plus a
/// guard) so that bounds checks can be elided; a pool of many thousand objects would then
/// ask for more than the 128 TiB a process has, so past this budget the slots reserve only
/// the per-instance limit (wasmtime then checks bounds explicitly).
const ADDRESS_SPACE_BUDGET: u64 = 32 << 40;
/// Memories per instance slot (`max_memories_per_component`).
const MEMORIES_PER_SLOT: u64 = 2;
/// What one memory slot reserves beside its memory (wasmtime's default guard on 64-bit),
/// and one slot's fiber stack (wasmtime's default async stack).
/// Bytes of a freed slot's memory (and of its tables) reset in place and kept resident
/// rather than given back to the kernel: a Rust object touches well under this, so its
/// slot is reused without a system call or a page fault; a free slot keeps at most this.
const KEEP_RESIDENT: usize = 64 << 10;
const GUARD_BYTES: u64 = 32 << 20;
const STACK_BYTES: u64 = 2 << 20;

/// The kernel's cap on memory mappings and how many this process holds already.
#[derive(Debug, Clone, Copy)]
pub struct Maps {
    pub cap: u64,
    pub in_use: u64,
}

impl Maps {
    /// This process's, if readable.
    pub fn now() -> Option<Maps> {
        Some(Maps {
            cap: crate::config::machine::max_map_count()?,
            in_use: crate::config::machine::maps_in_use()?,
        })
    }

    fn free(&self) -> u64 {
        self.cap.saturating_sub(self.in_use)
    }
}

/// What set `max_live_objects`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LiveBound {
    /// `--max-live-objects` or the config file.
    Given,
    /// `max_memory / BYTES_PER_LIVE_OBJECT`.
    Memory,
    /// The mappings the kernel still allows; `by_memory` is what the budget alone would
    /// allow, and `cap_for_it` the `vm.max_map_count` that would let it.
    MapCount { by_memory: u32, cap_for_it: u64 },
    /// The address space a pool may reserve.
    AddressSpace,
}

/// `max_live_objects` as given, or sized from the machine: the fewest of what the memory
/// budget, the kernel's mappings and the address space allow.
pub fn size_live_objects(limits: &Limits, maps: Option<Maps>) -> (u32, LiveBound) {
    if let Some(n) = limits.max_live_objects {
        return (n, LiveBound::Given);
    }
    let beside = u64::from(limits.max_deferring_objects) + u64::from(limits.max_worker_instances);
    let to_u32 = |n: u64| u32::try_from(n).unwrap_or(u32::MAX).max(1);
    let by_memory = to_u32(limits.max_memory as u64 / BYTES_PER_LIVE_OBJECT);
    let per_slot =
        MEMORIES_PER_SLOT * (limits.memory_per_instance as u64 + GUARD_BYTES) + STACK_BYTES;
    let by_address = to_u32((ADDRESS_SPACE_BUDGET / per_slot).saturating_sub(beside));
    let mut sized = if by_address < by_memory {
        (by_address, LiveBound::AddressSpace)
    } else {
        (by_memory, LiveBound::Memory)
    };
    if let Some(maps) = maps {
        let per_live = MAPS_PER_SLOT + MAPS_PER_LIVE;
        let by_maps =
            to_u32((maps.free().saturating_sub(MAPS_HEADROOM) / per_live).saturating_sub(beside));
        if by_maps < sized.0 {
            let cap_for_it = maps.in_use + MAPS_HEADROOM + (u64::from(sized.0) + beside) * per_live;
            sized = (
                by_maps,
                LiveBound::MapCount {
                    by_memory: sized.0,
                    cap_for_it,
                },
            );
        }
    }
    sized
}

/// Refuses a pool the kernel's `vm.max_map_count` could not even create (it would fail with
/// a bare "Cannot allocate memory"), and warns when it could not hold every slot live.
fn check_map_count(slots: u32, maps: Option<Maps>) -> Result<()> {
    let Some(maps) = maps else { return Ok(()) };
    let (cap, free) = (maps.cap, maps.free());
    let empty = u64::from(slots) * MAPS_PER_SLOT + MAPS_HEADROOM;
    let full = empty + u64::from(slots) * MAPS_PER_LIVE;
    if empty > free {
        anyhow::bail!(
            "max_live_objects, max_deferring_objects and max_worker_instances make {slots} \
             instance slots, which need about {empty} memory mappings before any object \
             runs; the kernel allows {cap} (vm.max_map_count) and this process holds {} \
             already: lower --max-live-objects, or raise the cap (sysctl -w \
             vm.max_map_count={})",
            maps.in_use,
            full + maps.in_use
        );
    }
    if full > free {
        let fits = (free - empty) / MAPS_PER_LIVE;
        tracing::warn!(
            "{slots} instance slots (max_live_objects, max_deferring_objects and \
             max_worker_instances) need about {full} memory mappings when every instance is \
             live; the kernel allows {cap} (vm.max_map_count), so instances past about \
             {fits} will fail with \"Cannot allocate memory\": raise it \
             (sysctl -w vm.max_map_count={}) or lower --max-live-objects",
            full + maps.in_use
        );
    }
    Ok(())
}

/// Builds the engine every class shares, its pool sized for `live_objects` objects (see
/// `size_live_objects`) beside the deferring objects' and the workers' slots.
pub fn build_engine(limits: &Limits, live_objects: u32, maps: Option<Maps>) -> Result<Engine> {
    let mut pool = PoolingAllocationConfig::new();
    // Objects and workers have separate slots (see `Runtime::instance_permit`), both here.
    let n = live_objects
        .saturating_add(limits.max_deferring_objects)
        .saturating_add(limits.max_worker_instances);
    check_map_count(n, maps)?;
    pool.total_component_instances(n)
        .total_core_instances(n.saturating_mul(CORE_INSTANCES_PER_COMPONENT))
        .max_core_instances_per_component(CORE_INSTANCES_PER_COMPONENT)
        .total_memories(n.saturating_mul(MEMORIES_PER_SLOT as u32))
        .max_memories_per_component(MEMORIES_PER_SLOT as u32)
        .total_tables(n.saturating_mul(CORE_INSTANCES_PER_COMPONENT))
        .max_tables_per_component(CORE_INSTANCES_PER_COMPONENT)
        .total_stacks(n)
        .max_memory_size(limits.memory_per_instance)
        // Keep no more idle slots than needed so RSS follows the live set.
        .max_unused_warm_slots(n.min(100))
        // An instance's memory and tables are reset by rewriting the pages it touched
        // (found with the PAGEMAP_SCAN ioctl where the kernel has it, 6.7 and later), up
        // to KEEP_RESIDENT, instead of madvise: each madvise flushes every core's TLB,
        // and was half of what an eviction and the next instance build cost.
        .linear_memory_keep_resident(KEEP_RESIDENT)
        .table_keep_resident(KEEP_RESIDENT)
        .pagemap_scan(wasmtime::Enabled::Auto);
    let mut config = Config::new();
    if u64::from(n) * MEMORIES_PER_SLOT * ((4 << 30) + GUARD_BYTES) > ADDRESS_SPACE_BUDGET {
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
    crate::wasm::streams::add_to_linker(&mut linker, |s: &mut ObjectState| &mut s.streams)?;
    crate::wasm::sql::add_to_linker(&mut linker)?;
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
    load_component_bytes(engine, bytes, &path.display().to_string(), cache_dir)
}

/// Loads a component from its bytes; `name` says what it is in messages (a deploy's
/// component has no file, and its messages must not name the data directory).
pub fn load_component_bytes(
    engine: &Engine,
    bytes: Vec<u8>,
    name: &str,
    cache_dir: &Path,
) -> Result<Component> {
    if !bytes.starts_with(b"\0asm") {
        return Err(anyhow!(
            "{name} is not a WebAssembly file (it does not start with the \\0asm magic)"
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
        component = name,
        bytes = bytes.len(),
        "compiling component (large Python or JavaScript components take seconds; the code \
         is cached for the next start)"
    );
    let started = std::time::Instant::now();
    let compiled = engine
        .precompile_component(&bytes)
        .map_err(|e| anyhow!("{name} is not a valid WebAssembly component: {e:#}"))?;
    tracing::info!(component = name, elapsed = ?started.elapsed(), "compiled");
    if let Err(e) = write_cache(&cache_file, &compiled) {
        tracing::warn!(file = %cache_file.display(), error = %e, "cannot write the compiled-code cache");
    }
    // SAFETY: `compiled` was just produced by this engine.
    unsafe { Component::deserialize(engine, &compiled) }
        .map_err(|e| anyhow!("cannot load the compiled code of {name}: {e:#}"))
}

/// The linear memory an instance of `component` starts with, in bytes (its largest
/// memory's initial size; None when it cannot be known before instantiation).
pub fn initial_memory(component: &Component) -> Option<u64> {
    let pages = component.resources_required()?.max_initial_memory_size?;
    Some(pages.saturating_mul(64 * 1024))
}

/// Refuses a component that could never start under `limits`: its initial memory (which
/// each live instance holds against `max_memory`) is over `memory_bytes` or the budget.
pub fn check_initial_memory(component: &Component, name: &str, limits: &Limits) -> Result<()> {
    let Some(initial) = initial_memory(component) else {
        return Ok(());
    };
    let mib = |b: u64| b as f64 / f64::from(1 << 20);
    if initial > limits.memory_per_instance as u64 {
        anyhow::bail!(
            "{name} starts with {:.1} MiB of linear memory, more than one instance may use \
             ({:.1} MiB: memory_bytes); raise --memory-bytes, or shrink the component's \
             initial memory",
            mib(initial),
            mib(limits.memory_per_instance as u64)
        );
    }
    if initial > limits.max_memory as u64 {
        anyhow::bail!(
            "{name} starts with {:.1} MiB of linear memory, more than the host's whole budget \
             ({:.1} MiB: max_memory); raise --max-memory",
            mib(initial),
            mib(limits.max_memory as u64)
        );
    }
    tracing::info!(
        component = name,
        initial_memory = initial,
        "each live instance holds its initial memory against max_memory: at most {} at once",
        limits.max_memory as u64 / initial.max(1)
    );
    Ok(())
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
    name: &str,
) -> Result<ObjectPre<ObjectState>> {
    let pre = linker.instantiate_pre(component).map_err(|e| {
        anyhow!(
            "{name} does not fit dohost's object world (does it import something dohost does \
             not provide?): {e:#}"
        )
    })?;
    ObjectPre::new(pre).map_err(|e| {
        anyhow!("{name} is not a dohost object class (it must export dohost:object/handler): {e:#}")
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn maps(cap: u64, in_use: u64) -> Option<Maps> {
        Some(Maps { cap, in_use })
    }

    #[test]
    fn a_pool_the_map_count_cannot_create_is_refused_naming_the_setting() {
        assert!(
            check_map_count(1_000, None).is_ok(),
            "unknown cap: no check"
        );
        assert!(check_map_count(1_000, maps(65_530, 300)).is_ok());
        let e = check_map_count(40_000, maps(65_530, 300))
            .unwrap_err()
            .to_string();
        assert!(e.contains("vm.max_map_count"), "{e}");
        assert!(e.contains("--max-live-objects"), "{e}");
        // Mappings other hosts in this process hold count too.
        assert!(check_map_count(20_000, maps(65_530, 300)).is_ok());
        assert!(check_map_count(20_000, maps(65_530, 30_000)).is_err());
    }

    #[test]
    fn live_objects_are_sized_from_the_memory_budget_the_map_count_and_the_address_space() {
        let gib = 1usize << 30;
        let limits = |max_memory: usize| Limits {
            max_memory,
            ..Limits::default()
        };
        let plenty = maps(u64::MAX / 2, 0);
        // One per MiB of the budget: a smaller budget, fewer live objects.
        assert_eq!(
            size_live_objects(&limits(18 * gib), plenty),
            (18 * 1024, LiveBound::Memory)
        );
        assert_eq!(
            size_live_objects(&limits(gib / 2), plenty),
            (512, LiveBound::Memory)
        );
        // The kernel's mappings cap it, counting what the process holds already and the
        // deferring and worker slots, and say what cap the budget would need.
        let (n, bound) = size_live_objects(&limits(18 * gib), maps(65_530, 530));
        assert_eq!(n, (65_000 - 2_000) / 10 - 1_064);
        let LiveBound::MapCount {
            by_memory,
            cap_for_it,
        } = bound
        else {
            panic!("{bound:?}")
        };
        assert_eq!(by_memory, 18 * 1024);
        assert!(check_map_count(n + 1_064, maps(65_530, 530)).is_ok());
        assert_eq!(cap_for_it, 530 + 2_000 + (18 * 1024 + 1_064) * 10);
        // A huge budget meets the address space.
        let (n, bound) = size_live_objects(&limits(1 << 50), plenty);
        assert_eq!(bound, LiveBound::AddressSpace);
        assert!(u64::from(n) * 2 * (128 << 20) < 32 << 40, "{n}");
        // Given is given.
        let given = Limits {
            max_live_objects: Some(7),
            ..limits(18 * gib)
        };
        assert_eq!(
            size_live_objects(&given, maps(10, 9)),
            (7, LiveBound::Given)
        );
    }
}
