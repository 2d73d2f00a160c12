"""Issue 2 benchmark: canonicalize + digests + signature per call, as ratios measured in the same run.

Baselines: a bare OpenTelemetry SDK span (start + end, 12 attributes) and ``rfc8785.dumps`` of the same
composition. Compositions: small, typical, rag-large (bench/compositions.py), and typical with its
instructions and tools prepared once.
"""

from __future__ import annotations

import hashlib
import sys
from collections.abc import Callable
from pathlib import Path

import orjson
import rfc8785

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _timing import bare_span_call, fmt_us, interleaved
from compositions import rag_large, small, typical

from run_identity import Composition, Ed25519Signer, canonicalize, compute_identity, prepare, sign_run
from run_identity.core.statement import run_statement

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
SPAN_ID = "00f067aa0ba902b7"


def main() -> int:
    signer = Ed25519Signer.generate()
    cases = [("small", small()), ("typical", typical()), ("rag-large", rag_large())]
    prepared = typical()
    prepared["instructions"] = prepare("instructions", prepared["instructions"])
    prepared["tools"] = prepare("tools", prepared["tools"])
    cases.append(("typical (prepared)", prepared))
    calls: dict[str, Callable[[], object]] = {"bare": bare_span_call()}
    sizes: dict[str, float] = {}
    for name, doc in cases:
        plain = {k: (v.value if hasattr(v, "value") else v) for k, v in doc.items()}
        sizes[name] = len(canonicalize(plain)) / 1024

        def run(doc: dict[str, object] = doc) -> None:
            sign_run(Composition.from_dict(doc), signer, trace_id=TRACE_ID, span_id=SPAN_ID)

        def unsigned(doc: dict[str, object] = doc) -> None:
            identity = compute_identity(Composition.from_dict(doc))
            run_statement(identity.id, trace_id=TRACE_ID, span_id=SPAN_ID, key_id=signer.key_id).signing_input()

        calls[name] = run
        calls[name + " no sign"] = unsigned
        calls[name + " canonical"] = lambda plain=plain: canonicalize(plain)
        calls[name + " rfc8785"] = lambda plain=plain: rfc8785.dumps(plain)
    # The floor: what any identity of the prepared typical composition must pay per call in this interpreter,
    # whatever the code around it. The spec asks for a digest of each message, of the message list, of each
    # single-valued component and of the identity (instructions and tools are prepared), so: the signature,
    # one SHA-256 per digest, and one JSON write per message and per single-valued component.
    statement = run_statement("sha256:" + "0" * 64, trace_id=TRACE_ID, span_id=SPAN_ID, key_id=signer.key_id)
    signing_input = statement.signing_input()
    messages = prepared["messages"]
    assert isinstance(messages, list)
    singles = [prepared[name] for name in ("model", "operation", "parameters")]
    values = [*messages, *singles]
    blobs = [orjson.dumps(v, option=orjson.OPT_SORT_KEYS) for v in values]
    blobs += [b"list", b"identity"]  # the two digests over digests (their inputs are short)
    calls["floor sign"] = lambda: signer.sign(signing_input)

    def hashes() -> list[str]:
        return [hashlib.sha256(b).hexdigest() for b in blobs]

    def writes() -> list[bytes]:
        return [orjson.dumps(v, option=orjson.OPT_SORT_KEYS) for v in values]

    calls["floor sha256"] = hashes
    calls["floor orjson"] = writes
    t = {name: v[0] for name, v in interleaved(calls).items()}
    bare = t["bare"]
    print("CPU time of this thread per call, best of 9 interleaved rounds; ratios to the bare span of this run")
    print(f"bare OTel span (start+end, 12 attributes): {fmt_us(bare)}  = 1.00x")
    print()
    print(
        f"{'composition':<22}{'KB':>6}{'identity+sign':>16}{'/span':>8}{'no sign':>14}{'/span':>8}"
        f"{'canonical':>14}{'rfc8785':>14}{'speedup':>9}"
    )
    for name, _ in cases:
        cost, unsigned_cost = t[name], t[name + " no sign"]
        canon, ref = t[name + " canonical"], t[name + " rfc8785"]
        print(
            f"{name:<22}{sizes[name]:6.1f}{fmt_us(cost):>16}{cost / bare:7.2f}x"
            f"{fmt_us(unsigned_cost):>14}{unsigned_cost / bare:7.2f}x"
            f"{fmt_us(canon):>14}{fmt_us(ref):>14}{ref / canon:8.1f}x"
        )
    floor = [t["floor sign"], t["floor sha256"], t["floor orjson"]]
    print()
    print(
        f"floor of typical (prepared): Ed25519 signature {floor[0] / bare:.2f}x + {len(blobs)} SHA-256"
        f" {floor[1] / bare:.2f}x + {len(values)} orjson writes {floor[2] / bare:.2f}x"
        f" = {sum(floor) / bare:.2f}x the bare span (no validation, no statement)"
    )
    print()
    print("identity+sign: Composition.from_dict + canonicalize + digests + identity + Ed25519 signature")
    print("no sign: the same without the signature (the part left on the application's thread when a worker signs)")
    print("goals: typical <= 3x the bare span; typical (prepared) <= 2x; canonical >= 10x faster than rfc8785")
    return 0


if __name__ == "__main__":
    sys.exit(main())
