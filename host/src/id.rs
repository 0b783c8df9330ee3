//! Object IDs: 64 lowercase hex characters, derived per namespace so an ID of one binding is
//! refused by another.
//!
//! An ID is 32 bytes: a 24-byte body and an 8-byte check. The body is
//! `sha256("name" ‖ key ‖ name)` for `id-from-name` and random for `new-unique-id`; the
//! check is `sha256("check" ‖ key ‖ body)`. `key` is the namespace's secret, created once
//! with the class and kept across renames, so IDs survive a class rename.

use sha2::{Digest, Sha256};
use std::fmt;

/// Bytes in an object ID.
pub const ID_BYTES: usize = 32;
const BODY_BYTES: usize = 24;

/// A validated object ID.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ObjectId([u8; ID_BYTES]);

/// One object's address: its class's namespace number and its ID. The backend stores it as
/// 40 bytes (`to_bytes`), which sort by namespace, then ID.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, PartialOrd, Ord)]
pub struct ObjectKey {
    pub namespace: u64,
    pub id: ObjectId,
}

/// Bytes in an encoded `ObjectKey`.
pub const KEY_BYTES: usize = 8 + ID_BYTES;

impl ObjectKey {
    pub fn to_bytes(&self) -> [u8; KEY_BYTES] {
        let mut bytes = [0u8; KEY_BYTES];
        bytes[..8].copy_from_slice(&self.namespace.to_be_bytes());
        bytes[8..].copy_from_slice(&self.id.0);
        bytes
    }

    /// The shard this object belongs to, of `count` (its ID's first bytes: IDs are
    /// uniform hashes or random). Storage fences and clusters place objects by shard.
    pub fn shard(&self, count: u32) -> u32 {
        let b = self.id.as_bytes();
        u32::from_be_bytes([b[0], b[1], b[2], b[3]]) % count.max(1)
    }

    pub fn from_bytes(bytes: &[u8; KEY_BYTES]) -> Self {
        ObjectKey {
            namespace: u64::from_be_bytes(bytes[..8].try_into().expect("8 bytes")),
            id: ObjectId(bytes[8..].try_into().expect("32 bytes")),
        }
    }
}

/// A class's namespace: the number that prefixes its objects' data and its ID key.
#[derive(Clone)]
pub struct Namespace {
    pub number: u64,
    pub id_key: IdKey,
}

/// Why a string is not an ID of this namespace.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdError {
    #[error("an object ID is 64 lowercase hex characters; got {0} characters")]
    Length(usize),
    #[error("an object ID is 64 lowercase hex characters; found a character outside 0-9a-f")]
    NotHex,
    #[error("this ID does not belong to this binding (it was made by another namespace)")]
    WrongNamespace,
}

impl ObjectId {
    pub fn as_bytes(&self) -> &[u8; ID_BYTES] {
        &self.0
    }

    pub fn from_bytes(bytes: [u8; ID_BYTES]) -> Self {
        ObjectId(bytes)
    }
}

impl fmt::Display for ObjectId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex::encode(self.0))
    }
}

impl fmt::Debug for ObjectId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ObjectId({self})")
    }
}

/// The secret that makes one namespace's IDs its own.
#[derive(Clone)]
pub struct IdKey([u8; 32]);

impl IdKey {
    pub fn new(bytes: [u8; 32]) -> Self {
        IdKey(bytes)
    }

    pub fn random() -> anyhow::Result<Self> {
        let mut bytes = [0u8; 32];
        getrandom::fill(&mut bytes).map_err(|e| anyhow::anyhow!("no randomness: {e}"))?;
        Ok(IdKey(bytes))
    }

    pub fn bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// The ID `name` maps to: the same name always gives the same ID.
    pub fn id_from_name(&self, name: &str) -> ObjectId {
        let digest = Sha256::new()
            .chain_update(b"dohost-id-name\0")
            .chain_update(self.0)
            .chain_update(name.as_bytes())
            .finalize();
        let mut body = [0u8; BODY_BYTES];
        body.copy_from_slice(&digest[..BODY_BYTES]);
        self.seal(body)
    }

    /// A fresh random ID.
    pub fn new_unique_id(&self) -> anyhow::Result<ObjectId> {
        let mut body = [0u8; BODY_BYTES];
        getrandom::fill(&mut body).map_err(|e| anyhow::anyhow!("no randomness: {e}"))?;
        Ok(self.seal(body))
    }

    /// Parses an ID and checks that this namespace made it.
    pub fn id_from_string(&self, s: &str) -> Result<ObjectId, IdError> {
        if s.len() != ID_BYTES * 2 {
            return Err(IdError::Length(s.chars().count()));
        }
        // Uppercase hex is refused so that one object has exactly one spelling.
        if !s
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        {
            return Err(IdError::NotHex);
        }
        let mut bytes = [0u8; ID_BYTES];
        hex::decode_to_slice(s, &mut bytes).map_err(|_| IdError::NotHex)?;
        let mut body = [0u8; BODY_BYTES];
        body.copy_from_slice(&bytes[..BODY_BYTES]);
        if self.seal(body) != ObjectId(bytes) {
            return Err(IdError::WrongNamespace);
        }
        Ok(ObjectId(bytes))
    }

    fn seal(&self, body: [u8; BODY_BYTES]) -> ObjectId {
        let check = Sha256::new()
            .chain_update(b"dohost-id-check\0")
            .chain_update(self.0)
            .chain_update(body)
            .finalize();
        let mut bytes = [0u8; ID_BYTES];
        bytes[..BODY_BYTES].copy_from_slice(&body);
        bytes[BODY_BYTES..].copy_from_slice(&check[..ID_BYTES - BODY_BYTES]);
        ObjectId(bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_deterministic_and_ids_round_trip() {
        let key = IdKey::new([7; 32]);
        let a = key.id_from_name("user-123");
        assert_eq!(a, key.id_from_name("user-123"));
        assert_ne!(a, key.id_from_name("user-124"));
        let s = a.to_string();
        assert_eq!(s.len(), 64);
        assert_eq!(key.id_from_string(&s), Ok(a));
        let u = key.new_unique_id().unwrap();
        assert_eq!(key.id_from_string(&u.to_string()), Ok(u));
    }

    #[test]
    fn malformed_and_foreign_ids_are_refused() {
        let key = IdKey::new([7; 32]);
        let other = IdKey::new([8; 32]);
        let id = key.id_from_name("x").to_string();
        assert_eq!(other.id_from_string(&id), Err(IdError::WrongNamespace));
        assert_eq!(key.id_from_string("abc"), Err(IdError::Length(3)));
        assert_eq!(key.id_from_string(&id.to_uppercase()), Err(IdError::NotHex));
        let mut flipped = id.clone().into_bytes();
        flipped[0] = if flipped[0] == b'0' { b'1' } else { b'0' };
        let flipped = String::from_utf8(flipped).unwrap();
        assert_eq!(key.id_from_string(&flipped), Err(IdError::WrongNamespace));
    }
}
