"""What the full bgworkers stack costs over bare dramatiq: drain rate, latency and memory.

One run interleaves two worker groups, each started as a ``dramatiq`` CLI subprocess as an
operator starts it:

- **bare**: dramatiq with its default middleware and one no-op actor on a queue of its own
  (``bench/_stack_bare.py``);
- **bgworkers**: ``dramatiq bgworkers`` (the whole middleware stack, the group's metrics
  endpoint, JSON log lines to a file) with one no-op declared through ``@task`` on the
  maintenance queue (``bench/_stack_bgworkers.py``).

For each configuration (1 process x 8 threads, 2 x 8) and repetition, each group is started and
waited for (consumers attached; for bgworkers the metrics endpoint answering), then:

1. latency: ``--latency-messages`` messages paced at ``--latency-rate`` per second, each
   carrying its send time; latency is the time from sending to the actor starting (p50, p99);
2. drain: the group is frozen (SIGSTOP) while ``--messages`` messages are queued, then thawed;
   the drain rate is messages / (time from the thaw to the queue being empty). Start-up is not
   counted, and the at most ``prefetch`` messages still in the workers when the queue shows
   empty are a few milliseconds out of seconds. The group's CPU time (user + system, every
   process) over the same span, per message, is printed too: unlike the rate, it hardly
   moves with what else a shared machine runs;
3. memory: the whole group (main process, worker processes, forks) is sampled from
   ``/proc/<pid>/smaps_rollup`` every 0.2 s while it serves (from ready to stop: a child that
   lives a moment at boot, such as bgworkers' schema check, shares its pages with its worker,
   and an RSS sum would count them twice). Three sums are reported:
   RSS (what ``ps`` shows; pages shared between processes count once per process),
   PSS (shared pages divided among their processes: the group's real share of RAM) and
   USS (private pages only). ``rss_ratio`` is of peak RSS sums, as the figures were first
   measured; ``pss_ratio`` is printed next to it.

Nothing is messaged, queued or purged outside a vhost of its own: ``bench-stack-<random>`` is
created on the broker of ``BGW_BROKER_URL`` (through the management API, else
``rabbitmqctl``) and deleted at the end, also on failure. The bgworkers group gets its own data
directory (SQLite database, migrated first; metrics files) and metrics port; every other
``BGW_*`` variable of the caller is left out of its environment.

Prints one line per group run, medians per configuration (with ``cpu_ratio_``, ``p99_ratio_``,
``pss_ratio_`` and ``hook_share_`` lines: the share of bgworkers' CPU per message that
selective hook dispatch saves), and as its last lines ``drain_ratio_p1t8=``, ``drain_ratio_p2t8=``
and ``rss_ratio_p1t8=`` (bgworkers / bare).

``--tracing`` adds a third group, **bgworkers+tracing**: the bgworkers group with the
``OTEL_*`` variables pointing at an OTLP/HTTP sink in this process (it answers 200 and counts
the payloads), and prints ``tracing_cpu_us_per_msg_<config>=``, the CPU a message costs with
tracing on beyond the bgworkers group without it, and ``tracing_off_share_<config>=``: what
tracing costs per message while off (it installs nothing; the envelope check of the trace
options and one look-up remain, timed in this process) over the bgworkers group's CPU per
message of this run (see docs/tracing.md).
Usage: python bench/stack_overhead.py [--messages N] [--reps R] [--configs 1x8,2x8] [--tracing]
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote, unquote, urlparse, urlunparse

import pika
from _scale_servers import free_port
from dramatiq.common import dq_name, xq_name
from dramatiq.message import Message

BENCH_DIR = Path(__file__).resolve().parent
DEFAULT_BROKER_URL = "amqp://guest:guest@127.0.0.1:5672/"
LATENCY_DIR_VAR = "BENCH_STACK_LATENCY_DIR"
BARE_QUEUE = "bench-bare"
BGW_QUEUE = "maintenance"
ACTOR = "bench_noop"
MIB = 1024 * 1024


# --- the benchmark's own vhost ------------------------------------------------------------


def _management_base(broker_url: str) -> str:
    configured = os.environ.get("BGW_RABBITMQ_MANAGEMENT_URL")
    if configured:
        return configured.rstrip("/")
    return f"http://{urlparse(broker_url).hostname or '127.0.0.1'}:15672"


def _management(broker_url: str, method: str, path: str, body: Any = None) -> None:
    parsed = urlparse(broker_url)
    user, password = unquote(parsed.username or "guest"), unquote(parsed.password or "guest")
    request = urllib.request.Request(
        _management_base(broker_url) + path,
        method=method,
        data=None if body is None else json.dumps(body).encode(),
        headers={
            "Content-Type": "application/json",
            "Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode(),
        },
    )
    with urllib.request.urlopen(request, timeout=10):
        pass


def _rabbitmqctl(*args: str) -> None:
    subprocess.run(["rabbitmqctl", *args], check=True, capture_output=True, timeout=60)


@contextmanager
def own_vhost(broker_url: str, prefix: str = "bench-stack") -> Iterator[str]:
    """A fresh vhost on the broker of ``broker_url`` for the block; yields its AMQP URL."""
    name = f"{prefix}-{uuid.uuid4().hex[:8]}"
    user = unquote(urlparse(broker_url).username or "guest")
    everything = {"configure": ".*", "write": ".*", "read": ".*"}
    try:
        _management(broker_url, "PUT", f"/api/vhosts/{quote(name, safe='')}", {})
        _management(
            broker_url, "PUT", f"/api/permissions/{quote(name, safe='')}/{quote(user)}", everything
        )
        delete = lambda: _management(broker_url, "DELETE", f"/api/vhosts/{quote(name, safe='')}")  # noqa: E731
    except (urllib.error.URLError, OSError):
        _rabbitmqctl("add_vhost", name)
        _rabbitmqctl("set_permissions", "-p", name, user, ".*", ".*", ".*")
        delete = lambda: _rabbitmqctl("delete_vhost", name)  # noqa: E731
    try:
        yield urlunparse(urlparse(broker_url)._replace(path="/" + quote(name, safe="")))
    finally:
        delete()
        print(f"bench_vhost={name} (deleted)")


# --- memory of a process group ------------------------------------------------------------


def group_pids(root: int) -> list[int]:
    """``root`` and every live descendant of it."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        children.setdefault(ppid, []).append(int(entry))
    found, todo = [], [root]
    while todo:
        pid = todo.pop()
        found.append(pid)
        todo.extend(children.get(pid, []))
    return found


