"""One inbound text being handled: the context both sides of the text line work in."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy.orm import Session

from hotline import wording
from hotline.effects import Effects
from hotline.keywords import Command
from hotline.programmes import ProgrammeConfig
from hotline.services import Services
from hotline.texting import InboundText


@dataclass
class Inbound:
    """One inbound text being handled inside its transaction."""

    services: Services
    session: Session
    programme: ProgrammeConfig
    sender: str  # the sender's number, E.164
    text: InboundText
    command: Command | None
    now: datetime
    effects: Effects
    # Where answers go from when not the number they wrote to: a supporter who texted STOP to
    # it (``stopped_here``) hears nothing from it (Twilio refuses: 21610), so another she can
    # hear, or ``unheard`` when she has stopped them all (supporterline.answer_where_heard).
    stopped_here: bool = False
    reply_from: str | None = None
    unheard: bool = False

    def reply(self, body: str) -> None:
        """Answer the sender from the number they wrote to (or ``reply_from``)."""
        if not self.unheard:
            self.effects.text(self.sender, self.reply_from or self.text.to, body)

    def relay(self, to: str | None, from_: str) -> None:
        """Pass the text on to the other side (from ``from_``); media is not relayed."""
        if self.text.body.strip():
            self.effects.text(to, from_, wording.truncate(self.text.body))
        if self.text.num_media:
            self.reply(wording.media_not_relayed())
