"""The one typed settings object of bgworkers, read from ``BGW_*`` environment variables.

Why one object: entry points (the worker, the scheduler, the admin command) read it once and
pass it down, so domain code never looks at ``os.environ`` and tests build their own instance.
A bad value fails at start with pydantic's message, which names the variable (see
:func:`load_settings`). Every field is documented in ``docs/configuration.md``.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import AnyUrl, Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from bgworkers.errors import ConfigurationError

ENV_PREFIX = "BGW_"


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
    broker_url: SecretStr = SecretStr("amqp://guest:guest@127.0.0.1:5672/")
    database_url: SecretStr = SecretStr("sqlite:///var/bgworkers.db")
    database_echo: bool = False
    log_format: Literal["json", "console"] = "json"
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"] = "INFO"
    metrics_host: str = "127.0.0.1"
    metrics_port: int = Field(default=9191, ge=1, le=65535)
    metrics_dir: Path = Path("var/metrics")
    timezone: str = "UTC"

    # Retry policy defaults; an actor may override each one.
    retry_max_retries: int = Field(default=5, ge=0, le=50)
    retry_min_backoff_ms: int = Field(default=5_000, ge=10)
    # 5 minutes: far below RabbitMQ's 30-minute consumer_timeout, which closes the channel of
    # a worker that keeps a delayed message unacknowledged longer than that.
    retry_max_backoff_ms: int = Field(default=300_000, ge=10, le=1_200_000)
    time_limit_ms: int = Field(default=300_000, ge=1_000)

    # --- email ----------------------------------------------------------------------------
    smtp_host: str = "127.0.0.1"
    smtp_port: int = Field(default=25, ge=1, le=65535)
    smtp_security: Literal["none", "starttls", "ssl"] = "none"
    smtp_username: str | None = None
    smtp_password: SecretStr | None = None
    smtp_timeout_s: float = Field(default=30.0, gt=0)
    email_from: str = "assistant@localhost"

    # --- files ----------------------------------------------------------------------------
    temp_dir: Path = Path("var/tmp")
    temp_max_age_hours: float = Field(default=24.0, gt=0)
    backup_dir: Path = Path("var/backups")
    backup_keep: int = Field(default=4, ge=1)

    # --- sync -----------------------------------------------------------------------------
    google_api_base_url: AnyUrl = AnyUrl("https://www.googleapis.com/calendar/v3")
    google_token_url: AnyUrl = AnyUrl("https://oauth2.googleapis.com/token")
    google_client_id: str = ""
    google_client_secret: SecretStr = SecretStr("")
    notion_api_base_url: AnyUrl = AnyUrl("https://api.notion.com")
    notion_version: str = "2022-06-28"
    notion_requests_per_second: float = Field(default=3.0, gt=0)
    http_timeout_s: float = Field(default=10.0, gt=0)

    @field_validator("timezone")
    @classmethod
    def _known_timezone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(f"unknown IANA time zone {value!r}") from exc
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


@functools.cache
def get_settings() -> Settings:
    """The process's settings, read once (entry points call this; library code takes them)."""
    return load_settings()
