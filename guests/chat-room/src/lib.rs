//! The seed's ChatRoom, written the hibernation way: the sockets live in the host and are
//! found with `get_websockets`, so the room keeps working after its instance is evicted.
//!
//! | request | does |
//! | --- | --- |
//! | `GET /` | a small chat page (HTML + JS) that connects to this room |
//! | `GET /ws?name=N` (upgrade) | joins the room as N (tag `user:N`, attachment `{"name": N}`) |
//! | `GET /stats` | sockets open, instances constructed, closes and errors seen |
//! | `POST /auto?on=1` | the host answers `ping` with `pong` itself (`on=0` stops) |
//!
//! Messages are broadcast to every other socket, as `N: text`. A socket sending `who` gets
//! back its name and tags; `close-me` makes the room close it with code 4000.

use dohost_sdk::{
    DurableObject, Env, Request, Response, Result, State, WebSocket, WebSocketMessage,
    durable_object,
};
use serde::{Deserialize, Serialize};
use serde_json::json;

#[durable_object]
pub struct ChatRoom {
    state: State,
}

#[derive(Serialize, Deserialize)]
struct Member {
    name: String,
}

#[derive(Serialize, Deserialize)]
struct Closed {
    code: u16,
    reason: String,
    clean: bool,
}

const PAGE: &str = include_str!("page.html");

impl DurableObject for ChatRoom {
    fn new(state: State, _env: Env) -> Self {
        // Count constructions, so tests can see hibernation happen.
        let storage = state.storage();
        let n: u64 = storage.get("constructed").ok().flatten().unwrap_or(0);
        let _ = storage.put("constructed", &(n + 1));
        ChatRoom { state }
    }

    fn fetch(&mut self, req: Request) -> Result<Response> {
        if req
            .header("upgrade")
            .is_some_and(|u| u.eq_ignore_ascii_case("websocket"))
        {
            let name = req
                .query_param("name")
                .unwrap_or_else(|| "anonymous".into());
            let tag = format!("user:{name}");
            let ws = self.state.accept_websocket(&req, &[tag.as_str()])?;
            ws.serialize_attachment(&Member { name })?;
            return Ok(Response::websocket(ws));
        }
        let storage = self.state.storage();
        match req.path() {
            "/" => Ok(Response::text(PAGE).with_header("content-type", "text/html; charset=utf-8")),
            "/stats" => {
                let closes: Vec<Closed> = storage.get("closes")?.unwrap_or_default();
                let errors: Vec<String> = storage.get("errors")?.unwrap_or_default();
                Ok(Response::json(&json!({
                    "sockets": self.state.get_websockets(None).len(),
                    "constructed": storage.get::<u64>("constructed")?.unwrap_or(0),
                    "closes": closes,
                    "errors": errors,
                })))
            }
            "/auto" => {
                let on = req.query_param("on").as_deref() != Some("0");
                self.state
                    .set_websocket_auto_response(on.then_some(("ping", "pong")));
                Ok(Response::text("ok"))
            }
            _ => Ok(Response::text("Expected WebSocket").with_status(400)),
        }
    }

    fn websocket_message(&mut self, ws: WebSocket, message: WebSocketMessage) {
        let name = ws
            .deserialize_attachment::<Member>()
            .ok()
            .flatten()
            .map(|m| m.name)
            .unwrap_or_default();
        if let WebSocketMessage::Text(t) = &message {
            match t.as_str() {
                "who" => {
                    let _ = ws.send_text(&format!("you are {name}, tags {:?}", ws.tags()));
                    return;
                }
                "close-me" => {
                    let _ = ws.close(4000, "asked to leave");
                    return;
                }
                _ => {}
            }
        }
        // Broadcast to every other socket (the host keeps one copy for all of them).
        let message = match message {
            WebSocketMessage::Text(t) => WebSocketMessage::Text(format!("{name}: {t}")),
            binary => binary,
        };
        let _ = self.state.broadcast(&message, None, Some(ws));
    }

    fn websocket_close(&mut self, _ws: WebSocket, code: u16, reason: String, was_clean: bool) {
        self.record(
            "closes",
            Closed {
                code,
                reason,
                clean: was_clean,
            },
        );
    }

    fn websocket_error(&mut self, _ws: WebSocket, error: String) {
        eprintln!("WebSocket error: {error}");
        self.record("errors", error);
    }
}

impl ChatRoom {
    fn record<T: Serialize + for<'de> Deserialize<'de>>(&self, key: &str, item: T) {
        let storage = self.state.storage();
        let mut list: Vec<T> = storage.get(key).ok().flatten().unwrap_or_default();
        if list.len() >= 100 {
            list.remove(0);
        }
        list.push(item);
        let _ = storage.put(key, &list);
    }
}
