//! A commit batch's shape in PostgreSQL: the writes of many events folded into one final
//! effect per object, sent as arrays (one `unnest` statement per table), and each object's
//! next row (size, name, alarm, retry) computed from its current one.

use crate::backend::{AlarmRetry, Write};
use crate::id::{ID_BYTES, ObjectId, ObjectKey};
use bytes::Bytes;
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use tokio_postgres::Row as DbRow;

/// One object's writes within a batch, folded in order into their final effect.
#[derive(Default)]
pub struct Effect {
    clear: bool,
    keys: BTreeMap<String, Option<Bytes>>,
    alarm: Option<Option<u64>>,
    /// `Some(None)`: the retry ends; `Some(Some(r))`: the alarm is being retried.
    retry: Option<Option<AlarmRetry>>,
    name: Option<Arc<str>>,
    /// SQL pages written (final contents), the final page count, and how the pages change
    /// the object's size.
    pages: BTreeMap<u32, Bytes>,
    page_count: Option<u32>,
    pages_delta: i64,
}

pub type Effects = BTreeMap<ObjectKey, Effect>;

pub fn fold(batch: &[Write<'_>]) -> Effects {
    let mut effects: Effects = BTreeMap::new();
    for job in batch {
        let e = effects.entry(job.object).or_default();
        let w = job.writes;
        if w.clear {
            e.clear = true;
            e.keys.clear();
            e.pages.clear();
            e.page_count = None;
            e.pages_delta = 0;
        }
        if let Some(sql) = &w.sql {
            e.pages
                .extend(sql.pages.iter().map(|(i, p)| (*i, p.clone())));
            e.pages.retain(|i, _| *i < sql.page_count);
            e.page_count = Some(sql.page_count);
            e.pages_delta += sql.size_delta() as i64;
        }
        e.keys
            .extend(w.map.iter().map(|(k, v)| (k.clone(), v.clone())));
        if w.alarm.is_some() {
            e.alarm = w.alarm;
        }
        // A new (or deleted) alarm ends any retry of the old one.
        match (w.alarm, w.alarm_retry) {
            (_, Some(r)) => e.retry = Some(Some(r)),
            (Some(_), None) => e.retry = Some(None),
            (None, None) => {}
        }
        if w.name.is_some() {
            e.name = w.name.clone();
        }
    }
    effects
}

fn address(object: &ObjectKey) -> (i64, &[u8]) {
    (object.namespace as i64, object.id.as_bytes().as_slice())
}

/// An object's address as a row gives it.
pub fn key_of(ns: i64, id: &[u8]) -> ObjectKey {
    let id: [u8; ID_BYTES] = id.try_into().unwrap_or([0; ID_BYTES]);
    ObjectKey {
        namespace: ns as u64,
        id: ObjectId::from_bytes(id),
    }
}

/// The arrays of the first round trip: objects cleared, keys written (each deleted first,
/// its old length returned), and every object whose row is read.
#[derive(Default)]
pub struct Removals<'a> {
    pub clear_ns: Vec<i64>,
    pub clear_id: Vec<&'a [u8]>,
    pub key_ns: Vec<i64>,
    pub key_id: Vec<&'a [u8]>,
    pub key_key: Vec<&'a [u8]>,
    pub obj_ns: Vec<i64>,
    pub obj_id: Vec<&'a [u8]>,
    pub trim_ns: Vec<i64>,
    pub trim_id: Vec<&'a [u8]>,
    pub trim_from: Vec<i32>,
}

impl<'a> Removals<'a> {
    pub fn of(effects: &'a Effects) -> Self {
        let mut r = Removals::default();
        for (object, e) in effects {
            let (ns, id) = address(object);
            r.obj_ns.push(ns);
            r.obj_id.push(id);
            if e.clear {
                r.clear_ns.push(ns);
                r.clear_id.push(id);
            }
            if let Some(n) = e.page_count {
                r.trim_ns.push(ns);
                r.trim_id.push(id);
                r.trim_from.push(n as i32);
            }
            for k in e.keys.keys() {
                r.key_ns.push(ns);
                r.key_id.push(id);
                r.key_key.push(k.as_bytes());
            }
        }
        r
    }
}

