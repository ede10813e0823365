from pathlib import Path

import pytest

from bgworkers.errors import ConfigurationError
from bgworkers.settings import ENV_PREFIX, Settings, load_settings

DOC = Path(__file__).resolve().parents[1] / "docs" / "configuration.md"


def test_every_setting_is_documented() -> None:
    text = DOC.read_text()
    missing = [
        f"{ENV_PREFIX}{name.upper()}"
        for name in Settings.model_fields
        if f"`{ENV_PREFIX}{name.upper()}`" not in text
    ]
    assert missing == []


def test_a_bad_value_names_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BGW_METRICS_PORT", "70000")
    monkeypatch.setenv("BGW_TIMEZONE", "Mars/Olympus")
    with pytest.raises(ConfigurationError) as caught:
        load_settings()
    message = str(caught.value)
    assert "BGW_METRICS_PORT" in message
    assert "BGW_TIMEZONE: Value error, unknown IANA time zone 'Mars/Olympus'" in message


@pytest.mark.parametrize(
    ("zone", "shown"),
    [("Europe", "'Europe'"), ("A" * 300, f"'{'A' * 64}...'")],
    ids=["folder", "over_long"],
)
def test_a_zone_folder_or_an_over_long_name_is_an_unknown_zone(
    monkeypatch: pytest.MonkeyPatch, zone: str, shown: str
) -> None:
    """The zone database answers these with OSError (a folder, a name too long for a file)."""
    monkeypatch.setenv("BGW_TIMEZONE", zone)
    with pytest.raises(ConfigurationError) as caught:
        load_settings()
    assert str(caught.value) == (
        f"invalid configuration: BGW_TIMEZONE: Value error, unknown IANA time zone {shown}"
    )


def test_environment_is_read_with_the_prefix(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BGW_DATABASE_URL", "postgresql+psycopg://u:p@db/x")
    monkeypatch.setenv("BGW_LOG_FORMAT", "console")
    settings = load_settings()
    assert settings.database_url.get_secret_value() == "postgresql+psycopg://u:p@db/x"
    assert "p@db" not in repr(settings)
    assert settings.log_format == "console"


@pytest.mark.parametrize(
    "command", [["dramatiq", "bgworkers", "-p", "1", "-t", "1"], ["periodiq", "bgworkers"]]
)
def test_a_bad_setting_stops_the_operator_commands_with_a_plain_message(command: list[str]) -> None:
    import os
    import subprocess
    import sys
    from pathlib import Path

    env = {**os.environ, "BGW_LOG_LEVEL": "LOUD"}
    program = str(Path(sys.executable).parent / command[0])
    result = subprocess.run(
        [program, *command[1:]], env=env, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 2
    assert "bgworkers: invalid configuration: BGW_LOG_LEVEL" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize(
    "command", [["dramatiq", "bgworkers", "-p", "1", "-t", "1"], ["bgworkers", "schedule"]]
)
def test_a_zone_folder_stops_the_commands_with_the_unknown_zone_line(command: list[str]) -> None:
    import os
    import subprocess
    import sys
    from pathlib import Path

    env = {**os.environ, "BGW_TIMEZONE": "Europe"}
    program = str(Path(sys.executable).parent / command[0])
    result = subprocess.run(
        [program, *command[1:]], env=env, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 2
    line = "bgworkers: invalid configuration: BGW_TIMEZONE: Value error, unknown IANA time zone"
    assert f"{line} 'Europe'" in result.stderr.splitlines()
    assert "Traceback" not in result.stderr
