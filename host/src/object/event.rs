//! The one way an event runs on the instance (start, call the handler, flush the guest's
//! logs, a trap discards the instance), and how each kind of event ends: a fetch answers
//! (now or deferred), an alarm clears itself or is retried, a socket event just commits.

use super::*;
use crate::services::scheduler::Firing;
use crate::services::sockets::{CLOSE_INTERNAL_ERROR, Outgoing};
use crate::wasm::failure::{describe_failure, failure_cause};

/// Which handler an event calls, with its arguments.
enum Handler {
    Fetch(wit::Request),
    Alarm(wit::AlarmInfo),
    Socket(SocketEvent),
}

/// What the handler returned.
enum Returned {
    Response(wit::Response),
    Alarm(Result<(), String>),
    Done,
}

impl Actor {
    /// Runs one event on the live instance: starts it (CPU budget, per-interface state),
    /// calls the handler and flushes the guest's logs. A trap drops the instance, and with
    /// it the event's uncommitted writes, sends and accepted sockets, and answers why; the
    /// next event builds a fresh instance from storage. Committing is the caller's.
    async fn run_event(
        &mut self,
        handler: Handler,
        fetch: Option<u64>,
        upgrade: bool,
        what: &str,
    ) -> Result<Returned, EventError> {
        self.begin_event(fetch, upgrade);
        let kind = match &handler {
            Handler::Fetch(_) => "fetch",
            Handler::Alarm(_) => "alarm",
            Handler::Socket(_) => "socket",
        };
        let started = std::time::Instant::now();
        let live = self
            .live
            .as_mut()
            .expect("an event runs on a live instance");
        let h = live.bindings.dohost_object_handler().durable_object();
        let (store, handle) = (&mut live.store, live.handle);
        let result = match handler {
            Handler::Fetch(request) => h
                .call_fetch(&mut *store, handle, &request)
                .await
                .map(Returned::Response),
            Handler::Alarm(info) => h
                .call_alarm(&mut *store, handle, info)
                .await
                .map(Returned::Alarm),
            Handler::Socket(SocketEvent::Message(ws, m)) => h
                .call_websocket_message(&mut *store, handle, ws, &m)
                .await
                .map(|()| Returned::Done),
            Handler::Socket(SocketEvent::Close(ws, code, reason, clean)) => h
                .call_websocket_close(&mut *store, handle, ws, code, &reason, clean)
                .await
                .map(|()| Returned::Done),
            Handler::Socket(SocketEvent::Error(ws, error)) => h
                .call_websocket_error(&mut *store, handle, ws, &error)
                .await
                .map(|()| Returned::Done),
            // Handled by the actor without the instance; nothing to call.
            Handler::Socket(SocketEvent::Forget(_)) => Ok(Returned::Done),
        };
        end_call(store);
        store.data().stdout.flush_partial();
        store.data().stderr.flush_partial();
        let m = &self.env.metrics;
        m.event_seconds(kind)
            .observe(started.elapsed().as_secs_f64());
        match result {
            Ok(returned) => Ok(returned),
            Err(err) => {
                let hit = store.data().limiter.hit;
                m.event_failures
                    .with_label_values(&[kind, failure_cause(&err, hit)])
                    .inc();
                let why = describe_failure(&err, hit);
                let site = trap_site(&self.class.binding, &err, &why);
                let verdict = self
                    .env
                    .trap_log
                    .failure(self.key, &site, std::time::Instant::now());
                if verdict.line {
                    let more = match verdict.left_out {
                        0 => String::new(),
                        n => format!(" ({n} earlier failures of this object not logged)"),
                    };
                    if verdict.backtrace {
                        // `{:#}`: the error chain with the guest's wasm backtrace, not the
                        // host's own stack (which says nothing about the guest).
                        tracing::warn!(object = %self.label, error = %format!("{err:#}"), "{what} failed: {why}; instance discarded{more}");
                    } else {
                        tracing::warn!(object = %self.label, "{what} failed: {why}; instance discarded (the error's backtrace was logged at this trap site's first failure){more}");
                    }
                }
                let overload = store.data().limiter.budget_hit;
                let unreachable = store.data().storage.store.hit_unreachable();
                self.drop_instance(&format!("{what} trapped"));
                // The host's memory ran short, or its database could not be reached, not
                // the object: its caller may retry (503).
                Err(if overload {
                    EventError::Unavailable(why)
                } else if unreachable {
                    EventError::Unavailable(super::instance::unreachable_failure(what))
                } else {
                    EventError::Failed(why)
                })
            }
        }
    }

