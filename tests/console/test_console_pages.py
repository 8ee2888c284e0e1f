"""The console in the Flask test client: every page, its forms, escaping and masking."""

from __future__ import annotations

import io
import re
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import delete, select

from hotline import accounts, retirement, roster, verification
from hotline.db import transaction
from hotline.models import ApiToken, Notice, NoticeKind, NoticeState, Programme, Shift, Supporter
from hotline.programmes import ensure_programme
from tests.console.conftest import Console, add_coordinator, add_verified, csrf_of, sign_in
from tests.kit.harness import HOTLINE, POOL, PUBLIC_URL, Hotline, use_telephony
from tests.kit.phones import Phones
from tests.kit.signing import deliver_to

pytestmark = pytest.mark.sqlite_only  # the pages; the database side runs on both tiers elsewhere
ALICE, BOB, CAROL = "+15550108001", "+15550108002", "+15550108003"
XSS = "<script>alert('x')</script>"


def test_every_page_renders_for_a_signed_in_coordinator(console: Console) -> None:
    add_verified(console.hotline, "Alice", ALICE)
    for path in (
        "/console/live",
        "/console/roster",
        "/console/roster/import",
        "/console/schedule",
        "/console/schedule?view=month",
        "/console/reports",
        "/console/settings",
        "/console/audit",
        "/console/tokens",
    ):
        page = console.get(path)
        assert "<main" in page and ALICE not in page


def test_adding_a_supporter_masks_the_number_and_escapes_the_name(console: Console) -> None:
    response = console.post(
        "/console/roster",
        {
            "name": XSS,
            "phone": "(555) 010-8001",
            "discipline": "nurse",
            "max_conversations": 2,
            "active": "y",
        },
    )
    assert response.status_code == 302  # type: ignore[attr-defined]
    page = console.get("/console/roster")
    assert "+1•••••••001" in page and ALICE not in page
    assert XSS not in page and "&lt;script&gt;" in page
    assert "Awaiting code" in page
    audit = console.get("/console/audit")
    assert "supporter.add" in audit and ALICE not in audit


def test_a_supporter_is_verified_with_the_texted_code(console: Console) -> None:
    added = console.post(
        "/console/roster", {"name": "Alice", "phone": ALICE, "max_conversations": 2, "active": "y"}
    )
    detail = added.headers["Location"]  # type: ignore[attr-defined]
    hotline = console.hotline
    hotline.run_jobs()
    (text,) = [m for m in hotline.fake.messages if m["to"] == ALICE]
    code = re.search(r"\b(\d{6})\b", str(text["body"]))
    assert code is not None
    wrong = console.post(f"{detail}/code", {"code": "not it"}, form_page=detail)
    assert wrong.status_code == 302  # type: ignore[attr-defined]
    assert "not right" in console.get(detail)
    console.post(f"{detail}/code", {"code": code.group(1)}, form_page=detail)
    assert "Verified" in console.get(detail)


def test_a_code_the_phone_company_refused_or_that_expired_is_not_shown_as_waiting(
    console: Console,
) -> None:
    """A desk phone or a mistyped number: Twilio refuses the code's text for good. The page
    said "A code was texted" all the same, and the coordinator waited for a code that never
    came; so it did for a code past its 30 minutes."""
    hotline = console.hotline
    hotline.fake.fail_for(ALICE, code=21614)  # not a mobile number
    added = console.post(
        "/console/roster", {"name": "Alice", "phone": ALICE, "max_conversations": 2, "active": "y"}
    )
    detail = added.headers["Location"]  # type: ignore[attr-defined]
    page = console.get(detail)
    assert "A code is being texted to +1•••••••001" in page  # its job has not run yet
    hotline.run_jobs()
    page = console.get(detail)
    assert "A code was texted" not in page
    assert "The code could not be texted to +1•••••••001" in page
    hotline.fake.clear_faults()
    console.post(f"{detail}/resend", {}, form_page=detail)
    hotline.run_jobs()
    assert "A code was texted to +1•••••••001" in console.get(detail)
    hotline.clock.advance(minutes=20)
    assert "A code was texted" in console.get(detail)  # (and the sign-in stays live)
    hotline.clock.advance(minutes=11)
    page = console.get(detail)
    assert "A code was texted" not in page and "has expired" in page


def test_a_retired_programme_texts_no_code_and_the_console_says_why(console: Console) -> None:
    """A coordinator asks for a fresh code, or adds a supporter, after the programme retired:
    the code was texted from the closed line. The console says the programme is retired and
    nothing is sent."""
    hotline = console.hotline
    alice = add_verified(hotline, "Alice", ALICE)
    with transaction(hotline.services.sessions) as session:
        programme = session.get_one(Programme, hotline.programme_id)
        retirement.retire(session, programme, hotline.clock.now)
    detail = f"/console/roster/{alice}"
    console.post(f"{detail}/resend", {}, form_page=detail)
    page = console.get(detail)
    assert "programme is retired" in page and "A new code was texted" not in page
    added = console.post(
        "/console/roster", {"name": "Bob", "phone": BOB, "max_conversations": 2, "active": "y"}
    )
    assert added.status_code == 422  # type: ignore[attr-defined]
    assert "programme is retired" in added.get_data(as_text=True)  # type: ignore[attr-defined]
    hotline.run_jobs()
    hotline.clock.advance(minutes=1)
    hotline.sweep()
    assert hotline.fake.messages == []


