"""A clinician owed the text that their request closed (Twilio did not take it when it closed:
``effects.owe_again``, retried by the sweeper for a day, ``tasks.tell_closed``) gets each
closing text once, and still gets what they did not get."""

from __future__ import annotations

import pytest
from click.testing import CliRunner
from sqlalchemy import select

from hotline.cli import main
from hotline.db import transaction
from hotline.effects import RETRY_DELAYS
from hotline.models import Conversation, Programme
from hotline.wording import MAX_TEXT
from tests.kit.harness import HOTLINE, Hotline
from tests.kit.harness import test_env as environment_for
from tests.kit.phones import Phone, Phones

CLINICIAN = "+15550109001"
CLOSED = "This peer support line has closed"
# Where Mercy's clinicians turn now, as long as the console allows: with the closing words and
# the crisis sentence it passes one text's limit.
LONG_RESOURCES = ("Mercy's clinicians: call the EAP at 555-0100, any hour. " * 26).strip()


def closed_unanswered_and_owed(hotline: Hotline, phones: Phones, resources: str = "") -> Phone:
    """The clinician's request waits two days and closes; Twilio refuses the text telling them
    so (a 503), so it is owed. Then the programme retires (with ``resources``, if given)."""
    clinician = phones.phone(CLINICIAN)
    clinician.texts("rough week", to=HOTLINE)
    clinician.expect_text("your request is waiting", from_=HOTLINE)
    hotline.clock.advance(hours=48, seconds=1)
    hotline.fake.fail_for(CLINICIAN, code=None, status=503)
    assert hotline.sweep().conversations_closed == 1
    hotline.fake.clear_faults()
    if resources:
        with transaction(hotline.services.sessions) as session:
            session.get_one(Programme, hotline.programme_id).resources_text = resources
    runner = CliRunner(env=environment_for(hotline.settings.database_url, hotline.fake))
    retired = runner.invoke(main, ["programme", "retire", "default"])
    assert retired.exit_code == 0, retired.output
    hotline.clock.advance(seconds=30)
    return clinician


def owed(hotline: Hotline) -> bool:
    with hotline.session() as session:
        return session.scalar(select(Conversation.close_owed_at)) is not None


@pytest.mark.parametrize("refused", ["the first", "the second"])
def test_a_line_closed_text_owed_in_two_parts_is_not_sent_twice(
    hotline: Hotline, phones: Phones, refused: str
) -> None:
    """The retired line's closing, with resources too long to share one text with it, went as
    two texts; Twilio took one and not the other (503s): the sweeper owed them again and sent
    both, so the clinician got the one they had twice. Each reaches them once, and so do the
    closing, where to turn (the resources, from their start) and the crisis line."""
    clinician = closed_unanswered_and_owed(hotline, phones, LONG_RESOURCES)
    if refused == "the second":
        hotline.fake.hang_next(0)  # answered at once, as usual: it takes the first
    hotline.fake.fail_next(n=len(RETRY_DELAYS) + 1, status=503, code=None)
    hotline.sweep()
    hotline.fake.clear_faults()
    hotline.clock.advance(seconds=30)
    hotline.sweep()
    hotline.sweep()
    phones.sync()
    bodies = [text.body for text in clinician.inbox]
    assert len(bodies) == len(set(bodies)), f"a text came twice: {[b[:40] for b in bodies]}"
    assert len([b for b in bodies if CLOSED in b]) == 1, bodies
    assert any("988" in b for b in bodies), bodies
    assert len([b for b in bodies if "Mercy's clinicians: call the EAP" in b]) == 1, bodies
    assert all(len(b) <= MAX_TEXT for b in bodies)
    assert not owed(hotline)
    clinician.inbox.clear()
    phones.assert_no_unexpected()


def test_a_clinician_the_retired_line_answered_is_not_told_again(
    hotline: Hotline, phones: Phones
) -> None:
    """Owed the text that their request closed, the clinician texts the retired line, which
    answers that it has closed, with where to turn and the crisis line. The sweeper then sent
    them the same text again. They have been told: it is no longer owed."""
    clinician = closed_unanswered_and_owed(hotline, phones)
    clinician.texts("is anyone there?", to=HOTLINE)
    closed = clinician.expect_text(CLOSED, from_=HOTLINE)
    assert "988" in closed.body and "Employee Assistance Program" in closed.body
    hotline.sweep()
    hotline.clock.advance(seconds=30)
    hotline.sweep()
    assert not owed(hotline)
    phones.assert_no_unexpected()
