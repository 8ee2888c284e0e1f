"""RQ jobs: importable functions of ids, each one call into the core. Safe to run twice."""

from __future__ import annotations

from hotline import checkins, held, retention, ringing, tasks
from workers.context import services


def expire_offer(offer_id: int) -> None:
    tasks.expire_offer(services(), offer_id)


def send_due_checkins(ident: int) -> None:
    checkins.send_due(services(), ident)


def send_checkin(checkin_id: int) -> None:
    checkins.send_checkin(services(), checkin_id)


def delete_due_records(ident: int) -> None:
    retention.delete_due(services(), ident)


def delete_message(deletion_id: int) -> None:
    retention.delete_at_provider(services(), deletion_id)


def delete_record(sid: str, attempt: int = 1) -> None:
    retention.delete_unqueued(services(), sid, attempt)


def send_notice(notice_id: int) -> None:
    from hotline import notices

    notices.send_notice(services(), notice_id)


def offer_call_back(conversation_id: int) -> None:
    ringing.offer_call_back(services(), conversation_id)


def follow_up_call(call_id: int) -> None:
    ringing.follow_up_call(services(), call_id)


def relay_held(conversation_id: int) -> None:
    held.send_held(services(), conversation_id)


def sweep() -> None:
    tasks.sweep(services())
