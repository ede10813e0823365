"""Check a delivered message's envelope before dramatiq reads any of it.

Why: dramatiq trusts the envelope. An ``options`` that is not an object or an ``actor_name``
that is not a string makes its consumer thread raise on every delivery (the queue is blocked
behind the message forever); a ``queue_name`` naming another queue or an ``options.throws``
that is not an exception type kills the worker thread after the actor ran (the message is
acked and lost); a negative or non-integer ``retries`` breaks the retry policy. These fail
before any middleware runs, so the check happens where the body is decoded: the broker's
consumer (:mod:`bgworkers.brokers.rabbitmq`) calls :func:`decode_envelope` on every delivery and
dead-letters whatever it refuses, with the reason logged and counted.

The check is a pure function of the body, the queue it came from and the declared actors,
with a cost linear in the body's size (itself capped by ``BGW_MESSAGE_MAX_BYTES``): no
recursion over nested values, no regex over unbounded text.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any, Final

from dramatiq import Actor
from dramatiq.common import dq_name, q_name
from dramatiq.message import Message

from bgworkers.errors import PermanentError

#: Fields of dramatiq's envelope, all required (dramatiq itself always writes them).
FIELDS: Final = frozenset(
    {"queue_name", "actor_name", "args", "kwargs", "options", "message_id", "message_timestamp"}
)
#: Levels of nesting allowed anywhere in an envelope; our arguments are ids, dates and lists.
MAX_NESTING: Final = 16
#: Characters of a message id: ids are stored in ``scheduled_runs.message_id`` (64).
MAX_MESSAGE_ID_CHARS: Final = 64
MAX_ACTOR_NAME_CHARS: Final = 200
#: Bytes the broker adds to an enqueued message on its way to ``<queue>.DQ`` (the ``eta``).
DELAY_OVERHEAD_BYTES: Final = 256
#: Milliseconds; upper bounds of option values (well beyond any actor's own settings).
MAX_BACKOFF_MS: Final = 1_200_000
MAX_TIME_LIMIT_MS: Final = 3_600_000
MAX_RETRIES: Final = 1_000
#: Year 3000 in milliseconds since the epoch: a later timestamp is garbage.
MAX_TIMESTAMP_MS: Final = 32_503_680_000_000
#: Options that only an actor may set (they hold Python objects, never JSON).
ACTOR_ONLY_OPTIONS: Final = frozenset({"throws", "retry_when", "on_retry_exhausted"})


class InvalidEnvelope(PermanentError):
    """A delivery that is not a message bgworkers can run; dead-lettered at once.

    ``code`` is one of the fixed words of :data:`CODES` (a metric label). ``message_id`` and
    ``actor`` are set when the envelope had a usable one, so the log line can be keyed by them.
    """

    CODES: Final = (
        "too_large",
        "not_utf8",
        "not_json",
        "not_an_object",
        "bad_field",
        "wrong_queue",
        "unknown_actor",
        "bad_option",
        "too_deep",
    )

    def __init__(
        self, code: str, detail: str, *, message_id: str | None = None, actor: str | None = None
    ) -> None:
        super().__init__(f"{code}: {detail}")
        self.code = code
        self.detail = detail
        self.message_id = message_id
        self.actor = actor


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _int_in(low: int, high: int) -> Callable[[object], bool]:
    return lambda value: _is_int(value) and low <= value <= high  # type: ignore[operator]


def _is_aware_iso_datetime(value: object) -> bool:
    if not isinstance(value, str) or len(value) > 64:
        return False
    try:
        return datetime.fromisoformat(value).tzinfo is not None
    except ValueError:
        return False


def _is_number(value: object) -> bool:
    return (_is_int(value) or isinstance(value, float)) and math.isfinite(value)  # type: ignore[arg-type]


def _short_str(limit: int) -> Callable[[object], bool]:
    return lambda value: isinstance(value, str) and len(value) <= limit


#: The option values something in our stack reads, and what each must be.
OPTION_CHECKS: Final[Mapping[str, tuple[str, Callable[[object], bool]]]] = {
    "retries": ("an integer from 0 to 1000", _int_in(0, MAX_RETRIES)),
    "max_retries": ("an integer from 0 to 1000", _int_in(0, MAX_RETRIES)),
    "min_backoff": ("milliseconds from 0 to 1200000", _int_in(0, MAX_BACKOFF_MS)),
    "max_backoff": ("milliseconds from 0 to 1200000", _int_in(0, MAX_BACKOFF_MS)),
    "time_limit": ("milliseconds from 1 to 3600000", _int_in(1, MAX_TIME_LIMIT_MS)),
    "max_age": ("milliseconds, 0 or more", _int_in(0, MAX_TIMESTAMP_MS)),
    "eta": ("a finite number of milliseconds", _is_number),
    "requeue_timestamp": ("milliseconds, 0 or more", _int_in(0, MAX_TIMESTAMP_MS)),
    "broker_priority": ("an integer from 0 to 255", _int_in(0, 255)),
    "traceback": ("a string", lambda value: isinstance(value, str)),
    "notify_shutdown": ("a boolean", lambda value: isinstance(value, bool)),
    "pipe_ignore": ("a boolean", lambda value: isinstance(value, bool)),
    "scheduled_at": ("an ISO 8601 time with a UTC offset", _is_aware_iso_datetime),
    "bgw_tick": ("an ISO 8601 time with a UTC offset", _is_aware_iso_datetime),
    "bgw_busy_retries": ("an integer from 0 to 1000", _int_in(0, MAX_RETRIES)),
    # W3C Trace Context of the sender and the first attempt (bgworkers.tracing).
    "traceparent": ("a string of at most 55 characters", _short_str(55)),
    "tracestate": ("a string of at most 512 characters", _short_str(512)),
    "bgw_first_attempt": ("a string of at most 55 characters", _short_str(55)),
}


def _reject_constant(name: str) -> object:
    raise ValueError(f"{name} is not a JSON number")


#: ``json.loads(text, parse_constant=...)`` builds a decoder on every call; this is that
#: decoder, built once (a fifth of the parse time of a typical envelope).
_DECODER: Final = json.JSONDecoder(parse_constant=_reject_constant)


def peek_message_id(fields: Mapping[str, Any]) -> str | None:
    """The envelope's message id if it is a usable one (to key the log line by)."""
    message_id = fields.get("message_id")
    if (
        isinstance(message_id, str)
        and 0 < len(message_id) <= MAX_MESSAGE_ID_CHARS
        and message_id.isascii()
        and message_id.isprintable()
    ):
        return message_id
    return None


