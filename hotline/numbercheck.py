"""Whether each of the line's numbers is set up at Twilio as the README's table says
(``hotline numbers check``), and setting it so on request (``--configure``: the line's
numbers, and those the environment names for the line that nothing else answers).

A number set up wrongly fails silently where it hurts: a text to a pool number whose
"A message comes in" points elsewhere never reaches the clinician, a number missing from the
account cannot send, and a call whose "Call status changes" is not ours keeps its record (both
numbers) at Twilio. Nothing here touches a person's number: only the programmes' own.

And whether a number may become the line's at all (``Gate``): every record of the line's numbers
is deleted at Twilio each hour, and their texts and calls are answered here, so a number of the
account that another service uses must never join. One whose webhooks already point here is
the line's beyond doubt; anything else waits until IT sets it up.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable
from dataclasses import dataclass
from urllib.parse import urlsplit

from sqlalchemy import select
from sqlalchemy.orm import Session

from hotline.models import PoolNumber, Programme
from hotline.phone import redact
from hotline.settings import Settings
from hotline.telephony import NumberSetup, NumberSetups, PermanentError, TelephonyError

SMS_PATH, VOICE_PATH, STATUS_PATH = "/twilio/sms", "/twilio/voice", "/twilio/status"
TWILIO_DEMO_HOST = "demo.twilio.com"  # Twilio's "welcome" TwiML: nobody's service


@dataclass(frozen=True)
class Webhooks:
    """The three URLs every one of the line's numbers must send to, by POST."""

    sms: str
    voice: str
    status: str

    @classmethod
    def at(cls, public_url: str) -> Webhooks:
        base = public_url.rstrip("/")
        return cls(f"{base}{SMS_PATH}", f"{base}{VOICE_PATH}", f"{base}{STATUS_PATH}")


@dataclass(frozen=True)
class OurNumber:
    programme: str  # slug
    number: str
    role: str  # "hotline", "pool" or "hotline and pool"


def our_numbers(session: Session) -> list[OurNumber]:
    """Every programme's hotline and pool numbers, each once, by programme. Only columns the
    first revision has are read: IT checks numbers before a release that migrates."""
    pools: dict[int, set[str]] = {}
    for programme_id, number in session.execute(select(PoolNumber.programme_id, PoolNumber.number)):
        pools.setdefault(programme_id, set()).add(number)
    found: dict[str, OurNumber] = {}
    programmes = session.execute(
        select(Programme.id, Programme.slug, Programme.hotline_number).order_by(Programme.id)
    )
    for programme_id, slug, hotline in programmes:
        pool = pools.get(programme_id, set())
        roles = {hotline: "hotline and pool" if hotline in pool else "hotline"}
        roles |= {number: "pool" for number in sorted(pool - {hotline})}
        for number, role in roles.items():
            found.setdefault(number, OurNumber(slug, number, role))
    return list(found.values())


def coming_numbers(settings: Settings, ours: list[OurNumber]) -> list[tuple[str, str]]:
    """The numbers HOTLINE_NUMBER and HOTLINE_POOL_NUMBERS name that are not the line's yet
    (before a first release, or one that brings them, got past the Gate), with the setting that
    names each: IT checks them at Twilio before that release."""
    known = {it.number for it in ours}
    named = {settings.hotline_number: "HOTLINE_NUMBER"}
    for number in settings.pool_numbers:
        named.setdefault(number, "HOTLINE_POOL_NUMBERS")
    return [(number, setting) for number, setting in named.items() if number not in known]


def problems(setup: NumberSetup | None, wanted: Webhooks) -> list[str]:
    """What is wrong with how a number is set up at Twilio, in the console's words."""
    if setup is None:
        return ["not a number of this Twilio account: texts and calls from it will fail"]
    found = []
    if setup.sms_application_sid:
        found.append(
            f"messaging is handled by the application {setup.sms_application_sid}: "
            f"point its request URL at POST {wanted.sms}, or remove it from the number"
        )
    elif (setup.sms_url, setup.sms_method.upper()) != (wanted.sms, "POST"):
        shown = _shown(setup.sms_url, setup.sms_method)
        found.append(f'"A message comes in" is {shown}, not POST {wanted.sms}')
    if setup.voice_application_sid:
        found.append(
            f"voice is handled by the application {setup.voice_application_sid}: point its "
            f"URLs at POST {wanted.voice} and {wanted.status}, or remove it from the number"
        )
    else:
        if (setup.voice_url, setup.voice_method.upper()) != (wanted.voice, "POST"):
            shown = _shown(setup.voice_url, setup.voice_method)
            found.append(f'"A call comes in" is {shown}, not POST {wanted.voice}')
        status = (setup.status_callback, setup.status_callback_method.upper())
        if status != (wanted.status, "POST"):
            shown = _shown(setup.status_callback, setup.status_callback_method)
            found.append(f'"Call status changes" is {shown}, not POST {wanted.status}')
    return found


