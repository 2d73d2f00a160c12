"""Commands of the identity core: ``identity``, ``canonicalize``, ``keygen``."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from run_identity.cli import CliError
from run_identity.cli._input import load_json
from run_identity.core.canonical import canonicalize
from run_identity.core.composition import Composition
from run_identity.core.digest import compute_identity
from run_identity.core.errors import RunIdentityError
from run_identity.core.keys import generate_key_files

__all__ = ["register"]


class _Located(RunIdentityError):
    """An input error prefixed with the file it came from."""


def _where(source: str, exc: RunIdentityError) -> RunIdentityError:
    return _Located(f"{'<stdin>' if source == '-' else source}: {exc}")


def _identity(args: argparse.Namespace) -> int:
    doc = load_json(args.file)
    try:
        result = compute_identity(Composition.from_dict(doc))
    except RunIdentityError as exc:
        raise _where(args.file, exc) from None
    if args.json:
        out: dict[str, Any] = {
            "identity": result.id,
            "components": {
                name: (
                    {"digest": cd.digest, "elements": list(cd.element_digests)}
                    if cd.element_digests is not None
                    else {"digest": cd.digest}
                )
                for name, cd in sorted(result.components.items())
            },
        }
        sys.stdout.write(json.dumps(out, indent=2) + "\n")
        return 0
    width = max(len(n) for n in result.components)
    for name, cd in sorted(result.components.items()):
        sys.stdout.write(f"{name.ljust(width)}  {cd.digest}\n")
        for i, d in enumerate(cd.element_digests or ()):
            sys.stdout.write(f"{' ' * width}    [{i}] {d}\n")
    sys.stdout.write(f"{'identity'.ljust(width)}  {result.id}\n")
    return 0


def _canonicalize(args: argparse.Namespace) -> int:
    doc = load_json(args.file)
    try:
        data = canonicalize(doc)
    except RunIdentityError as exc:
        raise _where(args.file, exc) from None
    sys.stdout.buffer.write(data)
    sys.stdout.buffer.flush()
    return 0


def _keygen(args: argparse.Namespace) -> int:
    existing = Path(args.out) / "signing-key.pem"
    if existing.exists() and not args.force:
        raise CliError(
            f"{existing} exists; --force replaces it (the old key is kept as signing-key.<key id>.pem "
            "and stays in the trusted keys)"
        )
    key_path, jwks_path, key_id = generate_key_files(args.out)
    print(f"signing key   {key_path}  (mode 0600; keep it secret)")
    print(f"trusted keys  {jwks_path}  (give this to verifiers)")
    print(f"key id        {key_id}")
    return 0


def register(sub: Any) -> None:
    """Add the identity, canonicalize and keygen commands."""
    p = sub.add_parser("identity", help="component digests and identity of a composition (JSON)")
    p.add_argument("file", metavar="FILE|-", help="composition JSON file, or - for stdin")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.set_defaults(func=_identity)

    p = sub.add_parser("canonicalize", help="the exact RFC 8785 canonical bytes of a JSON document")
    p.add_argument("file", metavar="FILE|-", help="JSON file, or - for stdin")
    p.set_defaults(func=_canonicalize)

    p = sub.add_parser("keygen", help="create an Ed25519 signing key and a JWKS of trusted keys")
    p.add_argument("--out", required=True, metavar="DIR", help="folder for signing-key.pem and the JWKS")
    p.add_argument(
        "--force",
        action="store_true",
        help="replace an existing signing-key.pem (kept aside as signing-key.<key id>.pem, still trusted)",
    )
    p.set_defaults(func=_keygen)