def decode_envelope(
    body: bytes, *, queue_name: str, actors: Mapping[str, Actor[Any, Any]], max_bytes: int
) -> Message[Any]:
    """The message in ``body``, delivered from ``queue_name``; :class:`InvalidEnvelope` if
    anything dramatiq or our middleware would read is missing, mistyped or out of range.

    ``max_bytes`` is ``BGW_MESSAGE_MAX_BYTES``; a delayed queue allows a few bytes more for
    the ``eta`` the broker adds.
    """
    limit = max_bytes + (DELAY_OVERHEAD_BYTES if queue_name == dq_name(queue_name) else 0)
    if len(body) > limit:
        raise InvalidEnvelope(
            "too_large", f"{len(body)} bytes, more than the {limit} allowed (message_max_bytes)"
        )
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InvalidEnvelope("not_utf8", f"invalid UTF-8 at byte {exc.start}") from None
    try:
        # json.loads refuses a leading byte-order mark before decoding; so does this.
        fields = (
            json.loads(text, parse_constant=_reject_constant)
            if text.startswith("\ufeff")
            else _DECODER.decode(text)
        )
    except (ValueError, RecursionError) as exc:
        raise InvalidEnvelope("not_json", str(exc)[:200]) from None
    if not isinstance(fields, dict):
        raise InvalidEnvelope("not_an_object", f"a JSON {type(fields).__name__}, not an object")
    message_id = peek_message_id(fields)
    actor_name = fields.get("actor_name")
    known_actor = actor_name if isinstance(actor_name, str) and actor_name in actors else None
    try:
        _check_fields(fields, queue_name=queue_name, actors=actors)
    except InvalidEnvelope as exc:
        exc.message_id, exc.actor = message_id, known_actor
        raise
    return Message(
        queue_name=fields["queue_name"],
        actor_name=fields["actor_name"],
        args=tuple(fields["args"]),
        kwargs=fields["kwargs"],
        options=fields["options"],
        message_id=fields["message_id"],
        message_timestamp=fields["message_timestamp"],
    )


def _check_fields(
    fields: dict[str, Any], *, queue_name: str, actors: Mapping[str, Actor[Any, Any]]
) -> None:
    missing = FIELDS - fields.keys()
    unknown = fields.keys() - FIELDS
    if missing or unknown:
        names = sorted(missing) if missing else sorted(unknown)
        what = "missing" if missing else "unknown"
        raise InvalidEnvelope("bad_field", f"{what} field(s): {', '.join(names)[:200]}")
    if not _plainly_shallow(fields):
        _check_nesting_and_text(fields)
    if peek_message_id(fields) is None:
        raise InvalidEnvelope(
            "bad_field", f"message_id must be 1-{MAX_MESSAGE_ID_CHARS} printable ASCII characters"
        )
    timestamp = fields["message_timestamp"]
    if not (_is_int(timestamp) and 0 <= timestamp <= MAX_TIMESTAMP_MS):
        raise InvalidEnvelope("bad_field", "message_timestamp must be milliseconds since 1970")
    for name, kind in (("args", list), ("kwargs", dict), ("options", dict)):
        if not isinstance(fields[name], kind):
            raise InvalidEnvelope("bad_field", f"{name} must be a JSON {kind.__name__}")
    if fields["queue_name"] != queue_name:
        raise InvalidEnvelope(
            "wrong_queue",
            f"queue_name {_excerpt(fields['queue_name'])} but delivered from {queue_name!r}",
        )
    actor_name = fields["actor_name"]
    if not isinstance(actor_name, str) or len(actor_name) > MAX_ACTOR_NAME_CHARS:
        raise InvalidEnvelope("bad_field", "actor_name must be a string of at most 200 chars")
    actor = actors.get(actor_name)
    if actor is None:
        raise InvalidEnvelope("unknown_actor", f"no actor named {_excerpt(actor_name)}")
    if actor.queue_name != q_name(queue_name):
        raise InvalidEnvelope(
            "wrong_queue", f"actor {actor_name} runs on {actor.queue_name!r}, not {queue_name!r}"
        )
    check_options(fields["options"], queue_name=queue_name, actors=actors)


