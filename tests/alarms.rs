//! Alarms end to end with the alarm guest (the seed's AlarmObject) and a manual clock, so
//! no test sleeps through an interval: firing once, replacing, deleting, waking evicted
//! objects, firing after a restart, retries with growing delays, 10,000 alarms at once, and
//! an alarm set by a failed event never firing.

mod common;
use common::*;
use dohost::Limits;
use dohost::services::scheduler::{Clock, ManualClock};
use serde_json::Value;
use std::sync::Arc;
use std::time::Duration;

fn limits() -> Limits {
    Limits {
        min_alarm_interval: Duration::ZERO,
        ..Limits::default()
    }
}

async fn start(dir: &std::path::Path, clock: &Arc<ManualClock>, limits: Limits) -> TestHost {
    let clock: Arc<dyn Clock> = clock.clone();
    TestHost::start_clocked(config(&["alarm"], dir, limits), clock).await
}

async fn status(c: &reqwest::Client, host: &TestHost, name: &str) -> Value {
    let (s, body) = get(c, &host.url(&format!("/alarm/{name}/status"))).await;
    assert_eq!(s, 200, "{body}");
    serde_json::from_str(&body).unwrap()
}

/// Proves the scheduler has handled every alarm due by now: sets an alarm due now on a
/// fresh object and waits for it to run.
async fn barrier(c: &reqwest::Client, host: &TestHost, n: u32) {
    let name = format!("barrier-{n}");
    let (s, _) = post(c, &host.url(&format!("/alarm/{name}/set?delay_ms=0")), "").await;
    assert_eq!(s, 200);
    wait_until("the barrier alarm ran", || async {
        status(c, host, &name).await["runs"] == 1
    })
    .await;
}

async fn an_alarm_fires_once_and_is_cleared(backend: Backend) {
    let dir = backend.data_dir();
    let clock = ManualClock::starting_now();
    let host = start(dir.path(), &clock, limits()).await;
    let c = client();
    let t0 = clock.now_ms();
    assert_eq!(
        post(&c, &host.url("/alarm/a/set?delay_ms=1000"), "").await,
        (200, "Alarm set".into())
    );
    assert_eq!(status(&c, &host, "a").await["pending"], t0 + 1000);

    clock.advance(Duration::from_millis(999));
    barrier(&c, &host, 1).await;
    assert_eq!(status(&c, &host, "a").await["runs"], 0);

    clock.advance(Duration::from_millis(1));
    wait_until("the alarm ran", || async {
        status(&c, &host, "a").await["runs"] == 1
    })
    .await;
    let s = status(&c, &host, "a").await;
    assert_eq!(s["pending"], Value::Null);
    assert_eq!(s["history"][0]["retry_count"], 0);
    assert_eq!(s["history"][0]["at"], t0 + 1000);

    clock.advance(Duration::from_secs(3600));
    barrier(&c, &host, 2).await;
    assert_eq!(status(&c, &host, "a").await["runs"], 1);
    host.stop().await;
}

async fn replacing_and_deleting(backend: Backend) {
    let dir = backend.data_dir();
    let clock = ManualClock::starting_now();
    let host = start(dir.path(), &clock, limits()).await;
    let c = client();
    post(&c, &host.url("/alarm/r/set?delay_ms=1000"), "").await;
    post(&c, &host.url("/alarm/r/set?delay_ms=5000"), "").await;
    post(&c, &host.url("/alarm/d/set?delay_ms=1000"), "").await;
    assert_eq!(post(&c, &host.url("/alarm/d/delete"), "").await.0, 200);
    assert_eq!(status(&c, &host, "d").await["pending"], Value::Null);

    clock.advance(Duration::from_millis(2000));
    barrier(&c, &host, 1).await;
    assert_eq!(status(&c, &host, "r").await["runs"], 0);
    assert_eq!(status(&c, &host, "d").await["runs"], 0);

    clock.advance(Duration::from_millis(3000));
    wait_until("the replaced alarm ran", || async {
        status(&c, &host, "r").await["runs"] == 1
    })
    .await;
    barrier(&c, &host, 2).await;
    assert_eq!(status(&c, &host, "d").await["runs"], 0);
    host.stop().await;
}

