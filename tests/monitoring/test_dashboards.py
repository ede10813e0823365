"""The Grafana dashboards: checked against Grafana's dashboard schema, and read at a glance.

Grafana itself can not run here (neither Debian nor PyPI packages it), so each dashboard's
JSON is decoded with grafana-foundation-sdk, whose models are generated from Grafana's own
schema (the dashboard kind and each panel plugin's options and field config), and encoded
back: a key the schema does not know is dropped, and a value it types differently changes,
so the round trip must give back every key and value of the file. The values of every
expression are checked against a real Prometheus in ``test_prometheus_stack.py``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tools import grafana_dashboards as dashboards

ROOT = Path(__file__).resolve().parents[2]
FILES = sorted((ROOT / "deploy" / "grafana" / "dashboards").glob("*.json"))


def lost_in_round_trip(original: Any, decoded: Any, path: str = "") -> list[str]:
    """Where ``decoded`` lacks or changed something of ``original`` (extra keys are fine:
    the schema's defaults)."""
    if isinstance(original, dict):
        if not isinstance(decoded, dict):
            return [f"{path}: {type(decoded).__name__} instead of an object"]
        problems = []
        for key, value in original.items():
            if key not in decoded:
                problems.append(f"{path}.{key}: not in Grafana's schema")
            else:
                problems += lost_in_round_trip(value, decoded[key], f"{path}.{key}")
        return problems
    if isinstance(original, list):
        if not isinstance(decoded, list) or len(decoded) != len(original):
            return [f"{path}: list changed"]
        return [
            problem
            for i, (a, b) in enumerate(zip(original, decoded, strict=True))
            for problem in lost_in_round_trip(a, b, f"{path}[{i}]")
        ]
    return [] if original == decoded else [f"{path}: {original!r} became {decoded!r}"]


def round_trip(data: dict[str, Any]) -> dict[str, Any]:
    from grafana_foundation_sdk.cog import plugins
    from grafana_foundation_sdk.cog.encoder import JSONEncoder
    from grafana_foundation_sdk.models.dashboard import Dashboard

    plugins.register_default_plugins()
    decoded: dict[str, Any] = json.loads(json.dumps(Dashboard.from_json(data), cls=JSONEncoder))
    return decoded


def test_the_round_trip_check_catches_what_the_schema_does_not_know() -> None:
    data = dashboards.render(dashboards.OVERVIEW)
    panel = next(p for p in data["panels"] if p["type"] == "timeseries")
    panel["options"]["legend"]["placment"] = "bottom"
    panel["fieldConfig"]["defaults"]["unti"] = "s"
    panel["targets"][0]["exprr"] = "up"
    panel["colour"] = "red"
    problems = lost_in_round_trip(data, round_trip(data))
    assert len(problems) == 4, problems


@pytest.mark.parametrize("path", FILES, ids=[p.stem for p in FILES])
def test_dashboard_json_matches_grafanas_schema(path: Path) -> None:
    data = json.loads(path.read_text())
    assert lost_in_round_trip(data, round_trip(data)) == []


@pytest.mark.parametrize("path", FILES, ids=[p.stem for p in FILES])
def test_every_panel_has_a_description_a_unit_and_its_own_place(path: Path) -> None:
    data = json.loads(path.read_text())
    taken: set[tuple[int, int]] = set()
    for panel in data["panels"]:
        assert len(panel["description"]) > 30, panel["title"]
        assert panel["fieldConfig"]["defaults"]["unit"], panel["title"]
        assert panel["type"] in ("timeseries", "stat", "table")
        grid = panel["gridPos"]
        assert grid["x"] + grid["w"] <= 24
        cells = {
            (x, y)
            for x in range(grid["x"], grid["x"] + grid["w"])
            for y in range(grid["y"], grid["y"] + grid["h"])
        }
        assert not cells & taken, f"{panel['title']} overlaps another panel"
        taken |= cells
        for target in panel["targets"]:
            assert target["datasource"] == dashboards.DATASOURCE


def test_overview_has_the_headline_stats_and_variables() -> None:
    rendered = dashboards.render(dashboards.OVERVIEW)
    stats = {p["title"] for p in rendered["panels"] if p["type"] == "stat"}
    assert {
        "Targets up",
        "Dead letters waiting",
        "Most overdue periodic job",
        "Queue backlog",
        "Active alerts",
    } <= stats
    assert [v["name"] for v in rendered["templating"]["list"]] == ["queue", "actor"]
    uses = [t["expr"] for p in rendered["panels"] for t in p["targets"] if "$actor" in t["expr"]]
    assert len(uses) >= 6


def test_per_job_facts_are_a_table_not_one_axis() -> None:
    """A minute and a week on one axis hide the minute: a table row per job instead."""
    rendered = dashboards.render(dashboards.SCHEDULER)
    table = next(p for p in rendered["panels"] if p["type"] == "table")
    assert "since success" in table["title"].lower() or "time since success" in table["title"]
    assert [t["format"] for t in table["targets"]] == ["table"] * len(table["targets"])