def cpu_seconds(pids: list[int]) -> float:
    """User + system CPU time consumed so far by ``pids`` (from ``/proc/<pid>/stat``)."""
    ticks = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        ticks += int(fields[11]) + int(fields[12])  # utime, stime
    return ticks / os.sysconf("SC_CLK_TCK")


def memory_of(pid: int) -> tuple[int, int, int] | None:
    """(RSS, PSS, USS) of one process in bytes, from ``/proc/<pid>/smaps_rollup``."""
    try:
        text = Path(f"/proc/{pid}/smaps_rollup").read_text()
    except OSError:
        return None
    values = {}
    for line in text.splitlines()[1:]:
        key, _, rest = line.partition(":")
        parts = rest.split()
        if parts:
            values[key] = int(parts[0]) * 1024
    if "Rss" not in values:
        return None  # a process exiting
    uss = values.get("Private_Clean", 0) + values.get("Private_Dirty", 0)
    return values["Rss"], values.get("Pss", 0), uss


@dataclass
class MemorySampler:
    """Peak sums of RSS, PSS and USS over a process group, sampled on a thread."""

    root: int
    interval_s: float = 0.2
    peak: list[int] = field(default_factory=lambda: [0, 0, 0])
    processes: int = 0
    _stop: threading.Event = field(default_factory=threading.Event)

    def sample(self) -> None:
        pids = group_pids(self.root)
        sums = [0, 0, 0]
        for pid in pids:
            memory = memory_of(pid)
            if memory is not None:
                sums = [a + b for a, b in zip(sums, memory, strict=True)]
        self.peak = [max(a, b) for a, b in zip(self.peak, sums, strict=True)]
        self.processes = max(self.processes, len(pids))

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            self.sample()

    def __enter__(self) -> MemorySampler:
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join()


