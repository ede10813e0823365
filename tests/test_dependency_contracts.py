"""Every private (or replaced) name of a dependency that bgworkers relies on still holds.

The uses are listed in ``bgworkers/compat/<dependency>.py``; a failure names the use and
what to re-check before the pinned version in pyproject.toml is changed.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from bgworkers.compat import PrivateUse, dramatiq, periodiq, pika, problem, structlog

USES = [*dramatiq.USES, *pika.USES, *periodiq.USES, *structlog.USES]
PACKAGE = Path(dramatiq.__file__).resolve().parents[1]


@pytest.mark.parametrize("use", USES, ids=lambda use: use.target)
def test_the_installed_dependency_still_offers_it(use: PrivateUse) -> None:
    message = problem(use)
    assert message is None, message


def test_a_changed_upstream_source_is_reported_with_what_to_recheck() -> None:
    use = PrivateUse(
        "periodiq:Scheduler.send_actors",
        used_by="a test",
        why="none",
        recheck="the replacement",
        source_sha256="0" * 16,
    )
    message = problem(use)
    assert message is not None
    assert "changed upstream" in message and "Re-check: the replacement" in message


def test_a_missing_name_is_reported() -> None:
    use = PrivateUse("dramatiq.brokers.rabbitmq:_Gone", used_by="a test", why="", recheck="x")
    assert "is gone from the installed version" in (problem(use) or "")


def private_names_outside_compat() -> list[str]:
    """``from <dependency> import _name`` anywhere in bgworkers but its compat modules."""
    found = []
    for path in PACKAGE.rglob("*.py"):
        if path.parent.name == "compat":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] in {
                "dramatiq",
                "periodiq",
                "pika",
                "structlog",
            }:
                found += [f"{path}: {a.name}" for a in node.names if a.name.startswith("_")]
    return found


def test_no_module_imports_a_private_name_of_a_dependency_but_compat() -> None:
    assert private_names_outside_compat() == []
