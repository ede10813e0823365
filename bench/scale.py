"""The real jobs at scale: N users, a real worker group, timed until each job's effects show.

What runs, all on this machine:

- a PostgreSQL database of its own (``bench_scale_<random>`` on the server of
  ``BGW_TEST_POSTGRES_URL``), migrated with ``bgworkers migrate`` and dropped at the end;
- a RabbitMQ vhost of its own (``bench-scale-<random>`` on the broker of ``BGW_BROKER_URL``,
  through the management API or ``rabbitmqctl``), deleted at the end;
- ``dramatiq bgworkers -p P -t T`` (the group an operator runs), with an aiosmtpd sink as its
  SMTP server and a fake Google Calendar API (``--api-latency-ms``, every ``--throttle-every``-th
  request a 429 with ``Retry-After``) as its Google (``bench/_scale_servers.py``).

Seeding goes through the documented models and API: N users in a zone where it is now between
08:00 and 12:00 (so each is due a summary), a reminder for each of the first ``--reminders``
users (``create_reminder``), a calendar connection for the first ``--calendars`` users. Jobs
are triggered as an operator triggers them (``bgworkers jobs run JOB``), or, for plain emails,
by ``enqueue_email`` in one committed transaction, as the application sends them.

Phases, one after the other:

1. ``summaries``: ``send_daily_email_summary``; an effect is the summary accepted by SMTP;
2. ``reminders``: every reminder's occurrence is moved to the last minute and scheduled
   again (one UPDATE, the clock cannot be moved; so ``--phases reminders,reminders`` fires
   them twice, for the group's memory after a first burst) and ``check_due_reminders`` run;
   an effect is its email at SMTP;
3. ``emails``: ``--emails`` emails queued by ``enqueue_email``; an effect is the email at SMTP;
   ``--email-rounds`` rounds, each between two ceiling blasts (its fraction is of their mean;
   the median round is reported); ``--email-cpu`` adds who used the CPU (the sink, the bare
   client, the group, the whole machine) during the blasts and during each round, to show
   what bound the fraction;
4. ``calendar_first``/``calendar_incremental``: ``sync_calendar_events`` twice; an effect is a
   connection's ``last_synced_at`` moving past the trigger;
5. ``notion`` (only when named in ``--phases``, as the next two): ``sync_notion_pages`` over
   ``--calendars`` Notion connections, a token each; an effect as for the calendar;
6. ``backup``: ``backup_user_data``; an effect is a user's archive written;
7. ``temp_cleanup``: ``cleanup_temp_files`` over ``--temp-files`` files two days old; an
   effect is a file gone (timed by the poll that first misses it).

For each: seconds from the trigger to the first and the last effect, items per second (items /
time to the last effect), the p50/p99 of trigger-to-effect, the group's CPU (every process,
user + system) per item, and the group's peak RSS (``rss_growth``: the last phase's peak over
the first's). Before the phases, the ceilings of what we
do not own: a bare ``smtplib`` client on one connection against the same sink (the email
serialized once; the ``emails`` phase also measures it around each of its rounds), the fake API
with 64 threads of a bare ``httpx`` client (enough that the fake, not the client's threads,
is what limits), and committed single-row PostgreSQL inserts; each phase's rate is printed
as a fraction of its ceiling. Ends with ``name=value`` lines.

Usage: python bench/scale.py [--users 2000] [--processes 2] [--threads 8] [--phases ...]
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import smtplib
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import astuple, dataclass, field
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from pathlib import Path
from zoneinfo import ZoneInfo

import _scale_servers as servers
import httpx
from sqlalchemy import insert, text, update
from sqlalchemy.engine import Engine, make_url
from sqlmodel import Session, col, func, select
from stack_overhead import (
    MemorySampler,
    cpu_seconds,
    dramatiq_command,
    free_port,
    group_pids,
    metrics_answer,
    own_vhost,
    percentile,
    stop,
)

from bgworkers.db.engine import make_engine

DEFAULT_POSTGRES = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
PHASES = ("summaries", "reminders", "emails", "calendar_first", "calendar_incremental")
#: Phases run only when named in ``--phases`` (the default run's output stays under 60 lines).
EXTRA_PHASES = ("notion", "backup", "temp_cleanup", "calendar_per_user")
MIB = 1024 * 1024
#: The ceiling each phase's rate is a fraction of, by the first word of its name (the
#: backup and the temp cleanup have none we do not own: disk and database).
CEILING_OF = {
    "summaries": "smtp_ceiling_per_s",
    "reminders": "smtp_ceiling_per_s",
    "emails": "smtp_ceiling_per_s",
    "calendar": "api_ceiling_per_s",
    "notion": "api_ceiling_per_s",
}


# --- the database of its own -------------------------------------------------------------


@contextmanager
def own_database(server_url: str) -> Iterator[str]:
    """A fresh PostgreSQL database on the server of ``server_url``; yields its URL."""
    name = f"bench_scale_{uuid.uuid4().hex[:8]}"
    admin = make_engine(server_url).execution_options(isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield make_url(server_url).set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE "{name}" WITH (FORCE)'))
        admin.dispose()
        print(f"bench_database={name} (dropped)")


def summary_zone(now: datetime) -> str:
    """A fixed-offset zone where it is now between 08:00 and 12:00 (every user is due)."""
    for offset in range(-12, 15):
        name = f"Etc/GMT{'-' if offset > 0 else '+'}{abs(offset)}" if offset else "UTC"
        if 8 <= now.astimezone(ZoneInfo(name)).hour < 12:
            return name
    raise SystemExit("no zone is between 08:00 and 12:00 now")  # pragma: no cover


# --- seeding through the models and the API ----------------------------------------------


def seed(engine: Engine, args: argparse.Namespace) -> None:
    from bgworkers.reminders.api import create_reminder
    from bgworkers.sync.models import CalendarConnection, NotionConnection
    from bgworkers.users.models import User

    zone = summary_zone(datetime.now(UTC))
    started = time.perf_counter()
    with Session(engine) as session:
        # Set-based: the model's rows (its defaults filled in) in one INSERT per 10,000
        # users, instead of the unit of work tracking 100,000 objects.
        for first in range(0, args.users, 10_000):
            rows = [
                User(email=f"u{n}@example.org", display_name=f"User {n}", timezone=zone).model_dump(
                    exclude={"id"}
                )
                for n in range(first, min(first + 10_000, args.users))
            ]
            session.execute(insert(User), rows)
        session.commit()
        users_s = time.perf_counter() - started
        ids = list(session.exec(select(User.id).order_by(col(User.id))).all())
        due = datetime.now(UTC) + timedelta(hours=1)
        for user_id in ids[: args.reminders]:
            assert user_id is not None
            create_reminder(session=session, user_id=user_id, text="Call the bank", due_at=due)
        session.add_all(
            CalendarConnection(user_id=u, access_token=f"token-{u}", refresh_token="r")
            for u in ids[: args.calendars]
            if u is not None
        )
        if "notion" in args.phases:
            session.add_all(
                NotionConnection(user_id=u, access_token=f"secret_notion-{u}")
                for u in ids[: args.calendars]
                if u is not None
            )
        session.commit()
    print(
        f"seeded {args.users} users in {zone}, {args.reminders} reminders, "
        f"{args.calendars} calendar connections in {time.perf_counter() - started:.1f} s "
        f"(users {users_s:.1f} s)"
    )


# --- effects ----------------------------------------------------------------------------


class SinkLog:
    """Reads the SMTP sink's ``<time> <recipient>`` lines as they are appended."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.times: list[float] = []
        self._offset = 0

    def poll(self) -> int:
        with self.path.open() as f:
            f.seek(self._offset)
            chunk = f.read()
        complete = chunk[: chunk.rfind("\n") + 1]
        self._offset += len(complete.encode())
        self.times.extend(float(line.split(" ", 1)[0]) for line in complete.splitlines())
        return len(self.times)


