//! What operators may read of objects through the admin API: the classes served, a class's
//! objects with their names, an object's stored entries and its alarm — all from durable
//! storage, so an answer never shows a write that could still be lost.

use super::Runtime;
use crate::id::{ObjectId, ObjectKey};
use bytes::Bytes;

/// Most objects or entries one admin answer holds.
pub const MAX_PAGE: usize = 1000;

/// Why an admin read could not be answered.
#[derive(Debug, thiserror::Error)]
pub enum InspectError {
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    BadRequest(String),
    #[error("storage: {0:#}")]
    Storage(anyhow::Error),
    /// Not now: the object is served by another node, or storage refused the write.
    #[error("{0}")]
    Unavailable(String),
}

/// A class as the admin API lists it.
pub struct ClassInfo {
    pub binding: String,
    pub class_name: String,
    pub namespace: u64,
}

/// A range of an object's entries, as the storage API's `list` takes it.
#[derive(Default)]
pub struct Range {
    pub prefix: Option<String>,
    pub start: Option<String>,
    pub end: Option<String>,
    pub reverse: bool,
    pub limit: Option<usize>,
}

impl Runtime {
    pub fn classes(&self) -> Vec<ClassInfo> {
        self.bindings()
            .into_iter()
            .filter_map(|b| self.class(b))
            .map(|c| ClassInfo {
                binding: c.binding.clone(),
                class_name: c.class_name.clone(),
                namespace: c.namespace.number,
            })
            .collect()
    }

    /// Objects of `binding` after `after` (an ID), at most `limit` (≤ `MAX_PAGE`).
    pub async fn list_objects(
        &self,
        binding: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<(ObjectId, Option<String>)>, InspectError> {
        let (namespace, after) = match after {
            Some(id) => {
                let key = self.object_key(binding, id)?;
                (key.namespace, Some(key.id))
            }
            None => (self.namespace_of(binding)?, None),
        };
        self.storage_now()?
            .list_objects(namespace, after, limit.min(MAX_PAGE))
            .await
            .map_err(InspectError::Storage)
    }

    /// The object's stored entries in `range`.
    pub async fn entries(
        &self,
        binding: &str,
        id: &str,
        range: &Range,
    ) -> Result<Vec<(String, Bytes)>, InspectError> {
        let key = self.object_key(binding, id)?;
        let prefix = range.prefix.clone().unwrap_or_default();
        let lower = match &range.start {
            Some(s) if *s > prefix => s.clone(),
            _ => prefix.clone(),
        };
        // The prefix's end: the prefix with a byte no UTF-8 key holds.
        let prefix_end = (!prefix.is_empty()).then(|| {
            let mut e = prefix.clone().into_bytes();
            e.push(0xFF);
            e
        });
        let upper = match (
            range.end.as_ref().map(|e| e.as_bytes().to_vec()),
            prefix_end,
        ) {
            (Some(e), Some(p)) => Some(e.min(p)),
            (e, p) => e.or(p),
        };
        let limit = range.limit.unwrap_or(MAX_PAGE).min(MAX_PAGE);
        self.storage_now()?
            .scan(
                &key,
                lower.as_bytes(),
                upper.as_deref(),
                range.reverse,
                limit,
            )
            .await
            .map_err(InspectError::Storage)
    }

    /// A consistent copy of the node's storage, written beside its data, open for reading
    /// (see `Storage::backup`); blocks.
    pub fn backup(&self) -> Result<std::fs::File, InspectError> {
        self.storage_now()?
            .backup()
            .map_err(|e| InspectError::Unavailable(format!("{e:#}")))
    }

    /// The object's durable alarm, in milliseconds since the Unix epoch.
    pub async fn alarm_of(&self, binding: &str, id: &str) -> Result<Option<u64>, InspectError> {
        let key = self.object_key(binding, id)?;
        self.storage_now()?
            .get_alarm(&key)
            .await
            .map_err(InspectError::Storage)
    }

    /// The ID (64 hex characters) of the object named `name` in `binding`.
    pub fn id_from_name(&self, binding: &str, name: &str) -> Result<String, InspectError> {
        let class = self
            .class(binding)
            .ok_or_else(|| InspectError::NotFound(format!("no binding named {binding:?}")))?;
        Ok(class.namespace.id_key.id_from_name(name).to_string())
    }

    fn namespace_of(&self, binding: &str) -> Result<u64, InspectError> {
        self.class(binding)
            .map(|c| c.namespace.number)
            .ok_or_else(|| InspectError::NotFound(format!("no binding named {binding:?}")))
    }

    pub(super) fn object_key(&self, binding: &str, id: &str) -> Result<ObjectKey, InspectError> {
        let class = self
            .class(binding)
            .ok_or_else(|| InspectError::NotFound(format!("no binding named {binding:?}")))?;
        let id = class
            .namespace
            .id_key
            .id_from_string(id)
            .map_err(|e| InspectError::BadRequest(format!("{e} (binding {binding:?})")))?;
        Ok(ObjectKey {
            namespace: class.namespace.number,
            id,
        })
    }

    fn storage_now(&self) -> Result<std::sync::Arc<dyn crate::backend::Storage>, InspectError> {
        self.db()
            .ok_or_else(|| InspectError::Storage(anyhow::anyhow!("the host is shutting down")))
    }
}
