"""Everything the voice line says aloud: short, calm, plain. (Texts live in wording.py.)"""

from __future__ import annotations

import re

from hotline.programmes import ProgrammeConfig

# Keypad choices offered in the greeting; anything else (or nothing) means "anyone".
MENU = {"1": "nurse", "2": "physician", "3": "pharmacist"}


def greeting(p: ProgrammeConfig) -> str:
    """The programme's spoken greeting, then the crisis sentence, which is always said."""
    return f"{p.call_greeting} {p.crisis_text}"


def menu() -> str:
    return (
        "To talk with a nurse, press 1. A physician, press 2. A pharmacist, press 3. "
        "Or stay on the line for the first available peer."
    )


def holding(first: bool) -> str:
    if first:
        return "Thank you. We're calling a peer supporter for you now. Please stay on the line."
    return "We're still finding a peer supporter for you. Thank you for staying on the line."


def call_back(p: ProgrammeConfig) -> str:
    return (
        "No peer supporter could pick up just now. A peer will call you back shortly from this "
        f"same number. {p.crisis_text} Thank you for reaching out. Goodbye."
    )


def call_back_later(p: ProgrammeConfig) -> str:
    """Nobody on call can take the call-back now (3 a.m., everyone busy): no "shortly"."""
    return (
        "No peer supporter is free right now. Your request is waiting, and a peer will call you "
        "back from this same number as soon as one is free. We'll text you what happens next. "
        f"{p.crisis_text} Thank you for reaching out. Goodbye."
    )


def no_call_back(p: ProgrammeConfig) -> str:
    """Nobody picked up and the caller's number is hidden, so nobody can call them back."""
    return (
        "No peer supporter could pick up just now, and your number is hidden or could not be "
        "verified, so we can't call "
        f"you back. Please call again soon, or send a text message to this number. {p.crisis_text}"
    )


def goodbye(p: ProgrammeConfig) -> str:
    """A caller still on the line whose request ended some other way: never without the
    crisis sentence."""
    return f"Thank you for calling the peer support line. {p.crisis_text} Goodbye."


def thanks() -> str:
    return "Thank you for calling the peer support line. Take care. Goodbye."


def not_connected(p: ProgrammeConfig, hidden: bool = False) -> str:
    """A peer pressed 1 but the call was never joined (their phone dropped): the caller, still
    on the line, has talked to nobody. ``hidden``: their number is hidden or not vouched for,
    so the peer cannot call them back (they are texted so): no promise of a call."""
    if hidden:
        return (
            "The peer supporter who picked up could not be connected just now, and your number "
            "is hidden or could not be verified, so they can't call you back. Please call "
            f"again, or send a text message to this number. {p.crisis_text} Goodbye."
        )
    return (
        "The peer supporter who picked up could not be connected just now. They will call you "
        f"back shortly from this same number. {p.crisis_text} Goodbye."
    )


def calling_peer() -> str:
    return "Calling the peer supporter you've been talking with. Please stay on the line."


def peer_not_available() -> str:
    return "Your peer supporter can't pick up just now. Your texts still reach them."


def whisper_peer() -> str:
    return "Peer support line. Your caller on this number would like to talk. Press 1 to talk."


def peer_passed() -> str:
    return "Your caller will hear that you can't pick up just now. Thank you."


def whisper() -> str:
    return "Peer support line. A clinician would like to talk. Press 1 to take this call."


def screen_passed() -> str:
    return "We'll pass it on. Thank you."


def call_gone() -> str:
    return "This call has already ended or been taken. Thank you."


def connecting() -> str:
    return "Connecting you to your caller."


def whisper_through() -> str:
    """The screen on a clinician's phone when their peer calls through the mask: whoever
    answers may not be the clinician, so it names no line, programme or hospital."""
    return "You have a call. Press 1 to connect."


def caller_unavailable() -> str:
    return "Your caller didn't answer. You can text them on this number, or try again later."


def caller_forgotten() -> str:
    return "This caller can no longer be reached through the line. Thank you."


def caller_not_vouched() -> str:
    """A call to a pool number whose caller ID the carrier did not vouch for: it could be
    anyone's, so it is put through to nobody."""
    return (
        "This call can't be connected: the number it comes from could not be verified. "
        "Please send a text message to this number instead. Goodbye."
    )


def accept_by_text() -> str:
    """A supporter calls the pool number of a request offered them by text, not yet taken."""
    return (
        "A peer support request is waiting for you on this number. To take it, reply ACCEPT "
        "to this number by text, then call this number again to reach your caller. Goodbye."
    )


def no_live_conversation() -> str:
    return "There is no open conversation on this number. Goodbye."


def not_a_line(hotline_number: str) -> str:
    return (
        "This number doesn't take calls. For confidential peer support, call "
        f"{spoken_number(hotline_number)}. Goodbye."
    )


def line_closed(p: ProgrammeConfig) -> str:
    """Any call to a retired programme's numbers (retirement.py)."""
    return f"This peer support line has closed, and no longer reaches a peer. {p.crisis_text}"


def unknown_number() -> str:
    return "This number does not take calls. Goodbye."


# A phone number as people write one: groups of digits apart by a space, a dash or a dot
# ("116 123", "1-800-273-8255"); not "988 24 hours a day", two numbers. An amount with its
# thousands apart by commas ("1,000") is matched first, to be left as it is.
_WRITTEN_NUMBER = re.compile(r"(?P<amount>[0-9]{1,3}(?:,[0-9]{3})+)|[0-9]+(?:[ .-][0-9]{3,})*")


def digit_by_digit(text: str) -> str:
    """``text`` with every number of three or more digits read one digit at a time, its groups
    apart ("116 123": "1 1 6, 1 2 3"). A ``<Say>`` reads "988" as "nine hundred eighty-eight"
    and "911" as "nine hundred eleven", numbers nobody dials; what the line says aloud that
    has digits (a crisis sentence, a programme's greeting) names a phone number, rarely an
    amount, which is left as it is when written with its thousands apart ("1,000"). Shorter
    ones ("24/7", "press 1") stay as they are."""

    def apart(number: re.Match[str]) -> str:
        groups = re.findall(r"[0-9]+", number[0])
        if number["amount"] or sum(map(len, groups)) < 3:
            return number[0]
        return ", ".join(" ".join(group) for group in groups)

    return _WRITTEN_NUMBER.sub(apart, text)


def spoken_number(number: str) -> str:
    """``+15550100000`` -> ``5 5 5, 0 1 0, 0 0 0 0``: read digit by digit, in groups."""
    digits = number.removeprefix("+1") if number.startswith("+1") else number.lstrip("+")
    if len(digits) != 10:
        return " ".join(digits)
    groups = (digits[:3], digits[3:6], digits[6:])
    return ", ".join(" ".join(group) for group in groups)