# --- one worker group ---------------------------------------------------------------------


@dataclass(frozen=True)
class System:
    name: str
    modules: tuple[str, ...]
    queue: str


BARE = System("bare", ("_stack_bare",), BARE_QUEUE)
BGWORKERS = System("bgworkers", ("bgworkers", "_stack_bgworkers"), BGW_QUEUE)
TRACED = System("bgworkers+tracing", ("bgworkers", "_stack_bgworkers"), BGW_QUEUE)


@dataclass(frozen=True)
class RunResult:
    system: str
    config: str
    drain_per_s: float
    cpu_us_per_msg: float
    p50_ms: float
    p99_ms: float
    rss_mib: float
    pss_mib: float
    uss_mib: float
    processes: int


def dramatiq_command() -> list[str]:
    script = Path(sys.executable).parent / "dramatiq"
    return [str(script)] if script.exists() else [sys.executable, "-m", "dramatiq"]


@dataclass
class Bench:
    vhost_url: str
    workdir: Path
    messages: int
    latency_messages: int
    latency_rate: float
    metrics_port: int
    otlp_endpoint: str = ""

    def environment(self, system: System, latency_dir: Path) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("BGW_")}
        env.pop("PROMETHEUS_MULTIPROC_DIR", None)
        env[LATENCY_DIR_VAR] = str(latency_dir)
        env["BENCH_STACK_BROKER_URL"] = self.vhost_url
        for name in [k for k in env if k.startswith("OTEL_")]:
            del env[name]  # tracing only where asked for
        if system is TRACED:
            env["OTEL_EXPORTER_OTLP_ENDPOINT"] = self.otlp_endpoint
        if system is not BARE:
            env.update(
                BGW_BROKER_URL=self.vhost_url,
                BGW_DATA_DIR=str(self.workdir / "bgworkers-data"),
                BGW_LOG_FORMAT="json",
                BGW_METRICS_HOST="127.0.0.1",
                BGW_METRICS_PORT=str(self.metrics_port or free_port()),
            )
            if "BGW_RABBITMQ_MANAGEMENT_URL" in os.environ:
                env["BGW_RABBITMQ_MANAGEMENT_URL"] = os.environ["BGW_RABBITMQ_MANAGEMENT_URL"]
        return env

    def migrate(self) -> None:
        env = self.environment(BGWORKERS, self.workdir)
        command = [sys.executable, "-m", "bgworkers.cli", "migrate"]
        subprocess.run(command, env=env, check=True, capture_output=True, timeout=120)

    def declare(self, channel: Any, queue: str) -> None:
        """The queue as dramatiq declares it (so the worker's own declaration matches)."""
        from dramatiq.brokers.rabbitmq import RabbitmqBroker

        broker = RabbitmqBroker(url=self.vhost_url)
        try:
            broker.declare_queue(queue, ensure=True)
        finally:
            broker.close()
        for name in (queue, dq_name(queue), xq_name(queue)):
            channel.queue_purge(name)  # the benchmark's own vhost: nobody else's messages

    def run(self, system: System, processes: int, threads: int, run_id: str) -> RunResult:
        connection = pika.BlockingConnection(pika.URLParameters(self.vhost_url))
        channel = connection.channel()
        self.declare(channel, system.queue)
        latency_dir = self.workdir / f"latency-{run_id}"
        latency_dir.mkdir()
        env = self.environment(system, latency_dir)
        log_path = self.workdir / f"{run_id}.log"
        command = [
            *dramatiq_command(),
            *system.modules,
            "--processes",
            str(processes),
            "--threads",
            str(threads),
            "--path",
            str(BENCH_DIR),
        ]
        with open(log_path, "wb") as log:
            group = subprocess.Popen(
                command, env=env, stdout=log, stderr=subprocess.STDOUT, cwd=self.workdir
            )
        try:
            self.wait_ready(channel, system, processes, group, env, log_path)
            with MemorySampler(group.pid) as memory:
                memory.sample()
                latencies = self.latency(channel, system, latency_dir)
                drain_s, drain_cpu_s = self.drain(channel, system, group, processes * threads * 2)
                memory.sample()
            self.check_nothing_failed(channel, system, log_path)
        finally:
            stop(group)
            connection.close()
            shutil.rmtree(latency_dir, ignore_errors=True)
        log_path.unlink()
        latencies.sort()
        rss, pss, uss = (value / MIB for value in memory.peak)
        return RunResult(
            system=system.name,
            config=f"{processes}x{threads}",
            drain_per_s=self.messages / drain_s,
            cpu_us_per_msg=drain_cpu_s / self.messages * 1e6,
            p50_ms=percentile(latencies, 0.50) * 1000,
            p99_ms=percentile(latencies, 0.99) * 1000,
            rss_mib=rss,
            pss_mib=pss,
            uss_mib=uss,
            processes=memory.processes,
        )

    def wait_ready(
        self,
        channel: Any,
        system: System,
        processes: int,
        group: subprocess.Popen[bytes],
        env: dict[str, str],
        log_path: Path,
    ) -> None:
        deadline = time.monotonic() + 120
        while True:
            if group.poll() is not None:
                tail = log_path.read_text(errors="replace")[-3000:]
                raise SystemExit(f"{system.name} worker group exited ({group.returncode}):\n{tail}")
            if time.monotonic() > deadline:
                raise SystemExit(f"{system.name} worker group not ready after 120 s")
            consumers = channel.queue_declare(system.queue, passive=True).method.consumer_count
            if consumers >= processes and (system is BARE or metrics_answer(env)):
                break
            time.sleep(0.1)
        time.sleep(1.0)  # the last threads and forks settle

    def latency(self, channel: Any, system: System, latency_dir: Path) -> list[float]:
        """Seconds from sending to the actor starting, for paced messages."""
        started = time.monotonic()
        for i in range(self.latency_messages):
            pause = started + i / self.latency_rate - time.monotonic()
            if pause > 0:
                time.sleep(pause)
            publish(channel, system.queue, {"sent_at": time.time()})
        deadline = time.monotonic() + 60
        while True:
            values = [
                float(line)
                for path in latency_dir.iterdir()
                for line in path.read_text().splitlines()
                if line
            ]
            if len(values) >= self.latency_messages or time.monotonic() > deadline:
                if len(values) < self.latency_messages:
                    raise SystemExit(f"{system.name}: only {len(values)} latency messages ran")
                return values
            time.sleep(0.05)

    def drain(
        self, channel: Any, system: System, group: subprocess.Popen[bytes], prefetch: int
    ) -> tuple[float, float]:
        """Queue ``messages`` while the group is frozen; seconds from thaw to an empty queue,
        and the CPU seconds the whole group spent in that time.

        ``prefetch``: messages the frozen consumers may already hold (dramatiq's default,
        two per thread). CPU time is counted because, unlike the drain rate, it hardly moves
        with what else a shared machine is doing.
        """
        pids = group_pids(group.pid)
        for pid in pids:
            os.kill(pid, signal.SIGSTOP)
        try:
            for _ in range(self.messages):
                publish(channel, system.queue, {})
            deadline = time.monotonic() + 180  # a loaded broker may hold publishers back
            while (
                count := channel.queue_declare(system.queue, passive=True).method.message_count
            ) < self.messages - prefetch:
                if time.monotonic() > deadline:
                    raise SystemExit(
                        f"only {count} of the {self.messages} queued messages arrived in 180 s"
                    )
                time.sleep(0.05)
            time.sleep(0.3)
        finally:
            cpu_before = cpu_seconds(pids)
            thawed = time.perf_counter()
            for pid in reversed(pids):
                os.kill(pid, signal.SIGCONT)
        while channel.queue_declare(system.queue, passive=True).method.message_count:
            time.sleep(0.005)
        return time.perf_counter() - thawed, cpu_seconds(pids) - cpu_before

    def check_nothing_failed(self, channel: Any, system: System, log_path: Path) -> None:
        time.sleep(0.5)  # the last prefetched messages finish
        for name in (system.queue, dq_name(system.queue), xq_name(system.queue)):
            left = channel.queue_declare(name, passive=True).method.message_count
            if left:
                tail = log_path.read_text(errors="replace")[-3000:]
                raise SystemExit(f"{system.name}: {left} messages left in {name}:\n{tail}")


