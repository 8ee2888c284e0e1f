"""gunicorn's logs without the calendar feeds' secrets.

A feed's URL is its only key (``/calendar/supporter/<token>.ics``), and gunicorn logs the path
of every request, and the URI of one it failed to handle: the Procfile's ``--logger-class``
masks the token in every access-log atom (path, raw URI, referrer, any header or environ
value) and in every error-log line, whatever ``--access-logformat`` an operator chooses.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from gunicorn.glogging import Logger

FEED = re.compile(r"(/calendar/(?:supporter|programme)/)[^/?#\s]+(\.ics)")
MASK = r"\1[secret]\2"


def masked(value: Any) -> Any:
    """``value`` with any feed token masked, if it is text."""
    return FEED.sub(MASK, value) if isinstance(value, str) else value


def redacted(environ: Mapping[str, Any]) -> dict[str, Any]:
    """A copy of a WSGI environ with any feed token in its text values masked."""
    return {key: masked(value) for key, value in environ.items()}


class AccessLog(Logger):  # type: ignore[misc]
    def atoms(self, resp: Any, req: Any, environ: Mapping[str, Any], request_time: Any) -> Any:
        found = super().atoms(resp, req, redacted(environ), request_time)
        return {key: masked(value) for key, value in found.items()}

    def critical(self, msg: str, *args: Any, **kwargs: Any) -> None:
        super().critical(masked(msg), *(masked(a) for a in args), **kwargs)

    def error(self, msg: str, *args: Any, **kwargs: Any) -> None:
        super().error(masked(msg), *(masked(a) for a in args), **kwargs)

    def warning(self, msg: str, *args: Any, **kwargs: Any) -> None:
        super().warning(masked(msg), *(masked(a) for a in args), **kwargs)

    def info(self, msg: str, *args: Any, **kwargs: Any) -> None:
        super().info(masked(msg), *(masked(a) for a in args), **kwargs)

    def debug(self, msg: str, *args: Any, **kwargs: Any) -> None:
        super().debug(masked(msg), *(masked(a) for a in args), **kwargs)

    def exception(self, msg: str, *args: Any, **kwargs: Any) -> None:
        super().exception(masked(msg), *(masked(a) for a in args), **kwargs)
