// The broadcast room for workerd, doing what dohost's chat-room guest does on a message:
// hibernatable sockets tagged with the member's name, each text sent on to every other
// socket as `name: text`.
export class ChatRoom {
  constructor(state) {
    this.state = state;
  }

  async fetch(request) {
    if (request.headers.get("Upgrade") !== "websocket") {
      return new Response("Expected WebSocket", { status: 400 });
    }
    const name = new URL(request.url).searchParams.get("name") || "anonymous";
    const [client, server] = Object.values(new WebSocketPair());
    this.state.acceptWebSocket(server, ["user:" + name]);
    server.serializeAttachment({ name });
    return new Response(null, { status: 101, webSocket: client });
  }

  webSocketMessage(ws, message) {
    const name = ws.deserializeAttachment()?.name ?? "";
    for (const session of this.state.getWebSockets()) {
      if (session !== ws) {
        session.send(typeof message === "string" ? `${name}: ${message}` : message);
      }
    }
  }
}
