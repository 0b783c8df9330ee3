"""An object's storage: JSON values by default (as the Rust SDK stores them, so every
language reads the same data), raw bytes on request, transactions, the alarm, and the
SQL database (`storage.sql`)."""

import builtins
import json
from contextlib import contextmanager
from datetime import datetime, timedelta
from typing import Any, Dict, Iterator, List, Optional, Union

from wit_world.imports import alarms, storage

from .errors import storage_call as _call
from .sql import SqlStorage

_MISSING = object()


def encode(value: Any) -> bytes:
    """JSON text, as the Rust SDK stores a value. bytes are refused (use `put_bytes`), so a
    value is never stored in a form another language cannot read back."""
    if isinstance(value, (bytes, bytearray)):
        raise TypeError("storage values are JSON: store bytes with put_bytes")
    try:
        return json.dumps(value, separators=(",", ":"), allow_nan=False).encode()
    except (TypeError, ValueError) as e:
        raise TypeError(f"cannot store {type(value).__name__} as JSON: {e}") from None


def decode(raw: bytes) -> Any:
    return json.loads(raw)


class Storage:
    """The object's private, transactional key-value storage. All writes of one event
    commit together, and are durable before its response leaves."""

    # The object's SQLite database, as Cloudflare's `ctx.storage.sql`.
    sql = SqlStorage()

    def get(self, key: str, default: Any = None) -> Any:
        raw = _call(storage.get, key)
        return default if raw is None else decode(raw)

    def put(self, key: str, value: Any) -> None:
        _call(storage.put, key, encode(value))

    def get_bytes(self, key: str) -> Optional[bytes]:
        return _call(storage.get, key)

    def put_bytes(self, key: str, value: bytes) -> None:
        if not isinstance(value, (bytes, bytearray)):
            raise TypeError("put_bytes stores bytes; use put for other values")
        _call(storage.put, key, bytes(value))

    def delete(self, key: str) -> bool:
        """True when the key existed."""
        return _call(storage.delete, key)

    def get_many(self, keys: List[str]) -> Dict[str, Any]:
        """The entries that exist among `keys`."""
        found: Dict[str, Any] = {}
        for batch in self._batches(keys):
            for k, raw in _call(storage.get_many, batch):
                found[k] = decode(raw)
        return found

    def put_many(self, entries: Dict[str, Any]) -> None:
        """All or none, however many: split under the host's limit in one transaction."""
        items = [(k, encode(v)) for k, v in entries.items()]
        with self.transaction():
            for batch in self._batches(items):
                _call(storage.put_many, batch)

    def delete_many(self, keys: List[str]) -> int:
        """How many of the keys existed."""
        count = 0
        with self.transaction():
            for batch in self._batches(keys):
                count += _call(storage.delete_many, batch)
        return count

    def list(
        self,
        prefix: Optional[str] = None,
        start: Optional[str] = None,
        end: Optional[str] = None,
        reverse: bool = False,
        limit: Optional[int] = None,
        keys_only: bool = False,
    ) -> Union[Dict[str, Any], List[str]]:
        """Entries in key order (descending with `reverse`) as a dict, or just the keys."""
        options = storage.ListOptions(
            start=start, end=end, prefix=prefix, reverse=reverse, limit=limit
        )
        entries = _call(storage.list, options)
        if keys_only:
            return [k for k, _ in entries]
        return {k: decode(raw) for k, raw in entries}

    def delete_all(self) -> None:
        _call(storage.delete_all)

    def limits(self) -> storage.StorageLimits:
        return storage.get_limits()

    @contextmanager
    def transaction(self) -> Iterator[None]:
        """Writes inside commit together with the event when the block ends normally, and
        are rolled back when it raises (the exception goes on). Transactions nest."""
        _call(storage.transaction_begin)
        try:
            yield
        except BaseException:
            _call(storage.transaction_rollback)
            raise
        _call(storage.transaction_commit)

    # The alarm: at most one per object, stored with the object's writes.

    def set_alarm(self, at: Union[datetime, int]) -> None:
        """Schedules the alarm at a datetime, or at milliseconds since the Unix epoch."""
        ms = int(at.timestamp() * 1000) if isinstance(at, datetime) else int(at)
        _call(alarms.set_alarm, ms)

    def set_alarm_in(self, delay: Union[timedelta, float]) -> None:
        """Schedules the alarm `delay` from now (a timedelta, or seconds)."""
        seconds = delay.total_seconds() if isinstance(delay, timedelta) else float(delay)
        self.set_alarm(datetime.now().timestamp() * 1000 + seconds * 1000)

    def get_alarm(self) -> Optional[int]:
        """The pending alarm's time in milliseconds since the epoch, if any."""
        return _call(alarms.get_alarm)

    def delete_alarm(self) -> None:
        _call(alarms.delete_alarm)

    def _batches(self, items: builtins.list) -> Iterator[builtins.list]:
        size = max(1, storage.get_limits().max_keys_per_call)
        for i in range(0, len(items), size):
            yield items[i : i + size]
