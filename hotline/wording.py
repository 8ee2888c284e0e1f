"""Every text the hotline sends, in one place: short, warm, plain.

Only GSM-7 characters here (straight quotes, "-", "..."): a single curly quote, dash or emoji
sends the whole text as UCS-2, 70 characters a segment instead of 160.
tests/hotline/test_wording.py holds each text to its segment budget.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from hotline.programmes import ProgrammeConfig

DISCIPLINE_HINT = "Want a peer from your own field? Reply NURSE, DOCTOR or PHARMACIST."
MAX_TEXT = 1600  # characters: Twilio refuses a longer body (error 21617)


def greeting(p: ProgrammeConfig) -> str:
    return f"{p.greeting} {DISCIPLINE_HINT} {p.crisis_text}"


def greeting_nobody_free(p: ProgrammeConfig, next_on_call: datetime | None, now: datetime) -> str:
    """A first text nobody can take now: the greeting and what happens next in one text, with
    the crisis sentence once (two texts said it twice, in five segments). Programmes may
    write long texts: see routing, which sends the two apart when this would not fit."""
    return (
        f"{p.greeting} No peer is free right now; your request is waiting."
        f"{_next_on_call(p, next_on_call, now)} {DISCIPLINE_HINT} {p.crisis_text}"
    )


def checkin_replied(p: ProgrammeConfig, with_crisis: bool = True) -> str:
    """A text answering a check-in, offered to a peer: greeted when they first wrote, the
    clinician is not given the greeting's preamble and field hint again, only that a peer
    will text, and the crisis sentence, as every first answer carries it (one segment with
    the default one). Without it when too long to share the text: see routing."""
    crisis = f" {p.crisis_text}" if with_crisis else ""
    return f"Glad you wrote. A peer will text here.{crisis}"


def checkin_replied_nobody_free(
    p: ProgrammeConfig, next_on_call: datetime | None, now: datetime, with_crisis: bool = True
) -> str:
    """A text answering a check-in that nobody can take now: as greeting_nobody_free, without
    the greeting they had before (see checkin_replied)."""
    crisis = f" {p.crisis_text}" if with_crisis else ""
    return (
        "Glad you wrote. No peer is free right now; your request is waiting, and a peer will "
        f"text here.{_next_on_call(p, next_on_call, now)}{crisis}"
    )


def clinician_help(p: ProgrammeConfig) -> str:
    return (
        f"{p.name}: confidential, voluntary peer support for clinicians, not for emergencies. "
        f"Text here to reach a trained peer. Reply STOP to stop texts. {p.crisis_text}"
    )


CHECKIN_REPLY = "a reply to a check-in"


def offer(discipline: str | None, call_back: bool = False, checkin_reply: bool = False) -> str:
    """checkin_reply: the clinician is answering a check-in, someone the line has talked with,
    whom a peer greets so ("glad to hear from you again"). Nothing of what they wrote."""
    wanted = f" (asked for a {discipline} peer)" if discipline else ""
    if call_back:
        kind = "Peer support call-back request: a clinician called"
    elif checkin_reply:
        kind = f"Peer support request: {CHECKIN_REPLY}"
    else:
        kind = "Peer support request"
    return f"{kind}{wanted}. Reply ACCEPT to take it or PASS to pass it on."


def joined(call_back: bool = False) -> str:
    if call_back:
        return (
            "A peer supporter will call you back shortly from this number. "
            "What you share stays between you."
        )
    return "A peer supporter has joined and will text you here. What you share stays between you."


def accepted_for_supporter(call_back: bool = False) -> str:
    if call_back:
        return (
            "It's yours. Call this number to reach your caller (they see the line's number, "
            "not yours); texts here reach them too. Reply DONE when finished."
        )
    return "You're connected. Texts on this number go to your peer. Reply DONE when finished."


def accepted_on_break(until: datetime, zone: ZoneInfo) -> str:
    """A text request taken by a supporter on a break (a late ACCEPT): it is theirs, and the
    break goes on for new requests."""
    return (
        f"{accepted_for_supporter()} Your break goes on: no new requests until "
        f"{_local(until, zone)}."
    )


def accepted_texts_stopped() -> str:
    """The clinician texted STOP to the line and not START since: Twilio blocks its texts."""
    return (
        "You're connected, but they have stopped texts from this line (STOP), so yours may not "
        "reach them: call this number to reach them (they see the line's number, not yours). "
        "Reply DONE when finished."
    )


def after_call(checkins: bool = True) -> str:
    """checkins: the programme sends check-ins (its cadence is not none)."""
    follow = " (check-ins will follow)" if checkins else ""
    return (
        "Thank you for taking that call. Call this number to reach your caller again, or reply "
        f"DONE to close the conversation{follow}."
    )


def after_hidden_call() -> str:
    return (
        "Thank you for taking that call. The caller's number was hidden, so the line can't "
        "reach them again; this conversation is closed."
    )


def discipline_noted(discipline: str) -> str:
    return f"Thanks. We'll look for a {discipline} peer first."


def fallback(
    p: ProgrammeConfig, next_on_call: datetime | None, now: datetime, call_back: bool = False
) -> str:
    """Nobody can take it now: what happens next, when, and the crisis line, in two segments."""
    when = _next_on_call(p, next_on_call, now)
    how = "call you from this number" if call_back else "text you here"
    return (
        "Thank you for reaching out. No peer supporter is free right now. "
        f"Your request is waiting, and a peer will {how}.{when} {p.crisis_text}"
    )


def still_waiting(p: ProgrammeConfig, next_on_call: datetime | None, now: datetime) -> str:
    """A clinician writes again while their request waits with nobody free to take it."""
    return (
        "Your request is waiting; no peer supporter is free to take it yet."
        f"{_next_on_call(p, next_on_call, now)} {p.crisis_text}"
    )


def still_finding(p: ProgrammeConfig) -> str:
    """A clinician writes again while their request is being offered from peer to peer."""
    return (
        f"Your request is waiting: we're still reaching a peer supporter for you. {p.crisis_text}"
    )


def request_closed(p: ProgrammeConfig, call_back: bool = False) -> str:
    """A request nobody could take for two days closes (what it held is deleted)."""
    held = "" if call_back else " and what you sent was deleted"
    return (
        f"Sorry: no peer could take your request, so it has closed{held}. "
        f"Text or call here any time to try again. {p.crisis_text}"
    )


def _next_on_call(p: ProgrammeConfig, at: datetime | None, now: datetime) -> str:
    """Tue 9:00 AM within the week; dated further ahead (a schedule with a week or more
    uncovered), where the weekday alone reads as the coming one."""
    if at is None:
        return ""
    when = _local(at, p.zone) if at - now < timedelta(days=6) else _dated(at, p.zone)
    return f" The next peer comes on call at {when}."


def coordinator_alert(p: ProgrammeConfig, call_back: bool = False) -> str:
    """To the coordinator's phone: what waits (a call-back, or a text request) and where to
    see it; "a peer support request" read "Peer support: a peer support request" under the
    default name, and said neither."""
    kind = "call-back request" if call_back else "text request"
    return (
        f"{p.name}: a {kind} is waiting with nobody available to take it. "
        "The console's Live page shows it. No need to reply."
    )


def alert_phone_answer(p: ProgrammeConfig) -> str:
    """The coordinator's alert phone wrote to the line (an "ok" to an alert, most likely)."""
    return (
        f"{p.name}: this phone gets the line's alerts; no reply is needed. "
        "To ask for peer support yourself, text SUPPORT."
    )


