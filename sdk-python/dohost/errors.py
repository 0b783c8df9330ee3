"""The SDK's exceptions: storage and SQL errors with their code, and errors that answer with a
status."""

from componentize_py_types import Err


class StorageError(Exception):
    """A storage call failed; nothing was changed. `code` is the WIT error code in kebab
    case ('key-too-large', 'value-too-large', 'too-many-keys', 'storage-full',
    'no-transaction', 'invalid-argument', 'internal'); `message` names the limit or cause."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message


class SqlError(Exception):
    """A SQL statement failed; nothing of it was applied (what the event ran before it
    stands). `code` is the WIT error code in kebab case ('syntax', 'constraint', 'mismatch',
    'not-authorized', 'too-large', 'storage-full', 'interrupted', 'sql-disabled',
    'internal'); `message` is SQLite's, or the host's naming the limit."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message


class HttpError(Exception):
    """Raised from `fetch`, answers `status` with `message` as the body (as a Rust SDK
    `Error::with_status` does). Any other exception is a bare 500, its message logged."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


class CallError(Exception):
    """A call to another object failed: `code` is 'unknown-binding', 'invalid-id',
    'deadlock', 'object-failed' or 'unavailable'."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message


def kebab(enum_value) -> str:
    """A WIT enum case as the WIT spells it (`VALUE_TOO_LARGE` -> 'value-too-large')."""
    return enum_value.name.lower().replace("_", "-")


def raising(convert):
    """A caller of WIT functions that raises `convert(err)` where componentize-py would
    raise its `Err` for a WIT `result`'s error."""

    def call(f, *args):
        try:
            return f(*args)
        except Err as e:
            raise convert(e.value) from None

    return call


# Storage's, SQL's and other objects' errors are records with a code; the host's refusals on
# sockets and streams are sentences.
storage_call = raising(lambda e: StorageError(kebab(e.code), e.message))
sql_call = raising(lambda e: SqlError(kebab(e.code), e.message))
objects_call = raising(lambda e: CallError(kebab(e.code), e.message))
host_call = raising(RuntimeError)
