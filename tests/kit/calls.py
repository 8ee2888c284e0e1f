"""A call simulator for tests: it plays Twilio's part in a phone call.

    script = Script(menu="1", phones={ALICE: VOICEMAIL, BOB: PRESS_1})
    call = calls.place(CLINICIAN, HOTLINE, script)
    assert call.dialled == [ALICE, BOB] and call.bridged_with == BOB
    assert call.hears("confidential")

It posts the signed ``/twilio/voice`` webhook for an inbound call, then follows the TwiML as
Twilio would: ``Say``/``Play``/``Pause`` are recorded as heard; ``Gather`` posts the script's
digits to its action, or times out to the next verb; ``Redirect`` fetches the next document;
``Hangup`` (or the end of the document) ends the call; ``Dial`` rings each ``<Number>`` as the
script says that phone behaves, runs the ``url=`` screen on the answered leg, then posts the
dial action with ``DialCallStatus``, ``DialBridged`` and ``DialCallSid``. Each rung leg has its
own CallSid (on its screen and as ``DialCallSid``); when it ends, its final status goes to the
``<Number statusCallback>``. When the caller's leg ends, the call's ``completed`` status callback
goes to ``/twilio/status`` (the number's "call status changes" URL).

The fake Twilio (``hotline.fake``) is told of every leg, the caller's and each rung one, as it
starts and ends, so that deleting a call record there works as at Twilio: refused (20009) until
the call is complete, and until ``Script.record_settles_after`` seconds after that.
``SimulatedCall.sids`` lists every CallSid of the call.

Checked on every document, for every call: no ``<Record>`` and no ``record`` attribute anywhere,
every ``<Dial>`` carries a masked ``callerId`` (a pool number towards a supporter, the hotline
number towards anyone else, never the caller's own number), and every ``<Number>`` asks for its
leg's final status (so its record can be deleted at Twilio).
"""

from __future__ import annotations

import itertools
import xml.etree.ElementTree as ET
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum

import pytest

from hotline.models import Programme
from hotline.people import find_supporter
from hotline.programmes import config_of
from tests.kit.fake_twilio import ACCOUNT_SID
from tests.kit.harness import PUBLIC_URL, Hotline

_sids = itertools.count(1)


class Pickup(StrEnum):
    """What a dialled phone does when it rings."""

    PRESS_1 = "answer_and_press_1"  # answers, listens to the screen, presses 1
    PRESS_9 = "answer_and_press_9"  # answers and presses something else (declines)
    VOICEMAIL = "voicemail"  # answers, never presses: the screen times out and hangs up
    ANSWER = "answer"  # answers, presses nothing (an unscreened leg is bridged at once)
    BUSY = "busy"
    NO_ANSWER = "no-answer"
    FAILED = "failed"


PRESS_1, PRESS_9, VOICEMAIL = Pickup.PRESS_1, Pickup.PRESS_9, Pickup.VOICEMAIL
ANSWER, BUSY, NO_ANSWER = Pickup.ANSWER, Pickup.BUSY, Pickup.NO_ANSWER
_PRESSES = {Pickup.PRESS_1: "1", Pickup.PRESS_9: "9"}
_UNANSWERED = frozenset({Pickup.BUSY, Pickup.NO_ANSWER, Pickup.FAILED})


@dataclass
class Script:
    """What the people on the call do."""

    menu: str | None = None  # digits the caller presses at their first menu (None: waits)
    phones: Mapping[str, Pickup] = field(default_factory=dict)  # unlisted numbers don't answer
    hang_up_during_dial: int | None = None  # the caller hangs up while dial N (1-based) rings
    status_before_action: bool = False  # the hang-up's status callback overtakes the action
    repeat_every_webhook: bool = False  # each webhook delivered twice: answers must match
    on_bridge: Callable[[], None] | None = None  # runs while the two are connected
    # What a rung phone's owner does as it rings, before answering (a text, say), by number.
    before_answer: Mapping[str, Callable[[], None]] = field(default_factory=dict)
    record_settles_after: float = 0.0  # seconds after a leg ends until Twilio can delete it
    # The bridged call ends at Twilio, but nothing saying so reaches the line (the database was
    # down as it ended): no dial action, no final status of either leg.
    end_lost: bool = False