    pub(super) async fn fetch(
        &mut self,
        request: wit::Request,
        upgrade: bool,
        mut reply: oneshot::Sender<Outcome>,
    ) {
        if reply.is_closed() {
            // Its client left while it waited in the mailbox: it never starts.
            self.env.metrics.cancelled_events.inc();
            return;
        }
        // Requests admitted together (the budget had room when each arrived) would each add
        // an answer past it: one that finds it used up by now is refused before it runs.
        let budget = &self.env.shared.memory;
        if budget.used() >= budget.limit() {
            let _ = reply.send(Outcome::failed(EventError::Unavailable(budget.exhausted())));
            return;
        }
        if let Err(e) = self.ensure_live().await {
            let _ = reply.send(Outcome::failed(e));
            return;
        }
        self.next_handle += 1;
        let handle = self.next_handle;
        // A queued request whose client went away (its receiver dropped) stops at once,
        // as an inline one does when its task is dropped: the guest's time is not spent
        // on an answer nobody reads. Inline, the receiver lives until the event ends.
        let ran = tokio::select! {
            biased;
            ran = self.run_event(Handler::Fetch(request), Some(handle), upgrade, "event") => ran,
            // Not while other requests wait on this instance's memory (deferred answers):
            // dropping it would fail them too.
            () = reply.closed(), if self.deferred.is_empty() => {
                // Dropping a guest call mid-way leaves its store unusable; its writes go
                // with it, as after a trap.
                self.drop_instance("its client went away mid-event");
                self.env.metrics.cancelled_events.inc();
                return;
            }
        };
        match ran {
            Ok(Returned::Response(response)) => self.answer(response, handle, reply),
            Ok(_) => unreachable!("a fetch returns a response"),
            Err(e) => {
                let _ = reply.send(Outcome::failed(e));
            }
        }
    }

    /// Ends a successful fetch: commits its writes, and answers the client now, or later if
    /// the fetch deferred its answer.
    fn answer(
        &mut self,
        mut response: wit::Response,
        handle: u64,
        reply: oneshot::Sender<Outcome>,
    ) {
        let deferring = self
            .live
            .as_ref()
            .is_some_and(|l| l.store.data().requests.deferred);
        // A 5xx after the database could not be read is answered 503, so the client
        // retries: the event's writes are dropped with the instance (as after a trap), or a
        // retry would apply the ones it made before the failed read twice.
        if !deferring && let Some(e) = self.outage(&response) {
            self.drop_instance("its storage could not be read (the database is unreachable)");
            let _ = reply.send(Outcome::failed(e));
            return;
        }
        let live = self.live.as_mut().expect("event ran on an instance");
        let data = live.store.data_mut();
        let deferred = data.requests.deferred;
        data.requests.current = None;
        let own = data
            .websockets
            .accepted
            .take()
            .map(|socket| Handoff::Socket {
                object: self.key,
                socket,
            })
            .or_else(|| data.streams.opened.take().map(Handoff::Stream));
        let forwarded = data.objects.take_handoff(&mut response);
        // The object's own socket or stream wins over one a callee handed it (the other is
        // dropped, which removes it; so is either when the answer is deferred).
        let accepted = own.or(forwarded);
        let own_writes = data.storage.store.event_wrote();
        let durable = self.commit_writes();
        if deferred {
            if accepted.as_ref().is_some_and(Handoff::is_stream) {
                tracing::warn!(object = %self.label, "a fetch that deferred its answer opened a stream: the stream is dropped (open it in the fetch that answers)");
            }
            drop(accepted);
            let deadline = Instant::now() + self.env.limits.deferred_timeout;
            self.deferred.insert(handle, (reply, deadline));
            // An object holding deferred requests is not evicted: it moves to a slot of
            // its own pool when one is free, so that it does not keep one of
            // max_live_objects from the objects that come and go.
            if let Some(live) = self.live.as_mut().filter(|l| !l.deferring)
                && let Some(slot) = self.env.slots.deferring_permit()
            {
                live.permit = slot;
                live.deferring = true;
            }
        } else {
            let _ = reply.send(Outcome {
                result: Ok(response),
                durable: durable.clone(),
                own_writes,
                accepted,
            });
        }
        // After the reply is registered: the event may have answered itself.
        self.release_outputs(&durable);
    }

