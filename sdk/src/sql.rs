//! SQL on the object's own SQLite database, committed with the rest of the event's writes.
//!
//! Get the handle with [`Storage::sql`](crate::Storage::sql). [`Sql::exec`] answers a
//! statement's whole result at once ([`Rows`]); [`Sql::query`] answers a [`Cursor`] that
//! fetches rows a chunk at a time, for results too large for one call. Rows map onto serde
//! types by column name; parameters are [`Value`]s, from [`params!`](crate::params), an
//! array or a tuple.
//!
//! ```no_run
//! # use dohost_sdk::{params, Result, State};
//! # struct O { state: State }
//! # impl O { fn f(&self) -> Result<()> {
//! #[derive(serde::Deserialize)]
//! struct Todo { id: i64, title: String, done: bool }
//!
//! let sql = self.state.storage().sql();
//! sql.exec("CREATE TABLE IF NOT EXISTS todos(id INTEGER PRIMARY KEY, title TEXT, done INTEGER)", ())?;
//! let id = sql.exec("INSERT INTO todos(title, done) VALUES (?, ?)", params!["write tests", false])?
//!     .last_insert_rowid();
//! let todo: Todo = sql.exec("SELECT * FROM todos WHERE id = ?", [id])?.one()?;
//! let open: Vec<Todo> = sql.exec("SELECT * FROM todos WHERE done = 0", ())?.rows()?;
//! let count: i64 = sql.exec("SELECT count(*) FROM todos", ())?.one()?;
//! # let _ = (todo, open, count);
//! # Ok(()) } }
//! ```

use crate::__private::bindings::dohost::object::sql as wit;
use crate::error::{Error, Result, SqlError, SqlErrorCode};
use serde::de::{self, DeserializeOwned, IntoDeserializer, Visitor};
use std::collections::VecDeque;
use std::rc::Rc;

/// The object's SQL database. Get it from [`Storage::sql`](crate::Storage::sql).
///
/// Its writes commit atomically with the event's key-value writes and alarm, and are
/// durable before the event's response leaves. [`Storage::transaction`](crate::Storage::transaction)
/// covers SQL too; `BEGIN`/`COMMIT` in SQL are refused (`NotAuthorized`).
///
/// ```no_run
/// # use dohost_sdk::{Result, State};
/// # struct O { state: State }
/// # impl O { fn f(&self) -> Result<()> {
/// let sql = self.state.storage().sql();
/// let rows = sql.exec("DELETE FROM sessions WHERE expires < ?", [1_700_000_000i64])?;
/// println!("{} expired, database is {} bytes", rows.rows_written(), sql.database_size());
/// # Ok(()) } }
/// ```
#[derive(Debug, Clone, Copy, Default)]
pub struct Sql {
    _private: (),
}

/// A value bound to a parameter or read from a column: SQLite's five storage classes.
///
/// Rust values convert into it: integers, floats, `bool` (as 0 or 1, SQLite has no
/// booleans), strings, bytes (`Vec<u8>`, `&[u8]`) and `Option`s of these (`None` is NULL).
///
/// ```no_run
/// # use dohost_sdk::sql::Value;
/// assert_eq!(Value::from(true), Value::Integer(1));
/// assert_eq!(Value::from(None::<&str>), Value::Null);
/// assert_eq!(Value::from(vec![0u8, 1]), Value::Blob(vec![0, 1]));
/// ```
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// SQL NULL.
    Null,
    /// A 64-bit signed integer.
    Integer(i64),
    /// A 64-bit float.
    Real(f64),
    /// UTF-8 text.
    Text(String),
    /// Bytes.
    Blob(Vec<u8>),
}

macro_rules! value_from_integer {
    ($($t:ty),*) => {$(
        impl From<$t> for Value {
            fn from(v: $t) -> Self {
                Value::Integer(i64::from(v))
            }
        }
    )*};
}
value_from_integer!(i8, i16, i32, i64, u8, u16, u32, bool);

impl From<f64> for Value {
    fn from(v: f64) -> Self {
        Value::Real(v)
    }
}

impl From<f32> for Value {
    fn from(v: f32) -> Self {
        Value::Real(f64::from(v))
    }
}

impl From<&str> for Value {
    fn from(v: &str) -> Self {
        Value::Text(v.to_string())
    }
}

