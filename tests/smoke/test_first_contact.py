"""Smoke: a clinician's first text reaches an on-call supporter, and the two talk, masked."""

from __future__ import annotations

from tests.kit.harness import HOTLINE, POOL, Hotline
from tests.kit.phones import Phones

CLINICIAN = "+15550109001"
ALICE = "+15550108001"


def test_first_text_offer_accept_relay_done(hotline: Hotline, phones: Phones) -> None:
    hotline.add_supporter("Alice", ALICE, discipline="nurse")
    clinician, alice = phones.phone(CLINICIAN), phones.phone(ALICE)

    clinician.texts("I can't stop thinking about tonight")
    clinician.expect_text("confidential", from_=HOTLINE)
    offer = alice.expect_text("Reply ACCEPT to take it or PASS", from_=POOL[0])
    assert "tonight" not in offer.body and CLINICIAN not in offer.body

    alice.texts("ACCEPT")
    alice.expect_text("You're connected", from_=POOL[0])
    alice.expect_text("I can't stop thinking about tonight", from_=POOL[0])
    clinician.expect_text("peer supporter has joined", from_=HOTLINE)

    alice.texts("I'm here. Want to tell me what happened?")
    clinician.expect_text("Want to tell me", from_=HOTLINE)
    clinician.texts("thank you")
    alice.expect_text("thank you", from_=POOL[0])

    alice.texts("DONE")
    alice.expect_text("Conversation closed")
    clinician.expect_text("not alone", from_=HOTLINE)
    phones.assert_no_unexpected()