def metrics_answer(env: dict[str, str]) -> bool:
    url = f"http://127.0.0.1:{env['BGW_METRICS_PORT']}/healthz"
    try:
        with urllib.request.urlopen(url, timeout=1) as response:
            return bool(response.status == 200)
    except OSError:
        return False


def publish(channel: Any, queue: str, kwargs: dict[str, Any]) -> None:
    message = Message(queue_name=queue, actor_name=ACTOR, args=(), kwargs=kwargs, options={})
    channel.basic_publish(
        "", queue, message.encode(), pika.BasicProperties(delivery_mode=2, priority=0)
    )


def stop(group: subprocess.Popen[bytes]) -> None:
    pids = group_pids(group.pid)
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGCONT)  # in case a failure left it frozen
    if group.poll() is None:
        group.send_signal(signal.SIGTERM)
        try:
            group.wait(timeout=60)
        except subprocess.TimeoutExpired:
            for pid in group_pids(group.pid):
                os.kill(pid, signal.SIGKILL)
            group.wait()


def percentile(sorted_values: list[float], q: float) -> float:
    index = min(len(sorted_values) - 1, round(q * (len(sorted_values) - 1)))
    return sorted_values[index]


# --- the run ------------------------------------------------------------------------------


def hook_dispatch_saving_us(calls: int = 200_000) -> float:
    """CPU per message, in microseconds, that selective hook dispatch saves a worker thread.

    dramatiq calls every middleware's hook for each signal, most of them the empty default;
    :class:`bgworkers.brokers.rabbitmq.SelectiveHooks` skips those. Measured in this process on
    stand-ins of the worker's middleware list (each one's own hooks made no-ops, the others left at
    dramatiq's defaults): dramatiq's ``emit_before``/``emit_after`` against the selective ones,
    for the four per-message signals. Compared with the group's CPU per message
    (``hook_share_``), it says what dropping it would cost: a worker that drains is
    CPU-bound, so the share is the drain rate it would lose.
    """
    import logging

    from dramatiq.broker import Broker
    from dramatiq.middleware import Middleware

    from bgworkers.brokers.rabbitmq import SelectiveHooks, implements
    from bgworkers.settings import get_settings
    from bgworkers.stack.broker import build_broker

    per_message = ("process_message", "ack")

    def noop(self: Middleware, broker: Any, *args: Any) -> None:
        return None

    def stand_in(real: Middleware) -> Middleware:
        hooks = {
            f"{when}_{name}": noop
            for when in ("before", "after")
            for name in per_message
            if implements(real, f"{when}_{name}")
        }
        return type(type(real).__name__, (Middleware,), hooks)()

    class Plain:
        emit_before = Broker.emit_before
        emit_after = Broker.emit_after

    class Selective(SelectiveHooks):
        pass

    middleware = [stand_in(m) for m in build_broker(get_settings(), worker_process=True).middleware]
    times = []
    for kind in (Plain, Selective):
        broker: Any = kind()
        broker.middleware, broker.logger = middleware, logging.getLogger("bench")
        message = object()
        started = time.perf_counter()
        for _ in range(calls):
            for name in per_message:
                broker.emit_before(name, message)
                broker.emit_after(name, message)
        times.append((time.perf_counter() - started) / calls)
    return (times[0] - times[1]) * 1e6


