"""Programmes: which one a number belongs to, and each one's effective texts and settings.

The environment defines the first programme (slug ``default``); more are added with
``hotline programme add``. A programme's NULL columns fall back to the environment's defaults.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Collection
from dataclasses import dataclass
from datetime import time, timedelta
from typing import TYPE_CHECKING, TypeVar
from zoneinfo import ZoneInfo

from sqlalchemy import CompoundSelect, or_, select, union_all
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, joinedload

from hotline.models import (
    Clinician,
    Conversation,
    ConversationState,
    Offer,
    OfferState,
    PoolNumber,
    Programme,
    Supporter,
)
from hotline.phone import redact
from hotline.pool_setting import (
    places,
    record_applied,
    taken_out_since,
    warn_someones_phone,
    warn_taken_out,
)
from hotline.settings import Settings, SettingsError, parse_hours, parse_offsets

if TYPE_CHECKING:
    from hotline.numbercheck import Gate
    from hotline.privacy import Vault
    from hotline.services import Services

log = logging.getLogger(__name__)
T = TypeVar("T")

DEFAULT_SLUG = "default"
DEFAULT_NAME = "Peer support"
DEFAULT_GREETING = (
    "You've reached the clinician peer support line. It's confidential and voluntary, "
    "and not for emergencies. A trained peer will text you back here as soon as they can."
)
DEFAULT_CALL_GREETING = (
    "You've reached the clinician peer support line. It is confidential and voluntary, "
    "and it is not for emergencies."
)
DEFAULT_RESOURCES = (
    "More support: your Employee Assistance Program (EAP) offers free, confidential "
    "counseling. 988 Suicide & Crisis Lifeline: call or text 988, any time."
)
DEFAULT_CHECKIN_TEXT = (
    "Checking in from the peer support line: how are you doing? Reply any time to talk. "
    "Reply NOCHECKIN to stop check-ins, STOP to stop all texts."
)


@dataclass(frozen=True)
class ProgrammeConfig:
    """A programme as the core uses it: every text and setting resolved."""

    id: int
    name: str
    hotline_number: str
    pool_numbers: tuple[str, ...]
    zone: ZoneInfo
    greeting: str
    call_greeting: str
    crisis_text: str
    resources_text: str
    offer_timeout: timedelta
    checkin_offsets: tuple[timedelta, ...]
    checkin_hours: tuple[time, time] | None
    checkin_text: str
    retired: bool = False  # retirement.py: its numbers answer that the line has closed


def config_of(programme: Programme, settings: Settings) -> ProgrammeConfig:
    hours = settings.checkin_hours
    if programme.checkin_hours is not None:
        hours = _stored(programme, "check-in hours", parse_hours, programme.checkin_hours, hours)
    offsets = settings.checkin_offsets
    if programme.checkin_offsets:
        offsets = _stored(
            programme, "check-in cadence", parse_offsets, programme.checkin_offsets, offsets
        )
    return ProgrammeConfig(
        id=programme.id,
        name=programme.name,
        hotline_number=programme.hotline_number,
        pool_numbers=tuple(p.number for p in programme.pool_numbers) or (programme.hotline_number,),
        zone=ZoneInfo(programme.timezone or settings.timezone),
        greeting=programme.greeting or DEFAULT_GREETING,
        call_greeting=programme.call_greeting or DEFAULT_CALL_GREETING,
        crisis_text=programme.crisis_text or settings.crisis_text,
        resources_text=programme.resources_text or DEFAULT_RESOURCES,
        offer_timeout=timedelta(seconds=programme.offer_timeout or settings.offer_timeout),
        checkin_offsets=offsets,
        checkin_hours=hours,
        checkin_text=programme.checkin_text or DEFAULT_CHECKIN_TEXT,
        retired=programme.retired_at is not None,
    )


def _stored(programme: Programme, what: str, parse: Callable[[str], T], text: str, default: T) -> T:
    """A stored setting, or the environment's default if it no longer parses (a value saved
    before a release that refuses it must not fail every text; the coordinator sees it)."""
    try:
        return parse(text)
    except SettingsError:
        log.warning(
            "programme %s: stored %s no longer valid; using the default", programme.id, what
        )
        return default


@dataclass(frozen=True)
class NumberMatch:
    """What an inbound ``To`` number is: a programme's hotline number or one of its pool."""

    programme: Programme
    is_hotline: bool