def notice_answer(p: ProgrammeConfig) -> str:
    """A supporter answered a shift reminder or a code texted from the hotline number; or
    wrote to the line for herself: how to ask for support, and the crisis line."""
    return (
        f"{p.name}: no reply is needed to reminders and codes. "
        f"To ask for peer support yourself, text SUPPORT. {p.crisis_text}"
    )


def shift_declined(p: ProgrammeConfig) -> str:
    """A supporter's "No" to a shift reminder: it reaches nobody; how to get cover."""
    return (
        f"{p.name}: this reply reaches no one. Can't take this shift? Please tell your "
        "coordinator; BREAK 2h pauses requests meanwhile."
    )


def forgotten(closed: bool = False) -> str:
    """FORGET's confirmation; closed: the programme has been retired (retirement.py)."""
    erased = "Done: your number and anything linking you to this line have been erased."
    if closed:
        return f"{erased} This line has closed."
    return f"{erased} Text here again any time to start fresh."


def stopped() -> str:
    return "Done: no more texts from this number. Text START to undo that."


HOW_TO_STOP_CHECKINS = "Reply NOCHECKIN to stop check-ins, STOP to stop all texts."


def checkin(p: ProgrammeConfig) -> str:
    """The programme's check-in text, ending with how to stop them when it does not say so
    itself (a programme's own text may leave it out; a clinician who cannot tell how writes
    "please stop" to a peer, and the peer's DONE brings more check-ins)."""
    if "NOCHECKIN" in p.checkin_text.upper():
        return p.checkin_text
    return f"{p.checkin_text} {HOW_TO_STOP_CHECKINS}"


