"""How many SMS segments a body costs: GSM 03.38 (GSM-7) or, failing that, UCS-2.

A body is GSM-7 only if every character is in the basic set or the extension table (whose
characters take two septets: an escape plus the character). One character outside both, a
curly quote or an emoji, sends the whole body as UCS-2. Single segment: 160 septets or 70
UTF-16 units; concatenated, each segment loses its header room: 153 or 67.
"""

from __future__ import annotations

import math

# GSM 03.38 basic character set, in table order (0x00-0x7F); "\x1b" (the escape) is left out.
BASIC = frozenset(
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
)
# The extension table: each of these costs two septets.
EXTENSION = frozenset("\f^{}\\[~]|€")

GSM7_SINGLE, GSM7_PART = 160, 153
UCS2_SINGLE, UCS2_PART = 70, 67


def non_gsm7(body: str) -> list[str]:
    """The characters of ``body`` that GSM-7 cannot carry, in order, without repeats."""
    return list(dict.fromkeys(c for c in body if c not in BASIC and c not in EXTENSION))


def is_gsm7(body: str) -> bool:
    return not non_gsm7(body)


def units(body: str) -> int:
    """Septets for a GSM-7 body, UTF-16 code units for a UCS-2 one."""
    if is_gsm7(body):
        return sum(2 if c in EXTENSION else 1 for c in body)
    return len(body.encode("utf-16-le")) // 2


def segments(body: str) -> int:
    """The number of segments a carrier bills for ``body`` (an empty body still costs one).

    Splitting never cuts an escape pair or a surrogate pair in real encoders, which can add a
    segment at a boundary; this count ignores that, so it can only be low by one near a limit.
    """
    single, part = (GSM7_SINGLE, GSM7_PART) if is_gsm7(body) else (UCS2_SINGLE, UCS2_PART)
    n = units(body)
    return 1 if n <= single else math.ceil(n / part)
