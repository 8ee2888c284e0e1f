"""TwiML rendering: the only place that turns outcomes into Twilio's XML."""

from __future__ import annotations

from flask import Response
from twilio.twiml.messaging_response import MessagingResponse
from twilio.twiml.voice_response import VoiceResponse

from hotline.texting import TextReply

TWILIO_MAX_BODY = 1600  # Twilio refuses longer bodies (error 21617)


def messages(reply: TextReply, status_url: str) -> Response:
    """Each text as ``<Message to= from= action=>``; the action is the status callback, so every
    relayed message's record can be deleted at Twilio once it is delivered."""
    response = MessagingResponse()
    for text in reply.texts:
        response.message(
            text.body[:TWILIO_MAX_BODY], to=text.to, from_=text.from_, action=status_url
        )
    return xml(str(response))


def empty() -> Response:
    return xml(str(MessagingResponse()))


def say_and_hang_up(*sentences: str) -> Response:
    response = VoiceResponse()
    for sentence in sentences:
        response.say(sentence)
    response.hangup()
    return xml(str(response))


def xml(body: str, status: int = 200) -> Response:
    return Response(body, status=status, mimetype="text/xml")


def plain_reply(body: str) -> Response:
    """A reply to the sender from the number they wrote to."""
    response = MessagingResponse()
    response.message(body[:TWILIO_MAX_BODY])
    return xml(str(response))