def parse_configs(text: str) -> list[tuple[int, int]]:
    configs = []
    for item in text.split(","):
        processes, _, threads = item.partition("x")
        configs.append((int(processes), int(threads)))
    return configs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--messages", type=int, default=20_000, help="drained per run")
    parser.add_argument("--reps", type=int, default=3, help="repetitions (medians are printed)")
    parser.add_argument("--configs", default="1x8,2x8", help="PROCESSESxTHREADS, comma-separated")
    # 5,000: with 2,000 the p99 of one system moved by 0.3-0.5 ms from run to run, as much
    # as the difference being measured (the p99 is then the 50th slowest, not the 20th).
    parser.add_argument("--latency-messages", type=int, default=5_000)
    parser.add_argument("--latency-rate", type=float, default=500.0, help="messages per second")
    parser.add_argument(
        "--metrics-port", type=int, default=0, help="bgworkers' metrics port (0: a free one)"
    )
    parser.add_argument(
        "--tracing", action="store_true", help="also run bgworkers with tracing on (OTLP sink)"
    )
    args = parser.parse_args()
    configs = parse_configs(args.configs)
    broker_url = os.environ.get("BGW_BROKER_URL", DEFAULT_BROKER_URL)
    results: list[RunResult] = []
    print(
        f"{args.messages} messages per drain, {args.reps} repetitions, "
        f"{len(os.sched_getaffinity(0))} CPUs, load {os.getloadavg()[0]:.1f}"
    )
    systems = (BARE, BGWORKERS, TRACED) if args.tracing else (BARE, BGWORKERS)
    with (
        own_vhost(broker_url) as vhost_url,
        tempfile.TemporaryDirectory() as tmp,
        otlp_sink() as (otlp_endpoint, payloads),
    ):
        bench = Bench(
            vhost_url=vhost_url,
            workdir=Path(tmp),
            messages=args.messages,
            latency_messages=args.latency_messages,
            latency_rate=args.latency_rate,
            metrics_port=args.metrics_port,
            otlp_endpoint=otlp_endpoint,
        )
        bench.migrate()
        for rep in range(args.reps):
            for processes, threads in configs:
                # Alternate which system goes first, so drift of a shared machine evens out.
                order = systems if rep % 2 == 0 else systems[::-1]
                for system in order:
                    result = bench.run(system, processes, threads, f"{system.name}-{rep}")
                    results.append(result)
                    print(
                        f"rep {rep + 1} {result.config} {result.system:9}: "
                        f"{result.drain_per_s:7,.0f} msg/s, "
                        f"CPU {result.cpu_us_per_msg:4.0f} us/msg, "
                        f"latency p50 {result.p50_ms:.1f} ms "
                        f"p99 {result.p99_ms:.1f} ms, peak RSS {result.rss_mib:.0f} MiB "
                        f"(PSS {result.pss_mib:.0f}, USS {result.uss_mib:.0f}) "
                        f"in {result.processes} processes"
                    )
        if args.tracing:
            print(f"otlp_payloads_received={payloads[0]} ({payloads[1]:,} bytes)")
    saved_us = hook_dispatch_saving_us(calls=max(args.messages, 1_000))
    print(f"selective hook dispatch saves {saved_us:.1f} us of CPU per message")
    summary(results, configs, hook_saved_us=saved_us)
    if args.tracing:
        tracing_summary(results, configs)


