"""The error tree of run_identity.

Every error the library raises derives from :class:`RunIdentityError`. Errors about input carry the
JSON path of the offending field so that one line tells a person what is wrong and where.
"""

from __future__ import annotations

__all__ = [
    "CanonicalizationError",
    "CompositionError",
    "KeyringError",
    "ManifestError",
    "RunIdentityError",
    "SigningError",
    "UnclaimedDeclarationError",
    "VerificationError",
]


class RunIdentityError(Exception):
    """Base class of every error raised by run_identity."""

    def diagnostics(self) -> str:
        """A longer, human-readable explanation; defaults to the message."""
        return str(self)


class _PathError(RunIdentityError):
    """An error about one field of a JSON-like input, located by its path."""

    def __init__(self, path: str, reason: str) -> None:
        self.path = path
        self.reason = reason
        super().__init__(f"{path}: {reason}" if path else reason)


class CanonicalizationError(_PathError):
    """A value cannot be put in canonical form (RFC 8785) without interpretation.

    ``path`` is the JSON path of the value (``messages[3].parts[0].content``; empty for the root),
    ``reason`` says what is wrong with it (``lone surrogate U+D800``, ``NaN is not allowed``...).
    """


class CompositionError(_PathError):
    """A composition does not follow the schema of ``docs/spec.md`` (missing field, unknown component...)."""


class KeyringError(RunIdentityError):
    """A key or keyring cannot be loaded, parsed or used."""


class SigningError(RunIdentityError):
    """A signer failed to produce a signature."""


class UnclaimedDeclarationError(RunIdentityError):
    """A declared composition was claimed by no GenAI span before its ``declare`` block exited.

    Raised when the block exits, only by a strict :class:`~run_identity.IdentitySpanProcessor`; ``reason``
    says why (no GenAI span started in the block, or the spans that did had another operation or model).
    """

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(f"a declaration was claimed by no span: {reason}")


class ManifestError(_PathError):
    """A manifest (JSON or protobuf form) is malformed."""


class VerificationError(RunIdentityError):
    """Verification failed; ``code`` is one of the stable result codes of ``docs/spec.md``."""

    def __init__(self, code: str, message: str) -> None:
        self.code = code
        super().__init__(f"{code}: {message}")
