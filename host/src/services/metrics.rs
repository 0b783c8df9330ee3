//! The host's Prometheus metrics: one registry, each metric defined once here, rendered in
//! Prometheus' text format for the admin listener's `/metrics`.

use prometheus::{
    Encoder, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge,
    IntGaugeVec, Opts, Registry, TextEncoder,
};

/// Buckets for request, event and commit durations, in seconds: 100 µs to 10 s.
const SECONDS: &[f64] = &[
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
    5.0, 10.0,
];

/// The kinds of event, as the metrics label them.
pub const EVENT_KINDS: [&str; 3] = ["fetch", "alarm", "socket"];

/// Buckets for how many writes one commit batch carries.
const BATCH: &[f64] = &[1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0];

pub struct Metrics {
    registry: Registry,
    /// Public requests answered, by binding (`worker` with a worker, `-` for no binding)
    /// and status.
    pub requests: IntCounterVec,
    pub request_seconds: HistogramVec,
    /// Events objects ran, by kind (`fetch`, `alarm`, `socket`), from start to end; each
    /// kind's series looked up once here, not at every event.
    event_seconds: [Histogram; 3],
    /// Instances built (a first event, or one after eviction or a failure).
    pub instance_builds: IntCounter,
    /// Events that failed, by kind and cause (`cpu`, `memory`, `exit`, `stack`, `panic`,
    /// `trap`, `error`).
    pub event_failures: IntCounterVec,
    /// Instances given up, by reason (`idle`, `pressure`).
    pub evictions: IntCounterVec,
    pub alarm_runs: IntCounter,
    /// SQL statements objects ran, and the database pages their events wrote.
    pub sql_statements: IntCounter,
    pub sql_pages_written: IntCounter,
    /// Failed alarm attempts (each retry counts).
    pub alarm_failures: IntCounter,
    /// Alarms given up after their last retry.
    pub alarm_give_ups: IntCounter,
    /// Requests whose event ran on the request's own task rather than through the mailbox.
    pub inline_events: IntCounter,
    /// Writes per commit batch, and how long each batch took to be durable.
    pub commit_batch_writes: Histogram,
    pub commit_seconds: Histogram,
    /// WebSocket messages, by direction (`in` from clients, `out` to them).
    pub websocket_messages: IntCounterVec,
    /// Set when scraped: instances alive, WebSockets open, objects waiting on a call,
    /// events queued in objects' mailboxes.
    pub live_instances: IntGauge,
    pub cancelled_events: IntCounter,
    pub memory_budget_used: IntGauge,
    pub long_events_running: IntGauge,
    pub long_events_waiting: IntGauge,
    pub websockets_open: IntGauge,
    pub streams_open: IntGauge,
    pub calls_waiting: IntGauge,
    pub mailbox_events: IntGauge,
    /// Bytes stored (keys and values) per binding, read from storage when scraped.
    pub storage_bytes: IntGaugeVec,
}

