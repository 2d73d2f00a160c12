from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Manifest(_message.Message):
    __slots__ = ("spec_version", "identity", "components", "statement", "signature", "salt_id")
    SPEC_VERSION_FIELD_NUMBER: _ClassVar[int]
    IDENTITY_FIELD_NUMBER: _ClassVar[int]
    COMPONENTS_FIELD_NUMBER: _ClassVar[int]
    STATEMENT_FIELD_NUMBER: _ClassVar[int]
    SIGNATURE_FIELD_NUMBER: _ClassVar[int]
    SALT_ID_FIELD_NUMBER: _ClassVar[int]
    spec_version: str
    identity: str
    components: _containers.RepeatedCompositeFieldContainer[Component]
    statement: BindingStatement
    signature: bytes
    salt_id: str
    def __init__(self, spec_version: _Optional[str] = ..., identity: _Optional[str] = ..., components: _Optional[_Iterable[_Union[Component, _Mapping]]] = ..., statement: _Optional[_Union[BindingStatement, _Mapping]] = ..., signature: _Optional[bytes] = ..., salt_id: _Optional[str] = ...) -> None: ...

class Component(_message.Message):
    __slots__ = ("name", "digest", "value", "elements", "withheld")
    NAME_FIELD_NUMBER: _ClassVar[int]
    DIGEST_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    ELEMENTS_FIELD_NUMBER: _ClassVar[int]
    WITHHELD_FIELD_NUMBER: _ClassVar[int]
    name: str
    digest: str
    value: bytes
    elements: ElementList
    withheld: bool
    def __init__(self, name: _Optional[str] = ..., digest: _Optional[str] = ..., value: _Optional[bytes] = ..., elements: _Optional[_Union[ElementList, _Mapping]] = ..., withheld: _Optional[bool] = ...) -> None: ...

class ElementList(_message.Message):
    __slots__ = ("elements",)
    ELEMENTS_FIELD_NUMBER: _ClassVar[int]
    elements: _containers.RepeatedCompositeFieldContainer[Element]
    def __init__(self, elements: _Optional[_Iterable[_Union[Element, _Mapping]]] = ...) -> None: ...

class Element(_message.Message):
    __slots__ = ("digest", "value", "withheld")
    DIGEST_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    WITHHELD_FIELD_NUMBER: _ClassVar[int]
    digest: str
    value: bytes
    withheld: bool
    def __init__(self, digest: _Optional[str] = ..., value: _Optional[bytes] = ..., withheld: _Optional[bool] = ...) -> None: ...

class BindingStatement(_message.Message):
    __slots__ = ("spec_version", "identity", "trace_id", "span_id", "key_id", "declared_at", "salt_id")
    SPEC_VERSION_FIELD_NUMBER: _ClassVar[int]
    IDENTITY_FIELD_NUMBER: _ClassVar[int]
    TRACE_ID_FIELD_NUMBER: _ClassVar[int]
    SPAN_ID_FIELD_NUMBER: _ClassVar[int]
    KEY_ID_FIELD_NUMBER: _ClassVar[int]
    DECLARED_AT_FIELD_NUMBER: _ClassVar[int]
    SALT_ID_FIELD_NUMBER: _ClassVar[int]
    spec_version: str
    identity: str
    trace_id: str
    span_id: str
    key_id: str
    declared_at: str
    salt_id: str
    def __init__(self, spec_version: _Optional[str] = ..., identity: _Optional[str] = ..., trace_id: _Optional[str] = ..., span_id: _Optional[str] = ..., key_id: _Optional[str] = ..., declared_at: _Optional[str] = ..., salt_id: _Optional[str] = ...) -> None: ...