@dataclass
class DialRecord:
    number: str
    caller_id: str
    status: str  # the DialCallStatus posted to the action
    bridged: bool
    sid: str = ""  # the dialled leg's CallSid
    heard: list[str] = field(default_factory=list)  # what the dialled phone heard


@dataclass
class SimulatedCall:
    sid: str
    from_: str
    to: str
    heard: list[str] = field(default_factory=list)  # what the caller heard
    dials: list[DialRecord] = field(default_factory=list)
    documents: list[str] = field(default_factory=list)  # every TwiML answer, in order
    ignored: list[ET.Element] = field(default_factory=list)  # answers after the caller left
    caller_hung_up: bool = False
    legs: list[str] = field(default_factory=list)  # CallSids of the legs rung, in order

    @property
    def sids(self) -> list[str]:
        """Every CallSid of this call at Twilio: the caller's leg, then each rung leg."""
        return [self.sid, *self.legs]

    @property
    def dialled(self) -> list[str]:
        return [d.number for d in self.dials]

    @property
    def bridged_with(self) -> str | None:
        return next((d.number for d in self.dials if d.bridged), None)

    def hears(self, fragment: str) -> bool:
        return any(fragment in line for line in self.heard)


class CallerLeft(Exception):
    """The caller hung up mid-ring: Twilio ignores whatever the dial action answers."""


