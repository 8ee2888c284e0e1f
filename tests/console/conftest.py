"""Helpers for the console's tests: verified supporters, coordinators, signed-in clients."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta

import pytest
from flask.testing import FlaskClient

from hotline import accounts, roster, verification
from hotline.db import transaction
from hotline.models import Channel, Conversation, ConversationState
from tests.kit.harness import Hotline

ACTOR = "coordinator@example.org"
PASSWORD = "correct horse battery staple"


def answered(programme_id: int, created: datetime, after: timedelta) -> Conversation:
    """A text request a peer took ``after`` it came in, since ended (for the reports)."""
    return Conversation(
        programme_id=programme_id,
        channel=Channel.SMS,
        state=ConversationState.ENDED,
        created_at=created,
        accepted_at=created + after,
    )


def add_verified(hotline: Hotline, name: str, phone: str, **fields: object) -> int:
    """A supporter added through the roster, their texted code confirmed (read from the DB)."""
    services = hotline.services
    with transaction(services.sessions) as session:
        change = roster.add(
            session,
            services.vault,
            hotline.programme_id,
            roster.SupporterInput(name=name, phone=phone, **fields),  # type: ignore[arg-type]
            ACTOR,
            hotline.clock.now,
        )
        supporter = change.supporter
        code = verification.code_of(session, services.vault, supporter.id)
        assert code is not None
        outcome = verification.confirm(session, services.vault, supporter, code, hotline.clock.now)
        assert outcome == verification.Outcome.VERIFIED
        return supporter.id


def add_coordinator(
    hotline: Hotline, email: str = ACTOR, *, admin: bool = False, programme_id: int | None = None
) -> int:
    with transaction(hotline.services.sessions) as session:
        person = accounts.create_coordinator(
            session, email, PASSWORD, programme_id or hotline.programme_id, admin
        )
        return person.id


def csrf_of(page: str) -> str:
    marker = 'name="csrf_token" type="hidden" value="'
    start = page.index(marker) + len(marker)
    return page[start : page.index('"', start)]


def sign_in(client: FlaskClient, email: str = ACTOR, password: str = PASSWORD) -> int:
    page = client.get("/console/sign-in").get_data(as_text=True)
    response = client.post(
        "/console/sign-in",
        data={"email": email, "password": password, "csrf_token": csrf_of(page)},
    )
    return response.status_code


@dataclass
class Console:
    """A signed-in coordinator's browser (the Flask test client) with CSRF handled."""

    hotline: Hotline
    client: FlaskClient

    def get(self, path: str) -> str:
        response = self.client.get(path)
        assert response.status_code == 200, (path, response.status_code)
        return response.get_data(as_text=True)

    def post(self, path: str, data: dict[str, object], form_page: str | None = None) -> object:
        token = csrf_of(self.get(form_page or path))
        return self.client.post(path, data={**data, "csrf_token": token})


@pytest.fixture
def console(hotline: Hotline) -> Iterator[Console]:
    add_coordinator(hotline)
    client = hotline.app.test_client()
    assert sign_in(client) == 302
    yield Console(hotline, client)
