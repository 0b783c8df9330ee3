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

impl ObjectStore {
    pub fn list(
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
        {
            let inf = self.shared.lock();
            hide_db = inf.clear_seq.is_some();
            for (k, (_, v)) in range.select(&inf.entries) {
                overlay.insert(k.clone(), v.clone());
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

        let mut out = Vec::new();
        let mut pending: Box<dyn Iterator<Item = (String, Option<Bytes>)>> = if reverse {
            Box::new(overlay.into_iter().rev())
        } else {
            Box::new(overlay.into_iter())
        };
        let mut next_overlay = pending.next();
        let before = |a: &str, b: &str| if reverse { a > b } else { a < b };
        // Emits overlay entries that sort before `db_key` (all of them when None); an
        // overlay entry equal to `db_key` replaces it. Returns whether db_key was replaced.
        let mut drain = |db_key: Option<&str>,
                         out: &mut Vec<(String, Bytes)>,
                         next: &mut Option<(String, Option<Bytes>)>|
         -> bool {
            while let Some((k, v)) = next.as_ref() {
                if out.len() >= limit {
                    return true;
                }
                match db_key {
                    Some(d) if !before(k, d) && k.as_str() != d => return false,
                    _ => {}
                }
                let same = db_key == Some(k.as_str());
                if let Some(v) = v {
                    out.push((k.clone(), v.clone()));
                }
                *next = pending.next();
                if same {
                    return true;
                }
            }
            false
        };
        if !hide_db {
            let upper = range.upper.clone();
            self.storage
                .scan(
                    &self.shared.object,
                    range.lower.as_bytes(),
                    upper.as_deref(),
                    reverse,
                    &mut |k, v| {
                        let replaced = drain(Some(&k), &mut out, &mut next_overlay);
                        if out.len() >= limit {
                            return false;
                        }
                        if !replaced {
                            out.push((k, v));
                        }
                        out.len() < limit
                    },
                )
                .map_err(StoreError::internal)?;
        }
        if out.len() < limit {
            drain(None, &mut out, &mut next_overlay);
        }
        out.truncate(limit);
        Ok(out)
    }
}