class Calls:
    """Places simulated calls against a running ``Hotline``."""

    def __init__(self, hotline: Hotline) -> None:
        self.hotline = hotline
        self.placed: list[SimulatedCall] = []

    def place(
        self, from_: str, to: str, script: Script | None = None, sid: str | None = None
    ) -> SimulatedCall:
        """An inbound call from ``from_`` to ``to``, followed until the caller's leg ends."""
        script = script or Script()
        call = SimulatedCall(sid or f"CA{next(_sids):032x}", from_, to)
        self.placed.append(call)
        self.hotline.fake.carry_call(call.sid, from_, to, "inbound")
        first = self._fetch(call, script, "/twilio/voice", self._caller(call, "ringing"))
        try:
            self._follow(call, script, first)
        except CallerLeft:
            return call
        self._status(call, script)
        return call

    # --- the caller's leg ----------------------------------------------------------------------

    def _follow(self, call: SimulatedCall, script: Script, document: ET.Element) -> None:
        verbs, menus = list(document), 0
        while verbs:
            verb = verbs.pop(0)
            if verb.tag in ("Say", "Play", "Pause"):
                call.heard.append(_heard(verb))
            elif verb.tag == "Gather":
                call.heard.extend(_heard(inner) for inner in verb)
                digits, menus = (script.menu if menus == 0 else None), menus + 1
                if digits:
                    params = {**self._caller(call), "Digits": digits}
                    verbs = list(self._fetch(call, script, _action(verb), params))
            elif verb.tag == "Redirect":
                url = (verb.text or "").strip()
                verbs = list(self._fetch(call, script, url, self._caller(call)))
            elif verb.tag == "Hangup":
                return
            elif verb.tag == "Dial":
                verbs = self._dial(call, script, verb) or verbs
            else:
                pytest.fail(f"the simulator does not support <{verb.tag}> on the caller's leg")

    def _dial(self, call: SimulatedCall, script: Script, dial: ET.Element) -> list[ET.Element]:
        """Ring the ``<Number>``s; return the action's verbs (or [] to go on in the document)."""
        caller_id = dial.get("callerId", "")
        numbers = dial.findall("Number")
        assert numbers, "a <Dial> without <Number>"
        record = self._ring(call, script, numbers, caller_id)
        call.dials.append(record)
        action = dial.get("action")
        if call.caller_hung_up:
            self._caller_left(call, script, record, action)
        if not action:
            return []
        if record.bridged and script.end_lost:
            return [ET.Element("Hangup")]
        params = {
            **self._caller(call),
            "DialCallStatus": record.status,
            "DialCallSid": record.sid,
            "DialBridged": "true" if record.bridged else "false",
            "DialCallDuration": "300" if record.bridged else "0",
        }
        return list(self._fetch(call, script, action, params)) or [ET.Element("Hangup")]

    def _ring(
        self, call: SimulatedCall, script: Script, numbers: list[ET.Element], caller_id: str
    ) -> DialRecord:
        # Several <Number>s ring at once; the first to take the call wins (we use one at a time).
        record = DialRecord("", caller_id, Pickup.NO_ANSWER.value, bridged=False)
        for number in numbers:
            to = (number.text or "").strip()
            self.check_masked(call, to, caller_id)
            check_leg_reports_its_end(number)
            record = DialRecord(to, caller_id, Pickup.NO_ANSWER.value, bridged=False)
            record.sid = self._new_leg(call, record)
            if script.hang_up_during_dial == len(call.dials) + 1:
                call.caller_hung_up = True
                record.status = "canceled"
                self._leg_over(call, script, number, record)
                return record
            pickup = script.phones.get(to, Pickup.NO_ANSWER)
            if pickup in _UNANSWERED:
                record.status = pickup.value
                self._leg_over(call, script, number, record)
                continue
            if (ringing := script.before_answer.get(to)) is not None:
                ringing()
            # Answered. Twilio reports "completed" even when the screen hung up on a voicemail.
            record.status = "completed"
            record.bridged = self._answer(call, script, number, record, pickup)
            if record.bridged and script.on_bridge is not None:
                script.on_bridge()
            self._leg_over(call, script, number, record)
            if record.bridged:
                return record
        return record

    def _new_leg(self, call: SimulatedCall, record: DialRecord) -> str:
        sid = f"CA{next(_sids):032x}"
        call.legs.append(sid)
        self.hotline.fake.carry_call(
            sid, record.caller_id, record.number, "outbound-dial", call.sid
        )
        return sid

    def _leg_over(
        self, call: SimulatedCall, script: Script, number: ET.Element, record: DialRecord
    ) -> None:
        """The rung leg ended: Twilio closes its record and posts its final status."""
        self.hotline.fake.end_call(record.sid, record.status, script.record_settles_after)
        if record.bridged and script.end_lost:
            return
        params = {
            **self._leg(call, record, record.status),
            "CallDuration": "300" if record.bridged else "0",
        }
        for _ in range(2 if script.repeat_every_webhook else 1):
            response = self.hotline.post(_path(number.get("statusCallback", "")), **params)
            assert response.status_code in (200, 204), response.status_code

    def _caller_left(
        self, call: SimulatedCall, script: Script, record: DialRecord, action: str | None
    ) -> None:
        if script.status_before_action:
            self._status(call, script)
        if action:
            params = {
                **self._caller(call, "completed"),
                "DialCallStatus": record.status,
                "DialCallSid": record.sid,
                "DialBridged": "false",
            }
            call.ignored.append(self._fetch(call, script, action, params))
        if not script.status_before_action:
            self._status(call, script)
        raise CallerLeft

    # --- the dialled leg ----------------------------------------------------------------------

    def _answer(
        self,
        call: SimulatedCall,
        script: Script,
        number: ET.Element,
        record: DialRecord,
        pickup: Pickup,
    ) -> bool:
        """Run the screen (``url=``) on the answered leg; True when it ends by bridging."""
        url = number.get("url")
        if url is None:
            return True  # unscreened: whoever answers, a voicemail too, takes the call
        leg = self._leg(call, record)
        verbs = list(self._fetch(call, script, url, leg))
        while verbs:
            verb = verbs.pop(0)
            if verb.tag in ("Say", "Play", "Pause"):
                record.heard.append(_heard(verb))
            elif verb.tag == "Gather":
                record.heard.extend(_heard(inner) for inner in verb)
                digits = _PRESSES.get(pickup)
                if digits:
                    params = {**leg, "Digits": digits}
                    verbs = list(self._fetch(call, script, _action(verb), params))
            elif verb.tag == "Redirect":
                verbs = list(self._fetch(call, script, (verb.text or "").strip(), leg))
            elif verb.tag == "Hangup":
                return False
            else:
                pytest.fail(f"<{verb.tag}> is not allowed on a screened leg")
        return True  # the screen's document ended: Twilio bridges the two legs

    # --- plumbing ------------------------------------------------------------------------------

    def _leg(
        self, call: SimulatedCall, record: DialRecord, status: str = "in-progress"
    ) -> dict[str, str]:
        return {
            "CallSid": record.sid,
            "ParentCallSid": call.sid,
            "AccountSid": ACCOUNT_SID,
            "From": record.caller_id,
            "To": record.number,
            "Direction": "outbound-dial",
            "CallStatus": status,
            "ApiVersion": "2010-04-01",
        }

    def _caller(self, call: SimulatedCall, status: str = "in-progress") -> dict[str, str]:
        return {
            "CallSid": call.sid,
            "AccountSid": ACCOUNT_SID,
            "From": call.from_,
            "To": call.to,
            "Caller": call.from_,
            "Called": call.to,
            "CallStatus": status,
            "Direction": "inbound",
            "ApiVersion": "2010-04-01",
        }

    def _status(self, call: SimulatedCall, script: Script) -> None:
        """The caller's leg ended: Twilio closes its record and posts its final status."""
        self.hotline.fake.end_call(call.sid, "completed", script.record_settles_after)
        if script.end_lost:
            return
        params = {**self._caller(call, "completed"), "CallDuration": "60"}
        for _ in range(2 if script.repeat_every_webhook else 1):
            response = self.hotline.post("/twilio/status", **params)
            assert response.status_code in (200, 204), response.status_code

    def _fetch(
        self, call: SimulatedCall, script: Script, url: str, params: Mapping[str, str]
    ) -> ET.Element:
        """POST a signed webhook as Twilio does and return the checked TwiML document."""
        path = _path(url)
        first = self._post(path, params)
        if script.repeat_every_webhook:
            again = self._post(path, params)
            assert again == first, f"a repeated {path} answered differently:\n{first}\n{again}"
        call.documents.append(first)
        root = ET.fromstring(first)  # noqa: S314 - our own TwiML, in a test
        assert root.tag == "Response", first
        check_no_recording(root)
        return root

    def _post(self, path: str, params: Mapping[str, str]) -> str:
        response = self.hotline.post(path, **params)
        assert response.status_code == 200, (path, response.status_code)
        assert response.mimetype == "text/xml", (path, response.mimetype)
        return str(response.get_data(as_text=True))

    def check_masked(self, call: SimulatedCall, to: str, caller_id: str) -> None:
        """A supporter sees a pool number; anyone else sees the hotline number; nobody sees
        the caller's own number."""
        assert caller_id, f"<Dial> to {to} without callerId: they would see the real number"
        assert caller_id != call.from_, "a <Dial> shows the caller's own number"
        services = self.hotline.services
        with services.sessions() as session:
            programme = session.get_one(Programme, self.hotline.programme_id)
            p = config_of(programme, services.settings)
            supporter = find_supporter(session, services.vault, p.id, to)
        if supporter is not None:
            assert caller_id in p.pool_numbers, f"a supporter was shown {caller_id}, not a pool"
        else:
            assert caller_id == p.hotline_number, f"{to} was shown {caller_id}, not the hotline"


