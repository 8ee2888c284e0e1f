"""Two coordinators editing a programme's settings at once: the later save never silently undoes
the earlier one. The settings page, like a browser, sends back every field as it was shown; a
page opened before another coordinator's save is refused, shown again as the settings stand.
The admin API does the same with ``ETag`` and ``If-Match``."""

from __future__ import annotations

from html.parser import HTMLParser
from typing import Any

import pytest
from flask.testing import FlaskClient

from hotline import accounts
from hotline.db import transaction
from hotline.models import Programme
from tests.console.conftest import Console, add_coordinator, sign_in
from tests.kit.harness import POOL, SET_UP_HERE, Hotline

OTHER = "second.coordinator@example.org"
NEW = "+15550100005"  # a number the IT team bought for the pool
REFUSED = "Someone else changed these settings since you opened this page"


class _Form(HTMLParser):
    """The values a browser would send from the form posting to ``action``."""

    def __init__(self, action: str) -> None:
        super().__init__()
        self.action, self.inside, self.values = action, False, {}
        self.textarea: str | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        found = {k: v or "" for k, v in attrs}
        if tag == "form":
            self.inside = found.get("action") == self.action
        elif self.inside and tag == "input" and "name" in found:
            kind = found.get("type", "text")
            if kind not in ("checkbox", "submit") or "checked" in found:
                self.values[found["name"]] = found.get("value", "")
        elif self.inside and tag == "textarea":
            self.textarea = found["name"]
            self.values[self.textarea] = ""

    def handle_data(self, data: str) -> None:
        if self.textarea is not None:
            self.values[self.textarea] += data

    def handle_endtag(self, tag: str) -> None:
        if tag == "textarea" and self.textarea is not None:
            # The one line break after <textarea> is not part of the value (HTML's rule).
            text = self.values[self.textarea].replace("\r\n", "\n")
            self.values[self.textarea] = text.removeprefix("\n")
            self.textarea = None
        elif tag == "form":
            self.inside = False


def shown_form(page: str, action: str = "/console/settings") -> dict[str, str]:
    parser = _Form(action)
    parser.feed(page)
    assert "csrf_token" in parser.values, "no settings form on the page"
    return parser.values


def second_coordinator(hotline: Hotline) -> Console:
    add_coordinator(hotline, OTHER)
    client: FlaskClient = hotline.app.test_client()
    assert sign_in(client, OTHER) == 302
    return Console(hotline, client)


def stored(hotline: Hotline) -> Programme:
    with hotline.session() as session:
        programme = session.get_one(Programme, hotline.programme_id)
        programme.pool_numbers  # noqa: B018 (loaded before the session closes)
        return programme


@pytest.mark.parametrize(
    ("first", "kept"),
    [
        pytest.param({"crisis_text": "Call 988, or go to the nearest ER."}, None, id="crisis"),
        pytest.param({"pool_numbers": ",".join([*POOL, NEW])}, "+1•••••••005", id="pool"),
    ],
)
def test_a_save_from_a_page_opened_before_anothers_save_is_refused_and_undoes_nothing(
    console: Console, first: dict[str, str], kept: str | None
) -> None:
    """Both open Settings; A saves, then B saves her own change. B used to write back every
    field as her page showed it, undoing A's without a word. B is told, sees the settings as
    they stand now, and makes her change again on that page."""
    hotline = console.hotline
    hotline.fake.own_number(NEW, **SET_UP_HERE)
    other = second_coordinator(hotline)
    a_page, b_page = console.get("/console/settings"), other.get("/console/settings")
    saved = console.client.post("/console/settings", data={**shown_form(a_page), **first})
    assert saved.status_code == 302
    b_change = {"greeting": "Hello from the forYOU team."}
    refused = other.client.post("/console/settings", data={**shown_form(b_page), **b_change})
    assert refused.status_code == 409
    page = refused.get_data(as_text=True)
    assert REFUSED in page and "make your change again" in page
    now = stored(hotline)
    assert now.greeting is None, "nothing of the refused save is applied"
    if "crisis_text" in first:
        assert now.crisis_text == first["crisis_text"]
        assert shown_form(page)["crisis_text"] == first["crisis_text"], "shown as it is now"
    else:
        assert [p.number for p in now.pool_numbers] == [*POOL, NEW]
        assert kept in page
    again = other.client.post("/console/settings", data={**shown_form(page), **b_change})
    assert again.status_code == 302
    now = stored(hotline)
    assert now.greeting == "Hello from the forYOU team."
    assert now.crisis_text == first.get("crisis_text")
    assert [p.number for p in now.pool_numbers] == ([*POOL, NEW] if kept else list(POOL))


def test_saving_twice_from_ones_own_page_is_not_refused(console: Console) -> None:
    """The page shown after a save carries the settings as saved: the next save goes through."""
    page = console.get("/console/settings")
    first = console.client.post("/console/settings", data={**shown_form(page), "greeting": "Hi"})
    assert first.status_code == 302
    page = console.get("/console/settings")
    second = console.client.post(
        "/console/settings", data={**shown_form(page), "checkin_text": "Thinking of you."}
    )
    assert second.status_code == 302
    now = stored(console.hotline)
    assert (now.greeting, now.checkin_text) == ("Hi", "Thinking of you.")


