"""Schema checks of the single-valued components: model, operation, parameters, extensions.

Each ``_validate_*`` returns the value or raises CompositionError naming the field path; ``model_ok`` and
``parameters_ok`` are fast checks that are True only when the validator would accept the value unchanged,
so the hot path builds no paths. :mod:`run_identity.core.composition` puts them together with the list
components' checks (:mod:`run_identity.core._element_schema`).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any
from urllib.parse import parse_qsl

from run_identity.core._element_schema import fail, require_dict, require_list, require_str, type_name
from run_identity.core.canonical import MAX_DEPTH, json_path_join

__all__ = [
    "PARAMETER_ATTRIBUTES",
    "is_integer",
    "model_ok",
    "parameters_ok",
    "require_str_keys",
    "validate_extensions",
    "validate_model",
    "validate_operation",
    "validate_parameters",
]


#: Parameter key -> the OpenTelemetry GenAI span attribute it corresponds to (None: no attribute).
PARAMETER_ATTRIBUTES: dict[str, str | None] = {
    "temperature": "gen_ai.request.temperature",
    "top_p": "gen_ai.request.top_p",
    "top_k": "gen_ai.request.top_k",
    "max_tokens": "gen_ai.request.max_tokens",
    "seed": "gen_ai.request.seed",
    "stop_sequences": "gen_ai.request.stop_sequences",
    "frequency_penalty": "gen_ai.request.frequency_penalty",
    "presence_penalty": "gen_ai.request.presence_penalty",
    "choice_count": "gen_ai.request.choice.count",
    "output_type": "gen_ai.output.type",
    "response_format": None,
}
_NUMBER_PARAMS = frozenset({"temperature", "top_p", "top_k", "frequency_penalty", "presence_penalty"})
_INT_PARAMS = frozenset({"max_tokens", "seed", "choice_count"})

_MODEL_FIELDS = frozenset({"provider", "name", "revision", "weights_digest", "endpoint"})
_DIGEST_RE = re.compile(r"sha256:[0-9a-f]{64}")
_CREDENTIAL_NAME = re.compile(
    r"(?ai)^(x[-_])?(goog[-_])?(api[-_]?key|authorization|auth|password|passwd|secret|client[-_]?secret|"
    r"access[-_]?token|token|bearer|sig|signature|extra[-_]?headers|headers|cookie)\Z"
)
# In a URL query, bare ``key`` (Gemini) and ``code`` (Azure Functions) carry keys too.
_CREDENTIAL_QUERY = re.compile(r"(?ai)^(key|code)\Z")

# Endpoints repeat from call to call; strings are immutable, so a clean verdict can be remembered.
_CLEAN_ENDPOINTS: set[str] = set()
_CLEAN_ENDPOINTS_MAX = 256


def _check_endpoint(endpoint: str, path: str) -> None:
    if endpoint in _CLEAN_ENDPOINTS:
        return
    _check_endpoint_uncached(endpoint, path)
    if len(_CLEAN_ENDPOINTS) >= _CLEAN_ENDPOINTS_MAX:
        _CLEAN_ENDPOINTS.clear()
    _CLEAN_ENDPOINTS.add(endpoint)


#: The authority of a URL: after ``scheme:`` (if any) and ``//``, up to the first ``/``, ``?`` or ``#``.
_AUTHORITY = re.compile(r"^(?:[A-Za-z][A-Za-z0-9+.-]*:)?//([^/?#]*)")


def _check_endpoint_uncached(endpoint: str, path: str) -> None:
    """docs/spec.md §2.1: ``endpoint`` need not parse as a URL; it is read as one for two checks only (user
    information in its authority, credential-named query parameters), the same way whatever it holds."""
    authority = _AUTHORITY.match(endpoint)
    if authority is not None and "@" in authority.group(1):
        raise fail(path, "endpoint carries credentials (user info); credentials never enter a manifest")
    query = endpoint.split("#", 1)[0].partition("?")[2]
    for name, _ in parse_qsl(query, keep_blank_values=True):
        if _CREDENTIAL_NAME.match(name) or _CREDENTIAL_QUERY.match(name):
            raise fail(path, f"endpoint query parameter {name!r} looks like a credential")


def require_str_keys(obj: Mapping[Any, Any], path: str) -> None:
    for key in obj:
        if type(key) is not str:
            raise fail(path, f"object key {key!r} of type {type(key).__name__} is not a string")


def model_ok(m: dict[Any, Any]) -> bool:
    """True only when validate_model accepts ``m`` (string members, a clean endpoint already seen)."""
    for key, item in m.items():
        if type(key) is not str or key not in _MODEL_FIELDS or type(item) is not str:
            return False
    if "provider" not in m or "name" not in m or "weights_digest" in m:
        return False
    endpoint = m.get("endpoint")
    return endpoint is None or endpoint in _CLEAN_ENDPOINTS


def validate_model(value: object, path: str) -> dict[str, Any]:
    if type(value) is dict and model_ok(value):
        return value
    m = require_dict(value, path)
    require_str_keys(m, path)
    for key in m:
        if key not in _MODEL_FIELDS:
            raise fail(json_path_join(path, key), f"unknown model field (allowed: {', '.join(sorted(_MODEL_FIELDS))})")
    require_str(m, "provider", path)
    require_str(m, "name", path)
    for key in ("revision", "weights_digest", "endpoint"):
        require_str(m, key, path, optional=True)
    wd = m.get("weights_digest")
    if wd is not None and not _DIGEST_RE.fullmatch(wd):
        raise fail(json_path_join(path, "weights_digest"), "expected 'sha256:' and 64 lowercase hex digits")
    if m.get("endpoint") is not None:
        _check_endpoint(m["endpoint"], f"{path}.endpoint")
    return m


def validate_operation(value: object, path: str) -> str:
    if type(value) is not str or not value:
        got = "an empty string" if type(value) is str else type_name(value)
        raise fail(path, f"expected a non-empty string (a gen_ai.operation.name value), got {got}")
    return value


def _is_number(value: object) -> bool:
    return type(value) is int or type(value) is float


#: The largest integer every JSON reader holds exactly (docs/spec.md §3).
_MAX_SAFE_INTEGER = 2**53 - 1


def is_integer(value: object) -> bool:
    """docs/spec.md §2.4: an integer is a number whose value has no fractional part, within ±(2^53 - 1),
    whatever its spelling: ``256.0`` is the integer 256 (a JSON reader that yields doubles cannot tell them
    apart), and canonicalizes to ``256``."""
    if type(value) is int:
        return -_MAX_SAFE_INTEGER <= value <= _MAX_SAFE_INTEGER
    return type(value) is float and value.is_integer() and -_MAX_SAFE_INTEGER <= value <= _MAX_SAFE_INTEGER


_SEQUENCE_TYPES = frozenset({list, tuple})
# Parameter -> the exact types its value may have (stop_sequences: of strings, response_format: an object
# whose members are content like any other).
_PARAMETER_TYPES: dict[str, frozenset[type]] = {
    **dict.fromkeys(_NUMBER_PARAMS, frozenset({int, float})),
    **dict.fromkeys(_INT_PARAMS, frozenset({int})),
    "stop_sequences": _SEQUENCE_TYPES,
    "output_type": frozenset({str}),
    "response_format": frozenset({dict, str}),
}
_STRINGS = frozenset({str})


def parameters_ok(p: dict[Any, Any]) -> bool:
    """True only when validate_parameters accepts ``p``; one lookup per member instead of a chain of tests."""
    for key, item in p.items():
        kinds = _PARAMETER_TYPES.get(key)
        if kinds is None or type(key) is not str or type(item) not in kinds:
            return False
        if kinds is _SEQUENCE_TYPES and not _STRINGS.issuperset(map(type, item)):
            return False
    return True


def validate_parameters(value: object, path: str) -> dict[str, Any]:
    if type(value) is dict and parameters_ok(value):
        return value
    p = require_dict(value, path)
    require_str_keys(p, path)
    for key, v in p.items():
        if key in _NUMBER_PARAMS:
            if not _is_number(v):
                raise fail(json_path_join(path, key), f"expected a number, got {type_name(v)}")
        elif key in _INT_PARAMS:
            if not is_integer(v):
                got = f"{v!r} (not a whole number within ±(2^53 - 1))" if _is_number(v) else type_name(v)
                raise fail(json_path_join(path, key), f"expected an integer, got {got}")
        elif key == "stop_sequences":
            sub = json_path_join(path, key)
            seq = require_list(v, sub)
            for i, s in enumerate(seq):
                if type(s) is not str:
                    raise fail(f"{sub}[{i}]", f"expected a string, got {type_name(s)}")
        elif key == "output_type":
            if type(v) is not str:
                raise fail(json_path_join(path, key), f"expected a string, got {type_name(v)}")
        elif key == "response_format":
            if type(v) is not dict and type(v) is not str:
                raise fail(json_path_join(path, key), f"expected an object or a string, got {type_name(v)}")
        else:
            raise fail(
                json_path_join(path, key),
                "unknown parameter (provider-specific request fields belong under 'extensions')",
            )
    return p


def _scan_credentials(value: object, path: str, depth: int = 1) -> None:
    # Deeper values (and cycles) are left to canonicalize, which rejects them; nothing there reaches a digest.
    if depth > MAX_DEPTH:
        return
    if type(value) is dict:
        for key, v in value.items():
            if type(key) is str and _CREDENTIAL_NAME.match(key):
                raise fail(json_path_join(path, key), "looks like a credential; credentials never enter a manifest")
            _scan_credentials(v, json_path_join(path, key) if type(key) is str else path, depth + 1)
    elif type(value) is list or type(value) is tuple:
        for i, v in enumerate(value):
            _scan_credentials(v, f"{path}[{i}]", depth + 1)


def validate_extensions(value: object, path: str) -> dict[str, Any]:
    e = require_dict(value, path)
    _scan_credentials(e, path)
    return e