impl Metrics {
    pub fn new() -> Metrics {
        let registry = Registry::new_custom(Some("dohost".into()), None).expect("a valid prefix");
        let counter = |name: &str, help: &str| {
            let c = IntCounter::new(name, help).expect("a valid metric");
            registry
                .register(Box::new(c.clone()))
                .expect("registered once");
            c
        };
        let counters = |name: &str, help: &str, labels: &[&str]| {
            let c = IntCounterVec::new(Opts::new(name, help), labels).expect("a valid metric");
            registry
                .register(Box::new(c.clone()))
                .expect("registered once");
            c
        };
        let histograms = |name: &str, help: &str, labels: &[&str]| {
            let opts = HistogramOpts::new(name, help).buckets(SECONDS.to_vec());
            let h = HistogramVec::new(opts, labels).expect("a valid metric");
            registry
                .register(Box::new(h.clone()))
                .expect("registered once");
            h
        };
        let histogram = |name: &str, help: &str, buckets: &[f64]| {
            let opts = HistogramOpts::new(name, help).buckets(buckets.to_vec());
            let h = Histogram::with_opts(opts).expect("a valid metric");
            registry
                .register(Box::new(h.clone()))
                .expect("registered once");
            h
        };
        let gauge = |name: &str, help: &str| {
            let g = IntGauge::new(name, help).expect("a valid metric");
            registry
                .register(Box::new(g.clone()))
                .expect("registered once");
            g
        };
        Metrics {
            requests: counters(
                "requests_total",
                "Public requests answered, by binding and status.",
                &["binding", "status"],
            ),
            request_seconds: histograms(
                "request_duration_seconds",
                "Public requests, from arrival to answer, by binding.",
                &["binding"],
            ),
            event_seconds: {
                let by_kind = histograms(
                    "event_duration_seconds",
                    "Events objects ran, by kind (fetch, alarm, socket).",
                    &["kind"],
                );
                EVENT_KINDS.map(|k| by_kind.with_label_values(&[k]))
            },
            instance_builds: counter("instance_builds_total", "Object instances built."),
            event_failures: counters(
                "event_failures_total",
                "Events that failed, by kind and cause (cpu, memory, exit, stack, panic, trap, error).",
                &["kind", "cause"],
            ),
            evictions: counters(
                "evictions_total",
                "Instances given up, by reason (idle, pressure).",
                &["reason"],
            ),
            alarm_runs: counter("alarm_runs_total", "Alarm handlers that completed."),
            sql_statements: counter("sql_statements_total", "SQL statements objects ran."),
            sql_pages_written: counter(
                "sql_pages_written_total",
                "SQL database pages (4 KiB each) written by objects' events.",
            ),
            alarm_failures: counter(
                "alarm_failures_total",
                "Alarm attempts that failed (each retry counts).",
            ),
            alarm_give_ups: counter(
                "alarm_give_ups_total",
                "Alarms given up after their last retry.",
            ),
            inline_events: counter(
                "inline_events_total",
                "Requests whose event ran on the request's own task.",
            ),
            commit_batch_writes: histogram(
                "commit_batch_writes",
                "Writes (events' write sets) per commit batch.",
                BATCH,
            ),
            commit_seconds: histogram(
                "commit_duration_seconds",
                "Commit batches, from start until durable.",
                SECONDS,
            ),
            websocket_messages: counters(
                "websocket_messages_total",
                "WebSocket messages, by direction (in, out).",
                &["direction"],
            ),
            live_instances: gauge("live_instances", "Object instances alive."),
            cancelled_events: counter(
                "cancelled_events_total",
                "Queued requests dropped, or stopped mid-event, because their client went away.",
            ),
            memory_budget_used: gauge(
                "memory_budget_used_bytes",
                "Bytes of max_memory held by guests' memories and bodies being read.",
            ),
            long_events_running: gauge(
                "long_events_running",
                "Guest events past their first time slices holding a turn (max_long_events).",
            ),
            long_events_waiting: gauge(
                "long_events_waiting",
                "Guest events past their first time slices waiting for a turn.",
            ),
            websockets_open: gauge("websockets_open", "WebSockets open."),
            streams_open: gauge("streams_open", "Streamed responses open."),
            calls_waiting: gauge("calls_waiting", "Objects waiting on a call to another."),
            storage_bytes: {
                let g = IntGaugeVec::new(
                    Opts::new(
                        "storage_bytes",
                        "Bytes stored (keys and values), by binding.",
                    ),
                    &["binding"],
                )
                .expect("a valid metric");
                registry
                    .register(Box::new(g.clone()))
                    .expect("registered once");
                g
            },
            mailbox_events: gauge(
                "mailbox_events",
                "Events queued in objects' mailboxes, all objects together.",
            ),
            registry,
        }
    }

    /// The duration histogram of events of `kind` (one of `EVENT_KINDS`).
    pub fn event_seconds(&self, kind: &str) -> &Histogram {
        let i = EVENT_KINDS.iter().position(|k| *k == kind).unwrap_or(0);
        &self.event_seconds[i]
    }

    /// Every metric, in Prometheus' text format.
    pub fn render(&self) -> String {
        let mut out = Vec::new();
        TextEncoder::new()
            .encode(&self.registry.gather(), &mut out)
            .expect("text encoding of gathered metrics");
        String::from_utf8(out).expect("the text format is UTF-8")
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}