async fn an_alarm_wakes_an_evicted_object_and_rearms(backend: Backend) {
    let dir = backend.data_dir();
    let clock = ManualClock::starting_now();
    let limits = Limits {
        idle_timeout: Duration::from_millis(50),
        ..limits()
    };
    let host = start(dir.path(), &clock, limits).await;
    let c = client();
    post(&c, &host.url("/alarm/sleepy/configure?rearm_ms=60000"), "").await;
    post(&c, &host.url("/alarm/sleepy/work?key=x"), "").await;
    post(&c, &host.url("/alarm/sleepy/set?delay_ms=1000"), "").await;
    let rt = host.runtime().clone();
    wait_until("the object was evicted", || async {
        rt.live_objects() == 0
    })
    .await;

    clock.advance(Duration::from_millis(1000));
    wait_until("the alarm ran", || async { rt.alarm_runs() == 1 }).await;
    let s = status(&c, &host, "sleepy").await;
    assert_eq!(s["runs"], 1);
    assert_eq!(s["tmp"], 0, "the cleanup work ran");
    // It re-armed itself a minute after it ran.
    let ran_at = s["history"][0]["at"].as_u64().unwrap();
    assert_eq!(s["pending"], ran_at + 60000);
    clock.advance(Duration::from_millis(60000));
    wait_until("the re-armed alarm ran", || async { rt.alarm_runs() == 2 }).await;
    host.stop().await;
}

async fn an_alarm_due_while_the_host_was_down_fires_after_restart(backend: Backend) {
    let dir = backend.data_dir();
    let clock = ManualClock::starting_now();
    let host = start(dir.path(), &clock, limits()).await;
    let c = client();
    post(&c, &host.url("/alarm/late/set?delay_ms=10000"), "").await;
    host.stop().await;

    clock.advance(Duration::from_secs(60));
    let host = start(dir.path(), &clock, limits()).await;
    let rt = host.runtime().clone();
    // No request: the scheduler alone wakes it.
    wait_until("the overdue alarm ran", || async { rt.alarm_runs() == 1 }).await;
    assert_eq!(status(&c, &host, "late").await["runs"], 1);
    host.stop().await;
}

async fn a_failing_handler_is_retried_with_growing_delays(backend: Backend) {
    let dir = backend.data_dir();
    let clock = ManualClock::starting_now();
    let host = start(dir.path(), &clock, limits()).await;
    let rt = host.runtime().clone();
    let c = client();
    post(&c, &host.url("/alarm/flaky/configure?fail=3"), "").await;
    post(&c, &host.url("/alarm/flaky/set?delay_ms=1000"), "").await;
    clock.advance(Duration::from_millis(1000));
    wait_until("the first attempt failed", || async {
        rt.alarm_failures() == 1
    })
    .await;
    // Retry n comes 2 s × 2^(n-1) after the failure before it.
    for (n, delay) in [(1u64, 2000u64), (2, 4000)] {
        clock.advance(Duration::from_millis(delay - 1));
        barrier(&c, &host, n as u32).await;
        assert_eq!(rt.alarm_failures(), n, "retry {n} came early");
        clock.advance(Duration::from_millis(1));
        wait_until("the retry failed", || async {
            rt.alarm_failures() == n + 1
        })
        .await;
    }
    clock.advance(Duration::from_millis(8000));
    wait_until("the third retry succeeded", || async {
        status(&c, &host, "flaky").await["runs"] == 1
    })
    .await;
    let s = status(&c, &host, "flaky").await;
    assert_eq!(s["history"][0]["retry_count"], 3);
    assert_eq!(s["history"][0]["is_retry"], true);
    assert_eq!(s["pending"], Value::Null);
    host.stop().await;
}

async fn a_handler_failing_every_time_is_given_up_after_six_retries(backend: Backend) {
    let dir = backend.data_dir();
    let clock = ManualClock::starting_now();
    let host = start(dir.path(), &clock, limits()).await;
    let rt = host.runtime().clone();
    let c = client();
    post(&c, &host.url("/alarm/doomed/configure?fail=100"), "").await;
    post(&c, &host.url("/alarm/doomed/set?delay_ms=0"), "").await;
    for n in 1..=7u64 {
        wait_until("an attempt failed", || async { rt.alarm_failures() == n }).await;
        clock.advance(Duration::from_secs(3600));
    }
    wait_until("the alarm was deleted", || async {
        status(&c, &host, "doomed").await["pending"] == Value::Null
    })
    .await;
    barrier(&c, &host, 1).await;
    assert_eq!(rt.alarm_failures(), 7);
    host.stop().await;
}

async fn an_alarm_set_by_a_trapped_event_never_fires(backend: Backend) {
    let dir = backend.data_dir();
    let clock = ManualClock::starting_now();
    let host = start(dir.path(), &clock, limits()).await;
    let c = client();
    assert_eq!(
        post(&c, &host.url("/alarm/t/set-then-panic"), "").await.0,
        500
    );
    assert_eq!(status(&c, &host, "t").await["pending"], Value::Null);
    clock.advance(Duration::from_secs(60));
    barrier(&c, &host, 1).await;
    assert_eq!(status(&c, &host, "t").await["runs"], 0);
    assert_eq!(host.runtime().alarm_runs(), 1, "only the barrier ran");
    host.stop().await;
}