impl From<String> for Value {
    fn from(v: String) -> Self {
        Value::Text(v)
    }
}

impl From<&String> for Value {
    fn from(v: &String) -> Self {
        Value::Text(v.clone())
    }
}

impl From<Vec<u8>> for Value {
    fn from(v: Vec<u8>) -> Self {
        Value::Blob(v)
    }
}

impl From<&[u8]> for Value {
    fn from(v: &[u8]) -> Self {
        Value::Blob(v.to_vec())
    }
}

impl<T: Into<Value>> From<Option<T>> for Value {
    fn from(v: Option<T>) -> Self {
        v.map_or(Value::Null, Into::into)
    }
}

impl Value {
    fn to_wit(&self) -> wit::Value {
        match self {
            Value::Null => wit::Value::Null,
            Value::Integer(i) => wit::Value::Integer(*i),
            Value::Real(r) => wit::Value::Real(*r),
            Value::Text(t) => wit::Value::Text(t.clone()),
            Value::Blob(b) => wit::Value::Blob(b.clone()),
        }
    }

    fn from_wit(v: wit::Value) -> Self {
        match v {
            wit::Value::Null => Value::Null,
            wit::Value::Integer(i) => Value::Integer(i),
            wit::Value::Real(r) => Value::Real(r),
            wit::Value::Text(t) => Value::Text(t),
            wit::Value::Blob(b) => Value::Blob(b),
        }
    }
}

/// Raw rows answered as JSON: a blob becomes an array of byte values.
impl serde::Serialize for Value {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        match self {
            Value::Null => s.serialize_unit(),
            Value::Integer(i) => s.serialize_i64(*i),
            Value::Real(r) => s.serialize_f64(*r),
            Value::Text(t) => s.serialize_str(t),
            Value::Blob(b) => s.serialize_bytes(b),
        }
    }
}

/// What [`Sql::exec`] and [`Sql::query`] take as parameters, bound in order to `?` (or
/// `?NNN`): `()` for none, [`params!`](crate::params) for mixed types, an array, slice or
/// `Vec` of one type, or a tuple of up to 12 values.
///
/// ```no_run
/// # use dohost_sdk::{params, Result, Sql};
/// # fn f(sql: &Sql) -> Result<()> {
/// sql.exec("SELECT 1", ())?;
/// sql.exec("SELECT ?, ?", [1, 2])?;
/// sql.exec("SELECT ?, ?, ?", (1, "two", 3.0))?;
/// sql.exec("SELECT ?, ?, ?, ?", params![1, "x", None::<i64>, vec![0u8]])?;
/// # Ok(())
/// # }
/// ```
pub trait IntoParams {
    /// The parameters, in order.
    fn into_params(self) -> Vec<Value>;
}

impl IntoParams for () {
    fn into_params(self) -> Vec<Value> {
        Vec::new()
    }
}

impl<T: Into<Value>> IntoParams for Vec<T> {
    fn into_params(self) -> Vec<Value> {
        self.into_iter().map(Into::into).collect()
    }
}

impl<T: Into<Value>, const N: usize> IntoParams for [T; N] {
    fn into_params(self) -> Vec<Value> {
        self.into_iter().map(Into::into).collect()
    }
}

impl<T: Into<Value> + Clone> IntoParams for &[T] {
    fn into_params(self) -> Vec<Value> {
        self.iter().cloned().map(Into::into).collect()
    }
}

macro_rules! params_for_tuple {
    ($($name:ident),+) => {
        impl<$($name: Into<Value>),+> IntoParams for ($($name,)+) {
            #[allow(non_snake_case)]
            fn into_params(self) -> Vec<Value> {
                let ($($name,)+) = self;
                vec![$($name.into()),+]
            }
        }
    };
}
params_for_tuple!(A);
params_for_tuple!(A, B);
params_for_tuple!(A, B, C);
params_for_tuple!(A, B, C, D);
params_for_tuple!(A, B, C, D, E);
params_for_tuple!(A, B, C, D, E, F);
params_for_tuple!(A, B, C, D, E, F, G);
params_for_tuple!(A, B, C, D, E, F, G, H);
params_for_tuple!(A, B, C, D, E, F, G, H, I);
params_for_tuple!(A, B, C, D, E, F, G, H, I, J);
params_for_tuple!(A, B, C, D, E, F, G, H, I, J, K);
params_for_tuple!(A, B, C, D, E, F, G, H, I, J, K, L);

