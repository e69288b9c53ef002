"""``make demo`` end to end: the example app's runs arrive as tasks in three projects."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.harness import LabelStudioServer

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.integration
def test_demo_imports_every_run_and_prints_where_to_look(
    kafka_bootstrap: str, label_studio: LabelStudioServer, tmp_path: Path
) -> None:
    env = {
        **os.environ,
        "KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap,
        "LABEL_STUDIO_URL": label_studio.url,
        "LABEL_STUDIO_API_KEY": label_studio.api_key,
    }
    done = subprocess.run(
        [sys.executable, "-m", "examples.demo", "--once", "--workdir", str(tmp_path)],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    lines = done.stdout.splitlines()
    counts = {
        line.split("'")[1].split()[1]: line.rsplit(":", 1)[1].strip() for line in lines if "project " in line
    }
    assert counts == {"prompts": "4 tasks", "chat": "2 tasks", "feedback": "2 tasks"}
    assert any(line.strip().startswith("Label Studio  http://") for line in lines)
    assert "stopped everything the demo started" in done.stdout
