//! Each guest store's data: WASI with nothing granted, dohost's per-interface contexts, the
//! memory limiter and the CPU budget; and the guests' wall clock.

use crate::config::Limits;
use crate::services::memory::{Held, MemoryBudget};
use crate::services::scheduler::Clock;
use crate::wasm::cpu_gate::{CpuGate, FREE_TICKS, Turn};
use crate::wasm::guest_log::GuestLog;
use crate::wasm::storage::StorageCtx;
use std::sync::Arc;
use std::time::Duration;
use wasmtime::Engine;
use wasmtime::component::ResourceTable;
use wasmtime_wasi::{WasiCtx, WasiCtxBuilder, WasiCtxView, WasiView};

/// How often the epoch advances: the granularity of the CPU limit, and the time slice after
/// which a busy guest gives its thread (and its turn, see `CpuGate`) to others.
pub const EPOCH_TICK: Duration = Duration::from_millis(5);

/// What every guest store draws on host-wide: the memory budget and the CPU turns.
#[derive(Clone)]
pub struct Shared {
    pub memory: Arc<MemoryBudget>,
    pub cpu: Arc<CpuGate>,
    /// Each object's allowance of stdout and stderr.
    pub guest_output: Arc<crate::services::guest_output::GuestOutput>,
}

/// The guests' view of wall-clock time: the host's clock, so that alarm times a guest
/// computes from "now" agree with the scheduler's.
pub struct GuestWallClock(pub Arc<dyn Clock>);

impl wasmtime_wasi::HostWallClock for GuestWallClock {
    fn resolution(&self) -> Duration {
        Duration::from_millis(1)
    }

    fn now(&self) -> Duration {
        Duration::from_millis(self.0.now_ms())
    }
}

/// What every guest store has: a memory limiter and a CPU budget.
pub trait GuestState: Send + 'static {
    fn limiter(&mut self) -> &mut Limiter;
    fn cpu(&mut self) -> &mut CpuBudget;
}

/// A store for one guest instance, with the memory limiter and the CPU-limit callback.
pub fn new_store<T: GuestState>(engine: &Engine, data: T) -> wasmtime::Store<T> {
    let mut store = wasmtime::Store::new(engine, data);
    store.limiter(|s| s.limiter());
    store.epoch_deadline_callback(|mut ctx| {
        let cpu = ctx.data_mut().cpu();
        cpu.used_ticks += 1;
        if cpu.used_ticks >= cpu.max_ticks {
            Err(CpuLimitExceeded(cpu.limit).into())
        } else if cpu.used_ticks >= FREE_TICKS {
            // A long event: it runs only while it holds a turn, and gives it up at each
            // slice to the events waiting for one.
            let next = cpu.turn.renew(&cpu.gate);
            Ok(wasmtime::UpdateDeadline::YieldCustom(1, Box::pin(next)))
        } else {
            // Let other objects' tasks run on this thread between slices.
            Ok(wasmtime::UpdateDeadline::Yield(1))
        }
    });
    start_event(&mut store);
    store
}

/// Gives an event its full CPU allowance.
pub fn start_event<T: GuestState>(store: &mut wasmtime::Store<T>) {
    let cpu = store.data_mut().cpu();
    cpu.used_ticks = 0;
    cpu.turn.release();
    store.set_epoch_deadline(1);
}

/// After a call into the guest returns: an idle instance must not keep a turn.
pub fn end_call<T: GuestState>(store: &mut wasmtime::Store<T>) {
    store.data_mut().cpu().turn.release();
}

/// WASI for a guest: no preopened directories, no environment, no arguments, no sockets —
/// a guest reaches the world only through dohost's imports. Its clock is the host's.
fn guest_wasi(
    tag: &Arc<str>,
    shared: &Shared,
    clock: Arc<dyn crate::services::scheduler::Clock>,
) -> (WasiCtx, GuestLog, GuestLog) {
    let stdout = GuestLog::new(tag.clone(), "stdout", shared.guest_output.clone());
    let stderr = GuestLog::new(tag.clone(), "stderr", shared.guest_output.clone());
    let wasi = WasiCtxBuilder::new()
        .stdout(stdout.clone())
        .stderr(stderr.clone())
        .allow_tcp(false)
        .allow_udp(false)
        .allow_ip_name_lookup(false)
        .wall_clock(GuestWallClock(clock))
        .build();
    (wasi, stdout, stderr)
}

fn budget(limits: &Limits, shared: &Shared) -> (Limiter, CpuBudget) {
    let max_ticks = (limits.cpu_per_event.as_millis() / EPOCH_TICK.as_millis()).max(1) as u64;
    (
        Limiter {
            max_memory: limits.memory_per_instance,
            hit: None,
            held: Held::none(shared.memory.clone()),
            budget_hit: false,
        },
        CpuBudget {
            used_ticks: 0,
            max_ticks,
            limit: limits.cpu_per_event,
            gate: shared.cpu.clone(),
            turn: Turn::default(),
        },
    )
}

/// The data of one worker instance's store.
pub struct WorkerState {
    wasi: WasiCtx,
    table: ResourceTable,
    pub limiter: Limiter,
    pub cpu: CpuBudget,
    pub objects: crate::wasm::objects::ObjectsCtx,
    pub stdout: GuestLog,
    pub stderr: GuestLog,
}

