from datetime import UTC, datetime

import pytest

from bgworkers.errors import PermanentError
from bgworkers.reminders.validation import (
    MAX_TEXT_LENGTH,
    ReminderValidationError,
    validate_reminder,
    validate_text,
)

NOW = datetime(2026, 11, 25, 9, 0, tzinfo=UTC)


def problems_of(**kwargs: object) -> list[str]:
    arguments: dict[str, object] = {
        "text": "Call the dentist",
        "due_at": datetime(2026, 11, 26, 10, 0),
        "timezone": "Europe/Paris",
        "recurrence": None,
        "now": NOW,
    }
    arguments.update(kwargs)
    with pytest.raises(ReminderValidationError) as caught:
        validate_reminder(**arguments)  # type: ignore[arg-type]
    assert isinstance(caught.value, PermanentError)
    return caught.value.problems


def test_naive_time_is_read_in_the_users_zone() -> None:
    valid = validate_reminder(
        text="  Call the dentist \n",
        due_at=datetime(2026, 11, 26, 10, 0),
        timezone="Europe/Paris",
        recurrence=" weekly:mon,thu ",
        now=NOW,
    )
    assert valid.due_at == datetime(2026, 11, 26, 9, 0, tzinfo=UTC)
    assert valid.text == "Call the dentist"
    assert valid.recurrence == "weekly:mon,thu"


def test_aware_time_is_kept_as_the_instant() -> None:
    due = datetime(2026, 11, 26, 10, 0, tzinfo=UTC)
    valid = validate_reminder(text="x", due_at=due, timezone="Asia/Tokyo", recurrence=None, now=NOW)
    assert valid.due_at == due
    assert valid.rule is None


def test_rejects_the_past() -> None:
    [problem] = problems_of(due_at=datetime(2026, 11, 25, 9, 59))  # 08:59 UTC
    assert problem == "The time 25 Nov 2026 09:59 (Europe/Paris) is in the past; " + (
        "choose a time in the future."
    )


def test_rejects_unknown_zone() -> None:
    [problem] = problems_of(timezone="Mars/Olympus_Mons")
    assert "'Mars/Olympus_Mons' is not a known time zone" in problem


@pytest.mark.parametrize(
    "name", ["Europe", "__pycache__", "x" * 300], ids=["folder", "package", "long"]
)
def test_rejects_a_name_that_is_a_folder_of_the_zone_database_or_no_file_name(name: str) -> None:
    """Such names make ``ZoneInfo`` raise OSError (a folder, a name too long for a file)."""
    [problem] = problems_of(timezone=name)
    assert f"{name!r} is not a known time zone" in problem


@pytest.mark.parametrize("text", ["", "   \n\t"])
def test_rejects_empty_text(text: str) -> None:
    assert problems_of(text=text) == [
        "The reminder text is empty; say what you want to be reminded of."
    ]


def test_rejects_oversized_text() -> None:
    [problem] = problems_of(text="a" * (MAX_TEXT_LENGTH + 234))
    assert problem == "The reminder text is too long (1,234 characters; the limit is 1,000)."
    validate_text("a" * MAX_TEXT_LENGTH)


def test_rejects_bad_recurrence() -> None:
    [problem] = problems_of(recurrence="every other tuesday")
    assert "is not understood" in problem


def test_rejects_recurrence_more_often_than_hourly() -> None:
    [problem] = problems_of(recurrence="cron:*/10 * * * *")
    assert problem == "A reminder cannot repeat more often than once an hour."
    validate_reminder(
        text="x",
        due_at=datetime(2026, 11, 26, 10, 0),
        timezone="UTC",
        recurrence="cron:0 * * * *",
        now=NOW,
    )


def test_rejects_a_local_time_skipped_by_dst() -> None:
    [problem] = problems_of(due_at=datetime(2027, 3, 28, 2, 30))
    assert "02:30 on 28 Mar 2027 does not exist in Europe/Paris" in problem


def test_ambiguous_local_time_takes_the_first_instance() -> None:
    valid = validate_reminder(
        text="x",
        due_at=datetime(2027, 10, 31, 2, 30),
        timezone="Europe/Paris",
        recurrence=None,
        now=NOW,
    )
    assert valid.due_at == datetime(2027, 10, 31, 0, 30, tzinfo=UTC)


def test_collects_every_problem() -> None:
    problems = problems_of(text="", due_at=datetime(2020, 1, 1), recurrence="hourly-ish")
    assert len(problems) == 3


def test_rejects_unknown_channel() -> None:
    assert problems_of(channel="sms") == ["Reminders can only be delivered by email, not by 'sms'."]


@pytest.mark.parametrize("expression", ["0 9 31 2 *", "0 9 30 2 *"])
def test_rejects_a_cron_rule_that_never_fires(expression: str) -> None:
    [problem] = problems_of(recurrence=f"cron:{expression}")
    assert f"The cron expression {expression!r} never fires" in problem


def test_due_time_just_before_a_daily_cron_is_not_too_frequent() -> None:
    """08:59 with ``cron:0 9 * * *``: the first occurrence is 09:00, then every day."""
    valid = validate_reminder(
        text="x",
        due_at=datetime(2026, 11, 26, 8, 59),
        timezone="Europe/Paris",
        recurrence="cron:0 9 * * *",
        now=NOW,
    )
    assert valid.due_at == datetime(2026, 11, 26, 8, 0, tzinfo=UTC)  # 09:00 in Paris


@pytest.mark.parametrize("recurrence", ["weekly:mon", "cron:0 10 * * 1"])
def test_due_time_off_the_weekly_schedule_first_fires_on_the_schedule(recurrence: str) -> None:
    valid = validate_reminder(
        text="x",
        due_at=datetime(2026, 12, 1, 10, 0),  # a Tuesday
        timezone="Europe/Paris",
        recurrence=recurrence,
        now=NOW,
    )
    assert valid.due_at == datetime(2026, 12, 7, 9, 0, tzinfo=UTC)  # Monday 10:00 in Paris
