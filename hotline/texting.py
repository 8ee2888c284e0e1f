"""Typed inputs and outcomes of the text line (the webhooks parse into these)."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class InboundText:
    """One inbound SMS/MMS as Twilio delivered it."""

    sid: str
    from_: str
    to: str
    body: str
    num_media: int = 0
    opt_out_type: str = ""  # Twilio's OptOutType (Advanced Opt-Out): STOP, START or HELP


@dataclass(frozen=True)
class OutboundText:
    """A text to send in the webhook's own TwiML reply (``<Message to= from=>``), or through
    the provider from a job. ``owed_by``: the conversation whose clinician must get it (told
    that nobody is free); sent from a job and lost to a provider outage, it is owed again."""

    to: str
    from_: str
    body: str
    owed_by: int | None = None
    closing: bool = False  # with owed_by: it tells them their request closed unanswered
    # The coordinator's alert about that conversation: it goes with the clinician's text, so
    # when that one is owed again (``owed_by``) the alert waits for it rather than go twice.
    alerting: int | None = None
    # The offer this text makes: when Twilio refuses it for good, nobody was asked, and the
    # offer is passed on at once rather than left to time out (``effects.pass_on_unasked``);
    # one lost to an outage times out as any other.
    offering: int | None = None
    # Which time the offer asks its supporter (``Offer.asked``): a request still waiting asks
    # her again on the same offer row, and a late report on the first text is not this one's.
    asking: int | None = None
    # The notice this text sends (a code, a shift reminder): one Twilio took but could not
    # deliver counts as failed, and the phone's refusal is kept (``delivery``).
    noticing: int | None = None

    def status_callback(self, url: str | None) -> str | None:
        """``url`` for this text's status callbacks; an offer's names the offer and the ask, so
        one the carrier could not deliver is passed on at once too, and a notice's the notice
        (their ids, nothing personal; ``delivery.handle_status``)."""
        if url and self.offering is not None:
            return f"{url}?offer={self.offering}&ask={self.asking}"
        if url and self.noticing is not None:
            return f"{url}?notice={self.noticing}"
        return url


@dataclass(frozen=True)
class TextReply:
    texts: tuple[OutboundText, ...] = ()


@dataclass(frozen=True)
class StatusReport:
    """A message or call status callback."""

    sid: str
    status: str
    error_code: int | None = None
    offer: int | None = None  # the offer the text made (named in its callback URL)
    ask: int | None = None  # and which ask of it (None in the URLs of texts sent before asks)
    notice: int | None = None  # the notice the text sent (named in its callback URL)
    # The number a message went to, as Twilio reports it (``To``); never in a repr or a log.
    to: str | None = field(default=None, repr=False)
    # The number a message came from, as Twilio reports it (``From``): one of the line's, a
    # programme renumbered since may no longer have it as its hotline number. Never in a repr
    # or a log.
    from_: str | None = field(default=None, repr=False)
