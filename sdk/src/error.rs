//! The SDK's error types: [`Error`] for handlers, [`StorageError`] for what storage refused.

use std::fmt;

/// The result type of handlers and storage calls.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Any failure inside an object: a storage error, a (de)serialization error, or your own.
///
/// Like `anyhow::Error`, any `std::error::Error` converts into it with `?`, and
/// [`Error::msg`] makes one from a message. Returned from `fetch` it becomes a 500 response
/// carrying the message.
///
/// ```no_run
/// # use dohost_sdk::{Error, Request, Result};
/// # fn handle(req: Request) -> Result<()> {
/// let n: i64 = req.text()?.parse()?;
/// if n < 0 { return Err(Error::msg("n must not be negative")); }
/// # Ok(())
/// # }
/// ```
pub struct Error {
    message: String,
    storage: Option<StorageErrorCode>,
    call: Option<CallErrorCode>,
}

/// Why a call to another object failed (the WIT `objects.error-code`): `Deadlock`,
/// `UnknownBinding`, `InvalidId`, `ObjectFailed` or `Unavailable`.
///
/// ```no_run
/// # use dohost_sdk::{CallErrorCode, Request, Result, Stub};
/// # fn call(stub: &Stub, req: Request) -> Result<()> {
/// match stub.fetch(req) {
///     Err(e) if e.call_code() == Some(CallErrorCode::Unavailable) => { /* retry later */ }
///     other => { other?; }
/// }
/// # Ok(())
/// # }
/// ```
pub use crate::__private::bindings::dohost::object::objects::ErrorCode as CallErrorCode;

impl Error {
    /// An error with this message.
    pub fn msg(message: impl fmt::Display) -> Self {
        Error {
            message: message.to_string(),
            storage: None,
            call: None,
        }
    }

    /// A failed call to another object, keeping the host's error code.
    pub(crate) fn call(code: CallErrorCode, message: impl fmt::Display) -> Self {
        Error {
            message: message.to_string(),
            storage: None,
            call: Some(code),
        }
    }

    /// The storage error code, when storage refused the call.
    pub fn storage_code(&self) -> Option<StorageErrorCode> {
        self.storage
    }

    /// The call error code, when a call to another object failed: a guest can tell a
    /// deadlock from an unknown binding or an object that is unavailable for now.
    pub fn call_code(&self) -> Option<CallErrorCode> {
        self.call
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl fmt::Debug for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Error({:?})", self.message)
    }
}

impl<E: std::error::Error + Send + Sync + 'static> From<E> for Error {
    fn from(err: E) -> Self {
        let storage = (&err as &dyn std::error::Error)
            .downcast_ref::<StorageError>()
            .map(|e| e.code);
        Error {
            message: err.to_string(),
            storage,
            call: None,
        }
    }
}

/// Why storage refused a call. Nothing was changed by the call that failed.
///
/// ```no_run
/// # use dohost_sdk::{Result, Storage, StorageErrorCode};
/// # fn save(storage: &Storage, big: &[u8]) -> Result<()> {
/// match storage.put("k", big) {
///     Err(e) if e.storage_code() == Some(StorageErrorCode::ValueTooLarge) => { /* split it */ }
///     other => other?,
/// }
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StorageError {
    /// What kind of failure.
    pub code: StorageErrorCode,
    /// A sentence naming the limit or the cause.
    pub message: String,
}

impl fmt::Display for StorageError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for StorageError {}

/// The kinds of [`StorageError`]; each limit is configurable on the host.
///
/// ```no_run
/// # use dohost_sdk::{Storage, StorageErrorCode};
/// # fn check(storage: &Storage) {
/// let err = storage.put(&"k".repeat(4096), &1).unwrap_err();
/// assert_eq!(err.storage_code(), Some(StorageErrorCode::KeyTooLarge));
/// # }
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum StorageErrorCode {
    /// The key is longer than the host's maximum (2 KiB by default).
    KeyTooLarge,
    /// The value is larger than the host's maximum (128 KiB by default).
    ValueTooLarge,
    /// Too many keys in one call (128 by default).
    TooManyKeys,
    /// The object's storage quota (50 GB by default) would be exceeded.
    StorageFull,
    /// Commit or rollback without an open transaction.
    NoTransaction,
    /// An argument made no sense.
    InvalidArgument,
    /// The host failed to read or write its database.
    Internal,
    /// A stored value could not be decoded as the requested type.
    Decode,
}
