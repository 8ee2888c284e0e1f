"""A phone DSL for smoke tests: scripts read like the conversation.

    clinician = phones.phone("+15550109001")
    clinician.texts("I made a mistake tonight")
    supporter.expect_text("Reply ACCEPT")
    supporter.texts("ACCEPT")
    ...
    phones.assert_no_unexpected()

Every text a phone receives comes either in a webhook's TwiML reply (``<Message to= from=>``,
or a bare ``<Message>`` back to the sender) or through the fake Twilio's REST API. Neither
reaches a phone that texted an opt-out word to the number it comes from (the fake's
``refused``), as at Twilio.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from dataclasses import dataclass, field

import pytest

from tests.kit.harness import HOTLINE, POOL, Hotline

# A supporter's word after her STOP to the first pool number: sent there, sent to the hotline
# number, or sent there once she has stopped every number of the line.
AFTER_HER_STOP = pytest.mark.parametrize(
    ("stopped", "to"),
    [
        pytest.param("its number", POOL[0], id="on its number"),
        pytest.param("its number", HOTLINE, id="to the hotline number"),
        pytest.param("every number", POOL[0], id="every number stopped"),
    ],
)


@dataclass(frozen=True)
class Received:
    from_: str
    body: str


@dataclass
class Phone:
    number: str
    network: Phones
    inbox: list[Received] = field(default_factory=list)
    last_from: str | None = None

    def texts(self, body: str, to: str | None = None, num_media: int = 0, **extra: str) -> None:
        """Send a text; without ``to``, reply to whoever texted this phone last (as phones do).
        ``extra``: more of Twilio's parameters (``OptOutType="STOP"``)."""
        to = to or self.last_from or HOTLINE
        response = self.network.hotline.sms(self.number, to, body, num_media=num_media, **extra)
        assert response.status_code == 200, response.status_code
        assert response.mimetype == "text/xml"
        self.network.deliver_twiml(self.number, to, response.get_data(as_text=True))

    def expect_text(self, contains: str = "", from_: str | None = None) -> Received:
        """The oldest unread text; it must contain ``contains`` (and come from ``from_``)."""
        self.network.sync()
        assert self.inbox, f"{self.number} expected a text containing {contains!r}, got none"
        text = self.inbox.pop(0)
        assert contains in text.body, f"{self.number} expected {contains!r}, got {text.body!r}"
        if from_ is not None:
            assert text.from_ == from_, f"{self.number}: text came from {text.from_}, not {from_}"
        return text

    def expect_nothing(self) -> None:
        self.network.sync()
        assert not self.inbox, f"{self.number} got unexpected texts: {self.inbox}"


class Phones:
    def __init__(self, hotline: Hotline) -> None:
        self.hotline = hotline
        self.phones: dict[str, Phone] = {}
        self._rest_seen = len(hotline.fake.sent)
        self._refused_seen = len(hotline.fake.refused)

    def phone(self, number: str) -> Phone:
        return self.phones.setdefault(number, Phone(number, self))

    def receive(self, to: str, from_: str, body: str) -> None:
        phone = self.phone(to)
        phone.inbox.append(Received(from_, body))
        phone.last_from = from_

    def talking(self, clinician: str, supporter: str, first: str = "hello") -> tuple[Phone, Phone]:
        """The clinician texts ``first``, is greeted, the supporter is offered it, accepts, gets
        the held text, and the clinician hears a peer joined: the two phones, now talking."""
        by, peer = self.phone(clinician), self.phone(supporter)
        by.texts(first)
        by.expect_text("confidential")
        peer.expect_text("Reply ACCEPT to take it or PASS")
        peer.texts("ACCEPT")
        peer.expect_text("connected")
        peer.expect_text(first)
        by.expect_text("joined")
        return by, peer

    def checked_in(
        self, clinician: str, supporter: str, text: str = "how are you doing"
    ) -> tuple[Phone, Phone, Received]:
        """As ``talking``, then the supporter closes with DONE and, a day on, the clinician gets
        the first check-in (reading ``text``): the two phones and the check-in."""
        by, peer = self.talking(clinician, supporter)
        peer.texts("DONE")
        peer.expect_text("Conversation closed")
        by.expect_text("not alone")
        self.hotline.clock.advance(days=1, minutes=1)
        self.hotline.sweep()  # the 1-day check-in
        checkin = by.expect_text(text, from_=self.hotline.settings.hotline_number)
        return by, peer, checkin

    def deliver_twiml(self, sender: str, to: str, xml: str) -> None:
        root = ET.fromstring(xml)  # noqa: S314 - our own TwiML, in a test
        assert root.tag == "Response"
        for message in root.iter("Message"):
            body = message.findtext("Body") or message.text or ""
            recipient, from_ = message.get("to") or sender, message.get("from") or to
            if self.hotline.fake.reply(from_, recipient, body):  # else refused: 21610
                self.receive(recipient, from_, body)

    def sync(self) -> None:
        """Texts sent through the REST API (by jobs) since the last look."""
        messages = self.hotline.fake.sent  # grows only: deleted records were delivered too
        for message in messages[self._rest_seen :]:
            self.receive(message["to"], message["from_"], message["body"])
        self._rest_seen = len(messages)

    def assert_no_unexpected(self) -> None:
        self.sync()
        unread = {n: p.inbox for n, p in self.phones.items() if p.inbox}
        assert not unread, f"unexpected texts: {unread}"
        stray = [m["to"] for m in self.hotline.fake.messages if m["to"] not in self.phones]
        assert not stray, f"texts to phones no test is holding: {stray}"
        refused = self.hotline.fake.refused[self._refused_seen :]
        # The line answered from a number Twilio blocks to that phone: nobody hears it.
        stopped = [(m["from_"], m["to"], m["body"][:40]) for m in refused]
        assert not stopped, f"texts Twilio refuses after a STOP (21610): {stopped}"

    def expect_refused(self, contains: str, to: str) -> None:
        """The oldest text Twilio refused (21610) since the last look, to ``to``, containing
        ``contains``: one the line sends knowing it may not arrive (a clinician's greeting
        after a STOP the line's record has but Twilio may not: "Stop." with its full stop)."""
        refused = self.hotline.fake.refused[self._refused_seen :]
        assert refused, f"expected a refused text containing {contains!r}, got none"
        assert refused[0]["to"] == to and contains in refused[0]["body"], refused[0]
        self._refused_seen += 1


@pytest.fixture
def phones(hotline: Hotline) -> Phones:
    return Phones(hotline)
