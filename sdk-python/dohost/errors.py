"""The SDK's exceptions: storage errors with their code, and errors that answer with a status."""

from componentize_py_types import Err


class StorageError(Exception):
    """A storage call failed; nothing was changed. `code` is the WIT error code in kebab
    case ('key-too-large', 'value-too-large', 'too-many-keys', 'storage-full',
    'no-transaction', 'invalid-argument', 'internal'); `message` names the limit or cause."""

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


def storage_error(err: Err) -> StorageError:
    return StorageError(kebab(err.value.code), err.value.message)


def call_error(err: Err) -> CallError:
    return CallError(kebab(err.value.code), err.value.message)
