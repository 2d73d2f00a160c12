"""The span processor: a signed identity on every declared GenAI span, and its manifest as a log event.

``on_start`` runs synchronously on the thread that starts the span. For a GenAI span (one with
``gen_ai.operation.name`` at start, or one :func:`run_identity.start_genai_span` started) it looks up the
active :class:`~run_identity.otel.declare.Declaration` in the span's parent context (then in the current
context), claims it, computes the identity of the declared composition and its binding statement for
this span, and sets the ``run_identity.*`` attributes. It never reads the composition back from span
attributes. Other spans are not touched; GenAI spans without an applicable declaration are counted and
left as they are.

Signing is inline (in ``on_start``) for the library's own :class:`~run_identity.core.keys.Ed25519Signer`, and
off the application's thread (:mod:`run_identity.otel._background`) for any other signer, an HSM or a KMS that
may wait on the network; ``background_signing`` chooses explicitly. Off the thread, a worker signs the
statement while the LLM call runs, and the processor's ``_on_ending`` hook puts ``run_identity.signature``
on the span when it ends (waiting for the worker if the span ends first), so exporters always see it, then
emits the run's manifest; manifests of spans that never end go out at shutdown. A full worker queue, or an
SDK where the hook cannot set attributes, makes ``on_start`` sign and emit inline instead.

Why not off the thread for a key file too: a local Ed25519 signature costs about two bare spans of CPU
cycles here, but the hand-off, and two cores running Python (trading the cache lines of the objects both
touch), gave most of that back on the application's thread; docs/integration.md has the figures and
bench/bench_processor.py prints both modes.

It never raises into the application: a composition that cannot be identified (or a signer or logs
pipeline that fails) is logged once per distinct reason, counted, and the span gets ``run_identity.error``
with the reason. ``strict=True`` raises instead, for tests and CI (a failure on the signing worker is
raised when the span ends).
"""

from __future__ import annotations

import contextlib
import logging
import threading
import weakref
from collections.abc import Callable

from opentelemetry import context as context_api
from opentelemetry._logs import LoggerProvider
from opentelemetry.sdk.trace import ReadableSpan, Span, SpanProcessor

from run_identity.core.attributes import (
    RUN_IDENTITY_DECLARED_AT,
    RUN_IDENTITY_ERROR,
    RUN_IDENTITY_ID,
    RUN_IDENTITY_KEY_ID,
    RUN_IDENTITY_SALT_ID,
    RUN_IDENTITY_SIGNATURE,
    RUN_IDENTITY_SPEC_VERSION,
)
from run_identity.core.digest import identity_of_new
from run_identity.core.errors import UnclaimedDeclarationError
from run_identity.core.keys import Ed25519Signer, Signer, sign_or_raise
from run_identity.core.signing import SignedRun
from run_identity.core.statement import BindingStatement, encode_signature, format_timestamp, run_statement
from run_identity.otel._background import Job, SigningWorker, attach, ending_attach_works, replace_attributes
from run_identity.otel.coverage import Coverage
from run_identity.otel.declare import Declaration, UnclaimedSink, current_declaration
from run_identity.otel.manifest_export import GEN_AI_REQUEST_MODEL, ManifestEmitter

__all__ = ["GEN_AI_OPERATION_NAME", "Coverage", "IdentitySpanProcessor"]

#: The statement's attributes, put on the span before its signature is ready; a span that ends without one
#: carries run_identity.error instead of them (docs/spec.md §9.1: never both).
_STATEMENT_ATTRIBUTES = (
    RUN_IDENTITY_ID,
    RUN_IDENTITY_KEY_ID,
    RUN_IDENTITY_SPEC_VERSION,
    RUN_IDENTITY_DECLARED_AT,
    RUN_IDENTITY_SALT_ID,
)

GEN_AI_OPERATION_NAME = "gen_ai.operation.name"
_LOG = logging.getLogger("run_identity")
_MAX_REASON = 500
_MAX_LOGGED_REASONS = 256
_MAX_JOBS = 10_000
# Indexes of the counters, in the order of the fields of Coverage.
_GENAI_SPANS, _IDENTIFIED, _UNDECLARED, _FAILED, _EMITTED, _EMIT_FAILED, _UNCLAIMED = range(7)


