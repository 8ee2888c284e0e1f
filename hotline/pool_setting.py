"""HOTLINE_POOL_NUMBERS applied as edits to the first programme's pool at `hotline db upgrade`.

The pool changes in more places than the environment: coordinators in Settings (the console or
the API), IT with `hotline programme add --pool`. Applied whole at every release, the setting
would put back each number taken out since while it still lists it, unseen, and offers would
go out from it again. So the programme keeps the list the setting had when last applied
(``Programme.applied_pool_setting``) and a release applies only what IT changed since: a number
listed now and not then is added; one listed then and now that the pool no longer has was taken
out since and stays out, with a warning. A number IT takes out of the setting and later puts
back is added again, as any number the setting newly lists.
"""

from __future__ import annotations

import logging
from collections.abc import Collection, Iterator

from hotline.models import Programme

log = logging.getLogger(__name__)


def taken_out_since(programme: Programme | None, listed: tuple[str, ...]) -> set[str]:
    """Those of ``listed`` the setting listed when last applied to ``programme`` that its pool
    no longer has. Never recorded (the first upgrade after migration 0019): none, so that
    upgrade applies the setting as every release before it did, adding each number the pool
    lacks, and records it. Nothing tells a number taken out since the last release from one
    IT adds in this one or one that was waiting at Twilio, and keeping out the two last, under
    a warning that a coordinator took them out, would be the worse mistake; a number taken
    out before that release was put back by it."""
    if programme is None or programme.applied_pool_setting is None:
        return set()
    applied = set(programme.applied_pool_setting.split(","))
    pool = {p.number for p in programme.pool_numbers}
    return {n for n in listed if n in applied and n not in pool}


def places(given: tuple[str, ...], numbers: Collection[str]) -> Iterator[tuple[int, str]]:
    """Each of ``numbers`` with its place in the setting ``given`` (from 1), once, where it is
    first listed: a release's warnings name a number by its place, never the number."""
    for place, number in enumerate(given, start=1):
        if number in numbers and number not in given[: place - 1]:
            yield place, number


def warn_taken_out(slug: str, setting: str, given: tuple[str, ...], out: set[str]) -> None:
    """Say which numbers of ``setting`` are not put back, once each, by their place there (no
    phone numbers in logs), with what IT changes."""
    for place, _number in places(given, out):
        log.warning(
            "%s: its number %d of %d is not put back in programme %r's pool: a coordinator "
            "took it out in Settings on the console or the API, or IT with `hotline programme "
            "add --pool`, since a release applied this setting (the console's audit log says "
            "who and when). If it is to serve again, a coordinator adds it back in Settings; if "
            "not, remove it from %s",
            setting,
            place,
            len(given),
            slug,
            setting,
        )


def warn_someones_phone(slug: str, setting: str, given: tuple[str, ...], phones: set[str]) -> None:
    """Say which numbers of ``setting`` stay out of the pool as a supporter's or clinician's
    phone, once each, by their place there: never the number, nor whose it is. Left out, not
    refused: one such number would otherwise stop every release, security fixes included, until
    the environment is edited; in the pool, it would cut that person off the line."""
    for place, _number in places(given, phones):
        log.warning(
            "%s: its number %d of %d is left out of programme %r's pool: it is a supporter's or "
            "clinician's phone, and texts and calls from the line's own numbers are ignored, so "
            "that person would be cut off from every line: remove it from %s, or correct it if it "
            "was mistyped (should that phone change, it joins at the next `hotline db upgrade`)",
            setting,
            place,
            len(given),
            slug,
            setting,
        )


def record_applied(programme: Programme, given: tuple[str, ...], out: set[str]) -> None:
    """Keep what the setting lists as applied: the numbers now in the pool, and those kept out
    as taken out. One left out for now (Twilio does not send it here yet, another programme
    has it, it is a person's phone) is not: it is tried again at the next release, as its
    warning says."""
    pool = {p.number for p in programme.pool_numbers}
    kept = [n for n in dict.fromkeys(given) if n in pool or n in out]
    programme.applied_pool_setting = ",".join(kept)