def find_by_number(session: Session, number: str) -> NumberMatch | None:
    """The programme that owns ``number``; a number that is both hotline and pool is hotline.

    One query, with the programme's pool numbers joined in (``config_of`` reads them next).
    """
    pool_owner = select(PoolNumber.programme_id).where(PoolNumber.number == number)
    found = (
        session.scalars(
            select(Programme)
            .where(or_(Programme.hotline_number == number, Programme.id.in_(pool_owner)))
            .options(joinedload(Programme.pool_numbers))
        )
        .unique()
        .all()
    )
    for programme in found:
        if programme.hotline_number == number:
            return NumberMatch(programme, is_hotline=True)
    return NumberMatch(found[0], is_hotline=False) if found else None


def number_role(session: Session, number: str) -> str:
    """How a log names one of our numbers without writing it out: its programme and its place
    there ("programme 'main': pool number 2 of 3"), as the Settings page lists them."""
    match = find_by_number(session, number)
    if match is None:
        return "a number no programme has"
    programme = match.programme
    if match.is_hotline:
        return f"programme {programme.slug!r}: hotline number"
    pool = [n.number for n in programme.pool_numbers]
    return f"programme {programme.slug!r}: pool number {pool.index(number) + 1} of {len(pool)}"


def crisis_texts(session: Session, settings: Settings) -> dict[str, str]:
    """Every one of our numbers with its programme's crisis sentence (``Services.crisis_texts``:
    what an outage answers with)."""
    found: dict[str, str] = {}
    for programme in session.scalars(
        select(Programme).options(joinedload(Programme.pool_numbers))
    ).unique():
        text = config_of(programme, settings).crisis_text
        for number in [programme.hotline_number, *(p.number for p in programme.pool_numbers)]:
            found[number] = text
    return found


def peer_numbers(session: Session) -> set[str]:
    """Our pool numbers that are no programme's hotline number: only peers text those."""
    hotlines = set(session.scalars(select(Programme.hotline_number)))
    return set(session.scalars(select(PoolNumber.number))) - hotlines


def remember_crisis_texts(services: Services) -> None:
    """Each number's crisis sentence, read at start and every few minutes after (relays on the
    fast path do not read their programme), so an outage answers with it; kept as last read
    when the database is down. And which numbers only peers text, whom an outage answers
    differently."""
    try:
        with services.sessions() as session:
            found = crisis_texts(session, services.settings)
            services.crisis_texts.replace(found, peer_numbers(session))
    except SQLAlchemyError as error:
        log.warning("crisis sentences not read: %s", type(error).__name__)


def own_numbers(session: Session) -> set[str]:
    """Every number of every programme (to refuse loops: texts that come from ourselves).

    Compared in Python on purpose: a query comparing the sender in SQL would send a clinician's
    number to the database in plaintext as a parameter, where statement logs keep it (the
    canary test caught exactly that when the two lookups were merged into one query).
    """
    every = union_all(select(Programme.hotline_number), select(PoolNumber.number))
    return set(session.scalars(every))


class NumberTakenError(ValueError):
    """A number given to a programme is already another programme's."""


class NumberInUseError(ValueError):
    """A pool number taken from a programme is carrying a conversation or an offer now."""

    MESSAGE = (
        "a number you removed is carrying a conversation or an offer now; remove it once "
        "they have ended"
    )


def numbers_of_others(session: Session, programme_id: int | None, numbers: list[str]) -> set[str]:
    """Those of ``numbers`` that are another programme's hotline or pool number. A number has
    one owner: ``find_by_number`` would send its texts to one programme whatever the other
    expects."""
    others = union_all(
        select(Programme.hotline_number.label("number")).where(
            Programme.id != programme_id, Programme.hotline_number.in_(numbers)
        ),
        select(PoolNumber.number).where(
            PoolNumber.programme_id != programme_id, PoolNumber.number.in_(numbers)
        ),
    )
    return set(session.scalars(others))


def _taken(session: Session, taken: set[str]) -> str:
    """Why numbers another programme has are refused: each masked, as every refusal prints a
    number (IT typed it; a deploy log keeps the output), with whose it is and where there."""
    named = "; ".join(
        f"{redact(n)} is already another programme's number ({number_role(session, n)})"
        for n in sorted(taken)
    )
    return f"{named}. Each number serves one programme"


