"""Phone numbers: normalisation to E.164 and the one redaction helper for printing them."""

from __future__ import annotations

import phonenumbers

_POSSIBLE = phonenumbers.ValidationResult.IS_POSSIBLE
# What Twilio puts in ``From`` when the caller withholds their number (the digits spell
# ANONYMOUS, UNKNOWN, RESTRICTED, BLOCKED, UNAVAILABLE on a keypad). They are not anybody's
# number: treating them as one would merge every withheld caller into one "clinician".
WITHHELD = frozenset(
    {"+266696687", "+86282452253", "+7378742833", "+2562533", "+8656696", "+86247225"}
)


class InvalidPhoneNumber(ValueError):
    """Not a phone number we can text or call. The message never repeats the input."""


def normalize(raw: str, region: str = "US") -> str:
    """Return ``raw`` as E.164 (``+15551234567``) or raise InvalidPhoneNumber.

    National forms are read in ``region``; anonymous callers, SIP URIs and short codes are refused.
    So is any letter: phonenumbers would read ``555-CALL-NOW`` as a vanity number and drop an
    ``ext 5``, and a typo turned into someone else's number is a confidentiality breach.
    """
    text = (raw or "").strip()
    if not text or any(c.isalpha() for c in text) or len(text) > 32:
        raise InvalidPhoneNumber("not a phone number")
    try:
        parsed = phonenumbers.parse(text, region)
    except phonenumbers.NumberParseException:
        raise InvalidPhoneNumber("not a phone number") from None
    # IS_POSSIBLE_LOCAL_ONLY ("555 1234", no area code) would become an unreachable "+15551234".
    if phonenumbers.is_possible_number_with_reason(parsed) != _POSSIBLE:
        raise InvalidPhoneNumber("not a possible phone number")
    number = phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164)
    if number in WITHHELD:
        raise InvalidPhoneNumber("a withheld caller ID")
    return number


def is_e164(raw: str) -> bool:
    """True when ``raw`` is already a valid E.164 string (what the API accepts on write)."""
    try:
        return normalize(raw) == raw
    except InvalidPhoneNumber:
        return False


def redact(number: str | None) -> str:
    """``+15551234234`` -> ``+1•••••••234``: the country code and the last three digits only.

    Everything that prints a phone number (console, API, audit log) goes through here.
    """
    if not number:
        return ""
    try:
        parsed = phonenumbers.parse(number, None)
        country = f"+{parsed.country_code}"
    except phonenumbers.NumberParseException:
        country = ""
    digits = "".join(c for c in number if c.isascii() and c.isdigit())
    national = digits[len(country) - 1 :] if country else digits
    if len(national) <= 3:
        return country + "•" * len(national)
    return country + "•" * (len(national) - 3) + national[-3:]
