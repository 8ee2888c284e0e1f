"""Keywords as phones send them: CONTRACT.md's words in any case with spaces around, and what
a phone's keyboard adds around a supporter's answer; what is a message to relay."""

from __future__ import annotations

from datetime import timedelta

import pytest

from hotline.keywords import Command, Word, is_acknowledgement, parse, read

KEYWORDS = [
    # Clinician: STOP and Twilio's other opt-out words; START undoes it; HELP.
    *((word, Command(Word.STOP)) for word in (
        "STOP", "STOPALL", "UNSUBSCRIBE", "CANCEL", "END", "QUIT", "REVOKE", "OPTOUT",
    )),
    ("START", Command(Word.START, opt_in=True)),
    ("UNSTOP", Command(Word.START, opt_in=True)),
    ("HELP", Command(Word.HELP)),
    # Supporter: ACCEPT (YES understood), PASS (or NO), DONE, RESOURCES, BREAK 2h, BACK.
    ("ACCEPT", Command(Word.ACCEPT)),
    ("YES", Command(Word.ACCEPT, opt_in=True, everyday=True)),
    ("PASS", Command(Word.PASS)),
    ("NO", Command(Word.PASS, everyday=True)),
    ("DONE", Command(Word.DONE)),
    ("RESOURCES", Command(Word.RESOURCES)),
    ("BREAK 2h", Command(Word.BREAK, duration=timedelta(hours=2))),
    ("BREAK 30m", Command(Word.BREAK, duration=timedelta(minutes=30))),
    ("BREAK", Command(Word.BREAK, duration=timedelta(hours=1))),
    ("BREAK 48h", Command(Word.BREAK, duration=timedelta(hours=24))),
    ("BREAK 1h 30m", Command(Word.BREAK, duration=timedelta(minutes=90))),
    ("BREAK 2h15", Command(Word.BREAK, duration=timedelta(minutes=135))),
    ("BREAK 1 hour 30 minutes", Command(Word.BREAK, duration=timedelta(minutes=90))),
    ("BREAK 45 minutes", Command(Word.BREAK, duration=timedelta(minutes=45))),
    ("BREAK 2", Command(Word.BREAK, duration=timedelta(hours=2))),
    ("BREAK 12", Command(Word.BREAK, duration=timedelta(hours=12))),
    ("BREAK 20", Command(Word.BREAK, duration=timedelta(minutes=20))),  # was: 20 h
    ("BREAK 30", Command(Word.BREAK, duration=timedelta(minutes=30))),  # was: 24 h
    ("BREAK 90", Command(Word.BREAK, duration=timedelta(minutes=90))),
    ("BACK", Command(Word.BACK)),
]  # fmt: skip


@pytest.mark.parametrize(("text", "expected"), KEYWORDS, ids=[k[0] for k in KEYWORDS])
@pytest.mark.parametrize("written", [str.upper, str.lower, str.title, lambda w: f"  {w} \n"])
def test_each_keyword_is_read_in_any_case_with_spaces_around(
    text: str, expected: Command, written: object
) -> None:
    assert callable(written)
    assert parse(written(text)) == expected


@pytest.mark.parametrize(
    "text",
    ["stop calling me", "please help", "I'm done for today", "accepted", "start over", ""],
)
def test_a_keyword_inside_a_sentence_is_a_message_to_relay(text: str) -> None:
    assert parse(text) is None


@pytest.mark.parametrize(
    ("body", "word"),
    [
        ("Done 👍", Word.DONE),
        ("done, 👍🏽", Word.DONE),
        ("Accept 🙏", Word.ACCEPT),
        ("Yes 👍", Word.ACCEPT),
        ("PASS 😔", Word.PASS),
        ("back 👋", Word.BACK),
        ("Accept.", Word.ACCEPT),
        ("Stop.", Word.STOP),
        # Read whole: a question, Twilio's own words, a clinician's words to their peer.
        ("Done?", None),
        ("stop 🛑", None),
        ("start 👍", None),
        ("help 😢", None),
        ("forget 🙏", None),
        ("👍", None),
    ],
)
def test_a_supporter_s_answer_may_carry_an_emoji_or_a_comma(body: str, word: Word | None) -> None:
    command = parse(body)
    assert (command.word if command else None) is word