SOMEONES_PHONE = "a number there is a supporter's or clinician's phone, not one of the line's"


def someones_phone(session: Session, vault: Vault, numbers: list[str]) -> bool:
    """Whether any of ``numbers`` is a known person's, in any programme, under any data key."""
    return bool(peoples_phones(session, vault, numbers))


def peoples_phones(session: Session, vault: Vault, numbers: list[str]) -> set[str]:
    """Those of ``numbers`` that are a known person's, in any programme, under any data key
    (matched by blind index: no number goes to the database in plaintext)."""
    indexes = {n: vault.blind_indexes(n) for n in numbers}
    every = [h for found in indexes.values() for h in found]
    people: CompoundSelect[tuple[str | None]] = union_all(
        select(Supporter.phone_hash).where(Supporter.phone_hash.in_(every)),
        select(Clinician.phone_hash).where(Clinician.phone_hash.in_(every)),
    )
    known = set(session.scalars(people))
    return {n for n, found in indexes.items() if known.intersection(found)}


def numbers_in_use(session: Session, programme_id: int, numbers: list[str]) -> bool:
    """Whether any of ``numbers`` carries one of the programme's live conversations, pending
    offers or claims (``CLAIMED``: the request comes to her there if the caller hangs up,
    routing.pools_in_use), or an offer a call withdrew while it rings (pending there again
    if they hang up, and her ACCEPT there now a claim: ringing.withdrawn_as_it_rings). Texts
    to a number no programme owns are ignored: taken from the pool meanwhile, the supporter's
    replies on it would vanish."""
    from hotline.ringing import withdrawn_as_it_rings  # ringing imports this module

    live = select(Conversation.id).where(
        Conversation.programme_id == programme_id,
        Conversation.state == ConversationState.ACTIVE,
        Conversation.pool_number.in_(numbers),
    )
    offered = (
        select(Offer.id)
        .join(Conversation, Conversation.id == Offer.conversation_id)
        .where(
            Conversation.programme_id == programme_id,
            or_(
                Offer.state.in_((OfferState.PENDING, OfferState.CLAIMED)),
                withdrawn_as_it_rings(),
            ),
            Offer.pool_number.in_(numbers),
        )
    )
    return session.scalar(select(live.exists() | offered.exists())) or False


def read_under_lock(session: Session, programme: Programme) -> None:
    """Take the programme's lock (routing.lock_programme), then read the programme and its pool
    again: another change (a coordinator's Settings, the API, another release) may have been
    saved since ``programme`` was read, and this one goes on from what it left. Offers are made
    under the same lock, from the pool as it stands then (routing.candidates), so a number this
    change takes out carries no offer numbers_in_use cannot see: unlocked, a removal could pass
    that check while a webhook made an offer there, leaving the peer an offer on a number the
    line no longer owns.

    After Twilio is asked about new numbers (a lock held while Twilio answers would hold up
    every offer of the programme); before any row is written (the lock order: the programme's
    row first)."""
    from hotline.routing import lock_programme  # routing imports this module

    lock_programme(session, programme.id)
    session.refresh(programme)  # the pool too: read again when next used