async fn the_minimum_interval_moves_early_alarms_later(backend: Backend) {
    let dir = backend.data_dir();
    let clock = ManualClock::starting_now();
    let host = start(dir.path(), &clock, Limits::default()).await;
    let c = client();
    let t0 = clock.now_ms();
    post(&c, &host.url("/alarm/m/set?delay_ms=1000"), "").await;
    assert_eq!(status(&c, &host, "m").await["pending"], t0 + 30_000);
    // The seed's default: an hour from now.
    post(&c, &host.url("/alarm/m/set"), "").await;
    assert_eq!(status(&c, &host, "m").await["pending"], t0 + 3_600_000);
    host.stop().await;
}

async fn ten_thousand_alarms_due_in_the_same_second_all_fire_once(backend: Backend) {
    let _turn = heavy_test().await;
    let dir = backend.data_dir();
    let clock = ManualClock::starting_now();
    let host = start(dir.path(), &clock, limits()).await;
    let rt = host.runtime().clone();
    let c = client();
    const N: usize = 10_000;
    let at = clock.now_ms() + 5_000;
    let names: Vec<String> = (0..N).map(|i| format!("many-{i}")).collect();
    // Set them with bounded concurrency; spread over one second.
    let sem = Arc::new(tokio::sync::Semaphore::new(64));
    let mut tasks = Vec::new();
    for (i, name) in names.iter().enumerate() {
        let (c, sem) = (c.clone(), sem.clone());
        let url = host.url(&format!(
            "/alarm/{name}/set-at?at={}",
            at + (i as u64 % 1000)
        ));
        tasks.push(tokio::spawn(async move {
            let _p = sem.acquire().await.unwrap();
            post(&c, &url, "").await.0
        }));
    }
    for t in tasks {
        assert_eq!(t.await.unwrap(), 200);
    }
    assert_eq!(rt.scheduler().pending(), N);
    clock.advance(Duration::from_secs(10));
    wait_until("every alarm ran", || async {
        rt.alarm_runs() as usize >= N
    })
    .await;
    let mut tasks = Vec::new();
    for name in &names {
        let (c, sem) = (c.clone(), sem.clone());
        let url = host.url(&format!("/alarm/{name}/status"));
        tasks.push(tokio::spawn(async move {
            let _p = sem.acquire().await.unwrap();
            let (_, body) = get(&c, &url).await;
            serde_json::from_str::<Value>(&body).unwrap()
        }));
    }
    for t in tasks {
        let s = t.await.unwrap();
        assert_eq!(s["runs"], 1, "{s}");
        assert_eq!(s["pending"], Value::Null);
    }
    assert_eq!(rt.alarm_runs() as usize, N, "no alarm ran twice");
    assert_eq!(rt.scheduler().pending(), 0);
    host.stop().await;
}

/// Guards against a pending retry forgotten on restart: the alarm fired again at once with
/// `retry_count` 0 instead of resuming as the retry it was.
async fn a_pending_retry_resumes_after_a_restart(backend: Backend) {
    let dir = backend.data_dir();
    let clock = ManualClock::starting_now();
    let host = start(dir.path(), &clock, limits()).await;
    let rt = host.runtime().clone();
    let c = client();
    post(&c, &host.url("/alarm/flaky/configure?fail=3"), "").await;
    post(&c, &host.url("/alarm/flaky/set?delay_ms=1000"), "").await;
    clock.advance(Duration::from_millis(1000));
    wait_until("the first attempt failed", || async {
        rt.alarm_failures() == 1
    })
    .await;
    clock.advance(Duration::from_millis(2000));
    wait_until("the first retry failed", || async {
        rt.alarm_failures() == 2
    })
    .await;
    // Retry 2 is due 4 s from now; the host stops before then.
    host.stop().await;

    let host = start(dir.path(), &clock, limits()).await;
    let rt = host.runtime().clone();
    clock.advance(Duration::from_millis(3999));
    barrier(&c, &host, 1).await;
    assert_eq!(
        rt.alarm_failures(),
        0,
        "the retry came early (its time was forgotten)"
    );
    clock.advance(Duration::from_millis(1));
    wait_until("retry 2 failed", || async { rt.alarm_failures() == 1 }).await;
    clock.advance(Duration::from_millis(8000));
    wait_until("retry 3 succeeded", || async {
        status(&c, &host, "flaky").await["runs"] == 1
    })
    .await;
    let s = status(&c, &host, "flaky").await;
    assert_eq!(s["history"][0]["retry_count"], 3);
    host.stop().await;
}

on_both_backends!(
    an_alarm_fires_once_and_is_cleared,
    replacing_and_deleting,
    an_alarm_wakes_an_evicted_object_and_rearms,
    an_alarm_due_while_the_host_was_down_fires_after_restart,
    a_failing_handler_is_retried_with_growing_delays,
    a_handler_failing_every_time_is_given_up_after_six_retries,
    an_alarm_set_by_a_trapped_event_never_fires,
    the_minimum_interval_moves_early_alarms_later,
    ten_thousand_alarms_due_in_the_same_second_all_fire_once,
    a_pending_retry_resumes_after_a_restart,
);
