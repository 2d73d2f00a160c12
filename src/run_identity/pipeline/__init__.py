"""Delivery: ``setup()``'s wiring, the spool, the rotel collector and ``serve`` (the OTLP receiver of exports).

Built on :mod:`run_identity.core`, :mod:`run_identity.otel` and :mod:`run_identity.verify`.
"""
