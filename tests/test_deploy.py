"""deploy/: what env.example documents reaches the containers, and what Prometheus scrapes is
published. Runs Debian's ``docker-compose config`` (no Docker daemon needed)."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from bgworkers.settings import ENV_PREFIX, Settings

IN_CI = os.environ.get("CI", "").lower() in {"1", "true", "yes"}
DEPLOY = Path(__file__).resolve().parents[1] / "deploy"
#: Set by the compose file itself (its own services and volumes), winning over env_file.
COMPOSE_OWN = {"BGW_BROKER_URL", "BGW_DATABASE_URL", "BGW_DATA_DIR", "BGW_METRICS_HOST"}
BGWORKERS_SERVICES = ("migrate", "worker", "scheduler")


def env_example() -> dict[str, str]:
    pairs = {}
    for line in (DEPLOY / "env.example").read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            name, _, value = line.partition("=")
            pairs[name] = value
    return pairs


def compose_config(tmp_path: Path) -> dict:  # type: ignore[type-arg]
    compose = shutil.which("docker-compose")
    if compose is None:
        message = "docker-compose not installed (make test-tools installs Debian's package)"
        if IN_CI:
            pytest.fail(message)
        pytest.skip(message)
    (tmp_path / "deploy").mkdir()
    shutil.copy(DEPLOY / "docker-compose.yml", tmp_path / "deploy")
    shutil.copy(DEPLOY / "env.example", tmp_path / "deploy" / ".env")  # as the README says
    result = subprocess.run(
        [compose, "-f", "deploy/docker-compose.yml", "config"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    config: dict = yaml.safe_load(result.stdout)  # type: ignore[type-arg]
    return config


def test_env_example_names_real_settings_only() -> None:
    fields = {f"{ENV_PREFIX}{name.upper()}" for name in Settings.model_fields}
    assert set(env_example()) - fields == set()
    assert {"BGW_EMAIL_FROM", "BGW_SMTP_USERNAME", "BGW_SMTP_PASSWORD"} <= set(env_example())


def test_every_documented_variable_reaches_the_containers(tmp_path: Path) -> None:
    config = compose_config(tmp_path)
    documented = env_example()
    for service in BGWORKERS_SERVICES:
        environment = config["services"][service]["environment"]
        for name, value in documented.items():
            assert name in environment, (service, name)
            if name not in COMPOSE_OWN:
                assert str(environment[name]) == value, (service, name)
        assert environment["BGW_DATA_DIR"] == "/var/lib/bgworkers"
        volumes = config["services"][service]["volumes"]
        assert any(v.startswith("backups:/var/lib/bgworkers/backups") for v in volumes), service


def test_what_prometheus_scrapes_is_published(tmp_path: Path) -> None:
    config = compose_config(tmp_path)
    scrape = yaml.safe_load((DEPLOY / "prometheus" / "prometheus.yml").read_text())
    targets = {
        job["job_name"]: target.rsplit(":", 1)[1]
        for job in scrape["scrape_configs"]
        for group in job["static_configs"]
        for target in group["targets"]
    }
    published = {
        service: {str(port).split(":")[-1].split("/")[0] for port in spec.get("ports", [])}
        for service, spec in config["services"].items()
    }
    assert targets["bgworkers-workers"] in published["worker"]
    assert targets["bgworkers-scheduler"] in published["scheduler"]