def checkins_declined() -> str:
    return "Done: no more check-in texts. This line stays open to you any time."


def passed() -> str:
    return "Passed on. Thank you."


def offer_gone() -> str:
    return "That request is no longer open: another peer took it, or it ended. Thank you!"


def accepted_during_call() -> str:
    """ACCEPT of a request its clinician replaced by calling the line, as the call rings: the
    call is theirs who answers it, the request hers if the caller hangs up first."""
    return (
        "They are calling the line now. If they hang up before a peer answers, the request "
        "is yours and you'll be connected here. Thank you!"
    )


def claim_lapsed() -> str:
    """The caller hung up, but the request claimed as their call rang (accepted_during_call)
    can no longer be hers (off the roster, at her limit, its number taken on her phone)."""
    return (
        "They hung up before a peer answered, but their request can't come to you now, "
        "so it goes on to the next peer. Thank you!"
    )


def accept_after_stop(number: str) -> str:
    """A late ACCEPT of a request offered on that number, or sent there with nothing offered,
    after her STOP to it: nothing can come to her there. Sent from another of the line's
    numbers when she texted that one (Twilio refuses it), so it names the number."""
    return (
        f"Your ACCEPT can't take a request on {number}: you texted STOP to it, so its texts "
        "no longer reach you. Text START to it to get them again. Thank you!"
    )


def offered_after_stop(number: str) -> str:
    """A text (not ACCEPT or PASS) on the number of her lapsed offer, its request still
    waiting, after her STOP to that number: no ACCEPT there can take it (accept_after_stop),
    so she is not reminded to. Sent from another of the line's numbers (Twilio refuses that
    one), so it names the number."""
    return (
        f"The request offered to you on {number} can't come to you there since you texted "
        "STOP to it. Text START to it to get its texts again. Thank you!"
    )


def claim_lapsed_after_stop(number: str) -> str:
    """Her ACCEPT after the caller hung up, on a request claimed as their call rang, whose
    number she has texted STOP to since: it can no longer be hers. Sent from another of the
    line's numbers (Twilio refuses that one), so it names the number, and why."""
    return (
        f"They hung up before a peer answered. Their request can't come to you on {number}, "
        "which you texted STOP to, so it goes on to the next peer. Thank you!"
    )


def claim_passed_after_stop(number: str) -> str:
    """Her PASS after the caller hung up, on a request claimed as their call rang, whose
    number she has texted STOP to since. Sent from another of the line's numbers (Twilio
    refuses that one), so it names the number."""
    return f"Passed on: the request offered to you on {number} goes to the next peer. Thank you."


def claim_taken_by_phone() -> str:
    """A peer took the call of a clinician whose request was claimed as it rang
    (accepted_during_call): nothing of it will come to her."""
    return "A peer took their call, so nothing more is needed from you. Thank you!"


def claim_call_back() -> str:
    """Nobody took the call of a clinician whose request was claimed as it rang: it became a
    call-back request, offered anew by text (maybe to her too)."""
    return (
        "Nobody took their call, so it is now a call-back request, offered anew. "
        "Nothing more is needed on the earlier one. Thank you!"
    )


def claim_closed() -> str:
    """The clinician whose request was claimed as their call rang closed it (STOP, FORGET)."""
    return "Their request has closed, so nothing more is needed from you. Thank you!"


def at_limit(limit: int, offered: bool = False) -> str:
    """A late ACCEPT from a supporter with as many conversations as their limit allows;
    offered: a request offered to them and waiting for their answer counts towards it."""
    conversations = "1 conversation" if limit == 1 else f"{limit} conversations"
    if offered:
        return (
            f"You're at your limit of {conversations}, counting a request waiting for your "
            "answer, so this one stays open for the next peer. PASS that one to take this."
        )
    return (
        f"You're at your limit of {conversations}, so this request stays open for the next "
        "peer. To take it, close one with DONE first."
    )