@dataclass
class PhaseResult:
    name: str
    items: int
    done: int
    first_s: float
    last_s: float
    p50_s: float
    p99_s: float
    cpu_ms_per_item: float
    peak_rss_mib: float

    @property
    def rate(self) -> float:
        return self.done / self.last_s if self.last_s > 0 else 0.0

    def line(self) -> str:
        return (
            f"{self.name:<22} {self.done:>6}/{self.items:<6} first {self.first_s:7.2f} s  "
            f"last {self.last_s:7.2f} s  {self.rate:7.1f}/s  p50 {self.p50_s:6.1f} s  "
            f"p99 {self.p99_s:6.1f} s  cpu {self.cpu_ms_per_item:6.2f} ms/item  "
            f"peak RSS {self.peak_rss_mib:5.0f} MiB"
        )


def result_of(
    name: str, items: int, latencies: list[float], cpu_s: float, peak: float
) -> PhaseResult:
    ordered = sorted(latencies)
    if not ordered:
        return PhaseResult(name, items, 0, 0, 0, 0, 0, 0, peak)
    return PhaseResult(
        name=name,
        items=items,
        done=len(ordered),
        first_s=ordered[0],
        last_s=ordered[-1],
        p50_s=percentile(ordered, 0.5),
        p99_s=percentile(ordered, 0.99),
        cpu_ms_per_item=cpu_s * 1000 / len(ordered),
        peak_rss_mib=peak,
    )


