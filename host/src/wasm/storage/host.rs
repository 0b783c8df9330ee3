//! `impl storage::Host for StorageCtx`: converts between WIT types and `ObjectStore`.

use super::StorageCtx;
use crate::services::objstore::StoreError;
use crate::wasm::bindings::storage::{self as wit, Error, ErrorCode, ListOptions};
use bytes::Bytes;

type Res<T> = wasmtime::Result<Result<T, Error>>;

/// A storage failure as the WIT error the guest handles.
pub fn to_wit(e: StoreError) -> Error {
    let (code, message) = match e {
        StoreError::KeyTooLarge(m) => (ErrorCode::KeyTooLarge, m),
        StoreError::ValueTooLarge(m) => (ErrorCode::ValueTooLarge, m),
        StoreError::TooManyKeys(m) => (ErrorCode::TooManyKeys, m),
        StoreError::StorageFull(m) => (ErrorCode::StorageFull, m),
        StoreError::NoTransaction(m) => (ErrorCode::NoTransaction, m),
        StoreError::InvalidArgument(m) => (ErrorCode::InvalidArgument, m),
        // The WIT has no code of its own for an unreachable database (a new enum case would
        // unlink every component built before it): `internal`, with a message saying so.
        // The host remembers it, and answers the event's failure 503 (see `ObjectStore`).
        StoreError::Internal(m) | StoreError::Unavailable(m) => (ErrorCode::Internal, m),
    };
    Error { code, message }
}

fn entries(list: Vec<(String, Bytes)>) -> Vec<(String, Vec<u8>)> {
    list.into_iter().map(|(k, v)| (k, v.to_vec())).collect()
}

impl wit::Host for StorageCtx {
    async fn get(&mut self, key: String) -> Res<Option<Vec<u8>>> {
        Ok(self
            .store
            .get(&key)
            .await
            .map(|v| v.map(|b| b.to_vec()))
            .map_err(to_wit))
    }

    async fn get_many(&mut self, keys: Vec<String>) -> Res<Vec<(String, Vec<u8>)>> {
        Ok(self
            .store
            .get_many(&keys)
            .await
            .map(entries)
            .map_err(to_wit))
    }

    async fn put(&mut self, key: String, value: Vec<u8>) -> Res<()> {
        Ok(self
            .store
            .put(key, Bytes::from(value))
            .await
            .map_err(to_wit))
    }

    async fn put_many(&mut self, list: Vec<(String, Vec<u8>)>) -> Res<()> {
        let list = list.into_iter().map(|(k, v)| (k, Bytes::from(v))).collect();
        Ok(self.store.put_many(list).await.map_err(to_wit))
    }

    async fn delete(&mut self, key: String) -> Res<bool> {
        Ok(self.store.delete(key).await.map_err(to_wit))
    }

    async fn delete_many(&mut self, keys: Vec<String>) -> Res<u32> {
        Ok(self.store.delete_many(keys).await.map_err(to_wit))
    }

    async fn list(&mut self, o: ListOptions) -> Res<Vec<(String, Vec<u8>)>> {
        let found = self.store.list_bounded(
            o.start.as_deref(),
            o.end.as_deref(),
            o.prefix.as_deref(),
            o.reverse,
            o.limit,
        );
        let found = found.await;
        Ok(found.map(entries).map_err(to_wit))
    }

    fn get_limits(&mut self) -> wasmtime::Result<wit::StorageLimits> {
        let l = self.store.limits();
        let narrow = |n: usize| u32::try_from(n).unwrap_or(u32::MAX);
        Ok(wit::StorageLimits {
            max_key_bytes: narrow(l.max_key_bytes),
            max_value_bytes: narrow(l.max_value_bytes),
            max_keys_per_call: narrow(l.max_keys_per_call),
            min_alarm_interval_ms: l.min_alarm_interval_ms,
        })
    }

    fn delete_all(&mut self) -> Res<()> {
        Ok(self.store.delete_all().map_err(to_wit))
    }

    fn transaction_begin(&mut self) -> Res<()> {
        Ok(self.store.begin().map_err(to_wit))
    }

    fn transaction_commit(&mut self) -> Res<()> {
        Ok(self.store.commit().map_err(to_wit))
    }

    fn transaction_rollback(&mut self) -> Res<()> {
        Ok(self.store.rollback().map_err(to_wit))
    }
}

impl crate::wasm::bindings::types::Host for StorageCtx {}
