"""Typed inputs and outcomes of the voice line: what Twilio tells us, and what to say or dial.

The core answers with a ``VoiceReply`` (a tuple of verbs); ``webhooks/voice.py`` turns it into
TwiML. A ``Route`` names one of our own voice webhooks; the edge makes it an absolute URL.
There is deliberately no verb for recording: nothing on this line is ever recorded.
"""

from __future__ import annotations

from dataclasses import dataclass, field

# SHAKEN/STIR results Twilio passes as ``StirVerstat`` that do not vouch for the caller ID:
# validation failed (the number may be spoofed), no valid PASSporT, or C attestation (the
# signing carrier knows nothing of the caller's right to the number: gateway traffic, where
# spoofed calls come in). Absent means the call carried no PASSporT (outside the United
# States, or a carrier that signs nothing): nothing to go on, so the caller ID is taken.
UNVOUCHED = ("TN-Validation-Failed", "No-TN-Validation", "TN-Validation-Passed-C")


def vouched_for(stir_verstat: str | None) -> bool:
    """Whether a caller ID may identify the caller, by the carrier's attestation."""
    return not (stir_verstat or "").startswith(UNVOUCHED)


@dataclass(frozen=True)
class InboundCall:
    """A call as Twilio announces it to ``/twilio/voice`` (also the parent leg on later steps).

    ``vouched``: the caller ID may identify the caller (``vouched_for``). One that may not is
    treated as hidden: it puts nobody through and rings no peer, so a spoofed supporter's or
    clinician's number reaches nobody and learns nothing."""

    sid: str
    from_: str
    to: str
    vouched: bool = True


@dataclass(frozen=True)
class DialResult:
    """What Twilio posts to a ``<Dial action>`` when the dialled leg is over.

    ``call_status`` is the caller's own leg (``completed`` once they hung up); ``dial_status`` is
    the dialled leg's, which reads ``completed`` even when a voicemail answered and the screen
    hung up on it, so acceptance is read from our own record, with ``bridged``.
    ``dial_call_sid`` names the dialled leg, which is over ("" when Twilio sent none).
    """

    call_sid: str
    ring: int
    call_status: str
    dial_status: str
    bridged: bool
    dial_call_sid: str = ""


@dataclass(frozen=True)
class Route:
    """One of our voice webhooks (``/twilio/voice/<name>``) with its query parameters."""

    name: str
    params: tuple[tuple[str, int], ...] = ()


@dataclass(frozen=True)
class Say:
    text: str


@dataclass(frozen=True)
class Pause:
    seconds: int = 1


@dataclass(frozen=True)
class Gather:
    """Collect ``num_digits`` keypresses while saying ``prompt``; posts ``Digits`` to ``action``.

    With no keypress within ``timeout`` seconds Twilio goes on to the next verb instead.
    """

    action: Route
    prompt: tuple[Say | Pause, ...]
    num_digits: int = 1
    timeout: int = 5


@dataclass(frozen=True)
class Dial:
    """Ring ``number`` showing ``caller_id`` (always one of the programme's own numbers).

    ``screen`` runs on the answered leg before it is bridged (the press-1 whisper); ``action``
    receives the outcome. ``answer_on_bridge`` keeps the caller hearing ringing meanwhile.
    """

    number: str
    caller_id: str
    timeout: int
    action: Route | None = None
    screen: Route | None = None
    answer_on_bridge: bool = True


@dataclass(frozen=True)
class Redirect:
    to: Route


@dataclass(frozen=True)
class Hangup:
    pass


Verb = Say | Pause | Gather | Dial | Redirect | Hangup


@dataclass(frozen=True)
class VoiceReply:
    """The verbs to run, in order. Empty on a screened leg means: bridge now."""

    verbs: tuple[Verb, ...] = field(default_factory=tuple)


def reply(*verbs: Verb) -> VoiceReply:
    return VoiceReply(tuple(verbs))


def route(name: str, **params: int) -> Route:
    return Route(name, tuple(sorted(params.items())))
