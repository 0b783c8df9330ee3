//! The host's streamed responses: a registry of every open stream (its object, tags, bounded
//! chunk queue); the edge writes each one to its client. Streams belong to the host, not to
//! an instance, so they stay open while their object is evicted (hibernation).

use super::by_object::ByObject;
use super::memory::{MemoryBudget, QueuedBytes};
use super::sockets::{MAX_TAG_BYTES, MAX_TAGS};
use crate::id::ObjectKey;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

/// What an object writes to one of its streams.
#[derive(Debug, Clone)]
pub enum Chunk {
    Data(bytes::Bytes),
    /// The object closed the stream: the body ends after the chunks before.
    End,
}

impl Chunk {
    fn len(&self) -> usize {
        match self {
            Chunk::Data(b) => b.len(),
            Chunk::End => 0,
        }
    }
}

/// The limits on streams (`Limits`' `stream_*` and `max_streams*`).
#[derive(Debug, Clone, Copy)]
pub struct StreamLimits {
    /// Streams open on this host at once.
    pub per_host: usize,
    /// Streams one object may hold open at once.
    pub per_object: usize,
    /// Chunks queued for one client before it counts as too slow and is cut.
    pub queue: usize,
    /// The same, in bytes.
    pub queue_bytes: usize,
}

struct Entry {
    object: ObjectKey,
    tags: Vec<String>,
    out: mpsc::Sender<Chunk>,
    queued: Arc<QueuedBytes>,
    kill: Option<oneshot::Sender<()>>,
    /// Cancelled with `kill`: closes the client's connection at once, since a client that
    /// does not read would never see the body fail (hyper polls it only as the client reads).
    on_cut: Option<CancellationToken>,
    /// Closed by the object (its end is queued), or cut: no longer listed or written to;
    /// the entry goes when the edge drops the stream's ends.
    closed: bool,
}

impl Entry {
    /// Closes the stream and tells the edge to fail its body.
    fn cut(&mut self) {
        self.closed = true;
        if let Some(kill) = self.kill.take() {
            let _ = kill.send(());
        }
        if let Some(connection) = self.on_cut.take() {
            connection.cancel();
        }
    }
}

#[derive(Default)]
struct Inner {
    streams: HashMap<u64, Entry>,
    by_object: ByObject,
}

/// Every open stream.
pub struct Streams {
    // A std Mutex: map updates and non-blocking sends only, never across an await.
    inner: Mutex<Inner>,
    next_id: AtomicU64,
    limits: StreamLimits,
    /// The host's memory budget, which queued bytes count against.
    budget: Arc<MemoryBudget>,
}

/// What one stream's queue holds at most (see `Streams::queue_limits`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QueueLimits {
    pub chunks: usize,
    pub bytes: usize,
}

/// A stream an object opened for the response of the request it handles, on its way to the
/// edge. Dropped before the edge takes its ends (the answer failed or never left), it
/// leaves the registry.
pub struct Opened {
    pub id: u64,
    ends: StreamEnds,
}

impl Opened {
    /// Hands the stream to the edge, which writes it to its client until either side ends
    /// it; `on_cut`, if given, is cancelled when the stream is cut (its connection's abort).
    pub fn connect(self, on_cut: Option<CancellationToken>) -> StreamEnds {
        if let (Some(on_cut), Some(registry)) = (on_cut, self.ends.registry.upgrade()) {
            let mut inner = registry.lock();
            match inner.streams.get_mut(&self.id) {
                Some(entry) if entry.kill.is_some() => entry.on_cut = Some(on_cut),
                // Cut before its client got it: close the connection now.
                _ => on_cut.cancel(),
            }
        }
        self.ends
    }
}

/// A stream's ends for the edge. Dropping them (the body ended, or its client went away)
/// removes the stream from the registry: the object sees it closed.
pub struct StreamEnds {
    pub id: u64,
    /// The chunks for the client.
    pub out: mpsc::Receiver<Chunk>,
    /// Bytes queued in `out`: each chunk's length is `written` once it leaves.
    pub queued: Arc<QueuedBytes>,
    /// Fires when the client is too slow (or the host's memory budget is used up).
    pub kill: oneshot::Receiver<()>,
    registry: Weak<Streams>,
}

impl Drop for StreamEnds {
    fn drop(&mut self) {
        if let Some(registry) = self.registry.upgrade() {
            registry.remove(self.id);
        }
    }
}

