"""What docs/spec.md defines: composition, canonical form, digests, identity, keys, statements, manifests, receipts.

The bottom layer: these modules import nothing else of the package, and nothing of OpenTelemetry's SDK.
"""