def can_configure(setup: NumberSetup | None) -> bool:
    """Whether ``--configure`` may set the URLs: the number is the account's, and no
    application (perhaps another service's) overrides them."""
    return setup is not None and not (setup.sms_application_sid or setup.voice_application_sid)


def sends_elsewhere(setup: NumberSetup, public_url: str) -> str | None:
    """The host a number's URLs send its texts, calls or call statuses to other than this
    line's or Twilio's own demo (the URLs a newly bought number may come with): another
    service may use the number. None when nothing but this line could be answering it, so
    ``--configure`` may point a number not yet the line's here."""
    ours = urlsplit(public_url).hostname
    for url in (setup.sms_url, setup.voice_url, setup.status_callback):
        host = urlsplit(url).hostname if url else None
        if host and host not in (ours, TWILIO_DEMO_HOST):
            return host
    return None


def _shown(url: str, method: str) -> str:
    return f"{method.upper() or 'POST'} {url}" if url else "not set"


class NotSetUpHereError(ValueError):
    """A number new to the line that Twilio does not send here; ``later``: Twilio could not be
    asked, and the same change may pass later (in a few minutes, or once IT has fixed the
    deployment's Twilio credentials)."""

    def __init__(self, message: str, later: bool = False) -> None:
        super().__init__(message)
        self.later = later


@dataclass(frozen=True)
class Gate:
    """Lets a number become one of the line's (a hotline or pool number) only when the Twilio
    account says it sends its texts, calls and call statuses here, as the README's table says."""

    setups: NumberSetups
    public_url: str | None

    def admit(self, numbers: Iterable[str], may_wait: Collection[str] = ()) -> dict[str, list[str]]:
        """Refuse (NotSetUpHereError) ``numbers`` unless each is set up here, naming every one
        that is not (IT sets them all up at once, not one a refusal). Each is asked about at
        Twilio, so call it before writing anything (a row held locked meanwhile would hold up
        the texts that need it).

        Those of ``may_wait`` that are not set up are returned instead, each with what
        differs, to be left out of the change, unless another number is refused: then the
        refusal names them too."""
        numbers = list(numbers)
        if numbers and not self.public_url:
            raise NotSetUpHereError(
                f"{redact(numbers[0])} cannot join the line: without HOTLINE_PUBLIC_URL this "
                "line cannot check at Twilio that the number sends here"
            )
        wrong: dict[str, list[str]] = {}
        unchecked: tuple[str, TelephonyError] | None = None
        for number in numbers:
            try:
                setup = self.setups.number_setup(number)
            except TelephonyError as refused:  # asking on could hold the change 13 s a number
                unchecked = number, refused
                break
            found = problems(setup, Webhooks.at(self.public_url or ""))
            if found:
                wrong[number] = found
        if set(wrong) - set(may_wait):
            they, them = ("it", "it") if len(wrong) == 1 else ("they", "each")
            named = ". ".join(
                f"{redact(number)} cannot join the line yet: {'; '.join(found)}"
                for number, found in wrong.items()
            )
            raise NotSetUpHereError(
                f"{named}. Before {they} can, IT must set {them} up at Twilio to send "
                "its texts, calls and call statuses here (README: Twilio console set-up). The "
                "line deletes its numbers' records at Twilio: a number another service uses "
                "must never join"
            )
        if unchecked is not None:
            number, cause = unchecked
            then = "try again in a few minutes"
            if isinstance(cause, PermanentError):  # a 401 (a wrong token): waiting won't help
                then = f"{cause}; IT must check TWILIO_ACCOUNT_SID and TWILIO_AUTH_TOKEN"
            raise NotSetUpHereError(
                f"{redact(number)} could not be checked at Twilio: {then}", later=True
            )
        return wrong


def gate(telephony: object, public_url: str | None) -> Gate | None:
    """The gate of a deployment talking to phones through ``telephony``; None for the
    simulator, which has no account to check (nor another service's records to lose)."""
    return Gate(telephony, public_url) if isinstance(telephony, NumberSetups) else None
