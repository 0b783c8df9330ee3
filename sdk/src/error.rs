//! The SDK's error types: [`Error`] for handlers, [`StorageError`] for what storage refused,
//! [`SqlError`] for a statement that failed.

use std::fmt;

/// The result type of handlers and storage calls.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Any failure inside an object: a storage error, a (de)serialization error, or your own.
///
/// Like `anyhow::Error`, any `std::error::Error` converts into it with `?`, and
/// [`Error::msg`] makes one from a message. Returned from `fetch`:
/// - an error with a status ([`Error::status`], [`bail_status!`](crate::bail_status), or
///   the SDK's own for bad input: a query parameter that does not parse, a body that is not
///   the JSON expected) is answered with that status and its message;
/// - any other error is a bug or an outage, not the client's business: the client gets a
///   bare 500 and the message goes to the host's log (with the object's name).
///
/// ```no_run
/// # use dohost_sdk::{bail_status, Error, Request, Result};
/// # fn handle(req: Request) -> Result<()> {
/// let n: i64 = req.query_as("n")?.unwrap_or(0); // "?n=x" answers 400
/// if n < 0 { bail_status!(422, "n must not be negative, got {n}"); }
/// if n > 100 { return Err(Error::status(400, "n is at most 100")); }
/// # Ok(())
/// # }
/// ```
pub struct Error {
    message: String,
    status: Option<u16>,
    storage: Option<StorageErrorCode>,
    sql: Option<SqlErrorCode>,
    call: Option<CallErrorCode>,
}

/// Returns early with an [`Error`] carrying an HTTP status and a formatted message, which
/// the client sees as is.
///
/// ```no_run
/// # use dohost_sdk::{bail_status, Result};
/// # fn f(id: u64, found: bool) -> Result<()> {
/// if !found { bail_status!(404, "no item {id}"); }
/// # Ok(())
/// # }
/// ```
#[macro_export]
macro_rules! bail_status {
    ($status:expr, $($message:tt)+) => {
        return ::core::result::Result::Err($crate::Error::status($status, format!($($message)+)))
    };
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
            status: None,
            storage: None,
            sql: None,
            call: None,
        }
    }

    /// An error answered with HTTP `status` (400..=599) and `message`, which the client
    /// sees. A status outside that range is answered as 500.
    pub fn status(status: u16, message: impl fmt::Display) -> Self {
        Error {
            status: Some(status),
            ..Error::msg(message)
        }
    }

    /// 400 with `message`.
    pub fn bad_request(message: impl fmt::Display) -> Self {
        Error::status(400, message)
    }

    /// 404 with `message`.
    pub fn not_found(message: impl fmt::Display) -> Self {
        Error::status(404, message)
    }

    /// This error answered with `status` instead (its message becomes the client's).
    pub fn with_status(mut self, status: u16) -> Self {
        self.status = Some(status);
        self
    }

    /// The HTTP status this error is answered with, when it carries one.
    pub fn status_code(&self) -> Option<u16> {
        self.status
    }

    /// A failed call to another object, keeping the host's error code.
    pub(crate) fn call(code: CallErrorCode, message: impl fmt::Display) -> Self {
        Error {
            call: Some(code),
            ..Error::msg(message)
        }
    }

    /// The storage error code, when storage refused the call.
    pub fn storage_code(&self) -> Option<StorageErrorCode> {
        self.storage
    }

    /// The SQL error code, when a statement failed (or a row was not the type asked for):
    /// a guest can tell a constraint failure from a syntax error.
    ///
    /// ```no_run
    /// # use dohost_sdk::{Error, Result, Sql, SqlErrorCode};
    /// # fn add(sql: &Sql, email: &str) -> Result<()> {
    /// match sql.exec("INSERT INTO users(email) VALUES (?)", [email]) {
    ///     Err(e) if e.sql_code() == Some(SqlErrorCode::Constraint) => {
    ///         return Err(Error::status(409, format!("{email} is taken")));
    ///     }
    ///     other => { other?; }
    /// }
    /// # Ok(())
    /// # }
    /// ```
    pub fn sql_code(&self) -> Option<SqlErrorCode> {
        self.sql
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
        let err_ref = &err as &dyn std::error::Error;
        let storage = err_ref.downcast_ref::<StorageError>().map(|e| e.code);
        let sql = err_ref.downcast_ref::<SqlError>().map(|e| e.code);
        Error {
            storage,
            sql,
            ..Error::msg(err)
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
    /// The host failed to read or write its database. When the database could not be
    /// reached the message says so, and the same call may work in a moment: a `fetch` that
    /// then fails (its `Err`, answered 500) is answered 503 with `Retry-After` by the host.
    Internal,
    /// A stored value could not be decoded as the requested type.
    Decode,
}

/// Why a SQL statement failed. Nothing of the failed statement was applied; what the event
/// ran before it stands.
///
/// ```no_run
/// # use dohost_sdk::{Result, Sql, SqlErrorCode};
/// # fn f(sql: &Sql) {
/// let err = sql.exec("SELEC 1", ()).unwrap_err();
/// assert_eq!(err.sql_code(), Some(SqlErrorCode::Syntax));
/// # }
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SqlError {
    /// What kind of failure.
    pub code: SqlErrorCode,
    /// SQLite's message, or the host's naming the limit.
    pub message: String,
}

impl fmt::Display for SqlError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for SqlError {}

/// The kinds of [`SqlError`] (the WIT `sql.error-code`, plus `Decode`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SqlErrorCode {
    /// The SQL did not parse, or names a table or column that does not exist.
    Syntax,
    /// A constraint failed (UNIQUE, NOT NULL, CHECK, FOREIGN KEY).
    Constraint,
    /// A value had the wrong type for a `STRICT` table, or the wrong number of parameters.
    Mismatch,
    /// Something objects may not do: BEGIN/COMMIT/SAVEPOINT (use
    /// [`Storage::transaction`](crate::Storage::transaction)), ATTACH, most PRAGMAs, names
    /// starting `_cf_` or `_dohost_`.
    NotAuthorized,
    /// A limit was passed (statement length, parameters, columns, a value's or row's size,
    /// the rows one `exec` may answer); the message names it.
    TooLarge,
    /// The database would grow past its limit, or the object's storage past its quota.
    StorageFull,
    /// The statement ran past the event's CPU limit and was stopped.
    Interrupted,
    /// The class has no SQL database (its migration declared it with `new_classes`, not
    /// `new_sqlite_classes`).
    SqlDisabled,
    /// Anything else; the message says what.
    Internal,
    /// A row (or column) could not be read as the requested type.
    Decode,
}
