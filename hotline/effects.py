"""What a core operation wants done once its transaction commits: texts and wake-ups.

A webhook renders the texts as TwiML in its own reply; a job hands them to the telephony port.
Nothing is sent or scheduled before the commit, so a rollback leaves no trace outside.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime

from hotline.services import Services
from hotline.telephony import OptedOutError, TelephonyError
from hotline.texting import OutboundText
from hotline.wakeups import Task

log = logging.getLogger(__name__)


@dataclass
class Effects:
    texts: list[OutboundText] = field(default_factory=list)
    wakeups: list[tuple[Task, int, datetime | None]] = field(default_factory=list)
    cancels: list[tuple[Task, int]] = field(default_factory=list)

    def text(self, to: str | None, from_: str, body: str) -> None:
        if to:  # a forgotten clinician has no number left to text
            self.texts.append(OutboundText(to=to, from_=from_, body=body))

    def wake(self, task: Task, ident: int, at: datetime | None = None) -> None:
        self.wakeups.append((task, ident, at))

    def cancel(self, task: Task, ident: int) -> None:
        self.cancels.append((task, ident))


def schedule(services: Services, effects: Effects) -> None:
    """Ask for the wake-ups (best effort: the sweeper covers what Redis loses)."""
    for task, ident in effects.cancels:
        services.wakeups.cancel(task, ident)
    for task, ident, at in effects.wakeups:
        services.wakeups.schedule(task, ident, at)


def send(services: Services, effects: Effects) -> None:
    """Send the texts through the provider (from jobs, never from a webhook)."""
    for text in effects.texts:
        try:
            services.telephony.send_text(text.to, text.from_, text.body)
        except OptedOutError:
            log.info("text not sent: recipient opted out of %s", text.from_)
        except TelephonyError as error:
            log.warning("text not sent: %s (code %s)", type(error).__name__, error.code)
