"""The ``RUN_IDENTITY_*`` environment variables, read by the zero-code installation.

Under ``opentelemetry-instrument`` the package installs :class:`~run_identity.IdentitySpanProcessor` on the
SDK's global providers when ``RUN_IDENTITY_ENABLED`` is true (see ``docs/integration.md``). A bad value is
logged and replaced by the default; it never stops the application.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping

__all__ = [
    "RUN_IDENTITY_CAPTURE",
    "RUN_IDENTITY_ENABLED",
    "RUN_IDENTITY_EXPORT_DIR",
    "RUN_IDENTITY_MANIFESTS",
    "RUN_IDENTITY_SIGNING_KEY",
    "RUN_IDENTITY_SPOOL_DIR",
    "RUN_IDENTITY_STRICT",
    "env_bool",
    "env_str",
]

_LOG = logging.getLogger("run_identity")

RUN_IDENTITY_ENABLED = "RUN_IDENTITY_ENABLED"
"""
.. envvar:: RUN_IDENTITY_ENABLED

``true`` installs the identity processor under ``opentelemetry-instrument``; ``false`` (the default) does
nothing, so having the package installed changes nothing until asked.
"""

RUN_IDENTITY_SIGNING_KEY = "RUN_IDENTITY_SIGNING_KEY"
"""
.. envvar:: RUN_IDENTITY_SIGNING_KEY

Path of the Ed25519 private key (unencrypted PKCS#8 PEM, as written by ``run-identity keygen``) that signs
every binding statement. Required when enabled; when missing or unreadable, the processor is not installed
and the reason is logged.
"""

RUN_IDENTITY_STRICT = "RUN_IDENTITY_STRICT"
"""
.. envvar:: RUN_IDENTITY_STRICT

``true`` makes a declared composition that cannot be identified raise in the application (for tests and
CI). Default ``false``: it is logged, counted and marked with ``run_identity.error``.
"""

RUN_IDENTITY_MANIFESTS = "RUN_IDENTITY_MANIFESTS"
"""
.. envvar:: RUN_IDENTITY_MANIFESTS

``true`` (the default) emits each run's manifest as a ``run_identity.manifest`` log record to a
LoggerProvider of its own (the global resource) that exports through one
:class:`~run_identity.otel.manifest_export.ManifestExportQueue` to the exporters ``OTEL_LOGS_EXPORTER`` names
(configured by ``OTEL_EXPORTER_OTLP_*``, as for the application's logs) and to
``RUN_IDENTITY_EXPORT_DIR``; ``false`` only puts the identity on spans.
"""

RUN_IDENTITY_SPOOL_DIR = "RUN_IDENTITY_SPOOL_DIR"
"""
.. envvar:: RUN_IDENTITY_SPOOL_DIR

A directory: when set, every manifest exporter is wrapped in a :class:`~run_identity.pipeline.spool.SpoolingLogExporter`
spooling there (``logs.spool.binpb/``, then ``logs-1.spool.binpb/``...), so a batch the destination does not
take is kept on disk and sent again (also by ``run-identity spool flush``). Unset by default.
"""

RUN_IDENTITY_EXPORT_DIR = "RUN_IDENTITY_EXPORT_DIR"
"""
.. envvar:: RUN_IDENTITY_EXPORT_DIR

A directory: when set, spans are also written to ``<dir>/traces.jsonl`` and manifests to
``<dir>/manifests.jsonl`` as OTLP-JSON lines (:mod:`run_identity.otel.export_file`), beside whatever exporters
``OTEL_*`` configures. Unset by default.
"""

RUN_IDENTITY_CAPTURE = "RUN_IDENTITY_CAPTURE"
"""
.. envvar:: RUN_IDENTITY_CAPTURE

Comma-separated client integrations to enable when the processor is installed, e.g. ``openai,anthropic``
(:mod:`run_identity.integrations`): the composition of every call of those clients is then captured from
the request itself, and each finished call gets a signed receipt. They are enabled after the
instrumentors (``opentelemetry_post_instrument``), so an instrumentation's span takes the declaration.
Unknown names are logged and skipped; unset (the default) enables none.
"""

_TRUE = frozenset({"true", "1", "yes", "on"})
_FALSE = frozenset({"false", "0", "no", "off", ""})


def env_bool(name: str, default: bool, environ: Mapping[str, str] | None = None) -> bool:
    """The boolean value of ``name``; a value that is not a boolean is logged and ``default`` used."""
    raw = (os.environ if environ is None else environ).get(name)
    if raw is None:
        return default
    value = raw.strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    _LOG.warning("%s=%r is not a boolean (true/false); using the default %s", name, raw, str(default).lower())
    return default


def env_str(name: str, environ: Mapping[str, str] | None = None) -> str | None:
    """The value of ``name`` stripped of surrounding blanks, or None when unset or empty."""
    raw = (os.environ if environ is None else environ).get(name)
    if raw is None or not raw.strip():
        return None
    return raw.strip()
