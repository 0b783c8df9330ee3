"""Other objects, reached by binding (the JavaScript API's namespace and stub), and the
object's own State and Env."""

from typing import Any, Dict, List, Optional, Union

from wit_world.imports import objects, requests, streams, types, websockets

from .connections import Stream, WebSocket, message
from .errors import host_call as _call
from .errors import objects_call as _calling
from .http import Request, Response
from .storage import Storage


class Stub:
    """One object of a binding; `fetch` delivers a request and returns its response once
    the callee's writes are durable."""

    def __init__(self, binding: str, id: str, name: Optional[str]) -> None:
        self.binding = binding
        self.id = id
        self.name = name

    def fetch(self, request: Union[Request, str], method: str = "GET", body: bytes = b"") -> Response:
        """A Request, or a path (`/increment`) sent as `method` with `body`."""
        if isinstance(request, str):
            request = Request(method, f"http://{self.binding}{request}", [], body)
        answer = _calling(objects.fetch, self.binding, self.id, self.name, request.to_wit())
        return Response.from_wit(answer)


class Namespace:
    """A binding: IDs and stubs of its objects."""

    def __init__(self, binding: str) -> None:
        self.binding = binding

    def id_from_name(self, name: str) -> str:
        return _calling(objects.id_from_name, self.binding, name)

    def new_unique_id(self) -> str:
        return _calling(objects.new_unique_id, self.binding)

    def id_from_string(self, id: str) -> str:
        return _calling(objects.id_from_string, self.binding, id)

    def get(self, id: str, name: Optional[str] = None) -> Stub:
        return Stub(self.binding, id, name)

    def get_by_name(self, name: str) -> Stub:
        return Stub(self.binding, self.id_from_name(name), name)


class Env:
    """The configuration's plain variables, and the bindings."""

    def __init__(self, vars: Dict[str, str]) -> None:
        self.vars = vars

    def var(self, name: str) -> Optional[str]:
        return self.vars.get(name)

    def namespace(self, binding: str) -> Namespace:
        return Namespace(binding)


class Deferred:
    """A request answered later, from another event (`state.defer()`)."""

    def __init__(self, handle: int) -> None:
        self.handle = handle

    def respond(self, response: Response) -> bool:
        """False when its client is gone (answered, timed out or left)."""
        return requests.respond(self.handle, response.to_wit())

    def is_open(self) -> bool:
        return requests.is_open(self.handle)


class State:
    """What an object knows of itself, and the door to its storage and clients."""

    def __init__(self, ctx: types.ObjectContext) -> None:
        self.id = ctx.id
        self.name = ctx.name
        self.binding = ctx.binding
        self.class_name = ctx.class_name
        self.storage = Storage()

    def accept_websocket(self, tags: List[str] = []) -> WebSocket:
        """Accepts the current request's WebSocket upgrade; answer with
        `Response.websocket(ws)`. The host holds the socket while the object hibernates."""
        return WebSocket(_call(websockets.accept, list(tags)))

    def get_websockets(self, tag: Optional[str] = None) -> List[WebSocket]:
        return [WebSocket(i) for i in websockets.get_websockets(tag)]

    def broadcast(
        self, data: Union[str, bytes], tag: Optional[str] = None, except_: Optional[WebSocket] = None
    ) -> int:
        """Sends to every open socket carrying `tag` (all with None) but `except_`; the host
        keeps one copy for all of them. Returns how many."""
        skip = except_.id if except_ is not None else None
        return _call(websockets.broadcast, message(data), tag, skip)

    def set_websocket_auto_response(self, pair: Optional[tuple]) -> None:
        websockets.set_auto_response(pair)

    def open_stream(self, tags: List[str] = []) -> Stream:
        """Opens the current request's response as a stream (answer with e.g.
        `Response.event_stream()`); any later event writes to it."""
        return Stream(_call(streams.open, list(tags)))

    def get_streams(self, tag: Optional[str] = None) -> List[Stream]:
        return [Stream(i) for i in streams.get_streams(tag)]

    def defer(self) -> Deferred:
        """Answers the current request later; return `Response.deferred()` now."""
        handle = requests.defer()
        if handle is None:
            raise RuntimeError("defer is for a fetch")
        return Deferred(handle)

    def pending(self) -> List[Deferred]:
        return [Deferred(h) for h in requests.pending()]