def ensure_programme(
    session: Session,
    *,
    slug: str,
    name: str | None,
    hotline_number: str,
    pool_numbers: tuple[str, ...],
    timezone: str | None = None,
    replace_pools: bool = True,
    vault: Vault | None = None,
    gate: Gate | None = None,
    pool_setting: str | None = None,
    pool_listed: bool = True,
) -> Programme:
    """Create the programme ``slug`` or bring it up to date (idempotent); refused
    (NumberTakenError) when a number is another programme's, and (NumberInUseError) when a
    pool number it would drop carries a live conversation, a pending offer, a claim, or an
    offer withdrawn for a call that still rings (numbers_in_use).

    ``name`` None keeps the programme's name (a new one is called DEFAULT_NAME); no
    ``pool_numbers`` keeps its pool (a new one has the hotline number alone). With
    ``replace_pools=False`` the given pool numbers are only added, never removed, so pool
    numbers a coordinator added in the console survive ``hotline db upgrade``; a pool that is
    still the hotline number alone (HOTLINE_POOL_NUMBERS' default) is replaced, not added to:
    routing takes a supporter's free number used longest ago (never, first), so the number
    clinicians text would carry every supporter's first offer.

    A new ``hotline_number`` keeps the old one in the pool (see ``_pool``). With ``vault``, a
    number that is a supporter's or clinician's phone is refused too (NumberTakenError), as the
    console's Settings refuse it: texts and calls from the line's own numbers are ignored, so
    that person would be cut off from every line of the deployment (a pool number with
    ``pool_setting`` is left out instead, see below). With ``gate``, a number
    not yet the deployment's is refused (numbercheck.NotSetUpHereError) unless Twilio sends it
    here; it is asked before anything is written. ``pool_setting`` names the setting
    ``pool_numbers`` came from: a pool number Twilio does not send here, that is another
    programme's (a coordinator moved it in Settings), or that is a person's phone, is then left
    out, and logged by its place there, rather than refusing the change (see _left_out,
    _left_with_its_programme, pool_setting.warn_someones_phone); and the
    setting applies as edits: one it listed when last applied that the pool no longer has was
    taken out since, and stays out (pool_setting.py), said in the log unless ``pool_listed``
    is False (the setting unset: its default, the hotline number alone, is not IT's to edit).
    """
    given = pool_numbers
    programme = session.scalar(select(Programme).where(Programme.slug == slug))
    taken = numbers_of_others(
        session, programme.id if programme else None, [hotline_number, *pool_numbers]
    )
    if taken and pool_setting and hotline_number not in taken:
        _left_with_its_programme(session, slug, pool_setting, given, taken)
        pool_numbers = tuple(n for n in pool_numbers if n not in taken)
        taken = set()
    if taken:
        raise NumberTakenError(_taken(session, taken))
    out = taken_out_since(programme, pool_numbers) if pool_setting else set()
    if out and pool_listed:
        warn_taken_out(slug, pool_setting or "", given, out)
    if out:
        pool_numbers = tuple(n for n in pool_numbers if n not in out)
    persons = set()
    if vault is not None:
        persons = peoples_phones(session, vault, [hotline_number, *pool_numbers])
    if persons and pool_setting and hotline_number not in persons:
        warn_someones_phone(slug, pool_setting, given, persons)
        pool_numbers = tuple(n for n in pool_numbers if n not in persons)
    elif persons:
        raise NumberTakenError(SOMEONES_PHONE)
    wanted = _pool(programme, hotline_number, pool_numbers, replace_pools)
    may_wait = [n for n in pool_numbers if n != hotline_number] if pool_setting else []
    waiting = admit_new(session, gate, [hotline_number, *wanted], may_wait)  # before writing
    if waiting:
        _left_out(slug, pool_setting or "", given, waiting)
    if programme is not None:
        read_under_lock(session, programme)
        # From the pool as it stands now: a number added meanwhile is the line's already, one
        # taken out meanwhile is asked back only by this change's own list (asked above).
        wanted = _pool(programme, hotline_number, pool_numbers, replace_pools)
    if waiting:
        kept = [p.number for p in programme.pool_numbers] if programme else []
        wanted = [n for n in wanted if n not in waiting] or kept or [hotline_number]
    if programme is not None:
        # The hotline number stays the programme's even when it leaves the pool.
        dropped = [
            p.number
            for p in programme.pool_numbers
            if p.number not in wanted and p.number != hotline_number
        ]
        if numbers_in_use(session, programme.id, dropped):
            raise NumberInUseError(NumberInUseError.MESSAGE)
    if programme is None:
        programme = Programme(slug=slug, name=name or DEFAULT_NAME, hotline_number=hotline_number)
        session.add(programme)
    elif name is not None:
        programme.name = name
    current = {p.number: p for p in programme.pool_numbers}
    programme.hotline_number = hotline_number
    if timezone is not None:
        programme.timezone = timezone
    programme.pool_numbers = [current.get(n) or PoolNumber(number=n) for n in wanted]
    if pool_setting:
        record_applied(programme, given, out)
    session.flush()
    return programme


class OldNumberLeavingError(ValueError):
    """A new hotline number given with a pool that leaves the old one out."""