@dataclass(frozen=True)
class CpuSnapshot:
    """CPU seconds used so far (``at``: monotonic seconds), for ``--email-cpu``."""

    at: float
    sink: float
    bench: float
    group: float
    machine: float

    @staticmethod
    def spent(interval: tuple[CpuSnapshot, CpuSnapshot]) -> CpuSnapshot:
        start, end = interval
        return CpuSnapshot(*(b - a for a, b in zip(astuple(start), astuple(end), strict=True)))

    def __add__(self, other: CpuSnapshot) -> CpuSnapshot:
        return CpuSnapshot(*(a + b for a, b in zip(astuple(self), astuple(other), strict=True)))


def machine_busy_seconds() -> float:
    """CPU seconds all cores spent busy since boot (``/proc/stat``: everything but idle and
    iowait): every process's, ours and the others' on the machine."""
    fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]]
    user, nice, system, _idle, _iowait, irq, softirq, steal = fields
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


# --- the run ----------------------------------------------------------------------------


@dataclass
class Bench:
    args: argparse.Namespace
    env: dict[str, str]
    engine: Engine
    sink: SinkLog
    workdir: Path
    group: subprocess.Popen[bytes] | None = None
    #: Seconds the last ``bgworkers jobs run`` took (part of the time to the first effect).
    command_s: float = 0.0
    #: Fractions of the ceiling measured around each round of a phase, by phase name (the
    #: report gives their median instead of the rate over the ceiling measured at start).
    fractions: dict[str, list[float]] = field(default_factory=dict)
    #: The SMTP sink's process, for ``--email-cpu``.
    sink_pid: int | None = None
    #: ``--email-cpu``: per round, the CPU split of the ceiling blasts and of the round.
    email_cpu: list[dict[str, float]] = field(default_factory=list)
    #: CPU used so far when the last emails round committed.
    round_cpu: CpuSnapshot | None = None

    def command(self, *words: str) -> None:
        """A ``bgworkers`` command as an operator types it."""
        cli = [sys.executable, "-m", "bgworkers.cli", *words]
        done = subprocess.run(cli, env=self.env, capture_output=True, timeout=120, check=False)
        if done.returncode:
            raise SystemExit(f"bgworkers {' '.join(words)}: {done.stderr.decode()[-2000:]}")

    def start_group(self) -> None:
        log = (self.workdir / "workers.log").open("ab")
        command = [
            *dramatiq_command(),
            "bgworkers",
            "-p",
            str(self.args.processes),
            "-t",
            str(self.args.threads),
        ]
        self.group = subprocess.Popen(command, env=self.env, stdout=log, stderr=log)
        deadline = time.monotonic() + 120
        while not metrics_answer(self.env):
            if self.group.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"the worker group did not start; see {self.workdir}/workers.log")
            time.sleep(0.2)
        pids = " ".join(str(p) for p in group_pids(self.group.pid))
        print(f"worker group: {' '.join(command)} (pids {pids})")

    def phase(
        self,
        name: str,
        items: int,
        trigger: Callable[[], float],
        effects: Callable[[float], list[float]],
    ) -> PhaseResult:
        """Trigger, then poll ``effects(t0)`` (latencies so far) until ``items`` or timeout."""
        assert self.group is not None
        with MemorySampler(self.group.pid, interval_s=0.5) as memory:
            cpu_before = cpu_seconds(group_pids(self.group.pid))
            t0 = trigger()
            deadline = time.time() + self.args.timeout_s
            latencies = effects(t0)
            while len(latencies) < items and time.time() < deadline:
                time.sleep(0.25)
                latencies = effects(t0)
            cpu = cpu_seconds(group_pids(self.group.pid)) - cpu_before
        result = result_of(name, items, latencies, cpu, memory.peak[0] / MIB)
        command = (
            f"  (of which `bgworkers jobs run` {self.command_s:.1f} s)" if self.command_s else ""
        )
        print(result.line() + command, flush=True)
        self.command_s = 0.0
        return result

    def wait_idle(self, *, below: float = 0.1, deadline_s: float = 60.0) -> None:
        """Wait until the group uses less than ``below`` of a core over a second."""
        assert self.group is not None
        deadline = time.monotonic() + deadline_s
        while time.monotonic() < deadline:
            before = cpu_seconds(group_pids(self.group.pid))
            time.sleep(1.0)
            if cpu_seconds(group_pids(self.group.pid)) - before < below:
                return

    def email_effects(self, count_before: int) -> Callable[[float], list[float]]:
        def effects(t0: float) -> list[float]:
            self.sink.poll()
            return [t - t0 for t in self.sink.times[count_before:]]

        return effects

    def run_job(self, job: str) -> Callable[[], float]:
        def trigger() -> float:
            t0 = time.time()
            self.command("jobs", "run", job)
            self.command_s = time.time() - t0
            return t0

        return trigger

    def summaries(self) -> PhaseResult:
        before = self.sink.poll()
        trigger = self.run_job("send_daily_email_summary")
        return self.phase("summaries", self.args.users, trigger, self.email_effects(before))

    def reminders(self) -> PhaseResult:
        from bgworkers.reminders.models import Reminder

        with Session(self.engine) as session:  # due over the last minute, spread by id
            session.execute(  # scheduled again: a second ``reminders`` phase fires them too
                update(Reminder).values(
                    status="scheduled",
                    next_due_at=func.now() - func.make_interval(0, 0, 0, 0, 0, 0, Reminder.id % 60),
                )
            )
            session.commit()
        before = self.sink.poll()
        trigger = self.run_job("check_due_reminders")
        return self.phase("reminders", self.args.reminders, trigger, self.email_effects(before))

    def emails(self) -> PhaseResult:
        """``--email-rounds`` rounds, each between two SMTP ceiling blasts of as many emails:
        the round's rate is a fraction of the mean of the two, measured under the same load
        (the group idle beside it: the "after" blast waits until the messages of emails
        sent along with others are consumed) within seconds of it; returns the median round.

        Why: a ceiling measured once, before the group started, moved 578-786/s between
        runs on this machine while the phase moved as much, so one ratio meant little."""
        rounds: list[tuple[float, PhaseResult]] = []
        for _ in range(self.args.email_rounds):
            at_start = self.cpu_snapshot()
            before = smtp_ceiling(self.args.smtp_port, self.args.emails)
            at_before_end = self.cpu_snapshot()
            result = self.emails_round()
            at_round, at_round_end = self.round_cpu, self.cpu_snapshot()
            self.wait_idle()
            at_after = self.cpu_snapshot()
            after = smtp_ceiling(self.args.smtp_port, self.args.emails)
            at_end = self.cpu_snapshot()
            if self.args.email_cpu:
                self.note_email_cpu(
                    [(at_start, at_before_end), (at_after, at_end)], (at_round, at_round_end)
                )
            fraction = result.rate / ((before + after) / 2)
            print(f"  SMTP ceiling {before:.0f}/s before, {after:.0f}/s after: {fraction:.3f}")
            rounds.append((fraction, result))
        rounds.sort(key=lambda pair: pair[0])
        self.fractions["emails"] = [fraction for fraction, _ in rounds]
        return rounds[len(rounds) // 2][1]

    def emails_round(self) -> PhaseResult:
        from bgworkers.email.api import enqueue_email

        before = self.sink.poll()
        session = Session(self.engine)
        run = uuid.uuid4().hex[:6]
        for n in range(self.args.emails):
            enqueue_email(
                session=session,
                recipient=f"plain{n}@example.org",
                subject=f"Your invoice {n}",
                text="Hello,\n\nyour invoice is attached.\n" * 10,
                idempotency_key=f"bench-{run}-{n}",
            )

        def trigger() -> float:
            self.round_cpu = self.cpu_snapshot()  # from the commit on (not the writing)
            t0 = time.time()
            session.commit()
            session.close()
            return t0

        return self.phase("emails", self.args.emails, trigger, self.email_effects(before))

    def cpu_snapshot(self) -> CpuSnapshot:
        group = group_pids(self.group.pid) if self.group is not None else []
        return CpuSnapshot(
            at=time.monotonic(),
            sink=cpu_seconds([self.sink_pid]) if self.sink_pid is not None else 0.0,
            bench=cpu_seconds([os.getpid()]),
            group=cpu_seconds(group),
            machine=machine_busy_seconds(),
        )

    def note_email_cpu(
        self,
        ceilings: list[tuple[CpuSnapshot, CpuSnapshot]],
        round_: tuple[CpuSnapshot | None, CpuSnapshot],
    ) -> None:
        """``--email-cpu``: who took the machine's CPU during the two ceiling blasts (the
        bare client is this process) and during the round (the group sends), per email and
        as a share of all cores, so the report shows what bound each rate."""
        cores = os.cpu_count() or 1
        emails = self.args.emails
        ceiling = CpuSnapshot.spent(ceilings[0]) + CpuSnapshot.spent(ceilings[1])
        assert round_[0] is not None, "set by the round's commit"
        phase = CpuSnapshot.spent((round_[0], round_[1]))
        ours = phase.sink + phase.group + phase.bench
        split = {
            "ceiling_client_ms": ceiling.bench * 1000 / (2 * emails),
            "ceiling_sink_ms": ceiling.sink * 1000 / (2 * emails),
            "ceiling_sink_share": ceiling.sink / (ceiling.at * cores),
            "ceiling_machine_share": ceiling.machine / (ceiling.at * cores),
            "round_group_ms": phase.group * 1000 / emails,
            "round_sink_ms": phase.sink * 1000 / emails,
            "round_sink_share": phase.sink / (phase.at * cores),
            "round_group_share": phase.group / (phase.at * cores),
            "round_app_ms": phase.bench * 1000 / emails,
            "round_machine_share": phase.machine / (phase.at * cores),
            "round_rest_share": (phase.machine - ours) / (phase.at * cores),
            "ceiling_rest_share": (ceiling.machine - ceiling.sink - ceiling.bench)
            / (ceiling.at * cores),
        }
        self.email_cpu.append(split)
        print("  cpu: " + ", ".join(f"{k} {v:.3f}" for k, v in split.items()), flush=True)

    def calendar(self, name: str, *, per_user: bool = False) -> PhaseResult:
        """``sync_calendar_events``; ``per_user``: one ``sync_user_calendar`` message per
        user instead (the path before pages; an incremental sync, as a baseline in the run)."""
        from bgworkers.sync.models import CalendarConnection

        def effects(t0: float) -> list[float]:
            since = datetime.fromtimestamp(t0, UTC)
            with Session(self.engine) as session:
                synced = session.exec(
                    select(CalendarConnection.last_synced_at).where(
                        col(CalendarConnection.last_synced_at) >= since
                    )
                ).all()
            return [s.timestamp() - t0 for s in synced if s is not None]

        trigger = self.per_user_calendars() if per_user else self.run_job("sync_calendar_events")
        return self.phase(name, self.args.calendars, trigger, effects)

    def per_user_calendars(self) -> Callable[[], float]:
        """Record one ``sync_user_calendar`` per connection through the outbox, as the fan-out
        did before it sent pages."""
        from bgworkers.outbox import enqueue_many
        from bgworkers.sync.actors import sync_user_calendar
        from bgworkers.sync.models import CalendarConnection

        def trigger() -> float:
            t0 = time.time()
            with Session(self.engine) as session:
                ids = session.exec(select(CalendarConnection.user_id)).all()
                enqueue_many(session, sync_user_calendar, ((u,) for u in ids))
                session.commit()
            return t0

        return trigger

    def notion(self) -> PhaseResult:
        """``sync_notion_pages`` over ``--calendars`` Notion connections (one token each)."""
        from bgworkers.sync.models import NotionConnection

        def effects(t0: float) -> list[float]:
            since = datetime.fromtimestamp(t0, UTC)
            with Session(self.engine) as session:
                synced = session.exec(
                    select(NotionConnection.last_synced_at).where(
                        col(NotionConnection.last_synced_at) >= since
                    )
                ).all()
            return [s.timestamp() - t0 for s in synced if s is not None]

        trigger = self.run_job("sync_notion_pages")
        return self.phase("notion", self.args.calendars, trigger, effects)

    def backup(self) -> PhaseResult:
        """``backup_user_data``: an effect is a user's archive written after the trigger."""
        root = self.workdir / "data" / "backups"
        done: dict[str, float] = {}  # user folder -> its new archive's time after the trigger

        def effects(t0: float) -> list[float]:
            # Only folders not done yet are read again: reading all 10,000 every 0.25 s took
            # this process a good share of a core, taken from the group it measures.
            if root.is_dir():
                for user in os.scandir(root):
                    if user.name not in done and user.name.startswith("user-"):
                        new = [m for m in archive_mtimes_in(Path(user.path)) if m >= t0]
                        if new:
                            done[user.name] = min(new) - t0
            return list(done.values())

        trigger = self.run_job("backup_user_data")
        return self.phase("backup", self.args.users, trigger, effects)

    def temp_cleanup(self) -> PhaseResult:
        """``cleanup_temp_files`` over ``--temp-files`` old files: an effect is a file gone
        (timed when a poll first misses it)."""
        paths = seed_temp_files(self.workdir / "data" / "tmp", self.args.temp_files)
        gone: dict[Path, float] = {}

        def effects(t0: float) -> list[float]:
            seen = time.time() - t0
            for path in paths:
                if path not in gone and not path.exists():
                    gone[path] = seen
            return list(gone.values())

        trigger = self.run_job("cleanup_temp_files")
        return self.phase("temp_cleanup", len(paths), trigger, effects)


def archive_mtimes_in(folder: Path) -> list[float]:
    """Modification times of the ``*.tar.gz`` archives in one user's folder."""
    return [e.stat().st_mtime for e in os.scandir(folder) if e.name.endswith(".tar.gz")]


def archive_mtimes(root: Path) -> list[float]:
    """Modification times of every ``user-*/user-*.tar.gz`` archive under ``root``."""
    times: list[float] = []
    if not root.is_dir():
        return times
    for user in os.scandir(root):
        if user.is_dir() and user.name.startswith("user-"):
            times.extend(
                entry.stat().st_mtime
                for entry in os.scandir(user.path)
                if entry.name.endswith(".tar.gz")
            )
    return times


def seed_temp_files(root: Path, count: int) -> list[Path]:
    """``count`` small files two days old, 100 to a folder (what the cleanup must remove)."""
    old = time.time() - 2 * 86_400
    paths: list[Path] = []
    for n in range(count):
        folder = root / f"upload-{n // 100}"
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"part-{n}.tmp"
        path.write_bytes(b"x" * 512)
        os.utime(path, (old, old))
        paths.append(path)
    return paths


# --- ceilings of the parts we do not own --------------------------------------------------


def smtp_ceiling(port: int, count: int) -> float:
    """Emails/s a bare smtplib client sends on one connection to the sink.

    The email is serialized once: flattening an ``EmailMessage`` per send (``send_message``)
    cost the client about as much as the sink's whole work, so the figure was the client's
    speed more than the sink's, about half of what the sink takes.
    """
    message = EmailMessage()
    message["From"], message["To"], message["Subject"] = "a@localhost", "c@example.org", "x"
    message.set_content("Hello,\n\nyour invoice is attached.\n" * 10)
    data = message.as_bytes()
    started = time.perf_counter()
    with smtplib.SMTP("127.0.0.1", port) as client:
        for _ in range(count):
            client.sendmail("a@localhost", ["c@example.org"], data)
    return count / (time.perf_counter() - started)


def api_ceiling(base: str, count: int, threads: int = 64) -> float:
    """Requests/s bare httpx clients (``threads`` threads, a client each, as each worker
    thread has its connection) get from the fake API."""
    local = threading.local()
    clients: list[httpx.Client] = []

    def get(n: int) -> int:
        client = getattr(local, "client", None)
        if client is None:
            client = local.client = httpx.Client()
            clients.append(client)
        url = f"{base}/calendars/primary/events"
        headers = {"Authorization": f"Bearer ceiling-{n}"}
        return client.get(url, headers=headers).status_code

    try:
        started = time.perf_counter()
        with ThreadPoolExecutor(threads) as pool:
            list(pool.map(get, range(count)))
        return count / (time.perf_counter() - started)
    finally:
        for client in clients:
            client.close()


def insert_ceiling(engine: Engine, count: int) -> float:
    """Committed single-row inserts per second into a scratch table."""
    with engine.connect() as conn:
        conn.execute(text("CREATE TABLE bench_ceiling (id serial primary key, v text)"))
        conn.commit()
        started = time.perf_counter()
        for n in range(count):
            conn.execute(text("INSERT INTO bench_ceiling (v) VALUES (:v)"), {"v": str(n)})
            conn.commit()
        rate = count / (time.perf_counter() - started)
        conn.execute(text("DROP TABLE bench_ceiling"))
        conn.commit()
    return rate


# --- main -------------------------------------------------------------------------------


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--users", type=int, default=2_000)
    parser.add_argument("--reminders", type=int, default=None, help="default: --users")
    parser.add_argument("--emails", type=int, default=None, help="default: --users")
    parser.add_argument("--calendars", type=int, default=None, help="default: --users")
    parser.add_argument("--temp-files", type=int, default=None, help="default: --users")
    parser.add_argument("--processes", type=int, default=2)
    parser.add_argument("--threads", type=int, default=8)
    parser.add_argument("--api-latency-ms", type=float, default=30.0)
    parser.add_argument("--throttle-every", type=int, default=0, help="429 every Nth request")
    parser.add_argument(
        "--google-requests-per-second",
        type=float,
        default=1000.0,
        help="the project-wide Google cap (BGW_GOOGLE_REQUESTS_PER_SECOND; its default of 100 "
        "would be the calendar phases' limit)",
    )
    parser.add_argument("--timeout-s", type=float, default=600.0, help="per phase")
    parser.add_argument(
        "--phases", default=",".join(PHASES), help=f"also: {', '.join(EXTRA_PHASES)}"
    )
    parser.add_argument("--ceiling-count", type=int, default=2_000)
    parser.add_argument(
        "--email-rounds", type=int, default=3, help="emails phase rounds, each between ceilings"
    )
    parser.add_argument(
        "--keep-worker-log", type=Path, default=None, help="copy the group's log here at the end"
    )
    parser.add_argument(
        "--email-cpu",
        action="store_true",
        help="emails phase: also report the CPU of the sink, the bare client, the group and the "
        "whole machine during the ceiling blasts and the rounds",
    )
    args = parser.parse_args()
    for name in ("reminders", "emails", "calendars", "temp_files"):
        if getattr(args, name) is None:
            setattr(args, name, args.users)
    return args


def environment(args: argparse.Namespace, vhost_url: str, db_url: str, workdir: Path) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("BGW_")}
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    env.update(
        BGW_BROKER_URL=vhost_url,
        BGW_DATABASE_URL=db_url,
        BGW_DATA_DIR=str(workdir / "data"),
        BGW_LOG_FORMAT="json",
        BGW_METRICS_HOST="127.0.0.1",
        BGW_METRICS_PORT=str(free_port()),
        BGW_SMTP_HOST="127.0.0.1",
        BGW_SMTP_PORT=str(args.smtp_port),
        BGW_GOOGLE_API_BASE_URL=args.api_base,
        BGW_GOOGLE_TOKEN_URL=f"{args.api_base}/token",
        BGW_GOOGLE_CLIENT_ID="bench",
        BGW_GOOGLE_CLIENT_SECRET="bench",
        BGW_NOTION_API_BASE_URL=args.api_base,
        BGW_GOOGLE_REQUESTS_PER_SECOND=str(args.google_requests_per_second),
    )
    return env


