//! The limits a write is checked against before it is taken: key and value size, keys per
//! call, and the object's storage quota (counting writes still in flight).

use super::{ObjectStore, StoreError, StoreResult, truncate};

impl ObjectStore {
    pub(super) fn check_key(&self, key: &str) -> StoreResult<()> {
        if key.len() > self.limits.max_key_bytes {
            return Err(StoreError::KeyTooLarge(format!(
                "key of {} bytes is over the limit of {} bytes (max_key_bytes)",
                key.len(),
                self.limits.max_key_bytes
            )));
        }
        Ok(())
    }

    pub(super) fn check_value(&self, key: &str, value: &[u8]) -> StoreResult<()> {
        if value.len() > self.limits.max_value_bytes {
            return Err(StoreError::ValueTooLarge(format!(
                "value of {} bytes for key {:?} is over the limit of {} bytes (max_value_bytes)",
                value.len(),
                truncate(key),
                self.limits.max_value_bytes
            )));
        }
        Ok(())
    }

    pub(super) fn check_count(&self, n: usize) -> StoreResult<()> {
        if n > self.limits.max_keys_per_call {
            return Err(StoreError::TooManyKeys(format!(
                "{n} keys in one call is over the limit of {} (max_keys_per_call)",
                self.limits.max_keys_per_call
            )));
        }
        Ok(())
    }

    pub(super) fn pending_added_bytes(&self) -> u64 {
        self.event.added_bytes + self.txns.iter().map(|t| t.added_bytes).sum::<u64>()
    }

    /// Refuses writes that would take the object over its quota. The estimate counts every
    /// not-yet-durable put at full size; only when that says "over" is the exact old size of
    /// the overwritten keys subtracted, so the common path costs no extra read.
    pub(super) async fn check_quota(&self, entries: &[(&str, usize)]) -> StoreResult<()> {
        let adding: u64 = entries.iter().map(|(k, v)| (k.len() + v) as u64).sum();
        let (committed, inflight) = {
            let inf = self.shared.lock();
            (inf.committed_bytes, inf.added_bytes)
        };
        let estimate = committed + inflight + self.pending_added_bytes() + adding;
        if estimate <= self.limits.max_object_bytes {
            return Ok(());
        }
        let mut replaced = 0u64;
        for (k, _) in entries {
            if let Some(old) = self.get(k).await? {
                replaced += (k.len() + old.len()) as u64;
            }
        }
        if estimate.saturating_sub(replaced) > self.limits.max_object_bytes {
            return Err(StoreError::StorageFull(format!(
                "this write would take the object to about {} bytes, over its quota of {} bytes \
                 (max_object_bytes); delete data first",
                estimate.saturating_sub(replaced),
                self.limits.max_object_bytes
            )));
        }
        Ok(())
    }
}
