//! Instance slots of the pooling allocator, counted before an instance is built: object
//! slots (idle objects are asked to give theirs up while someone waits) and worker slots.

use crate::services::calls::CallGraph;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;

/// While an event waits for an instance slot, how often it asks another idle object to give
/// one up (the one asked may have declined, or given its slot to another waiter).
const PRESSURE_RETRY: Duration = Duration::from_millis(50);

pub struct Slots {
    objects: Arc<Semaphore>,
    /// Slots of objects holding deferred requests (never evicted), apart from `objects`.
    deferring: Arc<Semaphore>,
    workers: Arc<Semaphore>,
    max_objects: u32,
    max_workers: u32,
    wait: Duration,
    /// Signalled when an object waits for a slot, or the memory budget refused bytes: idle
    /// actors give theirs up.
    pressure: Arc<Notify>,
    calls: Arc<CallGraph>,
}

/// Why no slot was given; the message names the setting to change.
#[derive(Debug, Clone)]
pub struct SlotRefused(pub String);

impl Slots {
    pub fn new(
        max_objects: u32,
        max_deferring: u32,
        max_workers: u32,
        wait: Duration,
        calls: Arc<CallGraph>,
        pressure: Arc<Notify>,
    ) -> Self {
        Slots {
            objects: Arc::new(Semaphore::new(max_objects as usize)),
            deferring: Arc::new(Semaphore::new(max_deferring as usize)),
            workers: Arc::new(Semaphore::new(max_workers as usize)),
            max_objects,
            max_workers,
            wait,
            pressure,
            calls,
        }
    }

    /// Signalled while an object waits for a slot.
    pub fn pressure(&self) -> &Notify {
        &self.pressure
    }

    /// Object instances alive right now.
    pub fn live(&self) -> usize {
        self.max_objects as usize - self.objects.available_permits()
    }

    /// Waits for an object instance slot; while waiting, asks idle objects to give theirs
    /// up, one at a time: `notify_one` wakes the object that has waited longest since its
    /// last mailbox event (about the least recently used), so one slot costs one eviction,
    /// not every idle instance. The wait is bounded by `slot_wait`, and refused at once
    /// when it could never end: an object waiting on a call keeps its slot (its instance
    /// is mid-event), so when every slot is held by such an object, no slot frees up until
    /// one of their callees gets one.
    pub async fn object_permit(&self) -> Result<OwnedSemaphorePermit, SlotRefused> {
        if let Ok(p) = self.objects.clone().try_acquire_owned() {
            return Ok(p);
        }
        let max = self.max_objects;
        let deadline = Instant::now() + self.wait;
        loop {
            if self.calls.waiting() >= max as usize {
                return Err(SlotRefused(format!(
                    "every instance slot (max_live_objects = {max}) is held by an object \
                     waiting on a call to another object; try again shortly"
                )));
            }
            self.pressure.notify_one();
            let now = Instant::now();
            if now >= deadline {
                return Err(SlotRefused(format!(
                    "no instance slot became free within {:?} (max_live_objects = {max}, \
                     slot_wait_ms); try again shortly",
                    self.wait
                )));
            }
            tokio::select! {
                p = self.objects.clone().acquire_owned() => {
                    return Ok(p.expect("the instance semaphore is never closed"));
                }
                _ = tokio::time::sleep(PRESSURE_RETRY.min(deadline - now)) => {}
            }
        }
    }

    /// A slot among `max_deferring_objects` for an object that holds deferred requests,
    /// if one is free (it then gives its `max_live_objects` slot back).
    pub fn deferring_permit(&self) -> Option<OwnedSemaphorePermit> {
        self.deferring.clone().try_acquire_owned().ok()
    }

    /// Waits, at most `slot_wait`, for a worker instance slot.
    pub async fn worker_permit(&self) -> Result<OwnedSemaphorePermit, SlotRefused> {
        let acquire = self.workers.clone().acquire_owned();
        match tokio::time::timeout(self.wait, acquire).await {
            Ok(p) => Ok(p.expect("the worker semaphore is never closed")),
            Err(_) => Err(SlotRefused(format!(
                "no worker slot became free within {:?} (max_worker_instances = {}); try \
                 again shortly",
                self.wait, self.max_workers
            ))),
        }
    }
}