def test_a_code_waiting_as_the_programme_retires_says_it_was_not_texted_for_that(
    console: Console,
) -> None:
    """A code asked for just before `hotline programme retire`, its text not yet sent: the
    closed line texts nothing, so it never goes. The supporter's page said "The code could not
    be texted to ...: the phone company refused it. Is it a mobile number, typed right?", and
    sent the coordinator to correct a number that was right. It says the programme is retired,
    and still so once the code's 30 minutes are over (not "expired. Text a new code")."""
    hotline = console.hotline
    added = console.post(
        "/console/roster", {"name": "Alice", "phone": ALICE, "max_conversations": 2, "active": "y"}
    )
    detail = added.headers["Location"]  # type: ignore[attr-defined]
    with transaction(hotline.services.sessions) as session:
        programme = session.get_one(Programme, hotline.programme_id)
        retirement.retire(session, programme, hotline.clock.now)
    hotline.run_jobs()
    hotline.clock.advance(minutes=1)
    hotline.sweep()
    page = console.get(detail)
    assert "phone company" not in page
    assert "The code was not texted to +1•••••••001: this programme is retired" in page
    hotline.clock.advance(minutes=20)
    assert "this programme is retired" in console.get(detail)  # (and the sign-in stays live)
    hotline.clock.advance(minutes=10)
    page = console.get(detail)
    assert "has expired" not in page and "this programme is retired" in page
    assert hotline.fake.messages == []


def _added_with_a_code(console: Console) -> str:
    """Alice added through the roster (a code asked for); her page's path."""
    added = console.post(
        "/console/roster", {"name": "Alice", "phone": ALICE, "max_conversations": 2, "active": "y"}
    )
    return str(added.headers["Location"])  # type: ignore[attr-defined]


def test_a_code_refused_for_a_stop_says_so_not_that_the_number_may_be_wrong(
    console: Console,
) -> None:
    """Alice had texted STOP to the pool number her code came from while the line was down
    (Twilio 21610). Her page said "the phone company refused it. Is it a mobile number, typed
    right? Correct the number below": the number is right, and only her START lets it go."""
    hotline = console.hotline
    hotline.fake.fail_for(ALICE, code=21610)
    detail = _added_with_a_code(console)
    hotline.run_jobs()
    page = console.get(detail)
    assert "phone company" not in page and "typed right" not in page
    assert (
        "The code was not texted to +1•••••••001: they had replied STOP to the line's "
        "number it came from." in page
    )
    hotline.fake.clear_faults()
    console.post(f"{detail}/resend", {}, form_page=detail)  # it goes from another pool number
    hotline.run_jobs()
    assert "A code was texted to +1•••••••001" in console.get(detail)


def test_a_code_twilio_would_not_send_for_another_reason_does_not_blame_the_number(
    console: Console,
) -> None:
    """Twilio refused the code's text, not for a fault of the phone (21408: the account may
    not text that region). The page sent the coordinator to correct a number that was right."""
    hotline = console.hotline
    hotline.fake.fail_for(ALICE, code=21408)
    detail = _added_with_a_code(console)
    hotline.run_jobs()
    page = console.get(detail)
    assert "phone company" not in page and "typed right" not in page
    assert "Texts refused" not in page
    assert (
        "The code may not have reached +1•••••••001: its text failed, though not for a fault "
        "of the number. Text a new code" in page
    )


def test_a_code_in_doubt_after_a_sender_died_can_still_be_entered(console: Console) -> None:
    """Twilio took the code's text and the worker died before recording it: after five
    minutes the notice counts as failed, and the page said the code may not have reached the
    phone, not for a fault of the number, and hid the box to enter it. It did reach her, and
    she reads it out: the coordinator had to text a new code and ask again."""
    hotline = console.hotline
    detail = _added_with_a_code(console)
    hotline.run_jobs()
    (text,) = [m for m in hotline.fake.messages if m["to"] == ALICE]
    code = re.search(r"\b(\d{6})\b", str(text["body"]))
    assert code is not None
    with transaction(hotline.services.sessions) as session:  # as if never recorded as sent
        notice = session.scalars(select(Notice).where(Notice.kind == NoticeKind.VERIFICATION))
        stuck = notice.one()
        stuck.state, stuck.from_number = NoticeState.SENDING, None  # as its claim left it
    hotline.clock.advance(minutes=6)
    hotline.sweep()  # a send stuck that long is in doubt (notices.STUCK_AFTER)
    page = console.get(detail)
    assert "A code was texted to +1•••••••001. Ask them" not in page
    assert "The code may or may not have reached +1•••••••001" in page
    assert "If they got it, enter it here" in page
    console.post(f"{detail}/code", {"code": code.group(1)}, form_page=detail)
    assert "Verified" in console.get(detail)


