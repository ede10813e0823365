"""Benchmark: deliver a 10,000-email outbox through the worker path to a local SMTP server.

What it measures, on a fresh database and the RabbitMQ of ``BGW_BROKER_URL``, through a
queue of its own (``bench-email-...``, deleted at the end; the application's ``email`` queue
is never touched):

1. fill: ``add_email`` for N emails (committed every 1,000);
2. sweep: ``sweep_outbox`` (the ``process_email_queue`` work) records a ``send_email_page``
   message for every 50 rows in the message outbox (the worker's relay publishes them); its
   Python allocation peak is traced to show that memory is
   bounded by the page size, not by the outbox;
3. deliver: an in-process dramatiq worker on the ``email`` queue claims, sends over SMTP
   (an aiosmtpd server in a separate process) and marks each email sent.

It prints the time of each phase, the delivery rate and the peak memory (the sweep's traced
peak and the process's peak resident set size). Run::

    BGW_BROKER_URL=amqp://guest:guest@127.0.0.1:5672/<vhost> python bench/email_outbox.py \
        [--emails 10000] [--threads 8] [--database-url postgresql+psycopg://...]
"""

from __future__ import annotations

import argparse
import functools
import multiprocessing
import resource
import socket
import tempfile
import time
import tracemalloc
from datetime import timedelta
from typing import Any

import dramatiq
from _isolation import own_queue, quiet_logs
from sqlalchemy import func
from sqlmodel import Session, col, select

import bgworkers
from bgworkers import migrations
from bgworkers.db.engine import make_engine, use_engine, utcnow
from bgworkers.email.actors import dispatch_each, dispatch_emails, send_email, send_email_page
from bgworkers.email.models import EmailStatus, OutboxEmail
from bgworkers.email.outbox import REDISPATCH_AFTER, add_email, sweep_outbox
from bgworkers.email.smtp import SmtpMailer, use_mailer


def run_smtp_server(port: int, received: Any, ready: Any) -> None:
    """Child process: an aiosmtpd server that counts accepted emails."""
    from aiosmtpd.controller import Controller

    quiet_logs()  # aiosmtpd logs every SMTP command at INFO

    class Counting:
        async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
            with received.get_lock():
                received.value += 1
            return "250 OK"

    controller = Controller(Counting(), hostname="127.0.0.1", port=port)
    controller.start()
    ready.set()
    while True:
        time.sleep(3600)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def count_sent(session: Session) -> int:
    statement = select(func.count()).where(col(OutboxEmail.status) == EmailStatus.SENT)
    return int(session.exec(statement).one())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--emails", type=int, default=10_000)
    parser.add_argument("--threads", type=int, default=8, help="worker threads")
    parser.add_argument("--database-url", default=None, help="default: a temporary SQLite file")
    args = parser.parse_args()
    quiet_logs()
    broker = bgworkers.broker
    with own_queue(broker, "email") as queue:
        # send_email's and send_email_page's messages go to the benchmark's queue, and its
        # worker serves only that.
        send_email.queue_name = send_email_page.queue_name = queue
        bench(args, broker, queue)
    broker.close()


def bench(args: argparse.Namespace, broker: dramatiq.Broker, queue: str) -> None:
    workdir = tempfile.TemporaryDirectory()
    engine = make_engine(args.database_url or f"sqlite:///{workdir.name}/bench.db")
    migrations.upgrade(engine)
    use_engine(engine)
    with Session(engine) as session:
        if session.exec(select(func.count()).select_from(OutboxEmail)).one():
            raise SystemExit("the outbox of that database is not empty; use an empty one")

    context = multiprocessing.get_context("spawn")
    received, ready = context.Value("i", 0), context.Event()
    port = free_port()
    server = context.Process(target=run_smtp_server, args=(port, received, ready), daemon=True)
    server.start()
    ready.wait(30)
    use_mailer(SmtpMailer(host="127.0.0.1", port=port, timeout_s=10))

    written = utcnow() - REDISPATCH_AFTER - timedelta(seconds=1)
    started = time.perf_counter()
    with Session(engine) as session:
        for n in range(args.emails):
            add_email(
                session=session,
                recipient=f"user{n}@example.org",
                subject=f"Benchmark email {n}",
                text="Hello from the benchmark.\n" * 20,
                html="<p>Hello from the benchmark.</p>" * 20,
                idempotency_key=f"bench-{n}",
                now=written,
            )
            if n % 1000 == 999:
                session.commit()
        session.commit()
    fill_s = time.perf_counter() - started

    tracemalloc.start()
    started = time.perf_counter()
    with Session(engine) as session:
        result = sweep_outbox(
            session=session,
            now=utcnow(),
            sending_timeout_s=600,
            dispatch=functools.partial(dispatch_emails, session),  # into the message outbox
            dispatch_tried=functools.partial(dispatch_each, session),
        )
    sweep_s = time.perf_counter() - started
    _, sweep_peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()

    worker = dramatiq.Worker(broker, queues={queue}, worker_threads=args.threads)
    started = time.perf_counter()
    worker.start()
    with Session(engine) as session:
        while (sent := count_sent(session)) < args.emails:
            if time.perf_counter() - started > 600:
                raise SystemExit(f"only {sent} of {args.emails} sent after 10 minutes")
            time.sleep(0.2)
    deliver_s = time.perf_counter() - started
    worker.stop()
    server.terminate()
    peak_rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

    print(f"database              {engine.dialect.name}")
    print(f"emails                {args.emails:,} (dispatched by the sweep: {result.dispatched:,})")
    print(f"received by SMTP      {received.value:,}")
    print(f"fill outbox           {fill_s:6.1f} s")
    print(f"sweep + publish       {sweep_s:6.1f} s   traced peak {sweep_peak / 2**20:.1f} MiB")
    print(
        f"deliver ({args.threads} threads)   {deliver_s:6.1f} s   "
        f"{args.emails / deliver_s:,.0f} emails/s"
    )
    print(f"sweep + deliver       {sweep_s + deliver_s:6.1f} s")
    print(f"process peak RSS      {peak_rss_mb:6.1f} MiB")
    print(f"emails_per_s={args.emails / deliver_s:.0f}")
    print(f"sweep_traced_peak_mib={sweep_peak / 2**20:.1f}")
    workdir.cleanup()


if __name__ == "__main__":
    main()
