//! `impl alarms::Host for StorageCtx`.

use crate::wasm::bindings::alarms as wit;
use crate::wasm::storage::StorageCtx;
use crate::wasm::storage::to_wit;

type Res<T> = wasmtime::Result<Result<T, wit::Error>>;

impl wit::Host for StorageCtx {
    fn set_alarm(&mut self, scheduled_time: u64) -> Res<()> {
        Ok(self
            .store
            .set_alarm(scheduled_time)
            .map(|_| ())
            .map_err(to_wit))
    }

    async fn get_alarm(&mut self) -> Res<Option<u64>> {
        Ok(self.store.get_alarm().await.map_err(to_wit))
    }

    fn delete_alarm(&mut self) -> Res<()> {
        Ok(self.store.delete_alarm().map_err(to_wit))
    }
}