/// SQL parameters of mixed types, each converted into a [`Value`](crate::sql::Value).
///
/// ```no_run
/// # use dohost_sdk::{params, Result, Sql};
/// # fn f(sql: &Sql, title: &str) -> Result<()> {
/// sql.exec("INSERT INTO notes(title, body, pinned) VALUES (?, ?, ?)", params![title, None::<String>, true])?;
/// # Ok(())
/// # }
/// ```
#[macro_export]
macro_rules! params {
    () => {
        ::std::vec::Vec::<$crate::sql::Value>::new()
    };
    ($($value:expr),+ $(,)?) => {
        ::std::vec![$($crate::sql::Value::from($value)),+]
    };
}

pub(crate) fn sql_err(e: wit::Error) -> Error {
    let code = match e.code {
        wit::ErrorCode::Syntax => SqlErrorCode::Syntax,
        wit::ErrorCode::Constraint => SqlErrorCode::Constraint,
        wit::ErrorCode::Mismatch => SqlErrorCode::Mismatch,
        wit::ErrorCode::NotAuthorized => SqlErrorCode::NotAuthorized,
        wit::ErrorCode::TooLarge => SqlErrorCode::TooLarge,
        wit::ErrorCode::StorageFull => SqlErrorCode::StorageFull,
        wit::ErrorCode::Interrupted => SqlErrorCode::Interrupted,
        wit::ErrorCode::SqlDisabled => SqlErrorCode::SqlDisabled,
        wit::ErrorCode::Internal => SqlErrorCode::Internal,
    };
    Error::from(SqlError {
        code,
        message: e.message,
    })
}

fn decode_err(what: impl std::fmt::Display) -> Error {
    Error::from(SqlError {
        code: SqlErrorCode::Decode,
        message: what.to_string(),
    })
}

fn to_wit_params(params: impl IntoParams) -> Vec<wit::Value> {
    params.into_params().iter().map(Value::to_wit).collect()
}

impl Sql {
    pub(crate) fn new() -> Self {
        Sql { _private: () }
    }

    /// Runs `query` (one statement, or several separated by `;`, `params` bound to the
    /// last) and answers the last statement's rows, all of them. The host refuses a result
    /// larger than one call may answer (`TooLarge`): read those with [`query`](Sql::query).
    pub fn exec(&self, query: &str, params: impl IntoParams) -> Result<Rows> {
        let rows = wit::exec(query, &to_wit_params(params)).map_err(sql_err)?;
        Ok(Rows {
            columns: rows.columns,
            rows: rows
                .rows
                .into_iter()
                .map(|r| r.into_iter().map(Value::from_wit).collect())
                .collect(),
            rows_read: rows.rows_read,
            rows_written: rows.rows_written,
            last_insert_rowid: rows.last_insert_rowid,
        })
    }

    /// Runs `query` as [`exec`](Sql::exec) does and answers a [`Cursor`] over its rows,
    /// which fetches them from the host in chunks as it is iterated. The cursor is closed by
    /// the host at the end of the event that opened it: keep rows, not cursors.
    ///
    /// ```no_run
    /// # use dohost_sdk::{Result, Sql};
    /// # #[derive(serde::Deserialize)] struct Event { id: i64, body: String }
    /// # fn f(sql: &Sql) -> Result<()> {
    /// for row in sql.query("SELECT id, body FROM events ORDER BY id", ())? {
    ///     let event: Event = row?.decode()?;
    ///     # let _ = event;
    /// }
    /// let ids: Vec<i64> = sql.query("SELECT id FROM events", ())?
    ///     .decoded::<i64>()
    ///     .collect::<Result<_>>()?;
    /// # let _ = ids;
    /// # Ok(())
    /// # }
    /// ```
    pub fn query(&self, query: &str, params: impl IntoParams) -> Result<Cursor> {
        let cursor = wit::query(query, &to_wit_params(params)).map_err(sql_err)?;
        let columns: Rc<[String]> = cursor.column_names().into();
        Ok(Cursor {
            cursor,
            columns,
            buffered: VecDeque::new(),
            chunk: Cursor::DEFAULT_CHUNK,
            done: false,
        })
    }

