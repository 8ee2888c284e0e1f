"""A fake Twilio REST API served for real on loopback, for tests of the real twilio client.

In the spirit of GoAlert's ``mocktwilio``: ``TwilioTelephony(sid, token, base_url=fake.base_url)``
talks HTTP to it through the whole twilio-python stack (auth, form encoding, error mapping).
It answers Messages and Calls, records what it was asked, returns Twilio's error shapes on demand
and posts signed status callbacks back. It never logs or prints a message body or a number.

Calls the phone network carries without the REST API (an inbound call, each leg a ``<Dial>``
rings) are told to it by whoever plays the network (``tests.kit.calls``): ``carry_call`` when
one starts, ``end_call`` when it ends. A call record can be deleted only once it is complete,
as at Twilio (error 20009 before that).

Texts a phone sends the line pass through it as at Twilio (``text_in``, which the harness's
``Hotline.sms`` calls before the webhook): an opt-out word blocks texts from that number of ours
to that phone, an API send then failing with 21610 and a webhook reply's ``<Message>`` being
dropped (``reply``; both kept in ``refused``), until an opt-in word lifts it. Calls are not
blocked. Twilio's own answer to the word is not modelled as a text to the phone.
"""

from __future__ import annotations

import copy
import hmac
import json
import re
import secrets
import threading
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from types import TracebackType
from typing import Any
from urllib.parse import urlencode
from wsgiref.types import StartResponse, WSGIEnvironment

import requests
from werkzeug.exceptions import HTTPException, MethodNotAllowed
from werkzeug.routing import Map, Rule
from werkzeug.serving import BaseWSGIServer, WSGIRequestHandler, make_server
from werkzeug.wrappers import Request, Response

from tests.kit.signing import Deliver, signed_headers
from tests.kit.sms import segments as num_segments  # what Twilio bills; tests import it here

ACCOUNT_SID = "AC" + "0123456789abcdef" * 2
AUTH_TOKEN = "fake-twilio-auth-token-0123456789"
API_VERSION = "2010-04-01"
_API = f"/{API_VERSION}/Accounts/<account_sid>"
_ROUTES = Map(
    [
        Rule(f"{_API}/Messages.json", endpoint="create_message", methods=["POST"]),
        Rule(f"{_API}/Messages.json", endpoint="list_messages", methods=["GET"]),
        Rule(f"{_API}/Calls.json", endpoint="list_calls", methods=["GET"]),
        Rule(f"{_API}/Messages/<sid>.json", endpoint="fetch_message", methods=["GET"]),
        Rule(f"{_API}/Messages/<sid>.json", endpoint="delete_message", methods=["DELETE"]),
        Rule(f"{_API}/Calls.json", endpoint="create_call", methods=["POST"]),
        Rule(f"{_API}/Calls/<sid>.json", endpoint="delete_call", methods=["DELETE"]),
        Rule(f"{_API}/Calls/<sid>.json", endpoint="fetch_call", methods=["GET"]),
        Rule(f"{_API}/IncomingPhoneNumbers.json", endpoint="list_numbers", methods=["GET"]),
        Rule(f"{_API}/IncomingPhoneNumbers/<sid>.json", endpoint="update_number", methods=["POST"]),
    ]
)
_E164 = re.compile(r"\+[1-9][0-9]{6,14}")
ERROR_MESSAGES = {
    20003: "Authenticate",
    20004: "Method not allowed",
    20009: "Cannot delete this resource before it is complete",
    20404: "The requested resource was not found",
    20429: "Too Many Requests",
    20500: "Internal Server Error",
    20503: "Service Unavailable",
    21211: "The 'To' number is not a valid phone number.",
    21212: "The 'From' number is not a valid phone number, shortcode, or alphanumeric sender ID.",
    21602: "Message body is required.",
    21604: "A 'To' phone number is required.",
    21606: "The 'From' phone number provided is not a valid message-capable Twilio phone number",
    21610: "Attempt to send to unsubscribed recipient",
    21617: "The concatenated message body exceeds the 1600 character limit.",
    30003: "Unreachable destination handset",
}
_NULL_MESSAGE_FIELDS = dict.fromkeys(
    ["date_sent", "error_code", "error_message", "messaging_service_sid", "price"]
)
# An IncomingPhoneNumber's settings as the API's update takes them, and as its JSON names them.
NUMBER_SETTINGS = {
    "SmsUrl": "sms_url",
    "SmsMethod": "sms_method",
    "SmsApplicationSid": "sms_application_sid",
    "VoiceUrl": "voice_url",
    "VoiceMethod": "voice_method",
    "VoiceApplicationSid": "voice_application_sid",
    "StatusCallback": "status_callback",
    "StatusCallbackMethod": "status_callback_method",
}
_NULL_CALL_FIELDS = dict.fromkeys(["start_time", "end_time", "duration", "price", "answered_by"])
FINAL_CALL_STATUSES = frozenset({"completed", "busy", "failed", "no-answer", "canceled"})
# Twilio's opt-out words (REVOKE and OPTOUT as the line's numbers are set up) and opt-in words,
# matched only as the whole text, any case, whitespace around it trimmed: "Stop." or "STOP
# PLEASE" blocks nothing. Kept here, not taken from the product: this is Twilio's side.
OPT_OUT_WORDS = frozenset(
    {"stop", "stopall", "unsubscribe", "cancel", "end", "quit", "revoke", "optout"}
)
OPT_IN_WORDS = frozenset({"start", "yes", "unstop"})


