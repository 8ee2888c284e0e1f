"""Text keywords: one word (any case, surrounding spaces ignored), parsed into a Command.

Twilio answers the opt-out words and the opt-in words START, YES and UNSTOP itself, and still
forwards them to us. That is why a supporter accepts with ACCEPT, not YES (though YES works).
Twilio matches them only as the whole text, any case, whitespace around it trimmed: "Yes!" or
"Start." lifts no block of Twilio's, so none of ours either (``Command.opt_in``). An opt-out
is kept in any form ("Stop." too: ``Command.bare``), the line's own record being stricter.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import timedelta
from enum import StrEnum


class Word(StrEnum):
    STOP = "stop"
    START = "start"
    HELP = "help"
    ACCEPT = "accept"
    PASS = "pass"  # noqa: S105 - a keyword, not a password
    DONE = "done"
    RESOURCES = "resources"
    BREAK = "break"
    BACK = "back"
    NOCHECKIN = "nocheckin"
    FORGET = "forget"
    DISCIPLINE = "discipline"
    # Asks for support like any first text; named so the coordinator's alert phone, whose
    # other texts to the line answer its alerts, can ask for support too.
    SUPPORT = "support"


# Twilio's default opt-out and opt-in words (Advanced Opt-Out adds REVOKE and OPTOUT).
OPT_OUT_WORDS = frozenset(
    {"stop", "stopall", "unsubscribe", "cancel", "end", "quit", "revoke", "optout"}
)
OPT_IN_WORDS = frozenset({"start", "unstop", "yes"})
DISCIPLINES = {
    "nurse": "nurse",
    "rn": "nurse",
    "doctor": "physician",
    "physician": "physician",
    "md": "physician",
    "resident": "physician",
    "pharmacist": "pharmacist",
    "therapist": "therapist",
    "tech": "technician",
    "medic": "paramedic",
    "paramedic": "paramedic",
}
_ALIASES = {
    "accept": Word.ACCEPT,
    "yes": Word.ACCEPT,
    "y": Word.ACCEPT,
    "pass": Word.PASS,
    "no": Word.PASS,
    "n": Word.PASS,
    "done": Word.DONE,
    "resources": Word.RESOURCES,
    "back": Word.BACK,
    "help": Word.HELP,
    "info": Word.HELP,
    "nocheckin": Word.NOCHECKIN,
    "nocheckins": Word.NOCHECKIN,
    "forget": Word.FORGET,
    "support": Word.SUPPORT,
}
_EVERYDAY = frozenset({"yes", "y", "no", "n"})
# A supporter's answers, which may come with an emoji or a comma (keywords._undecorated).
_ANSWERS = frozenset({"accept", "yes", "y", "pass", "no", "n", "done", "resources", "back"})
# Emoji (with their skin tones and joiners), punctuation and spaces around a word; not "?".
_DECORATION = re.compile(r"^[^\w?]+|[^\w?]+$")
_HOURS = "h|hr|hrs|hour|hours"
_MINUTES = "m|min|mins|minute|minutes"
# BREAK, BREAK 2 (hours up to BARE_HOURS; BREAK 30 or BREAK 20 minutes), BREAK 2h,
# BREAK 30m, and as people write the rest: "45 minutes", "1h 30m", "1h30", "1 hour 30 minutes".
# One the line does not read is a text to relay: inside a conversation the clinician got
# "Break 1h 30m" from their peer, and she had no break.
_BREAK = re.compile(
    rf"^break(?:\s+(\d{{1,3}})\s*(?:({_HOURS})(?:\s*(\d{{1,2}})\s*(?:{_MINUTES})?)?"
    rf"|({_MINUTES}))?)?$"
)
# Declining check-ins in a few words: the check-in asks for NOCHECKIN, but a keyboard splits it
# ("No checkin") and people write "No more check-ins, thanks" or "Stop check-ins". As a message
# it opened a request, woke a peer, and the peer's DONE began a fresh cadence. Narrow on
# purpose: "no more" alone, or a question, stays a message to a peer.
_NO_CHECKINS = re.compile(
    r"^(?:please,? )?(?:no (?:more )?|stop (?:the )?)check[ -]?ins?"
    r"(?:,? (?:please|thanks|thank you))?$"
)
DEFAULT_BREAK = timedelta(hours=1)
MAX_BREAK = timedelta(hours=24)
BARE_HOURS = 12  # "BREAK 8" is a night's sleep; "BREAK 15" a quarter of an hour


@dataclass(frozen=True)
class Command:
    word: Word
    duration: timedelta | None = None  # BREAK
    discipline: str | None = None  # a discipline word, e.g. NURSE
    # START/UNSTOP/YES alone (Twilio lifted its block for this pair); "Yes!" is not.
    opt_in: bool = False
    # YES/Y/NO/N: a reply to an offer, but inside a conversation an answer to the clinician.
    everyday: bool = False
    # The word alone, as Twilio matches its opt-out words: "Stop." is understood here, but
    # Twilio may not have blocked the pair or answered it, so the line confirms it itself.
    bare: bool = True
    # Said in a few words ("No more check-ins"), not the keyword: inside a live conversation
    # it is the clinician answering their peer, and is relayed (clinicianline.clinician_text).
    phrase: bool = False


def parse(body: str) -> Command | None:
    """The keyword in ``body``, or None when it is an ordinary message to relay.

    A supporter's answers may carry what a phone's keyboard adds around a word ("Done 👍",
    "Accept,"); see ``_undecorated``."""
    spaced = " ".join(body.strip().lower().split())
    text = spaced.strip(".!")
    if text in OPT_OUT_WORDS:
        return Command(Word.STOP, bare=text == spaced)
    if spaced in ("start", "unstop"):
        return Command(Word.START, opt_in=True)
    word = _undecorated(text)
    if word in _ALIASES:
        return Command(_ALIASES[word], opt_in=spaced == "yes", everyday=word in _EVERYDAY)
    if _NO_CHECKINS.match(text):
        return Command(Word.NOCHECKIN, phrase=True)
    if word in DISCIPLINES:
        return Command(Word.DISCIPLINE, discipline=DISCIPLINES[word])
    match = _BREAK.match(word)
    if match:
        no_unit = match[2] is None and match[4] is None
        return Command(Word.BREAK, duration=_break_length(match[1], match[3], match[4], no_unit))
    return None


# What Twilio's OptOutType says it matched (sent when a Messaging Service has Advanced Opt-Out,
# whose own words, "ARRET" or "PARAR", this parser does not know): Twilio has blocked or unblocked
# the pair already, and answered the sender, so its reading wins.
_TWILIO_READING = {
    "STOP": Command(Word.STOP),
    "START": Command(Word.START, opt_in=True),
    "HELP": Command(Word.HELP),
}


def read(body: str, opt_out_type: str = "") -> Command | None:
    """The keyword in an inbound text: ``parse(body)``, unless Twilio's ``OptOutType`` says the
    text was one of its opt-out, opt-in or help words and the parse says otherwise. A "yes"
    Twilio took as an opt-in stays an answer to an offer (it lifts the block either way)."""
    command = parse(body)
    twilio = _TWILIO_READING.get(opt_out_type.strip().upper())
    if twilio is None or command is None:
        return twilio or command
    if command.word is twilio.word or (twilio.opt_in and command.opt_in):
        return command
    return twilio


# What a supporter answers a reminder or a code with ("Thanks!", "ok 👍", "Got it, thank you"):
# every word one of these. Anything else they write to the line is theirs to say.
_ACKNOWLEDGING = frozenset(
    {
        "thanks", "thank", "you", "u", "thx", "ty", "tks", "ok", "okay", "k", "kk", "got",
        "it", "will", "do", "noted", "sure", "great", "cool", "perfect", "sounds", "good",
        "yes", "yep", "yeah", "y", "done", "confirmed", "received", "see", "np", "all", "set",
    }
)  # fmt: skip


def is_acknowledgement(body: str) -> bool:
    """Whether ``body`` only acknowledges (emoji alone too): "Thanks!", "ok 👍", "Got it".
    "I'm not OK" is not one: it has words of its own."""
    words = re.sub(r"[^\w\s]|_", " ", body.lower()).split()
    return all(word in _ACKNOWLEDGING for word in words)


def _undecorated(text: str) -> str:
    """A supporter's answer without the emoji, punctuation and spaces around it ("done 👍",
    "accept,", "break 2h 👍"). Other words are read whole: Twilio reads its own (opt-out,
    START, YES) so, and a clinician's "Help 😢" to their peer is a message, not HELP. A question
    mark keeps a word from being a command: "Done?" asks the other side something."""
    bare = _DECORATION.sub("", text)
    return bare if bare in _ANSWERS or _BREAK.match(bare) else text


def _break_length(
    amount: str | None, and_minutes: str | None, minutes_unit: str | None, no_unit: bool
) -> timedelta:
    """``amount`` hours (and ``and_minutes``), or minutes when its unit says so. A number with
    no unit over BARE_HOURS is minutes: "BREAK 30" or "BREAK 20", typed between patients,
    meant minutes, and put her on a break for most of a day."""
    if amount is None:
        return DEFAULT_BREAK
    in_minutes = minutes_unit or (no_unit and int(amount) > BARE_HOURS)
    minutes = int(amount) if in_minutes else int(amount) * 60 + int(and_minutes or 0)
    return min(timedelta(minutes=max(minutes, 1)), MAX_BREAK)
