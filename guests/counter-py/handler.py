"""The seed's Counter in Python: /increment, /decrement and /get answer the value as text;
/watch is a server-sent events stream of the value, an event per change (the WIT `streams`
interface straight from the bindings).

Built with componentize-py against dohost's WIT (`make guests`). The value is stored as JSON
under the key `value`, exactly as the Rust SDK stores it, so the class can switch language
without losing data.
"""
import json
from urllib.parse import urlsplit

from wit_world.exports import handler
from wit_world.imports import storage, streams, types


def text(body: str, status: int = 200) -> types.Response:
    return types.Response(
        status=status,
        headers=[("content-type", "text/plain; charset=utf-8")],
        body=body.encode(),
    )


def value_event(value: int) -> bytes:
    return f"data: {value}\n\n".encode()


class DurableObject(handler.DurableObject):
    def __init__(self, ctx: types.ObjectContext) -> None:
        # Restore the value before any request runs (the seed's blockConcurrencyWhile).
        stored = storage.get("value")
        self.value = json.loads(stored) if stored is not None else 0

    def fetch(self, request: types.Request) -> types.Response:
        path = urlsplit(request.url).path
        if path == "/increment":
            return self.change(1)
        if path == "/decrement":
            return self.change(-1)
        if path == "/watch":
            # The response opened as a stream: its body is the first event, and every
            # change writes the next to the streams still open.
            streams.open(["watch"])
            return types.Response(
                status=200,
                headers=[("content-type", "text/event-stream"), ("cache-control", "no-cache")],
                body=value_event(self.value),
            )
        if path == "/get":
            return text(str(self.value))
        return text("Not found", 404)

    def change(self, by: int) -> types.Response:
        self.value += by
        storage.put("value", json.dumps(self.value).encode())
        for stream in streams.get_streams("watch"):
            streams.write(stream, value_event(self.value))
        return text(str(self.value))

    def alarm(self, info: types.AlarmInfo) -> None:
        pass

    def websocket_message(self, ws: int, message: types.WebsocketMessage) -> None:
        pass

    def websocket_close(self, ws: int, code: int, reason: str, was_clean: bool) -> None:
        pass

    def websocket_error(self, ws: int, error: str) -> None:
        pass