@pytest.mark.parametrize(
    "body",
    [
        "NOCHECKIN",
        "No checkin",  # a keyboard's autocorrect splits the word the check-in asks for
        "No check-in",
        "no check ins",
        "No more check-ins",
        "No more check-ins, thanks",
        "Stop check-ins.",
        "stop the checkins please",
        "Please, no more check ins!",
    ],
)
def test_declining_check_ins_in_a_few_words_is_nocheckin(body: str) -> None:
    command = parse(body)
    assert command is not None and command.word is Word.NOCHECKIN
    assert command.phrase is (body != "NOCHECKIN")  # a phrase, relayed to a peer talking


@pytest.mark.parametrize(
    "body", ["no more", "check in on me please", "can we check in?", "no more check-ins?"]
)
def test_other_words_about_check_ins_are_messages(body: str) -> None:
    assert parse(body) is None


def test_yes_with_an_emoji_is_not_twilio_s_opt_in_word() -> None:
    decorated, plain = parse("Yes 👍"), parse("yes")
    assert decorated is not None and plain is not None
    assert (decorated.opt_in, decorated.everyday) == (False, True)
    assert (plain.opt_in, plain.everyday) == (True, True)


def test_a_break_with_an_emoji_keeps_its_length() -> None:
    command = parse("BREAK 2h 👍")
    assert command is not None and command.duration == timedelta(hours=2)


TWILIO_READINGS = [
    # (body, OptOutType, command): Twilio's reading wins where ours differs.
    ("ARRET", "STOP", Command(Word.STOP)),
    ("PARAR", "stop", Command(Word.STOP)),
    ("STOP", "STOP", Command(Word.STOP)),
    ("REPRENDRE", "START", Command(Word.START, opt_in=True)),
    ("YES", "START", Command(Word.ACCEPT, opt_in=True, everyday=True)),  # still an answer
    ("AYUDA", "HELP", Command(Word.HELP)),
    ("INFO", "HELP", Command(Word.HELP)),
    ("hello", "", None),
    ("DONE", "", Command(Word.DONE)),
    ("hello", "SOMETHING-NEW", None),  # a value Twilio may add later: ours stands
]


@pytest.mark.parametrize(("body", "opt_out_type", "expected"), TWILIO_READINGS)
def test_twilios_opt_out_type_decides_words_only_it_knows(
    body: str, opt_out_type: str, expected: Command | None
) -> None:
    assert read(body, opt_out_type) == expected


@pytest.mark.parametrize(
    ("body", "acknowledges"),
    [
        ("Thanks!", True),
        ("ok 👍", True),
        ("Got it, thank you", True),
        ("👍", True),
        ("I'm not OK", False),
        ("not ok", False),
        ("Can't make it tonight", False),
        ("help", False),
    ],
)
def test_an_acknowledgement_has_no_words_of_its_own(body: str, acknowledges: bool) -> None:
    """A supporter's answer to a reminder from the hotline number; anything else is hers."""
    assert is_acknowledgement(body) is acknowledges


OPT_INS = [
    # (body, Twilio lifts its block): its opt-in words alone, in any case, with whitespace
    # around them, and nothing else; the line must read them just so (textline lifts its own
    # record of a STOP only then, and Twilio goes on refusing texts to the pair otherwise).
    ("YES", True),
    ("yes", True),
    ("Yes", True),
    ("  yes \n", True),
    ("\tSTART ", True),
    ("start", True),
    ("UNSTOP", True),
    ("Unstop\r\n", True),
    ("yes!", False),
    ("Yes.", False),
    ("YES!!", False),
    ("yes,", False),
    ("Yes 👍", False),
    ("start!", False),
    ("Start.", False),
    ("unstop!", False),
    ("yes please", False),
    ("yes yes", False),
    ("y", False),
    ("yeah", False),
    ("STOP", False),
]


@pytest.mark.parametrize(("body", "lifted"), OPT_INS, ids=[repr(b) for b, _ in OPT_INS])
def test_an_opt_in_is_twilio_s_word_alone_and_nothing_else(body: str, lifted: bool) -> None:
    command = read(body)
    assert (command is not None and command.opt_in) is lifted


@pytest.mark.parametrize("body", ["start!", "Start.", "UNSTOP!"])
def test_start_with_punctuation_is_an_ordinary_text_as_twilio_reads_it(body: str) -> None:
    """Twilio forwards "Start!" as an ordinary text and lifts nothing: the line reads it so too
    (unlike "Stop.", which the line honours itself: an opt-out is kept in any form)."""
    assert parse(body) is None
