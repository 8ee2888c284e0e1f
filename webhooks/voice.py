"""The voice webhooks under ``/twilio/voice``: parse the form, one call into the core, TwiML out.

This blueprint is nested in ``webhooks.twilio.bp``, so that blueprint's signature check and
database error handler run for every path here. ``render`` is the only place voice replies
become TwiML; it has no way to emit ``<Record>`` or a ``record`` attribute.
"""

from __future__ import annotations

from urllib.parse import urlencode

from flask import Blueprint, Response, current_app, request
from twilio.twiml import TwiML
from twilio.twiml.voice_response import VoiceResponse
from werkzeug.exceptions import BadRequest

from hotline import voiceline
from hotline.calling import (
    Dial,
    DialResult,
    Gather,
    Hangup,
    InboundCall,
    Pause,
    Redirect,
    Route,
    Say,
    Verb,
    VoiceReply,
    vouched_for,
)
from hotline.services import Services
from webhooks import twiml
from webhooks.form import optional_sid, required, required_sid

bp = Blueprint("voice", __name__, url_prefix="/voice")

PREFIX = "/twilio/voice"
STATUS_PATH = "/twilio/status"  # message and call status callbacks (webhooks.twilio.status)
# Paths answered on a supporter's leg: if the database is down there, the supporter hears this
# (the crisis sentence is for callers).
SUPPORTER_LEG = frozenset(
    f"{PREFIX}/{step}" for step in ("screen", "pickup", "through", "peerscreen", "peerpickup")
)
LINE_DOWN = "The peer support line can't connect this call right now. Thank you."


def _services() -> Services:
    services: Services = current_app.extensions["hotline"]
    return services


def inbound(services: Services) -> Response:
    """``POST /twilio/voice``: every inbound call (registered on the parent blueprint)."""
    call = InboundCall(
        sid=required_sid("CallSid"),
        from_=request.form.get("From", ""),
        to=required("To"),
        vouched=vouched_for(request.form.get("StirVerstat")),
    )
    return render(voiceline.answer_call(services, call))


@bp.post("/start")
def start() -> Response:
    digits = request.form.get("Digits", "")
    return render(voiceline.start(_services(), required_sid("CallSid"), digits))


@bp.post("/next")
def next_ring() -> Response:
    return render(voiceline.dial_result(_services(), _dial_result(_ring())))


@bp.post("/screen")
def screen() -> Response:
    return render(voiceline.screen(_services(), _ring()))


@bp.post("/pickup")
def pick_up() -> Response:
    return render(voiceline.pick_up(_services(), _ring(), request.form.get("Digits", "")))


@bp.post("/peer")
def peer() -> Response:
    return render(voiceline.peer_result(_services(), _dial_result(_arg("call"))))


@bp.post("/peerscreen")
def peer_screen() -> Response:
    return render(voiceline.peer_screen(_services(), _arg("call")))


@bp.post("/peerpickup")
def peer_pick_up() -> Response:
    digits = request.form.get("Digits", "")
    return render(voiceline.peer_pick_up(_services(), _arg("call"), digits))


@bp.post("/through")
def through() -> Response:
    dial_status = request.form.get("DialCallStatus", "")
    return render(voiceline.through_result(dial_status, _bridged()))


@bp.post("/throughscreen")
def through_screen() -> Response:
    return render(voiceline.through_screen())


@bp.post("/throughpickup")
def through_pick_up() -> Response:
    return render(voiceline.through_pick_up(request.form.get("Digits", "")))


def render(answer: VoiceReply) -> Response:
    """The reply as TwiML; an empty reply is ``<Response/>`` (on a screened leg: bridge)."""
    response = VoiceResponse()
    for verb in answer.verbs:
        _add(response, verb)
    return twiml.xml(str(response))


def _add(parent: TwiML, verb: Verb) -> None:
    match verb:
        case Say(text=text):
            parent.say(twiml.spoken(text))
        case Pause(seconds=seconds):
            parent.pause(length=seconds)
        case Gather():
            gather = parent.gather(
                action=_url(verb.action),
                method="POST",
                num_digits=verb.num_digits,
                timeout=verb.timeout,
            )
            for inner in verb.prompt:
                _add(gather, inner)
        case Dial():
            _dial(parent, verb)
        case Redirect(to=to):
            parent.redirect(_url(to), method="POST")
        case Hangup():
            parent.hangup()


def _dial(parent: TwiML, verb: Dial) -> None:
    # callerId is required by Dial itself: without it the callee would see the caller's number.
    dial = parent.dial(
        caller_id=verb.caller_id,
        timeout=verb.timeout,
        answer_on_bridge=verb.answer_on_bridge,
        action=_url(verb.action) if verb.action else None,
        method="POST" if verb.action else None,
    )
    screen_url = _url(verb.screen) if verb.screen else None
    # The dialled leg reports its end to the status callback, even when the caller hangs up
    # mid-ring or the dial action never comes: that deletes its record at Twilio.
    dial.number(
        verb.number,
        url=screen_url,
        method="POST" if screen_url else None,
        status_callback=f"{_base()}{STATUS_PATH}",
        status_callback_event="completed",
        status_callback_method="POST",
    )


def _url(target: Route) -> str:
    """An absolute URL of a voice step (see ``_base``)."""
    query = f"?{urlencode(target.params)}" if target.params else ""
    return f"{_base()}{PREFIX}/{target.name}{query}"


def _base() -> str:
    """The configured public base URL (what Twilio signs), else this request's."""
    return _services().settings.public_url or request.host_url.rstrip("/")


def _dial_result(ring: int) -> DialResult:
    """What Twilio posts to a ``<Dial action>`` (``ring``: the ring or call it was for)."""
    return DialResult(
        call_sid=required_sid("CallSid"),
        ring=ring,
        call_status=request.form.get("CallStatus", ""),
        dial_status=request.form.get("DialCallStatus", ""),
        bridged=_bridged(),
        dial_call_sid=optional_sid("DialCallSid"),
    )


def _bridged() -> bool:
    """A dial action's ``DialBridged``: whether the dialled leg was connected to the caller."""
    return request.form.get("DialBridged", "").lower() == "true"


def _ring() -> int:
    return _arg("ring")


def _arg(name: str) -> int:
    value = request.args.get(name, type=int)
    if value is None:
        raise BadRequest(f"missing {name}")
    return value