    /// The database's size in bytes (pages in use times the page size); it counts in the
    /// object's storage quota. 0 before the first statement.
    pub fn database_size(&self) -> u64 {
        wit::database_size()
    }
}

/// The whole result of [`Sql::exec`]: the last statement's rows and what the statements did.
///
/// ```no_run
/// # use dohost_sdk::{Result, Sql};
/// # #[derive(serde::Deserialize)] struct User { id: i64, name: String, avatar: Option<Vec<u8>> }
/// # fn f(sql: &Sql) -> Result<()> {
/// let rows = sql.exec("SELECT id, name, avatar FROM users", ())?;
/// let users: Vec<User> = rows.rows()?;
/// let first: Option<User> = rows.first()?;
/// let (id, name): (i64, String) = sql.exec("SELECT id, name FROM users LIMIT 1", ())?.one()?;
/// # let _ = (users, first, id, name);
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct Rows {
    columns: Vec<String>,
    rows: Vec<Vec<Value>>,
    rows_read: u64,
    rows_written: u64,
    last_insert_rowid: i64,
}

impl Rows {
    /// The result's column names.
    pub fn columns(&self) -> &[String] {
        &self.columns
    }

    /// Every row as `T`. A row is an object of column name to value (a struct or map
    /// reads it by name, a tuple or `Vec` by position), and a row of one column can also be
    /// read as that column's value: `exec("SELECT count(*) ...")?.one::<i64>()`. Integers,
    /// reals, text and NULL (`None`) map naturally, an integer reads as a `bool` (non-zero
    /// is true) and a blob as bytes (`Vec<u8>`).
    pub fn rows<T: DeserializeOwned>(&self) -> Result<Vec<T>> {
        self.rows
            .iter()
            .enumerate()
            .map(|(i, row)| decode_row(&self.columns, row, i))
            .collect()
    }

    /// The only row as `T`; an error when there are none or several (use
    /// [`first`](Rows::first) when there may be none).
    pub fn one<T: DeserializeOwned>(&self) -> Result<T> {
        match self.rows.as_slice() {
            [row] => decode_row(&self.columns, row, 0),
            rows => Err(Error::msg(format!(
                "expected exactly one row, the statement answered {}",
                rows.len()
            ))),
        }
    }

    /// The first row as `T`, if any.
    pub fn first<T: DeserializeOwned>(&self) -> Result<Option<T>> {
        self.rows
            .first()
            .map(|row| decode_row(&self.columns, row, 0))
            .transpose()
    }

    /// The rows as values, in column order.
    pub fn raw(&self) -> &[Vec<Value>] {
        &self.rows
    }

    /// The rows as values, taken out.
    pub fn into_raw(self) -> Vec<Vec<Value>> {
        self.rows
    }

    /// How many rows the result has.
    pub fn len(&self) -> usize {
        self.rows.len()
    }

    /// True when the result has no rows.
    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    /// Rows read by all the statements (SQLite's count of rows visited).
    pub fn rows_read(&self) -> u64 {
        self.rows_read
    }

    /// Rows inserted, updated or deleted by all the statements.
    pub fn rows_written(&self) -> u64 {
        self.rows_written
    }

    /// The rowid of the last row inserted through this database (0 before any).
    pub fn last_insert_rowid(&self) -> i64 {
        self.last_insert_rowid
    }
}

/// The rows of [`Sql::query`], fetched from the host a chunk at a time as it is iterated.
/// Each item is a [`Row`]; [`decoded`](Cursor::decoded) maps them to a serde type.
pub struct Cursor {
    cursor: wit::Cursor,
    columns: Rc<[String]>,
    buffered: VecDeque<Vec<Value>>,
    chunk: u32,
    done: bool,
}

impl Cursor {
    const DEFAULT_CHUNK: u32 = 256;

    /// Fetch `rows` rows per host call (256 by default; at least 1).
    pub fn with_chunk_size(mut self, rows: u32) -> Self {
        self.chunk = rows.max(1);
        self
    }

    /// The result's column names.
    pub fn column_names(&self) -> &[String] {
        &self.columns
    }

    /// Rows read so far.
    pub fn rows_read(&self) -> u64 {
        self.cursor.rows_read()
    }

    /// Rows the statement wrote (all written before the first row is read).
    pub fn rows_written(&self) -> u64 {
        self.cursor.rows_written()
    }

