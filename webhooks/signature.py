"""Twilio request signatures (``X-Twilio-Signature``), checked in constant time."""

from __future__ import annotations

import hmac
from collections.abc import Callable, Iterable
from urllib.parse import urlsplit, urlunsplit

from twilio.request_validator import RequestValidator
from werkzeug.datastructures import MultiDict

SIGNATURE_HEADER = "X-Twilio-Signature"


def signed_url(public_url: str | None, full_path: str, request_url: Callable[[], str]) -> str:
    """The URL Twilio signed: the configured public base plus the path and query we received.

    Behind a proxy the request's own host is not what Twilio called, and ``X-Forwarded-*`` can be
    sent by anyone, so only development (no ``HOTLINE_PUBLIC_URL``) trusts the request URL
    (``request_url()``, only asked for then).
    """
    if public_url:
        return public_url + full_path.rstrip("?")
    return request_url()


def is_valid(
    url: str, params: MultiDict[str, str], signature: str | None, tokens: Iterable[str]
) -> bool:
    """True when ``signature`` matches ``url`` + ``params`` under any of ``tokens``."""
    if not signature:
        return False
    for token in tokens:
        validator = RequestValidator(token)
        for candidate in _port_variants(url):
            expected = validator.compute_signature(candidate, params)
            if hmac.compare_digest(expected.encode(), signature.encode()):
                return True
    return False


def _port_variants(url: str) -> list[str]:
    """Twilio may sign with or without the default port; accept both, as its library does."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    default = "443" if parts.scheme == "https" else "80"
    without = urlunsplit(parts._replace(netloc=host if parts.port else parts.netloc))
    with_port = urlunsplit(
        parts._replace(netloc=parts.netloc if parts.port else f"{parts.netloc}:{default}")
    )
    return list(dict.fromkeys([url, without, with_port]))