    /// The caller's answer instead of `response` when it is 5xx and a storage read of the
    /// event just run found the database unreachable: the outage most likely failed it (an
    /// SDK answers an uncaught storage error 500), and the client may retry, so it gets
    /// 503 with `Retry-After` (a calling object: the `unavailable` call error). The guest's
    /// own answer goes to the log. A 2xx or 4xx answer (the guest handled the error) stands.
    fn outage(&self, response: &wit::Response) -> Option<EventError> {
        let live = self.live.as_ref()?;
        if !(500..=599).contains(&response.status)
            || !live.store.data().storage.store.hit_unreachable()
        {
            return None;
        }
        const SHOWN: usize = 1024;
        let body = String::from_utf8_lossy(&response.body[..response.body.len().min(SHOWN)]);
        let cut = if response.body.len() > SHOWN {
            " (cut)"
        } else {
            ""
        };
        tracing::warn!(object = %self.label, status = response.status, "the object answered {} after its storage could not be read (the database is unreachable); its client is answered 503: {body:?}{cut}", response.status);
        Some(EventError::Unavailable(
            super::instance::unreachable_failure("the event"),
        ))
    }

    pub(super) async fn alarm(&mut self, retry: u32, firing: Firing) {
        if let Err(e) = self.ensure_live().await {
            let why = match e {
                EventError::Failed(m) | EventError::Unavailable(m) => m,
            };
            self.alarm_failed(retry, &why);
            return;
        }
        let now = self.env.clock.now_ms();
        let live = self.live.as_mut().expect("instance just ensured");
        match live.store.data().storage.store.get_alarm().await {
            Ok(Some(at)) if at <= now => {}
            // Replaced by a later one, or deleted, since it was scheduled: nothing to do.
            Ok(_) => return,
            Err(e) => {
                self.alarm_failed(retry, &format!("{e:?}"));
                return;
            }
        }
        let info = wit::AlarmInfo {
            retry_count: retry,
            is_retry: retry > 0,
        };
        match self
            .run_event(Handler::Alarm(info), None, false, "alarm handler")
            .await
        {
            Ok(Returned::Alarm(Ok(()))) => {
                let live = self.live.as_mut().expect("the handler returned");
                let store = &mut live.store.data_mut().storage.store;
                if !store.event_changed_alarm() {
                    // Done: clear it, atomically with the handler's writes.
                    let _ = store.delete_alarm();
                }
                let durable = self.commit_writes();
                self.release_outputs(&durable);
                self.env.metrics.alarm_runs.inc();
                if let Some(durable) = durable {
                    tokio::spawn(async move {
                        let _ = durable.await;
                        drop(firing);
                    });
                }
            }
            Ok(Returned::Alarm(Err(message))) => {
                // A failed alarm's writes are dropped so that its retry starts from the
                // same state.
                let live = self.live.as_mut().expect("the handler returned");
                let data = live.store.data_mut();
                data.storage.store.discard_event();
                data.websockets.discard();
                data.streams.discard();
                // Answers given by a failed handler are withdrawn with its writes.
                for (handle, _) in std::mem::take(&mut data.requests.responses) {
                    data.requests.pending.insert(handle);
                }
                self.alarm_failed(retry, &message);
            }
            Ok(_) => unreachable!("an alarm handler returns a result"),
            Err(EventError::Failed(why) | EventError::Unavailable(why)) => {
                self.alarm_failed(retry, &why)
            }
        }
    }

