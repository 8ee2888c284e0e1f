"""The dev phone page: play a clinician and each supporter on simulated phones (development only).

``GET /dev/phones`` shows every text each simulated phone sent and received. ``POST
/dev/phones/send`` sends a text from one of them as Twilio would deliver it: the form Twilio
posts, signed with ``X-Twilio-Signature``, through the real ``/twilio/sms`` webhook and its
signature check; the TwiML reply's messages are then delivered to the phones they name. Texts
that jobs send through the telephony port land in the same PhoneNetwork (SimulatedTelephony).

CSRF: no token. The page exists only outside production (registered only then, and it answers
404 in production anyway), is meant for localhost, and can only make simulated phones text the
line; a cross-origin POST is still refused by its Origin/Referer, which costs nothing.

This is an edge (a Flask blueprint), like ``webhooks/``: it may import flask and twilio.
"""

from __future__ import annotations

import secrets
import threading
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from datetime import datetime
from urllib.parse import urlsplit

from flask import (
    Blueprint,
    abort,
    current_app,
    redirect,
    render_template,
    request,
    url_for,
)
from flask.blueprints import BlueprintSetupState
from sqlalchemy import select
from twilio.request_validator import RequestValidator
from werkzeug.test import TestResponse
from werkzeug.wrappers import Response

from hotline.keywords import OPT_IN_WORDS, OPT_OUT_WORDS
from hotline.models import Programme, Supporter, utcnow
from hotline.people import supporter_phone
from hotline.phone import InvalidPhoneNumber, normalize
from hotline.privacy import DecryptionError
from hotline.programmes import DEFAULT_SLUG
from hotline.services import Services
from hotline.settings import Settings
from hotline.telephony.simulator import PhoneNetwork, SimulatedTelephony, SimulatedText
from webhooks.signature import SIGNATURE_HEADER, signed_url

bp = Blueprint("devphone", __name__, url_prefix="/dev")

DEFAULT_CLINICIAN = "+15550109001"  # fictional (555-01xx)
# The test client presents this as request.url; webhooks/signature.py trusts the request URL
# in development (no HOTLINE_PUBLIC_URL), so that is the URL to sign.
LOCAL_BASE_URL = "http://localhost"
DEV_ACCOUNT_SID = "AC" + "0" * 32
MAX_BODY = 1600  # Twilio's own limit for one message
SHOWN_PER_PHONE = 50
QUICK_WORDS = {"clinician": ("HELP", "STOP", "START"), "supporter": ("ACCEPT", "PASS", "DONE")}
# What Twilio itself answers to the opt-out and opt-in words (it still forwards them to us).
CARRIER_STOP_REPLY = (
    "You have successfully been unsubscribed. You will not receive any more messages from this "
    "number. Reply START to resubscribe."
)
CARRIER_START_REPLY = (
    "You have successfully been re-subscribed to messages from this number. Reply HELP for "
    "help. Reply STOP to unsubscribe. Msg&Data Rates May Apply."
)
NOTICES = {
    "sent": "Sent.",
    "bad-number": "That is not a phone number the simulator can use.",
    "empty": "Type a message first.",
    "too-long": f"Messages are limited to {MAX_BODY} characters.",
    "refused": "The /twilio/sms webhook refused the text (HTTP {code}); see the server log.",
    "simulator-off": "The phone simulator is off: Twilio is configured.",
}
OUTBOX = "hotline.devphone.outbox"


class Outbox:
    """Texts the dev phones sent (the PhoneNetwork holds only what phones received)."""

    def __init__(self) -> None:
        self._texts: list[SimulatedText] = []
        self._lock = threading.Lock()

    def add(self, text: SimulatedText) -> None:
        with self._lock:
            self._texts.append(text)

    def sent_by(self, number: str) -> list[SimulatedText]:
        with self._lock:
            return [t for t in self._texts if t.from_ == number]


@dataclass(frozen=True)
class Person:
    name: str
    phone: str
    discipline: str


@dataclass(frozen=True)
class Line:
    """The default programme as the page shows it."""

    hotline: str
    pool: tuple[str, ...]
    supporters: tuple[Person, ...]

    @property
    def numbers(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys((self.hotline, *self.pool)))


@dataclass(frozen=True)
class Entry:
    sent: bool  # True: this phone sent it to ``other``; False: received from ``other``
    other: str
    body: str
    at: datetime