def _code_texted(console: Console) -> tuple[str, str]:
    """Alice added through the roster and her code texted (Twilio took it): her page's path
    and the SID of the code's text."""
    hotline = console.hotline
    detail = _added_with_a_code(console)
    hotline.run_jobs()
    (text,) = [m for m in hotline.fake.messages if m["to"] == ALICE]
    assert "A code was texted to +1•••••••001" in console.get(detail)
    return detail, str(text["sid"])


def _report(hotline: Hotline, sid: str, status: str, code: int | None = None) -> None:
    """Twilio's status callback on the text ``sid``, to the URL the text named."""
    assert hotline.fake.post_status(sid, status, code, deliver=deliver_to(hotline.client)) == 204


@pytest.mark.parametrize(
    ("code", "said", "refused"),
    [
        (30006, "The code could not be texted to +1•••••••001: the phone company refused", True),
        (30005, "The code could not be texted to +1•••••••001: the phone company refused", True),
        (21610, "The code was not texted to +1•••••••001: they had replied STOP", True),
        (30034, "The code may not have reached +1•••••••001: its text failed, though not", False),
        (30007, "The code may not have reached +1•••••••001: its text failed, though not", False),
    ],
)
def test_a_code_twilio_took_but_could_not_deliver_is_not_shown_as_texted(
    console: Console, code: int, said: str, refused: bool
) -> None:
    """Twilio took Alice's code, then reported it undelivered: her phone is a landline
    (30006), unknown to its carrier (30005), she had texted STOP to its number while the line
    was down (21610), our number is unregistered (30034), or the carrier filtered it (30007).
    The page kept saying "A code was texted", and the roster never said her texts are refused.
    A late "delivered" (Twilio's reports can come out of order) changes nothing back."""
    hotline = console.hotline
    detail, sid = _code_texted(console)
    _report(hotline, sid, "undelivered", code)
    for late in ("undelivered", "delivered"):
        page = console.get(detail)
        assert "A code was texted" not in page and said in page
        assert "enter it here" not in page  # no box: the code is not on her phone
        assert ("Texts refused" in page) is refused
        assert ("Texts refused" in console.get("/console/roster")) is refused
        _report(hotline, sid, late, code if late == "undelivered" else None)
    console.post(f"{detail}/resend", {}, form_page=detail)
    hotline.run_jobs()
    first, second = [m for m in hotline.fake.messages if m["to"] == ALICE]
    assert "A code was texted to +1•••••••001" in console.get(detail)
    if code == 21610:  # the pair is kept blocked, as for a STOP the line heard
        assert (first["from_"], second["from_"]) == (POOL[0], POOL[1])


@dataclass
class ReportedAtOnce:
    """The Twilio adapter, whose text Twilio takes and reports undelivered (``code``) before
    the sender has recorded it as sent: the status callback and the job race."""

    hotline: Hotline
    real: Any
    code: int

    def send_text(self, to: str, from_: str, body: str, status_callback: str | None = None) -> Any:
        sent = self.real.send_text(to, from_, body, status_callback=status_callback)
        _report(self.hotline, sent.sid, "undelivered", self.code)
        return sent


def test_a_code_reported_undelivered_before_its_sender_recorded_it_is_not_shown_as_texted(
    console: Console,
) -> None:
    """Twilio took Alice's code and reported it undelivered (a landline, 30006) before the
    worker that sent it had recorded it as sent. The report was dropped, as about a text not
    sent yet, and the worker then marked it sent: her page said "A code was texted", and the
    roster never said her phone refuses the line's texts."""
    hotline = console.hotline
    use_telephony(hotline, ReportedAtOnce(hotline, hotline.services.telephony, 30006))
    detail = _added_with_a_code(console)
    hotline.run_jobs()
    page = console.get(detail)
    assert "A code was texted to +1•••••••001. Ask them" not in page
    assert "The code could not be texted to +1•••••••001: the phone company refused" in page
    assert "Texts refused" in page and "Texts refused" in console.get("/console/roster")


def test_a_late_report_on_a_code_to_her_old_number_does_not_mark_her_new_one(
    console: Console,
) -> None:
    """Alice's code went to a mistyped number; the coordinator corrected it and a new code went
    to her phone. Twilio's report that the first one never arrived (30005: an unknown number)
    is about the old number: her own phone is not marked as refusing the line's texts, and her
    new code still shows as texted."""
    hotline = console.hotline
    detail, sid = _code_texted(console)
    fields = {"name": "Alice", "phone": BOB, "max_conversations": 2, "active": "y"}
    assert console.post(detail, fields).status_code == 302  # type: ignore[attr-defined]
    hotline.run_jobs()
    assert [m for m in hotline.fake.messages if m["to"] == BOB]
    _report(hotline, sid, "undelivered", 30005)
    page = console.get(detail)
    assert "A code was texted to +1•••••••002" in page
    assert "Texts refused" not in page and "Texts refused" not in console.get("/console/roster")


