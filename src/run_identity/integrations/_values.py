"""Plain JSON values from client request arguments and responses, without consuming or coercing anything."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

__all__ = ["CaptureError", "get", "plain", "reusable"]

from run_identity.errors import RunIdentityError


class CaptureError(RunIdentityError):
    """A request could not be turned into a composition (raised only in strict mode)."""


_SCALARS = (str, int, float, bool, type(None))


def _omitted(value: object) -> bool:
    # openai's Omit/NotGiven and anthropic's equivalents: sentinels the libraries strip from the body.
    return type(value).__name__ in ("Omit", "NotGiven")


def plain(value: Any, path: str = "") -> Any:
    """``value`` as plain JSON-like Python: mappings as dicts, sequences as lists, models dumped.

    Scalars are kept as they are (a NaN stays a NaN, so that the composition check rejects it with its path);
    a value with no JSON meaning raises CaptureError.
    """
    if type(value) in _SCALARS:
        return value
    if isinstance(value, Mapping):
        return {k: plain(v, f"{path}.{k}") for k, v in value.items() if not _omitted(v)}
    dump = getattr(value, "model_dump", None)
    if dump is not None:
        return plain(dump(mode="json", by_alias=True, exclude_unset=True), path)
    if isinstance(value, (list, tuple)):
        return [plain(v, f"{path}[{i}]") for i, v in enumerate(value)]
    if isinstance(value, _SCALARS):  # str/int/float subclasses such as enum members
        return value
    raise CaptureError(f"{path or 'request'}: a {type(value).__name__} has no JSON form")


def reusable(kwargs: dict[str, Any], names: Iterable[str]) -> None:
    """Replace one-shot iterators among ``kwargs[names]`` by lists, so capturing them consumes nothing."""
    for name in names:
        value = kwargs.get(name)
        if value is not None and not isinstance(value, (list, tuple, str, Mapping)) and iter(value) is value:
            kwargs[name] = list(value)


def get(obj: Any, name: str) -> Any:
    """A member of a response object or of its JSON form (dict); None when absent."""
    if type(obj) is dict:
        return obj.get(name)
    return getattr(obj, name, None)
