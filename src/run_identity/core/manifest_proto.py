"""The protobuf form of the manifest (proto/run_identity/v1/manifest.proto), both directions.

Values travel as their JCS bytes, so the protobuf form hashes to the same digests as the JSON form.
"""

from __future__ import annotations

from google.protobuf.message import DecodeError

from run_identity.core._proto import manifest_pb2 as pb
from run_identity.core.canonical import canonicalize
from run_identity.core.composition import LIST_COMPONENTS
from run_identity.core.errors import ManifestError
from run_identity.core.manifest import Manifest, ManifestComponent, ManifestElement
from run_identity.core.statement import BindingStatement
from run_identity.core.strict_json import StrictJsonError, loads_strict

__all__ = ["manifest_from_proto", "manifest_to_proto"]

_LIST = frozenset(LIST_COMPONENTS)


def manifest_to_proto(manifest: Manifest) -> bytes:
    """Serialize to the protobuf binary form. Raises CanonicalizationError for values that are not JSON."""
    msg = pb.Manifest(
        spec_version=manifest.spec_version,
        identity=manifest.identity,
        signature=manifest.signature,
        salt_id=manifest.salt_id or "",
    )
    s = manifest.statement
    msg.statement.CopyFrom(
        pb.BindingStatement(
            spec_version=s.spec_version,
            identity=s.identity,
            trace_id=s.trace_id,
            span_id=s.span_id,
            key_id=s.key_id,
            declared_at=s.declared_at,
            salt_id=s.salt_id or "",
        )
    )
    for name in sorted(manifest.components):
        c = manifest.components[name]
        comp = msg.components.add(name=name, digest=c.digest)
        if c.withheld:
            comp.withheld = True
        elif c.elements is not None:
            comp.elements.SetInParent()
            for i, e in enumerate(c.elements):
                if e.withheld:
                    comp.elements.elements.add(digest=e.digest, withheld=True)
                else:
                    value = canonicalize(e.value, f"components.{name}.elements[{i}].value")
                    comp.elements.elements.add(digest=e.digest, value=value)
        else:
            comp.value = canonicalize(c.value, f"components.{name}.value")
    return msg.SerializeToString(deterministic=True)


def _value(raw: bytes, path: str) -> object:
    """A value's JCS bytes read as the JSON form's values are (strictly; numbers as doubles)."""
    try:
        return loads_strict(raw, doubles=True)
    except StrictJsonError as exc:
        inner = exc.path if not exc.path or exc.path.startswith("[") else "." + exc.path
        where = f" (line {exc.line} column {exc.column})" if exc.line is not None else ""
        raise ManifestError(path + inner, f"value is not single-reading JSON: {exc.reason}{where}") from None


def manifest_from_proto(data: bytes) -> Manifest:
    """Parse the protobuf binary form. Raises ManifestError naming the field."""
    msg = pb.Manifest()
    try:
        msg.ParseFromString(data)
    except DecodeError as exc:
        raise ManifestError("", f"not a protobuf Manifest ({exc})") from None
    components: dict[str, ManifestComponent] = {}
    for i, c in enumerate(msg.components):
        path = f"components[{i}]"
        if c.name in components:
            raise ManifestError(path, f"component {c.name!r} appears twice")
        kind = c.WhichOneof("content")
        if kind == "withheld":
            components[c.name] = ManifestComponent(c.name, c.digest, withheld=True)
        elif kind == "elements":
            if c.name not in _LIST:
                raise ManifestError(path, f"{c.name!r} is not a list component")
            elements = []
            for j, e in enumerate(c.elements.elements):
                if e.WhichOneof("content") == "withheld":
                    elements.append(ManifestElement(e.digest, None, True))
                elif e.WhichOneof("content") == "value":
                    elements.append(ManifestElement(e.digest, _value(e.value, f"{path}.elements[{j}].value")))
                else:
                    raise ManifestError(f"{path}.elements[{j}]", "element has neither value nor withheld")
            components[c.name] = ManifestComponent(c.name, c.digest, elements=tuple(elements))
        elif kind == "value":
            if c.name in _LIST:
                raise ManifestError(path, f"{c.name!r} is a list component")
            components[c.name] = ManifestComponent(c.name, c.digest, value=_value(c.value, f"{path}.value"))
        else:
            raise ManifestError(path, "component has no content")
    doc = Manifest(
        spec_version=msg.spec_version,
        identity=msg.identity,
        components=components,
        statement=BindingStatement(
            identity=msg.statement.identity,
            trace_id=msg.statement.trace_id,
            span_id=msg.statement.span_id,
            key_id=msg.statement.key_id,
            declared_at=msg.statement.declared_at,
            spec_version=msg.statement.spec_version,
            salt_id=msg.statement.salt_id or None,
        ),
        signature=bytes(msg.signature),
        salt_id=msg.salt_id or None,
    )
    # The JSON reader is the one validator of digests, names and versions.
    return Manifest.from_json(doc.to_json())