def test_a_code_held_back_while_the_programme_was_retired_says_so_once_it_is_restored(
    console: Console,
) -> None:
    """A code due as the programme retired is not sent (retirement.py); restored within the
    code's 30 minutes, the page said the phone company had refused it."""
    hotline = console.hotline
    detail = _added_with_a_code(console)
    with transaction(hotline.services.sessions) as session:
        programme = session.get_one(Programme, hotline.programme_id)
        retirement.retire(session, programme, hotline.clock.now)
    hotline.run_jobs()
    with transaction(hotline.services.sessions) as session:
        programme = session.get_one(Programme, hotline.programme_id)
        assert retirement.restore(session, programme)
    page = console.get(detail)
    assert "phone company" not in page and "typed right" not in page
    assert (
        "The code was not texted to +1•••••••001: it was due while the programme was retired. "
        "Text a new code." in page
    )
    assert hotline.fake.messages == []


def test_bad_input_is_shown_next_to_the_field(console: Console) -> None:
    response = console.post(
        "/console/roster", {"name": "Alice", "phone": "call me", "max_conversations": 2}
    )
    assert response.status_code == 422  # type: ignore[attr-defined]
    assert "not a valid phone number" in response.get_data(as_text=True)  # type: ignore[attr-defined]
    response = console.post("/console/settings", {"timezone": "Mars/Base"})
    assert response.status_code == 422  # type: ignore[attr-defined]
    assert "not an IANA time zone" in response.get_data(as_text=True)  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    "path",
    [
        "/console/schedule?date=0001-01-01",
        "/console/schedule?view=month&date=9999-12-15",
        "/console/schedule?at=0001-01-01T00:00",
        "/console/reports?to=0001-01-01",
        "/console/reports?from=9999-12-01&to=9999-12-31",
        "/console/reports/export.csv?to=9999-12-31",
        "/console/audit?before=99999999999999999999",
    ],
)
def test_query_strings_out_of_range_show_the_default_page(console: Console, path: str) -> None:
    console.hotline.app.testing = False  # the answer a coordinator would get, not a re-raise
    assert console.client.get(path).status_code == 200


def test_nul_characters_in_console_input_are_refused_and_nothing_is_stored(
    console: Console,
) -> None:
    """PostgreSQL text cannot hold NUL: it must be a clear 400, never a 500 from the database."""
    response = console.post(
        "/console/roster", {"name": "Ann\x00", "phone": ALICE, "max_conversations": 2}
    )
    assert response.status_code == 400  # type: ignore[attr-defined]
    assert "NUL" in response.get_data(as_text=True)  # type: ignore[attr-defined]
    response = _upload(console, "name,phone\nAn\x00n,+15550108001\n")
    assert "NUL characters" in response.get_data(as_text=True)
    with console.hotline.session() as session:
        assert session.scalars(select(Supporter)).all() == []


def test_a_leaked_calendar_link_is_replaced_and_stops_working(console: Console) -> None:
    alice = add_verified(console.hotline, "Alice", ALICE)
    client = console.hotline.app.test_client()  # a calendar app: no sign-in, the URL is the key
    for page, action in (
        (f"/console/roster/{alice}", f"/console/roster/{alice}/calendar"),
        ("/console/settings", "/console/settings/calendar"),
    ):
        (old,) = re.findall(r'href="https?://[^/"]+(/calendar/[^"]+\.ics)"', console.get(page))
        assert client.get(old).status_code == 200
        response = console.post(action, {}, form_page=page)
        assert response.status_code == 302  # type: ignore[attr-defined]
        (new,) = re.findall(r'href="https?://[^/"]+(/calendar/[^"]+\.ics)"', console.get(page))
        assert new != old
        assert client.get(old).status_code == 404
        assert client.get(new).status_code == 200
    assert "calendar.new_link" in console.get("/console/audit")


def test_a_gap_ahead_is_shown_to_its_real_end_not_cut_at_the_warning_horizon(
    console: Console,
) -> None:
    """Live and Schedule warn of gaps starting in the next 48 hours; one that runs past that
    horizon was shown ending at it, so the coordinator read that cover comes then."""
    hotline = console.hotline
    now = hotline.clock.now  # Monday 2 March 15:00 UTC
    alice = hotline.add_supporter("Alice", ALICE, on_call=False)
    bob = hotline.add_supporter("Bob", BOB, on_call=False)
    hotline.add_shift(alice, now - timedelta(hours=1), now + timedelta(hours=40))
    hotline.add_shift(bob, now + timedelta(hours=60), now + timedelta(hours=72))
    for path in ("/console/live", "/console/schedule"):
        page = console.get(path)
        assert "Wed 04 Mar 07:00 – Thu 05 Mar 03:00" in page, path
        assert "Thu 05 Mar 15:00 –" not in page, path  # after Bob: past the horizon
    with transaction(hotline.services.sessions) as session:
        session.execute(delete(Shift).where(Shift.supporter_id == bob))
    page = console.get("/console/live")
    assert "Wed 04 Mar 07:00 onwards, for more than two weeks" in page


