//! What objects' SQL may do: the platform's limits on statements and values, and an
//! authorizer refusing transactions, ATTACH, TEMP objects, internal names and PRAGMAs
//! outside a read-only allowlist. The host's own statements pass (`HostStatement`).

use rusqlite::hooks::{AuthAction, AuthContext, Authorization};
use rusqlite::limits::Limit;
use rusqlite::{Connection, config::DbConfig};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

/// The limits on objects' SQL (see the README's Limits table).
#[derive(Debug, Clone)]
pub struct SqlLimits {
    /// Longest statement text (bytes), `max_sql_statement_bytes`.
    pub max_statement_bytes: usize,
    /// Most bound parameters per statement, `max_sql_params`.
    pub max_params: usize,
    /// Most columns in a table or result, `max_sql_columns`.
    pub max_columns: usize,
    /// Largest string, blob or row (bytes), `max_sql_value_bytes`.
    pub max_value_bytes: usize,
    /// Largest database (bytes), `max_sql_database_bytes`; the object's storage quota
    /// (`max_object_bytes`, keys and values included) applies too.
    pub max_database_bytes: u64,
}

impl Default for SqlLimits {
    fn default() -> Self {
        // The original platform's (cloudflare-docs durable-objects/platform/limits).
        SqlLimits {
            max_statement_bytes: 100_000,
            max_params: 100,
            max_columns: 100,
            max_value_bytes: 2_000_000,
            max_database_bytes: 1 << 30,
        }
    }
}

/// Fixed limits of the platform, not configurable there either.
const MAX_EXPR_DEPTH: i32 = 100;
const MAX_COMPOUND_SELECT: i32 = 5;
const MAX_LIKE_PATTERN_BYTES: i32 = 50;
const MAX_TRIGGER_DEPTH: i32 = 10;

/// PRAGMAs an object may run: read-only inspection, and switches that change no stored data.
const PRAGMAS: &[&str] = &[
    "table_info",
    "table_xinfo",
    "table_list",
    "index_info",
    "index_xinfo",
    "index_list",
    "foreign_key_list",
    "foreign_key_check",
    "quick_check",
    "integrity_check",
    "optimize",
    // Not `defer_foreign_keys`: a deferred violation would fail the event's COMMIT, after
    // its handler returned and answered.
    "foreign_keys",
    "case_sensitive_like",
    "ignore_check_constraints",
    "legacy_alter_table",
    "recursive_triggers",
    "reverse_unordered_selects",
    "data_version",
    "page_count",
    "freelist_count",
    "page_size",
];

/// Raised while the host runs its own statements (transactions, savepoints, settings): the
/// authorizer lets those through.
#[derive(Clone, Default)]
pub struct HostStatement(Arc<AtomicBool>);

impl HostStatement {
    /// Runs `f` as the host.
    pub fn run<T>(&self, f: impl FnOnce() -> T) -> T {
        self.0.store(true, Ordering::Relaxed);
        let out = f();
        self.0.store(false, Ordering::Relaxed);
        out
    }
}

/// Sets the limits, the defensive mode and the authorizer on a new connection.
pub fn secure(
    conn: &mut Connection,
    limits: &SqlLimits,
    host: &HostStatement,
) -> rusqlite::Result<()> {
    let clamp = |n: usize| i32::try_from(n).unwrap_or(i32::MAX);
    conn.set_db_config(DbConfig::SQLITE_DBCONFIG_DEFENSIVE, true)?;
    conn.set_limit(Limit::SQLITE_LIMIT_LENGTH, clamp(limits.max_value_bytes))?;
    conn.set_limit(
        Limit::SQLITE_LIMIT_SQL_LENGTH,
        clamp(limits.max_statement_bytes),
    )?;
    conn.set_limit(Limit::SQLITE_LIMIT_COLUMN, clamp(limits.max_columns))?;
    conn.set_limit(
        Limit::SQLITE_LIMIT_VARIABLE_NUMBER,
        clamp(limits.max_params),
    )?;
    conn.set_limit(Limit::SQLITE_LIMIT_EXPR_DEPTH, MAX_EXPR_DEPTH)?;
    conn.set_limit(Limit::SQLITE_LIMIT_COMPOUND_SELECT, MAX_COMPOUND_SELECT)?;
    conn.set_limit(
        Limit::SQLITE_LIMIT_LIKE_PATTERN_LENGTH,
        MAX_LIKE_PATTERN_BYTES,
    )?;
    conn.set_limit(Limit::SQLITE_LIMIT_TRIGGER_DEPTH, MAX_TRIGGER_DEPTH)?;
    conn.set_limit(Limit::SQLITE_LIMIT_ATTACHED, 0)?;
    let host = host.0.clone();
    conn.authorizer(Some(move |ctx: AuthContext<'_>| {
        if host.load(Ordering::Relaxed) {
            Authorization::Allow
        } else {
            authorize(&ctx.action)
        }
    }))?;
    Ok(())
}