    /// The remaining rows as `T` (as [`Rows::rows`] maps them).
    pub fn decoded<T: DeserializeOwned>(self) -> Decoded<T> {
        Decoded {
            cursor: self,
            _t: std::marker::PhantomData,
        }
    }
}

impl Iterator for Cursor {
    type Item = Result<Row>;

    fn next(&mut self) -> Option<Result<Row>> {
        if self.buffered.is_empty() && !self.done {
            match self.cursor.next(self.chunk) {
                Ok(rows) => {
                    // An empty chunk is the end; a short one may not be (the host may cap
                    // a chunk by size), so only an empty one stops the fetching.
                    self.done = rows.is_empty();
                    self.buffered.extend(
                        rows.into_iter()
                            .map(|r| r.into_iter().map(Value::from_wit).collect::<Vec<_>>()),
                    );
                }
                Err(e) => {
                    self.done = true;
                    return Some(Err(sql_err(e)));
                }
            }
        }
        let values = self.buffered.pop_front()?;
        Some(Ok(Row {
            columns: self.columns.clone(),
            values,
        }))
    }
}

impl std::fmt::Debug for Cursor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cursor")
            .field("columns", &self.columns)
            .field("buffered", &self.buffered.len())
            .field("done", &self.done)
            .finish()
    }
}

/// A [`Cursor`]'s rows as `T`, from [`Cursor::decoded`].
pub struct Decoded<T> {
    cursor: Cursor,
    _t: std::marker::PhantomData<fn() -> T>,
}

impl<T: DeserializeOwned> Iterator for Decoded<T> {
    type Item = Result<T>;

    fn next(&mut self) -> Option<Result<T>> {
        self.cursor.next().map(|row| row?.decode())
    }
}

/// One row of a [`Cursor`]: its values and the column names.
#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    columns: Rc<[String]>,
    values: Vec<Value>,
}

impl Row {
    /// The column names.
    pub fn columns(&self) -> &[String] {
        &self.columns
    }

    /// The values, in column order.
    pub fn values(&self) -> &[Value] {
        &self.values
    }

    /// The values, taken out.
    pub fn into_values(self) -> Vec<Value> {
        self.values
    }

    /// The value of `column`, if the row has it.
    pub fn value(&self, column: &str) -> Option<&Value> {
        let i = self.columns.iter().position(|c| c == column)?;
        self.values.get(i)
    }

    /// The value of `column` as `T`; an error when the row has no such column.
    pub fn get<T: DeserializeOwned>(&self, column: &str) -> Result<T> {
        let value = self
            .value(column)
            .ok_or_else(|| decode_err(format!("the row has no column {column:?}")))?;
        T::deserialize(ValueDe(value))
            .map_err(|e| decode_err(format!("column {column:?} is not the requested type: {e}")))
    }

    /// The row as `T` (as [`Rows::rows`] maps rows).
    pub fn decode<T: DeserializeOwned>(&self) -> Result<T> {
        T::deserialize(RowDe {
            columns: &self.columns,
            values: &self.values,
        })
        .map_err(|e| decode_err(format!("the row is not the requested type: {e}")))
    }
}

fn decode_row<T: DeserializeOwned>(
    columns: &[String],
    values: &[Value],
    index: usize,
) -> Result<T> {
    T::deserialize(RowDe { columns, values })
        .map_err(|e| decode_err(format!("row {index} is not the requested type: {e}")))
}

// Rows are read into serde types by two small deserializers, not through serde_json: JSON
// has no bytes and no integer-as-bool, and SQLite has no booleans.
type DeError = de::value::Error;

/// One column's value.
struct ValueDe<'a>(&'a Value);

