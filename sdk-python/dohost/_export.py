"""The class the component exports for an object: it builds the author's class and turns
its answers and exceptions into what the host expects, as the Rust SDK does, so the same
mistake behaves the same in every language."""

import sys
import traceback
from typing import Any, Optional, Type

from componentize_py_types import Err
from wit_world.exports import handler
from wit_world.imports import types

from .connections import WebSocket
from .errors import HttpError
from .http import Request, Response
from .objects import Env, State

_registered: Optional[Type] = None


class DurableObject:
    """Base class of an object: implement `__init__(self, state, env)` (call this one) and
    `fetch(self, request) -> Response`; the other handlers default to doing nothing."""

    def __init__(self, state: State, env: Env) -> None:
        self.state = state
        # Cloudflare's name for the same object: `self.ctx.storage.sql`.
        self.ctx = state
        self.env = env

    def fetch(self, request: Request) -> Response:
        raise NotImplementedError

    def alarm(self, info: types.AlarmInfo) -> None:
        """Raising makes the host retry it, its writes dropped (2 s, 4 s, ... 6 times)."""

    def websocket_message(self, ws: WebSocket, message: Any) -> None:
        """`message` is a str (text) or bytes (binary)."""

    def websocket_close(self, ws: WebSocket, code: int, reason: str, was_clean: bool) -> None:
        pass

    def websocket_error(self, ws: WebSocket, error: str) -> None:
        pass


def durable_object(cls: Type) -> Type:
    """Marks the component's object class. Checked when the component is built: a class
    without `fetch` is refused then, not at its first request."""
    global _registered
    if not (isinstance(cls, type) and issubclass(cls, DurableObject)):
        raise TypeError("@durable_object goes on a subclass of dohost.DurableObject")
    if cls.fetch is DurableObject.fetch:
        raise TypeError(f"{cls.__name__} has no fetch(self, request) method")
    if _registered is not None and _registered is not cls:
        raise TypeError(
            f"one object class per component: {_registered.__name__} and {cls.__name__}"
        )
    _registered = cls
    return cls


def _internal_error(why: str) -> types.Response:
    # The client learns nothing of the object's internals; the host log gets the why.
    print(f"error (answered 500): {why}", file=sys.stderr)
    return Response.text("Internal Server Error", 500).to_wit()


class Exported(handler.DurableObject):
    """What the host constructs and calls (the WIT `durable-object` resource)."""

    def __init__(self, ctx: types.ObjectContext) -> None:
        if _registered is None:
            raise RuntimeError("no object class: put @dohost.durable_object on one")
        self.obj = _registered(State(ctx), Env(dict(ctx.env)))

    def fetch(self, request: types.Request) -> types.Response:
        try:
            response = self.obj.fetch(Request.from_wit(request))
        except HttpError as e:
            return Response.text(e.message, e.status).to_wit()
        except Exception:
            # Like a Rust `Err`: a 500, and the event's writes still commit.
            return _internal_error(traceback.format_exc().rstrip())
        if not isinstance(response, Response):
            return _internal_error(
                f"fetch returned {type(response).__name__}, not a dohost.Response"
            )
        return response.to_wit()

    def alarm(self, info: types.AlarmInfo) -> None:
        try:
            self.obj.alarm(info)
        except Exception as e:
            traceback.print_exc()
            raise Err(f"{type(e).__name__}: {e}")

    def websocket_message(self, ws: int, message: types.WebsocketMessage) -> None:
        self.obj.websocket_message(WebSocket(ws), message.value)

    def websocket_close(self, ws: int, code: int, reason: str, was_clean: bool) -> None:
        self.obj.websocket_close(WebSocket(ws), code, reason, was_clean)

    def websocket_error(self, ws: int, error: str) -> None:
        self.obj.websocket_error(WebSocket(ws), error)