def main() -> None:
    args = parse_args()
    phases = [p for p in args.phases.split(",") if p]
    broker_url = os.environ.get("BGW_BROKER_URL", "amqp://guest:guest@127.0.0.1:5672/")
    pg_url = os.environ.get("BGW_TEST_POSTGRES_URL", DEFAULT_POSTGRES)
    args.smtp_port, api_port = free_port(), free_port()
    args.api_base = f"http://127.0.0.1:{api_port}"
    with contextlib.ExitStack() as stack:
        workdir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="bench-scale-")))
        sink_path = workdir / "smtp.log"
        sink_path.touch()
        smtp = servers.start(servers.run_smtp_sink, args.smtp_port, str(sink_path))
        stack.callback(smtp.terminate)
        api = servers.start(
            servers.run_fake_google, api_port, args.api_latency_ms / 1000, args.throttle_every
        )
        stack.callback(api.terminate)
        vhost_url = stack.enter_context(own_vhost(broker_url, "bench-scale"))
        db_url = stack.enter_context(own_database(pg_url))
        engine = make_engine(db_url)
        stack.callback(engine.dispose)
        bench = Bench(args, environment(args, vhost_url, db_url, workdir), engine,
                      SinkLog(sink_path), workdir, sink_pid=smtp.pid)  # fmt: skip
        bench.command("migrate")
        seed(engine, args)
        ceilings = {
            "smtp_ceiling_per_s": smtp_ceiling(args.smtp_port, args.ceiling_count),
            "api_ceiling_per_s": api_ceiling(args.api_base, args.ceiling_count),
            "pg_insert_ceiling_per_s": insert_ceiling(engine, args.ceiling_count),
        }
        print("ceilings: " + ", ".join(f"{k} {v:.0f}" for k, v in ceilings.items()))
        bench.start_group()
        assert bench.group is not None
        stack.callback(stop, bench.group)
        runs = {
            "summaries": bench.summaries,
            "reminders": bench.reminders,
            "emails": bench.emails,
            "calendar_first": lambda: bench.calendar("calendar_first"),
            "calendar_incremental": lambda: bench.calendar("calendar_incremental"),
            "calendar_per_user": lambda: bench.calendar("calendar_per_user", per_user=True),
            "notion": bench.notion,
            "backup": bench.backup,
            "temp_cleanup": bench.temp_cleanup,
        }
        results = [runs[p]() for p in phases]
        report(args, results, ceilings, bench.fractions)
        report_email_cpu(bench.email_cpu)
        if args.keep_worker_log:
            shutil.copyfile(workdir / "workers.log", args.keep_worker_log)