impl<'de> de::Deserializer<'de> for ValueDe<'de> {
    type Error = DeError;

    fn deserialize_any<V: Visitor<'de>>(self, v: V) -> Result<V::Value, DeError> {
        match self.0 {
            Value::Null => v.visit_unit(),
            Value::Integer(i) => v.visit_i64(*i),
            Value::Real(r) => v.visit_f64(*r),
            Value::Text(t) => v.visit_borrowed_str(t),
            // As a sequence of byte values: what `Vec<u8>` and `serde_json::Value` take.
            Value::Blob(b) => v.visit_seq(de::value::SeqDeserializer::new(b.iter().copied())),
        }
    }

    fn deserialize_bool<V: Visitor<'de>>(self, v: V) -> Result<V::Value, DeError> {
        match self.0 {
            Value::Integer(i) => v.visit_bool(*i != 0),
            _ => self.deserialize_any(v),
        }
    }

    fn deserialize_option<V: Visitor<'de>>(self, v: V) -> Result<V::Value, DeError> {
        match self.0 {
            Value::Null => v.visit_none(),
            _ => v.visit_some(self),
        }
    }

    fn deserialize_bytes<V: Visitor<'de>>(self, v: V) -> Result<V::Value, DeError> {
        match self.0 {
            Value::Blob(b) => v.visit_borrowed_bytes(b),
            Value::Text(t) => v.visit_borrowed_bytes(t.as_bytes()),
            _ => self.deserialize_any(v),
        }
    }

    fn deserialize_byte_buf<V: Visitor<'de>>(self, v: V) -> Result<V::Value, DeError> {
        self.deserialize_bytes(v)
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        v: V,
    ) -> Result<V::Value, DeError> {
        v.visit_newtype_struct(self)
    }

    // A text column reads as a unit variant of an enum ("open", "closed").
    fn deserialize_enum<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _variants: &'static [&'static str],
        v: V,
    ) -> Result<V::Value, DeError> {
        match self.0 {
            Value::Text(t) => v.visit_enum(t.as_str().into_deserializer()),
            _ => self.deserialize_any(v),
        }
    }

    serde::forward_to_deserialize_any! {
        i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string
        unit unit_struct seq tuple tuple_struct map struct identifier ignored_any
    }
}

/// A whole row: a map of column name to value, a sequence in column order, or (when it has
/// one column) that column's value.
struct RowDe<'a> {
    columns: &'a [String],
    values: &'a [Value],
}

impl<'de> RowDe<'de> {
    fn single(&self) -> Option<ValueDe<'de>> {
        match self.values {
            [only] => Some(ValueDe(only)),
            _ => None,
        }
    }

    fn visit_map<V: Visitor<'de>>(self, v: V) -> Result<V::Value, DeError> {
        v.visit_map(de::value::MapDeserializer::new(
            self.columns
                .iter()
                .map(String::as_str)
                .zip(self.values.iter().map(ValueDe)),
        ))
    }
}

impl<'de> IntoDeserializer<'de, DeError> for ValueDe<'de> {
    type Deserializer = Self;

    fn into_deserializer(self) -> Self {
        self
    }
}

macro_rules! row_as_single_column {
    ($($method:ident),*) => {$(
        fn $method<V: Visitor<'de>>(self, v: V) -> Result<V::Value, DeError> {
            match self.single() {
                Some(value) => value.$method(v),
                None => Err(de::Error::custom(format!(
                    "a row of {} columns is not a single value",
                    self.values.len()
                ))),
            }
        }
    )*};
}

