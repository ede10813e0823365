"""docs/architecture.md against the code: the actor example, the queue table, the middleware.

These parts of the page once described code that did not exist; checking them here keeps a
change of the code from leaving the page behind.
"""

from __future__ import annotations

import re
from pathlib import Path

import bgworkers
from bgworkers import queues
from bgworkers.settings import get_settings
from bgworkers.stack.broker import build_broker, build_stub_broker

ROOT = Path(__file__).resolve().parent.parent
PAGE = (ROOT / "docs" / "architecture.md").read_text()


def section(title: str) -> str:
    start = PAGE.index(f"## {title}\n")
    end = PAGE.find("\n## ", start + 1)
    return PAGE[start : end if end != -1 else None]


def table_rows(text: str) -> list[list[str]]:
    rows = [line for line in text.splitlines() if line.startswith("| ")]
    return [[cell.strip() for cell in row.strip("|").split("|")] for row in rows[1:]]


def test_the_actor_example_is_the_code_of_send_email() -> None:
    [example] = re.findall(r"```python\n(.*?)```", section("Declaring an actor"), re.S)
    source = (ROOT / "bgworkers" / "email" / "actors.py").read_text()
    assert "def send_email(" in example
    assert example in source


def test_the_queue_table_lists_every_actor_on_its_queue() -> None:
    documented = {
        name: cell[0].strip("`")
        for cell in table_rows(section("Queues"))
        for name in re.findall(r"`(\w+)`", cell[1])
    }
    broker = bgworkers.broker
    actors = [broker.get_actor(name) for name in broker.get_declared_actors()]
    # Other tests declare probe actors of their own on the same broker: only ours count.
    declared = {
        a.actor_name: a.queue_name for a in actors if a.fn.__module__.startswith("bgworkers.")
    }
    assert documented == declared
    assert set(documented.values()) == set(queues.ALL)


def test_the_middleware_table_is_in_the_brokers_order() -> None:
    documented = [
        name
        for row in table_rows(section("Middleware (in order)"))
        for name in re.findall(r"`([A-Z]\w+)`", row[0])
    ]
    settings = get_settings()
    worker = build_broker(settings, worker_process=True)
    assert documented == [type(m).__name__ for m in worker.middleware]
    stub = [type(m).__name__ for m in build_stub_broker(settings).middleware]
    assert documented[: len(stub)] == stub
    assert documented[len(stub) :] == [
        "BrokerConnectivityCheck",
        "WorkerProcessBoot",
        "StopWithParent",
        "SchemaGate",
        "QueueArgumentsGate",
        "GroupExporter",
    ]


def documented_layout() -> set[str]:
    """The names the layout's tree shows directly under ``bgworkers/`` (``x/`` or ``x.py``)."""
    [tree] = re.findall(r"```\nbgworkers/\n(.*?)```", section("Layout"), re.S)
    names: set[str] = set()
    for line in tree.splitlines():
        if not line.startswith("  ") or line.startswith("   "):
            continue  # a continued description
        words = line.split()
        while words and re.fullmatch(r"\w+/|\w+\.py", words[0]):
            names.add(words.pop(0))  # one name, or several on a line (the domains)
    return names


def test_the_layout_shows_every_package_and_root_module() -> None:
    package = ROOT / "bgworkers"
    actual = {f"{p.name}/" for p in package.iterdir() if (p / "__init__.py").is_file()}
    actual |= {p.name for p in package.glob("*.py")}
    assert documented_layout() == actual


def test_every_path_the_page_names_exists() -> None:
    domains = ("reminders", "email", "files", "sync", "maintenance")
    missing = []
    for path in sorted(set(re.findall(r"`(bgworkers/[\w/<>.]+)`", PAGE))):
        expanded = [path.replace("<domain>", d) for d in domains] if "<domain>" in path else [path]
        missing += [p for p in expanded if not (ROOT / p).exists()]
    assert missing == []
