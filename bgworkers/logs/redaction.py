"""Scrub secrets out of what is logged or stored, at a cost bounded per value.

Why bounded: the logging pipeline redacts every field of every line, including text that
outsiders control (a message's arguments in dramatiq's "Failed to process message" line, a
provider's error body). Two rules keep that cheap whatever the input:

* every value is cut to :data:`MAX_FIELD_CHARS` characters (with a ``…(N bytes)`` marker
  saying how long it was) *before* any pattern runs, and containers to
  :data:`MAX_ITEMS` items and :data:`MAX_DEPTH` levels;
* every pattern is linear: a pattern only starts where a token starts (a look-behind), its
  repeats are possessive or bounded, so no input makes it backtrack over what it already read.

:func:`scrub_known` is the other half: third-party text (an SMTP reply, an API error field)
may echo the very credential we sent; that value is replaced wherever it appears, whatever
the text around it looks like.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable, Mapping
from typing import Any, Final

REDACTED: Final = "***"
#: Characters kept of one logged string; the rest becomes ``…(N bytes)``.
MAX_FIELD_CHARS: Final = 2048
#: Characters kept of a traceback (its end: the exception line is the part that matters).
MAX_TRACEBACK_CHARS: Final = 16_384
#: Items kept of one logged list or mapping, and levels of nesting.
MAX_ITEMS: Final = 50
MAX_DEPTH: Final = 4
#: Secrets shorter than this are not scrubbed from free text (they would match everywhere).
MIN_KNOWN_SECRET_CHARS: Final = 4

# Keys whose values are secrets whatever they hold: the word on its own or as a part of a
# snake/kebab-case name (smtp_password, access_token, x-api-key), not inside another word
# (passed, bypass) nor a plural count (tokens_synced).
_SECRET_KEY = re.compile(
    r"(?:^|[_-])(?:pass(?:word|wd)?|secret|token|authorization|api[_-]?key|credentials?|cookie"
    r"|signature)(?:$|[_-])",
    re.IGNORECASE,
)
# In free text a key names a secret when it contains one of these words (smtp_password=...).
_SECRET_WORD = re.compile(r"password|passwd|secret|token|api[_-]?key", re.IGNORECASE)

# scheme://user:password@host -> scheme://user:***@host. The scheme starts a token and every
# part is possessive and stops at a character the part cannot hold (a password has no "/"
# in a URL), so no part is read twice, and none reads past the next "://".
_URL_CREDENTIALS = re.compile(
    r"(?<![a-zA-Z0-9+.-])(?P<head>[a-zA-Z][a-zA-Z0-9+.-]*+://[^:/@\s'\"]*+:)[^@\s'\"/?#]++@"
)
# Authorization: Bearer xyz / Basic xyz, in headers dumped as text or dict reprs.
_AUTH_SCHEME = re.compile(r"(?i)\b(bearer|basic)\s++[A-Za-z0-9._~+/=-]++")
# Query parameters that carry credentials: ?key=..., &sig=..., &code=...
_QUERY_SECRET = re.compile(r"(?i)(?P<k>[?&](?:key|sig|signature|code)=)[^&\s'\"]++")
# key=value, key: value, 'key': 'value'. The key is one whole token (possessive, starting
# where a token starts). The value is read only after a secret key, and then replaced: a pair
# whose key is harmless must not swallow a secret pair right after it (x=password=...).
_PAIR_KEY = re.compile(r"[\"']?(?<![\w-])(?P<key>[\w-]++)[\"']?\s*+[:=]\s*+")
_PAIR_VALUE = re.compile(r"(?P<q>[\"']?)[^\"'\s,&}]++")
# What every pattern above needs somewhere in the text: "://" and "key=value" or "key: value"
# need ":" or "=", a scheme needs "bearer" or "basic". Text with none of them is returned as
# is after one scan (most logged values: ids, names, outcomes), instead of four.
_MAY_HOLD_SECRET = re.compile(r"[:=]|bearer|basic", re.IGNORECASE)


def bound_text(text: str, limit: int = MAX_FIELD_CHARS, *, keep_end: bool = False) -> str:
    """``text`` cut to ``limit`` characters, with a marker giving the full size in bytes."""
    if len(text) <= limit:
        return text
    size = len(text.encode("utf-8", "surrogatepass"))
    if keep_end:
        return f"…({size} bytes){text[-limit:]}"
    return f"{text[:limit]}…({size} bytes)"


def _redact_pairs(text: str) -> str:
    out: list[str] = []
    done = 0  # text[:done] is already in out
    pos = 0
    while (key := _PAIR_KEY.search(text, pos)) is not None:
        pos = key.end()
        if not _SECRET_WORD.search(key["key"]):
            continue
        value = _PAIR_VALUE.match(text, pos)
        if value is None:
            continue
        out.append(text[done:pos])
        out.append(value["q"] + REDACTED)
        done = pos = value.end()
    out.append(text[done:])
    return "".join(out)


def may_hold_secret(text: str) -> bool:
    """Whether any pattern of :func:`redact_text` could match ``text`` (one scan)."""
    return _MAY_HOLD_SECRET.search(text) is not None


def redact_text(text: str, *, limit: int = MAX_FIELD_CHARS, keep_end: bool = False) -> str:
    """Scrub credentials out of free text (URLs, headers, ``key=value`` pairs).

    The text is first cut to ``limit`` characters (the end kept with ``keep_end``), so the
    cost is bounded whatever its length; every pattern is linear in what remains.
    """
    text = bound_text(text, limit, keep_end=keep_end)
    if _MAY_HOLD_SECRET.search(text) is None:
        return text
    return _redact_patterns(text)


def _redact_patterns(text: str) -> str:
    """Every pattern, in order, over text already bounded."""
    text = _URL_CREDENTIALS.sub(rf"\g<head>{REDACTED}@", text)
    text = _AUTH_SCHEME.sub(rf"\1 {REDACTED}", text)
    text = _QUERY_SECRET.sub(rf"\g<k>{REDACTED}", text)
    return _redact_pairs(text)


@functools.lru_cache(maxsize=1024)
def _is_secret_key(key: str) -> bool:
    return _SECRET_KEY.search(key) is not None


def is_secret_key(key: str) -> bool:
    """Whether values under ``key`` are secrets. Cached: a log line's keys come from a small
    set (the code's own field names), asked on every line."""
    return _is_secret_key(key[:200])


def redact_value(key: str, value: Any, *, _depth: int = 0) -> Any:
    """``value`` logged under ``key``, scrubbed and bounded (strings, lists and mappings)."""
    if is_secret_key(key) and value not in (None, ""):
        return REDACTED
    if isinstance(value, str):
        return redact_text(value)
    if isinstance(value, Mapping | list | tuple) and _depth >= MAX_DEPTH:
        return f"…({type(value).__name__} of {len(value)} items)"
    if isinstance(value, Mapping):
        items = list(value.items())
        bounded = {
            str(k)[:200]: redact_value(str(k), v, _depth=_depth + 1) for k, v in items[:MAX_ITEMS]
        }
        if len(items) > MAX_ITEMS:
            bounded["…"] = f"{len(items) - MAX_ITEMS} more items"
        return bounded
    if isinstance(value, list | tuple):
        kept = [redact_value(key, v, _depth=_depth + 1) for v in value[:MAX_ITEMS]]
        if len(value) > MAX_ITEMS:
            kept.append(f"…({len(value) - MAX_ITEMS} more items)")
        return kept
    return value


def scrub_known(text: str, secrets: Iterable[str | None]) -> str:
    """``text`` with every occurrence of each given secret value replaced by ``***``.

    For text written by someone else (an SMTP reply, an API's error field) that may echo a
    credential we sent: only the value itself is known, not the shape of the text around it.
    Cost: one linear pass per secret.
    """
    for secret in sorted({s for s in secrets if s}, key=len, reverse=True):
        if len(secret) >= MIN_KNOWN_SECRET_CHARS:
            text = text.replace(secret, REDACTED)
    return text
