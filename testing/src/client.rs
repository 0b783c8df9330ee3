//! What a test sends the harness and gets back: requests, responses and WebSocket clients
//! (real HTTP and WebSocket connections to the host's loopback port).

use std::net::TcpStream;
use std::time::Duration;
use tungstenite::stream::MaybeTlsStream;

/// An HTTP request to the harness: a method, a path (`/{binding}/{name}/{path}` with the
/// default routes), headers and a body.
#[derive(Debug, Clone)]
pub struct Request {
    pub(crate) method: String,
    pub(crate) path: String,
    pub(crate) headers: Vec<(String, String)>,
    pub(crate) body: Vec<u8>,
}

impl Request {
    /// A request with `method` (`"GET"`, `"POST"`, ...) for `path`.
    pub fn new(method: &str, path: &str) -> Request {
        Request {
            method: method.to_ascii_uppercase(),
            path: path.to_string(),
            headers: Vec::new(),
            body: Vec::new(),
        }
    }

    pub fn get(path: &str) -> Request {
        Request::new("GET", path)
    }

    pub fn post(path: &str) -> Request {
        Request::new("POST", path)
    }

    pub fn header(mut self, name: &str, value: &str) -> Request {
        self.headers.push((name.to_string(), value.to_string()));
        self
    }

    pub fn body(mut self, body: impl Into<Vec<u8>>) -> Request {
        self.body = body.into();
        self
    }

    /// `value` as the JSON body, with its content type.
    pub fn json<T: serde::Serialize + ?Sized>(self, value: &T) -> Request {
        let body = serde_json::to_vec(value).expect("serialize the request's JSON body");
        self.header("content-type", "application/json").body(body)
    }
}

/// The host's answer.
#[derive(Debug, Clone)]
pub struct Response {
    pub status: u16,
    /// Names lower-cased, in the order received.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Response {
    /// The body as UTF-8 (lossy).
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The body parsed as JSON; panics with the body when it is not.
    pub fn json<T: serde::de::DeserializeOwned>(&self) -> T {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "the body is not the JSON expected ({e}): {} {}",
                self.status,
                self.text()
            )
        })
    }

    /// The first value of header `name` (any case).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// A message received on a [`WebSocket`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Message {
    Text(String),
    Binary(Vec<u8>),
    /// The host closed the socket (code and reason; 1005 when the frame had none).
    Close(u16, String),
}

/// A WebSocket client connected to an object. Calls block; `recv` gives up (panics) after
/// the harness's receive timeout, so a test waiting for a message that never comes fails
/// instead of hanging.
pub struct WebSocket {
    socket: tungstenite::WebSocket<MaybeTlsStream<TcpStream>>,
}

impl WebSocket {
    pub(crate) fn connect(url: &str, timeout: Duration) -> Result<WebSocket, String> {
        let (socket, _) = tungstenite::connect(url).map_err(|e| match e {
            tungstenite::Error::Http(response) => {
                let body = response
                    .body()
                    .as_deref()
                    .map(String::from_utf8_lossy)
                    .unwrap_or_default();
                format!("the upgrade was refused: {} {body}", response.status())
            }
            other => other.to_string(),
        })?;
        if let MaybeTlsStream::Plain(stream) = socket.get_ref() {
            stream
                .set_read_timeout(Some(timeout))
                .map_err(|e| e.to_string())?;
        }
        Ok(WebSocket { socket })
    }

    pub fn send_text(&mut self, text: &str) {
        self.socket
            .send(tungstenite::Message::text(text))
            .expect("send a text message");
    }

    pub fn send_binary(&mut self, bytes: &[u8]) {
        self.socket
            .send(tungstenite::Message::binary(bytes.to_vec()))
            .expect("send a binary message");
    }

    /// The next message (pings and pongs are skipped).
    pub fn recv(&mut self) -> Message {
        loop {
            match self.socket.read() {
                Ok(tungstenite::Message::Text(t)) => return Message::Text(t.to_string()),
                Ok(tungstenite::Message::Binary(b)) => return Message::Binary(b.to_vec()),
                Ok(tungstenite::Message::Close(frame)) => {
                    return match frame {
                        Some(f) => Message::Close(f.code.into(), f.reason.to_string()),
                        None => Message::Close(1005, String::new()),
                    };
                }
                Ok(_) => continue,
                Err(tungstenite::Error::Io(e))
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) =>
                {
                    panic!("no WebSocket message arrived within the harness's receive timeout")
                }
                Err(e) => panic!("the WebSocket failed: {e}"),
            }
        }
    }

    /// The next message, which must be text.
    pub fn recv_text(&mut self) -> String {
        match self.recv() {
            Message::Text(t) => t,
            other => panic!("expected a text message, got {other:?}"),
        }
    }

    /// Closes the socket with `code` and `reason` and waits for the host's answering close.
    pub fn close(mut self, code: u16, reason: &str) {
        let frame = tungstenite::protocol::CloseFrame {
            code: code.into(),
            reason: reason.into(),
        };
        let _ = self.socket.close(Some(frame));
        // Read until the close handshake ends (or the host drops the connection).
        while self.socket.read().is_ok() {}
    }
}
