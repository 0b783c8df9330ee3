//! A client of a server-sent events stream: reads it as it arrives, event by event.

use std::time::Duration;

/// One server-sent event as a client reads it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    pub id: Option<String>,
    pub data: String,
}

/// A client reading an event stream as it arrives.
pub struct Subscriber {
    pub response: reqwest::Response,
    pub buffer: String,
    /// Comment lines seen (keep-alives, the object's greeting).
    pub comments: Vec<String>,
}

impl Subscriber {
    pub async fn open(url: &str, last_event_id: Option<&str>) -> Subscriber {
        let mut s = Self::connect(url, last_event_id).await;
        // The `notifications` object greets every subscriber with a comment: it is
        // subscribed once that arrives.
        s.read_until(|s| !s.comments.is_empty()).await;
        s
    }

    /// Subscribes to a stream that sends no greeting.
    pub async fn open_raw(url: &str) -> Subscriber {
        Self::connect(url, None).await
    }

    async fn connect(url: &str, last_event_id: Option<&str>) -> Subscriber {
        let c = reqwest::Client::new();
        let mut req = c.get(url);
        if let Some(id) = last_event_id {
            req = req.header("last-event-id", id);
        }
        let response = tokio::time::timeout(Duration::from_secs(10), req.send())
            .await
            .expect("the stream's head in time")
            .expect("subscribe");
        assert_eq!(response.status(), 200, "subscribing to {url}");
        assert_eq!(
            response.headers()["content-type"],
            "text/event-stream",
            "an event stream"
        );
        Subscriber {
            response,
            buffer: String::new(),
            comments: Vec::new(),
        }
    }

    /// Reads chunks until `done` holds, within ten seconds.
    pub async fn read_until(&mut self, mut done: impl FnMut(&Self) -> bool) {
        tokio::time::timeout(Duration::from_secs(10), async {
            while !done(self) {
                let chunk = self
                    .response
                    .chunk()
                    .await
                    .expect("the stream is readable")
                    .expect("the stream has not ended");
                self.buffer.push_str(std::str::from_utf8(&chunk).unwrap());
                self.take_comments();
            }
        })
        .await
        .expect("in time");
    }

    /// Moves leading comment blocks out of the buffer.
    fn take_comments(&mut self) {
        while self.buffer.starts_with(':') {
            let Some(end) = self.buffer.find("\n\n") else {
                return;
            };
            self.comments.push(self.buffer[..end].to_string());
            self.buffer.drain(..end + 2);
        }
    }

    /// The next event (comments skipped).
    pub async fn next_event(&mut self) -> Event {
        self.read_until(|s| s.buffer.contains("\n\n")).await;
        let end = self.buffer.find("\n\n").unwrap();
        let block: String = self.buffer.drain(..end + 2).collect();
        self.take_comments();
        let mut event = Event {
            id: None,
            data: String::new(),
        };
        let mut lines = Vec::new();
        for line in block.trim_end().lines() {
            if let Some(id) = line.strip_prefix("id: ") {
                event.id = Some(id.to_string());
            } else if let Some(data) = line.strip_prefix("data: ") {
                lines.push(data);
            }
        }
        event.data = lines.join("\n");
        event
    }
}

/// The event a publish of `data` as message `id` gives.
pub fn event(id: u64, data: &str) -> Event {
    Event {
        id: Some(id.to_string()),
        data: data.to_string(),
    }
}