/// Whether `name` is one objects may not touch.
fn internal(name: &str) -> bool {
    let lower = name.to_ascii_lowercase();
    lower.starts_with("_cf_") || lower.starts_with("_dohost_")
}

fn authorize(action: &AuthAction<'_>) -> Authorization {
    use AuthAction as A;
    let allowed = match action {
        A::Transaction { .. } | A::Savepoint { .. } | A::Attach { .. } | A::Detach { .. } => false,
        A::CreateTempIndex { .. }
        | A::CreateTempTable { .. }
        | A::CreateTempTrigger { .. }
        | A::CreateTempView { .. } => false,
        A::Pragma {
            pragma_name,
            pragma_value,
        } => {
            let name = pragma_name.to_ascii_lowercase();
            // The size pragmas only read: `page_size = N` would change the file's layout.
            let reads_only = matches!(name.as_str(), "page_count" | "freelist_count" | "page_size");
            PRAGMAS.contains(&name.as_str()) && !(reads_only && pragma_value.is_some())
        }
        A::CreateVtable {
            module_name,
            table_name,
        } => matches!(*module_name, "fts5" | "rtree") && !internal(table_name),
        A::CreateTable { table_name }
        | A::DropTable { table_name }
        | A::Insert { table_name }
        | A::Delete { table_name }
        | A::Update { table_name, .. }
        | A::Read { table_name, .. }
        | A::AlterTable { table_name, .. }
        | A::Analyze { table_name }
        | A::DropVtable { table_name, .. } => !internal(table_name),
        A::CreateIndex {
            index_name,
            table_name,
        }
        | A::DropIndex {
            index_name,
            table_name,
        } => !internal(index_name) && !internal(table_name),
        A::CreateTrigger {
            trigger_name,
            table_name,
        }
        | A::DropTrigger {
            trigger_name,
            table_name,
        } => !internal(trigger_name) && !internal(table_name),
        A::CreateView { view_name } | A::DropView { view_name } => !internal(view_name),
        _ => true,
    };
    if allowed {
        Authorization::Allow
    } else {
        Authorization::Deny
    }
}

/// The sentence for a statement the authorizer refused (SQLite says only "not authorized").
pub fn refusal(query: &str) -> String {
    let head = query
        .trim_start()
        .split(|c: char| c.is_whitespace() || c == ';')
        .next()
        .unwrap_or("")
        .to_ascii_uppercase();
    let why = match head.as_str() {
        "BEGIN" | "COMMIT" | "END" | "ROLLBACK" | "SAVEPOINT" | "RELEASE" => {
            "SQL transactions are not allowed: use the storage transactions (transaction-begin/commit/rollback, or the SDK's transaction), which cover SQL and key-value writes together"
        }
        "ATTACH" | "DETACH" => "ATTACH is not allowed: an object has one database",
        "PRAGMA" => {
            "this PRAGMA is not allowed: objects may run read-only PRAGMAs (table_info, index_list, foreign_key_list, quick_check, ...) and switches such as foreign_keys"
        }
        _ => {
            "the statement is not allowed: it uses TEMP objects, a virtual table other than fts5/rtree, or a name starting with _cf_ or _dohost_ (reserved)"
        }
    };
    format!("not authorized: {why}")
}
