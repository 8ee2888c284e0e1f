"""gunicorn's access log without the calendar feeds' secrets.

A feed's URL is its only key (``/calendar/supporter/<token>.ics``), and gunicorn logs the path
of every request: the Procfile's ``--logger-class`` masks the token in the path, the raw URI
and the referrer, whatever ``--access-logformat`` an operator chooses.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from gunicorn.glogging import Logger

FEED = re.compile(r"(/calendar/(?:supporter|programme)/)[^/?#\s]+(\.ics)")
MASK = r"\1[secret]\2"
KEYS = ("PATH_INFO", "RAW_URI", "REQUEST_URI", "HTTP_REFERER")


def redacted(environ: Mapping[str, Any]) -> dict[str, Any]:
    """A copy of a WSGI environ with any feed token in its URLs masked."""
    copy = dict(environ)
    for key in KEYS:
        if isinstance(copy.get(key), str):
            copy[key] = FEED.sub(MASK, copy[key])
    return copy


class AccessLog(Logger):  # type: ignore[misc]
    def access(self, resp: Any, req: Any, environ: Mapping[str, Any], request_time: Any) -> None:
        super().access(resp, req, redacted(environ), request_time)
