"""The HTTP layer of the sync domain: one client per process, error classification, retries.

Errors raised here (from :mod:`bgworkers.errors`, and the limiter's one)::

    TransientHTTPError          transport error, 408, 429, 5xx (and Google's 403 rate limits)
    PermanentHTTPError          any other answer outside 2xx
     +-- AuthenticationFailed   401: the access token was refused
     |    +-- ReauthorizationRequired  still refused after a refresh: the user must reconnect
     +-- ResourceGone           410: Google's "sync token no longer valid"
    UnexpectedResponse (PermanentError)  a 2xx answer without the documented shape
    RateLimitedLater (TransientError)    a rate-limit answer to a request whose credential
                                         the limiter paused (``on_rate_limited``)

Retries happen at two levels, and the split is deliberate. A short wait (a ``Retry-After``
of a few seconds, or a 5xx/transport blip with no ``Retry-After``) is retried here, inside
the message, with tenacity: the worker thread sleeps a little and the sync goes on with its
in-memory state. A long ``Retry-After`` is not slept through: it would hold a worker thread
idle and eat into the actor's time limit. Then, and when the in-request attempts run out,
:class:`TransientHTTPError` carries ``retry_after_s`` up to the retry policy, which re-queues
the message with that delay; the sync resumes from the last committed page. A rate-limit
answer on a credential the limiter paused is never slept through, however short its
``Retry-After``: the pause holds for every request of that credential, and the per-user run
stops (outcome ``paused``) and is sent again for when it ends, without using a retry.

Secrets: nothing here puts a URL (Google sends sync and page tokens in the query string), a
header or a body into an exception message or a log line; errors name an operation instead.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any
from urllib.parse import parse_qsl

import httpx
from tenacity import (
    RetryCallState,
    Retrying,
    retry_if_exception,
    stop_after_attempt,
)

from bgworkers.errors import PermanentError, PermanentHTTPError, TransientHTTPError
from bgworkers.logs.loggers import get_logger, quiet_http_client_logs, redact_text
from bgworkers.logs.redaction import scrub_known
from bgworkers.processes.process_resources import ProcessResource
from bgworkers.settings import Settings
from bgworkers.sync.metrics import SYNC_METRICS
from bgworkers.sync.shared_limits import RateLimitedLater
from bgworkers.tracing.spans import client_span, set_http_status

log = get_logger(__name__)

#: Google answers 403 (not 429) with these reasons when a quota is exceeded; retrying helps.
GOOGLE_RATE_LIMIT_REASONS = frozenset({"rateLimitExceeded", "userRateLimitExceeded"})


class AuthenticationFailed(PermanentHTTPError):
    """401: the provider refused the access token (Google: refresh it and try once more)."""


class ReauthorizationRequired(AuthenticationFailed):
    """The credentials are refused even after a refresh, or the refresh token is revoked."""


class ResourceGone(PermanentHTTPError):
    """410 Gone: for Google Calendar, the sync token expired and a full sync is required."""


class UnexpectedResponse(PermanentError):
    """A 2xx answer that does not have the documented shape; a retry would get the same."""


# --- the per-process client -----------------------------------------------------------------

_CLIENT: ProcessResource[httpx.Client] = ProcessResource(
    "sync_http_client", close=lambda client: client.close()
)


def build_client(
    settings: Settings, *, transport: httpx.BaseTransport | None = None
) -> httpx.Client:
    """An httpx client with explicit timeouts (seconds) and a bounded connection pool.

    Tests pass a ``transport`` (``httpx.MockTransport`` with a fake API); production passes none.
    """
    quiet_http_client_logs()
    timeout = httpx.Timeout(settings.http_timeout_s, connect=min(settings.http_timeout_s, 5.0))
    return httpx.Client(
        timeout=timeout,
        limits=httpx.Limits(max_connections=20, max_keepalive_connections=10),
        headers={"User-Agent": "bgworkers-sync"},
        transport=transport,
        follow_redirects=False,
    )


def get_client(settings: Settings) -> httpx.Client:
    """This process's client, created on first use (never at import, never per message)."""
    return _CLIENT.get(lambda: build_client(settings))


def use_client(client: httpx.Client | None) -> None:
    """Replace this process's client (tests point it at a fake API); None forgets it."""
    _CLIENT.replace(client)


def close_client() -> None:
    """Close this process's client, if any; also done at worker shutdown."""
    _CLIENT.close()


# --- classification -------------------------------------------------------------------------


