//! The seed's ConnectionPool: clients register a name, and a message `{"to": name, ...}` is
//! routed to that connection. Registrations are socket attachments, so they survive
//! hibernation (the seed's in-memory map would not).
//!
//! | message | does |
//! | --- | --- |
//! | `{"register": "alice"}` | names this connection `alice` (answers `{"registered": "alice"}`) |
//! | `{"to": "bob", ...}` | sends the whole message to the connection named `bob` |

use dohost_sdk::{
    DurableObject, Env, Request, Response, Result, State, WebSocket, WebSocketMessage,
    durable_object,
};
use serde_json::{Value, json};

#[durable_object]
pub struct ConnectionPool {
    state: State,
}

impl DurableObject for ConnectionPool {
    fn new(state: State, _env: Env) -> Self {
        ConnectionPool { state }
    }

    fn fetch(&mut self, req: Request) -> Result<Response> {
        if req
            .header("upgrade")
            .is_some_and(|u| u.eq_ignore_ascii_case("websocket"))
        {
            let ws = self.state.accept_websocket(&req, &[])?;
            return Ok(Response::websocket(ws));
        }
        Ok(Response::text("Expected WebSocket").with_status(400))
    }

    fn websocket_message(&mut self, ws: WebSocket, message: WebSocketMessage) {
        let WebSocketMessage::Text(text) = message else {
            return;
        };
        let Ok(data) = serde_json::from_str::<Value>(&text) else {
            let _ = ws.send_text(r#"{"error":"not JSON"}"#);
            return;
        };
        if let Some(name) = data.get("register").and_then(Value::as_str) {
            let _ = ws.serialize_attachment(name);
            let _ = ws.send_text(&json!({ "registered": name }).to_string());
            return;
        }
        // Route message to specific connection.
        let Some(to) = data.get("to").and_then(Value::as_str) else {
            return;
        };
        let target = self.state.get_websockets(None).into_iter().find(|s| {
            s.deserialize_attachment::<String>()
                .ok()
                .flatten()
                .as_deref()
                == Some(to)
        });
        if let Some(target) = target {
            let _ = target.send_text(&text);
        }
    }
}
