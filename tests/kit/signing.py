"""Twilio request signing for tests: what Twilio puts in ``X-Twilio-Signature``.

Built on ``twilio.request_validator.RequestValidator`` so tests sign exactly as Twilio does
(HMAC-SHA1 of the full public URL followed by every sorted parameter name and value).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from urllib.parse import urlsplit

from flask.testing import FlaskClient
from twilio.request_validator import RequestValidator
from werkzeug.test import TestResponse

FORM_CONTENT_TYPE = "application/x-www-form-urlencoded"

# How a signed callback reaches the app: (url, params, headers) -> HTTP status code.
Deliver = Callable[[str, Mapping[str, str], Mapping[str, str]], int]


def sign(url: str, params: Mapping[str, str], token: str) -> str:
    """Return the X-Twilio-Signature Twilio would send for a form POST of ``params`` to ``url``."""
    return str(RequestValidator(token).compute_signature(url, dict(params)))


def signed_headers(url: str, params: Mapping[str, str], token: str) -> dict[str, str]:
    """Headers of a form POST to ``url`` signed with ``token``."""
    return {"X-Twilio-Signature": sign(url, params, token), "Content-Type": FORM_CONTENT_TYPE}


def signed_post(
    client: FlaskClient, public_base_url: str, path: str, params: Mapping[str, str], token: str
) -> TestResponse:
    """POST ``params`` form-encoded to ``path``, signed for ``public_base_url + path``.

    The request is made with ``base_url=public_base_url`` so ``request.url`` inside the app also
    matches the public URL (scheme, host, port), as it would behind a correctly set-up proxy.
    """
    base = public_base_url.rstrip("/")
    headers = signed_headers(base + path, params, token)
    return client.post(path, data=dict(params), headers=headers, base_url=base)


def deliver_to(client: FlaskClient) -> Deliver:
    """A ``Deliver`` that hands already-signed callbacks to a Flask test client, not over HTTP.

    The URL's scheme and host become the test request's ``base_url``; its path and query the
    request path, so the signature computed over the full URL still matches.
    """

    def deliver(url: str, params: Mapping[str, str], headers: Mapping[str, str]) -> int:
        parts = urlsplit(url)
        path = parts.path + (f"?{parts.query}" if parts.query else "")
        base = f"{parts.scheme}://{parts.netloc}"
        response = client.post(path, data=dict(params), headers=dict(headers), base_url=base)
        return response.status_code

    return deliver
