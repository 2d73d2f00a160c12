"""Sign a run: identity of the composition, binding statement for one span, signature, manifest."""

from __future__ import annotations

from dataclasses import dataclass

from run_identity.core.composition import Composition
from run_identity.core.digest import Identity, compute_identity
from run_identity.core.keys import Signer, sign_or_raise
from run_identity.core.manifest import build_manifest_json
from run_identity.core.statement import BindingStatement, run_statement

__all__ = ["SignedRun", "sign_run"]


@dataclass(frozen=True)
class SignedRun:
    """A composition's identity bound to one span and signed."""

    identity: Identity
    statement: BindingStatement
    signature: bytes

    def span_attributes(self) -> dict[str, str]:
        """The ``run_identity.*`` attributes for the run's span."""
        return self.statement.span_attributes(self.signature)

    def manifest_json(self) -> bytes:
        """The canonical JSON manifest (the body of the ``run_identity.manifest`` log record)."""
        return build_manifest_json(self.identity, self.statement, self.signature)


def sign_run(
    composition: Composition,
    signer: Signer,
    *,
    trace_id: str,
    span_id: str,
    salt: bytes = b"",
    declared_at: str | None = None,
) -> SignedRun:
    """Compute the identity of ``composition`` and sign its binding to ``trace_id``/``span_id``.

    Raises CanonicalizationError or CompositionError (naming the field path) for content that cannot be
    identified, ManifestError for malformed ids, SigningError when the signer fails.
    """
    identity = compute_identity(composition, salt=salt)
    statement = run_statement(
        identity.id,
        trace_id=trace_id,
        span_id=span_id,
        key_id=signer.key_id,
        declared_at=declared_at,
        salt_id=identity.salt_id,
    )
    return SignedRun(identity, statement, sign_or_raise(signer, statement.signing_input()))
