"""The Twilio adapter of the telephony port, on the real ``twilio.rest.Client``."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import requests
from twilio.base.exceptions import (
    TwilioException,
    TwilioRestException,
    TwilioServiceException,
)
from twilio.http.http_client import TwilioHttpClient
from twilio.http.response import Response
from twilio.rest import Client

from hotline.telephony import (
    DeliveryUnknownError,
    NumberSetup,
    RetryableError,
    SentText,
    classify,
)

# twilio-python logs every request line at INFO; keep it quiet so no URL or query reaches logs.
_http_logger = logging.getLogger("hotline.telephony.twilio_http")
_http_logger.setLevel(logging.WARNING)

DEFAULT_TIMEOUT = (3.05, 10.0)  # (connect, read) seconds; TwilioHttpClient has none by default


class RebasedHttpClient(TwilioHttpClient):  # type: ignore[misc]  # twilio is untyped (Any)
    """Sends every request to ``base_url`` (scheme and host), keeping Twilio's path and query.

    twilio-python has no base-URL setting (``edge``/``region`` only rename the host); this is how
    ``TWILIO_API_BASE_URL`` points the whole library at a local fake or simulator.
    """

    def __init__(self, base_url: str | None, timeout: Any = DEFAULT_TIMEOUT) -> None:
        # HttpClient.__init__ checks ``timeout <= 0``, which raises TypeError on a (connect, read)
        # tuple; requests accepts the tuple, so set it after the base constructor.
        super().__init__(logger=_http_logger)
        self.timeout = timeout
        if self.session is not None:
            # No proxy or .netrc from the environment: Twilio traffic (numbers, bodies) goes
            # straight to the configured base, and requests skips re-reading the environment
            # on every call (a tenth of the send path's CPU in the check-in benchmark).
            self.session.trust_env = False
        self._base = urlsplit(base_url) if base_url else None

    def request(self, method: str, url: str, *args: Any, **kwargs: Any) -> Response:
        if self._base is not None:
            parts = urlsplit(url)
            url = urlunsplit(
                (
                    self._base.scheme,
                    self._base.netloc,
                    self._base.path.rstrip("/") + parts.path,
                    parts.query,
                    "",
                )
            )
        return super().request(method, url, *args, **kwargs)


# Statuses of records still moving: Twilio refuses to delete them (they are deleted later).
MESSAGE_IN_FLIGHT = frozenset({"accepted", "scheduled", "queued", "sending", "receiving"})
CALL_IN_FLIGHT = frozenset({"queued", "ringing", "in-progress"})
# A call rings a peer, then up to ringing.MAX_RINGS supporters: far fewer legs than this.
LEGS_LISTED = 50


class TwilioTelephony:
    """Texts and calls through Twilio's REST API; failures mapped through ERROR_TABLE."""

    def __init__(
        self,
        account_sid: str,
        auth_token: str,
        base_url: str | None = None,
        timeout: Any = DEFAULT_TIMEOUT,
    ) -> None:
        self.client = Client(
            account_sid, auth_token, http_client=RebasedHttpClient(base_url, timeout)
        )

    def send_text(
        self, to: str, from_: str, body: str, status_callback: str | None = None
    ) -> SentText:
        extra = {"status_callback": status_callback} if status_callback else {}
        with _mapped_errors():
            message = self.client.messages.create(to=to, from_=from_, body=body, **extra)
        return SentText(sid=str(message.sid), status=str(message.status or "queued"))

    def place_call(self, to: str, from_: str, url: str, status_callback: str | None = None) -> str:
        extra = {"status_callback": status_callback} if status_callback else {}
        with _mapped_errors():
            # record=False is Twilio's default; said here because no call is ever recorded.
            call = self.client.calls.create(to=to, from_=from_, url=url, record=False, **extra)
        return str(call.sid)

    def delete_message(self, sid: str) -> None:
        with _mapped_errors():
            self.client.messages(sid).delete()

    def delete_call(self, sid: str) -> None:
        with _mapped_errors():
            self.client.calls(sid).delete()

    def call_status(self, sid: str) -> str | None:
        with _mapped_errors():
            return str(self.client.calls(sid).fetch().status)

    def dialled_legs(self, sid: str) -> list[str]:
        with _mapped_errors():
            legs = self.client.calls.list(parent_call_sid=sid, limit=LEGS_LISTED, page_size=50)
        return [str(leg.sid) for leg in legs]

    def finished_records(self, number: str, before: datetime, limit: int) -> list[str]:
        # Filtered by time here: the API's DateSent< and StartTime< filters take whole days.
        sids: list[str] = []
        with _mapped_errors():
            for side in ({"to": number}, {"from_": number}):
                for message in self.client.messages.stream(limit=limit, page_size=100, **side):
                    sent = message.date_sent or message.date_created  # never sent: failed
                    if message.status not in MESSAGE_IN_FLIGHT and sent and sent < before:
                        sids.append(str(message.sid))
                for call in self.client.calls.stream(limit=limit, page_size=100, **side):
                    began = call.start_time or call.date_created
                    if call.status not in CALL_IN_FLIGHT and began and began < before:
                        sids.append(str(call.sid))
        return list(dict.fromkeys(sids))  # a text between two of our numbers is listed twice

    # Not part of the port: `hotline numbers check` reads and sets a number's webhooks; a number
    # joins the line only once they point here (numbercheck.Gate, the NumberSetups protocol).

    def number_setup(self, number: str) -> NumberSetup | None:
        """How ``number`` is set up on this account; None if it is not one of its numbers."""
        with _mapped_errors():
            # PhoneNumber matches part of a number at Twilio: keep the exact one.
            found = self.client.incoming_phone_numbers.list(phone_number=number, limit=50)
        for record in found:
            if record.phone_number == number:
                return NumberSetup(
                    sid=str(record.sid),
                    sms_url=record.sms_url or "",
                    sms_method=record.sms_method or "",
                    sms_application_sid=record.sms_application_sid or "",
                    voice_url=record.voice_url or "",
                    voice_method=record.voice_method or "",
                    voice_application_sid=record.voice_application_sid or "",
                    status_callback=record.status_callback or "",
                    status_callback_method=record.status_callback_method or "",
                )
        return None

    def point_webhooks(self, sid: str, sms_url: str, voice_url: str, status_url: str) -> None:
        """Send the number's texts, calls and call statuses to these URLs (POST)."""
        with _mapped_errors():
            self.client.incoming_phone_numbers(sid).update(
                sms_url=sms_url,
                sms_method="POST",
                voice_url=voice_url,
                voice_method="POST",
                status_callback=status_url,
                status_callback_method="POST",
            )


@contextmanager
def _mapped_errors() -> Iterator[None]:
    """Translate twilio/requests exceptions into the port's TelephonyError family."""
    try:
        yield
    except (TwilioRestException, TwilioServiceException) as exc:
        # The second is twilio-python's RFC 9457 error shape; it does not subclass the first.
        raise classify(f"Twilio error {exc.code}", exc.code, exc.status) from None
    except TwilioException as exc:
        # A list's page refused: twilio-python raises its base class with the raw response.
        response = exc.args[1] if len(exc.args) > 1 else None
        status = getattr(response, "status_code", None)
        raise classify(f"Twilio refused a page ({status})", None, status) from None
    except requests.ReadTimeout:
        # The request went out; Twilio may have accepted it. Retrying could send it twice.
        raise DeliveryUnknownError("Twilio did not answer in time") from None
    except requests.RequestException:
        raise RetryableError("could not reach Twilio") from None
