"""The audit log: every console action (CLI or web), who did it and when."""

from __future__ import annotations

import getpass
from datetime import datetime

from sqlmodel import Session, col, select

from bgworkers.console.dead_letters import cap
from bgworkers.console.models import AuditEntry
from bgworkers.logs.loggers import get_logger, redact_text

log = get_logger(__name__)


def record(
    session: Session, *, who: str, action: str, target: str, detail: str = "", now: datetime
) -> AuditEntry:
    """Add an entry in the caller's transaction (the action and its record commit together)."""
    entry = AuditEntry(
        at=now,
        who=cap(who, 200),
        action=cap(action, 50),
        target=cap(target, 300),
        detail=cap(redact_text(detail), 1000),
    )
    session.add(entry)
    log.info("console_action", who=entry.who, action=entry.action, target=entry.target)
    return entry


def recent(session: Session, *, limit: int = 200) -> list[AuditEntry]:
    """The newest entries first."""
    query = select(AuditEntry).order_by(col(AuditEntry.id).desc()).limit(limit)
    return list(session.exec(query))


def cli_user() -> str:
    """Who runs the command: ``cli:<login>`` (the operating-system account)."""
    try:
        return f"cli:{getpass.getuser()}"
    except (KeyError, OSError):  # no login name in a bare container
        return "cli:unknown"
