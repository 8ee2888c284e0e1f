"""A supporter's ACCEPT or PASS of a request she claimed (``CLAIMED``: her ACCEPT as the
clinician's call that replaced it rang), sent after the caller hung up before a peer answered
and before the job woken then (ringing._reopen) has given it to her (routing.take_claimed).
Her answers while the call rings are offerreply.answer_during_call's.
"""

from __future__ import annotations

from sqlalchemy import select

from hotline import routing, wording
from hotline.inbound import Inbound
from hotline.keywords import Word
from hotline.models import Conversation, ConversationState, Offer, OfferState, Supporter
from hotline.people import is_opted_out


def claims_reopened(ctx: Inbound, supporter: Supporter) -> list[Offer]:
    """The supporter's claims whose caller hung up before a peer answered: the request waits
    again, for the job to give it to her. On the number texted (on any, texted to the hotline
    number); read under the programme's lock (offerreply.withdrawn_for_a_call took it), which
    that job takes too: what is read stays so until this text's answer commits."""
    query = (
        select(Offer)
        .join(Conversation, Conversation.id == Offer.conversation_id)
        .where(
            Offer.supporter_id == supporter.id,
            Offer.state == OfferState.CLAIMED,
            Conversation.state == ConversationState.QUEUED,
        )
    )
    if ctx.text.to != ctx.programme.hotline_number:
        query = query.where(Offer.pool_number == ctx.text.to)
    return list(ctx.session.scalars(query))


def answer_claim(ctx: Inbound, supporter: Supporter, claims: list[Offer], word: Word) -> None:
    """ACCEPT again, or PASS, of a claim the job has not yet given her: she was told the
    request was no longer open (or "Passed on"), and "You're connected" followed. An ACCEPT
    takes it now, as the job takes it (routing.offer_or_fall_back), and the job then finds
    it taken; if she can no longer take it, she is told so from its number, as by the job
    (here, after her STOP to that number: ``_after_stop``). A PASS stands, as one while the
    call rang does, and is told "Passed on" from its number (after her STOP to it, where she
    can read it). Either way a request not hers goes on to the next peer now."""
    if len(claims) > 1:
        ctx.reply(wording.answer_where_offered())
        return
    claim, vault, p = claims[0], ctx.services.vault, ctx.programme
    conv = ctx.session.get_one(Conversation, claim.conversation_id)
    stopped = is_opted_out(ctx.session, vault, p.id, ctx.sender, claim.pool_number)
    if word is Word.PASS:
        routing.answer(ctx.session, claim, OfferState.PASSED, ctx.now, (OfferState.CLAIMED,))
        if stopped:
            _after_stop(ctx, wording.claim_passed_after_stop(claim.pool_number))
        else:
            ctx.effects.text(ctx.sender, claim.pool_number, wording.passed())
    offer = routing.offer_or_fall_back(ctx.session, vault, p, conv, ctx.now, ctx.effects)
    taken = offer is not None and offer.id == claim.id
    if word is Word.ACCEPT and not taken and stopped:
        _after_stop(ctx, wording.claim_lapsed_after_stop(claim.pool_number))


def _after_stop(ctx: Inbound, body: str) -> None:
    """Her answer about a claim on a number she has texted STOP to since: she is told where
    she can hear it (Inbound.reply_from: the number she texted, unless that is the one Twilio
    refuses, 21610). Having stopped every one, she is told nothing, as nothing else the line
    texts reaches her; the roster says so."""
    ctx.reply(body)