def test_a_stretch_only_supporters_the_line_cannot_text_cover_shows_as_a_gap(
    console: Console,
) -> None:
    """Carol's phone is a landline (the offer texted to her was refused, 21612), and Bob texted
    STOP to every number of the line: a clinician who texts while only they are on call is told
    nobody is free, yet Live and Schedule showed them on call and no gap. Now the stretch is a
    gap naming them, with how far the line reaches each: Carol by calls only, Bob not at all."""
    hotline = console.hotline
    now = hotline.clock.now  # Monday 2 March 15:00 UTC
    alice = hotline.add_supporter("Alice", ALICE, on_call=False)
    bob = hotline.add_supporter("Bob", BOB, on_call=False)
    carol = hotline.add_supporter("Carol", CAROL, on_call=False)
    hotline.add_shift(carol, now - timedelta(hours=1), now + timedelta(hours=4))
    hotline.add_shift(bob, now + timedelta(hours=4), now + timedelta(hours=10))
    hotline.add_shift(alice, now + timedelta(hours=10), now + timedelta(days=60))
    for number in POOL:
        assert hotline.sms(BOB, number, "STOP").status_code == 200
    clinician = "+15550109001"
    reply = ET.fromstring(hotline.sms(clinician, HOTLINE, "hello").get_data())  # noqa: S314
    (offer,) = [m for m in reply.iter("Message") if m.get("to") == CAROL]
    failed = {"MessageSid": f"SM{'c1' * 16}", "MessageStatus": "failed", "ErrorCode": "21612"}
    callback = offer.get("action", "").removeprefix(PUBLIC_URL)
    assert hotline.post(callback, **failed).status_code == 204
    hotline.run_jobs()
    assert [m for m in hotline.fake.sent if m["to"] == clinician]  # told nobody is free

    carol_note = (
        '<span class="tag bad">Texts refused</span> <small>calls only: the line still rings '
        "them</small>"
    )
    bob_note = (
        '<span class="tag bad">Texts refused</span> <small>replied STOP to every line number: '
        "the line neither texts nor rings them</small>"
    )
    live = console.get("/console/live")
    assert "No coverage gaps" not in live
    gap = re.search(r"<li>Mon 02 Mar 15:00 – Tue 03 Mar 01:00: (.*?)</li>", live, re.S)
    assert gap and f"Bob {bob_note}" in gap[1] and f"Carol {carol_note}" in gap[1], live
    assert f"<li>Carol {carol_note}</li>" in live  # on call now
    assert "The line can text nobody on call now" in live
    week = console.get("/console/schedule?view=week&date=2026-03-02&at=2026-03-02T20:00")
    assert re.search(r"Nobody the line can text on call Mon 02 Mar 15:00 – Tue 03 Mar 01:00", week)
    assert "Gap: the line cannot text Carol" in week and "Gap: the line cannot text Bob" in week
    assert re.search(r"on-call-answer.*?<strong>Bob \(texts refused\)</strong>", week, re.S)
    assert ALICE not in live + week and BOB not in live + week and clinician not in live + week


def test_a_rotation_and_an_override_change_the_on_call_answer(console: Console) -> None:
    hotline = console.hotline
    alice, bob = add_verified(hotline, "Alice", ALICE), add_verified(hotline, "Bob", BOB)
    assert "Coverage gap ahead" in console.get("/console/live")
    page = "/console/schedule?view=week&date=2026-03-02"
    console.post(
        "/console/schedule/rotations?view=week&date=2026-03-02",
        {
            "rotation-name": "Weekly",
            "rotation-handoff_weekday": 0,
            "rotation-handoff_time": "09:00",
            "rotation-anchor_date": "2026-03-01",
            "rotation-members-0": alice,
            "rotation-members-1": bob,
        },
        form_page=page,
    )
    answer = console.get("/console/schedule?date=2026-03-02&at=2026-03-03T12:00")
    assert re.search(r"on-call-answer.*?<strong>Alice</strong>", answer, re.S)
    assert "Gap: nobody on call" in answer  # Monday before the first 09:00 hand-off
    console.post(
        "/console/schedule/overrides",
        {
            "override-supporter_id": bob,
            "override-covers_for_id": alice,
            "override-starts_at": "2026-03-03T08:00",
            "override-ends_at": "2026-03-03T18:00",
        },
        form_page=page,
    )
    answer = console.get("/console/schedule?date=2026-03-02&at=2026-03-03T12:00")
    assert re.search(r"on-call-answer.*?<strong>Bob</strong>", answer, re.S)
    month = console.get("/console/schedule?view=month&date=2026-03-02")
    assert "Alice" in month and "Bob" in month