def parse_retry_after(value: str | None, *, now: datetime | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header (delta-seconds or an HTTP date), or None."""
    if value is None or not value.strip():
        return None
    value = value.strip()
    try:
        return max(float(value), 0.0)
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max((when - (now or datetime.now(UTC))).total_seconds(), 0.0)


def error_reason(response: httpx.Response) -> str:
    """A short, secret-free reason from an error body (Google's ``reason``, Notion's ``code``)."""
    try:
        body: Any = response.json()
    except ValueError:
        return ""
    if not isinstance(body, dict):
        return ""
    error = body.get("error")
    if isinstance(error, dict):  # Google: {"error": {"errors": [{"reason": ...}], ...}}
        errors = error.get("errors")
        if isinstance(errors, list) and errors and isinstance(errors[0], dict):
            return str(errors[0].get("reason", ""))[:64]
        return str(error.get("status", ""))[:64]
    if isinstance(error, str):  # OAuth token endpoint: {"error": "invalid_grant"}
        return error[:64]
    return str(body.get("code", ""))[:64]  # Notion: {"object": "error", "code": ...}


#: What a provider's error code looks like (``rateLimitExceeded``, ``invalid_grant``).
_REASON_SHAPE = re.compile(r"[A-Za-z0-9_.:-]{1,64}")


def credentials_of(request: httpx.Request) -> list[str]:
    """The credential values ``request`` carried: its bearer token, and the values of a
    form body (the OAuth refresh sends the refresh token and the client secret there)."""
    values: list[str] = []
    _scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    if token:
        values.append(token)
    if request.headers.get("Content-Type", "").startswith("application/x-www-form-urlencoded"):
        values.extend(v for _, v in parse_qsl(request.content.decode("utf-8", "replace")))
    return values


def safe_reason(response: httpx.Response) -> str:
    """:func:`error_reason`, with any credential the request carried scrubbed out, and
    anything that does not look like an error code replaced by ``unrecognised``.

    Providers echo what they were sent: a reason or code field holding the access token
    would otherwise go into the exception, the log and ``calendar_connections.last_error``.
    """
    reason = error_reason(response)
    if not reason:
        return ""
    try:
        request = response.request
    except RuntimeError:  # a hand-made response (tests): no request, nothing to scrub
        pass
    else:
        reason = scrub_known(reason, credentials_of(request))
    return reason if _REASON_SHAPE.fullmatch(reason) else "unrecognised"


def raise_for_status(response: httpx.Response, *, operation: str) -> None:
    """Raise the error that says what a non-2xx answer means for a retry; return on 2xx."""
    status = response.status_code
    if 200 <= status < 300:
        return
    reason = safe_reason(response)
    message = f"{operation}: HTTP {status}" + (f" ({reason})" if reason else "")
    retry_after = parse_retry_after(response.headers.get("Retry-After"))
    if status in (408, 429) or status >= 500:
        raise TransientHTTPError(message, status_code=status, retry_after_s=retry_after)
    if status == 403 and reason in GOOGLE_RATE_LIMIT_REASONS:
        raise TransientHTTPError(message, status_code=status, retry_after_s=retry_after)
    if status == 401:
        raise AuthenticationFailed(message, status_code=status)
    if status == 410:
        raise ResourceGone(message, status_code=status)
    raise PermanentHTTPError(message, status_code=status)


#: Seconds a credential is paused after a rate-limit answer without ``Retry-After``.
DEFAULT_RATE_LIMIT_PAUSE_S = 1.0


def is_rate_limited(response: httpx.Response) -> bool:
    """A 429, or Google's 403 whose reason says a quota was exceeded."""
    if response.status_code == 429:
        return True
    return response.status_code == 403 and safe_reason(response) in GOOGLE_RATE_LIMIT_REASONS


# --- in-request retries ---------------------------------------------------------------------


@dataclass(frozen=True)
class RequestRetryPolicy:
    """How one request is retried inside a message; times in seconds.

    ``max_inline_wait_s`` is the longest wait slept in the worker thread; a ``Retry-After``
    longer than that goes back to the broker at once. ``sleep`` is injected by tests.
    """

    max_attempts: int = 3
    max_inline_wait_s: float = 5.0
    base_backoff_s: float = 0.5
    sleep: Callable[[float], None] = field(default=time.sleep)

    @classmethod
    def from_settings(cls, settings: Settings) -> RequestRetryPolicy:
        return cls(
            max_attempts=settings.sync_http_max_attempts,
            max_inline_wait_s=settings.sync_http_max_inline_wait_s,
        )

    def wait_for(self, attempt_number: int, error: BaseException | None) -> float:
        if isinstance(error, TransientHTTPError) and error.retry_after_s is not None:
            return float(error.retry_after_s)
        return min(self.base_backoff_s * 2.0 ** (attempt_number - 1), self.max_inline_wait_s)

    def retries_inline(self, error: BaseException) -> bool:
        if not isinstance(error, TransientHTTPError):
            return False
        return error.retry_after_s is None or error.retry_after_s <= self.max_inline_wait_s


def send(
    client: httpx.Client,
    build: Callable[[], httpx.Request],
    *,
    operation: str,
    provider: str,
    policy: RequestRetryPolicy,
    before_attempt: Callable[[], None] | None = None,
    on_rate_limited: Callable[[float], None] | None = None,
) -> httpx.Response:
    """Send the request ``build()`` makes, retrying transient failures per ``policy``.

    ``before_attempt`` runs before every attempt (a rate limiter). ``on_rate_limited`` is
    told the seconds to hold off (``Retry-After``, else :data:`DEFAULT_RATE_LIMIT_PAUSE_S`)
    when the provider answers that a rate limit was hit, so the limiter pauses the credential
    everywhere; the request is then not retried here but raises
    :class:`~bgworkers.sync.shared_limits.RateLimitedLater`: the run hands its work back to
    the broker for after the pause, where sleeping through it would park a worker thread
    that other credentials' work is waiting for. Returns a 2xx response; raises the
    classified error otherwise (see the module docstring).
    """
    metrics = SYNC_METRICS.get()

    def wait(state: RetryCallState) -> float:
        error = state.outcome.exception() if state.outcome else None
        return policy.wait_for(state.attempt_number, error)

    def before_sleep(state: RetryCallState) -> None:
        error = state.outcome.exception() if state.outcome else None
        status = getattr(error, "status_code", None)
        metrics.http_retries.labels(provider, "inline").inc()
        log.warning(
            "sync_http_retry",
            provider=provider,
            operation=operation,
            status_code=status,
            attempt=state.attempt_number,
            wait_s=round(state.upcoming_sleep, 3),
        )

    retrying = Retrying(
        stop=stop_after_attempt(policy.max_attempts),
        wait=wait,
        retry=retry_if_exception(policy.retries_inline),
        sleep=policy.sleep,
        before_sleep=before_sleep,
        reraise=True,
    )
    for attempt in retrying:
        with attempt:
            if before_attempt is not None:
                before_attempt()
            response = _send_once(client, build(), operation=operation, provider=provider)
            if on_rate_limited is not None and is_rate_limited(response):
                retry_after = parse_retry_after(response.headers.get("Retry-After"))
                pause_s = DEFAULT_RATE_LIMIT_PAUSE_S if retry_after is None else retry_after
                on_rate_limited(pause_s)
                raise RateLimitedLater(
                    f"{operation}: HTTP {response.status_code} (rate limited)",
                    retry_after_s=pause_s,
                )
            raise_for_status(response, operation=operation)
            return response
    raise AssertionError("unreachable: tenacity re-raises the last error")  # pragma: no cover


def _send_once(
    client: httpx.Client, request: httpx.Request, *, operation: str, provider: str
) -> httpx.Response:
    with client_span(request.method, _span_attributes(request, operation, provider)) as span:
        metrics = SYNC_METRICS.get()
        try:
            response = client.send(request)
            response.read()
        except httpx.TransportError as exc:
            metrics.http_requests.labels(provider, "transport_error").inc()
            detail = redact_text(scrub_known(str(exc), credentials_of(request)))[:200]
            raise TransientHTTPError(f"{operation}: {type(exc).__name__}: {detail}") from None
        metrics.http_requests.labels(provider, f"{response.status_code // 100}xx").inc()
        set_http_status(span, response.status_code)
        return response


def _span_attributes(request: httpx.Request, operation: str, provider: str) -> dict[str, Any]:
    # No path or query: Google sends sync tokens in the query, calendar ids in the path.
    return {
        "http.request.method": request.method,
        "server.address": request.url.host,
        "server.port": request.url.port or (443 if request.url.scheme == "https" else 80),
        "bgworkers.provider": provider,
        "bgworkers.operation": operation,
    }


def json_object(response: httpx.Response, *, operation: str) -> dict[str, Any]:
    """The response body as a JSON object, or :class:`UnexpectedResponse`."""
    try:
        body = response.json()
    except ValueError:
        raise UnexpectedResponse(f"{operation}: body is not JSON") from None
    if not isinstance(body, dict):
        raise UnexpectedResponse(f"{operation}: body is not a JSON object")
    return body
