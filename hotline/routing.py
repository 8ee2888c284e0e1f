"""Round-robin offers: who is offered a conversation next, and what happens when they answer.

Eligible: on call now, active, not on a break, under ``max_conversations`` (open conversations,
pending offers and claims: see pools_in_use), not offered this conversation in the last half
hour nor twice already (``asked_enough``), not the clinician themself, and with a pool number
free on their phone.
The clinician's previous supporter goes first, then peers of the discipline asked for, then the
least recently offered. The programme row is locked while an offer is made, so concurrent
first texts never pick the same pointer twice (PostgreSQL ``SELECT ... FOR UPDATE``; SQLite
serializes writers with ``BEGIN IMMEDIATE``).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Collection
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import partial

from sqlalchemy import func, or_, select, update
from sqlalchemy.orm import Session

from hotline import held, schedule, wording
from hotline.effects import Effects
from hotline.models import (
    Channel,
    Clinician,
    Conversation,
    ConversationState,
    Offer,
    OfferState,
    OptOut,
    PoolNumber,
    Programme,
    Supporter,
)
from hotline.people import (
    ALERT_CONTEXT,
    clinician_phone,
    is_opted_out,
    opted_out,
    supporter_phone,
)
from hotline.privacy import DecryptionError, Vault
from hotline.programmes import ProgrammeConfig
from hotline.wakeups import Task

NEVER = datetime.min.replace(tzinfo=UTC)
RECENT_THREADS = timedelta(days=7)  # a thread closed this recently is not the next one's
PENDING_ONLY = (OfferState.PENDING,)
LAPSED = (OfferState.EXPIRED, OfferState.PASSED)  # still acceptable while the request waits
# Twilio sends at most this many <Message>s in reply to one inbound text (warning 14109) and
# refuses a reply over 64 kB (error 11750): an ACCEPT's reply carries the supporter's and the
# clinician's texts and at most HELD_IN_REPLY of the held ones (joined, up to 1,600 characters
# each); a job relays the rest through the REST API.
TEXTS_IN_A_REPLY = 10
HELD_IN_REPLY = 6
# The most texts offer_or_fall_back sends for one request: the next peer's offer, or the
# clinician's "nobody is free" and the coordinator's alert; after a peer's claim that lapsed,
# her word that it goes on (take_claimed) too.
ONWARD_TEXTS = 3
# A request still waiting is offered again to a peer on call who passed or let it lapse this
# long ago, once (two offers each at most): see asked_enough.
ASK_AGAIN_AFTER = timedelta(minutes=30)
ASKED_AT_MOST = 2
TURN_AFTER = timedelta(microseconds=1)  # the least a database timestamp can tell apart


@dataclass(frozen=True)
class Candidate:
    supporter: Supporter
    pool_number: str


def lock_programme(session: Session, programme_id: int) -> None:
    """Serialize offer-making within one programme (the rotation pointer's mutex).

    ``FOR NO KEY UPDATE``, not ``FOR UPDATE``: inserting a conversation takes a ``KEY SHARE``
    lock on its programme row (the foreign key), and ``FOR UPDATE`` would deadlock with that.
    """
    session.execute(
        select(Programme.id).where(Programme.id == programme_id).with_for_update(key_share=True)
    )


def pool_now(session: Session, p: ProgrammeConfig) -> tuple[str, ...]:
    """The programme's pool as the database has it now, not as ``p`` read it when the text or
    call came in: read under the programme's lock, an offer is never made on a number a
    coordinator took out meanwhile (programmes.read_under_lock: a change to the pool takes
    that lock too)."""
    numbers = session.scalars(
        select(PoolNumber.number).where(PoolNumber.programme_id == p.id).order_by(PoolNumber.id)
    ).all()
    return tuple(numbers) or (p.hotline_number,)


def candidates(
    session: Session, vault: Vault, p: ProgrammeConfig, conv: Conversation, now: datetime
) -> list[Candidate]:
    """Eligible supporters for ``conv``, best first, each with the pool number to use."""
    on_call = schedule.on_call(session, p.id, now)
    if not on_call:
        return []
    offered = asked_enough(session, conv.id, now)
    supporters = [
        s
        for s in session.scalars(
            select(Supporter).where(
                Supporter.id.in_(on_call - offered),
                Supporter.active.is_(True),
                or_(Supporter.break_until.is_(None), Supporter.break_until <= now),
            )
        )
    ]
    clinician = session.get(Clinician, conv.clinician_id) if conv.clinician_id else None
    if clinician is not None:  # a supporter asking for support is never offered their own
        own = _indexes(vault, clinician.phone_hash, lambda: clinician_phone(vault, clinician))
        supporters = [s for s in supporters if s.phone_hash not in own]
    load = pools_in_use(session, [s.id for s in supporters], clinician.id if clinician else None)
    indexes = {
        s.id: _indexes(vault, s.phone_hash, partial(supporter_phone, vault, s)) for s in supporters
    }
    blocked = _blocked_pools(session, p.id, [h for found in indexes.values() for h in found])
    last_used = _last_used(session, [s.id for s in supporters], now)
    theirs = _their_threads(session, clinician.id) if clinician is not None else {}
    pool = pool_now(session, p)
    found = []
    for s in supporters:
        used = load[s.id]
        if len(used) >= s.max_conversations:
            continue
        free = [
            n for n in pool if n not in used and not any((h, n) in blocked for h in indexes[s.id])
        ]
        if free:
            # The thread she last had with this clinician (a reply to a check-in, a return):
            # she knows them by it, unless another clinician's thread has closed on it since.
            # Else the number she used longest ago (or never): a thread just closed on her
            # phone does not carry the next clinician at once, where a late "take care" meant
            # for the last one would reach the new one.
            free.sort(key=partial(_used_at, last_used, s.id))
            same, ended = theirs.get(s.id, (None, None))
            if same in free and (ended is None or _used_at(last_used, s.id, same) <= ended):
                found.append(Candidate(s, same))
            else:
                found.append(Candidate(s, free[0]))
    preferred = clinician.last_supporter_id if clinician else None
    found.sort(key=lambda c: _rank(c.supporter, preferred, conv.discipline_wanted))
    return found


def at_limit(session: Session, supporter: Supporter) -> bool:
    """``supporter`` has as many open conversations, pending offers and claims as their
    ``max_conversations``: ``candidates`` leaves them out, and a late ACCEPT takes nothing."""
    return len(pools_in_use(session, [supporter.id])[supporter.id]) >= supporter.max_conversations


def can_take(
    session: Session,
    vault: Vault,
    p: ProgrammeConfig,
    supporter: Supporter,
    pool_number: str,
    clinician_id: int | None = None,
) -> bool:
    """``supporter`` can take a request (of ``clinician_id``'s) on ``pool_number`` now, whatever
    her shift or break: on the roster, under her ``max_conversations``, that number free on her
    phone and not blocked by her STOP to it. (Her ACCEPT is the surer word that she can take it
    now: see offerreply.accept_late.)"""
    in_use = pools_in_use(session, [supporter.id], clinician_id)[supporter.id]
    room = len(in_use) < supporter.max_conversations and pool_number not in in_use
    to = supporter_phone(vault, supporter)
    return supporter.active and room and not is_opted_out(session, vault, p.id, to, pool_number)


def may_offer_again(
    session: Session, vault: Vault, p: ProgrammeConfig, offer: Offer, now: datetime
) -> bool:
    """``offer``, not pending now, could be made again as it stands: its supporter is one
    ``candidates`` would offer a request to now on its number (on call, not on a break, and
    ``can_take``), leaving aside that she was offered this one a moment ago."""
    supporter = session.get_one(Supporter, offer.supporter_id)
    if supporter.break_until is not None and supporter.break_until > now:
        return False
    if supporter.id not in schedule.on_call(session, p.id, now):
        return False
    return can_take(session, vault, p, supporter, offer.pool_number)


def asked_enough(session: Session, conversation_id: int, now: datetime) -> set[int]:
    """Supporters not to offer this request now: one whose offer is pending or ended (passed,
    lapsed) under ASK_AGAIN_AFTER ago, and one offered it ASKED_AT_MOST times already. A peer on
    call who slept through the first text at 3 a.m. is asked once more while the request waits
    with nobody else to take it, not left out until someone new comes on call."""
    ended = func.coalesce(Offer.answered_at, Offer.expires_at)
    not_now = select(Offer.supporter_id).where(
        Offer.conversation_id == conversation_id,
        or_(
            Offer.state == OfferState.PENDING,
            ended > now - ASK_AGAIN_AFTER,
            Offer.asked >= ASKED_AT_MOST,
        ),
    )
    return set(session.scalars(not_now))


def _indexes(vault: Vault, stored: str | None, number: Callable[[], str | None]) -> set[str]:
    """A person's blind index under every data key. During a rotation their rows (supporter,
    clinician, opt-outs) can be under different keys until ``hotline keys rotate`` is done, so
    comparing the stored hashes alone would miss that two rows are one person."""
    found = {stored} if stored else set()
    if vault.rotating:
        try:
            value = number()
        except DecryptionError:
            return found
        if value:
            found.update(vault.blind_indexes(value))
    return found


def _rank(
    s: Supporter, preferred: int | None, discipline: str | None
) -> tuple[int, int, datetime, int]:
    return (
        0 if s.id == preferred else 1,
        0 if discipline and s.discipline == discipline else 1,
        s.last_offered_at or NEVER,
        s.id,
    )


def pools_in_use(
    session: Session, ids: list[int], clinician_id: int | None = None
) -> dict[int, list[str]]:
    """Pool numbers each supporter is using: open conversations, pending offers, and claims
    (``CLAIMED``: an ACCEPT as the call that replaced a request rang). A claim is a
    conversation she has taken on until it settles (taken, or she is told it ended:
    ``take_claimed``, ringing.settle_claims), and its number is where it will come; offered
    more meanwhile, she would be past her limit at the hang-up, and her claim would lapse.
    Counted for a request of ``clinician_id`` (their call, its call-back, the request reopened),
    not her claim of theirs: taking the one settles the other, one conversation either way."""
    used: dict[int, list[str]] = defaultdict(list)
    if not ids:
        return used
    active = select(Conversation.supporter_id, Conversation.pool_number).where(
        Conversation.state == ConversationState.ACTIVE, Conversation.supporter_id.in_(ids)
    )
    pending = select(Offer.supporter_id, Offer.pool_number).where(
        Offer.state == OfferState.PENDING, Offer.supporter_id.in_(ids)
    )
    claimed = (
        select(Offer.supporter_id, Offer.pool_number)
        .join(Conversation, Conversation.id == Offer.conversation_id)
        .where(
            Offer.state == OfferState.CLAIMED,
            Offer.supporter_id.in_(ids),
            Conversation.clinician_id.is_distinct_from(clinician_id),
        )
    )
    rows = [*session.execute(active), *session.execute(pending), *session.execute(claimed)]
    for supporter_id, number in rows:
        used[supporter_id].append(number)
    return used


def open_number(
    session: Session, vault: Vault, p: ProgrammeConfig, supporter: Supporter
) -> str | None:
    """The pool number to text ``supporter`` from outside any thread of hers: one she has not
    texted STOP to (Twilio would refuse it: 21610), as offers keep off those; of those, one
    with no conversation, offer or claim of hers on it (in a live conversation's thread the
    text reads as part of it, and her answer to it is relayed to the clinician). None when
    she has stopped every one: nothing the line texts her can reach her."""
    to = supporter_phone(vault, supporter)
    wanted = [(p.id, to, number) for number in p.pool_numbers]
    blocked = opted_out(session, vault, wanted)
    open_ = [n for pid, _, n in wanted if (pid, to, n) not in blocked]
    in_use = pools_in_use(session, [supporter.id])[supporter.id]
    return next((n for n in open_ if n not in in_use), next(iter(open_), None))


def number_heard(
    session: Session, vault: Vault, p: ProgrammeConfig, supporter: Supporter, number: str
) -> str | None:
    """The number to answer ``supporter`` from about her text to ``number``: that one, unless
    she has texted STOP to it (Twilio refuses it: 21610), then another she can hear
    (``open_number``); None when she has stopped every one."""
    if not is_opted_out(session, vault, p.id, supporter_phone(vault, supporter), number):
        return number
    return open_number(session, vault, p, supporter)


def _used_at(
    last_used: dict[tuple[int, str], datetime], supporter_id: int, number: str
) -> datetime:
    return last_used.get((supporter_id, number), NEVER)


def _their_threads(session: Session, clinician_id: int) -> dict[int, tuple[str, datetime | None]]:
    """The pool number of each supporter's latest conversation with this clinician, and when
    it ended (None: it has not)."""
    rows = session.execute(
        select(Conversation.supporter_id, Conversation.pool_number, Conversation.ended_at)
        .where(
            Conversation.clinician_id == clinician_id,
            Conversation.supporter_id.is_not(None),
            Conversation.pool_number.is_not(None),
        )
        .order_by(Conversation.id)
    )
    return {sid: (number, ended) for sid, number, ended in rows if sid is not None and number}


def _last_used(session: Session, ids: list[int], now: datetime) -> dict[tuple[int, str], datetime]:
    """When each supporter's conversation on each pool number ended, for those that ended in
    the past RECENT_THREADS (by an index on when they ended: a first text's cost must not grow
    with years of history); a number used before that counts as never used."""
    if not ids:
        return {}
    rows = session.execute(
        select(
            Conversation.supporter_id,
            Conversation.pool_number,
            func.max(Conversation.ended_at),
        )
        .where(
            Conversation.supporter_id.in_(ids),
            Conversation.ended_at > now - RECENT_THREADS,
            Conversation.pool_number.is_not(None),
        )
        .group_by(Conversation.supporter_id, Conversation.pool_number)
    )
    return {(sid, number): at for sid, number, at in rows if sid is not None and number and at}


def _blocked_pools(session: Session, programme_id: int, hashes: list[str]) -> set[tuple[str, str]]:
    rows = session.execute(
        select(OptOut.phone_hash, OptOut.sender).where(
            OptOut.programme_id == programme_id, OptOut.phone_hash.in_(hashes)
        )
    )
    return {(h, s) for h, s in rows}


def offer_next(
    session: Session,
    vault: Vault,
    p: ProgrammeConfig,
    conv: Conversation,
    now: datetime,
    effects: Effects,
) -> Offer | None:
    """Offer ``conv`` to the best eligible supporter by text; None when nobody is left."""
    offer = reserve(session, vault, p, conv, now, now + p.offer_timeout)
    if offer is None:
        return None
    supporter = session.get_one(Supporter, offer.supporter_id)
    by_call = conv.channel == Channel.VOICE
    effects.text(
        supporter_phone(vault, supporter),
        offer.pool_number,
        wording.offer(conv.discipline_wanted, by_call, conv.checkin_reply),
        offering=offer.id,
        asking=offer.asked,
    )
    effects.wake(Task.EXPIRE_OFFER, offer.id, offer.expires_at)
    return offer


def reserve(
    session: Session,
    vault: Vault,
    p: ProgrammeConfig,
    conv: Conversation,
    now: datetime,
    expires_at: datetime,
    skip_phones: Collection[str] = (),
) -> Offer | None:
    """Record an offer of ``conv`` to the best eligible supporter and move the round-robin
    pointer, under the programme lock; None when nobody is left. Sends nothing: the caller
    decides how the offer reaches the supporter (a text, or a ringing phone). ``skip_phones``:
    blind indexes of phones not to offer it to now (a ring skips phones already on a call).

    Callers look at ``conv`` before the lock; what they saw is checked again under it, so two
    that race (a clinician's next text, the sweeper, a supporter's BACK, the call-back job)
    never both make an offer of one conversation."""
    lock_programme(session, p.id)
    if not still_waiting(session, conv):
        return None
    found = [
        c
        for c in candidates(session, vault, p, conv, now)
        if c.supporter.phone_hash not in skip_phones
    ]
    if not found:
        return None
    best = found[0]
    best.supporter.last_offered_at = _turn_taken(session, p.id, now)
    asked_before = Offer.conversation_id == conv.id, Offer.supporter_id == best.supporter.id
    offer = session.scalar(select(Offer).where(*asked_before))
    if offer is None:
        offer = Offer(conversation_id=conv.id, supporter_id=best.supporter.id)
        session.add(offer)
    else:  # asked again (asked_enough): the same row, so a late ACCEPT finds one offer
        offer.state, offer.answered_at, offer.asked = OfferState.PENDING, None, offer.asked + 1
    offer.pool_number, offer.offered_at, offer.expires_at = best.pool_number, now, expires_at
    session.flush()
    return offer


def _turn_taken(session: Session, programme_id: int, now: datetime) -> datetime:
    """The round-robin stamp of an offer made now: after every other one of the programme's. In
    a rush a webhook that arrived first can make its offer after one that arrived later (it
    waited on the programme's lock); stamped with its own earlier arrival, its supporter would
    rank as asked before the other and be asked again next, out of turn. After every
    supporter's, not only the candidates': the one just asked may be left out now (at her
    limit, say), and her turn still came first."""
    latest = session.scalar(
        select(func.max(Supporter.last_offered_at)).where(Supporter.programme_id == programme_id)
    )
    return now if latest is None or now > latest else latest + TURN_AFTER


def offer_or_fall_back(
    session: Session,
    vault: Vault,
    p: ProgrammeConfig,
    conv: Conversation,
    now: datetime,
    effects: Effects,
    *,
    first_text: bool = False,
) -> Offer | None:
    """Offer ``conv`` onwards; if nobody is left, tell the clinician (once) and the coordinator.
    Claimed by a peer as a call replaced it, it is hers (``take_claimed``): the offer returned
    is accepted, and the request taken.

    ``first_text``: the clinician's first text, not yet greeted; if nobody is free, the
    greeting and the fallback go as one text (the caller greets only when there is an offer);
    a reply to a check-in (``conv.checkin_reply``) is told what happens next, not greeted again.
    """
    claimed = None if first_text else take_claimed(session, vault, p, conv, now, effects)
    if claimed is not None:
        return claimed
    offer = offer_next(session, vault, p, conv, now, effects)
    if offer is None and conv.fallback_at is None and _tell_once(session, conv, now):
        clinician = session.get(Clinician, conv.clinician_id) if conv.clinician_id else None
        if clinician is not None:
            next_on = schedule.next_coverage(session, p.id, now)
            to = clinician_phone(vault, clinician)
            if first_text:  # in the webhook's own answer
                for body in _first_replies_nobody_free(p, next_on, now, conv.checkin_reply):
                    effects.text(to, p.hotline_number, body)
            else:  # from a job: owed again if the provider does not take it
                call_back = conv.channel == Channel.VOICE
                body = wording.fallback(p, next_on, now, call_back)
                effects.text(to, p.hotline_number, body, owed_by=conv.id)
        alert = alert_phone(session, vault, p.id)
        if alert:
            body = wording.coordinator_alert(p, conv.channel == Channel.VOICE)
            effects.text(alert, p.hotline_number, body, alerting=conv.id)
    return offer


def take_claimed(
    session: Session,
    vault: Vault,
    p: ProgrammeConfig,
    conv: Conversation,
    now: datetime,
    effects: Effects,
) -> Offer | None:
    """A peer who answered ACCEPT while a call that replaced ``conv`` rang (``CLAIMED``) takes
    it, now that the caller has hung up and it waits again (ringing._reopen), as her ACCEPT
    would have: she is not asked again. Not if she can no longer (``can_take``: taken off the
    roster, at her ``max_conversations``, its number on her phone taken since, or blocked by
    her STOP): her answer then lapses, she is told from that number that the request goes on
    (told it would be hers, she would wait for it; not through her STOP), and it goes on as
    any. Taken, two texts (hers and the clinician's; what the clinician texted follows through
    the API, ``Task.RELAY_HELD``); lapsed, one (hers), ahead of the request's onward texts:
    ONWARD_TEXTS counts both."""
    claimed = session.scalar(
        select(Offer).where(Offer.conversation_id == conv.id, Offer.state == OfferState.CLAIMED)
    )
    if claimed is None:
        return None
    lock_programme(session, p.id)  # her load as offer-making reads it
    supporter = session.get_one(Supporter, claimed.supporter_id)
    can = can_take(session, vault, p, supporter, claimed.pool_number, conv.clinician_id)
    if can and accept(session, vault, p, claimed, now, effects, claimed=True):
        return claimed
    lapsed = answer(session, claimed, OfferState.EXPIRED, now, (OfferState.CLAIMED,))
    to = supporter_phone(vault, supporter)
    # Not after her STOP to that number: Twilio refuses the text (21610).
    waits = session.scalar(select(Conversation.state).where(Conversation.id == conv.id))
    if (
        lapsed
        and waits == ConversationState.QUEUED
        and not is_opted_out(session, vault, p.id, to, claimed.pool_number)
    ):
        effects.text(to, claimed.pool_number, wording.claim_lapsed())
    return None


def claimed_from(session: Session, clinician_id: int | None) -> bool:
    """A peer has claimed a request of this clinician's (``CLAIMED``) that is not hers yet."""
    claimed = (
        select(Offer.id)
        .join(Conversation, Conversation.id == Offer.conversation_id)
        .where(Conversation.clinician_id == clinician_id, Offer.state == OfferState.CLAIMED)
    )
    return clinician_id is not None and bool(session.scalar(select(claimed.exists())))


def _tell_once(session: Session, conv: Conversation, now: datetime) -> bool:
    """Claim telling ``conv``'s clinician that nobody is free: True for the first to ask while
    it still waits (two that race, such as the call-back job and the sweeper, tell once)."""
    if not still_waiting(session, conv):
        return False
    claimed = session.execute(
        update(Conversation)
        .where(Conversation.id == conv.id, Conversation.fallback_at.is_(None))
        .values(fallback_at=now)
        .execution_options(synchronize_session=False)
    )
    session.refresh(conv, ["fallback_at"])
    return bool(claimed.rowcount)  # type: ignore[attr-defined]


def still_queued(session: Session, conv: Conversation) -> bool:
    """Claim ``conv`` while it is queued, as the database says now: True, and the row stays
    locked to this transaction, so an accept committing meanwhile is seen, not overwritten."""
    claimed = session.execute(
        update(Conversation)
        .where(Conversation.id == conv.id, Conversation.state == ConversationState.QUEUED)
        .values(state=ConversationState.QUEUED)
        .execution_options(synchronize_session=False)
    )
    if not claimed.rowcount:  # type: ignore[attr-defined]
        session.refresh(conv)
        return False
    return True


def still_waiting(session: Session, conv: Conversation) -> bool:
    """``conv`` is queued with no pending offer, as the database says now (not as this
    session last loaded it)."""
    state = session.scalar(select(Conversation.state).where(Conversation.id == conv.id))
    return state == ConversationState.QUEUED and pending_offer(session, conv) is None


def one_or_apart(together: str, *apart: str) -> list[str]:
    """``together`` as one text if Twilio takes it (wording.MAX_TEXT); else ``apart``: a
    programme's own texts may be so long that joined they would be refused, and lose what
    comes last."""
    return [together] if len(together) <= wording.MAX_TEXT else list(apart)


def line_closed(p: ProgrammeConfig) -> list[str]:
    """What a retired programme's line says to anyone (retirement.py): that it has closed,
    with the programme's resources and the crisis sentence; the resources apart when too long
    to share one text."""
    return one_or_apart(wording.line_closed(p), wording.line_closed(p, False), p.resources_text)


def first_replies(p: ProgrammeConfig, checkin_reply: bool = False) -> list[str]:
    """What a new text request's clinician is told as a peer is offered it: the greeting; or,
    answering a check-in (greeted before), that a peer will text, with the crisis sentence
    apart if the programme's is so long that together they would pass Twilio's limit."""
    if not checkin_reply:
        return [wording.greeting(p)]
    return one_or_apart(
        wording.checkin_replied(p), wording.checkin_replied(p, False), p.crisis_text
    )


def _first_replies_nobody_free(
    p: ProgrammeConfig, next_on: datetime | None, now: datetime, checkin_reply: bool = False
) -> list[str]:
    """One text if it fits; the greeting and the fallback apart if the programme's own texts
    are so long that together they would pass Twilio's limit (and lose the crisis line). A
    reply to a check-in, greeted before, is told only what happens next: the crisis sentence
    apart if it does not fit with that."""
    if checkin_reply:
        return one_or_apart(
            wording.checkin_replied_nobody_free(p, next_on, now),
            wording.checkin_replied_nobody_free(p, next_on, now, False),
            p.crisis_text,
        )
    return one_or_apart(
        wording.greeting_nobody_free(p, next_on, now),
        wording.greeting(p),
        wording.fallback(p, next_on, now),
    )


def alert_phone(session: Session, vault: Vault, programme_id: int) -> str | None:
    sealed = session.scalar(
        select(Programme.alert_phone_sealed).where(Programme.id == programme_id)
    )
    return vault.open(sealed, ALERT_CONTEXT) if sealed else None


def answer(
    session: Session,
    offer: Offer,
    state: OfferState,
    now: datetime,
    was: tuple[OfferState, ...] = PENDING_ONLY,
) -> bool:
    """Move a pending offer (or one in a state of ``was``) to ``state``; False if it was
    already answered or expired."""
    result = session.execute(
        update(Offer)
        .where(Offer.id == offer.id, Offer.state.in_(was))
        .values(state=state, answered_at=now)
        .execution_options(synchronize_session=False)
    )
    session.refresh(offer)
    return bool(result.rowcount)  # type: ignore[attr-defined]


def pass_on(session: Session, p: ProgrammeConfig, offer: Offer, now: datetime) -> bool:
    """Mark a pending offer passed (the programme's lock first, as every answer takes it);
    False if it was no longer pending. The caller offers the conversation onwards."""
    lock_programme(session, p.id)
    return answer(session, offer, OfferState.PASSED, now)


def lock_offers_programme(session: Session, offer: Offer) -> None:
    """The programme lock for ``offer``, from paths that know only the offer (a job, a ring)."""
    programme_id = session.scalar(
        select(Conversation.programme_id).where(Conversation.id == offer.conversation_id)
    )
    lock_programme(session, programme_id or 0)


def accept(
    session: Session,
    vault: Vault,
    p: ProgrammeConfig,
    offer: Offer,
    now: datetime,
    effects: Effects,
    *,
    late: bool = False,
    claimed: bool = False,
) -> bool:
    """The supporter takes the conversation by text: held texts go to them, the clinician is
    told (a call-back: the supporter is told to call this number, the clinician to expect it).
    ``late``: the offer had lapsed or been passed on, and its conversation still waits (checked
    under the programme's lock, so a new offer of it made meanwhile is not undercut).
    ``claimed``: accepted as a call replaced it, and taken now (``take_claimed``): likewise,
    and the held texts all follow through the API. One on a break (a late ACCEPT: BREAK
    passes on what is offered) is told the break goes on."""
    lock_programme(session, p.id)  # before the offer's row: the sweeper's order too
    waited = late or claimed
    if waited and not still_waiting(session, session.get_one(Conversation, offer.conversation_id)):
        return False
    was = (OfferState.CLAIMED,) if claimed else LAPSED if late else PENDING_ONLY
    conv = assign(session, offer, now, effects, was=was)
    if conv is None:
        return False
    supporter = session.get_one(Supporter, offer.supporter_id)
    clinician = session.get(Clinician, conv.clinician_id) if conv.clinician_id else None
    by_call = conv.channel == Channel.VOICE
    to_supporter = supporter_phone(vault, supporter)
    to_clinician = clinician_phone(vault, clinician) if clinician is not None else None
    # STOP and no START since (they wrote again all the same): Twilio delivers them no text.
    stopped = to_clinician is not None and is_opted_out(
        session, vault, p.id, to_clinician, p.hotline_number
    )
    told = wording.accepted_texts_stopped() if stopped else wording.accepted_for_supporter(by_call)
    until = supporter.break_until
    if not stopped and not by_call and until is not None and until > now:  # a late ACCEPT
        told = wording.accepted_on_break(until, p.zone)
    effects.text(to_supporter, offer.pool_number, told)
    if to_clinician is not None and not stopped:  # ahead of the held texts: it matters most
        effects.text(to_clinician, p.hotline_number, wording.joined(call_back=by_call))
    in_reply = 0 if claimed else HELD_IN_REPLY
    if held.relay_held(
        session, vault, conv.id, to_supporter, offer.pool_number, effects, at_most=in_reply
    ):
        effects.wake(Task.RELAY_HELD, conv.id)  # the rest through the REST API, in order
    effects.cancel(Task.EXPIRE_OFFER, offer.id)
    return True


def assign(
    session: Session,
    offer: Offer,
    now: datetime,
    effects: Effects,
    *,
    was: tuple[OfferState, ...] = PENDING_ONLY,
) -> Conversation | None:
    """The offer's supporter takes its conversation: the offer ACCEPTED, the conversation ACTIVE
    on the offer's pool number, any other offer of it withdrawn, the clinician's preferred
    supporter noted. None when the offer is no longer in a state of ``was`` (pending, unless
    told), or its conversation is no longer waiting (taken or ended meanwhile; the offer is
    then withdrawn). Sends nothing."""
    if not answer(session, offer, OfferState.ACCEPTED, now, was):
        return None
    # The clinician's row before the conversation's: a clinician's text takes them in that
    # order (its last_contact_at, then the conversation), and the reverse would deadlock.
    clinician_id = session.scalar(
        select(Conversation.clinician_id).where(Conversation.id == offer.conversation_id)
    )
    if clinician_id is not None:
        session.execute(
            select(Clinician.id).where(Clinician.id == clinician_id).with_for_update(key_share=True)
        )
    taken = session.execute(
        update(Conversation)
        .where(
            Conversation.id == offer.conversation_id,
            Conversation.state == ConversationState.QUEUED,
        )
        .values(
            state=ConversationState.ACTIVE,
            supporter_id=offer.supporter_id,
            pool_number=offer.pool_number,
            accepted_at=now,
            last_activity_at=now,
        )
        .execution_options(synchronize_session=False)
    )
    if not taken.rowcount:  # type: ignore[attr-defined]
        session.execute(
            update(Offer)
            .where(Offer.id == offer.id)
            .values(state=OfferState.WITHDRAWN)
            .execution_options(synchronize_session=False)
        )
        session.refresh(offer)
        return None
    conv = session.get_one(Conversation, offer.conversation_id)
    session.refresh(conv)
    withdraw_offers(session, conv, now, effects)
    clinician = session.get(Clinician, conv.clinician_id) if conv.clinician_id else None
    if clinician is not None:
        clinician.last_supporter_id = offer.supporter_id
    return conv


def withdraw_offers(session: Session, conv: Conversation, now: datetime, effects: Effects) -> None:
    """The conversation ended or was taken: pending offers for it can no longer be accepted."""
    for offer in session.scalars(
        select(Offer).where(Offer.conversation_id == conv.id, Offer.state == OfferState.PENDING)
    ):
        if answer(session, offer, OfferState.WITHDRAWN, now):
            effects.cancel(Task.EXPIRE_OFFER, offer.id)


def pending_offer(session: Session, conv: Conversation) -> Offer | None:
    return session.scalar(
        select(Offer).where(Offer.conversation_id == conv.id, Offer.state == OfferState.PENDING)
    )
