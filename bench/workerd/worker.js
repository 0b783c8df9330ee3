// The front worker the benchmark puts before the seed's Counter: `/{name}/{action}` goes to
// the object `idFromName(name)` as `/{action}`, which is the path the Counter switches on.
// A WebSocket upgrade to `/{name}/ws` goes to the chat room `name` instead (the broadcast
// workload), so counter paths stay exactly `/{name}/{action}`. `/sql/{name}/{action}` goes
// to the SQL object `name` as `/sql/{action}` (the SQL table's routes).
import { Counter } from "./counter.js";
import { ChatRoom } from "./chat.js";
import { SqlItems } from "./sql.js";

export { Counter, ChatRoom, SqlItems };

export default {
  async fetch(request, env) {
    const url = new URL(request.url);
    const [, first, ...others] = url.pathname.split("/");
    if (first === "sql" && others.length > 1) {
      const [name, ...rest] = others;
      const stub = env.SQL.get(env.SQL.idFromName(decodeURIComponent(name)));
      url.pathname = "/sql/" + rest.join("/");
      return stub.fetch(new Request(url, request));
    }
    const [name, rest] = [first, others];
    if (!name) return new Response("Not found", { status: 404 });
    const ns = request.headers.get("Upgrade") === "websocket" ? env.ROOM : env.COUNTER;
    const stub = ns.get(ns.idFromName(decodeURIComponent(name)));
    url.pathname = "/" + rest.join("/");
    return stub.fetch(new Request(url, request));
  },
};
