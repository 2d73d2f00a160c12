"""``tlog witness`` (a C2SP tlog-witness on loopback) and ``tlog witness-keygen`` (its cosigning key)."""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading
from pathlib import Path
from typing import Any

from run_identity.cli import CliError
from run_identity.cli._args import check_port
from run_identity.cli._tlog_args import load_vkey
from run_identity.core.note import TYPE_COSIGNATURE_V1, TYPE_ED25519, NoteError, NoteSigner, generate_signer
from run_identity.pipeline.tlog_witness import Witness, serve_witness
from run_identity.verify.render import esc

__all__ = ["register_commands"]

KEY_FILE = "witness.key"
VKEY_FILE = "witness.vkey"


def _keygen(args: argparse.Namespace) -> int:
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    key, vkey = out / KEY_FILE, out / VKEY_FILE
    if key.exists() and not args.force:
        raise CliError(f"{esc(key)} exists (--force replaces it)")
    try:
        signer = generate_signer(args.name, TYPE_COSIGNATURE_V1)
    except NoteError as exc:
        raise CliError(f"--name {esc(args.name)}: {exc}", exit_code=2) from None
    tmp = key.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.write(fd, (signer.skey() + "\n").encode("ascii"))
    finally:
        os.close(fd)
    os.replace(tmp, key)
    vkey.write_text(signer.verifier.vkey() + "\n", encoding="ascii")
    print(f"wrote {key} (mode 0600) and {vkey}: {signer.verifier.vkey()}")
    return 0


def _signer(path: str) -> NoteSigner:
    try:
        mode = Path(path).stat().st_mode
        text = Path(path).read_text(encoding="ascii")
    except (OSError, UnicodeDecodeError) as exc:
        raise CliError(f"--key {esc(path)}: cannot read ({exc})") from None
    if mode & 0o077:
        shown = f"{mode & 0o777:o}"
        raise CliError(f"--key {esc(path)}: the private key is readable by others (mode {shown}); chmod 600 it")
    try:
        signer = NoteSigner.from_skey(text)
    except NoteError as exc:
        raise CliError(f"--key {esc(path)}: {exc}") from None
    if signer.verifier.sig_type != TYPE_COSIGNATURE_V1:
        raise CliError(f"--key {esc(path)}: not a witness key (cosignature/v1, type 0x04): run tlog witness-keygen")
    return signer


def _witness(args: argparse.Namespace) -> int:
    check_port(args.port, "--port")
    signer = _signer(args.key)
    logs = [load_vkey(v, "--log-key") for v in args.log_key]
    for key in logs:
        if key.sig_type != TYPE_ED25519:
            raise CliError(f"--log-key {esc(key.name)}: a log key is an Ed25519 note key (type 0x01)")
    witness = Witness(signer, logs, args.dir)
    try:
        server = serve_witness(witness, args.host, args.port)
    except OSError as exc:
        raise CliError(f"cannot listen on {args.host}:{args.port} ({exc.strerror})") from None
    host, port = str(server.server_address[0]), int(server.server_address[1])
    print(f"listening on http://{host}:{port}/add-checkpoint", flush=True)
    print(f"witness {signer.verifier.vkey()} for {', '.join(k.name for k in logs)}", flush=True)
    stop = threading.Event()
    previous = {sig: signal.signal(sig, lambda *_: stop.set()) for sig in (signal.SIGTERM, signal.SIGINT)}
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        stop.wait()
    finally:
        server.shutdown()
        server.server_close()
        for sig, old in previous.items():
            signal.signal(sig, old)
    sys.stdout.write("witness stopped\n")
    return 0


def register_commands(sub: Any) -> None:
    """Add ``witness`` and ``witness-keygen`` to the ``tlog`` command's subparsers."""
    p = sub.add_parser("witness", help="a C2SP tlog-witness: cosign checkpoints that extend what it saw")
    p.add_argument("--dir", required=True, metavar="STATE", help="where the latest cosigned checkpoints are kept")
    p.add_argument("--key", required=True, metavar="WITNESS_KEY", help="the witness key (tlog witness-keygen)")
    p.add_argument("--log-key", action="append", required=True, metavar="LOG_VKEY", help="a log's key (repeatable)")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=4322, help="port (default 4322; 0: any free port)")
    p.set_defaults(func=_witness)

    p = sub.add_parser("witness-keygen", help="a witness's cosigning key (mode 0600) and its verifier key")
    p.add_argument("--out", required=True, metavar="DIR", help=f"writes {KEY_FILE} and {VKEY_FILE} here")
    p.add_argument("--name", required=True, metavar="NAME", help="the witness's name, e.g. witness.example/w1")
    p.add_argument("--force", action="store_true", help="replace an existing key")
    p.set_defaults(func=_keygen)
