//! The host's WebSockets: a registry of every open socket (its object, tags, attachment,
//! bounded send queue); the edge runs each connection. Sockets belong to the host,
//! not to an instance, so they stay open while their object is evicted (hibernation).

use super::by_object::ByObject;
use super::memory::{MemoryBudget, QueuedBytes};
use crate::id::ObjectKey;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use tokio::sync::{mpsc, oneshot};

/// Close code for a normal close (1000), the one code below 3000 an object may send.
pub const CLOSE_NORMAL: u16 = 1000;
/// The close codes an application may send besides `CLOSE_NORMAL` (RFC 6455, 7.4.2).
pub const CLOSE_APPLICATION: std::ops::RangeInclusive<u16> = 3000..=4999;
/// Reported when a close frame carried no code (1005; never sent on the wire).
pub const CLOSE_NO_STATUS: u16 = 1005;
/// Reported when the connection ended without a close frame (1006; never sent).
pub const CLOSE_ABNORMAL: u16 = 1006;
/// Close code for a client that does not read fast enough (1013, "try again later").
pub const CLOSE_QUEUE_OVERFLOW: u16 = 1013;
/// Close code for a socket whose object moved to another node of a cluster (1012, "service
/// restart"): the client should reconnect, and reaches the new owner.
pub const CLOSE_MOVED: u16 = 1012;
/// Close code for a socket whose message the object failed to handle (1011, "internal
/// error"): its handler trapped, so the message was lost.
pub const CLOSE_INTERNAL_ERROR: u16 = 1011;
/// Close code for a message over the size limit (1009, "message too big").
pub const CLOSE_TOO_BIG: u16 = 1009;
/// At most this many tags per socket, each at most `MAX_TAG_BYTES`.
pub const MAX_TAGS: usize = 10;
pub const MAX_TAG_BYTES: usize = 256;
/// Largest attachment kept with a socket.
pub const MAX_ATTACHMENT_BYTES: usize = 2048;

/// A message from the host or the object to a client. Text and binary payloads are
/// shared buffers: a broadcast queues one buffer for every recipient. `Text` holds valid
/// UTF-8.
#[derive(Debug, Clone)]
pub enum Outgoing {
    Text(bytes::Bytes),
    Binary(bytes::Bytes),
    Close(u16, String),
}

impl Outgoing {
    pub fn text(text: impl Into<String>) -> Outgoing {
        Outgoing::Text(bytes::Bytes::from(text.into()))
    }

    /// The payload's size, which counts against the socket's queue in bytes.
    pub fn queued_bytes(&self) -> usize {
        match self {
            Outgoing::Text(b) | Outgoing::Binary(b) => b.len(),
            Outgoing::Close(_, reason) => reason.len(),
        }
    }
}

struct Entry {
    object: ObjectKey,
    tags: Vec<String>,
    attachment: Option<Vec<u8>>,
    out: mpsc::Sender<Outgoing>,
    /// Bytes queued for the client and not yet written (the connection task subtracts).
    queued: Arc<QueuedBytes>,
    kill: Option<oneshot::Sender<()>>,
    auto_response_at: Option<u64>,
    /// The connection ended; the entry stays (attachment, tags) until the object has
    /// handled the events its client sent before the end, then `remove` drops it.
    closed: bool,
}

#[derive(Default)]
struct Inner {
    sockets: HashMap<u64, Entry>,
    by_object: ByObject,
    auto_response: HashMap<ObjectKey, (String, String)>,
}

/// Every open socket.
pub struct Sockets {
    // A std Mutex: map updates and non-blocking sends only, never across an await.
    inner: Mutex<Inner>,
    next_id: AtomicU64,
    /// Messages one socket may have queued for its client; past this the client is too
    /// slow and the socket is closed with [`CLOSE_QUEUE_OVERFLOW`].
    send_queue: usize,
    /// The same, in bytes.
    send_queue_bytes: usize,
    /// The host's memory budget, which queued bytes count against.
    budget: Arc<MemoryBudget>,
}

/// What the connection task needs of a socket just accepted.
/// Until a connection task takes its channels (`connect`), dropping it removes the socket
/// from the registry: an upgrade that never completes (its client left, its event failed,
/// an answer other than 101) leaves nothing behind.
pub struct Accepted {
    pub id: u64,
    channels: Option<Connected>,
    registry: Weak<Sockets>,
}

/// A socket's ends for its connection task.
pub struct Connected {
    pub id: u64,
    /// The messages for the client.
    pub out: mpsc::Receiver<Outgoing>,
    /// Bytes queued in `out`: each message's `len` is `written` once it leaves.
    pub queued: Arc<QueuedBytes>,
    /// Fires when the client is too slow.
    pub kill: oneshot::Receiver<()>,
}

