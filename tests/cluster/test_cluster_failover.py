"""A RabbitMQ cluster loses nodes and a worker host loses its link: every effect happens once.

Set-up: a three-node cluster of the test's own (:mod:`tests.cluster.rabbitmq_cluster`),
quorum queues (``BGW_QUEUE_TYPE=quorum``), three worker hosts and two scheduler hosts, each a
network namespace (:mod:`tests.cluster.netns`) running the real ``dramatiq bgworkers`` /
``periodiq bgworkers`` with all three node URLs, and PostgreSQL reached from the hosts
through a relay on the cluster address. While 10,000 ``record_effect`` messages flow (half
sent directly by this process, as an application's ``send()``; half written to the outbox
and published by the workers' relay; every tenth delayed, every seventh failing once and
retried through ``.DQ``), the test

1. stops the node that leads ``cluster_probe`` (``stop_app``),
2. then kills a second node (SIGKILL: the cluster has no majority for a while),
3. brings both back,
4. cuts the link of the worker host that took the most messages so far.

Then every item has exactly one row in ``cluster_effects`` (the actor's idempotency counts
the redeliveries it absorbed in ``cluster_duplicates``), nothing is dead-lettered, the queues
are empty, the scheduler's heartbeat went on being processed after the nodes came back (each
tick once, though both schedulers send it), and
the cut host's unacknowledged messages were run by the others. Counts and timings are
printed (``pytest -s``, or ``make test-cluster``).
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import dramatiq
import pytest
from dramatiq.errors import BrokerConnectionError
from sqlalchemy import text
from sqlalchemy.engine import Engine, make_url

from bgworkers import migrations
from bgworkers.brokers.cluster_broker import ClusterRabbitmqBroker
from bgworkers.db.engine import make_engine, session_scope
from bgworkers.outbox import enqueue
from bgworkers.scheduling.schedule import SCHEDULE
from bgworkers.settings import broker_urls
from tests.cluster import effects, netns
from tests.cluster.rabbitmq_cluster import CLUSTER_ADDRESS, RabbitmqCluster
from tests.outbox.rabbitmq_node import require_rabbitmq_server
from tests.platform_helpers import wait_for
from tests.tcp_relay import TcpRelay

pytestmark = [pytest.mark.integration, pytest.mark.cluster]

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
MESSAGES = 10_000
ROUNDS = 100  # the producer sends MESSAGES / ROUNDS per round
ROUND_S = 0.7
DATABASE = "bgw_cluster_failover"
DB_RELAY_PORT = 9250
WORKER_HOSTS = (1, 2, 3)
SCHEDULER_HOSTS = (4, 5)  # two schedulers, as deploy/kubernetes runs them
#: A short AMQP heartbeat, so RabbitMQ notices a silent host in ~10 s rather than minutes.
URL_OPTIONS = "?heartbeat=5&connection_attempts=1&socket_timeout=3&blocked_connection_timeout=60"


@dataclass
class Timeline:
    events: dict[str, float] = field(default_factory=dict)

    def mark(self, name: str) -> float:
        self.events[name] = time.time()
        print(f"[{datetime.now(UTC):%H:%M:%S}] {name}", flush=True)
        return self.events[name]


@pytest.fixture
def cluster_database(postgres_engine: Engine) -> Iterator[Engine]:
    """A database of its own (the workers run in other network namespaces: a schema set per
    connection, as ``postgres_engine`` does, would not reach them)."""
    # Without the fixture's search_path (its schema is in the other database).
    POSTGRES_URL = postgres_engine.url.set(query={}).render_as_string(hide_password=False)
    admin = make_engine(POSTGRES_URL).execution_options(isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{DATABASE}" WITH (FORCE)'))
        conn.execute(text(f'CREATE DATABASE "{DATABASE}"'))
    engine = make_engine(
        make_url(POSTGRES_URL).set(database=DATABASE, query={}).render_as_string(False)
    )
    migrations.upgrade(engine)
    with engine.begin() as conn:
        effects.create_tables(conn)
    try:
        yield engine
    finally:
        engine.dispose()
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{DATABASE}" WITH (FORCE)'))
        admin.dispose()


@pytest.fixture
def cluster() -> Iterator[RabbitmqCluster]:
    require_rabbitmq_server()
    netns.require_netns()
    netns.remove_all()  # what an interrupted run left
    directory = Path(tempfile.mkdtemp(prefix="bgwcluster-"))
    own = RabbitmqCluster(directory)
    try:
        netns.add_cluster_address()  # before the nodes start: they listen on it
        own.start()
        yield own
    finally:
        own.shutdown()
        netns.remove_all()
        shutil.rmtree(directory, ignore_errors=True)


class Process:
    """A ``dramatiq``/``periodiq`` process inside a host's namespace, logging to a file."""

    def __init__(self, host: netns.WorkerHost, argv: list[str], env: dict[str, str], log: Path):
        self.host, self.log = host, log
        with log.open("ab") as out:
            self.popen = subprocess.Popen(
                host.command("env", *[f"{k}={v}" for k, v in env.items()], *argv),
                cwd=ROOT,
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,  # its own process group: stopped as one below
            )

    def check_running(self) -> None:
        if self.popen.poll() is not None:
            tail = "\n".join(self.log.read_text(errors="replace").splitlines()[-20:])
            raise AssertionError(f"{self.log.name} exited ({self.popen.returncode}):\n{tail}")

    def stop(self) -> None:
        if self.popen.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.popen.pid, signal.SIGTERM)
            try:
                self.popen.wait(15)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.popen.pid, signal.SIGKILL)
                self.popen.wait(10)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.popen.pid, signal.SIGKILL)  # children left in the group


