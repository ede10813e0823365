"""Domains depend on the platform and on each other's public ``api`` module only.

Read from the source (every import statement of ``bgworkers/<domain>/*.py``, those inside
functions and ``TYPE_CHECKING`` blocks included): a module of one domain may import another
domain only as ``bgworkers.<other>.api``. Everything else under ``bgworkers/`` is platform.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

import bgworkers

PACKAGE_ROOT = Path(bgworkers.__file__).parent
DOMAINS = frozenset({"reminders", "email", "files", "sync", "maintenance"})
#: Shared by the domains: ``users`` holds the users table every domain refers to; ``console``
#: (operations on dead letters, jobs and queues) works on every domain's messages alike.
PLATFORM_PACKAGES = frozenset(
    {
        "brokers",
        "cli",
        "compat",
        "console",
        "db",
        "logs",
        "metrics",
        "middleware",
        "migrations",
        "monitoring",
        "tracing",
        "outbox",
        "processes",
        "scheduling",
        "stack",
        "users",
    }
)


def imported_names(tree: ast.AST, package: str) -> Iterator[tuple[int, str]]:
    """``(line, dotted name)`` of everything a module imports; relative imports resolved
    against ``package`` (the module's own package)."""
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parent = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*parent, base] if base else parent)
            for alias in node.names:
                yield node.lineno, f"{base}.{alias.name}"


def violations(source: str, *, domain: str, filename: str = "<source>") -> list[str]:
    """The imports of a ``domain`` module that reach into another domain past its ``api``."""
    found = []
    for line, name in imported_names(ast.parse(source, filename), f"bgworkers.{domain}"):
        parts = name.split(".")
        if len(parts) < 2 or parts[0] != "bgworkers" or parts[1] == domain:
            continue
        if parts[1] in DOMAINS and (len(parts) < 3 or parts[2] != "api"):
            found.append(f"{filename}:{line}: imports {name}")
    return found


def domain_modules() -> list[tuple[str, Path]]:
    return [
        (domain, path)
        for domain in sorted(DOMAINS)
        for path in sorted((PACKAGE_ROOT / domain).glob("*.py"))
    ]


def test_every_package_is_a_domain_or_platform() -> None:
    packages = {path.parent.name for path in PACKAGE_ROOT.glob("*/__init__.py")}
    assert packages == DOMAINS | PLATFORM_PACKAGES, (
        "classify the new package in DOMAINS or PLATFORM_PACKAGES"
    )


@pytest.mark.parametrize(
    ("domain", "path"), domain_modules(), ids=lambda v: v.name if isinstance(v, Path) else v
)
def test_domains_import_other_domains_through_their_api_only(domain: str, path: Path) -> None:
    relative = str(path.relative_to(PACKAGE_ROOT.parent))
    assert violations(path.read_text(), domain=domain, filename=relative) == []


@pytest.mark.parametrize(
    "source",
    [
        "from bgworkers.email.outbox import is_email_address",
        "import bgworkers.sync.models",
        "from bgworkers import email",
        "from bgworkers.sync import models",
        "def f():\n    from bgworkers.email.models import OutboxEmail",
        "from ..email.outbox import add_email",
    ],
)
def test_the_check_catches_a_reach_past_the_api(source: str) -> None:
    assert len(violations(source, domain="reminders")) == 1


@pytest.mark.parametrize(
    "source",
    [
        "from bgworkers.email.api import enqueue_email",
        "from bgworkers.email import api",
        "import bgworkers.sync.api",
        "from bgworkers.reminders.models import Reminder",
        "from .models import Reminder",
        "from bgworkers.db import session_scope",
        "from bgworkers.users.models import User",
        "from bgworkers import queues",
    ],
)
def test_the_check_allows_platform_own_domain_and_api(source: str) -> None:
    assert violations(source, domain="reminders") == []
