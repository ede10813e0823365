"""docs/application.md's example runs as written, in a fresh process and database."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from bgworkers.settings import load_settings

DOC = Path(__file__).resolve().parents[1] / "docs" / "application.md"
pytestmark = pytest.mark.integration  # the email's message goes to the test vhost's RabbitMQ


def test_the_web_request_example_runs(rabbitmq_url: str, tmp_path: Path) -> None:
    blocks = re.findall(r"```python\n(.*?)```", DOC.read_text(), re.DOTALL)
    example = next(block for block in blocks if "session.commit()" in block)
    env = {k: v for k, v in os.environ.items() if k != "BGW_DATABASE_URL"}
    env["BGW_DATA_DIR"] = str(tmp_path)
    migrate = [str(Path(sys.executable).parent / "bgworkers"), "migrate"]
    subprocess.run(migrate, env=env, cwd=tmp_path, check=True, capture_output=True)
    result = subprocess.run(
        [sys.executable, "-c", example], env=env, cwd=tmp_path, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr
    assert re.search(r"^reminder 1 due 20", result.stdout, re.MULTILINE), result.stdout
    assert (
        load_settings(data_dir=str(tmp_path))
        .database_url.get_secret_value()
        .endswith(f"{tmp_path}/bgworkers.db")
    )