def host_env(cluster: RabbitmqCluster, tmp: Path, name: str) -> dict[str, str]:
    only_heartbeat = {e.actor_name: "off" for e in SCHEDULE if e.actor_name != "heartbeat"}
    database = f"postgresql+psycopg://postgres@{CLUSTER_ADDRESS}:{DB_RELAY_PORT}/{DATABASE}"
    return {
        "BGW_BROKER_URL": ";".join(u + URL_OPTIONS for u in broker_urls(cluster.urls())),
        "BGW_QUEUE_TYPE": "quorum",
        "BGW_DATABASE_URL": database,
        "BGW_DATA_DIR": str(tmp / name),
        "BGW_LOG_FORMAT": "json",
        "BGW_SCHEDULE_OVERRIDES": json.dumps(only_heartbeat),
        "BGW_OUTBOX_LEASE_S": "5",
        "BGW_TEST_HOST": name,
        "TZ": "UTC",
    }


def count(engine: Engine, sql: str, **params: object) -> int:
    with engine.connect() as conn:
        return int(conn.execute(text(sql), params).scalar_one())


def longest_pause_after(engine: Engine, start: float, window_s: float) -> float:
    """Longest gap (s) between consecutive effects in [start, start + window_s]."""
    with engine.connect() as conn:
        stamps = [
            row[0].timestamp()
            for row in conn.execute(
                text(
                    "SELECT done_at FROM cluster_effects WHERE done_at BETWEEN"
                    " to_timestamp(:a) AND to_timestamp(:b) ORDER BY done_at"
                ),
                {"a": start, "b": start + window_s},
            )
        ]
    points = [start, *stamps]
    return max((b - a for a, b in itertools.pairwise(points)), default=window_s)


def queues_with_messages(cluster: RabbitmqCluster) -> dict[str, int]:
    """Queues holding messages (ready or unacknowledged), by name."""
    out = cluster.nodes[0].output("list_queues", "-q", "--no-table-headers", "name", "messages")
    rows = (line.split("\t") for line in out.splitlines() if line.strip())
    return {name: int(depth) for name, depth in rows if int(depth)}


def unacked_held_by(cluster: RabbitmqCluster, address: str) -> int:
    """Messages delivered to ``address``'s channels and not acknowledged yet (``<q>`` and
    ``<q>.DQ``), over every node."""
    channels: dict[str, int] = {}
    for node in cluster.nodes:
        out = node.output("list_channels", "name", "messages_unacknowledged", "--formatter", "json")
        for row in json.loads(out):
            if row["name"].startswith(f"{address}:"):
                channels[row["name"]] = int(row["messages_unacknowledged"])
    return sum(channels.values())


class Producer(threading.Thread):
    """Sends the items, half directly (retrying until RabbitMQ confirms), half via the outbox."""

    def __init__(self, urls: str, engine: Engine) -> None:
        super().__init__(daemon=True, name="producer")
        self.broker = ClusterRabbitmqBroker(
            url=broker_urls(urls), confirm_delivery=True, queue_type="quorum", middleware=[]
        )
        self.engine = engine
        self.send_retries = 0
        self.error: BaseException | None = None
        self.finished = threading.Event()

    def message(self, item: int) -> tuple[dramatiq.Message[object], int | None]:
        message = dramatiq.Message(
            queue_name=effects.QUEUE,
            actor_name="record_effect",
            args=(item,),
            kwargs={"fail_first": item % 7 == 0},
            options={},
        )
        return message, (2_000 + item % 5 * 1_000 if item % 10 == 0 else None)

    def send(self, item: int) -> None:
        message, delay = self.message(item)
        while True:
            try:
                self.broker.enqueue(message, delay=delay)
                return
            except BrokerConnectionError:
                self.send_retries += 1
                time.sleep(0.5)

    def run(self) -> None:
        try:
            per_round = MESSAGES // ROUNDS
            for round_ in range(ROUNDS):
                started = time.monotonic()
                items = range(round_ * per_round, (round_ + 1) * per_round)
                with session_scope(self.engine) as session:
                    for item in items[1::2]:
                        _, delay = self.message(item)
                        enqueue(
                            session,
                            effects.record_effect,
                            item,
                            fail_first=item % 7 == 0,
                            delay_ms=delay,
                        )
                for item in items[::2]:
                    self.send(item)
                time.sleep(max(0.0, ROUND_S - (time.monotonic() - started)))
        except BaseException as exc:
            self.error = exc
        finally:
            self.finished.set()
            self.broker.close()


