"""A text inside a live conversation, relayed in one statement (PostgreSQL).

Most webhooks a busy line takes are relays: a clinician texting the peer they are talking to,
or the peer answering. Through the ORM a relay costs a dozen round trips and about 6 ms of CPU
(docs/PERFORMANCE.md); here it is one statement and its commit. The statement does what the
full path (``textline._dispatch``) does for such a text, in the same order (the parity test,
tests/smoke/test_relay_parity.py, runs twelve edge cases both ways and compares every answer
and row); for anything else it changes nothing and the caller takes the full path:

1. queue the inbound record's deletion at Twilio (or bring a queued one forward);
2. claim the delivery's key (a repeated delivery is answered with nothing, as there);
3. find the line (hotline number first, then pool number), the sender by blind index, and the
   one live conversation the full path would relay on:
   - on a hotline number, a clinician who is not also a supporter of the programme, whose
     first open conversation (active first, then texts, then newest) is active and holds no
     texts (held texts go first: the full path holds this one behind them);
   - on a pool number, a supporter of its programme with no pending offer on that number and
     an active conversation on it;
4. touch the clinician row (a clinician's text) and then the conversation, which must still be
   active, and not sending held texts (``relaying_since``), when its row is locked (an ending
   or a claim of held texts that committed meanwhile is seen: stricter than the full path,
   which re-reads nothing after it waits on that row);
5. return the other side's sealed number and the number to relay from, and our own numbers (the
   loop guard compares the sender in Python: the sender's number never goes to the database).

Only texts with no keyword (ours, or Twilio's ``OptOutType``), no media and something to
relay are tried; the rest would all take the full path anyway. ``From`` and ``To`` are looked
up exactly as Twilio sends them, without parsing (two parses cost 30-40 us a relay): every
number we store (lines, pool numbers, the blind index of a supporter or clinician) is
``phone.normalize``'s E.164, which it gives back unchanged, so a number matches here exactly
when it is already in that form; one written any other way finds nobody and takes the full
path, which normalises it.

Row locks come in the full path's order (deletion row, delivery key, clinician, conversation);
a deadlock victim changes nothing and the full path handles the text.
"""

from __future__ import annotations

import logging
from typing import Any

from sqlalchemy import Engine
from sqlalchemy.exc import DBAPIError

from hotline import wording
from hotline.db import is_retryable
from hotline.effects import Effects, schedule
from hotline.held import RELAY_LEASE
from hotline.keywords import parse
from hotline.models import naive_utc
from hotline.people import CLINICIAN_CONTEXT, SUPPORTER_CONTEXT
from hotline.privacy import DecryptionError
from hotline.retention import INBOUND_DELETE_DELAY, wake_deletions
from hotline.services import Services
from hotline.telephony import is_record_sid
from hotline.texting import InboundText, TextReply

log = logging.getLogger(__name__)

