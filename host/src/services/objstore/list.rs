//! `list`: the object's stored entries merged with its in-flight, event and transaction
//! writes, in key order (or reversed), within start/end/prefix bounds and a limit.

use super::{ObjectStore, StoreError, StoreResult};
use bytes::Bytes;
use std::collections::BTreeMap;
use std::ops::Bound;

/// A list query's key bounds, normalised: `[lower, upper)` on user-key bytes.
struct KeyRange {
    lower: String,
    upper: Option<Vec<u8>>,
}

impl KeyRange {
    fn new(start: Option<&str>, end: Option<&str>, prefix: Option<&str>) -> Option<KeyRange> {
        let prefix = prefix.unwrap_or("");
        let lower = match start {
            Some(s) if s > prefix => s.to_string(),
            _ => prefix.to_string(),
        };
        let prefix_end = successor(prefix.as_bytes());
        let upper = match (end.map(str::as_bytes), prefix_end) {
            (Some(e), Some(p)) => Some(e.min(p.as_slice()).to_vec()),
            (Some(e), None) => Some(e.to_vec()),
            (None, p) => p,
        };
        if upper.as_deref().is_some_and(|u| lower.as_bytes() >= u) {
            return None;
        }
        Some(KeyRange { lower, upper })
    }

    fn contains(&self, key: &str) -> bool {
        key >= self.lower.as_str() && self.upper.as_deref().is_none_or(|u| key.as_bytes() < u)
    }

    fn select<'a, V>(
        &'a self,
        map: &'a BTreeMap<String, V>,
    ) -> impl Iterator<Item = (&'a String, &'a V)> + 'a {
        map.range::<str, _>((Bound::Included(self.lower.as_str()), Bound::Unbounded))
            .take_while(|(k, _)| self.upper.as_deref().is_none_or(|u| k.as_bytes() < u))
    }
}

/// The smallest byte string greater than every string starting with `prefix` (None when
/// there is none, i.e. the empty prefix).
fn successor(prefix: &[u8]) -> Option<Vec<u8>> {
    let mut s = prefix.to_vec();
    while let Some(last) = s.pop() {
        if last < 0xFF {
            s.push(last + 1);
            return Some(s);
        }
    }
    None
}

/// Entries one page of a bounded list reads.
const PAGE: u32 = 1024;

impl ObjectStore {
    /// `list`, read a page at a time so that an answer over `max_list_bytes` is refused
    /// once that much was read, not after the whole range was gathered.
    pub async fn list_bounded(
        &self,
        start: Option<&str>,
        end: Option<&str>,
        prefix: Option<&str>,
        reverse: bool,
        limit: Option<u32>,
    ) -> StoreResult<Vec<(String, Bytes)>> {
        self.list_paged(start, end, prefix, reverse, limit, PAGE)
            .await
    }

    /// `list_bounded` with pages of `page` entries (the model test uses tiny ones).
    pub async fn list_paged(
        &self,
        start: Option<&str>,
        end: Option<&str>,
        prefix: Option<&str>,
        reverse: bool,
        limit: Option<u32>,
        page_size: u32,
    ) -> StoreResult<Vec<(String, Bytes)>> {
        let cap = self.limits.max_list_bytes;
        let want = limit.map_or(usize::MAX, |l| l as usize);
        let (mut start, mut end) = (start.map(str::to_string), end.map(str::to_string));
        let mut out: Vec<(String, Bytes)> = Vec::new();
        let mut bytes = 0usize;
        while out.len() < want {
            let page = page_size.min((want - out.len()).try_into().unwrap_or(page_size));
            let found = self
                .list(
                    start.as_deref(),
                    end.as_deref(),
                    prefix,
                    reverse,
                    Some(page),
                )
                .await?;
            let full = found.len() as u32 == page;
            for (k, v) in found {
                bytes = bytes.saturating_add(k.len() + v.len());
                if bytes > cap {
                    return Err(StoreError::InvalidArgument(format!(
                        "this list would answer more than {cap} bytes (the instance's memory \
                         limit, memory_bytes): give it a limit, or a narrower range, and \
                         read it in pages"
                    )));
                }
                out.push((k, v));
            }
            let Some((last, _)) = out.last() else { break };
            if !full {
                break;
            }
            // The next page: past the last key (`start` is inclusive, `end` exclusive).
            if reverse {
                end = Some(last.clone());
            } else {
                start = Some(format!("{last}\0"));
            }
        }
        Ok(out)
    }

    pub async fn list(
        &self,
        start: Option<&str>,
        end: Option<&str>,
        prefix: Option<&str>,
        reverse: bool,
        limit: Option<u32>,
    ) -> StoreResult<Vec<(String, Bytes)>> {
        let limit = limit.map_or(usize::MAX, |l| l as usize);
        let Some(range) = KeyRange::new(start, end, prefix) else {
            return Ok(Vec::new());
        };
        if limit == 0 {
            return Ok(Vec::new());
        }
        // Merge every not-yet-durable layer, bottom up, into one overlay of the range.
        let mut overlay: BTreeMap<String, Option<Bytes>> = BTreeMap::new();
        let mut hide_db;
        let mut durable = None;
        {
            let inf = self.shared.lock();
            hide_db = inf.clear_seq.is_some();
            for (k, (_, v)) in range.select(&inf.entries) {
                overlay.insert(k.clone(), v.clone());
            }
            if !hide_db && let Some(d) = &inf.durable {
                let found: Vec<(String, Bytes)> = range
                    .select(&d.entries)
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect();
                durable = Some(found);
            }
        }
        for layer in std::iter::once(&self.event).chain(self.txns.iter()) {
            if layer.clear {
                overlay.clear();
                hide_db = true;
            }
            for (k, v) in range.select(&layer.map) {
                overlay.insert(k.clone(), v.clone());
            }
        }
        debug_assert!(overlay.keys().all(|k| range.contains(k)));

        // Each overlay entry hides or replaces at most one stored entry, so the first
        // `limit + overlay` stored entries hold every stored entry of the answer.
        let want = limit.saturating_add(overlay.len());
        let stored = match (hide_db, durable) {
            (true, _) => Vec::new(),
            (false, Some(mut all)) => {
                if reverse {
                    all.reverse();
                }
                all.truncate(want);
                all
            }
            (false, None) => self
                .storage
                .scan(
                    &self.shared.object,
                    range.lower.as_bytes(),
                    range.upper.as_deref(),
                    reverse,
                    want,
                )
                .await
                .map_err(|e| self.read_failed(e))?,
        };
        // When the scan was cut, keys past its last one are unknown: answer only up to it
        // (there are at least `limit` answers before it).
        let boundary = (stored.len() >= want)
            .then(|| stored.last().map(|(k, _)| k.clone()))
            .flatten();
        let mut merged: BTreeMap<String, Bytes> = stored.into_iter().collect();
        for (k, v) in overlay {
            match v {
                Some(v) => merged.insert(k, v),
                None => merged.remove(&k),
            };
        }
        let within = |k: &String| match &boundary {
            None => true,
            Some(b) if reverse => k >= b,
            Some(b) => k <= b,
        };
        let out: Vec<(String, Bytes)> = if reverse {
            merged
                .into_iter()
                .rev()
                .take_while(|(k, _)| within(k))
                .take(limit)
                .collect()
        } else {
            merged
                .into_iter()
                .take_while(|(k, _)| within(k))
                .take(limit)
                .collect()
        };
        Ok(out)
    }
}
