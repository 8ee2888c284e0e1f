"""Text pasted from a word processor, made plain for SMS.

One curly quote sends a whole text as UCS-2, 70 characters a segment instead of 160: a
greeting of three segments becomes six. Coordinators' texts in Settings and the sentences IT
sets in the environment (HOTLINE_CRISIS_TEXT) are made plain alike.
"""

from __future__ import annotations

_PLAIN = str.maketrans(
    {
        "\u2018": "'",  # left single quote
        "\u2019": "'",  # right single quote, apostrophe
        "\u201a": "'",
        "\u201b": "'",
        "\u2032": "'",  # prime
        "\u201c": '"',  # left double quote
        "\u201d": '"',  # right double quote
        "\u201e": '"',
        "\u2033": '"',
        "\u2013": "-",  # en dash
        "\u2014": "-",  # em dash
        "\u2212": "-",  # minus sign
        "\u2026": "...",  # ellipsis
        "\u00a0": " ",  # no-break space
        "\u202f": " ",  # narrow no-break space
        "\u2009": " ",  # thin space
        "\u200b": "",  # zero-width space
        "\u00ad": "",  # soft hyphen
    }
)


_CONTROLS: dict[int, str | None] = {
    **dict.fromkeys([*range(0x09), *range(0x0E, 0x20), 0x7F, 0xFFFE, 0xFFFF]),  # keeps \t \n \r
    0x0B: "\n",  # a manual line break (vertical tab)
    0x0C: "\n",  # a page break
}


def plain(text: str) -> str:
    """``text`` with word-processor typography made plain (curly quotes, dashes, ellipses,
    special spaces). Accents and other scripts are the writer's choice and stay. Control
    characters go (a word processor's manual line break is a vertical tab, made a line break
    here: XML, and so TwiML, cannot carry it), but for the line breaks and tabs texts can."""
    return text.translate(_PLAIN).translate(_CONTROLS)
