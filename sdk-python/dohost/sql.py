"""SQL on the object's own SQLite database (`self.ctx.storage.sql`), Cloudflare's
`SqlStorage` in Python: `exec(query, *bindings)` runs at once and answers a cursor over
the rows, each a dict of column name to value."""

from typing import Any, Dict, Iterator, List

from wit_world.imports import sql

from .errors import sql_call as _call

# SQLite's integers are 64-bit signed.
_MIN, _MAX = -(1 << 63), (1 << 63) - 1


def to_value(v: Any) -> sql.Value:
    """A Python value as a SQL parameter: None, bool (as 0 or 1: SQLite has no booleans),
    int, float, str, or bytes-like."""
    if v is None:
        return sql.Value_Null()
    if isinstance(v, bool):
        return sql.Value_Integer(int(v))
    if isinstance(v, int):
        if not _MIN <= v <= _MAX:
            raise TypeError(f"{v} does not fit SQLite's 64-bit integers")
        return sql.Value_Integer(v)
    if isinstance(v, float):
        return sql.Value_Real(v)
    if isinstance(v, str):
        return sql.Value_Text(v)
    if isinstance(v, (bytes, bytearray, memoryview)):
        return sql.Value_Blob(bytes(v))
    raise TypeError(
        f"cannot bind {type(v).__name__} to a SQL parameter "
        "(None, bool, int, float, str or bytes)"
    )


def from_value(v: sql.Value) -> Any:
    """A column's value: None, int, float, str or bytes."""
    if isinstance(v, sql.Value_Null):
        return None
    return v.value


class SqlCursor:
    """The result of `SqlStorage.exec`: the last statement's rows, read once (iterating,
    `one`, `to_array` and `raw` each take the rows not yet read), and what the statements
    did."""

    def __init__(self, rows: sql.Rows) -> None:
        self.column_names: List[str] = list(rows.columns)
        self.rows_read: int = rows.rows_read
        self.rows_written: int = rows.rows_written
        # An addition to Cloudflare's cursor: the rowid of the last row inserted (0 before any).
        self.last_insert_rowid: int = rows.last_insert_rowid
        self._rows = rows.rows
        self._next = 0

    def _take(self) -> List[List[Any]]:
        rest = self._rows[self._next :]
        self._next = len(self._rows)
        return [[from_value(v) for v in row] for row in rest]

    def _dict(self, values: List[Any]) -> Dict[str, Any]:
        return dict(zip(self.column_names, values))

    def __iter__(self) -> Iterator[Dict[str, Any]]:
        return self

    def __next__(self) -> Dict[str, Any]:
        if self._next >= len(self._rows):
            raise StopIteration
        row = self._rows[self._next]
        self._next += 1
        return self._dict([from_value(v) for v in row])

    def to_array(self) -> List[Dict[str, Any]]:
        """The rows not yet read, as dicts."""
        return [self._dict(values) for values in self._take()]

    def one(self) -> Dict[str, Any]:
        """The only row; a ValueError when there are none or several."""
        rows = self.to_array()
        if len(rows) != 1:
            raise ValueError(f"expected exactly one row, the statement answered {len(rows)}")
        return rows[0]

    def raw(self) -> Iterator[List[Any]]:
        """The rows not yet read, as lists in column order."""
        return iter(self._take())


class SqlStorage:
    """The object's SQLite database. Its writes commit with the event's key-value writes
    (`storage.transaction()` covers both); BEGIN/COMMIT in SQL are refused."""

    def exec(self, query: str, *bindings: Any) -> SqlCursor:
        """Runs `query` (one statement, or several separated by `;`, the bindings going to
        the last one's `?`s) and answers a cursor over the last statement's rows. Raises
        SqlError when the statement fails."""
        params = [to_value(b) for b in bindings]
        return SqlCursor(_call(sql.exec, query, params))

    @property
    def database_size(self) -> int:
        """The database's size in bytes; it counts in the object's storage quota."""
        return sql.database_size()
