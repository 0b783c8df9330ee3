"""The request an object receives and the response it returns."""

import json
from typing import Any, Dict, List, Optional, Tuple
from urllib.parse import parse_qsl, urlsplit

from wit_world.imports import types


class Request:
    """An HTTP request. Header names arrive lower-cased."""

    def __init__(
        self,
        method: str,
        url: str,
        headers: Optional[List[Tuple[str, str]]] = None,
        body: bytes = b"",
    ) -> None:
        self.method = method
        self.url = url
        self.headers = list(headers or [])
        self.body = body

    @staticmethod
    def from_wit(r: types.Request) -> "Request":
        return Request(r.method, r.url, r.headers, r.body)

    def to_wit(self) -> types.Request:
        return types.Request(method=self.method, url=self.url, headers=self.headers, body=self.body)

    @property
    def path(self) -> str:
        return urlsplit(self.url).path or "/"

    @property
    def query(self) -> Dict[str, str]:
        """The query's parameters, percent-decoded (the last of a repeated name wins)."""
        return dict(parse_qsl(urlsplit(self.url).query, keep_blank_values=True))

    def header(self, name: str) -> Optional[str]:
        """A header's value (names compare case-insensitively)."""
        name = name.lower()
        return next((v for k, v in self.headers if k.lower() == name), None)

    def text(self) -> str:
        return self.body.decode()

    def json(self) -> Any:
        return json.loads(self.body)

    def last_event_id(self) -> Optional[str]:
        """What a reconnecting server-sent events client had last."""
        return self.header("last-event-id")

    def is_websocket(self) -> bool:
        return (self.header("upgrade") or "").lower() == "websocket"


class Response:
    """An object's answer. Build one with `text`, `json`, `bytes`, `empty`, `websocket` or
    `event_stream`; the body is always bytes (a str or other value is a clear error)."""

    def __init__(
        self,
        body: bytes = b"",
        status: int = 200,
        headers: Optional[List[Tuple[str, str]]] = None,
    ) -> None:
        if not isinstance(body, (bytes, bytearray)):
            raise TypeError(
                f"a Response body is bytes, not {type(body).__name__}: use Response.text "
                "or Response.json"
            )
        self.body = bytes(body)
        self.status = status
        self.headers = list(headers or [])

    @staticmethod
    def text(body: str, status: int = 200) -> "Response":
        return Response(body.encode(), status, [("content-type", "text/plain; charset=utf-8")])

    @staticmethod
    def json(value: Any, status: int = 200) -> "Response":
        body = json.dumps(value, separators=(",", ":")).encode()
        return Response(body, status, [("content-type", "application/json")])

    @staticmethod
    def bytes(body: bytes, status: int = 200) -> "Response":
        return Response(body, status)

    @staticmethod
    def empty(status: int) -> "Response":
        return Response(b"", status)

    @staticmethod
    def websocket(ws: Any) -> "Response":
        """The answer to a WebSocket upgrade accepted with `state.accept_websocket`: 101."""
        return Response(b"", 101)

    @staticmethod
    def deferred() -> "Response":
        """What `fetch` returns after `state.defer()`: the host ignores it."""
        return Response(b"", 202)

    @staticmethod
    def event_stream(first: str = "") -> "Response":
        """200 text/event-stream (not cached, not buffered by proxies), `first` its first
        chunk: the answer to a request opened with `state.open_stream`."""
        return Response(
            first.encode(),
            200,
            [
                ("content-type", "text/event-stream"),
                ("cache-control", "no-cache"),
                ("x-accel-buffering", "no"),
            ],
        )

    def with_header(self, name: str, value: str) -> "Response":
        """Sets a header, replacing one of the same name."""
        self.headers = [(k, v) for k, v in self.headers if k.lower() != name.lower()]
        self.headers.append((name, value))
        return self

    def text_body(self) -> str:
        return self.body.decode()

    @staticmethod
    def from_wit(r: types.Response) -> "Response":
        return Response(r.body, r.status, r.headers)

    def to_wit(self) -> types.Response:
        return types.Response(status=self.status, headers=self.headers, body=self.body)
