"""Plain JSON values from client request arguments and responses, without consuming or coercing anything."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

__all__ = ["CaptureError", "get", "omitted", "plain", "reusable"]

from run_identity.core.errors import RunIdentityError


class CaptureError(RunIdentityError):
    """A request could not be turned into a composition (raised only in strict mode)."""


_SCALARS = (str, int, float, bool, type(None))


def omitted(value: object) -> bool:
    """Whether ``value`` is a client library's omitted-argument sentinel."""
    # openai's Omit/NotGiven and anthropic's equivalents: sentinels the libraries strip from the body.
    return type(value).__name__ in ("Omit", "NotGiven")


def _is_plain(value: Any) -> bool:
    """Whether ``value`` holds only dicts, lists and JSON scalars (exact types) and no omitted sentinel."""
    kind = type(value)
    if kind is dict:
        for item in value.values():
            k = type(item)
            if not (k is str or k is int or k is float or k is bool or item is None or _is_plain(item)):
                return False
        return True
    if kind is list:
        for item in value:
            k = type(item)
            if not (k is str or k is int or k is float or k is bool or item is None or _is_plain(item)):
                return False
        return True
    return False


def plain(value: Any, path: str = "") -> Any:
    """``value`` as plain JSON-like Python: mappings as dicts, sequences as lists, models dumped.

    Values that already are plain JSON (the common case) are returned as they are, not copied; the mappings
    copy what they change. Scalars are kept as they are (a NaN stays a NaN, so that the composition check
    rejects it with its path); a value with no JSON meaning raises CaptureError.
    """
    if _is_plain(value):
        return value
    return _converted(value, path)


def _converted(value: Any, path: str) -> Any:
    if type(value) in _SCALARS:
        return value
    if isinstance(value, Mapping):
        return {k: _converted(v, f"{path}.{k}") for k, v in value.items() if not omitted(v)}
    dump = getattr(value, "model_dump", None)
    if dump is not None:
        return _converted(dump(mode="json", by_alias=True, exclude_unset=True), path)
    if isinstance(value, (list, tuple)):
        return [_converted(v, f"{path}[{i}]") for i, v in enumerate(value)]
    if isinstance(value, _SCALARS):  # str/int/float subclasses such as enum members
        return value
    raise CaptureError(f"{path or 'request'}: a {type(value).__name__} has no JSON form")


def reusable(kwargs: dict[str, Any], names: Iterable[str]) -> None:
    """Replace one-shot iterators among ``kwargs[names]`` by lists, so capturing them consumes nothing."""
    for name in names:
        value = kwargs.get(name)
        if value is None or omitted(value) or isinstance(value, (list, tuple, str, Mapping)):
            continue
        if hasattr(type(value), "__next__") and iter(value) is value:  # a one-shot iterator (a generator...)
            kwargs[name] = list(value)


def get(obj: Any, name: str) -> Any:
    """A member of a response object or of its JSON form (dict); None when absent."""
    if type(obj) is dict:
        return obj.get(name)
    return getattr(obj, name, None)