impl Accepted {
    /// Hands the socket to its connection task, which removes it when the connection ends.
    pub fn connect(mut self) -> Connected {
        self.channels.take().expect("connected once")
    }
}

impl Drop for Accepted {
    fn drop(&mut self) {
        if self.channels.is_some()
            && let Some(registry) = self.registry.upgrade()
        {
            registry.remove(self.id);
        }
    }
}

impl Sockets {
    pub fn new(send_queue: usize, send_queue_bytes: usize, budget: Arc<MemoryBudget>) -> Self {
        Sockets {
            inner: Mutex::default(),
            next_id: AtomicU64::new(0),
            send_queue: send_queue.max(1),
            send_queue_bytes: send_queue_bytes.max(1),
            budget,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Registers a socket of `object`; the connection task takes the returned ends.
    pub fn register(self: &Arc<Self>, object: ObjectKey, tags: Vec<String>) -> Accepted {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed) + 1;
        let (out_tx, out) = mpsc::channel(self.send_queue);
        let (kill_tx, kill) = oneshot::channel();
        let queued = Arc::new(QueuedBytes::new(self.budget.clone()));
        let mut inner = self.lock();
        inner.sockets.insert(
            id,
            Entry {
                object,
                tags,
                attachment: None,
                out: out_tx,
                queued: queued.clone(),
                kill: Some(kill_tx),
                auto_response_at: None,
                closed: false,
            },
        );
        inner.by_object.insert(object, id);
        Accepted {
            id,
            channels: Some(Connected {
                id,
                out,
                queued,
                kill,
            }),
            registry: Arc::downgrade(self),
        }
    }

    /// Forgets a socket (it closed, or its upgrade never happened).
    pub fn remove(&self, id: u64) {
        let mut inner = self.lock();
        if let Some(entry) = inner.sockets.remove(&id) {
            inner.by_object.remove(&entry.object, id);
        }
    }

    /// Closes every open socket of the objects `moved` picks with `CLOSE_MOVED`; answers
    /// how many.
    pub fn close_moved(&self, moved: impl Fn(&ObjectKey) -> bool) -> usize {
        let ids = self.lock().by_object.picked(moved);
        for id in &ids {
            self.deliver(
                *id,
                Outgoing::Close(
                    CLOSE_MOVED,
                    "the object moved to another node; reconnect".into(),
                ),
            );
        }
        ids.len()
    }

    /// Marks a socket closed: it is no longer listed and takes no more messages, but its
    /// tags and attachment stay readable until `remove`.
    pub fn mark_closed(&self, id: u64) {
        if let Some(e) = self.lock().sockets.get_mut(&id) {
            e.closed = true;
        }
    }

    /// True when `id` is a socket of `object`, open or closing (its tags and attachment
    /// are still readable).
    pub fn owns(&self, object: &ObjectKey, id: u64) -> bool {
        self.lock()
            .sockets
            .get(&id)
            .is_some_and(|e| e.object == *object)
    }

    /// True when `id` is an open socket of `object` (one that takes messages).
    pub fn owns_open(&self, object: &ObjectKey, id: u64) -> bool {
        self.lock()
            .sockets
            .get(&id)
            .is_some_and(|e| e.object == *object && !e.closed)
    }

    /// Queues a message for the client without waiting. A full queue means the client is
    /// not reading: the socket is dropped and the object told (close code 1013); so does
    /// a host whose memory budget cannot hold the message.
    pub fn deliver(&self, id: u64, message: Outgoing) {
        let mut inner = self.lock();
        let Some(entry) = inner.sockets.get_mut(&id).filter(|e| !e.closed) else {
            return;
        };
        let closing = matches!(message, Outgoing::Close(..));
        let len = message.queued_bytes();
        let queued = entry.queued.add(len, self.send_queue_bytes)
            && (entry.out.try_send(message).is_ok() || {
                entry.queued.written(len);
                false
            });
        if !queued && let Some(kill) = entry.kill.take() {
            tracing::warn!(
                socket = id,
                "send queue full (or the host's memory budget, max_memory, exhausted): \
                 closing a client that does not read"
            );
            let _ = kill.send(());
        }
        if closing {
            // Removed once the object has handled what the client sent before the close
            // (the connection task queues a `Forget` behind those messages).
            entry.closed = true;
        }
    }

    pub fn list(&self, object: &ObjectKey, tag: Option<&str>) -> Vec<u64> {
        let inner = self.lock();
        inner
            .by_object
            .of(object)
            .filter(|id| {
                inner
                    .sockets
                    .get(id)
                    .is_some_and(|e| !e.closed && tag.is_none_or(|t| e.tags.iter().any(|x| x == t)))
            })
            .collect()
    }

    pub fn tags(&self, id: u64) -> Vec<String> {
        self.lock()
            .sockets
            .get(&id)
            .map(|e| e.tags.clone())
            .unwrap_or_default()
    }

    pub fn set_attachment(&self, id: u64, value: Vec<u8>) -> bool {
        match self.lock().sockets.get_mut(&id) {
            Some(e) => {
                e.attachment = Some(value);
                true
            }
            None => false,
        }
    }

    pub fn attachment(&self, id: u64) -> Option<Vec<u8>> {
        self.lock()
            .sockets
            .get(&id)
            .and_then(|e| e.attachment.clone())
    }

    pub fn set_auto_response(&self, object: ObjectKey, pair: Option<(String, String)>) {
        let mut inner = self.lock();
        match pair {
            Some(p) => inner.auto_response.insert(object, p),
            None => inner.auto_response.remove(&object),
        };
    }

    pub fn auto_response_at(&self, id: u64) -> Option<u64> {
        self.lock()
            .sockets
            .get(&id)
            .and_then(|e| e.auto_response_at)
    }

    /// Answers `text` with the object's auto-response, if it is the request; true if so.
    pub fn auto_respond(&self, id: u64, text: &str, now: u64) -> bool {
        let mut inner = self.lock();
        let Some(object) = inner.sockets.get(&id).map(|e| e.object) else {
            return false;
        };
        let Some((request, response)) = inner.auto_response.get(&object).cloned() else {
            return false;
        };
        if request != text {
            return false;
        }
        if let Some(e) = inner.sockets.get_mut(&id) {
            e.auto_response_at = Some(now);
            let len = response.len();
            if e.queued.add(len, self.send_queue_bytes)
                && e.out.try_send(Outgoing::text(response)).is_err()
            {
                e.queued.written(len);
            }
        }
        true
    }

    pub fn count(&self) -> usize {
        self.lock().sockets.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::id::IdKey;

    /// Guards against sockets left in the registry by upgrades that never completed (the
    /// client left while the answer waited for durability, say).
    #[test]
    fn an_accepted_socket_never_connected_leaves_the_registry_when_dropped() {
        let sockets = Arc::new(Sockets::new(4, 1 << 20, MemoryBudget::new(1 << 30)));
        let object = ObjectKey {
            namespace: 1,
            id: IdKey::new([1; 32]).id_from_name("room"),
        };
        let accepted = sockets.register(object, vec!["t".into()]);
        assert_eq!(sockets.list(&object, None), vec![accepted.id]);
        drop(accepted);
        assert_eq!(sockets.count(), 0);
        let accepted = sockets.register(object, Vec::new());
        let Connected { id, .. } = accepted.connect();
        assert_eq!(
            sockets.list(&object, None),
            vec![id],
            "a connected socket stays"
        );
    }

    /// Queued bytes count against the host's memory budget: a message that would pass it
    /// is not queued and its socket is closed as too slow; bytes written, and bytes still
    /// queued when the socket is gone, are given back.
    #[test]
    fn queued_bytes_hold_the_memory_budget_until_written_or_gone() {
        let budget = MemoryBudget::new(100);
        let sockets = Arc::new(Sockets::new(16, 1 << 20, budget.clone()));
        let object = ObjectKey {
            namespace: 1,
            id: IdKey::new([1; 32]).id_from_name("room"),
        };
        let mut a = sockets.register(object, Vec::new()).connect();
        let b = sockets.register(object, Vec::new()).connect();
        let msg = |n: usize| Outgoing::Binary(bytes::Bytes::from(vec![0u8; n]));
        sockets.deliver(a.id, msg(30));
        sockets.deliver(b.id, msg(40));
        assert_eq!(budget.used(), 70);
        // 40 more would pass the budget: not queued, and `b` is told to close.
        let mut b = b;
        sockets.deliver(b.id, msg(40));
        assert_eq!(budget.used(), 70);
        assert!(
            b.kill.try_recv().is_ok(),
            "the socket is closed as too slow"
        );
        assert!(a.kill.try_recv().is_err());
        // `a`'s message is written: its bytes go back.
        let written = a.out.try_recv().unwrap();
        a.queued.written(written.queued_bytes());
        assert_eq!(budget.used(), 40);
        // `b` goes with its message still queued: given back once nothing holds its queue.
        sockets.remove(b.id);
        drop(b);
        assert_eq!(budget.used(), 0);
    }
}
