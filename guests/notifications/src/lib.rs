//! Live notifications over server-sent events: subscribers hold a streamed response each,
//! which the host keeps open while the object hibernates; every publish reaches them as one
//! event, and is kept so that a subscriber reconnecting with `Last-Event-ID` gets what it
//! missed.
//!
//! | request | does |
//! | --- | --- |
//! | `GET /` | a page that subscribes with `EventSource` and publishes with a form |
//! | `GET /subscribe[?topic=T]` | an event stream of topic T's messages (every topic's without one); with `Last-Event-ID`, the kept messages after it come first; 503 past the host's limits on open streams |
//! | `POST /publish?topic=T` | the body is the message: kept, then sent to T's subscribers as one event (its ID the next number); answers `{"id": N, "delivered": K}` |
//! | `GET /subscribers[?topic=T]` | `{"subscribers": K, "constructed": C}`: open streams (of topic T, or all), and instances built so far |
//!
//! The last `HISTORY` messages are kept.

use dohost_sdk::{
    DurableObject, Env, Error, ListOptions, Request, Response, Result, SseEvent, State,
    durable_object,
};
use serde::{Deserialize, Serialize};
use serde_json::json;

/// Messages kept for reconnecting subscribers.
const HISTORY: u64 = 1000;
/// The tag of subscribers to every topic.
const ALL: &str = "all";

#[durable_object]
pub struct Notifications {
    state: State,
}

#[derive(Serialize, Deserialize)]
struct Message {
    topic: String,
    data: String,
}

const PAGE: &str = include_str!("page.html");

/// The storage key of message `id`: zero-padded, so keys sort as numbers.
fn key(id: u64) -> String {
    format!("msg:{id:020}")
}

fn topic_tag(topic: &str) -> String {
    format!("topic:{topic}")
}

impl DurableObject for Notifications {
    fn new(state: State, _env: Env) -> Self {
        // Count constructions, so tests can see hibernation happen.
        let storage = state.storage();
        let n: u64 = storage.get("constructed").ok().flatten().unwrap_or(0);
        let _ = storage.put("constructed", &(n + 1));
        Notifications { state }
    }

    fn fetch(&mut self, req: Request) -> Result<Response> {
        match (req.method(), req.path()) {
            ("GET", "/") => {
                Ok(Response::text(PAGE).with_header("content-type", "text/html; charset=utf-8"))
            }
            ("GET", "/subscribe") => self.subscribe(&req),
            ("POST", "/publish") => self.publish(&req),
            ("GET", "/subscribers") => {
                let tag = req.query_param("topic").map(|t| topic_tag(&t));
                let mut count = self.state.get_streams(tag.as_deref()).len();
                if tag.is_some() {
                    count += self.state.get_streams(Some(ALL)).len();
                }
                let constructed: u64 = self.state.storage().get("constructed")?.unwrap_or(0);
                Ok(Response::json(
                    &json!({ "subscribers": count, "constructed": constructed }),
                ))
            }
            _ => Ok(Response::text("Not found").with_status(404)),
        }
    }
}

impl Notifications {
    fn subscribe(&mut self, req: &Request) -> Result<Response> {
        let topic = req.query_param("topic");
        let tag = topic.as_deref().map_or(ALL.to_string(), topic_tag);
        let after: Option<u64> = match req.last_event_id() {
            Some(id) => Some(id.trim().parse().map_err(|_| {
                Error::msg(format!("Last-Event-ID {id:?} is not a message number")).with_status(400)
            })?),
            None => None,
        };
        // Past the host's limits on open streams: 503, saying which limit.
        self.state
            .open_stream(&[tag.as_str()])
            .map_err(|e| e.with_status(503))?;
        // A comment first, so the client sees the subscription is live; then what it missed.
        let mut first = String::from(": subscribed\n\n");
        if let Some(after) = after {
            let missed = self.state.storage().list::<Message>(
                ListOptions::new()
                    .start(key(after + 1))
                    .prefix("msg:")
                    .limit(HISTORY as u32),
            )?;
            for (k, message) in missed {
                let id: u64 = k["msg:".len()..].parse().map_err(Error::msg)?;
                if topic.as_deref().is_none_or(|t| t == message.topic) {
                    first.push_str(&event(id, &message).to_string());
                }
            }
        }
        Ok(Response::event_stream(first))
    }

    fn publish(&mut self, req: &Request) -> Result<Response> {
        let topic = req
            .query_param("topic")
            .ok_or_else(|| Error::msg("publish needs ?topic=T").with_status(400))?;
        let data = req.text()?.to_string();
        let storage = self.state.storage();
        let id: u64 = storage.get::<u64>("next")?.unwrap_or(1);
        let message = Message { topic, data };
        storage.put(&key(id), &message)?;
        storage.put("next", &(id + 1))?;
        if id > HISTORY {
            storage.delete(&key(id - HISTORY))?;
        }
        let event = event(id, &message);
        let mut delivered = 0;
        let tag = topic_tag(&message.topic);
        for stream in self
            .state
            .get_streams(Some(&tag))
            .into_iter()
            .chain(self.state.get_streams(Some(ALL)))
        {
            // A subscriber that went away since it was listed fails; the others still get it.
            if stream.send_event(&event).is_ok() {
                delivered += 1;
            }
        }
        Ok(Response::json(&json!({ "id": id, "delivered": delivered })))
    }
}

/// A message as its subscribers get it: an event of the default type (`message`, what
/// `EventSource.onmessage` hears), its ID the message's number.
fn event(id: u64, message: &Message) -> SseEvent {
    SseEvent::new(message.data.clone()).id(id.to_string())
}
