"""Whether the line's texts reach a supporter's phone, for the coordinator's roster.

Twilio refuses some texts to a supporter for good, for a fault of their phone
(``telephony.RecipientError``): they texted STOP to the number it came from (21610), the number
is not a mobile one (21211, 21614), cannot take texts (21612, 30006: a landline) or is unknown
to its carrier (30005). Routing passes them over then, as it should for the clinician; the
coordinator must learn of it to put it right. So the refusal is kept on the supporter, its code
and when (never a text): from an offer's or a notice's send, its status callback (Twilio took
the text, then could not deliver it), and their own STOP to a pool number. A later text to them
that goes through, an opt-in from their phone (START) or a new number clears it (``people``). A
supporter who has texted STOP to every number an offer can come from is shown so too, whatever
is kept: no offer can reach them. A STOP shows only while the line still has the number: once
every number they stopped has left it (taken out of the pool, a hotline number renumbered),
nothing the line sends is refused for it. The block is kept all the same (Twilio keeps its
own), and shows again if the number comes back.

Coverage counts on it (``untextable``): a stretch when only supporters no text of the line
reaches are on call is a gap (``schedule.coverage_gaps``), as a clinician texting then is told
nobody is free.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from hotline.models import Offer, OptOut, Programme, Supporter

STOPPED = 21610  # Twilio: the recipient texted STOP to this sender


@dataclass(frozen=True)
class Refusal:
    """Texts to a supporter's phone are refused: Twilio's ``code``, since ``at``; the line's
    numbers (of ``numbers`` an offer can come from) they texted STOP to."""

    code: int
    at: datetime | None
    stopped: tuple[str, ...]
    numbers: int

    @property
    def unreachable(self) -> bool:
        """Every number an offer can come from is one they stopped."""
        return len(self.stopped) == self.numbers

    @property
    def untextable(self) -> bool:
        """No text of the line reaches them: their phone refuses texts from every sender, or
        they stopped every number. A STOP to some numbers only (21610 is per sender) is not
        so: offers come from the others."""
        return self.unreachable or self.code != STOPPED

    @property
    def rung(self) -> bool:
        """A call still rings them. A phone's refusal is of texts only (a landline takes calls)
        and calls come from the same pool numbers; but routing keeps off every number they
        stopped, for a ring as for a text."""
        return not self.unreachable


def refused(session: Session, supporters: Any, code: int, now: datetime) -> None:
    """Texts to ``supporters`` (ids, or a select of them) were refused for good with ``code``."""
    session.execute(
        update(Supporter)
        .where(Supporter.id.in_(supporters))
        .values(texts_refused_code=code, texts_refused_at=now)
        .execution_options(synchronize_session=False)
    )


def stopped(session: Session, offer_id: int, phone_hash: str | None = None) -> None:
    """The offer's text was refused for a STOP to its number (21610) that the line never heard
    (texted while it was down): the pair is blocked here as that STOP would have blocked it, so
    routing offers the supporter requests from the line's other numbers. ``phone_hash``: the
    blind index of the phone the text went to, as Twilio's report names it; by default the
    supporter's as it is now, which is that phone unless their number changed since (a report
    can come half an hour late, and the STOP was the old phone's)."""
    found = session.execute(
        select(Offer.pool_number, Supporter.programme_id, Supporter.phone_hash)
        .join(Supporter, Supporter.id == Offer.supporter_id)
        .where(Offer.id == offer_id)
    ).one_or_none()
    phone_hash = phone_hash or (found.phone_hash if found is not None else None)
    if found is None or not phone_hash:
        return
    blocked = select(OptOut.id).where(
        OptOut.programme_id == found.programme_id,
        OptOut.phone_hash == phone_hash,
        OptOut.sender == found.pool_number,
    )
    if not session.scalar(select(blocked.exists())):
        block(session, found.programme_id, phone_hash, found.pool_number)


def block(session: Session, programme_id: int, phone_hash: str, sender: str) -> None:
    """Keep the pair (the phone by its blind index, one of the line's numbers) blocked, as
    Twilio does after a STOP; a row a concurrent STOP wrote meanwhile is left as it is."""
    try:
        with session.begin_nested():
            session.add(OptOut(programme_id=programme_id, phone_hash=phone_hash, sender=sender))
    except IntegrityError:
        pass


def reached(session: Session, supporters: Any) -> None:
    """A text to ``supporters`` (ids, or a select of them) went through: no refusal stands."""
    session.execute(
        update(Supporter)
        .where(Supporter.id.in_(supporters), Supporter.texts_refused_code.is_not(None))
        .values(texts_refused_code=None, texts_refused_at=None)
        .execution_options(synchronize_session=False)
    )


def untextable(session: Session, programme_id: int) -> dict[int, Refusal]:
    """The programme's active supporters no text of the line reaches, by id, with why."""
    stops = select(OptOut.phone_hash).where(OptOut.programme_id == programme_id)
    people = session.scalars(
        select(Supporter).where(
            Supporter.programme_id == programme_id,
            Supporter.active.is_(True),
            or_(Supporter.texts_refused_code.is_not(None), Supporter.phone_hash.in_(stops)),
        )
    ).all()
    return {i: r for i, r in refusals(session, people).items() if r.untextable}


def refusals(session: Session, supporters: Sequence[Supporter]) -> dict[int, Refusal]:
    """The refusal to show for each of ``supporters`` (by id) whose phone has one, in one query
    of opt-outs for them all."""
    if not supporters:
        return {}
    programmes = {s.programme_id: session.get_one(Programme, s.programme_id) for s in supporters}
    numbers = {
        pid: [n.number for n in p.pool_numbers] or [p.hotline_number]
        for pid, p in programmes.items()
    }
    rows = select(OptOut.programme_id, OptOut.phone_hash, OptOut.sender, OptOut.created_at).where(
        OptOut.programme_id.in_(programmes),
        OptOut.phone_hash.in_({s.phone_hash for s in supporters}),
    )
    stops: dict[tuple[int, str], dict[str, datetime]] = defaultdict(dict)
    for pid, phone_hash, sender, at in session.execute(rows):
        stops[pid, phone_hash][sender] = at
    found = {}
    for s in supporters:
        theirs = stops.get((s.programme_id, s.phone_hash), {})
        ours = numbers[s.programme_id]
        stopped = tuple(n for n in ours if n in theirs)
        if s.texts_refused_code == STOPPED and theirs and not stopped:
            continue  # every number they stopped has left the line: none of its texts refused
        if s.texts_refused_code is not None:
            found[s.id] = Refusal(s.texts_refused_code, s.texts_refused_at, stopped, len(ours))
        elif len(stopped) == len(ours):
            at = max(theirs[n] for n in stopped)
            found[s.id] = Refusal(STOPPED, at, stopped, len(ours))
    return found
