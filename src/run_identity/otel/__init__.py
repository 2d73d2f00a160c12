"""The producer inside the OpenTelemetry SDK: ``declare``, the span processor, sampler, manifest export, zero-code.

Built on :mod:`run_identity.core`; imports nothing above it (``pipeline``, ``integrations``, ``cli``).
"""