def test_a_deactivated_supporters_open_conversation_stays_on_the_live_page(
    console: Console, phones: Phones
) -> None:
    """Deactivating someone does not end the conversation they are in (they finish it), so
    the Live page still counts it: "None open" would tell the coordinator nobody is talking."""
    hotline = console.hotline
    alice = add_verified(hotline, "Alice", ALICE)
    hotline.add_shift(alice, hotline.clock.now, hotline.clock.now + timedelta(days=1))
    clinician, peer = phones.talking("+15550109001", ALICE)
    live = console.get("/console/live")
    assert re.search(r"<td>Alice</td><td class=\"num\">1</td>", live)
    console.post(f"/console/roster/{alice}/deactivate", {}, form_page=f"/console/roster/{alice}")
    live = console.get("/console/live")
    assert "None open." not in live
    assert re.search(r"<td>Alice \(inactive\)</td><td class=\"num\">1</td>", live)
    assert "Nobody is on call right now." in live
    clinician.texts("still there?")
    peer.expect_text("still there?")


def test_reports_show_a_chart_and_export_csv(console: Console) -> None:
    page = console.get("/console/reports?from=2026-01-01&to=2026-03-01")
    assert "<svg" in page and "Contacts per week" in page
    response = console.client.get("/console/reports/export.csv?from=2026-01-01&to=2026-03-01")
    assert response.mimetype == "text/csv"
    assert response.get_data(as_text=True).startswith("week starting,total,sms,voice")


def test_the_report_period_shown_is_the_one_asked_again_in_any_time_zone(
    console: Console,
) -> None:
    """Report weeks are UTC Mondays; the form's dates are UTC dates, so asking again for the
    period a page shows gives that period, not one a week wider (east of UTC it drifted)."""
    with transaction(console.hotline.services.sessions) as session:
        session.get_one(Programme, console.hotline.programme_id).timezone = "Asia/Kathmandu"
    page = console.get("/console/reports?from=2026-03-04&to=2026-03-10")
    shown = re.findall(r'name="(from|to)" value="([0-9-]+)"', page)
    assert shown == [("from", "2026-03-02"), ("to", "2026-03-15")]  # widened to whole weeks
    again = console.get("/console/reports?from=2026-03-02&to=2026-03-15")
    assert re.findall(r'name="(from|to)" value="([0-9-]+)"', again) == shown


def test_csv_import_reports_each_row(console: Console) -> None:
    response = _upload(console, "name,phone\nAlice,+15550108001\nBob,nope\n")
    page = response.get_data(as_text=True)
    assert "1 added, 1 rejected" in page and "not a valid phone number" in page


def _upload(console: Console, csv_text: str) -> Any:
    """The roster's CSV import, as a coordinator's browser sends the file."""
    return console.client.post(
        "/console/roster/import",
        data={
            "csrf_token": _token(console, "/console/roster/import"),
            "file": (io.BytesIO(csv_text.encode()), "cohort.csv"),
        },
        content_type="multipart/form-data",
    )


def _token(console: Console, path: str) -> str:
    from tests.console.conftest import csrf_of

    return csrf_of(console.get(path))


def test_settings_are_saved_and_numbers_stay_masked(console: Console) -> None:
    response = console.post(
        "/console/settings",
        {"greeting": "Hello", "alert_phone": "+15550106000", "checkin_hours": "any"},
    )
    assert response.status_code == 302  # type: ignore[attr-defined]
    page = console.get("/console/settings")
    assert "+1•••••••000" in page and "+15550106000" not in page
    assert "\nHello</textarea>" in page


def test_coordinators_see_only_their_programme_and_admins_can_switch(hotline: Hotline) -> None:
    with transaction(hotline.services.sessions) as session:
        north = ensure_programme(
            session, slug="north", name="North", hotline_number="+15550200000", pool_numbers=()
        ).id
    alice = add_verified(hotline, "Alice", ALICE)
    add_coordinator(hotline, "north@example.org", programme_id=north)
    add_coordinator(hotline, "admin@example.org", admin=True)
    theirs = hotline.app.test_client()
    assert sign_in(theirs, "north@example.org") == 302
    assert theirs.get(f"/console/roster/{alice}").status_code == 404
    assert "Alice" not in theirs.get("/console/roster").get_data(as_text=True)
    admin = Console(hotline, hotline.app.test_client())
    assert sign_in(admin.client, "admin@example.org") == 302
    assert "Alice" in admin.get("/console/roster")
    admin.post("/console/programme", {"programme_id": north}, form_page="/console/live")
    assert "Alice" not in admin.get("/console/roster")