def report_email_cpu(rounds: list[dict[str, float]]) -> None:
    """``--email-cpu``: the median over the rounds of each figure, as ``name=value`` lines."""
    for key in rounds[0] if rounds else ():
        values = sorted(r[key] for r in rounds)
        print(f"emails_cpu_{key}={values[len(values) // 2]:.3f}")


def report(
    args: argparse.Namespace,
    results: list[PhaseResult],
    ceilings: dict,
    fractions: dict[str, list[float]] | None = None,
) -> None:
    print(f"users={args.users} group={args.processes}x{args.threads}")
    for key, value in ceilings.items():
        print(f"{key}={value:.0f}")
    for r in results:
        ceiling = ceilings.get(CEILING_OF.get(r.name.split("_")[0], ""), 0.0)
        print(f"{r.name}_done={r.done}")
        print(f"{r.name}_first_s={r.first_s:.2f}")
        print(f"{r.name}_last_s={r.last_s:.2f}")
        print(f"{r.name}_per_s={r.rate:.1f}")
        print(f"{r.name}_p50_s={r.p50_s:.2f}")
        print(f"{r.name}_p99_s={r.p99_s:.2f}")
        print(f"{r.name}_cpu_ms_per_item={r.cpu_ms_per_item:.2f}")
        rounds = (fractions or {}).get(r.name)
        if rounds:
            print(f"{r.name}_fraction_rounds={','.join(f'{f:.3f}' for f in rounds)}")
            print(f"{r.name}_fraction_of_ceiling={rounds[len(rounds) // 2]:.3f}")
        elif ceiling:
            print(f"{r.name}_fraction_of_ceiling={r.rate / ceiling:.3f}")
    if results:  # the group's memory after warm-up (the first phase) against the last phase
        print(f"peak_rss_mib={max(r.peak_rss_mib for r in results):.0f}")
        print(f"rss_growth={results[-1].peak_rss_mib / results[0].peak_rss_mib:.3f}")


if __name__ == "__main__":
    main()