def tracing_off_us(calls: int = 500_000) -> float:
    """CPU per message, in microseconds, that tracing costs a worker while it is off.

    Off, no tracing middleware is installed; what remains on an untraced message's path is
    the envelope check's three entries for the trace-context options (absent from the
    message) and the logging middleware's look-up of ``traceparent``: that work, net of an
    empty call, timed in this process (best of 5) and compared with the bgworkers group's
    CPU per message of this run (``tracing_off_share_``), as ``hook_share_`` is.
    """
    from bgworkers.brokers import envelope

    trace_checks = [
        (name, is_valid)
        for name, (_, is_valid) in envelope.OPTION_CHECKS.items()
        if name in ("traceparent", "tracestate", "bgw_first_attempt")
    ]
    options: dict[str, Any] = {"retries": 0, "requeue_timestamp": 1_700_000_000_000}

    def tracing_off() -> None:
        for name, is_valid in trace_checks:
            if name in options and not is_valid(options[name]):
                raise AssertionError(name)
        traceparent = options.get("traceparent")
        if isinstance(traceparent, str):
            raise AssertionError(traceparent)

    def empty() -> None:
        return None

    def best_us(run: Any) -> float:
        best = float("inf")
        for _ in range(5):
            started = time.process_time()
            for _ in range(calls):
                run()
            best = min(best, time.process_time() - started)
        return best / calls * 1e6

    return max(best_us(tracing_off) - best_us(empty), 0.0)