def test_switching_programme_on_a_supporters_page_lands_on_the_other_roster(
    hotline: Hotline,
) -> None:
    """An administrator on Alice's page switches to North: North's roster, not a 'not found'
    for Alice under North (the switch went back to the page it was made on)."""
    with transaction(hotline.services.sessions) as session:
        north = ensure_programme(
            session, slug="north", name="North", hotline_number="+15550200000", pool_numbers=()
        ).id
    alice = add_verified(hotline, "Alice", ALICE)
    add_coordinator(hotline, "admin@example.org", admin=True)
    admin = Console(hotline, hotline.app.test_client())
    assert sign_in(admin.client, "admin@example.org") == 302
    page = f"http://localhost/console/roster/{alice}"
    token = csrf_of(admin.get(page))
    switched = admin.client.post(
        "/console/programme",
        data={"programme_id": north, "csrf_token": token},
        headers={"Referer": page},
    )
    assert switched.status_code == 302
    assert switched.headers["Location"] == "/console/roster"
    assert admin.client.get(switched.headers["Location"]).status_code == 200
    settings_page = "http://localhost/console/settings"  # no number in it: the same page
    switched = admin.client.post(
        "/console/programme",
        data={"programme_id": north, "csrf_token": csrf_of(admin.get(settings_page))},
        headers={"Referer": settings_page},
    )
    assert switched.headers["Location"] == settings_page


def test_a_page_left_open_on_one_programme_cannot_change_another(hotline: Hotline) -> None:
    """An administrator with two tabs: the settings of the default programme in one, a switch
    to North in the other. Saving the first tab must not write its values over North's."""
    with transaction(hotline.services.sessions) as session:
        north = ensure_programme(
            session, slug="north", name="North", hotline_number="+15550200000", pool_numbers=()
        ).id
    add_coordinator(hotline, "admin@example.org", admin=True)
    admin = Console(hotline, hotline.app.test_client())
    assert sign_in(admin.client, "admin@example.org") == 302
    settings_tab = admin.get("/console/settings")
    roster_tab = admin.get("/console/roster")
    admin.post("/console/programme", {"programme_id": north}, form_page="/console/live")
    assert "North" in admin.get("/console/live")

    def submit(page: str, path: str, data: dict[str, object]) -> Any:
        found = re.search(r'name="programme" type="hidden" value="(\d+)"', page)
        assert found, "every console form says which programme it was shown for"
        return admin.client.post(
            path, data={**data, "programme": found.group(1), "csrf_token": csrf_of(page)}
        )

    saved = submit(settings_tab, "/console/settings", {"greeting": "Default's own words"})
    added = submit(roster_tab, "/console/roster", {"name": "Bob", "phone": BOB, "active": "y"})
    relinked = submit(settings_tab, "/console/settings/calendar", {})  # a button's form
    assert settings_tab.count('name="programme"') == 2
    for answer in (saved, added, relinked):
        assert answer.status_code == 409
        assert "switched" in answer.get_data(as_text=True)
    assert "Default&#39;s own words" not in admin.get("/console/settings")
    assert "Bob" not in admin.get("/console/roster")
    with hotline.session() as session:
        assert session.scalar(select(Supporter.id)) is None
        assert session.get_one(Programme, north).greeting is None
    fresh = admin.get("/console/settings")
    assert submit(fresh, "/console/settings", {"greeting": "North's words"}).status_code == 302


def _token_of(page: str) -> str:
    found = re.search(r"hl_[A-Za-z0-9_-]{20,}", page)
    assert found, "no token shown"
    return found.group(0)


def _api_status(hotline: Hotline, token: str) -> int:
    response = hotline.client.get(
        "/api/v1/supporters", headers={"Authorization": f"Bearer {token}"}
    )
    return response.status_code


def test_an_api_token_made_in_the_console_is_shown_once_and_revoked_there(
    console: Console,
) -> None:
    response = console.post("/console/tokens", {"name": "staff directory sync"})
    assert response.status_code == 201  # type: ignore[attr-defined]
    token = _token_of(response.get_data(as_text=True))  # type: ignore[attr-defined]
    assert _api_status(console.hotline, token) == 200
    listing = console.get("/console/tokens")
    assert "staff directory sync" in listing and token not in listing  # shown that once
    with console.hotline.session() as session:
        (row,) = session.scalars(select(ApiToken)).all()
    console.post(f"/console/tokens/{row.id}/revoke", {}, form_page="/console/tokens")
    assert _api_status(console.hotline, token) == 401
    assert "revoked" in console.get("/console/tokens")
    audit_page = console.get("/console/audit")
    assert "api token created" in audit_page and "api token revoked" in audit_page
    assert token not in audit_page


