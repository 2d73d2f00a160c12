"""rotel logs processor: gives run_identity manifests (and run receipts) their own route through rotel.

rotel routes by signal type only: every log record goes through the logs pipeline to every logs exporter.
This processor makes the logs pipeline of one rotel instance carry exactly one stream:

* ``RUN_IDENTITY_ROUTE=manifests`` (the default): keep only the identity signal, the log records whose
  ``event_name`` is ``run_identity.manifest`` or ``run_identity.receipt`` (a receipt is verified together
  with its run's manifest); the logs exporter (named ``manifests`` in rotel.env) is then the manifests route.
* ``RUN_IDENTITY_ROUTE=others``: drop those and keep everything else, for a second rotel instance that
  carries the application's ordinary logs to their own backend.

Records are kept or dropped whole and never modified: the verifier checks every byte of a manifest body.

Loaded by rotel-agent (``--otlp-with-logs-processor`` / ``ROTEL_OTLP_WITH_LOGS_PROCESSOR``) into its embedded
Python interpreter, which is the host's Python, not the application's virtual environment: this file must
import nothing beyond the standard library.
"""

from __future__ import annotations

import os
import sys

MANIFEST_EVENT_NAME = "run_identity.manifest"
RECEIPT_EVENT_NAME = "run_identity.receipt"
OUR_EVENTS = frozenset({MANIFEST_EVENT_NAME, RECEIPT_EVENT_NAME})
_ROUTE = os.environ.get("RUN_IDENTITY_ROUTE", "manifests").strip().lower() or "manifests"
if _ROUTE not in ("manifests", "others"):
    print(
        f"rotel_manifest_router: RUN_IDENTITY_ROUTE={_ROUTE!r} is not 'manifests' or 'others'; using 'manifests'",
        file=sys.stderr,
    )
    _ROUTE = "manifests"
_KEEP_MANIFESTS = _ROUTE == "manifests"


def process_logs(resource_logs):  # type: ignore[no-untyped-def]
    """Keep the records of this instance's route in every scope of ``resource_logs``, in order."""
    for scope_logs in resource_logs.scope_logs:
        records = scope_logs.log_records
        kept = [r for r in records if (r.event_name in OUR_EVENTS) == _KEEP_MANIFESTS]
        if len(kept) != len(records):
            scope_logs.log_records = kept
