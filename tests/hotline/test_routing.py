"""Round-robin under concurrency: parallel first texts never double-assign or skip anyone."""

from __future__ import annotations

import threading
from collections import Counter

from sqlalchemy import select

from hotline.models import Offer, Supporter
from tests.kit.fake_twilio import AUTH_TOKEN
from tests.kit.harness import HOTLINE, PUBLIC_URL, Hotline
from tests.kit.signing import signed_post


def test_parallel_first_texts_spread_evenly(hotline: Hotline) -> None:
    for i in range(3):
        hotline.add_supporter(f"S{i}", f"+1555010800{i}", max_conversations=5)
    barrier = threading.Barrier(9)
    statuses: list[int] = []

    def first_text(i: int) -> None:
        client = hotline.app.test_client()
        barrier.wait()
        sid = f"SM{i:032x}"
        response = signed_post(
            client,
            PUBLIC_URL,
            "/twilio/sms",
            {
                "MessageSid": sid,
                "From": f"+155501090{i:02d}",
                "To": HOTLINE,
                "Body": "I need to talk",
            },
            AUTH_TOKEN,
        )
        statuses.append(response.status_code)

    threads = [threading.Thread(target=first_text, args=(i,)) for i in range(9)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert statuses == [200] * 9
    with hotline.session() as session:
        per_supporter = Counter(session.scalars(select(Offer.supporter_id)))
        conversations = Counter(session.scalars(select(Offer.conversation_id)))
        ids = set(session.scalars(select(Supporter.id)))
    assert sorted(per_supporter.values()) == [3, 3, 3]
    assert set(per_supporter) == ids
    assert set(conversations.values()) == {1}, "a conversation was offered twice at once"
