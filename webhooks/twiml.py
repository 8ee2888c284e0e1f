"""TwiML rendering: the only place that turns outcomes into Twilio's XML."""

from __future__ import annotations

from flask import Response
from twilio.twiml.messaging_response import MessagingResponse
from twilio.twiml.voice_response import VoiceResponse

from hotline.speech import digit_by_digit
from hotline.texting import TextReply

TWILIO_MAX_BODY = 1600  # Twilio refuses longer bodies (error 21617)
# XML 1.0 cannot carry C0 controls other than tab, newline and return, surrogates, U+FFFE or
# U+FFFF; one of them in a relayed text would make Twilio refuse the whole reply (error 12100),
# so the relay, the offer and every other message in it would be lost.
_NOT_XML = dict.fromkeys(
    [*range(0x09), 0x0B, 0x0C, *range(0x0E, 0x20), *range(0xD800, 0xE000), 0xFFFE, 0xFFFF]
)


def messages(reply: TextReply, status_url: str) -> Response:
    """Each text as ``<Message to= from= action=>``; the action is the status callback, so every
    relayed message's record can be deleted at Twilio once it is delivered. A text left blank
    once made XML-safe is dropped: Twilio refuses an empty ``<Message>``."""
    response = MessagingResponse()
    for text in reply.texts:
        body = body_text(text.body)
        if body.strip():
            action = text.status_callback(status_url)
            response.message(body, to=text.to, from_=text.from_, action=action)
    return xml(str(response))


def spoken(text: str) -> str:
    """``text`` as a ``<Say>`` can carry it: XML-safe (one control character would make Twilio
    refuse the whole answer, error 12100: every caller would hear an application error), and
    its phone numbers read digit by digit (speech.digit_by_digit), the crisis line's too when
    the database is down."""
    return digit_by_digit(text.translate(_NOT_XML))


def body_text(body: str) -> str:
    """``body`` as a ``<Message>`` can carry it: XML-safe and within Twilio's length limit."""
    return body.translate(_NOT_XML)[:TWILIO_MAX_BODY]


def empty() -> Response:
    return xml(str(MessagingResponse()))


def say_and_hang_up(*sentences: str) -> Response:
    response = VoiceResponse()
    for sentence in sentences:
        response.say(spoken(sentence))
    response.hangup()
    return xml(str(response))


def xml(body: str, status: int = 200) -> Response:
    return Response(body, status=status, mimetype="text/xml")


def plain_reply(body: str, status_url: str | None = None) -> Response:
    """A reply to the sender from the number they wrote to (with a status callback to
    ``status_url``, so its record at Twilio can be deleted once delivered)."""
    response = MessagingResponse()
    if status_url:
        response.message(body_text(body), action=status_url)
    else:
        response.message(body_text(body))
    return xml(str(response))