def test_a_console_token_expires_when_chosen_and_one_set_to_never_does_not(
    console: Console,
) -> None:
    hotline = console.hotline
    made = console.post("/console/tokens", {"name": "monthly report", "expires_in": "30"})
    monthly = _token_of(made.get_data(as_text=True))  # type: ignore[attr-defined]
    made = console.post("/console/tokens", {"name": "directory sync", "expires_in": ""})
    forever = _token_of(made.get_data(as_text=True))  # type: ignore[attr-defined]
    expiry = (hotline.clock.now + timedelta(days=30)).strftime("%Y-%m-%d %H:%M")
    assert expiry in console.get("/console/tokens")
    hotline.clock.advance(days=29, hours=23)
    assert _api_status(hotline, monthly) == 200
    hotline.clock.advance(hours=1)
    refused = hotline.client.get(
        "/api/v1/supporters", headers={"Authorization": f"Bearer {monthly}"}
    )
    assert refused.status_code == 401
    assert f"expired at {expiry} UTC" in refused.get_json()["error"]["message"]
    hotline.clock.advance(days=400)
    assert _api_status(hotline, forever) == 200
    assert sign_in(console.client) == 302  # the console session timed out meanwhile
    page = console.get("/console/tokens")
    assert "expired" in page and page.count(">Revoke<") == 1  # only the live one
    audit_page = console.get("/console/audit")
    assert "never" in audit_page and expiry in audit_page


def test_a_coordinator_manages_only_their_programmes_tokens(hotline: Hotline) -> None:
    with transaction(hotline.services.sessions) as session:
        north = ensure_programme(
            session, slug="north", name="North", hotline_number="+15550200000", pool_numbers=()
        ).id
        ours = accounts.create_api_token(session, "ours", hotline.programme_id)
        theirs = accounts.create_api_token(session, "theirs", north)
        every = accounts.create_api_token(session, "every", None)
        ids = {t.name: t.id for t in session.scalars(select(ApiToken))}
    add_coordinator(hotline, "north@example.org", programme_id=north)
    coordinator = Console(hotline, hotline.app.test_client())
    assert sign_in(coordinator.client, "north@example.org") == 302
    page = coordinator.get("/console/tokens")
    assert "theirs" in page and "ours" not in page and "every" not in page
    assert "every programme" not in page  # no such choice for a coordinator
    for name in ("ours", "every"):
        refused = coordinator.post(
            f"/console/tokens/{ids[name]}/revoke", {}, form_page="/console/tokens"
        )
        assert refused.status_code == 404  # type: ignore[attr-defined]
    made = coordinator.post("/console/tokens", {"name": "north sync", "every_programme": "y"})
    made_token = _token_of(made.get_data(as_text=True))  # type: ignore[attr-defined]
    with hotline.session() as session:
        scope = session.scalar(select(ApiToken.programme_id).where(ApiToken.name == "north sync"))
    assert scope == north  # the box is not theirs to tick
    assert all(_api_status(hotline, t) == 200 for t in (ours, every, made_token))
    add_coordinator(hotline, "admin@example.org", admin=True)
    admin = Console(hotline, hotline.app.test_client())
    assert sign_in(admin.client, "admin@example.org") == 302
    admin.post(f"/console/tokens/{ids['every']}/revoke", {}, form_page="/console/tokens")
    assert _api_status(hotline, every) == 401
    assert _api_status(hotline, ours) == 200 and _api_status(hotline, theirs) == 200


def test_verification_outcomes_have_messages() -> None:
    assert set(verification.MESSAGES) == set(verification.Outcome)


def test_an_administrator_sees_deployment_wide_changes_in_the_audit_log(hotline: Hotline) -> None:
    """A token for every programme belongs to no one programme: its making and revoking are
    shown to administrators, marked, and to no programme's coordinator."""
    add_coordinator(hotline, "admin@example.org", admin=True)
    admin = Console(hotline, hotline.app.test_client())
    assert sign_in(admin.client, "admin@example.org") == 302
    made = admin.post("/console/tokens", {"name": "directory sync", "every_programme": "y"})
    assert made.status_code == 201  # type: ignore[attr-defined]
    with hotline.session() as session:
        (token_id,) = session.scalars(select(ApiToken.id)).all()
    admin.post(f"/console/tokens/{token_id}/revoke", {}, form_page="/console/tokens")
    page = admin.get("/console/audit")
    assert "api token created" in page and "api token revoked" in page
    assert page.count("(every programme)") == 2
    add_coordinator(hotline, "lead@example.org")
    coordinator = Console(hotline, hotline.app.test_client())
    assert sign_in(coordinator.client, "lead@example.org") == 302
    assert "directory sync" not in coordinator.get("/console/audit")


def test_one_number_added_twice_at_the_same_moment_gets_a_page_not_a_500(
    console: Console, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two coordinators add the same phone at once: each request's check runs before either
    writes (done here by having the check see nothing), so the database refuses the second."""
    monkeypatch.setattr(roster, "find_supporter", lambda *_args: None)
    form = {"name": "Alice", "phone": ALICE, "max_conversations": 2, "active": "y"}
    first = console.post("/console/roster", form)
    second = console.post("/console/roster", {**form, "name": "Alice again"})
    assert first.status_code == 302  # type: ignore[attr-defined]
    assert second.status_code == 409  # type: ignore[attr-defined]
    assert "Nothing was changed" in second.get_data(as_text=True)  # type: ignore[attr-defined]
    with console.hotline.session() as session:
        assert session.scalars(select(Supporter.name)).all() == ["Alice"]