def _heard(verb: ET.Element) -> str:
    if verb.tag == "Say":
        return (verb.text or "").strip()
    if verb.tag == "Pause":
        return f"[pause {verb.get('length', '1')}s]"
    return f"[{verb.tag.lower()} {(verb.text or '').strip()}]"


def _action(gather: ET.Element) -> str:
    action = gather.get("action")
    assert action, "a <Gather> without an action would post to the current document's URL"
    return action


def _path(url: str) -> str:
    """Our webhooks are named by absolute public URLs; the test client needs the path."""
    assert url.startswith(f"{PUBLIC_URL}/") or url.startswith("/"), url
    return url.removeprefix(PUBLIC_URL)


def check_leg_reports_its_end(number: ET.Element) -> None:
    """A rung leg must post its final status to ``/twilio/status``: that deletes its record."""
    url = number.get("statusCallback", "")
    events = number.get("statusCallbackEvent", "").split()
    assert url == f"{PUBLIC_URL}/twilio/status", f"<Number> without a status callback: {url!r}"
    assert "completed" in events, f"<Number> does not report its end: {events}"


def check_no_recording(root: ET.Element) -> None:
    for element in root.iter():
        assert element.tag != "Record", "nothing on this line may be recorded"
        recording = [a for a in element.attrib if a.lower().startswith("record")]
        assert not recording, f"<{element.tag}> has recording attributes {recording}"


@pytest.fixture
def calls(hotline: Hotline) -> Calls:
    return Calls(hotline)
