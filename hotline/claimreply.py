"""A supporter's ACCEPT of a request she claimed (``CLAIMED``: her ACCEPT as the clinician's
call that replaced it rang), sent after the caller hung up before a peer answered and before
the job woken then (ringing._reopen) has given it to her (routing.take_claimed). Her answers
while the call rings are offerreply.answer_during_call's.
"""

from __future__ import annotations

from sqlalchemy import select

from hotline import routing, wording
from hotline.inbound import Inbound
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


def take_claim(ctx: Inbound, claims: list[Offer]) -> None:
    """ACCEPT again of a claim the job has not yet given her: she was told the request was
    no longer open, and "You're connected" followed. It is taken now, as the job takes it
    (routing.offer_or_fall_back), and the job then finds it taken. If she can no longer take
    it, she is told so from its number, as by the job (here, after her STOP to that number),
    and it goes on to the next peer now."""
    if len(claims) > 1:
        ctx.reply(wording.answer_where_offered())
        return
    claim, vault, p = claims[0], ctx.services.vault, ctx.programme
    conv = ctx.session.get_one(Conversation, claim.conversation_id)
    offer = routing.offer_or_fall_back(ctx.session, vault, p, conv, ctx.now, ctx.effects)
    taken = offer is not None and offer.id == claim.id
    if not taken and is_opted_out(ctx.session, vault, p.id, ctx.sender, claim.pool_number):
        ctx.reply(wording.claim_lapsed())
