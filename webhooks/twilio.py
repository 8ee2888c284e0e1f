"""The Twilio webhooks: check the signature, parse the form, one call into the core, TwiML out."""

from __future__ import annotations

import logging

from flask import Blueprint, Response, abort, current_app, g, request
from sqlalchemy.exc import SQLAlchemyError
from werkzeug.exceptions import BadRequest

from hotline import delivery, textline, voiceline
from hotline.db import Retry
from hotline.programmes import remember_crisis_texts
from hotline.retention import CALL_DELETE_DELAY, INBOUND_DELETE_DELAY
from hotline.services import Services
from hotline.settings import without_password
from hotline.telephony import is_record_sid
from hotline.texting import InboundText, StatusReport
from webhooks import twiml
from webhooks import voice as voice_webhooks
from webhooks.form import checked_sid, required, required_sid
from webhooks.signature import SIGNATURE_HEADER, is_valid, signed_url

log = logging.getLogger(__name__)

bp = Blueprint("twilio", __name__, url_prefix="/twilio")
# What a peer texting a pool number hears while the database is down: their text (to the
# clinician, or ACCEPT, DONE) was not taken. Not the crisis line: that is for clinicians.
PEER_TEXT_NOT_TAKEN = (
    "The peer support line could not take your text just now. "
    "Please send it again in a few minutes."
)
# /twilio/voice/...: nested, so the signature check and error handler below apply to it too.
bp.register_blueprint(voice_webhooks.bp)


def _services() -> Services:
    services: Services = current_app.extensions["hotline"]
    return services


@bp.before_request
def require_signature() -> None:
    """403 for a missing or wrong signature, before anything is parsed or stored."""
    settings = _services().settings
    url = signed_url(settings.public_url, request.full_path, lambda: request.url)
    tokens = settings.auth_tokens or (settings.secret_key,)  # simulator signs with the secret key
    if not is_valid(url, request.form, request.headers.get(SIGNATURE_HEADER), tokens):
        # The URL, never the form: an operator whose HOTLINE_PUBLIC_URL is not the URL set at
        # Twilio sees every webhook refused, and needs the two side by side.
        log.warning(
            "rejected a Twilio webhook with a missing or wrong signature, checked for %s "
            "(HOTLINE_PUBLIC_URL must be the base of the URL set at Twilio)",
            without_password(url),
        )
        abort(403)


@bp.before_app_request
def refuse_unsigned_strays() -> None:
    """A /twilio/ path no webhook serves, or a method it does not take, is refused unsigned
    too (403, as every /twilio/ path is); signed, it gets its 404 or 405."""
    if request.blueprint is None and request.path.startswith(f"{bp.url_prefix}/"):
        require_signature()


@bp.after_request
def reread_crisis_sentences(response: Response) -> Response:
    """Every few minutes, once the answer has gone, read every number's crisis sentence again,
    so an edit made through another process reaches this one before an outage needs it."""
    services = _services()
    if not g.get("database_down") and services.crisis_texts.due(services.clock()):
        response.call_on_close(lambda: remember_crisis_texts(services))
    return response


@bp.post("/sms")
def sms() -> Response:
    services = _services()
    status_url = services.callback_url("/twilio/status") or "/twilio/status"
    return twiml.messages(textline.handle_text(services, _inbound_text()), status_url)


@bp.post("/voice")
def voice() -> Response:
    return voice_webhooks.inbound(_services())


@bp.post("/status")
def status() -> Response:
    sid = request.form.get("MessageSid") or request.form.get("CallSid")
    state = request.form.get("MessageStatus") or request.form.get("CallStatus")
    if not sid or not state:
        raise BadRequest("a status callback needs MessageSid/CallSid and MessageStatus/CallStatus")
    checked_sid(sid, "MessageSid" if request.form.get("MessageSid") else "CallSid")
    code = request.form.get("ErrorCode", "")
    offer = _count(request.args.get("offer", ""))  # an offer's text (OutboundText.offering)
    ask = _count(request.args.get("ask", ""))  # which ask of it (OutboundText.asking)
    notice = _count(request.args.get("notice", ""))  # a notice's text (OutboundText.noticing)
    message = bool(request.form.get("MessageSid"))
    to = (request.form.get("To") or None) if message else None  # whose phone: numbers change
    from_ = (request.form.get("From") or None) if message else None  # ours: programmes renumber
    report = StatusReport(
        sid, state, _count(code), offer=offer, ask=ask, notice=notice, to=to, from_=from_
    )
    if message:
        delivery.handle_status(_services(), report)
    else:
        voiceline.handle_call_status(_services(), report)
    return Response(status=204)


@bp.errorhandler(SQLAlchemyError)
@bp.errorhandler(Retry)  # rows kept changing under the transaction, attempt after attempt
def database_unavailable(error: Exception) -> Response:
    """The database is down: never a 500 to Twilio; the caller still hears the crisis line."""
    log.error("database unavailable while answering %s: %s", request.path, type(error).__name__)
    g.database_down = True
    services = _services()
    # The called number's programme's own sentence, as last read (another hospital's crisis
    # line may not be 988); the environment's for a number this process has not served yet.
    crisis = services.crisis_texts.get(request.form.get("To", ""), services.settings.crisis_text)
    sorry = "We can't connect you to a peer right now. Please try again in a few minutes."
    if request.path.endswith("/status"):
        # Acknowledged, not refused: Twilio does not retry a status callback, and one answered
        # 5xx becomes an 11200 alert in its debugger that keeps the request, the clinician's
        # number included, where no deletion reaches. The sweeper asks about the call later.
        answer = Response(status=204)
    elif request.path in voice_webhooks.SUPPORTER_LEG:
        answer = twiml.say_and_hang_up(voice_webhooks.LINE_DOWN)  # not a caller: no crisis line
    elif request.path.startswith("/twilio/voice"):
        answer = twiml.say_and_hang_up(sorry, crisis)
    else:
        status_url = services.callback_url("/twilio/status") or "/twilio/status"
        to_peers = request.form.get("To", "") in services.crisis_texts.peer_numbers
        answer = twiml.plain_reply(
            PEER_TEXT_NOT_TAKEN if to_peers else f"{sorry} {crisis}", status_url
        )
    # No row can queue the record's deletion: Redis holds its SID (never a person), asked
    # once the answer is on its way, so a hung Redis cannot delay the crisis line.
    sid = request.form.get("MessageSid") or request.form.get("CallSid") or ""
    if is_record_sid(sid):
        wait = CALL_DELETE_DELAY if sid.startswith("CA") else INBOUND_DELETE_DELAY
        at = services.clock() + wait
        answer.call_on_close(lambda: services.wakeups.delete_record_later(sid, at))
    return answer


def _inbound_text() -> InboundText:
    media = request.form.get("NumMedia", "0")
    sid = required_sid("MessageSid")
    return InboundText(
        sid=sid,
        from_=request.form.get("From", ""),
        to=required("To"),
        body=request.form.get("Body", ""),
        num_media=_count(media) or 0,
        opt_out_type=request.form.get("OptOutType", ""),
    )


def _count(raw: str) -> int | None:
    """A whole number Twilio sends (ErrorCode, NumMedia), or None; ASCII digits only: "²" is a
    digit to ``str.isdigit`` but not to ``int``."""
    return int(raw) if raw.isascii() and raw.isdigit() else None
