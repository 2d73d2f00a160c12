"""Why two runs differ: component by component, and inside them which message, part, tool, document or
parameter, down to the field.

List components are aligned by element digest (an element unchanged in content keeps its digest wherever
it moved), so an inserted message shows as one insertion, not as every later message changed.
"""

from __future__ import annotations

import difflib
import unicodedata
from dataclasses import dataclass
from typing import Any

from run_identity.core.canonical import canonicalize
from run_identity.core.composition import LIST_COMPONENTS, SINGLE_COMPONENTS
from run_identity.core.errors import CanonicalizationError
from run_identity.core.manifest import Manifest, ManifestComponent, ManifestElement

__all__ = ["Change", "ComponentDiff", "ManifestDiff", "Withheld", "diff_manifests", "json_changes"]

_ORDER = ("model", "operation", "instructions", "messages", "tools", "context", "parameters", "extensions")


@dataclass(frozen=True)
class Change:
    """One difference at ``path``: ``added``, ``removed``, ``changed``, ``reordered`` or ``withheld``."""

    path: str
    kind: str
    a: Any = None
    b: Any = None
    note: str = ""

    def to_json(self) -> dict[str, Any]:
        return {"path": self.path, "kind": self.kind, "a": self.a, "b": self.b, "note": self.note}


@dataclass(frozen=True)
class ComponentDiff:
    """One component: ``same``, ``changed``, ``only_a`` or ``only_b``, with its changes."""

    name: str
    status: str
    changes: tuple[Change, ...] = ()


@dataclass(frozen=True)
class ManifestDiff:
    """The difference between two runs' manifests."""

    identity_a: str
    identity_b: str
    components: tuple[ComponentDiff, ...]

    @property
    def identical(self) -> bool:
        """Same identity: the same composition (whatever either manifest withholds)."""
        return self.identity_a == self.identity_b

    def to_json(self) -> dict[str, Any]:
        return {
            "identical": self.identical,
            "identity_a": self.identity_a,
            "identity_b": self.identity_b,
            "components": [
                {"name": c.name, "status": c.status, "changes": [x.to_json() for x in c.changes]}
                for c in self.components
            ],
        }


def _same(a: Any, b: Any) -> bool:
    """Equal as canonical JSON (so 1 and 1.0 are the same value)."""
    try:
        return canonicalize(a) == canonicalize(b)
    except CanonicalizationError:
        return bool(a == b) and type(a) is type(b)


def _join(path: str, key: str | int) -> str:
    return f"{path}[{key}]" if isinstance(key, int) else f"{path}.{key}"


def json_changes(a: Any, b: Any, path: str) -> list[Change]:
    """Field-level differences between two JSON values."""
    if _same(a, b):
        return []
    if type(a) is dict and type(b) is dict:
        out: list[Change] = []
        for key in sorted(set(a) | set(b)):
            if key not in b:
                out.append(Change(_join(path, key), "removed", a[key]))
            elif key not in a:
                out.append(Change(_join(path, key), "added", None, b[key]))
            else:
                out.extend(json_changes(a[key], b[key], _join(path, key)))
        return out
    if type(a) is list and type(b) is list:
        return _list_changes(a, b, path)
    return [Change(path, "changed", a, b, _text_note(a, b))]


def _text_note(a: Any, b: Any) -> str:
    if type(a) is not str or type(b) is not str:
        return ""
    if unicodedata.normalize("NFC", a) == unicodedata.normalize("NFC", b):
        forms = [next((f for f in ("NFC", "NFD") if unicodedata.is_normalized(f, s)), "mixed") for s in (a, b)]
        return f"same text in another Unicode normalization ({forms[0]} in A, {forms[1]} in B)"
    if a.split() == b.split():
        return "differs only in whitespace"
    return ""


def _key_of(value: Any) -> str:
    try:
        return canonicalize(value).decode("utf-8")
    except CanonicalizationError:
        return repr(value)


