"""Write Durable Objects for dohost in Python: a thin layer over the bindings componentize-py
generates from dohost's WIT, with the Rust SDK's conventions (JSON values in storage, an
error from `fetch` answered 500 with its writes kept), so objects in every language share
their data and behave alike.

    import dohost

    @dohost.durable_object
    class Counter(dohost.DurableObject):
        def __init__(self, state, env):
            super().__init__(state, env)
            self.value = state.storage.get("value", 0)

        def fetch(self, request):
            if request.path == "/increment":
                self.value += 1
                self.state.storage.put("value", self.value)
            return dohost.Response.text(str(self.value))
"""

from ._export import DurableObject, durable_object
from .connections import Stream, WebSocket, sse_event
from .errors import CallError, HttpError, SqlError, StorageError
from .http import Request, Response
from .objects import Deferred, Env, Namespace, State, Stub
from .sql import SqlCursor, SqlStorage
from .storage import Storage

__all__ = [
    "CallError",
    "Deferred",
    "DurableObject",
    "Env",
    "HttpError",
    "Namespace",
    "Request",
    "Response",
    "SqlCursor",
    "SqlError",
    "SqlStorage",
    "State",
    "Storage",
    "StorageError",
    "Stream",
    "Stub",
    "WebSocket",
    "durable_object",
    "sse_event",
]