    pub(super) fn alarm_failed(&mut self, retry: u32, why: &str) {
        self.env.metrics.alarm_failures.inc();
        // Without the object's storage state (it could not even be read) the retry is still
        // scheduled; it just cannot be stored (nor the alarm deleted) this time.
        let stored = self.inflight.is_some();
        if retry < MAX_ALARM_RETRIES {
            let delay = ALARM_RETRY_BASE_MS << retry;
            tracing::warn!(object = %self.label, retry = retry + 1, delay_ms = delay, "alarm failed: {why}; retrying");
            let at = self.env.clock.now_ms() + delay;
            self.env.scheduler.retry(self.key, at, retry + 1);
            // Stored too, so that a restart resumes the same attempt instead of starting
            // the count again.
            if stored {
                self.submit(crate::backend::WriteSet {
                    alarm_retry: Some(crate::backend::AlarmRetry {
                        count: retry + 1,
                        at,
                    }),
                    ..Default::default()
                });
            }
        } else {
            self.env.metrics.alarm_give_ups.inc();
            tracing::error!(object = %self.label, "alarm failed {} times, giving up: {why}", retry + 1);
            // Delete it durably, so that a restart does not bring it back.
            if stored {
                self.submit(crate::backend::WriteSet {
                    alarm: Some(None),
                    ..Default::default()
                });
            }
        }
    }

    /// Runs a WebSocket handler: like any event, its writes commit together and its sends
    /// leave once they are durable; a trap discards the instance. A socket's registry entry
    /// goes once its close (or the object's own close) has been handled.
    pub(super) async fn socket_event(&mut self, event: SocketEvent) {
        let (closed, open) = match &event {
            SocketEvent::Forget(ws) => {
                self.env.sockets.remove(*ws);
                return;
            }
            SocketEvent::Close(ws, ..) => (Some(*ws), None),
            SocketEvent::Message(ws, _) | SocketEvent::Error(ws, _) => (None, Some(*ws)),
        };
        match self.ensure_live().await {
            Ok(()) => {
                let ran = self
                    .run_event(Handler::Socket(event), None, false, "WebSocket handler")
                    .await;
                match ran {
                    Ok(_) => {
                        let durable = self.commit_writes();
                        self.release_outputs(&durable);
                    }
                    // The client would otherwise never learn that its message was lost.
                    Err(_) => {
                        if let Some(ws) = open {
                            self.env.sockets.deliver(
                                ws,
                                Outgoing::Close(
                                    CLOSE_INTERNAL_ERROR,
                                    "the object failed handling a message (see the host log)"
                                        .into(),
                                ),
                            );
                        }
                    }
                }
            }
            Err(e) => {
                tracing::warn!(object = %self.label, error = ?e, "WebSocket event lost: no instance");
            }
        }
        if let Some(ws) = closed {
            self.env.sockets.remove(ws);
        }
    }
}

/// Where a failure happened, to log its backtrace once: the class, and the innermost wasm
/// frame's function when there is a backtrace (else the failure's sentence).
fn trap_site(binding: &str, err: &wasmtime::Error, why: &str) -> String {
    let frame = err
        .downcast_ref::<wasmtime::WasmBacktrace>()
        .and_then(|bt| bt.frames().first())
        .map(|f| format!("{}#{}", f.module().name().unwrap_or("?"), f.func_index()));
    format!("{binding}: {}", frame.as_deref().unwrap_or(why))
}