impl WorkerState {
    pub fn new(
        mut objects: crate::wasm::objects::ObjectsCtx,
        limits: &Limits,
        shared: &Shared,
        clock: Arc<dyn crate::services::scheduler::Clock>,
    ) -> Self {
        let (wasi, stdout, stderr) = guest_wasi(&Arc::from("worker"), shared, clock);
        let (limiter, cpu) = budget(limits, shared);
        // A call to another object gives up the turn while it waits.
        objects.turn = cpu.turn.clone();
        WorkerState {
            wasi,
            table: ResourceTable::new(),
            limiter,
            cpu,
            objects,
            stdout,
            stderr,
        }
    }
}

impl WasiView for WorkerState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl GuestState for WorkerState {
    fn limiter(&mut self) -> &mut Limiter {
        &mut self.limiter
    }

    fn cpu(&mut self) -> &mut CpuBudget {
        &mut self.cpu
    }
}

impl GuestState for ObjectState {
    fn limiter(&mut self) -> &mut Limiter {
        &mut self.limiter
    }

    fn cpu(&mut self) -> &mut CpuBudget {
        &mut self.cpu
    }
}

/// The data of one object instance's store.
pub struct ObjectState {
    wasi: WasiCtx,
    table: ResourceTable,
    pub limiter: Limiter,
    pub storage: StorageCtx,
    pub objects: crate::wasm::objects::ObjectsCtx,
    pub requests: crate::wasm::requests::RequestsCtx,
    pub websockets: crate::wasm::websockets::WebSocketsCtx,
    pub streams: crate::wasm::streams::StreamsCtx,
    pub cpu: CpuBudget,
    pub stdout: GuestLog,
    pub stderr: GuestLog,
    /// Bytes of SQL results held by the instance's open cursors.
    pub sql_cursor_bytes: usize,
}

/// The contexts of an object's imports that reach past its instance: its storage, other
/// objects, and its clients' sockets and streams.
pub struct ObjectImports {
    pub storage: StorageCtx,
    pub objects: crate::wasm::objects::ObjectsCtx,
    pub websockets: crate::wasm::websockets::WebSocketsCtx,
    pub streams: crate::wasm::streams::StreamsCtx,
}

impl ObjectState {
    pub fn new(
        tag: Arc<str>,
        imports: ObjectImports,
        limits: &Limits,
        shared: &Shared,
        clock: Arc<dyn crate::services::scheduler::Clock>,
    ) -> Self {
        let (wasi, stdout, stderr) = guest_wasi(&tag, shared, clock);
        let (limiter, cpu) = budget(limits, shared);
        let ObjectImports {
            storage,
            mut objects,
            websockets,
            streams,
        } = imports;
        // A call to another object gives up the turn while it waits.
        objects.turn = cpu.turn.clone();
        ObjectState {
            wasi,
            table: ResourceTable::new(),
            limiter,
            storage,
            objects,
            requests: Default::default(),
            websockets,
            streams,
            cpu,
            stdout,
            stderr,
            sql_cursor_bytes: 0,
        }
    }

    /// The resource table (WASI's handles and the SQL cursors).
    pub fn table(&mut self) -> &mut ResourceTable {
        &mut self.table
    }
}

impl WasiView for ObjectState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

/// Epoch ticks an event has run for, against its allowance.
pub struct CpuBudget {
    pub used_ticks: u64,
    pub max_ticks: u64,
    pub limit: Duration,
    gate: Arc<CpuGate>,
    turn: Turn,
}

/// The trap raised when an event uses up its CPU time.
#[derive(Debug, thiserror::Error)]
#[error("CPU time limit of {0:?} per event exceeded")]
pub struct CpuLimitExceeded(pub Duration);

/// The trap raised when a guest grows its memory past the limit.
#[derive(Debug, thiserror::Error)]
#[error("memory limit of {limit} bytes per instance exceeded (asked for {asked} bytes)")]
pub struct MemoryLimitExceeded {
    pub limit: usize,
    pub asked: usize,
}

/// The trap raised when a guest's memory growth would take the host past its memory
/// budget: not the guest's fault, so its caller is told to retry (503).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct MemoryBudgetExhausted(pub String);

/// Caps linear memory per instance, and counts it against the host's budget (given back
/// when the instance goes); a refused growth traps with `MemoryLimitExceeded` or
/// `MemoryBudgetExhausted` so the caller is told why instead of seeing Rust's abort on
/// allocation failure.
pub struct Limiter {
    max_memory: usize,
    pub hit: Option<usize>,
    held: Held,
    /// The host's budget refused a growth (the failure is the host's, not the guest's).
    pub budget_hit: bool,
}

impl Limiter {
    /// The instance's memory limit (`memory_bytes`).
    pub fn max_memory(&self) -> usize {
        self.max_memory
    }
}

impl wasmtime::ResourceLimiter for Limiter {
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        _max: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired > self.max_memory {
            self.hit = Some(desired);
            return Err(MemoryLimitExceeded {
                limit: self.max_memory,
                asked: desired,
            }
            .into());
        }
        // An instance's initial memory (the call with `current` 0) counts too: a Python or
        // JavaScript instance touches megabytes of it, and a component may declare a large
        // one, so live instances alone could take the host past the kernel's limit; counted,
        // a full budget asks idle objects to give theirs up instead.
        if !self.held.grow(desired.saturating_sub(current)) {
            self.budget_hit = true;
            return Err(MemoryBudgetExhausted(self.held.budget().exhausted()).into());
        }
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        _desired: usize,
        _max: Option<usize>,
    ) -> wasmtime::Result<bool> {
        // Tables are bounded by the pooling allocator's per-table element limit.
        Ok(true)
    }
}
