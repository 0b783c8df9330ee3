"""The seed's ChatRoom in Python, on the dohost SDK: the Rust `chat-room` example's routes,
messages and page, so the same tests run against both.

| request | does |
| --- | --- |
| `GET /` | the chat page (the Rust example's, made into `page.py` at build time) |
| `GET /ws?name=N` (upgrade) | joins as N (tag `user:N`, attachment `{"name": N}`) |
| `GET /stats` | sockets open, instances constructed, closes and errors seen |
| `POST /auto?on=1` | the host answers `ping` with `pong` itself (`on=0` stops) |

Messages are broadcast to every other socket as `N: text`; `who` answers the sender's name
and tags; `close-me` makes the room close the socket with 4000.
"""

import json

import dohost
from dohost import Response
from page import PAGE


@dohost.durable_object
class ChatRoom(dohost.DurableObject):
    def __init__(self, state, env):
        super().__init__(state, env)
        # Count constructions, so tests can see hibernation happen.
        storage = state.storage
        storage.put("constructed", storage.get("constructed", 0) + 1)

    def fetch(self, request):
        if request.is_websocket():
            name = request.query.get("name", "anonymous")
            ws = self.state.accept_websocket([f"user:{name}"])
            ws.set_attachment({"name": name})
            return Response.websocket(ws)
        storage = self.state.storage
        if request.path == "/":
            return Response.text(PAGE).with_header("content-type", "text/html; charset=utf-8")
        if request.path == "/stats":
            return Response.json(
                {
                    "sockets": len(self.state.get_websockets()),
                    "constructed": storage.get("constructed", 0),
                    "closes": storage.get("closes", []),
                    "errors": storage.get("errors", []),
                }
            )
        if request.path == "/auto":
            on = request.query.get("on") != "0"
            self.state.set_websocket_auto_response(("ping", "pong") if on else None)
            return Response.text("ok")
        return Response.text("Expected WebSocket", 400)

    def websocket_message(self, ws, message):
        name = (ws.attachment() or {}).get("name", "")
        if message == "who":
            ws.send(f"you are {name}, tags {json.dumps(ws.tags())}")
            return
        if message == "close-me":
            ws.close(4000, "asked to leave")
            return
        # To every other socket; the host keeps one copy for all of them.
        out = f"{name}: {message}" if isinstance(message, str) else message
        self.state.broadcast(out, except_=ws)

    def websocket_close(self, ws, code, reason, was_clean):
        self.record("closes", {"code": code, "reason": reason, "clean": was_clean})

    def websocket_error(self, ws, error):
        print(f"WebSocket error: {error}")
        self.record("errors", error)

    def record(self, key, item):
        items = self.state.storage.get(key, [])[-99:]
        items.append(item)
        self.state.storage.put(key, items)