@dataclass(frozen=True)
class PhoneView:
    role: str  # "clinician" or "supporter"
    title: str
    number: str
    detail: str
    entries: tuple[Entry, ...]
    reply_to: str

    @property
    def anchor(self) -> str:
        return anchor_of(self.number)

    @property
    def quick_words(self) -> tuple[str, ...]:
        return QUICK_WORDS[self.role]


@bp.record_once
def _create_outbox(state: BlueprintSetupState) -> None:
    state.app.extensions[OUTBOX] = Outbox()


@bp.before_request
def development_only() -> None:
    """A second guard: the app registers this blueprint only outside production."""
    if _services().settings.production:
        abort(404)


@bp.get("/phones")
def phones() -> str:
    services = _services()
    network = _network(services)
    clinician = _number_or(request.args.get("clinician"), DEFAULT_CLINICIAN)
    line = _load_line(services)
    views = _phone_views(network, line, clinician) if network is not None and line else []
    return render_template(
        "dev/phones.html",
        simulated=network is not None,
        line=line,
        clinician=clinician,
        phones=views,
        notice=_notice(),
    )


@bp.post("/phones/send")
def send() -> Response:
    """Text from a simulated phone through the signed webhook; redirect back to the page."""
    if not _same_origin():
        abort(403)
    clinician = _number_or(request.form.get("clinician"), DEFAULT_CLINICIAN)
    sender, to = _form_number("from"), _form_number("to")
    body = (request.form.get("quick") or request.form.get("body") or "").strip()
    services = _services()
    network = _network(services)
    if network is None:
        return _back(clinician, "simulator-off")
    if sender is None or to is None:
        return _back(clinician, "bad-number")
    if not body or len(body) > MAX_BODY:
        return _back(clinician, "too-long" if body else "empty")
    status = text_the_line(services.settings, network, sender, to, body)
    notice = "sent" if status == 200 else "refused"
    return _back(clinician, notice, anchor=anchor_of(sender), code=status)


def text_the_line(
    settings: Settings, network: PhoneNetwork, sender: str, to: str, body: str
) -> int:
    """Deliver one text from ``sender`` to our number ``to`` as Twilio would; return the
    webhook's HTTP status. Must run inside this app's context (it uses its test client)."""
    form = inbound_form(settings, sender, to, body)
    _outbox().add(SimulatedText(form["MessageSid"], to, sender, body, utcnow()))
    _carrier_keywords(network, sender, to, body)
    response = _post_signed(settings, "/twilio/sms", form)
    if response.status_code == 200:
        deliver_twiml(network, sender, to, response.get_data(as_text=True))
    return response.status_code


def inbound_form(settings: Settings, sender: str, to: str, body: str) -> dict[str, str]:
    """The form Twilio posts for an inbound SMS (the parameters NOTES.md lists)."""
    sid = "SM" + secrets.token_hex(16)
    return {
        "MessageSid": sid,
        "SmsSid": sid,
        "SmsMessageSid": sid,
        "AccountSid": settings.twilio_account_sid or DEV_ACCOUNT_SID,
        "From": sender,
        "To": to,
        "Body": body,
        "NumMedia": "0",
        "NumSegments": "1",
        "SmsStatus": "received",
        "ApiVersion": "2010-04-01",
    }


def deliver_twiml(network: PhoneNetwork, sender: str, to: str, xml: str) -> None:
    """Deliver a TwiML reply's messages: ``<Message to= from=>`` as addressed, a bare
    ``<Message>`` back to ``sender`` from ``to``; pairs blocked by STOP get nothing."""
    root = ET.fromstring(xml)  # noqa: S314 - our own app's TwiML, not outside input
    for message in root.iter("Message"):
        body = message.findtext("Body") or message.text or ""
        recipient, origin = message.get("to") or sender, message.get("from") or to
        if (recipient, origin) not in network.blocked:
            network.deliver(recipient, origin, body)


def _post_signed(settings: Settings, path: str, form: dict[str, str]) -> TestResponse:
    url = signed_url(settings.public_url, path, lambda: LOCAL_BASE_URL + path)
    token = (settings.auth_tokens or (settings.secret_key,))[0]
    signature = str(RequestValidator(token).compute_signature(url, form))
    client = current_app.test_client()
    return client.post(
        path, data=form, headers={SIGNATURE_HEADER: signature}, base_url=LOCAL_BASE_URL
    )