def _pool(
    programme: Programme | None,
    hotline_number: str,
    pool_numbers: tuple[str, ...],
    replace_pools: bool,
) -> list[str]:
    """The pool ``ensure_programme`` leaves (see there).

    A renumbered programme keeps its old hotline number in its pool: clinicians text the number
    they saved, and a text or call to a pool number from anyone but a supporter is answered
    with the hotline number, the new one; off the line, it would go unanswered. Its records
    go on being deleted at Twilio. A pool given to replace the old one must keep it
    (OldNumberLeavingError); taking it out later, once Twilio no longer sends it here, is a
    change of its own.
    """
    wanted = [n for n in pool_numbers if n != hotline_number] or [hotline_number]
    if programme is None:
        return wanted
    current = [p.number for p in programme.pool_numbers]
    if not pool_numbers:
        wanted = current
    elif not (replace_pools or current == [hotline_number]):
        wanted = current + [n for n in wanted if n not in current]
    old = programme.hotline_number
    if old == hotline_number or old in wanted:
        return wanted
    if pool_numbers and replace_pools:
        raise OldNumberLeavingError(
            f"{redact(old)}, the number clinicians have saved, would leave the line and their "
            "texts to it go unanswered: keep it in the pool (--pool), where a clinician who "
            "texts or calls it is told the new number; take it out once Twilio no longer "
            "sends it here"
        )
    return [*wanted, old]


def admit_new(
    session: Session, gate: Gate | None, numbers: list[str], may_wait: Collection[str] = ()
) -> dict[str, list[str]]:
    """Ask ``gate`` (numbercheck.Gate) about those of ``numbers`` that are not yet the
    deployment's; none without a gate (the simulator). A change that keeps the line's numbers
    needs no answer from Twilio. Those of ``may_wait`` not set up are returned, with what
    differs, rather than refused (Gate.admit)."""
    if gate is None:
        return {}
    known = own_numbers(session)
    return gate.admit([n for n in dict.fromkeys(numbers) if n not in known], may_wait)


def _left_out(
    slug: str, setting: str, given: tuple[str, ...], waiting: dict[str, list[str]]
) -> None:
    """Say which numbers of ``setting`` stay out of the pool, and what IT changes. Left out,
    not refused: a number a coordinator took out and IT released still listed there would
    otherwise stop every release until the environment is edited, security fixes included;
    leaving it out changes nothing the line does. By its place in the setting, not the number
    (no phone numbers in logs)."""
    for place, number in places(given, waiting):
        found = waiting[number]
        log.warning(
            "%s: its number %d of %d is left out of programme %r's pool until Twilio sends "
            "it here: %s. If it was released or is not the line's, remove it from %s; if it "
            "is, set it up at Twilio (README: Twilio console set-up) and it joins at the next "
            "`hotline db upgrade` (`hotline numbers check` shows the number and what differs)",
            setting,
            place,
            len(given),
            slug,
            "; ".join(found),
            setting,
        )


def _left_with_its_programme(
    session: Session, slug: str, setting: str, given: tuple[str, ...], taken: set[str]
) -> None:
    """Say which numbers of ``setting`` are another programme's, so stay out of ``slug``'s
    pool. Left out, not refused, as in _left_out: a coordinator may move a pool number to
    another programme in Settings, and the environment still listing it would otherwise stop
    every release until IT edits it. By its place in the setting (no phone numbers in logs)."""
    for place, number in places(given, taken):
        owner = find_by_number(session, number)
        log.warning(
            "%s: its number %d of %d is left out of programme %r's pool: it is programme %r's "
            "number (each number serves one programme; a coordinator may have moved it in "
            "Settings). If it is to stay there, remove it from %s; if not, take it out of "
            "that programme's pool first, and it joins at the next `hotline db upgrade`",
            setting,
            place,
            len(given),
            slug,
            owner.programme.slug if owner else "another",
            setting,
        )


def ensure_default_programme(
    session: Session, settings: Settings, vault: Vault | None = None, gate: Gate | None = None
) -> Programme:
    """The first programme, as the environment defines it (``vault``, ``gate``: see
    ensure_programme)."""
    return ensure_programme(
        session,
        slug=DEFAULT_SLUG,
        name=None,  # a name given with `hotline programme add` stays
        hotline_number=settings.hotline_number,
        pool_numbers=settings.pool_numbers,
        replace_pools=False,
        vault=vault,
        gate=gate,
        pool_setting="HOTLINE_POOL_NUMBERS",
        pool_listed=settings.pool_numbers_listed,
    )
