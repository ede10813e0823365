"""Dedupe keys for fan-outs: one message per target per run of the fan-out message (a
redelivered or retried fan-out writes the same keys again: docs/outbox.md, "Delivery guarantees").
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from dramatiq.middleware import CurrentMessage

from bgworkers.outbox.api import MAX_DEDUPE_KEY_LENGTH


def bounded_key(key: str) -> str:
    """``key`` itself if it fits the dedupe column, else a stable digest of it."""
    if len(key) <= MAX_DEDUPE_KEY_LENGTH:
        return key
    return "sha256:" + hashlib.sha256(key.encode()).hexdigest()


def per_run_key(args: tuple[Any, ...]) -> str | None:
    """``run:<fan-out message id>:<args>``; None outside a message (no deduplication)."""
    message = CurrentMessage.get_current_message()
    if message is None:
        return None
    return bounded_key(f"run:{message.message_id}:{json.dumps(list(args), separators=(',', ':'))}")