/// An object's row in `dohost.objects`.
#[derive(Default)]
struct ObjectRow {
    size: i64,
    name: Option<String>,
    alarm: Option<i64>,
    retry_count: Option<i32>,
    retry_at: Option<i64>,
}

/// The arrays of the second round trip: the entries inserted and the object rows upserted.
#[derive(Default)]
pub struct Additions<'a> {
    pub ins_ns: Vec<i64>,
    pub ins_id: Vec<&'a [u8]>,
    pub ins_key: Vec<&'a [u8]>,
    pub ins_val: Vec<&'a [u8]>,
    pub ns: Vec<i64>,
    pub id: Vec<&'a [u8]>,
    pub size: Vec<i64>,
    pub name: Vec<Option<String>>,
    pub alarm: Vec<Option<i64>>,
    pub retry_count: Vec<Option<i32>>,
    pub retry_at: Vec<Option<i64>>,
    pub page_ns: Vec<i64>,
    pub page_id: Vec<&'a [u8]>,
    pub page_no: Vec<i32>,
    pub page_data: Vec<&'a [u8]>,
    /// Each object's size once committed.
    pub sizes: HashMap<ObjectKey, u64>,
}

impl<'a> Additions<'a> {
    /// From the objects' current `rows` and the old entries `deleted` (object, length):
    /// each new size is the old one, less what the deleted and overwritten keys held,
    /// plus what is written (sizes count keys plus values, as redb's).
    pub fn of(effects: &'a Effects, rows: &[DbRow], deleted: &[DbRow]) -> Self {
        let mut current: HashMap<ObjectKey, ObjectRow> = rows
            .iter()
            .map(|r| {
                let row = ObjectRow {
                    size: r.get(2),
                    name: r.get(3),
                    alarm: r.get(4),
                    retry_count: r.get(5),
                    retry_at: r.get(6),
                };
                (key_of(r.get(0), r.get(1)), row)
            })
            .collect();
        let mut freed: HashMap<ObjectKey, i64> = HashMap::new();
        for r in deleted {
            let len: i32 = r.get(2);
            *freed.entry(key_of(r.get(0), r.get(1))).or_default() += i64::from(len);
        }
        let mut a = Additions::default();
        for (object, e) in effects {
            let (ns, id) = address(object);
            let mut row = current.remove(object).unwrap_or_default();
            let mut size = if e.clear { 0 } else { row.size };
            size -= freed.get(object).copied().unwrap_or(0);
            for (k, v) in &e.keys {
                if let Some(v) = v {
                    a.ins_ns.push(ns);
                    a.ins_id.push(id);
                    a.ins_key.push(k.as_bytes());
                    a.ins_val.push(v.as_ref());
                    size += (k.len() + v.len()) as i64;
                }
            }
            for (i, page) in &e.pages {
                a.page_ns.push(ns);
                a.page_id.push(id);
                a.page_no.push(*i as i32);
                a.page_data.push(page.as_ref());
            }
            size += e.pages_delta;
            row.size = size.max(0);
            if let Some(alarm) = e.alarm {
                row.alarm = alarm.map(|a| a as i64);
            }
            match e.retry {
                Some(Some(r)) => {
                    (row.retry_count, row.retry_at) = (Some(r.count as i32), Some(r.at as i64))
                }
                Some(None) => (row.retry_count, row.retry_at) = (None, None),
                None => {}
            }
            if let Some(name) = &e.name {
                row.name = Some(name.to_string());
            }
            a.sizes.insert(*object, row.size as u64);
            a.ns.push(ns);
            a.id.push(id);
            a.size.push(row.size);
            a.name.push(row.name);
            a.alarm.push(row.alarm);
            a.retry_count.push(row.retry_count);
            a.retry_at.push(row.retry_at);
        }
        a
    }
}