def test_a_page_from_before_this_release_still_saves(console: Console) -> None:
    """A page shown by the release before carries no version of the settings: saved as then."""
    page = shown_form(console.get("/console/settings"))
    del page["version"]
    saved = console.client.post("/console/settings", data={**page, "greeting": "Hi"})
    assert saved.status_code == 302
    assert stored(console.hotline).greeting == "Hi"


# --- the admin API: ETag and If-Match ---------------------------------------------------------


def api(hotline: Hotline) -> dict[str, str]:
    with transaction(hotline.services.sessions) as session:
        token = accounts.create_api_token(session, "directory sync", hotline.programme_id)
    return {"Authorization": f"Bearer {token}"}


def patch(hotline: Hotline, headers: dict[str, str], changes: dict[str, Any]) -> Any:
    return hotline.client.patch("/api/v1/programme", json=changes, headers=headers)


def test_the_api_refuses_a_change_made_from_settings_read_before_anothers(
    hotline: Hotline,
) -> None:
    """Two scripts read the settings; one changes them; the other's change, sent with the ETag
    it read, is refused (412) and applies nothing; read again, it passes."""
    auth = api(hotline)
    read = hotline.client.get("/api/v1/programme", headers=auth)
    etag = read.headers["ETag"]
    assert (
        etag.startswith('"')
        and etag == hotline.client.get("/api/v1/programme", headers=auth).headers["ETag"]
    ), "the same settings, the same ETag"
    first = patch(hotline, {**auth, "If-Match": etag}, {"crisis_text": "Call 988."})
    assert first.status_code == 200
    assert first.headers["ETag"] not in (None, etag)
    stale = patch(hotline, {**auth, "If-Match": etag}, {"greeting": "Hello."})
    assert stale.status_code == 412
    assert stale.get_json() == {
        "error": {
            "status": 412,
            "message": "the settings changed since that ETag was read: read them again "
            "(GET /api/v1/programme) and send the change with the new ETag",
            "field": None,
        }
    }
    assert (stored(hotline).greeting, stored(hotline).crisis_text) == (None, "Call 988.")
    fresh = hotline.client.get("/api/v1/programme", headers=auth).headers["ETag"]
    assert fresh == first.headers["ETag"]
    done = patch(hotline, {**auth, "If-Match": fresh}, {"greeting": "Hello."})
    assert done.status_code == 200
    assert (stored(hotline).greeting, stored(hotline).crisis_text) == ("Hello.", "Call 988.")


@pytest.mark.parametrize(
    ("if_match", "status"),
    [
        pytest.param(None, 200, id="none: as before"),
        pytest.param("*", 200, id="any"),
        pytest.param("current", 200, id="current"),
        pytest.param('"0000", current', 200, id="one of several"),
        pytest.param("weak", 412, id="weak: never matches"),
        pytest.param('"0000"', 412, id="another"),
    ],
)
def test_if_match_is_honoured_and_optional(
    hotline: Hotline, if_match: str | None, status: int
) -> None:
    auth = api(hotline)
    etag = hotline.client.get("/api/v1/programme", headers=auth).headers["ETag"]
    headers = dict(auth)
    if if_match is not None:
        headers["If-Match"] = if_match.replace("weak", f"W/{etag}").replace("current", etag)
    answer = patch(hotline, headers, {"greeting": "Hello."})
    assert answer.status_code == status, answer.get_json()
    assert stored(hotline).greeting == ("Hello." if status == 200 else None)


def test_the_openapi_document_describes_etag_and_if_match(hotline: Hotline) -> None:
    document = hotline.client.get("/api/v1/openapi.json").get_json()
    programme = document["paths"]["/programme"]
    assert "ETag" in programme["get"]["responses"]["200"]["headers"]
    assert "412" in programme["patch"]["responses"]
    assert any(p["name"] == "If-Match" for p in programme["patch"]["parameters"])


def test_a_change_sent_with_the_etag_of_the_last_answer_is_not_refused(
    hotline: Hotline,
) -> None:
    """A script adds the new number at the head of the pool, then makes its next change with
    the ETag that answer gave. The answer named the pool in the order sent, the settings as
    stored (and as a GET reads them) in the order the numbers joined: its ETag matched no
    settings, and the next change was refused (412) though nobody else had changed a thing."""
    hotline.fake.own_number(NEW, **SET_UP_HERE)
    auth = api(hotline)
    etag = hotline.client.get("/api/v1/programme", headers=auth).headers["ETag"]
    first = patch(hotline, {**auth, "If-Match": etag}, {"pool_numbers": [NEW, *POOL]})
    assert first.status_code == 200, first.get_json()
    read = hotline.client.get("/api/v1/programme", headers=auth)
    assert first.get_json() == read.get_json(), "the answer shows the settings as stored"
    second = patch(hotline, {**auth, "If-Match": first.headers["ETag"]}, {"greeting": "Hello."})
    assert second.status_code == 200, second.get_json()
    assert stored(hotline).greeting == "Hello."
    assert [p.number for p in stored(hotline).pool_numbers] == [*POOL, NEW]