@pytest.mark.timeout(600)
def test_node_losses_and_a_cut_host_lose_nothing_and_run_nothing_twice(
    cluster: RabbitmqCluster, cluster_database: Engine, tmp_path: Path
) -> None:
    engine = cluster_database
    timeline = Timeline()
    relay = TcpRelay(("127.0.0.1", 5432), host=CLUSTER_ADDRESS, port=DB_RELAY_PORT)
    relay.start()
    hosts = {i: netns.WorkerHost(i) for i in (*WORKER_HOSTS, *SCHEDULER_HOSTS)}
    processes: list[Process] = []
    try:
        for host in hosts.values():
            host.create()
        for i in WORKER_HOSTS:
            env = host_env(cluster, tmp_path, f"host{i}")
            argv = [str(BIN / "dramatiq"), "bgworkers", "tests.cluster.effects"]
            argv += ["-p", "1", "-t", "4", "--worker-shutdown-timeout", "5000"]
            processes.append(Process(hosts[i], argv, env, tmp_path / f"host{i}.log"))
        for i in SCHEDULER_HOSTS:
            env = host_env(cluster, tmp_path, f"host{i}")
            argv = [str(BIN / "periodiq"), "bgworkers", "tests.cluster.effects"]
            processes.append(Process(hosts[i], argv, env, tmp_path / f"host{i}.log"))
        # Workers declare the queues (quorum) when their consumers start.
        wait_for(
            lambda: effects.QUEUE in cluster.queue_types(),
            timeout_s=90,
            what="the workers' queues",
            watch=processes,
        )
        assert set(cluster.queue_types().values()) == {"quorum"}

        producer = Producer(cluster.urls("127.0.0.1"), engine)
        started = timeline.mark("producing")
        producer.start()
        done = lambda: count(engine, "SELECT count(*) FROM cluster_effects")  # noqa: E731

        wait_for(lambda: done() >= 1_500, timeout_s=120, what="1,500 effects", watch=processes)
        leader = cluster.leader_of(effects.QUEUE)
        leader_stopped = timeline.mark(f"stop_app {leader.name} (leader of {effects.QUEUE})")
        leader.stop_app()
        wait_for(lambda: done() >= 3_500, timeout_s=120, what="3,500 effects", watch=processes)
        second = next(n for n in cluster.nodes if n is not leader)
        timeline.mark(f"kill -9 {second.name}: no majority")
        second.kill()
        time.sleep(10)
        timeline.mark("nodes back: start_app and restart")
        leader.start_app()
        second.restart_after_kill()
        back = timeline.mark("both nodes running")
        wait_for(lambda: done() >= 6_500, timeout_s=180, what="6,500 effects", watch=processes)

        with engine.connect() as conn:
            busiest = conn.execute(
                text(
                    "SELECT host FROM cluster_effects WHERE host LIKE 'host%'"
                    " GROUP BY host ORDER BY count(*) DESC LIMIT 1"
                )
            ).scalar_one()
        cut_host = hosts[int(busiest.removeprefix("host"))]
        held_at_cut = unacked_held_by(cluster, cut_host.address)
        cut = timeline.mark(f"cut the link of {busiest} (holding {held_at_cut} unacked)")
        cut_host.cut()
        cut_process = processes[WORKER_HOSTS.index(cut_host.index)]
        alive = [p for p in processes if p is not cut_process]

        wait_for(producer.finished.is_set, timeout_s=300, what="the producer", watch=alive)
        assert producer.error is None, producer.error
        wait_for(lambda: done() == MESSAGES, timeout_s=300, what="every effect", watch=alive)
        finished = timeline.mark("all effects recorded")
        # A batch the cut host's relay had published but not yet marked stays locked by its
        # transaction until PostgreSQL ends it (twice the 5 s lease), then is published
        # again by the relay that holds the lease: its copies are duplicates, absorbed below.
        wait_for(
            lambda: (
                count(engine, "SELECT count(*) FROM outbox_messages WHERE published_at IS NULL")
                == 0
            ),
            timeout_s=60,
            what="every outbox row marked published",
            watch=alive,
        )
        # Duplicates still on their way (a delayed copy held until its ETA) drain, too.
        wait_for(
            lambda: not queues_with_messages(cluster),
            timeout_s=60,
            what="empty queues",
            watch=alive,
        )
        # A heartbeat tick processed after both nodes were back (ticks come each minute).
        wait_for(
            lambda: count(
                engine,
                "SELECT count(*) FROM scheduler_heartbeat WHERE processed_at > to_timestamp(:t)",
                t=back,
            ),
            timeout_s=90,
            what="a heartbeat after the nodes came back",
            watch=alive,
        )

        duplicates = count(engine, "SELECT count(*) FROM cluster_duplicates")
        distinct = count(engine, "SELECT count(DISTINCT item) FROM cluster_effects")
        out_of_range = count(
            engine, "SELECT count(*) FROM cluster_effects WHERE item < 0 OR item >= :n", n=MESSAGES
        )
        late_on_cut_host = count(
            engine,
            "SELECT count(*) FROM cluster_effects WHERE host = :h AND done_at > to_timestamp(:t)",
            h=busiest,
            t=cut + 2,
        )
        redelivered_after_cut = count(
            engine,
            "SELECT (SELECT count(*) FROM cluster_effects WHERE redelivered AND host <> :h"
            " AND done_at > to_timestamp(:t)) + (SELECT count(*) FROM cluster_duplicates"
            " WHERE redelivered AND host <> :h AND seen_at > to_timestamp(:t))",
            h=busiest,
            t=cut,
        )
        first_redelivery = count(
            engine,
            "SELECT coalesce(1000 * (extract(epoch FROM min(done_at)) - :t), -1)::int"
            " FROM cluster_effects WHERE redelivered AND host <> :h AND done_at > to_timestamp(:t)",
            h=busiest,
            t=cut,
        )
        beats = count(engine, "SELECT coalesce(sum(beats), 0) FROM scheduler_heartbeat")
        heartbeat_ticks = count(
            engine, "SELECT count(*) FROM scheduled_runs WHERE job = 'heartbeat'"
        )
        heartbeat_sends = sum(
            (tmp_path / f"host{i}.log")
            .read_text(errors="replace")
            .count("Scheduling Actor(heartbeat)")
            for i in SCHEDULER_HOSTS
        )
        retried = count(engine, "SELECT count(*) FROM cluster_effects WHERE attempt > 0")
        outbox_left = count(
            engine, "SELECT count(*) FROM outbox_messages WHERE published_at IS NULL"
        )
        with engine.connect() as conn:
            per_host = dict(
                conn.execute(
                    text("SELECT host, count(*) FROM cluster_effects GROUP BY host ORDER BY host")
                ).all()
            )
        figures = {
            "sent": MESSAGES,
            "effects": distinct,
            "duplicates_absorbed": duplicates,
            "retried_via_dq": retried,
            "producer_send_retries": producer.send_retries,
            "per_host": per_host,
            "unacked_on_cut_host_at_cut": held_at_cut,
            "redelivered_after_cut": redelivered_after_cut,
            "effects_on_cut_host_after_cut": late_on_cut_host,
            "first_redelivery_after_cut_s": round(first_redelivery / 1000, 1),
            "heartbeats": beats,
            "heartbeat_ticks": heartbeat_ticks,
            "heartbeat_messages_sent": heartbeat_sends,
            "longest_pause_after_leader_stop_s": round(
                longest_pause_after(engine, leader_stopped, 30), 1
            ),
            "longest_pause_after_nodes_back_s": round(longest_pause_after(engine, back, 30), 1),
            "longest_pause_after_cut_s": round(longest_pause_after(engine, cut, 40), 1),
            "run_s": round(finished - started, 1),
            "queues_left": queues_with_messages(cluster),
            "outbox_unpublished": outbox_left,
        }
        print("cluster figures: " + json.dumps(figures), flush=True)

        assert distinct == MESSAGES and out_of_range == 0
        assert late_on_cut_host == 0  # the cut host could reach nothing
        assert redelivered_after_cut > 0  # its unacknowledged messages went to the others
        assert not queues_with_messages(cluster)  # nothing dead-lettered (XQ), nothing left
        assert outbox_left == 0
        assert beats >= 2
        assert beats == heartbeat_ticks  # two schedulers, each tick run once
    finally:
        for process in processes:
            process.stop()
        relay.stop()
        for i in hosts:
            log = tmp_path / f"host{i}.log"
            if log.exists():
                print(f"--- {log.name}: last lines")
                print("\n".join(log.read_text(errors="replace").splitlines()[-5:]))