# One statement: the writes are ordered by data dependencies (a data-modifying WITH runs when
# a later part first reads it), so its row locks come in the full path's order.
RELAY = """
WITH line AS (
    SELECT id AS programme_id, hotline_number, true AS is_hotline
    FROM programmes WHERE hotline_number = %(to)s
    UNION ALL
    SELECT pool.programme_id, programme.hotline_number, false
    FROM pool_numbers AS pool JOIN programmes AS programme ON programme.id = pool.programme_id
    WHERE pool.number = %(to)s
      AND NOT EXISTS (SELECT 1 FROM programmes WHERE hotline_number = %(to)s)
), queued AS (
    INSERT INTO message_deletions (sid, due_at, attempts, created_at)
    SELECT %(sid)s, %(due)s, 0, %(now)s WHERE %(record)s
    ON CONFLICT (sid) DO UPDATE SET due_at = excluded.due_at
        WHERE message_deletions.due_at > excluded.due_at
    RETURNING id
), claimed AS (
    INSERT INTO webhook_events (key, received_at)
    SELECT %(key)s, %(now)s FROM (SELECT count(*) FROM queued) AS after_queued
    ON CONFLICT (key) DO NOTHING
    RETURNING id
), supporter AS (
    SELECT supporter.id FROM supporters AS supporter JOIN line USING (programme_id)
    WHERE supporter.phone_hash = ANY(%(hashes)s)
), clinician AS (
    SELECT clinician.id FROM clinicians AS clinician JOIN line USING (programme_id)
    WHERE clinician.phone_hash = ANY(%(hashes)s) AND line.is_hotline
), from_clinician AS (
    SELECT conv.id, conv.state, conv.pool_number AS from_number,
           peer.phone_sealed AS to_sealed, 'clinician' AS side
    FROM conversations AS conv LEFT JOIN supporters AS peer ON peer.id = conv.supporter_id
    WHERE conv.clinician_id IN (SELECT id FROM clinician)
      AND conv.state IN ('queued', 'active')
      AND NOT EXISTS (SELECT 1 FROM supporter)
      AND (SELECT count(*) FROM clinician) = 1
    ORDER BY conv.state = 'active' DESC, conv.channel = 'sms' DESC, conv.id DESC
    LIMIT 1
), from_supporter AS (
    SELECT conv.id, conv.state, line.hotline_number AS from_number,
           clinician.phone_sealed AS to_sealed, 'supporter' AS side
    FROM conversations AS conv
    JOIN line ON NOT line.is_hotline
    LEFT JOIN clinicians AS clinician ON clinician.id = conv.clinician_id
    WHERE conv.supporter_id IN (SELECT id FROM supporter)
      AND conv.pool_number = %(to)s AND conv.state = 'active'
      AND NOT EXISTS (
          SELECT 1 FROM offers
          WHERE offers.supporter_id IN (SELECT id FROM supporter)
            AND offers.pool_number = %(to)s AND offers.state = 'pending'
      )
    ORDER BY conv.id
    LIMIT 1
), target AS (
    SELECT * FROM from_clinician WHERE state = 'active' AND from_number IS NOT NULL
      AND (
          NOT EXISTS (
              SELECT 1 FROM pending_texts AS held WHERE held.conversation_id = from_clinician.id
          )
          OR EXISTS (  -- held as a call rang: they wait for its follow-up, this need not
              SELECT 1 FROM calls
              WHERE calls.conversation_id = from_clinician.id AND calls.followed_up_at IS NULL
          )
      )
    UNION ALL
    SELECT * FROM from_supporter
), touched_clinician AS (
    UPDATE clinicians SET last_contact_at = %(now)s
    WHERE id IN (SELECT id FROM clinician)
      AND EXISTS (SELECT 1 FROM target WHERE side = 'clinician')
      AND EXISTS (SELECT 1 FROM claimed)
    RETURNING id
), touched AS (
    UPDATE conversations SET last_activity_at = %(now)s
    WHERE id IN (SELECT id FROM target) AND state = 'active'
      AND (relaying_since IS NULL OR relaying_since <= %(lease)s)
      AND EXISTS (SELECT 1 FROM claimed)
      AND (SELECT count(*) FROM touched_clinician) >= 0
    RETURNING id
)
SELECT
    (SELECT count(*) FROM claimed) AS claimed,
    (SELECT id FROM queued) AS deletion_id,
    (SELECT count(*) FROM touched) AS touched,
    target.side, target.from_number, target.to_sealed,
    ARRAY(SELECT hotline_number FROM programmes UNION ALL SELECT number FROM pool_numbers) AS own
FROM (SELECT 1) AS one LEFT JOIN target ON true
"""


def relay(services: Services, engine: Engine, text: InboundText) -> TextReply | None:
    """The answer to ``text`` if it is a plain relay in a live conversation, or a repeated
    delivery of one; None, with nothing changed, when the full path must handle it."""
    if text.num_media or text.opt_out_type or not text.body.strip() or parse(text.body):
        return None
    sender, line = text.from_, text.to  # exact E.164 or no match (see the module's docstring)
    if not (sender.startswith("+") and line.startswith("+")):
        return None  # a short code or a name: not a conversation's number
    now = services.clock()
    due = now + INBOUND_DELETE_DELAY
    params = {
        "to": line,
        "sid": text.sid,
        "key": f"sms:{text.sid}"[:120],
        "record": is_record_sid(text.sid),
        "due": naive_utc(due),
        "now": naive_utc(now),
        "lease": naive_utc(now - RELAY_LEASE),
        "hashes": services.vault.blind_indexes(sender),
    }
    effects = Effects()
    committing = False
    try:
        with engine.connect() as conn:
            row = conn.exec_driver_sql(RELAY, params).one()
            if not _relayed(services, row, sender, text, effects):
                conn.rollback()
                return None
            committing = True
            conn.commit()
    except DBAPIError as error:
        # A connection lost during COMMIT may have committed: the full path would meet its own
        # delivery key and answer nothing; raised, the webhook answers with the crisis line.
        if committing or not is_retryable(error):
            raise
        log.info("relay fast path gave way (%s); taking the full path", type(error).__name__)
        return None
    if row.deletion_id is not None:
        wake_deletions(effects, due)
    schedule(services, effects)
    return TextReply(tuple(effects.texts))


def _relayed(
    services: Services, row: Any, sender: str, text: InboundText, effects: Effects
) -> bool:
    """Decide on the statement's answer: True to commit (``effects`` holds the relay)."""
    if row.claimed == 0:  # delivered before: answered then, as the full path would
        log.info("duplicate delivery of %s ignored", text.sid)
        return True
    if row.side is None or row.touched != 1 or sender in row.own:
        return False  # not a live conversation's text, or a loop: the full path decides
    context = SUPPORTER_CONTEXT if row.side == "clinician" else CLINICIAN_CONTEXT
    try:
        to = None if row.to_sealed is None else services.vault.open(row.to_sealed, context)
    except DecryptionError:
        return False  # the full path raises and says so
    effects.text(to, row.from_number, wording.truncate(text.body))
    return True