impl<'de> de::Deserializer<'de> for RowDe<'de> {
    type Error = DeError;

    fn deserialize_any<V: Visitor<'de>>(self, v: V) -> Result<V::Value, DeError> {
        self.visit_map(v)
    }

    row_as_single_column!(
        deserialize_bool,
        deserialize_i8,
        deserialize_i16,
        deserialize_i32,
        deserialize_i64,
        deserialize_i128,
        deserialize_u8,
        deserialize_u16,
        deserialize_u32,
        deserialize_u64,
        deserialize_u128,
        deserialize_f32,
        deserialize_f64,
        deserialize_char,
        deserialize_str,
        deserialize_string,
        deserialize_bytes,
        deserialize_byte_buf,
        deserialize_unit
    );

    fn deserialize_option<V: Visitor<'de>>(self, v: V) -> Result<V::Value, DeError> {
        match self.single() {
            Some(value) => value.deserialize_option(v),
            None => v.visit_some(self),
        }
    }

    fn deserialize_seq<V: Visitor<'de>>(self, v: V) -> Result<V::Value, DeError> {
        v.visit_seq(de::value::SeqDeserializer::new(
            self.values.iter().map(ValueDe),
        ))
    }

    fn deserialize_tuple<V: Visitor<'de>>(self, _len: usize, v: V) -> Result<V::Value, DeError> {
        self.deserialize_seq(v)
    }

    fn deserialize_tuple_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _len: usize,
        v: V,
    ) -> Result<V::Value, DeError> {
        self.deserialize_seq(v)
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        v: V,
    ) -> Result<V::Value, DeError> {
        v.visit_newtype_struct(self)
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        name: &'static str,
        variants: &'static [&'static str],
        v: V,
    ) -> Result<V::Value, DeError> {
        match self.single() {
            Some(value) => value.deserialize_enum(name, variants, v),
            None => self.visit_map(v),
        }
    }

    serde::forward_to_deserialize_any! {
        unit_struct map struct identifier ignored_any
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    fn row(columns: &[&str], values: Vec<Value>) -> Row {
        Row {
            columns: columns.iter().map(|c| c.to_string()).collect(),
            values,
        }
    }

    #[derive(Debug, Deserialize, PartialEq)]
    struct Item {
        id: i64,
        name: String,
        done: bool,
        score: Option<f64>,
        data: Option<Vec<u8>>,
    }

    #[test]
    fn a_row_maps_by_column_name() {
        let r = row(
            &["id", "name", "done", "score", "data"],
            vec![
                Value::Integer(7),
                Value::Text("ada".into()),
                Value::Integer(1),
                Value::Null,
                Value::Blob(vec![0, 255]),
            ],
        );
        let item: Item = r.decode().unwrap();
        assert_eq!(
            item,
            Item {
                id: 7,
                name: "ada".into(),
                done: true,
                score: None,
                data: Some(vec![0, 255]),
            }
        );
        let (id, name): (i64, String) = row(&["id", "name"], r.values()[..2].to_vec())
            .decode()
            .unwrap();
        assert_eq!((id, name.as_str()), (7, "ada"));
        let json: serde_json::Value = r.decode().unwrap();
        assert_eq!(
            json,
            serde_json::json!({"id": 7, "name": "ada", "done": 1, "score": null, "data": [0, 255]})
        );
        assert_eq!(r.get::<String>("name").unwrap(), "ada");
        assert_eq!(
            r.get::<i64>("nope").unwrap_err().sql_code(),
            Some(SqlErrorCode::Decode)
        );
    }

    #[test]
    fn a_row_of_one_column_reads_as_its_value() {
        let count = row(&["count(*)"], vec![Value::Integer(3)]);
        assert_eq!(count.decode::<i64>().unwrap(), 3);
        let none = row(&["max(x)"], vec![Value::Null]);
        assert_eq!(none.decode::<Option<i64>>().unwrap(), None);
        let err = row(&["a", "b"], vec![Value::Integer(1), Value::Integer(2)])
            .decode::<i64>()
            .unwrap_err();
        assert_eq!(err.sql_code(), Some(SqlErrorCode::Decode));
        let wrong = row(&["name"], vec![Value::Text("x".into())]).decode::<Item>();
        assert_eq!(wrong.unwrap_err().sql_code(), Some(SqlErrorCode::Decode));
    }

    #[test]
    fn rows_one_wants_exactly_one() {
        let rows = |n: usize| Rows {
            columns: vec!["n".into()],
            rows: (0..n as i64).map(|i| vec![Value::Integer(i)]).collect(),
            rows_read: 0,
            rows_written: 0,
            last_insert_rowid: 0,
        };
        assert!(rows(0).one::<i64>().is_err());
        assert_eq!(rows(1).one::<i64>().unwrap(), 0);
        assert!(rows(2).one::<i64>().is_err());
        assert_eq!(rows(0).first::<i64>().unwrap(), None);
        assert_eq!(rows(3).rows::<i64>().unwrap(), vec![0, 1, 2]);
    }

    #[test]
    fn parameters_convert() {
        assert_eq!(
            crate::params![1, "x", None::<i64>, vec![0u8], true, 2.5],
            vec![
                Value::Integer(1),
                Value::Text("x".into()),
                Value::Null,
                Value::Blob(vec![0]),
                Value::Integer(1),
                Value::Real(2.5),
            ]
        );
        assert_eq!((1, "a").into_params().len(), 2);
        assert_eq!(
            [3u32, 4].into_params(),
            vec![Value::Integer(3), Value::Integer(4)]
        );
        assert!(().into_params().is_empty());
        assert_eq!(
            serde_json::to_string(&vec![Value::Blob(vec![1]), Value::Null]).unwrap(),
            "[[1],null]"
        );
    }
}
