"""A broker that answers but has none (or not all) of our queues yet: the console says "not
declared yet" and how to declare them for each missing queue, never a row of zeros that reads
as "all caught up"."""

from __future__ import annotations

import argparse
import json
import uuid
from io import StringIO
from pathlib import Path
from zoneinfo import ZoneInfo

import pika
from jinja2 import Environment, FileSystemLoader

from bgworkers.console.commands import print_depths
from bgworkers.console.overview import Overview
from bgworkers.console.web import site
from bgworkers.monitoring.queue_depth import NOT_DECLARED, QueueDepth, read_depths_amqp

TEMPLATES = Path(site.__file__).parent / "templates"


def test_amqp_reading_tells_a_missing_queue_from_an_empty_one(rabbitmq_url: str) -> None:
    missing, empty = f"bgw_missing_{uuid.uuid4().hex}", f"bgw_empty_{uuid.uuid4().hex}"
    connection = pika.BlockingConnection(pika.URLParameters(rabbitmq_url))
    channel = connection.channel()
    channel.queue_declare(empty)
    try:
        depths = {d.queue: d for d in read_depths_amqp(rabbitmq_url, [missing, empty])}
    finally:
        channel.queue_delete(empty)
        connection.close()
    assert (depths[missing].declared, depths[missing].ready) == (False, 0)
    assert (depths[empty].declared, depths[empty].ready) == (True, 0)


DEPTHS = [
    QueueDepth("email", 0, 0, 0, 0, consumers=0, oldest_age_s=0.0),
    QueueDepth("sync", 0, 0, 0, None, consumers=0, declared=False),
]


def test_the_queues_command_says_not_declared_instead_of_zeros() -> None:
    out = StringIO()
    print_depths(DEPTHS, argparse.Namespace(json=False), out)
    header, email, sync = out.getvalue().splitlines()
    assert header.split()[:2] == ["queue", "lane"]
    assert email.split()[:4] == ["email", "bulk", "0", "0"]
    assert sync.split()[:2] == ["sync", "bulk"] and sync.endswith(NOT_DECLARED)
    assert "0" not in sync.split()
    assert NOT_DECLARED.startswith("not declared yet: start a worker group")

    out = StringIO()
    print_depths(DEPTHS, argparse.Namespace(json=True), out)
    email_row, sync_row = (json.loads(line) for line in out.getvalue().splitlines())
    assert email_row["declared"] is True and email_row["ready"] == 0
    assert sync_row == {"queue": "sync", "lane": "bulk", "declared": False}


def test_the_overview_page_says_not_declared_instead_of_zeros() -> None:
    env = Environment(loader=FileSystemLoader(TEMPLATES), autoescape=True)
    env.filters.update(when=lambda value: site._when(value, ZoneInfo("UTC")), ago=site._ago)
    page = env.get_template("overview.html").render(
        view=Overview(queues=DEPTHS), not_declared=NOT_DECLARED, path="/", user=None
    )
    [sync_row] = [row for row in page.split("<tr>") if "<td>sync</td>" in row]
    assert NOT_DECLARED in sync_row and 'class="num"' not in sync_row
    [email_row] = [row for row in page.split("<tr>") if "<td>email</td>" in row]
    assert NOT_DECLARED not in email_row and '<td class="num">0</td>' in email_row