def _list_changes(
    a: list[Any], b: list[Any], path: str, keys: tuple[list[str], list[str]] | None = None
) -> list[Change]:
    ka, kb = keys if keys is not None else ([_key_of(x) for x in a], [_key_of(x) for x in b])
    if sorted(ka) == sorted(kb):
        order = [ka.index(k) for k in kb] if len(set(ka)) == len(ka) else []
        note = f"same {len(a)} items in another order (B has A's {order})" if order else "same items, other order"
        return [Change(path, "reordered", None, None, note)]
    out: list[Change] = []
    matcher = difflib.SequenceMatcher(None, ka, kb, autojunk=False)
    for op, i1, i2, j1, j2 in matcher.get_opcodes():
        if op == "equal":
            continue
        paired = min(i2 - i1, j2 - j1) if op == "replace" else 0
        for k in range(paired):
            out.extend(_item_changes(a[i1 + k], b[j1 + k], path, i1 + k, j1 + k))
        for i in range(i1 + paired, i2):
            out.append(Change(f"{path}[{i}]", "removed", a[i], None, "only in A"))
        for j in range(j1 + paired, j2):
            out.append(Change(f"{path}[{j}]", "added", None, b[j], "only in B"))
    return out


def _item_changes(a: Any, b: Any, path: str, i: int, j: int) -> list[Change]:
    where = f"{path}[{i}]" if i == j else f"{path}[{i}→{j}]"
    if isinstance(a, Withheld) or isinstance(b, Withheld):
        side = "A" if isinstance(a, Withheld) else "B"
        return [Change(where, "withheld", a, b, f"withheld in {side}; the digests differ")]
    if type(a) is dict and type(b) is dict and type(a.get("parts")) is list and type(b.get("parts")) is list:
        out = [
            c for k in sorted((set(a) | set(b)) - {"parts"}) for c in json_changes(a.get(k), b.get(k), _join(where, k))
        ]
        return out + _list_changes(a["parts"], b["parts"], f"{where}.parts")
    return json_changes(a, b, where)


@dataclass(frozen=True)
class Withheld:
    """An element a manifest withholds: only its digest is known."""

    digest: str


def _element_value(e: ManifestElement) -> Any:
    return Withheld(e.digest) if e.withheld else e.value


def _component_changes(name: str, a: ManifestComponent, b: ManifestComponent) -> list[Change]:
    if a.withheld or b.withheld:
        side = "A" if a.withheld else "B"
        return [Change(name, "withheld", a.digest, b.digest, f"content withheld in {side}; the digests differ")]
    if a.elements is None or b.elements is None:
        return json_changes(a.value, b.value, name)
    ea, eb = a.elements, b.elements
    values_a = [_element_value(e) for e in ea]
    values_b = [_element_value(e) for e in eb]
    return _list_changes(values_a, values_b, name, ([e.digest for e in ea], [e.digest for e in eb]))


def _component_value(c: ManifestComponent) -> Any:
    """What a component holds, as shown: its value, its elements' values, or its digest when withheld."""
    if c.withheld:
        return Withheld(c.digest)
    if c.elements is not None:
        return [_element_value(e) for e in c.elements]
    return c.value


def diff_manifests(a: Manifest, b: Manifest) -> ManifestDiff:
    """Compare two manifests component by component (equal digests mean equal content)."""
    names = [n for n in _ORDER if n in a.components or n in b.components]
    names += sorted(n for n in set(a.components) | set(b.components) if n not in names)
    out = []
    for name in names:
        ca, cb = a.components.get(name), b.components.get(name)
        if ca is None:
            assert cb is not None
            added = Change(name, "added", None, _component_value(cb), "only in B")
            out.append(ComponentDiff(name, "only_b", (added,)))
        elif cb is None:
            removed = Change(name, "removed", _component_value(ca), None, "only in A")
            out.append(ComponentDiff(name, "only_a", (removed,)))
        elif ca.digest == cb.digest:
            out.append(ComponentDiff(name, "same"))
        else:
            out.append(ComponentDiff(name, "changed", tuple(_component_changes(name, ca, cb))))
    return ManifestDiff(a.identity, b.identity, tuple(out))


assert set(_ORDER) == set(SINGLE_COMPONENTS) | set(LIST_COMPONENTS)
