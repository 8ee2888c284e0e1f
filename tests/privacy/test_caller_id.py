"""A caller ID the carrier does not vouch for (SHAKEN/STIR) identifies nobody on the voice line.

Anyone can set any caller ID. Twilio passes the carrier's attestation as ``StirVerstat``: a
supporter's number "calling" the pool number of their live conversation must not be put
through to its clinician, and a clinician's number "calling" the hotline must not ring their
peer, or even hear anything a stranger would not, unless the carrier vouched for it.
"""

from __future__ import annotations

import itertools
import xml.etree.ElementTree as ET

import pytest

from tests.kit.harness import HOTLINE, Hotline
from tests.kit.phones import Phones

CLINICIAN, ALICE, STRANGER = "+15550109001", "+15550108001", "+15550109999"
NOT_VOUCHED = ("TN-Validation-Failed", "TN-Validation-Failed-A", "No-TN-Validation")
VOUCHED = ("TN-Validation-Passed-A", "TN-Validation-Passed-B", None)
_sids = itertools.count(1)


def _voice(hotline: Hotline, from_: str, to: str, verstat: str | None) -> ET.Element:
    params = {"CallSid": f"CA{next(_sids):032x}", "From": from_, "To": to}
    if verstat is not None:
        params["StirVerstat"] = verstat
    response = hotline.post("/twilio/voice", **params)
    assert response.status_code == 200
    return ET.fromstring(response.get_data(as_text=True))  # noqa: S314 - our own TwiML


def _talking(hotline: Hotline, phones: Phones) -> str:
    """Alice takes the clinician's text request; the pool number of their conversation."""
    hotline.add_supporter("Alice", ALICE)
    clinician, alice = phones.phone(CLINICIAN), phones.phone(ALICE)
    clinician.texts("I need to talk to someone")
    clinician.expect_text("confidential")
    offer = alice.expect_text("Reply ACCEPT")
    alice.texts("ACCEPT")
    alice.expect_text("connected")
    alice.expect_text("talk to someone")
    clinician.expect_text("joined")
    return offer.from_


def _dialled(twiml: ET.Element) -> list[str]:
    return [n.text or "" for n in twiml.iter("Number")]


def _said(twiml: ET.Element) -> list[str]:
    return [s.text or "" for s in twiml.iter("Say")]


@pytest.mark.parametrize("verstat", NOT_VOUCHED)
def test_an_unvouched_supporter_number_is_put_through_to_nobody(
    hotline: Hotline, phones: Phones, verstat: str
) -> None:
    pool = _talking(hotline, phones)
    twiml = _voice(hotline, ALICE, pool, verstat)
    assert _dialled(twiml) == []
    assert any("could not be verified" in s for s in _said(twiml))


@pytest.mark.parametrize("verstat", VOUCHED)
def test_a_vouched_or_unsigned_supporter_number_is_put_through(
    hotline: Hotline, phones: Phones, verstat: str | None
) -> None:
    pool = _talking(hotline, phones)
    assert _dialled(_voice(hotline, ALICE, pool, verstat)) == [CLINICIAN]


@pytest.mark.parametrize("verstat", NOT_VOUCHED)
def test_an_unvouched_clinician_number_hears_what_a_stranger_hears_and_rings_no_peer(
    hotline: Hotline, phones: Phones, verstat: str
) -> None:
    _talking(hotline, phones)
    spoofed = _voice(hotline, CLINICIAN, HOTLINE, verstat)
    stranger = _voice(hotline, STRANGER, HOTLINE, None)
    assert _dialled(spoofed) == []
    assert ET.tostring(spoofed) == ET.tostring(stranger)  # nothing says they are in touch
    vouched = _voice(hotline, CLINICIAN, HOTLINE, "TN-Validation-Passed-A")
    assert _dialled(vouched) == [ALICE]  # their own call still rings their peer first