def tracing_summary(results: list[RunResult], configs: list[tuple[int, int]]) -> None:
    """CPU per message of the traced group beyond the untraced one, per configuration, and
    what tracing costs while off, as a share of the untraced group's CPU per message."""
    off_us = tracing_off_us()
    print(f"tracing off costs {off_us:.3f} us of CPU per message")
    for processes, threads in configs:
        config = f"{processes}x{threads}"

        def median(system: str, attribute: str, config: str = config) -> float:
            values = [
                getattr(r, attribute) for r in results if (r.system, r.config) == (system, config)
            ]
            return statistics.median(values)

        on, off = median(TRACED.name, "cpu_us_per_msg"), median(BGWORKERS.name, "cpu_us_per_msg")
        drain_on, drain_off = (
            median(TRACED.name, "drain_per_s"),
            median(BGWORKERS.name, "drain_per_s"),
        )
        print(f"median {config} {TRACED.name}: {drain_on:7,.0f} msg/s, CPU {on:.0f} us/msg")
        print(f"tracing_drain_ratio_p{processes}t{threads}={drain_on / drain_off:.2f}")
        print(f"tracing_cpu_us_per_msg_p{processes}t{threads}={on - off:.0f}")
        print(f"tracing_off_share_p{processes}t{threads}={off_us / off:.5f}")


@contextmanager
def otlp_sink() -> Iterator[tuple[str, list[int]]]:
    """An OTLP/HTTP endpoint that accepts every export: (its URL, [payloads, bytes])."""
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    received = [0, 0]

    class Sink(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            size = int(self.headers.get("Content-Length", 0))
            self.rfile.read(size)
            received[0] += 1
            received[1] += size
            self.send_response(200)
            self.send_header("Content-Type", "application/x-protobuf")
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: Any) -> None:
            return None

    server = ThreadingHTTPServer(("127.0.0.1", 0), Sink)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", received
    finally:
        server.shutdown()


def summary(
    results: list[RunResult], configs: list[tuple[int, int]], *, hook_saved_us: float
) -> None:
    def median(system: str, config: str, attribute: str) -> float:
        return statistics.median(
            getattr(r, attribute) for r in results if r.system == system and r.config == config
        )

    ratios: list[str] = []
    for processes, threads in configs:
        config, key = f"{processes}x{threads}", f"p{processes}t{threads}"
        figures = {
            name: {
                attribute: median(name, config, attribute)
                for attribute in (
                    "drain_per_s",
                    "cpu_us_per_msg",
                    "p50_ms",
                    "p99_ms",
                    "rss_mib",
                    "pss_mib",
                )
            }
            for name in ("bare", "bgworkers")
        }
        bare, full = figures["bare"], figures["bgworkers"]
        for name, values in figures.items():
            print(
                f"median {config} {name:9}: {values['drain_per_s']:7,.0f} msg/s, CPU "
                f"{values['cpu_us_per_msg']:.0f} us/msg, latency p50 "
                f"{values['p50_ms']:.1f} ms p99 {values['p99_ms']:.1f} ms, peak RSS "
                f"{values['rss_mib']:.0f} MiB, PSS {values['pss_mib']:.0f} MiB"
            )
        print(f"cpu_ratio_{key}={full['cpu_us_per_msg'] / bare['cpu_us_per_msg']:.2f}")
        print(f"p99_ratio_{key}={full['p99_ms'] / bare['p99_ms']:.2f}")
        print(f"pss_ratio_{key}={full['pss_mib'] / bare['pss_mib']:.2f}")
        print(f"hook_share_{key}={hook_saved_us / full['cpu_us_per_msg']:.3f}")
        if key != "p1t8":
            print(f"rss_ratio_{key}={full['rss_mib'] / bare['rss_mib']:.2f}")
        ratios.append(f"drain_ratio_{key}={full['drain_per_s'] / bare['drain_per_s']:.2f}")
        if key == "p1t8":
            rss_line = f"rss_ratio_{key}={full['rss_mib'] / bare['rss_mib']:.2f}"
    print("\n".join(ratios))
    if any(p == 1 and t == 8 for p, t in configs):
        print(rss_line)


if __name__ == "__main__":
    main()
