"""The telephony port: the only way the hotline talks to phones.

Adapters: ``twilio_adapter.TwilioTelephony`` (the real Twilio REST API) and
``simulator.SimulatedTelephony`` (the dev phone page). Both raise the exceptions below, chosen
through one table of Twilio error codes, so callers decide retry versus give-up the same way.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol, runtime_checkable


class TelephonyError(Exception):
    """A provider call failed. ``code`` is Twilio's error code when there is one."""

    def __init__(self, message: str, code: int | None = None, status: int | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.status = status


class RetryableError(TelephonyError):
    """Not accepted by the provider (5xx, 429, a connection failure): safe to try again later."""


class SenderError(RetryableError):
    """The provider refused our own sending number (not one it sends from for this account,
    not valid, not registered): it fails alike for every recipient, so it is no verdict on
    the recipient. Callers treat it as an outage (the text waits, an offer times out as any
    other) and log it as an error, for whoever looks after the numbers, until it is fixed."""


class PermanentError(TelephonyError):
    """The provider refused this request for good (a bad recipient number, a body too long):
    never retry."""


class RecipientError(PermanentError):
    """The recipient's phone refuses texts for good (opted out, not a mobile number, unknown to
    its carrier, a landline): a verdict on that phone, which a supporter's roster entry shows
    until a text to it goes through."""


class OptedOutError(RecipientError):
    """The recipient texted STOP to this sender (Twilio 21610): never send to the pair again."""


class DeliveryUnknownError(TelephonyError):
    """The request may have been accepted (e.g. a read timeout): retrying risks a duplicate."""


# One table: Twilio error code -> what it means for us. Codes not listed fall back on the HTTP
# status (5xx and 429 retry, other 4xx are permanent).
ERROR_TABLE: dict[int, type[TelephonyError]] = {
    21610: OptedOutError,  # Attempt to send to unsubscribed recipient
    21211: RecipientError,  # Invalid 'To' phone number
    # Our sending number's fault, not the recipient's: every text from it fails alike.
    21212: SenderError,  # Invalid 'From' phone number
    21606: SenderError,  # 'From' is not a valid message-capable number for this account
    30032: SenderError,  # Toll-free number has not been verified (in a status callback)
    30034: SenderError,  # US A2P 10DLC: message from an unregistered number (status callback)
    21408: PermanentError,  # Permission to send to this region is not enabled
    21612: RecipientError,  # The 'To' number is not currently reachable via SMS
    21614: RecipientError,  # 'To' number is not a valid mobile number
    21617: PermanentError,  # Concatenated message body exceeds the 1600 character limit
    # Authentication failed: the deployment's credentials are wrong or mid-rotation. Work waits
    # (bounded retries with backoff) so that fixing the setting loses no check-in.
    20003: RetryableError,
    # Cannot delete this resource before it is complete: a call still in progress, or a record
    # Twilio has not finished processing yet. Later works.
    20009: RetryableError,
    20404: PermanentError,  # The requested resource was not found
    20429: RetryableError,  # Too many requests
    30001: RetryableError,  # Queue overflow
    30003: RetryableError,  # Unreachable destination handset (phone off): later may work
    30005: RecipientError,  # Unknown destination handset
    30006: RecipientError,  # Landline or unreachable carrier
    30007: PermanentError,  # Message filtered by the carrier
}


NOT_FOUND = 20404  # the provider has no such record (deleted, or never there)


def sender_at_fault(code: int | None) -> bool:
    """Whether a status callback's error code blames our sending number (``SenderError``)."""
    return ERROR_TABLE.get(code or 0) is SenderError


def recipient_at_fault(code: int | None) -> bool:
    """Whether a status callback's error code blames the recipient's phone (``RecipientError``)."""
    kind = ERROR_TABLE.get(code or 0)
    return kind is not None and issubclass(kind, RecipientError)


def classify(message: str, code: int | None, status: int | None) -> TelephonyError:
    """Map a provider failure to the project's exception through ERROR_TABLE."""
    kind = ERROR_TABLE.get(code or 0)
    if kind is None:
        retry = status is None or status >= 500 or status == 429
        kind = RetryableError if retry else PermanentError
    return kind(message, code=code, status=status)


@dataclass(frozen=True)
class SentText:
    sid: str
    status: str


@dataclass(frozen=True)
class NumberSetup:
    """Where the provider sends one of the account's numbers' texts, calls and call statuses
    (Twilio's IncomingPhoneNumber; an application SID, when set, overrides the URLs)."""

    sid: str
    sms_url: str = ""
    sms_method: str = "POST"
    sms_application_sid: str = ""
    voice_url: str = ""
    voice_method: str = "POST"
    voice_application_sid: str = ""
    status_callback: str = ""
    status_callback_method: str = "POST"


@runtime_checkable
class NumberSetups(Protocol):
    """How the provider account's numbers are set up (the Twilio adapter; the simulator has no
    account, and nothing there another service could lose)."""

    def number_setup(self, number: str) -> NumberSetup | None:
        """How ``number`` is set up on the account; None if it is not one of its numbers."""
        ...


class Telephony(Protocol):
    """Send texts, place calls and delete message and call records at the provider."""

    def send_text(
        self, to: str, from_: str, body: str, status_callback: str | None = None
    ) -> SentText:
        """Hand a text to the provider; raise a TelephonyError subclass on failure."""
        ...

    def place_call(self, to: str, from_: str, url: str, status_callback: str | None = None) -> str:
        """Start an outbound call whose TwiML is fetched from ``url``; return the call SID."""
        ...

    def delete_message(self, sid: str) -> None:
        """Delete a message record (and so its body) at the provider."""
        ...

    def delete_call(self, sid: str) -> None:
        """Delete a call record (numbers, times, duration) at the provider; refused (20009)
        while the call is not complete."""
        ...

    def call_status(self, sid: str) -> str | None:
        """A call's status as the provider knows it now (``completed``, ``in-progress``...), or
        None when it cannot tell (the simulator); a record it no longer has raises a
        PermanentError with code 20404."""
        ...

    def dialled_legs(self, sid: str) -> list[str]:
        """SIDs of the legs call ``sid`` rang (each ``<Dial>``'s ``<Number>``: its child calls)
        that the provider still keeps; [] when it cannot tell (the simulator)."""
        ...

    def finished_records(self, number: str, before: datetime, limit: int) -> list[str]:
        """SIDs of the message and call records the provider keeps to or from ``number`` that
        began before ``before`` and are over (a text delivered, received or failed, a call
        ended). At most ``limit`` records of each kind and direction are read, newest first
        (records still young count): older ones come into view as the young are deleted."""
        ...


# A provider record the service deletes, named by its SID: two letters for its kind (CA a call,
# SM or MM a message), then letters and digits (Twilio's are 32 hex digits) bounded as the
# webhooks bound SIDs, so nothing else (a NUL, 200 characters) reaches a deletion row's column.
_RECORD_SID = re.compile(r"(CA|SM|MM)[A-Za-z0-9]{1,62}")


def is_record_sid(sid: str) -> bool:
    """Whether ``delete_record`` can delete ``sid``: a call or a message SID."""
    return _RECORD_SID.fullmatch(sid) is not None


def delete_record(telephony: Telephony, sid: str) -> None:
    """Delete the record ``sid`` names at the provider, a call or a message, by its prefix.

    The one place a SID's kind is read. A SID of another kind is refused for good
    (PermanentError), as the provider would refuse it: no job or sweep fails on one.
    """
    if not is_record_sid(sid):
        raise PermanentError("not a call or message SID")
    if sid.startswith("CA"):
        telephony.delete_call(sid)
    else:
        telephony.delete_message(sid)
