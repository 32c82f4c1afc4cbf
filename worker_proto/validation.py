"""Reading request data: typed fields that fail with the protocol's ArgumentError naming the
field. Every worker request handler reads its `data` through these, so a malformed request
gets an error response that says what was wrong, never a crash.
"""

from __future__ import annotations

from typing import Any

from .errors import ArgumentError

# The longest object id (routerId, transportId, producerId, ...) the worker accepts. Ids are
# kept and echoed in every dump: unbounded ones let three 1.5 MB router ids push worker.dump
# past MAX_FRAME_SIZE for good. The Python controller uses 36-character UUIDs.
MAX_ID_LENGTH = 256
# Request data may nest this deep, counting `data` itself as 1. The worker keeps parts of it
# (codec parameters) and echoes them in dumps, whose encoder refuses depth > 254 (orjson);
# real requests nest 6 deep at most.
MAX_DATA_DEPTH = 64
# The longest string (key or value) anywhere in request data. The longest real ones (a
# SHA-512 fingerprint, 191 chars; H.264 sprop-parameter-sets) are far below it.
MAX_STRING_LENGTH = 4096


def brief(text: str, limit: int = 80) -> str:
    """``text`` cut to ``limit`` characters for an error message ("..." marks the cut)."""
    return text if len(text) <= limit else text[: limit - 3] + "..."


class _TooBig(Exception):
    """Internal: where in the data a bound was broken (keys collected on the way out)."""

    def __init__(self, what: str) -> None:
        super().__init__(what)
        self.what = what
        self.path: list[str] = []


def check_request_data(data: Any, payload: bytes | None = None) -> None:
    """ArgumentError if request ``data`` nests deeper than MAX_DATA_DEPTH or holds a key or a
    string longer than MAX_STRING_LENGTH (checked once, as a request is decoded).

    Given the ``payload`` it was decoded from, a request that cannot break either bound is
    not walked: no string is longer than the payload, and no nesting deeper than its count
    of "{" and "[". That is nearly every request (a produce is ~1 KB), for ~1 µs.
    """
    if (payload is not None and len(payload) <= MAX_STRING_LENGTH
            and payload.count(b"{") + payload.count(b"[") <= MAX_DATA_DEPTH):
        return
    try:
        _check_value(data, 1)
    except _TooBig as exc:
        path = "data" + "".join(reversed(exc.path))
        raise ArgumentError(f"{path}: {exc.what}") from None


def _check_value(value: Any, depth: int) -> None:
    if depth > MAX_DATA_DEPTH:
        raise _TooBig(f"nested deeper than {MAX_DATA_DEPTH} levels")
    if isinstance(value, dict):
        items: Any = value.items()
    else:  # a list
        items = enumerate(value)
    for key, item in items:
        try:
            if isinstance(key, str) and len(key) > MAX_STRING_LENGTH:
                raise _TooBig(f"a key of {len(key)} characters (at most {MAX_STRING_LENGTH})")
            if isinstance(item, (dict, list)):
                _check_value(item, depth + 1)
            elif isinstance(item, str) and len(item) > MAX_STRING_LENGTH:
                raise _TooBig(f"a string of {len(item)} characters (at most "
                              f"{MAX_STRING_LENGTH})")
        except _TooBig as exc:
            exc.path.append(f"[{key}]" if isinstance(key, int) else f".{brief(key, 40)}")
            raise


def require_dict(data: Any, name: str) -> dict:
    if not isinstance(data, dict):
        raise ArgumentError(f"{name} must be an object")
    return data


def require_str(data: dict, key: str, *, name: str | None = None) -> str:
    value = data.get(key)
    if not isinstance(value, str) or not value:
        raise ArgumentError(f"{name or key} must be a non-empty string")
    return value


def require_id(data: dict, key: str, *, name: str | None = None) -> str:
    """An object id: a non-empty string of at most MAX_ID_LENGTH characters."""
    value = data.get(key)
    if not isinstance(value, str) or not value or len(value) > MAX_ID_LENGTH:
        got = f"{len(value)} characters" if isinstance(value, str) else type(value).__name__
        raise ArgumentError(f"{name or key} must be a non-empty string of at most "
                            f"{MAX_ID_LENGTH} characters, got {got}")
    return value


def require_int(data: dict, key: str, low: int, high: int, *, name: str | None = None) -> int:
    value = data.get(key)
    if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
        raise ArgumentError(f"{name or key} must be an integer in {low}–{high}, got {value!r}")
    return value


def optional_int(data: dict, key: str, low: int, high: int, *, name: str | None = None) -> int | None:
    if data.get(key) is None:
        return None
    return require_int(data, key, low, high, name=name)


def optional_bool(data: dict, key: str, default: bool) -> bool:
    value = data.get(key, default)
    if value is None:
        return default
    if not isinstance(value, bool):
        raise ArgumentError(f"{key} must be a boolean, got {value!r}")
    return value


def require_list(data: dict, key: str, *, name: str | None = None, allow_empty: bool = False) -> list:
    value = data.get(key)
    if not isinstance(value, list) or (not value and not allow_empty):
        raise ArgumentError(f"{name or key} must be a{'n' if allow_empty else ' non-empty'} array")
    return value