@dataclass(frozen=True)
class Fault:
    """An injected answer: an error (``status``, ``code``) or, with ``status`` None, the normal
    answer; either is sent ``hang`` seconds late (after the request took effect, as a slow Twilio
    would). ``problem`` uses the RFC 9457 error shape of Twilio's newer APIs."""

    status: int | None
    code: int | None = None
    hang: float = 0.0
    problem: bool = False


class _QuietHandler(WSGIRequestHandler):
    """werkzeug's handler without the access log (its request lines carry message SIDs)."""

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        pass


class FakeTwilio:
    """Twilio's Messages and Calls REST endpoints on ``127.0.0.1`` (random port).

    Serves one request at a time: a hanging answer holds later requests until it ends or
    ``stop()`` cuts it short. Records are snapshots: ``messages``, ``calls``, ``carried`` and
    ``deleted`` return copies, safe to read while the server thread runs.
    """

    def __init__(self, account_sid: str = ACCOUNT_SID, auth_token: str = AUTH_TOKEN) -> None:
        self.account_sid = account_sid
        self.auth_token = auth_token
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._messages: list[dict[str, Any]] = []
        self._sent: list[dict[str, Any]] = []  # every text accepted, deleted or not
        self._calls: list[dict[str, Any]] = []
        self._carried: list[dict[str, Any]] = []
        self._deleted: list[str] = []
        self._numbers: list[dict[str, str]] = []  # the account's own phone numbers
        self._opted_out: set[tuple[str, str]] = set()  # (our number, their phone)
        self._refused: list[dict[str, Any]] = []  # texts Twilio would not send: 21610
        self._faults: deque[Fault] = deque()
        self._faults_for: dict[str, Fault] = {}
        self._faults_from: dict[str, Fault] = {}
        self._server: BaseWSGIServer | None = None
        self._thread: threading.Thread | None = None
        self._endpoints: dict[str, Callable[..., Response]] = {
            "create_message": self._create_message,
            "fetch_message": self._fetch_message,
            "delete_message": self._delete_message,
            "create_call": self._create_call,
            "delete_call": self._delete_call,
            "fetch_call": self._fetch_call,
            "list_messages": self._list_messages,
            "list_calls": self._list_calls,
            "list_numbers": self._list_numbers,
            "update_number": self._update_number,
        }
        self._list_faults: deque[Fault] = deque()

    # Lifecycle

    def start(self) -> FakeTwilio:
        """Listen on a free loopback port and serve from a daemon thread; return self."""
        if self._server is not None:
            raise RuntimeError("FakeTwilio is already running")
        self._stopping.clear()
        server = make_server("127.0.0.1", 0, self, request_handler=_QuietHandler)
        self._server = server
        self._thread = threading.Thread(
            target=server.serve_forever,
            kwargs={"poll_interval": 0.05},
            name="fake-twilio",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Cut any hanging answer short, stop serving and close the socket. Idempotent."""
        server, thread = self._server, self._thread
        if server is None or thread is None:
            return
        self._stopping.set()
        server.shutdown()  # serve_forever closes the listening socket on its way out
        thread.join()
        self._server = self._thread = None

    @property
    def base_url(self) -> str:
        """``http://127.0.0.1:PORT``, for ``TWILIO_API_BASE_URL``."""
        if self._server is None:
            raise RuntimeError("FakeTwilio is not running")
        return f"http://127.0.0.1:{self._server.server_port}"

    def __enter__(self) -> FakeTwilio:
        return self.start()

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    # What the fake was asked

    @property
    def messages(self) -> list[dict[str, Any]]:
        """Accepted texts in order: sid, to, from_, body, status_callback, status, params."""
        with self._lock:
            return copy.deepcopy(self._messages)

    @property
    def sent(self) -> list[dict[str, Any]]:
        """Every text accepted, in order, including those whose record was deleted since (the
        phone got them all the same)."""
        with self._lock:
            return copy.deepcopy(self._sent)

    @property
    def calls(self) -> list[dict[str, Any]]:
        """Accepted calls in order: sid, to, from_, url, status_callback, record, params."""
        with self._lock:
            return copy.deepcopy(self._calls)

    @property
    def carried(self) -> list[dict[str, Any]]:
        """Calls the network carried (``carry_call``), not yet deleted: sid, to, from_,
        direction, parent, status."""
        with self._lock:
            return copy.deepcopy(self._carried)

    @property
    def deleted(self) -> list[str]:
        """SIDs of the message and call records deleted, in order."""
        with self._lock:
            return list(self._deleted)

    @property
    def refused(self) -> list[dict[str, Any]]:
        """Texts to a phone that had texted an opt-out word to their number, refused with
        21610 and never delivered, in order: to, from_, body, code and ``via`` (``api`` for a
        Messages create, ``twiml`` for a ``<Message>`` in a webhook's reply)."""
        with self._lock:
            return copy.deepcopy(self._refused)

    # Opt-out words (SMS STOP filtering), at the edge

    def text_in(self, from_: str, to: str, body: str, opt_out_type: str | None = None) -> None:
        """A text from the phone ``from_`` reaches our number ``to``. Twilio acts on it before
        forwarding it to the webhook: an opt-out word blocks texts from ``to`` to ``from_``, an
        opt-in word lifts that block; any other text leaves it as it is. ``opt_out_type`` is
        the ``OptOutType`` Twilio forwards when Advanced Opt-Out matched a word of its own
        ("ARRET"): ``STOP`` or ``START`` then decides."""
        word = body.strip().lower()
        with self._lock:
            if opt_out_type == "STOP" or word in OPT_OUT_WORDS:
                self._opted_out.add((to, from_))
            elif opt_out_type == "START" or word in OPT_IN_WORDS:
                self._opted_out.discard((to, from_))

    def opted_out(self, ours: str, theirs: str) -> bool:
        """Whether Twilio refuses texts from our number ``ours`` to the phone ``theirs``."""
        with self._lock:
            return (ours, theirs) in self._opted_out

    def reply(self, from_: str, to: str, body: str) -> bool:
        """A ``<Message>`` in a webhook's reply, from our number ``from_`` to ``to``: whether
        it reaches the phone. Twilio drops one to a phone that opted out of that number
        (21610), kept in ``refused``."""
        with self._lock:
            if (from_, to) not in self._opted_out:
                return True
            self._refused.append(_refusal(to, from_, body, "twiml"))
            return False

    # Records Twilio keeps without a REST create

    def own_number(self, number: str, **settings: str) -> str:
        """Make ``number`` one of the account's numbers, set up with ``settings`` (``sms_url``
        and the other names of ``NUMBER_SETTINGS``; unset ones are empty, methods POST);
        return its SID."""
        unknown = settings.keys() - set(NUMBER_SETTINGS.values())
        if unknown:
            raise ValueError(f"no such number setting: {sorted(unknown)}")
        record = dict.fromkeys(NUMBER_SETTINGS.values(), "") | {
            "sms_method": "POST",
            "voice_method": "POST",
            "status_callback_method": "POST",
        }
        record |= settings | {"sid": _new_sid("PN"), "phone_number": number}
        with self._lock:
            self._numbers.append(record)
        return record["sid"]

    @property
    def numbers(self) -> list[dict[str, str]]:
        """The account's numbers with their settings (copies)."""
        with self._lock:
            return copy.deepcopy(self._numbers)

    def keep_message(
        self,
        from_: str,
        to: str,
        body: str,
        sent_at: datetime,
        status: str = "received",
        sent: bool = True,
    ) -> str:
        """A message record Twilio keeps though no REST create made it: an inbound text
        (``received``), or one a webhook's ``<Message>`` sent (``delivered``), created at
        ``sent_at``; one Twilio never sent (``failed``, ``sent=False``) has no ``date_sent``.
        Its SID."""
        sid = _new_sid("SM")
        message = {
            "sid": sid,
            "to": to,
            "from_": from_,
            "body": body,
            "status_callback": None,
            "status": status,
            "date_created": format_datetime(sent_at),
            "date_sent": sent_at if sent else None,
            "params": {},
        }
        with self._lock:
            self._messages.append(message)
        return sid

    # Calls the phone network carries

    def carry_call(
        self,
        sid: str,
        from_: str,
        to: str,
        direction: str,
        parent: str | None = None,
        started_at: datetime | None = None,
    ) -> None:
        """A call Twilio handles without the REST API starts: an ``inbound`` call, or an
        ``outbound-dial`` leg of ``parent``. Its record is kept (and deletable) from now on."""
        started = started_at or datetime.now(UTC)
        record = {"sid": sid, "to": to, "from_": from_, "direction": direction, "parent": parent}
        record |= {"date_created": format_datetime(started), "start_time": started}
        with self._lock:
            self._carried.append(record | {"status": "in-progress", "complete_at": None})

    def end_call(self, sid: str, status: str = "completed", settle: float = 0.0) -> None:
        """Call ``sid`` ended with ``status``; Twilio finishes its record ``settle`` seconds
        later, and refuses to delete it before then (20009). Raises LookupError if unknown."""
        assert status in FINAL_CALL_STATUSES, status
        with self._lock:
            call = self._find_call(sid)
            if call is None:
                raise LookupError(f"no call {sid}")
            call["status"] = status
            call["complete_at"] = datetime.now(UTC) + timedelta(seconds=settle)

    # Fault injection

    def fail_next(
        self,
        n: int = 1,
        status: int = 400,
        code: int | None = 21610,
        hang: float = 0.0,
        problem: bool = False,
    ) -> None:
        """Answer the next ``n`` authenticated API requests with this error, whatever they ask."""
        with self._lock:
            self._faults.extend([Fault(status, code, hang, problem)] * n)

    def hang_next(self, seconds: float, n: int = 1) -> None:
        """Carry out the next ``n`` requests but answer each only ``seconds`` later."""
        with self._lock:
            self._faults.extend([Fault(None, None, seconds)] * n)

    def fail_for(self, to: str, code: int | None = 21610, status: int = 400) -> None:
        """Refuse every text or call to ``to`` with this error until ``clear_faults()``."""
        with self._lock:
            self._faults_for[to] = Fault(status, code)

    def fail_from(self, from_: str, code: int | None = 21606, status: int = 400) -> None:
        """Refuse every text or call from ``from_`` (one of our numbers, misconfigured) with
        this error until ``clear_faults()``."""
        with self._lock:
            self._faults_from[from_] = Fault(status, code)

    def fail_next_list(self, n: int = 1, status: int = 503, code: int | None = 20503) -> None:
        """Answer the next ``n`` list requests (Messages or Calls) with this error. Lists take
        no ``fail_next`` fault: those are meant for the texts, calls and deletions under test."""
        with self._lock:
            self._list_faults.extend([Fault(status, code)] * n)

    def clear_faults(self) -> None:
        """Drop every pending ``fail_next``/``hang_next`` and every ``fail_for``/``fail_from``
        (not a phone's opt-out: that is hers, lifted only by her opt-in word)."""
        with self._lock:
            self._faults.clear()
            self._faults_for.clear()
            self._faults_from.clear()
            self._list_faults.clear()

    # Status callbacks

    def post_status(
        self,
        message_sid: str,
        status: str,
        error_code: int | None = None,
        deliver: Deliver | None = None,
    ) -> int:
        """POST a signed status callback for ``message_sid`` to its StatusCallback URL.

        Records ``status`` on the message first. ``deliver(url, params, headers)`` sends it
        (e.g. ``tests.kit.signing.deliver_to(flask_client)``); the default is a real HTTP POST.
        Returns the HTTP status the receiver answered. Raises LookupError for an unknown SID and
        ValueError when the message was sent without a StatusCallback.
        """
        params, url = self._status_params(message_sid, status, error_code)
        headers = signed_headers(url, params, self.auth_token)
        return (deliver or _http_deliver)(url, params, headers)

    def _status_params(
        self, message_sid: str, status: str, error_code: int | None
    ) -> tuple[dict[str, str], str]:
        with self._lock:
            message = self._find_message(message_sid)
            if message is None:
                raise LookupError(f"no message {message_sid}")
            if not message["status_callback"]:
                raise ValueError(f"message {message_sid} has no StatusCallback")
            message["status"] = status
            params = {
                "MessageSid": message_sid,
                "SmsSid": message_sid,
                "MessageStatus": status,
                "SmsStatus": status,
                "AccountSid": self.account_sid,
                "To": message["to"],
                "From": message["from_"],
                "ApiVersion": API_VERSION,
            }
            if error_code is not None:
                params["ErrorCode"] = str(error_code)
            return params, str(message["status_callback"])

    # The WSGI application

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        response = self._respond(Request(environ))
        return response(environ, start_response)

    def _respond(self, request: Request) -> Response:
        """Authenticate and route the request, then answer it."""
        if not self._authenticated(request):
            return _error(401, 20003)
        try:
            endpoint, args = _ROUTES.bind_to_environ(request.environ).match()
        except MethodNotAllowed:
            return _error(405, 20004)
        except HTTPException:
            return _error(404, 20404)
        params = dict(args)
        if params.pop("account_sid") != self.account_sid:
            return _error(401, 20003)
        return self._answer(request, endpoint, params)

    def _answer(self, request: Request, endpoint: str, params: dict[str, Any]) -> Response:
        """Run ``endpoint`` unless a fault answers instead; a hang comes after the work is done."""
        if endpoint.startswith("list_"):
            with self._lock:
                fault = self._list_faults.popleft() if self._list_faults else Fault(None)
        else:
            form = request.form
            fault = self._take_fault(form.get("To"), form.get("From")) or Fault(None)
        if fault.status is None:
            response = self._endpoints[endpoint](request, **params)
        else:
            response = _error(fault.status, fault.code, fault.problem)
        if fault.hang:
            self._stopping.wait(fault.hang)
        return response

    def _authenticated(self, request: Request) -> bool:
        auth = request.authorization
        if auth is None or auth.type != "basic":
            return False
        user_ok = hmac.compare_digest(auth.username or "", self.account_sid)
        return hmac.compare_digest(auth.password or "", self.auth_token) and user_ok

    def _take_fault(self, to: str | None, from_: str | None) -> Fault | None:
        with self._lock:
            if self._faults:
                return self._faults.popleft()
            return self._faults_for.get(to or "") or self._faults_from.get(from_ or "")

    def _create_message(self, request: Request) -> Response:
        form = request.form.to_dict()
        refusal = _refuse_message(form)
        if refusal is not None:
            return _error(400, refusal)
        to, from_ = form["To"], form.get("From", "")
        with self._lock:
            if (from_, to) in self._opted_out:  # the phone texted an opt-out word to From
                self._refused.append(_refusal(to, from_, form["Body"], "api"))
                return _error(400, 21610)
        message = {
            "sid": _new_sid("SM"),
            "to": form["To"],
            "from_": form.get("From", ""),
            "body": form["Body"],
            "status_callback": form.get("StatusCallback"),
            "status": "queued",
            "date_created": _now(),
            "params": form,
        }
        with self._lock:
            self._messages.append(message)
            self._sent.append(message)
            return _json(201, self._message_json(message))

    def _fetch_message(self, request: Request, sid: str) -> Response:
        with self._lock:
            message = self._find_message(sid)
            if message is None:
                return _error(404, 20404)
            return _json(200, self._message_json(message))

    def _delete_message(self, request: Request, sid: str) -> Response:
        with self._lock:
            message = self._find_message(sid)
            if message is None:
                return _error(404, 20404)
            self._messages.remove(message)
            self._deleted.append(sid)
        return Response(status=204)

    def _create_call(self, request: Request) -> Response:
        form = request.form.to_dict()
        if not _E164.fullmatch(form.get("To", "")):
            return _error(400, 21211)
        call = {
            "sid": _new_sid("CA"),
            "to": form["To"],
            "from_": form.get("From", ""),
            "url": form.get("Url"),
            "status_callback": form.get("StatusCallback"),
            "record": form.get("Record"),
            "status": "queued",
            "date_created": _now(),
            "params": form,
        }
        with self._lock:
            self._calls.append(call)
        return _json(201, self._call_json(call))

    def _fetch_call(self, request: Request, sid: str) -> Response:
        with self._lock:
            call = self._find_call(sid)
            if call is None:
                return _error(404, 20404)
            return _json(200, self._call_json(call))

    def _delete_call(self, request: Request, sid: str) -> Response:
        with self._lock:
            call = self._find_call(sid)
            if call is None:
                return _error(404, 20404)
            complete_at = call.get("complete_at")
            if complete_at is None or datetime.now(UTC) < complete_at:
                return _error(400, 20009)  # in progress, or not yet processed
            for records in (self._calls, self._carried):
                if call in records:
                    records.remove(call)
            self._deleted.append(sid)
        return Response(status=204)

    def _list_messages(self, request: Request) -> Response:
        with self._lock:
            return self._list(request, "Messages", self._messages, self._message_json)

    def _list_calls(self, request: Request) -> Response:
        with self._lock:
            return self._list(request, "Calls", [*self._calls, *self._carried], self._call_json)

    def _list_numbers(self, request: Request) -> Response:
        """The account's numbers; ``PhoneNumber`` matches part of a number, as at Twilio."""
        wanted = request.args.get("PhoneNumber", "")
        with self._lock:
            found = [dict(n) for n in self._numbers if wanted in n["phone_number"]]
        uri = f"/{API_VERSION}/Accounts/{self.account_sid}/IncomingPhoneNumbers.json"
        numbers = [self._number_json(n) for n in found]
        body = {"page": 0, "page_size": 50, "uri": uri, "next_page_uri": None}
        return _json(200, {"incoming_phone_numbers": numbers} | body)

    def _update_number(self, request: Request, sid: str) -> Response:
        with self._lock:
            number = next((n for n in self._numbers if n["sid"] == sid), None)
            if number is None:
                return _error(404, 20404)
            for param, field in NUMBER_SETTINGS.items():
                if param in request.form:
                    number[field] = request.form[param]
            return _json(200, self._number_json(number))

    def _number_json(self, number: dict[str, str]) -> dict[str, Any]:
        uri = f"/{API_VERSION}/Accounts/{self.account_sid}/IncomingPhoneNumbers/{number['sid']}"
        return {**number, "account_sid": self.account_sid, "uri": f"{uri}.json"}

    def _list(
        self,
        request: Request,
        kind: str,
        records: list[dict[str, Any]],
        render: Callable[[dict[str, Any]], dict[str, Any]],
    ) -> Response:
        """One page of ``records`` (newest first), filtered by ``To``, ``From`` and (calls)
        ``ParentCallSid`` as Twilio's list resources are; the caller holds the lock."""
        to, from_ = request.args.get("To"), request.args.get("From")
        parent = request.args.get("ParentCallSid")
        size, page = int(request.args.get("PageSize", "50")), int(request.args.get("Page", "0"))
        chosen = [
            r
            for r in reversed(records)
            if to in (None, r["to"])
            and from_ in (None, r["from_"])
            and parent in (None, r.get("parent"))
        ]
        uri = f"/{API_VERSION}/Accounts/{self.account_sid}/{kind}.json"
        following = None
        if len(chosen) > (page + 1) * size:
            query = {k: v for k, v in request.args.items() if k != "Page"} | {"Page": page + 1}
            following = f"{uri}?{urlencode(query)}"
        return _json(
            200,
            {
                kind.lower(): [render(r) for r in chosen[page * size : (page + 1) * size]],
                "page": page,
                "page_size": size,
                "uri": uri,
                "next_page_uri": following,
            },
        )

    def _find_message(self, sid: str) -> dict[str, Any] | None:
        """The message record with ``sid``; the caller holds the lock."""
        return next((m for m in self._messages if m["sid"] == sid), None)

    def _find_call(self, sid: str) -> dict[str, Any] | None:
        """The call record with ``sid``, placed or carried; the caller holds the lock."""
        return next((c for c in (*self._calls, *self._carried) if c["sid"] == sid), None)

    def _message_json(self, message: dict[str, Any]) -> dict[str, Any]:
        body = message["body"]
        extra = {"body": body, "num_segments": str(num_segments(body)), "num_media": "0"}
        sent = message.get("date_sent")
        kept = {"date_sent": format_datetime(sent)} if sent else {}
        return self._resource_json("Messages", message) | extra | _NULL_MESSAGE_FIELDS | kept

    def _call_json(self, call: dict[str, Any]) -> dict[str, Any]:
        started = call.get("start_time")
        kept = {"start_time": format_datetime(started)} if started else {}
        parent = {"parent_call_sid": call.get("parent")}
        return self._resource_json("Calls", call) | _NULL_CALL_FIELDS | kept | parent

    def _resource_json(self, kind: str, record: dict[str, Any]) -> dict[str, Any]:
        """The fields Messages and Calls share; ``from_`` goes out as Twilio's ``from``."""
        uri = f"/{API_VERSION}/Accounts/{self.account_sid}/{kind}/{record['sid']}.json"
        fields = {"sid", "to", "status", "date_created"}
        shared = {key: value for key, value in record.items() if key in fields}
        return shared | {
            "account_sid": self.account_sid,
            "api_version": API_VERSION,
            "from": record["from_"],
            "direction": "outbound-api",
            "date_updated": record["date_created"],
            "price_unit": "USD",
            "uri": uri,
        }


def _refuse_message(form: dict[str, str]) -> int | None:
    """The Twilio error code a Messages create with ``form`` earns, or None to accept it."""
    if not form.get("To"):
        return 21604
    if not _E164.fullmatch(form["To"]):
        return 21211
    if not form.get("Body"):
        return 21602
    return 21617 if len(form["Body"]) > 1600 else None


def _refusal(to: str, from_: str, body: str, via: str) -> dict[str, Any]:
    return {"to": to, "from_": from_, "body": body, "code": 21610, "via": via}


def _error(status: int, code: int | None, problem: bool = False) -> Response:
    """Twilio's error body: ``{code, message, more_info, status}``, or RFC 9457 when ``problem``.

    Without a code (an outage page), twilio-python reports the HTTP status as the code.
    """
    message = ERROR_MESSAGES.get(code or 0, "Error")
    if code is None:
        return _json(status, {"message": message, "status": status})
    more_info = f"https://www.twilio.com/docs/errors/{code}"
    if problem:
        return _json(status, {"type": more_info, "title": message, "status": status, "code": code})
    return _json(
        status, {"code": code, "message": message, "more_info": more_info, "status": status}
    )


def _json(status: int, payload: dict[str, Any]) -> Response:
    return Response(json.dumps(payload), status=status, mimetype="application/json")


def _new_sid(prefix: str) -> str:
    return prefix + secrets.token_hex(16)


def _now() -> str:
    return format_datetime(datetime.now(UTC))


def _http_deliver(url: str, params: Mapping[str, str], headers: Mapping[str, str]) -> int:
    """Deliver a callback over real HTTP, as Twilio does."""
    with requests.post(url, data=dict(params), headers=dict(headers), timeout=10) as response:
        return response.status_code