def at_limit_holding_a_claim() -> str:
    """A late ACCEPT from a supporter whose limit is filled by a request she accepted as its
    clinician called the line (accepted_during_call), and nothing else: she has no
    conversation to close; that request comes to her if they hang up before a peer answers."""
    return (
        "You're at your limit, holding a request whose clinician is calling the line now: "
        "it's yours if they hang up. This one stays open for the next peer."
    )


def answer_where_offered() -> str:
    return "You have more than one request waiting: reply on the number each one came from."


def answer_where_talking() -> str:
    return "You have more than one conversation open: reply on the number of the one you mean."


def ringing_now() -> str:
    return "That request is a call ringing your phone now: answer it and press 1 to take it."


def offer_reminder(checkin_reply: bool = False) -> str:
    """A text on an offer's number that answers nothing: what it asks again, and what the
    request is, as the offer said (checkin_reply: see offer)."""
    what = f" ({CHECKIN_REPLY})" if checkin_reply else ""
    return f"Reply ACCEPT to take this peer support request{what} or PASS to pass it on."


def already_connected() -> str:
    return "You're already connected on this number. Reply DONE when the conversation is over."


def nothing_to_answer_here() -> str:
    """ACCEPT or PASS typed in a live conversation's thread when no request waits for her answer
    (none offered, none she could take, or the one she meant already hers here): she is told
    where she is, and why the word took nothing."""
    return (
        "You're already connected on this number, and no other request is waiting for your "
        "answer. Reply DONE when the conversation is over."
    )


def closing(p: ProgrammeConfig, with_resources: bool = True) -> str:
    """DONE: the closing, with the programme's resources unless they go apart (too long to
    share one text: see supporterline)."""
    resources = f"{p.resources_text} " if with_resources else ""
    return (
        "Your peer has closed this conversation. Thank you for reaching out; you are not alone. "
        f"{resources}Text this number any time to talk again."
    )


def peer_left(p: ProgrammeConfig) -> str:
    """The supporter opted out of the number this conversation ran on (STOP)."""
    return (
        "Your peer can't continue this conversation. Text this number any time to reach "
        f"another peer. {p.crisis_text}"
    )


def done_for_supporter(checkins: bool = True) -> str:
    """checkins: the programme sends check-ins (its cadence is not none)."""
    follow = " Follow-up check-ins will go out from the line." if checkins else ""
    return f"Conversation closed. Thank you.{follow}"


def closed_idle() -> str:
    return "This conversation was closed after 48 hours without messages. Thank you."


def resources_sent() -> str:
    return "Resources sent to your peer."


def conversation_ended() -> str:
    """A supporter's text on a pool number with nothing open on it for them: a conversation
    that ended, or none ever (an "ok" to a shift reminder sent from that number)."""
    return "Nothing is open on this number now, so your text was not passed on."


def nothing_to_answer() -> str:
    """A supporter's PASS on a number where no request of theirs is or was waiting: nothing
    there needs them ("your text was not passed on" read as their PASS having failed)."""
    return "Nothing on this number is waiting for your answer now. Thank you."


def ended_by_clinician() -> str:
    return "Your peer has ended the conversation. Nothing more will be passed on."


def on_break(until: datetime, zone: ZoneInfo, passed: int = 0) -> str:
    """BREAK: with how many requests offered to them went on to the next peer (one text for
    all, however many: see supporterline)."""
    went = ""
    if passed == 1:
        went = "Passed on the request waiting for you. "
    elif passed > 1:
        went = f"Passed on the {passed} requests waiting for you. "
    return (
        f"{went}On a break until {_local(until, zone)}: no new requests. "
        "Reply BACK to take them again."
    )


def back(on_call: bool = True) -> str:
    if not on_call:
        return "Welcome back. You're not on call now: requests will come to you on your next shift."
    return "Welcome back. New peer support requests will come to you."


def off_the_roster() -> str:
    """BREAK or BACK from a supporter the coordinator has deactivated (they may still be
    finishing a conversation)."""
    return (
        "You're off the roster now, so no new requests will come to you. A conversation you're "
        "in goes on: reply DONE there to close it."
    )


def supporter_help() -> str:
    return (
        "Peer line: ACCEPT or PASS a request. In a conversation: RESOURCES sends support options,"
        " DONE closes it. BREAK 2h pauses requests, BACK resumes."
    )


def media_not_relayed() -> str:
    return "Pictures and other media aren't passed on here. Please put it in words."


_LINE_CLOSED = "This peer support line has closed: texts and calls to it no longer reach a peer."
_REST_HERE = "Text here for the rest."