def _reason(exc: BaseException) -> str:
    text = f"{type(exc).__name__}: {exc}"
    return text if len(text) <= _MAX_REASON else text[: _MAX_REASON - 1] + "…"


class IdentitySpanProcessor(SpanProcessor, UnclaimedSink):
    """Binds declared compositions to GenAI spans in ``on_start`` (see the module docstring).

    ``signer`` signs every binding statement (load it once, e.g. with :func:`run_identity.load_signer`).
    ``logger_provider`` receives the manifests (default: the global one); ``emit_manifests=False`` turns
    them off. ``salt`` is the deployment's blinding salt (empty by default). ``background_signing`` signs
    off the application's thread (default: for signers other than :class:`Ed25519Signer`, where the SDK
    allows it); a span that ends waits at most ``signing_timeout`` seconds for its signature. Raises
    ValueError for a ``signer`` without ``key_id``/``sign`` or a non-bytes ``salt``.
    """

    def __init__(
        self,
        signer: Signer,
        *,
        logger_provider: LoggerProvider | None = None,
        strict: bool = False,
        salt: bytes = b"",
        emit_manifests: bool = True,
        background_signing: bool | None = None,
        signing_timeout: float = 10.0,
    ) -> None:
        if not (isinstance(getattr(signer, "key_id", None), str) and callable(getattr(signer, "sign", None))):
            raise ValueError("signer must have a 'key_id' string and a 'sign(data) -> bytes' method")
        if type(salt) is not bytes:
            raise ValueError("salt must be bytes")
        self._signer = signer
        self._strict = strict
        self._salt = salt
        self._emitter = ManifestEmitter(logger_provider) if emit_manifests else None
        self._lock = threading.Lock()
        self._counts = [0, 0, 0, 0, 0, 0, 0]  # the fields of Coverage, in order (manifests_lost apart)
        self._logged: set[str] = set()
        if background_signing is None:
            background_signing = type(signer) is not Ed25519Signer
        # Where the SDK's locked attribute setter works (checked once), our string attributes go through it:
        # the public setter's per-value cleaning costs about a quarter of a bare span for five of them.
        self._raw_attributes = ending_attach_works()
        self._worker = (
            SigningWorker(housekeeping=self._emit_unended)
            if background_signing and self._raw_attributes
            else None
        )
        self._signing_timeout = signing_timeout
        # id(span) -> (span weakref, job) while its signature is being made, until the span ends. The weakref
        # tells a reused id from its span; entries of spans dropped unended are purged past _MAX_JOBS.
        self._jobs: dict[int, tuple[weakref.ref[Span], Job]] = {}
        self._loss_sources: list[Callable[[], int]] = []
        self._span_loss_sources: list[Callable[[], int]] = []

    @property
    def strict(self) -> bool:
        return self._strict

    @property
    def signer(self) -> Signer:
        """The signer of binding statements (client integrations sign run receipts with it too)."""
        return self._signer

    @property
    def salt(self) -> bytes:
        """The deployment's blinding salt (empty by default)."""
        return self._salt

    @property
    def background_signing(self) -> bool:
        """Whether signatures are made off the application's thread."""
        return self._worker is not None

    @property
    def logger_provider(self) -> LoggerProvider | None:
        """Where manifests (and receipts) go; None when manifests are off."""
        return self._emitter.logger_provider if self._emitter is not None else None

    def count_manifest_losses(self, source: Callable[[], int]) -> None:
        """Add ``source()`` (manifests an export queue took and then lost) to ``Coverage.manifests_lost``."""
        self._loss_sources.append(source)

    def count_span_losses(self, source: Callable[[], int]) -> None:
        """Add ``source()`` (run spans a span export queue dropped or lost) to ``Coverage.spans_lost``."""
        self._span_loss_sources.append(source)

    @property
    def coverage(self) -> Coverage:
        """The counters now (a run is counted once its signature is made)."""
        lost = sum(source() for source in self._loss_sources)
        spans_lost = sum(source() for source in self._span_loss_sources)
        with self._lock:
            c = self._counts
            return Coverage(c[0], c[1], c[2], c[3], c[4], c[5], lost, c[6], spans_lost)

    def _count(self, outcome: int, *, genai_span: bool = True) -> None:
        with self._lock:
            if genai_span:
                self._counts[_GENAI_SPANS] += 1
            self._counts[outcome] += 1

    def _log_once(self, reason: str, message: str) -> None:
        with self._lock:
            if reason in self._logged or len(self._logged) >= _MAX_LOGGED_REASONS:
                return
            self._logged.add(reason)
        _LOG.warning("%s: %s (further occurrences are counted, not logged)", message, reason)

    def on_start(self, span: Span, parent_context: context_api.Context | None = None) -> None:
        try:
            self._on_start(span, parent_context)
        except Exception as exc:
            if self._strict:
                raise
            # Only a defect could get here (expected failures are handled in _bind); still never raise.
            self._log_once(_reason(exc), "run_identity: on_start failed")

    def _on_start(self, span: Span, parent_context: context_api.Context | None) -> None:
        attributes = span.attributes
        operation = attributes.get(GEN_AI_OPERATION_NAME) if attributes else None
        if operation is None:
            # Not a GenAI span, unless start_genai_span started it (its declaration is in the parent context).
            if parent_context is None:
                return
            declaration = current_declaration(parent_context)
            if declaration is None or not declaration.targeted:
                return
        else:
            declaration = current_declaration(parent_context)
            if declaration is None and parent_context is not None:
                declaration = current_declaration()
            if declaration is None:
                self._count(_UNDECLARED)
                return
            if not declaration.targeted:
                model = attributes.get(GEN_AI_REQUEST_MODEL)  # type: ignore[union-attr]
                if not declaration.applies_to(operation, model):
                    if not declaration.claimed:
                        declaration.missed(self, operation, model)
                    self._count(_UNDECLARED)
                    return
        if not declaration.claim():
            self._count(_UNDECLARED)
            return
        self._bind(span, declaration)

    def unclaimed(self, declaration: Declaration, reason: str) -> None:
        """A ``declare`` block exited with ``declaration`` claimed by no span: count, log once, raise if strict."""
        self._count(_UNCLAIMED, genai_span=False)
        if self._strict:
            raise UnclaimedDeclarationError(reason)
        self._log_once(reason, "run_identity: a declaration was claimed by no span before its block exited")

    def _failed(self, declaration: Declaration, exc: Exception, message: str) -> str:
        reason = _reason(exc)
        declaration.error = reason
        self._count(_FAILED)
        self._log_once(reason, message)
        return reason

    def _bind(self, span: Span, declaration: Declaration) -> None:
        context = span.get_span_context()
        trace_id = format(context.trace_id, "032x")
        span_id = format(context.span_id, "016x")
        try:
            identity = identity_of_new(declaration.composition, salt=self._salt)
            statement = run_statement(
                identity.id,
                trace_id=trace_id,
                span_id=span_id,
                key_id=self._signer.key_id,
                declared_at=format_timestamp(declaration.declared_ns),
                salt_id=identity.salt_id,
            )
        except Exception as exc:
            reason = self._failed(declaration, exc, "run_identity: a declared composition could not be identified")
            if self._strict:
                raise
            with contextlib.suppress(Exception):  # a span refusing attributes must not break the app
                span.set_attribute(RUN_IDENTITY_ERROR, reason)
            return
        declaration.identity = identity.id
        declaration.trace_id = trace_id
        declaration.span_id = span_id
        job = Job(self._sign_job, (identity, statement, context, declaration))
        worker = self._worker
        if worker is not None:
            jobs = self._jobs
            if len(jobs) >= _MAX_JOBS:
                self._purge_jobs()
            key = id(span)
            dropped = jobs.get(key)
            if dropped is not None:  # a span dropped unended had this address
                self._retire(dropped[1])
            jobs[key] = (weakref.ref(span), job)
            if worker.submit(job):
                attributes = statement.span_attributes(None)
                if not attach(span, attributes):
                    span.set_attributes(attributes)
                return
            jobs.pop(key, None)  # the queue is full: sign here, as without a worker
        self._sign_job(job)
        if job.signature is None:
            with contextlib.suppress(Exception):
                span.set_attribute(RUN_IDENTITY_ERROR, job.error)
        else:
            attributes = statement.span_attributes(job.signature)
            if not (self._raw_attributes and attach(span, attributes)):
                span.set_attributes(attributes)
            self._emit(job)
        if self._strict and job.exception is not None:
            raise job.exception

    def _sign_job(self, job: Job) -> None:
        """Sign the run's binding statement; records the outcome on ``job`` (never raises)."""
        statement: BindingStatement = job.data[1]
        try:
            job.signature = sign_or_raise(self._signer, statement.signing_input())
        except Exception as exc:
            job.error = self._failed(job.data[3], exc, "run_identity: a binding statement could not be signed")
            job.exception = exc
            return
        self._count(_IDENTIFIED)

    def _emit(self, job: Job) -> None:
        """Emit the manifest of a signed run (a failure is counted and kept on ``job``, not raised)."""
        if self._emitter is None or job.signature is None:
            return
        identity, statement, context, declaration = job.data
        try:
            run = SignedRun(identity, statement, job.signature)
            self._emitter.emit(run, context, model=declaration.model, provider=declaration.provider)
        except Exception as exc:
            self._count(_EMIT_FAILED, genai_span=False)
            job.exception = exc
            self._log_once(_reason(exc), "run_identity: a manifest could not be emitted")
            return
        self._count(_EMITTED, genai_span=False)

    def _purge_jobs(self) -> None:
        """Emit the manifests of spans that were dropped without ending, and forget their jobs."""
        for key, (ref, job) in list(self._jobs.items()):
            if ref() is None and self._jobs.pop(key, None) is not None:
                self._retire(job)

    def _retire(self, job: Job) -> None:
        """Emit the manifest of a run whose span will not end, now or as soon as it is signed (once)."""
        job.when_done(self._emit)

    def _emit_unended(self) -> None:
        """On the worker's timer: emit (once) the manifests of spans dropped without ending; their entries
        are removed by the application's thread (``_purge_jobs``), so memory stays bounded by _MAX_JOBS."""
        for ref, job in list(self._jobs.values()):
            if ref() is None:
                job.when_done(self._emit_and_release)

    def _emit_and_release(self, job: Job) -> None:
        """Emit, then drop the run's data: the entry of a span that will never end stays small until purged."""
        self._emit(job)
        job.data = None

    def _on_ending(self, span: Span) -> None:
        """Put the signature made on the worker on the span as it ends, then emit the run's manifest."""
        if not self._jobs:
            return
        entry = self._jobs.pop(id(span), None)
        if entry is None:
            return
        ref, job = entry
        if ref() is not span:  # the job of a span dropped unended at this address
            self._retire(job)
            return
        if not job.wait(self._signing_timeout):
            reason = f"the signature was not ready when the span ended (waited {self._signing_timeout} s)"
            self._log_once(reason, "run_identity: a span ended without its signature")
            replace_attributes(span, _STATEMENT_ATTRIBUTES, {RUN_IDENTITY_ERROR: reason})
            job.when_done(self._emit)  # its manifest goes out once the signature is made
            return
        if job.signature is not None:
            attach(span, {RUN_IDENTITY_SIGNATURE: encode_signature(job.signature)})
            job.when_done(self._emit)
        elif job.error is not None:
            replace_attributes(span, _STATEMENT_ATTRIBUTES, {RUN_IDENTITY_ERROR: job.error})
        if self._strict and job.exception is not None:
            raise job.exception

    def _emit_unended_at_shutdown(self) -> None:
        """Emit the manifests of spans that have not ended (at shutdown they never will be exported); a run
        whose span ended before its signature was made is emitted by ``when_done`` in ``_on_ending``."""
        entries, self._jobs = list(self._jobs.values()), {}
        for _, job in entries:
            if job.wait(0):
                job.when_done(self._emit)

    def on_end(self, span: ReadableSpan) -> None:
        return None

    def shutdown(self) -> None:
        """Finish the signatures under way and emit every manifest not yet emitted."""
        if self._worker is not None:
            self._worker.shutdown(self._signing_timeout)
            self._emit_unended_at_shutdown()

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        """Wait for the signing worker, then flush the manifests' LoggerProvider, so a TracerProvider flush
        also delivers manifests."""
        if self._worker is not None and not self._worker.flush(timeout_millis / 1000):
            return False
        if self._emitter is None:
            return True
        flush = getattr(self._emitter.logger_provider, "force_flush", None)
        if flush is None:
            return True
        try:
            return bool(flush(timeout_millis))
        except Exception:
            return False
