"""The clients an object holds through the host: WebSockets and streamed responses, both
kept open while the object hibernates, found again by tag or by ID."""

import json
from typing import Any, List, Optional, Union

from wit_world.imports import streams, types, websockets

from .errors import host_call as _call


def message(value: Union[str, bytes]) -> types.WebsocketMessage:
    if isinstance(value, str):
        return types.WebsocketMessage_Text(value)
    if isinstance(value, (bytes, bytearray)):
        return types.WebsocketMessage_Binary(bytes(value))
    raise TypeError(f"a WebSocket message is str or bytes, not {type(value).__name__}")


class WebSocket:
    """One of the object's WebSockets, stable across hibernation."""

    def __init__(self, id: int) -> None:
        self.id = id

    def __eq__(self, other: object) -> bool:
        return isinstance(other, WebSocket) and other.id == self.id

    def __hash__(self) -> int:
        return hash(self.id)

    def send(self, data: Union[str, bytes]) -> None:
        """Text for a str, binary for bytes; leaves once this event's writes are durable."""
        _call(websockets.send, self.id, message(data))

    def send_json(self, value: Any) -> None:
        self.send(json.dumps(value))

    def close(self, code: int = 1000, reason: str = "") -> None:
        _call(websockets.close, self.id, code, reason)

    def tags(self) -> List[str]:
        return websockets.get_tags(self.id)

    def attachment(self) -> Any:
        """The JSON value kept with the socket, or None."""
        raw = websockets.deserialize_attachment(self.id)
        return None if raw is None else json.loads(raw)

    def set_attachment(self, value: Any) -> None:
        """Keeps a JSON value (at most 2 KiB) with the socket; it survives hibernation."""
        _call(websockets.serialize_attachment, self.id, json.dumps(value).encode())

    def auto_response_timestamp(self) -> Optional[int]:
        return websockets.get_auto_response_timestamp(self.id)


def sse_event(data: str, id: Optional[str] = None, event: Optional[str] = None) -> str:
    """One server-sent event: a `data:` line per line of `data` (CRLF, CR and LF all end a
    line), line breaks dropped from the ID and type."""
    out = ""
    if id is not None:
        out += "id: " + id.replace("\r", "").replace("\n", "") + "\n"
    if event is not None:
        out += "event: " + event.replace("\r", "").replace("\n", "") + "\n"
    for line in data.replace("\r\n", "\n").replace("\r", "\n").split("\n"):
        out += "data: " + line + "\n"
    return out + "\n"


class Stream:
    """One of the object's open streamed responses, stable across hibernation."""

    def __init__(self, id: int) -> None:
        self.id = id

    def write(self, chunk: Union[str, bytes]) -> None:
        """Leaves once this event's writes are durable, after the chunks before it."""
        data = chunk.encode() if isinstance(chunk, str) else bytes(chunk)
        _call(streams.write, self.id, data)

    def send_event(self, data: str, id: Optional[str] = None, event: Optional[str] = None) -> None:
        self.write(sse_event(data, id, event))

    def close(self) -> None:
        _call(streams.close, self.id)

    def is_open(self) -> bool:
        return streams.is_open(self.id)

    def tags(self) -> List[str]:
        return streams.get_tags(self.id)