def _carrier_keywords(network: PhoneNetwork, sender: str, to: str, body: str) -> None:
    """Twilio blocks the pair on an opt-out word, unblocks it on an opt-in word, and answers
    both itself before forwarding the text (SimulatedTelephony honours ``blocked``)."""
    word = body.strip().lower()
    if word in OPT_OUT_WORDS:
        network.blocked.add((sender, to))
        network.deliver(sender, to, CARRIER_STOP_REPLY)
    elif word in OPT_IN_WORDS and (sender, to) in network.blocked:
        network.blocked.discard((sender, to))
        network.deliver(sender, to, CARRIER_START_REPLY)


def _load_line(services: Services) -> Line | None:
    """The default programme's numbers and roster, or None before it exists."""
    with services.sessions() as session:
        query = select(Programme).where(Programme.slug == DEFAULT_SLUG)
        programme = session.scalar(query)
        if programme is None:
            return None
        rows = session.scalars(
            select(Supporter).where(Supporter.programme_id == programme.id).order_by(Supporter.id)
        )
        people = [_person(services, s) for s in rows]
        return Line(
            hotline=programme.hotline_number,
            pool=tuple(p.number for p in programme.pool_numbers),
            supporters=tuple(p for p in people if p is not None),
        )


def _person(services: Services, supporter: Supporter) -> Person | None:
    try:
        phone = supporter_phone(services.vault, supporter)
    except DecryptionError:  # sealed under a data key this instance no longer has
        return None
    return Person(supporter.name, phone, supporter.discipline or "")


def _phone_views(network: PhoneNetwork, line: Line, clinician: str) -> list[PhoneView]:
    views = [_phone_view(network, "clinician", "Clinician", clinician, "", line.hotline)]
    for person in line.supporters:
        view = _phone_view(
            network, "supporter", person.name, person.phone, person.discipline, line.hotline
        )
        views.append(view)
    return views


def _phone_view(
    network: PhoneNetwork, role: str, title: str, number: str, detail: str, hotline: str
) -> PhoneView:
    received = network.inbox(number)
    sent = _outbox().sent_by(number)
    entries = [Entry(False, t.from_, t.body, t.at) for t in received]
    entries += [Entry(True, t.to, t.body, t.at) for t in sent]
    entries.sort(key=lambda e: e.at)
    # A clinician always writes to the hotline; a supporter answers whoever wrote last.
    reply_to = received[-1].from_ if received and role == "supporter" else hotline
    return PhoneView(role, title, number, detail, tuple(entries[-SHOWN_PER_PHONE:]), reply_to)


def _same_origin() -> bool:
    """False when the browser says the form came from another site (Origin, else Referer).
    Clients that send neither (curl, scripts) are let through: this is a development page."""
    source = request.headers.get("Origin") or request.headers.get("Referer")
    if source is None:
        return True
    return urlsplit(source).netloc.lower() == request.host.lower()


def _notice() -> str | None:
    template = NOTICES.get(request.args.get("notice", ""))
    code = request.args.get("code", "")
    return template.format(code=code if code.isdigit() else "?") if template else None


def _back(clinician: str, notice: str, anchor: str | None = None, code: int = 0) -> Response:
    code_arg = str(code) if notice == "refused" else None
    location = url_for(".phones", clinician=clinician, notice=notice, code=code_arg, _anchor=anchor)
    return redirect(location, code=303)


def anchor_of(number: str) -> str:
    """The page's fragment id for ``number``'s phone."""
    return "phone-" + "".join(c for c in number if c.isdigit())


def _form_number(name: str) -> str | None:
    try:
        return normalize(request.form.get(name, ""))
    except InvalidPhoneNumber:
        return None


def _number_or(raw: str | None, default: str) -> str:
    try:
        return normalize(raw or default)
    except InvalidPhoneNumber:
        return default


def _services() -> Services:
    services: Services = current_app.extensions["hotline"]
    return services


def _network(services: Services) -> PhoneNetwork | None:
    telephony = services.telephony
    return telephony.network if isinstance(telephony, SimulatedTelephony) else None


def _outbox() -> Outbox:
    outbox: Outbox = current_app.extensions[OUTBOX]
    return outbox