def line_closed(p: ProgrammeConfig, with_resources: bool = True) -> str:
    """Any text to a retired programme's numbers (retirement.py), with the programme's
    resources unless they go apart (too long to share one text: see textline)."""
    resources = f"{p.resources_text} " if with_resources else ""
    return f"{_LINE_CLOSED} {resources}{p.crisis_text}"


def line_closed_in_one(p: ProgrammeConfig) -> str:
    """The line has closed, told from a job to a clinician it was owed to (tasks.tell_closed):
    always one text, since two could half go and a retry of both give them the half they had
    twice. The closing and the crisis sentence (last) whole; resources too long to share the
    text are cut at a word, most of them still there (nearly two thirds with the longest
    crisis sentence), saying a text here brings the rest: the line answers any text with them
    whole."""
    whole = line_closed(p)
    if len(whole) <= MAX_TEXT:
        return whole
    room = MAX_TEXT - len(f"{_LINE_CLOSED} ... {_REST_HERE} {p.crisis_text}")
    cut = p.resources_text[:room]
    if not p.resources_text[room:].startswith(" "):  # a phone number whole, or not at all
        cut = cut.rpartition(" ")[0] or cut
    return f"{_LINE_CLOSED} {cut}... {_REST_HERE} {p.crisis_text}"


def not_a_line(hotline_number: str) -> str:
    return f"This number doesn't take messages. For peer support, text {hotline_number}."


def truncate(body: str, limit: int = MAX_TEXT) -> str:
    """Twilio refuses bodies over 1,600 characters (error 21617); shorten, ending in "...".

    Three dots, not the one-character ellipsis (U+2026): that is not GSM-7, and would turn a
    plain 11-segment text into a 24-segment UCS-2 one.
    """
    return body if len(body) <= limit else body[: limit - 3] + "..."


def _local(at: datetime, zone: ZoneInfo) -> str:
    local = at.astimezone(zone)
    return local.strftime("%a %-I:%M %p").replace(" 0", " ") + which_reading(local)


def which_reading(local: datetime) -> str:
    """The offset's name (" EST") after a time the clock reads twice, in the hour clocks go
    back; else nothing. An hour's break from the first 1:10 AM ends at the second: "until
    1:10 AM" read as over, and "EDT" or "EST" is what the phone's own clock shows then. The
    console's times say it too (console.views.local)."""
    if local.replace(fold=1 - local.fold).utcoffset() == local.utcoffset():
        return ""
    return f" {local.tzname()}"


def verification_code(p: ProgrammeConfig, code: str, minutes: int) -> str:
    return (
        f"{p.name}: your supporter verification code is {code}. Give it to your coordinator "
        f"within {minutes} minutes. Not expecting this? Ignore it."
    )


def _dated(at: datetime, zone: ZoneInfo) -> str:
    """Tue 8 Dec 2:00 PM: a warning can be days ahead, so the weekday alone is not enough."""
    local = at.astimezone(zone)
    clock = f"{local.hour % 12 or 12}:{local:%M %p}{which_reading(local)}"
    return f"{local:%a} {local.day} {local:%b} {clock}"


def _period(starts_at: datetime, ends_at: datetime | None, zone: ZoneInfo) -> str:
    """From Mon 7 Dec 9:00 PM to Tue 8 Dec 7:00 AM; a period still going on two weeks after
    the notice (no end given) is said to last more than that."""
    until = f"to {_dated(ends_at, zone)}" if ends_at else "for more than two weeks"
    return f"from {_dated(starts_at, zone)} {until}"


def shift_reminder(p: ProgrammeConfig, starts_at: datetime, ends_at: datetime | None) -> str:
    return (
        f"{p.name}: reminder, you are on call {_period(starts_at, ends_at, p.zone)}. "
        "No need to reply."
    )


def coverage_gap(
    p: ProgrammeConfig, starts_at: datetime, ends_at: datetime | None, texts_refused: bool = False
) -> str:
    """With texts_refused, someone is on call in it, but only supporters whose phones refuse
    the line's texts."""
    if texts_refused:
        return (
            f"{p.name}: nobody the line can text is on call {_period(starts_at, ends_at, p.zone)}"
            " (their phones refuse its texts). Please arrange cover in the console (no reply "
            "needed)."
        )
    return (
        f"{p.name}: nobody is on call {_period(starts_at, ends_at, p.zone)}. "
        "Please arrange cover in the console (no reply needed)."
    )
