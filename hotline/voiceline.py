"""The voice line's first answer. Ringing supporters is the voice-line issue's work; until then
a caller hears the greeting, is told to text this number to reach a peer, and the crisis line."""

from __future__ import annotations

from hotline.db import transaction
from hotline.programmes import config_of, find_by_number
from hotline.services import Services


def answer(services: Services, to: str) -> tuple[str, ...]:
    """Sentences to say to a caller of ``to`` before hanging up."""
    with transaction(services.sessions) as session:
        match = find_by_number(session, to)
        if match is None or not match.is_hotline:
            return ("This number does not take calls.",)
        p = config_of(match.programme, services.settings)
    return (
        "You've reached the clinician peer support line. It is confidential and voluntary, "
        "and not for emergencies.",
        "To reach a peer supporter now, please send a text message to this number.",
        p.crisis_text,
    )
