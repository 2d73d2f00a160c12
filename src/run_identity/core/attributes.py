"""Names this project puts on the wire: span attributes, the manifest event, log record attributes.

These are fixed by docs/spec.md; nothing here lives under ``gen_ai.*``, which belongs to the OpenTelemetry
GenAI semantic conventions.
"""

from __future__ import annotations

#: The run's identity, ``sha256:<64 hex>``.
RUN_IDENTITY_ID = "run_identity.id"
#: Base64 Ed25519 signature over the DSSE PAE of the binding statement.
RUN_IDENTITY_SIGNATURE = "run_identity.signature"
#: RFC 7638 thumbprint of the signing key.
RUN_IDENTITY_KEY_ID = "run_identity.key_id"
#: The spec version the statement follows.
RUN_IDENTITY_SPEC_VERSION = "run_identity.spec_version"
#: When the composition was declared (RFC 3339, UTC, microseconds), part of the signed statement.
RUN_IDENTITY_DECLARED_AT = "run_identity.declared_at"
#: The blinding salt's public id (``sha256:<64 hex>``), set only when the identity is salted; part of the
#: signed statement.
RUN_IDENTITY_SALT_ID = "run_identity.salt_id"
#: The reason a declared composition could not be identified (set instead of the identity) or its binding
#: could not be signed (set beside the identity, with no signature).
RUN_IDENTITY_ERROR = "run_identity.error"

#: ``event_name`` of the OTLP log record that carries a run's manifest.
MANIFEST_EVENT_NAME = "run_identity.manifest"
#: ``event_name`` of the OTLP log record that carries a run's receipt.
RECEIPT_EVENT_NAME = "run_identity.receipt"
