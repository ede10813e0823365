"""The one typed settings object of bgworkers, read from ``BGW_*`` environment variables.

Why one object: entry points (the worker, the scheduler, the admin command) read it once and
pass it down, so domain code never looks at ``os.environ`` and tests build their own instance.
A bad value fails at start with pydantic's message, which names the variable (see
:func:`load_settings`). Every field is documented in ``docs/configuration.md``.
"""

from __future__ import annotations

import functools
import os
import re
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import (
    AnyUrl,
    Field,
    SecretStr,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, SettingsConfigDict, SettingsError

from bgworkers.errors import ConfigurationError

ENV_PREFIX = "BGW_"
#: Seconds; the time limit of the ``send_email`` actor (one claimed SMTP attempt).
SEND_EMAIL_TIME_LIMIT_S = 120
#: Directory settings that, when relative, live under ``BGW_DATA_DIR``.
DATA_DIR_PATHS = ("metrics_dir", "temp_dir", "backup_dir")
#: Characters of an unknown ``BGW_TIMEZONE`` quoted in its error (the line stays one line).
_MAX_ZONE_SHOWN = 64
#: Quorum queues: redeliveries of one message before it is dead-lettered
#: (see docs/scaling.md, "Queue types").
DEFAULT_DELIVERY_LIMIT = 20
#: Below this a few worker restarts during one retry delay would dead-letter healthy messages.
MIN_DELIVERY_LIMIT = 5
BROKER_URL_SCHEMES = ("amqp", "amqps")


def broker_urls(text: str) -> list[str]:
    """The URLs of ``BGW_BROKER_URL`` (``;``-separated, spaces around them ignored), parsed
    here so that the setting is checked by the brokers' own parser; :class:`ConfigurationError`
    for an empty list or a URL that is not AMQP."""
    urls = [part.strip() for part in text.split(";") if part.strip()]
    if not urls:
        raise ConfigurationError("BGW_BROKER_URL is empty; give one or more amqp:// URLs")
    for url in urls:
        scheme = url.split("://", 1)[0].lower() if "://" in url else ""
        if scheme not in BROKER_URL_SCHEMES:
            raise ConfigurationError(
                f"BGW_BROKER_URL: {describe_url(url)!r} is not an amqp:// or amqps:// URL "
                "(several nodes are separated by ';')"
            )
    return urls


def broker_addresses(text: str) -> list[str]:
    """``host:port`` of each node of ``BGW_BROKER_URL`` (no user, no password); raises as
    :func:`broker_urls` does, or ``ValueError`` for a port that is not a number."""
    addresses = []
    for url in broker_urls(text):
        parts = urlsplit(url)
        port = parts.port or (5671 if parts.scheme.lower() == "amqps" else 5672)
        if parts.hostname:
            addresses.append(f"{parts.hostname}:{port}")
    return addresses


def describe_url(url: str) -> str:
    """The URL with its user and password removed (for a message about a malformed one)."""
    scheme, sep, rest = url.partition("://")
    if not sep:
        return url[:80]
    return f"{scheme}://{rest.rpartition('@')[2]}"[:120]


def default_data_dir() -> Path:
    """``$XDG_DATA_HOME/bgworkers`` (``~/.local/share/bgworkers``): the same for every folder.

    Why not the working directory: the same script run from another folder would otherwise
    create a second, empty SQLite database and fail with "no such table".
    """
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "bgworkers"


class Settings(BaseSettings):
    """All configuration; field ``foo_bar`` is read from ``BGW_FOO_BAR``."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        env_file=".env",
        env_file_encoding="utf-8",
        extra="ignore",
        frozen=True,
    )

    # --- platform -------------------------------------------------------------------------
    #: One URL, or several nodes of one cluster separated by ``;`` (tried in that order).
    broker_url: SecretStr = SecretStr("amqp://guest:guest@127.0.0.1:5672/")
    #: ``quorum``: replicated queues for a RabbitMQ cluster; switching needs a migration
    #: (docs/scaling.md).
    queue_type: Literal["classic", "quorum"] = "classic"
    #: Quorum queues: redeliveries before a message is dead-lettered (docs/scaling.md).
    queue_delivery_limit: int = Field(
        default=DEFAULT_DELIVERY_LIMIT, ge=MIN_DELIVERY_LIMIT, le=1000
    )
    #: Where bgworkers keeps its files (SQLite database, metrics, temp files, backups); always
    #: absolute once loaded. ``make run`` and the tests use the repository's ``var/``.
    data_dir: Path = Field(default_factory=default_data_dir)
    #: Default: ``sqlite:///<data_dir>/bgworkers.db``.
    database_url: SecretStr = SecretStr("sqlite:///bgworkers.db")
    database_echo: bool = False
    #: PostgreSQL ends a session idle inside a transaction this long (0: never): a cut-off
    #: host would keep its row locks for hours (docs/configuration.md).
    database_idle_transaction_timeout_s: float = Field(default=60.0, ge=0)
    #: With tracing on (``OTEL_*``), a CLIENT span per SQL statement (no text, no values).
    trace_sql: bool = False
    #: ``auto``: readable console lines on a terminal, JSON lines otherwise.
    log_format: Literal["auto", "json", "console"] = "auto"
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"] = "INFO"
    metrics_host: str = "127.0.0.1"
    metrics_port: int = Field(default=9191, ge=1, le=65535)
    metrics_dir: Path = Path("metrics")
    scheduler_metrics_port: int = Field(default=9192, ge=1, le=65535)
    relay_metrics_port: int = Field(default=9193, ge=1, le=65535)
    #: RabbitMQ's management API (``http://127.0.0.1:15672``; docs/configuration.md).
    rabbitmq_management_url: str | None = None
    queue_depth_interval_s: float = Field(default=15.0, ge=1)
    #: Seconds one readiness check (RabbitMQ, database) may take before it counts as failed.
    readiness_timeout_s: float = Field(default=2.0, gt=0, le=60)
    #: Seconds between two runs of the readiness checks behind ``/readyz``.
    readiness_interval_s: float = Field(default=3.0, ge=0.5, le=300)
    timezone: str = "UTC"

    # Retry policy defaults; an actor may override each one.
    retry_max_retries: int = Field(default=5, ge=0, le=50)
    retry_min_backoff_ms: int = Field(default=5_000, ge=10)
    # 5 minutes: far below RabbitMQ's 30-minute consumer_timeout, which closes the channel of
    # a worker that keeps a delayed message unacknowledged longer than that.
    retry_max_backoff_ms: int = Field(default=300_000, ge=10, le=1_200_000)
    time_limit_ms: int = Field(default=300_000, ge=1_000)
    #: Bytes; larger messages are refused at enqueue and dead-lettered at consume.
    message_max_bytes: int = Field(default=1_048_576, ge=1_024, le=16_777_216)

    # --- email ----------------------------------------------------------------------------
    smtp_host: str = "127.0.0.1"
    smtp_port: int = Field(default=25, ge=1, le=65535)
    smtp_security: Literal["none", "starttls", "ssl"] = "none"
    smtp_username: str | None = None
    smtp_password: SecretStr | None = None
    smtp_timeout_s: float = Field(default=30.0, gt=0)
    email_from: str = "assistant@localhost"
    email_backend: Literal["smtp", "console"] = "smtp"
    email_sending_timeout_s: float = Field(default=600.0, gt=0)
    email_max_attempts: int = Field(default=10, ge=1, le=100)

    @model_validator(mode="before")
    @classmethod
    def _place_files_in_the_data_dir(cls, data: Any) -> Any:
        """Resolve the data directory once, and relative directories and the default
        database against it, so no file location depends on the working directory."""
        if not isinstance(data, dict):
            return data
        data_dir = Path(data.get("data_dir") or default_data_dir()).expanduser()
        # Only a relative path reads the working directory (which may be gone: a cron job in
        # a removed release directory still loads its settings with an absolute one).
        data_dir = data_dir if data_dir.is_absolute() else Path.cwd() / data_dir
        data["data_dir"] = data_dir
        if not data.get("database_url"):
            data["database_url"] = f"sqlite:///{data_dir / 'bgworkers.db'}"
        for name in DATA_DIR_PATHS:
            value = data.get(name) or cls.model_fields[name].default
            data[name] = data_dir / Path(value).expanduser()
        return data

    @field_validator("email_sending_timeout_s")
    @classmethod
    def _sending_timeout_outlasts_a_send(cls, value: float, info: ValidationInfo) -> float:
        # A row is recovered from ``sending`` after this timeout; a sender may still be
        # talking to SMTP until its time limit plus one SMTP timeout: a duplicate email.
        # (A field validator, not a model one, so the error names the variable.)
        smtp_timeout_s = info.data.get("smtp_timeout_s")
        if smtp_timeout_s is None:
            return value  # smtp_timeout_s is invalid itself and reported on its own
        floor = SEND_EMAIL_TIME_LIMIT_S + smtp_timeout_s
        if value <= floor:
            raise ValueError(
                f"BGW_EMAIL_SENDING_TIMEOUT_S ({value:g} s) must be more than send_email's "
                f"time limit ({SEND_EMAIL_TIME_LIMIT_S} s) plus BGW_SMTP_TIMEOUT_S "
                f"({smtp_timeout_s:g} s), i.e. more than {floor:g} s; otherwise an email "
                "still being sent is sent again"
            )
        return value

    # --- files ----------------------------------------------------------------------------
    temp_dir: Path = Path("tmp")
    temp_max_age_hours: float = Field(default=24.0, gt=0)
    backup_dir: Path = Path("backups")
    backup_keep: int = Field(default=4, ge=1)
    temp_cleanup_dry_run: bool = False
    backup_fanout_batch_size: int = Field(default=500, ge=1, le=10_000)

    # --- maintenance ----------------------------------------------------------------------
    session_cleanup_batch_size: int = Field(default=1_000, ge=1, le=100_000)
    sqlite_vacuum_min_free_ratio: float = Field(default=0.1, ge=0, le=1)
    sqlite_vacuum_min_free_bytes: int = Field(default=1_048_576, ge=0)

    # --- sync -----------------------------------------------------------------------------
    google_api_base_url: AnyUrl = AnyUrl("https://www.googleapis.com/calendar/v3")
    google_token_url: AnyUrl = AnyUrl("https://oauth2.googleapis.com/token")
    google_client_id: str = ""
    google_client_secret: SecretStr = SecretStr("")
    notion_api_base_url: AnyUrl = AnyUrl("https://api.notion.com")
    notion_version: str = "2022-06-28"
    #: Requests per second per Notion connection (token), for all processes and hosts together.
    notion_requests_per_second: float = Field(default=2.5, gt=0, le=100)
    #: Optional cap on all Notion requests per second, every token together; 0 is none.
    notion_global_requests_per_second: float = Field(default=0.0, ge=0)
    #: Requests per second per Google user (their quota: 600 per minute per user).
    google_requests_per_second_per_user: float = Field(default=5.0, gt=0, le=1000)
    #: Cap on all Google Calendar requests per second (the project's quota); 0 is none.
    google_requests_per_second: float = Field(default=100.0, ge=0)
    #: Share of each rate a process allows itself while the shared store is unreachable.
    rate_limit_fallback_share: float = Field(default=0.1, gt=0, le=1)
    #: Days a credential's shared rate-limit row may stay unused before the daily
    #: ``prune_rate_limit_rows`` deletes it.
    rate_limit_row_idle_days: float = Field(default=30.0, gt=0, le=3650)
    http_timeout_s: float = Field(default=10.0, gt=0)
    sync_http_max_attempts: int = Field(default=3, ge=1, le=10)
    sync_http_max_inline_wait_s: float = Field(default=5.0, ge=0, le=60)
    sync_fanout_batch_size: int = Field(default=500, ge=1, le=10_000)
    #: Users per calendar sync message (one transaction per page; docs/configuration.md).
    sync_page_size: int = Field(default=50, ge=1, le=500)
    #: Requests a worker process has in flight at once for its pages (a thread pool).
    sync_page_concurrency: int = Field(default=32, ge=1, le=256)
    #: Seconds a per-user sync runs before it yields its thread and queues the rest of its
    #: listing behind other users' work; 0 never yields.
    sync_time_slice_s: float = Field(default=30.0, ge=0, le=3600)
    #: Seconds a connection's runs may stay paused by a rate-limit storm before the chain of
    #: re-sends stops; about the shortest sync schedule (the calendar's hour).
    sync_max_pause_s: float = Field(default=3600.0, gt=0, le=86_400)
    #: Per-user jobs (syncs, backups) of one user running at once, across every process and
    #: host (PostgreSQL); 0 is no cap.
    max_concurrent_jobs_per_user: int = Field(default=2, ge=0, le=100)

    # --- outbox ---------------------------------------------------------------------------
    outbox_relay_enabled: bool = True
    outbox_batch_size: int = Field(default=5_000, ge=1, le=10_000)
    outbox_poll_interval_s: float = Field(default=0.5, gt=0, le=60)
    outbox_lease_s: float = Field(default=15.0, ge=1, le=600)
    outbox_retention_hours: float = Field(default=72.0, gt=0)
    # --- console --------------------------------------------------------------------------
    # The web console (``bgworkers console``); see docs/console.md. It refuses to start without
    # a token or a user and password, unless run with --no-auth on a loopback address.
    console_host: str = "127.0.0.1"
    console_port: int = Field(default=9195, ge=1, le=65535)
    console_token: SecretStr | None = None
    console_user: str | None = None
    console_password: SecretStr | None = None
    #: Signs the session cookie; a random key per start when unset (a restart logs everyone out).
    console_session_secret: SecretStr | None = None
    console_session_max_age_s: int = Field(default=8 * 3600, ge=60, le=30 * 86400)
    #: Send the session cookie over HTTPS only (set it when a TLS proxy is in front).
    console_cookie_secure: bool = False

    # --- scheduling -----------------------------------------------------------------------
    #: Per-job cron override or "off", as JSON (docs/configuration.md); checked against the
    #: schedule table by :func:`bgworkers.scheduling.schedule.check_overrides`.
    schedule_overrides: dict[str, str] = Field(default_factory=dict)
    #: Test only: the scheduler acts as if the time were now + this many (whole) seconds.
    scheduler_clock_offset_s: float = 0.0

    @field_validator("broker_url")
    @classmethod
    def _amqp_urls(cls, value: SecretStr) -> SecretStr:
        try:
            broker_urls(value.get_secret_value())
        except ConfigurationError as exc:
            raise ValueError(str(exc).removeprefix("BGW_BROKER_URL: ")) from None
        return value

    @field_validator("timezone")
    @classmethod
    def _known_timezone(cls, value: str) -> str:
        # OSError too: a folder of the zone database ("Europe") or a name too long for a file
        # makes ZoneInfo fail reading the file; such a name is as unknown as "Mars/Olympus".
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError, OSError):
            shown = value if len(value) <= _MAX_ZONE_SHOWN else f"{value[:_MAX_ZONE_SHOWN]}..."
            raise ValueError(f"unknown IANA time zone {shown!r}") from None
        return value

    @property
    def tzinfo(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)


def load_settings(**overrides: object) -> Settings:
    """Read the settings; raise :class:`ConfigurationError` naming each bad variable."""
    try:
        return Settings(**overrides)  # type: ignore[arg-type]
    except ValidationError as exc:
        problems = "; ".join(
            f"{ENV_PREFIX}{str(err['loc'][0]).upper()}: {err['msg']}" for err in exc.errors()
        )
        raise ConfigurationError(f"invalid configuration: {problems}") from None
    except SettingsError as exc:
        # A value that is not even parseable (``BGW_SCHEDULE_OVERRIDES='not json'``): pydantic
        # reports it before validation, naming the field only inside its message.
        match = re.search(r'field "([a-z_]+)"', str(exc))
        problem = str(exc)
        if match:
            problem = f"{ENV_PREFIX}{match[1].upper()}: not valid JSON (expected a JSON object)"
        raise ConfigurationError(f"invalid configuration: {problem}") from None


@functools.cache
def get_settings() -> Settings:
    """The process's settings, read once (entry points call this; library code takes them)."""
    return load_settings()
