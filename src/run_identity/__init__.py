"""ai-run-identity: a verifiable identity for every AI run, carried by OpenTelemetry.

The public API is what ``__all__`` lists; everything else is private and may change.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from run_identity.core.canonical import canonicalize
from run_identity.core.composition import Composition, PreparedComponent
from run_identity.core.digest import SPEC_VERSION, ComponentDigest, Identity, compute_identity, prepare
from run_identity.core.errors import (
    CanonicalizationError,
    CompositionError,
    KeyringError,
    ManifestError,
    RunIdentityError,
    SigningError,
    UnclaimedDeclarationError,
    VerificationError,
)
from run_identity.core.keys import Ed25519Signer, Keyring, Signer, generate_key_files, load_signer
from run_identity.core.manifest import Manifest
from run_identity.core.parts import (
    BlobPart,
    Document,
    FilePart,
    FunctionTool,
    InputMessage,
    Model,
    Parameters,
    TextPart,
    ToolCallPart,
    ToolCallResponsePart,
    UriPart,
)
from run_identity.core.receipt import Receipt, ReceiptStatement, output_digest, receipt_of, sign_receipt, verify_receipt
from run_identity.core.signing import SignedRun, sign_run
from run_identity.core.statement import BindingStatement
from run_identity.core.version import __version__ as __version__
from run_identity.otel.declare import Declaration, declare

# The SDK side (processor, exporters, set-up) loads on first use, so that a verifier importing
# run_identity.verify never imports opentelemetry-sdk (docs/verify.md: the verifier is a separate party).
_LAZY = {
    "Coverage": "run_identity.otel.coverage",
    "IdentitySampler": "run_identity.otel.sampling",
    "IdentitySetup": "run_identity.pipeline.wiring",
    "IdentitySpanProcessor": "run_identity.otel.processor",
    "ManifestEmitter": "run_identity.otel.manifest_export",
    "ManifestExportQueue": "run_identity.otel.manifest_export",
    "SpanExportQueue": "run_identity.otel.span_export",
    "OtlpJsonFileLogExporter": "run_identity.otel.export_file",
    "OtlpJsonFileSpanExporter": "run_identity.otel.export_file",
    "file_exporters": "run_identity.otel.export_file",
    "setup": "run_identity.pipeline.wiring",
    "start_genai_span": "run_identity.otel.genai",
}


def __getattr__(name: str) -> object:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'run_identity' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


if TYPE_CHECKING:
    from run_identity.otel.coverage import Coverage
    from run_identity.otel.export_file import OtlpJsonFileLogExporter, OtlpJsonFileSpanExporter, file_exporters
    from run_identity.otel.genai import start_genai_span
    from run_identity.otel.manifest_export import ManifestEmitter, ManifestExportQueue
    from run_identity.otel.processor import IdentitySpanProcessor
    from run_identity.otel.sampling import IdentitySampler
    from run_identity.otel.span_export import SpanExportQueue
    from run_identity.pipeline.wiring import IdentitySetup, setup


__all__ = [
    "SPEC_VERSION",
    "BindingStatement",
    "BlobPart",
    "CanonicalizationError",
    "ComponentDigest",
    "Composition",
    "CompositionError",
    "Coverage",
    "Declaration",
    "Document",
    "Ed25519Signer",
    "FilePart",
    "FunctionTool",
    "Identity",
    "IdentitySampler",
    "IdentitySetup",
    "IdentitySpanProcessor",
    "InputMessage",
    "Keyring",
    "KeyringError",
    "Manifest",
    "ManifestEmitter",
    "ManifestError",
    "ManifestExportQueue",
    "Model",
    "OtlpJsonFileLogExporter",
    "OtlpJsonFileSpanExporter",
    "Parameters",
    "PreparedComponent",
    "Receipt",
    "ReceiptStatement",
    "RunIdentityError",
    "SignedRun",
    "Signer",
    "SigningError",
    "SpanExportQueue",
    "TextPart",
    "ToolCallPart",
    "ToolCallResponsePart",
    "UnclaimedDeclarationError",
    "UriPart",
    "VerificationError",
    "canonicalize",
    "compute_identity",
    "declare",
    "file_exporters",
    "generate_key_files",
    "load_signer",
    "output_digest",
    "prepare",
    "receipt_of",
    "setup",
    "sign_receipt",
    "sign_run",
    "start_genai_span",
    "verify_receipt",
]
