//! `impl objects::Host for ObjectsCtx`.

use super::CallError;
use super::ObjectsCtx;
use crate::id::IdKey;
use crate::services::handoff::STREAM_HEADER;
use crate::wasm::bindings::objects::{self as wit, Error, ErrorCode};
use crate::wasm::bindings::types::{Request, Response};

type Res<T> = wasmtime::Result<Result<T, Error>>;

fn err(code: ErrorCode, message: impl Into<String>) -> Error {
    Error {
        code,
        message: message.into(),
    }
}

impl From<CallError> for Error {
    fn from(e: CallError) -> Self {
        match e {
            CallError::UnknownBinding(m) => err(ErrorCode::UnknownBinding, m),
            CallError::InvalidId(m) => err(ErrorCode::InvalidId, m),
            CallError::Deadlock(m) => err(ErrorCode::Deadlock, m),
            CallError::ObjectFailed(m) => err(ErrorCode::ObjectFailed, m),
            CallError::Unavailable(m) => err(ErrorCode::Unavailable, m),
        }
    }
}

impl ObjectsCtx {
    fn with_key<T>(
        &self,
        binding: &str,
        f: impl FnOnce(IdKey) -> Result<T, Error>,
    ) -> Result<T, Error> {
        match self.calls.id_key(binding) {
            Some(key) => f(key),
            None => Err(err(
                ErrorCode::UnknownBinding,
                format!("no binding named {binding:?}"),
            )),
        }
    }
}

impl wit::Host for ObjectsCtx {
    fn id_from_name(&mut self, binding: String, name: String) -> Res<String> {
        Ok(self.with_key(&binding, |c| Ok(c.id_from_name(&name).to_string())))
    }

    fn new_unique_id(&mut self, binding: String) -> Res<String> {
        Ok(self.with_key(&binding, |c| {
            c.new_unique_id()
                .map(|id| id.to_string())
                .map_err(|e| err(ErrorCode::Unavailable, format!("{e:#}")))
        }))
    }

    fn id_from_string(&mut self, binding: String, id: String) -> Res<String> {
        Ok(self.with_key(&binding, |c| {
            c.id_from_string(&id)
                .map(|id| id.to_string())
                .map_err(|e| err(ErrorCode::InvalidId, format!("{e} (binding {binding:?})")))
        }))
    }

    async fn fetch(
        &mut self,
        binding: String,
        id: String,
        name: Option<String>,
        request: Request,
    ) -> Res<Response> {
        // The client's upgrade goes to the first call that forwards an upgrade request, as
        // `stub.fetch(request)` does on the original platform.
        let upgrade = self.upgrade_offered && is_websocket_upgrade(&request);
        if upgrade {
            self.upgrade_offered = false;
        }
        // Waiting on the callee is not running: a caller holding a turn could keep the
        // callee (and so itself) from ever finishing.
        self.turn.release();
        let call = self
            .calls
            .call(self.caller, binding, id, name, request, upgrade);
        match call.await {
            Ok((mut response, handoff)) => {
                // At most one call per event is offered the upgrade; a stream is marked in
                // the response it came with, which hands it on if the caller returns it.
                if let Some(handoff) = handoff {
                    if let Some(mark) = handoff.stream_mark() {
                        response.headers.push((STREAM_HEADER.to_string(), mark));
                    }
                    self.handoff = Some(handoff);
                }
                Ok(Ok(response))
            }
            Err(e) => Ok(Err(Error::from(e))),
        }
    }
}

/// True when the request asks for a WebSocket (`Upgrade: websocket`, any case).
fn is_websocket_upgrade(request: &Request) -> bool {
    request
        .headers
        .iter()
        .any(|(k, v)| k.eq_ignore_ascii_case("upgrade") && v.eq_ignore_ascii_case("websocket"))
}
