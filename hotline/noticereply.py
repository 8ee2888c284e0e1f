"""A supporter's "Yes" or "No" to the line's own texts from a number (a shift reminder, a
verification code), told apart from an ACCEPT or a PASS of an offer.
"""

from __future__ import annotations

from sqlalchemy import select

from hotline import offerreply
from hotline.inbound import Inbound
from hotline.keywords import Word
from hotline.models import Notice, NoticeKind, Offer, Supporter
from hotline.notices import last_notice_from


def notice_answered(ctx: Inbound, supporter: Supporter) -> Notice | None:
    """The shift reminder or code from this number in the last hour ("You are on call from 7
    PM") that a "Yes" or "No" (or "Y", "N") answers: a "Yes" is the "ok" it means, not an
    ACCEPT of a request never offered to them, or offered before it and lapsed unseen; a "No"
    to a reminder says they cannot take that shift (declines_a_shift), not a PASS. An offer it
    may answer keeps it an ACCEPT or a PASS: one pending (on this number, or written to the
    hotline number on any: offerreply.offers_elsewhere), or one made on this number since the
    notice, the text they got last. Decided once per text (textline._dispatch), before either
    side of the line reads it."""
    command = ctx.command
    if command is None or command.word not in (Word.ACCEPT, Word.PASS) or not command.everyday:
        return None
    notice = last_notice_from(ctx.session, supporter.id, ctx.text.to, ctx.now)
    if (
        notice is None
        or offerreply.pending_offer(ctx, supporter)
        or offerreply.offers_elsewhere(ctx, supporter)
    ):
        return None
    offered_since = select(Offer.id).where(
        Offer.supporter_id == supporter.id,
        Offer.pool_number == ctx.text.to,
        Offer.offered_at >= notice.sent_at,
    )
    return None if ctx.session.scalar(select(offered_since.exists())) else notice


def declines_a_shift(ctx: Inbound, answers: Notice | None) -> bool:
    """A "No" to a shift reminder (``answers``, from notice_answered): they cannot take it, and
    are told how to get cover. A "No" to a code is answered as its "ok" is."""
    word = ctx.command.word if ctx.command is not None else None
    return answers is not None and answers.kind == NoticeKind.REMINDER and word is Word.PASS
