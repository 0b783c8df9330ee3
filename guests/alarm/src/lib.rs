//! The seed's AlarmObject: `fetch` sets an alarm, `alarm()` does its cleanup work, records
//! each run in storage and re-arms itself.
//!
//! | request | does |
//! | --- | --- |
//! | `POST /set?delay_ms=N` | alarm at now + N ms (default one hour, as in the seed); answers `Alarm set` |
//! | `POST /set-at?at=MS` | alarm at MS (milliseconds since the epoch) |
//! | `POST /delete` | cancels the alarm |
//! | `POST /configure?rearm_ms=N&fail=K` | after each run re-arm N ms later (0: don't); fail the first K attempts of every alarm |
//! | `POST /set-then-panic` | sets an alarm, then panics (the alarm must never fire) |
//! | `POST /work?key=K` | stores a temporary `tmp:K` entry for the cleanup to remove |
//! | `GET /status` | `{"runs", "history": [{"at", "retry_count", "is_retry"}] (the last 20), "pending", "tmp"}` |

use dohost_sdk::{
    AlarmInfo, DurableObject, Env, Error, ListOptions, Request, Response, Result, State,
    durable_object,
};
use serde::{Deserialize, Serialize};
use serde_json::json;
use std::time::{SystemTime, UNIX_EPOCH};

#[durable_object]
pub struct AlarmObject {
    state: State,
}

/// Runs remembered in `history`.
const HISTORY_KEPT: usize = 20;

#[derive(Serialize, Deserialize, Clone, Copy)]
struct Run {
    at: u64,
    retry_count: u32,
    is_retry: bool,
}

#[derive(Serialize, Deserialize, Default)]
struct Settings {
    rearm_ms: u64,
    fail: u32,
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// A numeric query parameter; one that does not parse is a 400 naming it.
fn param(req: &Request, name: &str) -> Result<Option<u64>> {
    req.query_as(name)
}

impl DurableObject for AlarmObject {
    fn new(state: State, _env: Env) -> Self {
        AlarmObject { state }
    }

    fn fetch(&mut self, req: Request) -> Result<Response> {
        let storage = self.state.storage();
        match req.path() {
            "/set" => {
                let delay = param(&req, "delay_ms")?.unwrap_or(60 * 60 * 1000);
                storage.set_alarm(now_ms() + delay)?;
                Ok(Response::text("Alarm set"))
            }
            "/set-at" => {
                let at: u64 = req.require_query("at")?;
                storage.set_alarm(at)?;
                Ok(Response::text("Alarm set"))
            }
            "/delete" => {
                storage.delete_alarm()?;
                Ok(Response::text("Alarm deleted"))
            }
            "/configure" => {
                let settings = Settings {
                    rearm_ms: param(&req, "rearm_ms")?.unwrap_or(0),
                    fail: param(&req, "fail")?.unwrap_or(0) as u32,
                };
                storage.put("settings", &settings)?;
                Ok(Response::text("configured"))
            }
            "/set-then-panic" => {
                storage.set_alarm(now_ms())?;
                panic!("deliberate panic after setting an alarm");
            }
            "/work" => {
                let key = req.query_param("key").unwrap_or_default();
                storage.put(&format!("tmp:{key}"), &now_ms())?;
                Ok(Response::text("stored"))
            }
            "/status" => {
                let history: Vec<Run> = storage.get("history")?.unwrap_or_default();
                let runs: u64 = storage.get("runs")?.unwrap_or(0);
                let tmp = storage
                    .list::<u64>(ListOptions::new().prefix("tmp:"))?
                    .len();
                Ok(Response::json(&json!({
                    "runs": runs,
                    "history": history,
                    "pending": storage.get_alarm()?,
                    "tmp": tmp,
                })))
            }
            _ => Ok(Response::text("Not found").with_status(404)),
        }
    }

    fn alarm(&mut self, info: AlarmInfo) -> Result<()> {
        let storage = self.state.storage();
        let settings: Settings = storage.get("settings")?.unwrap_or_default();
        if info.retry_count < settings.fail {
            return Err(Error::msg(format!(
                "failing on purpose (attempt {})",
                info.retry_count
            )));
        }
        println!("Alarm triggered! (retry {})", info.retry_count);
        // The cleanup work: drop the temporary entries.
        let tmp: Vec<(String, u64)> = storage.list(ListOptions::new().prefix("tmp:").limit(128))?;
        storage.delete_many(tmp.iter().map(|(k, _)| k.as_str()))?;
        let runs: u64 = storage.get("runs")?.unwrap_or(0);
        storage.put("runs", &(runs + 1))?;
        let mut history: Vec<Run> = storage.get("history")?.unwrap_or_default();
        // Keep the latest runs only, so a self-re-arming alarm does not grow without bound.
        if history.len() >= HISTORY_KEPT {
            history.remove(0);
        }
        history.push(Run {
            at: now_ms(),
            retry_count: info.retry_count,
            is_retry: info.is_retry,
        });
        storage.put("history", &history)?;
        if settings.rearm_ms > 0 {
            storage.set_alarm(now_ms() + settings.rearm_ms)?;
        }
        Ok(())
    }
}
