"""Reading request data: typed fields that fail with the protocol's ArgumentError naming the
field. Every worker request handler reads its `data` through these, so a malformed request
gets an error response that says what was wrong, never a crash.
"""

from __future__ import annotations

from typing import Any

from .errors import ArgumentError


def require_dict(data: Any, name: str) -> dict:
    if not isinstance(data, dict):
        raise ArgumentError(f"{name} must be an object")
    return data


def require_str(data: dict, key: str, *, name: str | None = None) -> str:
    value = data.get(key)
    if not isinstance(value, str) or not value:
        raise ArgumentError(f"{name or key} must be a non-empty string")
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