impl Streams {
    pub fn new(limits: StreamLimits, budget: Arc<MemoryBudget>) -> Self {
        Streams {
            inner: Mutex::default(),
            next_id: AtomicU64::new(0),
            limits: StreamLimits {
                queue: limits.queue.max(1),
                queue_bytes: limits.queue_bytes.max(1),
                ..limits
            },
            budget,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Registers a stream of `object`, within the tag limits and the limits on open streams.
    pub fn open(self: &Arc<Self>, object: ObjectKey, tags: Vec<String>) -> Result<Opened, String> {
        if tags.len() > MAX_TAGS || tags.iter().any(|t| t.len() > MAX_TAG_BYTES) {
            return Err(format!(
                "at most {MAX_TAGS} tags of at most {MAX_TAG_BYTES} bytes each"
            ));
        }
        let mut inner = self.lock();
        if inner.streams.len() >= self.limits.per_host {
            return Err(format!(
                "this host already holds {} open streams (max_streams); try again later",
                inner.streams.len()
            ));
        }
        let mine = inner.by_object.count(&object);
        if mine >= self.limits.per_object {
            return Err(format!(
                "this object already holds {mine} open streams (max_streams_per_object); \
                 close some first"
            ));
        }
        let id = self.next_id.fetch_add(1, Ordering::Relaxed) + 1;
        let (out_tx, out) = mpsc::channel(self.limits.queue);
        let (kill_tx, kill) = oneshot::channel();
        let queued = Arc::new(QueuedBytes::new(self.budget.clone()));
        inner.streams.insert(
            id,
            Entry {
                object,
                tags,
                out: out_tx,
                queued: queued.clone(),
                kill: Some(kill_tx),
                on_cut: None,
                closed: false,
            },
        );
        inner.by_object.insert(object, id);
        Ok(Opened {
            id,
            ends: StreamEnds {
                id,
                out,
                queued,
                kill,
                registry: Arc::downgrade(self),
            },
        })
    }

    /// Forgets a stream (its body ended, its client left, or its answer never left).
    fn remove(&self, id: u64) {
        let mut inner = self.lock();
        if let Some(entry) = inner.streams.remove(&id) {
            inner.by_object.remove(&entry.object, id);
        }
    }

    /// Queues a chunk for the client without waiting. A full queue means the client is not
    /// reading: its stream is cut, as is one whose chunk the host's memory budget cannot
    /// hold.
    pub fn write(&self, id: u64, chunk: Chunk) {
        let mut inner = self.lock();
        let Some(entry) = inner.streams.get_mut(&id).filter(|e| !e.closed) else {
            return;
        };
        let ending = matches!(chunk, Chunk::End);
        let len = chunk.len();
        let queued = entry.queued.add(len, self.limits.queue_bytes)
            && (entry.out.try_send(chunk).is_ok() || {
                entry.queued.written(len);
                false
            });
        if !queued {
            tracing::warn!(
                stream = id,
                "stream queue full (stream_queue, stream_queue_bytes, or the host's memory \
                 budget, max_memory): cutting a client that does not read"
            );
            entry.cut();
        }
        if ending {
            entry.closed = true;
        }
    }

    /// Cuts a stream short (its client sees the body fail, not end): a chunk it should have
    /// had was lost.
    pub fn cut(&self, id: u64) {
        let mut inner = self.lock();
        if let Some(entry) = inner.streams.get_mut(&id) {
            entry.cut();
        }
    }

    /// Ends every open stream of the objects `which` picks (their object now lives on
    /// another node, or the host stops): the clients reconnect, and reach its new owner.
    /// Answers how many.
    pub fn end_where(&self, which: impl Fn(&ObjectKey) -> bool) -> usize {
        let ids = self.lock().by_object.picked(which);
        for id in &ids {
            self.write(*id, Chunk::End);
        }
        ids.len()
    }

    /// What one stream's queue holds at most, in chunks and bytes: an event writing more
    /// than this to one stream is refused the write (the object learns of it), rather than
    /// its stream being cut however fast its client reads.
    pub fn queue_limits(&self) -> QueueLimits {
        QueueLimits {
            chunks: self.limits.queue,
            bytes: self.limits.queue_bytes,
        }
    }

    /// True when `id` is an open stream of `object` whose client still reads.
    pub fn owns_open(&self, object: &ObjectKey, id: u64) -> bool {
        self.lock()
            .streams
            .get(&id)
            .is_some_and(|e| e.object == *object && !e.closed)
    }

    /// The object's open streams, or those carrying `tag`.
    pub fn list(&self, object: &ObjectKey, tag: Option<&str>) -> Vec<u64> {
        let inner = self.lock();
        inner
            .by_object
            .of(object)
            .filter(|id| {
                inner
                    .streams
                    .get(id)
                    .is_some_and(|e| !e.closed && tag.is_none_or(|t| e.tags.iter().any(|x| x == t)))
            })
            .collect()
    }

    /// The tags of a stream of `object` (none for another object's, or a gone one).
    pub fn tags(&self, object: &ObjectKey, id: u64) -> Vec<String> {
        self.lock()
            .streams
            .get(&id)
            .filter(|e| e.object == *object)
            .map(|e| e.tags.clone())
            .unwrap_or_default()
    }

    pub fn count(&self) -> usize {
        self.lock().streams.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::id::IdKey;

    fn object(name: &str) -> ObjectKey {
        ObjectKey {
            namespace: 1,
            id: IdKey::new([1; 32]).id_from_name(name),
        }
    }

    fn limits() -> StreamLimits {
        StreamLimits {
            per_host: 3,
            per_object: 2,
            queue: 4,
            queue_bytes: 100,
        }
    }

    /// The limits on open streams hold at their edge, per object and per host, and a
    /// stream whose ends are dropped (its client left) frees its place.
    #[test]
    fn open_streams_are_bounded_per_object_and_per_host() {
        let streams = Arc::new(Streams::new(limits(), MemoryBudget::new(1 << 20)));
        let a = streams.open(object("a"), vec![]).unwrap();
        let _a2 = streams.open(object("a"), vec![]).unwrap();
        let refused = streams.open(object("a"), vec![]).err().unwrap();
        assert!(refused.contains("max_streams_per_object"), "{refused}");
        let _b = streams.open(object("b"), vec![]).unwrap();
        let refused = streams.open(object("c"), vec![]).err().unwrap();
        assert!(refused.contains("max_streams"), "{refused}");
        drop(a);
        assert!(streams.open(object("c"), vec![]).is_ok());
    }

    /// A client that does not read is cut once its queue passes the byte limit; what it
    /// had queued goes back to the memory budget when its ends go.
    #[test]
    fn a_client_that_does_not_read_is_cut_at_the_byte_limit() {
        let budget = MemoryBudget::new(1 << 20);
        let streams = Arc::new(Streams::new(limits(), budget.clone()));
        let room = object("room");
        let mut ends = streams.open(room, vec!["t".into()]).unwrap().connect(None);
        let chunk = |n: usize| Chunk::Data(bytes::Bytes::from(vec![b'x'; n]));
        streams.write(ends.id, chunk(60));
        streams.write(ends.id, chunk(40));
        assert_eq!(budget.used(), 100);
        assert!(ends.kill.try_recv().is_err(), "at the limit, not past it");
        assert!(streams.owns_open(&room, ends.id));
        streams.write(ends.id, chunk(1));
        assert!(ends.kill.try_recv().is_ok(), "one byte more cuts it");
        assert!(!streams.owns_open(&room, ends.id));
        assert!(streams.list(&room, Some("t")).is_empty());
        drop(ends);
        assert_eq!(budget.used(), 0);
        assert_eq!(streams.count(), 0);
    }

    /// The chunk-count limit holds at its edge too: `queue` small chunks fit, one more cuts.
    #[test]
    fn a_client_that_does_not_read_is_cut_at_the_chunk_limit() {
        let streams = Arc::new(Streams::new(limits(), MemoryBudget::new(1 << 20)));
        let room = object("room");
        let mut ends = streams.open(room, vec![]).unwrap().connect(None);
        for _ in 0..4 {
            streams.write(ends.id, Chunk::Data(bytes::Bytes::from_static(b"x")));
        }
        assert!(ends.kill.try_recv().is_err(), "four chunks fit");
        streams.write(ends.id, Chunk::Data(bytes::Bytes::from_static(b"x")));
        assert!(ends.kill.try_recv().is_ok(), "the fifth cuts");
    }

    /// An object sees only its own streams: another object's stream is not open to it,
    /// not listed and has no tags for it, so a guest cannot write to a stranger's client.
    #[test]
    fn an_object_sees_only_its_own_streams() {
        let streams = Arc::new(Streams::new(limits(), MemoryBudget::new(1 << 20)));
        let (mine, theirs) = (object("mine"), object("theirs"));
        let opened = streams.open(theirs, vec!["t".into()]).unwrap();
        assert!(streams.owns_open(&theirs, opened.id));
        assert!(!streams.owns_open(&mine, opened.id));
        assert!(streams.list(&mine, None).is_empty());
        assert!(streams.tags(&mine, opened.id).is_empty());
        assert_eq!(streams.tags(&theirs, opened.id), vec!["t".to_string()]);
    }
}
