"""The log operator's ``tlog`` commands: ``keygen`` and ``serve`` (docs/tlog.md)."""

from __future__ import annotations

import argparse
import os
import signal
import threading
from pathlib import Path
from typing import TYPE_CHECKING

from run_identity.cli import CliError
from run_identity.cli._args import check_port, check_positive, check_url

if TYPE_CHECKING:
    from run_identity.core.note import NoteSigner
    from run_identity.pipeline.tlog_serve import Witness

__all__ = ["register_commands"]

PRIVATE_KEY_FILE = "log.key"
VKEY_FILE = "log.vkey"


def _keygen(args: argparse.Namespace) -> int:
    from run_identity.core.note import NoteError, generate_signer

    try:
        signer = generate_signer(args.origin)
    except NoteError as exc:
        raise CliError(f"--origin {args.origin!r}: {exc}", exit_code=2) from None
    out = Path(args.out)
    key_path, vkey_path = out / PRIVATE_KEY_FILE, out / VKEY_FILE
    try:
        out.mkdir(parents=True, exist_ok=True)
        fd = os.open(key_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        raise CliError(f"{key_path} exists: a log keeps its key (move it away to start a new log)") from None
    except OSError as exc:
        raise CliError(f"{out}: cannot write the key ({exc.strerror})") from None
    try:
        os.write(fd, (signer.skey() + "\n").encode())
        os.fsync(fd)
    finally:
        os.close(fd)
    os.chmod(key_path, 0o600)
    vkey_path.write_text(signer.verifier.vkey() + "\n", encoding="utf-8")
    print(f"log key: {key_path} (private, mode 0600)")
    print(f"verifier key: {vkey_path}: {signer.verifier.vkey()}")
    return 0


def _load_signer(path: str) -> NoteSigner:
    from run_identity.core.note import NoteError, NoteSigner

    key = Path(path)
    try:
        mode = key.stat().st_mode
        text = key.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise CliError(f"--key {path}: cannot read ({getattr(exc, 'strerror', None) or exc})") from None
    if mode & 0o077:
        raise CliError(f"--key {path}: the private key is readable by others (mode {mode & 0o777:o}); chmod 600 it")
    try:
        return NoteSigner.from_skey(text)
    except NoteError as exc:
        raise CliError(f"--key {path}: {exc}") from None


def _witness(value: str) -> Witness:
    from run_identity.core.note import NoteError, NoteVerifier
    from run_identity.pipeline.tlog_serve import Witness

    url, separator, vkey = value.partition("=")
    if not separator:
        raise CliError(f"--witness {value!r}: give URL=VKEY (the witness's submission prefix and key)", exit_code=2)
    check_url(url, "--witness")
    try:
        return Witness(url, NoteVerifier.from_vkey(vkey))
    except NoteError as exc:
        raise CliError(f"--witness {url}: {exc}", exit_code=2) from None


def _serve(args: argparse.Namespace) -> int:
    from run_identity.core.keys import Keyring
    from run_identity.pipeline.tlog_serve import start_log_server
    from run_identity.pipeline.tlog_store import LogStore

    check_port(args.port, "--port")
    check_positive(args.checkpoint_interval, "--checkpoint-interval")
    if args.checkpoint_interval > 1:
        raise CliError("--checkpoint-interval: at most 1 (a checkpoint every second while entries arrive)", exit_code=2)
    if args.max_age is not None:
        check_positive(args.max_age, "--max-age")
    witnesses = [_witness(value) for value in args.witness]
    signer = _load_signer(args.key)
    if args.origin is not None and args.origin != signer.name:
        raise CliError(f"--origin {args.origin!r}: the key {args.key} is the key of origin {signer.name!r}")
    keyring = Keyring.from_jwks(args.keyring)
    store = LogStore(args.dir, signer)
    try:
        server = start_log_server(
            store,
            keyring,
            host=args.host,
            port=args.port,
            witnesses=witnesses,
            interval=args.checkpoint_interval,
            max_age=args.max_age,
            verbose=args.verbose,
        )
    except OSError as exc:
        store.close()
        raise CliError(f"cannot listen on {args.host}:{args.port}: {exc.strerror or exc}") from None
    stop = threading.Event()
    previous = {sig: signal.signal(sig, lambda *_: stop.set()) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        print(f"run-identity tlog serve: listening on {server.url}, log {signer.name} in {args.dir}", flush=True)
        print(f"run-identity tlog serve: tree size {store.published.size}, key {signer.verifier.vkey()}", flush=True)
        while not stop.wait(0.5):
            pass
    finally:
        server.stop()
        for sig, old in previous.items():
            signal.signal(sig, old)
    print(
        f"run-identity tlog serve: stopped at tree size {store.published.size} "
        f"({server.counts['accepted']} entries accepted, {server.counts['rejected']} requests refused)",
        flush=True,
    )
    return 0


def register_commands(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``keygen`` and ``serve`` to the ``tlog`` group."""
    p = commands.add_parser("keygen", help="create a log's private key (0600) and its verifier key log.vkey")
    p.add_argument("--out", required=True, metavar="DIR", help="folder for log.key and log.vkey")
    p.add_argument("--origin", required=True, metavar="NAME", help="the log's origin, e.g. example.com/runs")
    p.set_defaults(func=_keygen)

    p = commands.add_parser("serve", help="run the log: take manifests over OTLP/HTTP, publish tiles and checkpoints")
    p.add_argument("--dir", required=True, metavar="DIR", help="the log folder (tiles, checkpoint; servable as is)")
    p.add_argument("--key", required=True, metavar="LOG_KEY", help="the log's private key (tlog keygen)")
    p.add_argument("--origin", metavar="NAME", help="the log's origin (must be the key's; default: the key's)")
    p.add_argument("--keyring", required=True, metavar="JWKS", help="the producers' keys the log accepts")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=4320, help="port (default 4320; 0 picks a free one)")
    p.add_argument(
        "--witness",
        action="append",
        default=[],
        metavar="URL=VKEY",
        help="ask this witness to cosign each checkpoint (c2sp.org/tlog-witness); repeatable",
    )
    p.add_argument(
        "--checkpoint-interval",
        type=float,
        default=0.5,
        metavar="SECONDS",
        help="seconds between checkpoints while entries arrive (default 0.5, at most 1)",
    )
    p.add_argument(
        "--max-age",
        type=float,
        metavar="SECONDS",
        help="refuse statements declared more than SECONDS before they arrive (or 5 min ahead); default: no limit",
    )
    p.add_argument("--verbose", action="store_true", help="log every request")
    p.set_defaults(func=_serve)
