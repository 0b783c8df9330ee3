"""The seed's Counter in Python, on the dohost SDK: /increment, /decrement and /get answer
the value as text; /watch is a server-sent events stream of the value, an event per change;
/peek?binding=B&name=N answers another object's /get through its stub.
The value is stored as JSON under `value`, as the Rust SDK stores it, so the class can
switch language without losing data."""

import dohost
from dohost import Response


@dohost.durable_object
class Counter(dohost.DurableObject):
    def __init__(self, state, env):
        super().__init__(state, env)
        # Restored before any request runs (the seed's blockConcurrencyWhile).
        self.value = state.storage.get("value", 0)

    def fetch(self, request):
        if request.path == "/increment":
            return self.change(1)
        if request.path == "/decrement":
            return self.change(-1)
        if request.path == "/get":
            return Response.text(str(self.value))
        if request.path == "/watch":
            # The response opened as a stream: its body is the first event, and every
            # change writes the next to the streams still open.
            self.state.open_stream(["watch"])
            return Response.event_stream(dohost.sse_event(str(self.value)))
        if request.path == "/peek":
            # Another object's value through its stub: /peek?binding=B&name=N answers what
            # N of B answers to /get, whatever language B is written in.
            q = request.query
            stub = self.env.namespace(q["binding"]).get_by_name(q["name"])
            return Response.text(stub.fetch("/get").text_body())
        return Response.text("Not found", 404)

    def change(self, by):
        self.value += by
        self.state.storage.put("value", self.value)
        for stream in self.state.get_streams("watch"):
            stream.send_event(str(self.value))
        return Response.text(str(self.value))
