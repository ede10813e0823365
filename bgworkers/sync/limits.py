"""Which shared rate limits each provider's requests are subject to, from the settings.

Notion limits each connection (integration token) to an average of three requests per second
(developers.notion.com, "Request limits"); Google Calendar has a per-user and a per-project
quota per minute (developers.google.com, Calendar API "Usage limits": 600 and 10,000). The
rates are the settings' (``docs/configuration.md``); the limiter that enforces them across
processes and hosts is :mod:`bgworkers.sync.shared_limits`.
"""

from __future__ import annotations

from bgworkers.db.engine import get_engine
from bgworkers.processes.process_resources import ProcessResource
from bgworkers.settings import Settings
from bgworkers.sync.shared_limits import (
    CredentialThrottle,
    Limit,
    SharedLimiter,
    SlotStore,
    credential_key,
)

_SHARED: ProcessResource[SharedLimiter] = ProcessResource("shared_rate_limiter")


def shared_limiter(settings: Settings) -> SharedLimiter:
    """This process's limiter over the database's slot table, made on first use (and again
    when the process's engine was replaced, as tests do)."""
    engine = get_engine(settings)

    def build() -> SharedLimiter:
        return SharedLimiter(
            SlotStore(engine),
            fallback_share=settings.rate_limit_fallback_share,
            max_wait_s=settings.sync_http_max_inline_wait_s,
        )

    limiter = _SHARED.get(build)
    if limiter.store.engine is not engine:
        limiter = build()
        _SHARED.replace(limiter)
    return limiter


def use_shared_limiter(limiter: SharedLimiter | None) -> None:
    """Replace this process's limiter (tests); None forgets it."""
    _SHARED.replace(limiter)


def notion_limits(settings: Settings, token: str) -> list[Limit]:
    """The token's own limit, then the optional cap on all of Notion."""
    limits = [Limit(credential_key("notion", token), settings.notion_requests_per_second)]
    if settings.notion_global_requests_per_second > 0:
        limits.append(Limit("notion:all", settings.notion_global_requests_per_second))
    return limits


def google_limits(settings: Settings, user_id: int) -> list[Limit]:
    """The user's own quota, then the optional cap on the whole project."""
    limits = [Limit(f"google:user:{user_id}", settings.google_requests_per_second_per_user)]
    if settings.google_requests_per_second > 0:
        limits.append(Limit("google:all", settings.google_requests_per_second))
    return limits


def notion_throttle(settings: Settings, token: str) -> CredentialThrottle:
    return shared_limiter(settings).for_credential(notion_limits(settings, token))


def google_throttle(settings: Settings, user_id: int) -> CredentialThrottle:
    return shared_limiter(settings).for_credential(google_limits(settings, user_id))