def check_options(
    options: dict[str, Any], *, queue_name: str, actors: Mapping[str, Actor[Any, Any]]
) -> None:
    """Each option our stack reads has the type and range it expects."""
    if not options:
        return  # most messages: nothing to check
    for name in ACTOR_ONLY_OPTIONS & options.keys():
        raise InvalidEnvelope("bad_option", f"{name} is an actor option; a message cannot set it")
    for name, (expected, is_valid) in OPTION_CHECKS.items():
        if name in options and not is_valid(options[name]):
            raise InvalidEnvelope(
                "bad_option", f"{name} must be {expected}, not {_excerpt(options[name])}"
            )
    if "eta" in options and queue_name != dq_name(queue_name):
        raise InvalidEnvelope("bad_option", "eta is only valid on a delay queue (.DQ)")
    for name in ("on_success", "on_failure"):
        if name in options and options[name] not in actors:
            raise InvalidEnvelope("bad_option", f"{name} must name a declared actor")
    if "pipe_target" in options:
        _check_pipe_target(options["pipe_target"], actors=actors)


def _check_pipe_target(target: object, *, actors: Mapping[str, Actor[Any, Any]]) -> None:
    """A pipeline's next message is enqueued as is: it must be a valid envelope too."""
    if target is None:
        return
    if not isinstance(target, dict):
        raise InvalidEnvelope("bad_option", "pipe_target must be a message object")
    name = target.get("actor_name")
    actor = actors.get(name) if isinstance(name, str) else None
    if actor is None:
        raise InvalidEnvelope("bad_option", "pipe_target must name a declared actor")
    try:
        _check_fields(target, queue_name=actor.queue_name, actors=actors)
    except InvalidEnvelope as exc:
        raise InvalidEnvelope("bad_option", f"pipe_target: {exc.detail}") from None


def _plainly_shallow(fields: dict[str, Any]) -> bool:
    """True when :func:`_check_nesting_and_text` cannot fail, judged in one flat pass.

    Most envelopes hold a few ids: no value inside ``args``, ``kwargs`` or ``options`` is a
    container (so nothing is deeper than 2 levels) and every string is ASCII (so none holds a
    lone surrogate). Anything else takes the full walk. The values come from ``json``, whose
    objects, arrays and strings are exactly ``dict``, ``list`` and ``str``.
    """
    for value in fields.values():
        kind = type(value)
        if kind is str:
            if not value.isascii():
                return False
            continue
        if kind is dict:
            children: Any = [*value, *value.values()]
        elif kind is list:
            children = value
        else:
            continue  # a number, a boolean or null
        for item in children:
            kind = type(item)
            if kind is str:
                if not item.isascii():
                    return False
            elif kind is dict or kind is list:
                return False
    return True


def _check_nesting_and_text(value: object) -> None:
    """No value nested deeper than :data:`MAX_NESTING`; every string encodable as UTF-8.

    JSON may spell lone surrogates (``"\\ud800"``), which Python decodes into strings that
    cannot be logged, stored or re-sent. Iterative, so a hostile depth costs no recursion.
    """
    stack: list[tuple[object, int]] = [(value, 0)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, str):
            if not item.isascii():
                try:
                    item.encode("utf-8")
                except UnicodeEncodeError:
                    raise InvalidEnvelope(
                        "bad_field", "a string holds a lone surrogate (not valid Unicode)"
                    ) from None
            continue
        if isinstance(item, dict | list):
            if depth >= MAX_NESTING:
                raise InvalidEnvelope("too_deep", f"values nested more than {MAX_NESTING} levels")
            children = list(item.keys()) + list(item.values()) if isinstance(item, dict) else item
            stack.extend((child, depth + 1) for child in children)


def _excerpt(value: object, limit: int = 60) -> str:
    """A short, safe ``repr`` of an outsider's value for an error message."""
    if isinstance(value, str):
        return repr(value[:limit]) + ("…" if len(value) > limit else "")
    if isinstance(value, dict | list):
        return f"a JSON {'object' if isinstance(value, dict) else 'array'}"
    return repr(value)[:limit]
