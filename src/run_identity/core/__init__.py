"""The specification layer: canonical form, digests, statements, keys, manifests, Merkle trees and notes."""
