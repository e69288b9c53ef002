"""The image without a Docker engine: hadolint, and the Dockerfile's build steps in a fresh venv.

The build stage's ``COPY`` lines are replayed into a temporary build context and its ``RUN`` lines
run there with ``/opt/venv`` replaced by a temporary directory; the ``ENTRYPOINT`` then answers
``--help``. Editing the Dockerfile's install steps therefore changes what this test runs.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.harness import REPO_ROOT

DOCKERFILE = REPO_ROOT / "Dockerfile"
HADOLINT = Path(sys.executable).with_name("hadolint")


def instructions() -> list[tuple[str, str]]:
    """``(INSTRUCTION, arguments)`` of the Dockerfile, continuation lines joined, comments dropped."""
    lines = [line for line in DOCKERFILE.read_text().splitlines() if not line.lstrip().startswith("#")]
    joined = re.sub(r"\\\n\s*", " ", "\n".join(lines))
    result = []
    for line in joined.splitlines():
        if line.strip():
            word, _, rest = line.strip().partition(" ")
            result.append((word.upper(), rest.strip()))
    return result


def build_stage() -> list[tuple[str, str]]:
    """The instructions of the first stage (the one that installs)."""
    stage: list[tuple[str, str]] = []
    for word, rest in instructions():
        if word == "FROM" and stage:
            break
        stage.append((word, rest))
    return stage


def test_hadolint_is_clean() -> None:
    result = subprocess.run([str(HADOLINT), str(DOCKERFILE)], check=False, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_runtime_stage_is_non_root_with_healthcheck_and_entrypoint() -> None:
    runtime = instructions()[[w for w, _ in instructions()].index("FROM", 1) :]
    words = dict(runtime)
    assert "slim" in runtime[0][1]
    assert words["USER"].split(":")[0] not in {"0", "root"}
    assert "/healthz" in words["HEALTHCHECK"]
    assert json.loads(words["ENTRYPOINT"]) == ["labelstudio-ingest", "consume"]


@pytest.mark.slow
def test_build_steps_install_the_consumer_only_and_the_entrypoint_runs(tmp_path: Path) -> None:
    context, venv = tmp_path / "src", tmp_path / "venv"
    context.mkdir()
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    env.pop("VIRTUAL_ENV", None)
    for word, rest in build_stage():
        if word == "COPY":
            *sources, dest = shlex.split(rest)
            target = context / dest
            for source in sources:
                path = REPO_ROOT / source
                to = target / path.name if dest.endswith("/") or len(sources) > 1 else target
                to.parent.mkdir(parents=True, exist_ok=True)
                if path.is_dir():
                    shutil.copytree(path, to, ignore=shutil.ignore_patterns("__pycache__"))
                else:
                    shutil.copy(path, to)
        elif word == "RUN":
            command = rest.replace("/opt/venv", str(venv))
            result = subprocess.run(
                command, shell=True, cwd=context, env=env, check=False, capture_output=True, text=True
            )
            assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]

    entrypoint = json.loads(dict(instructions())["ENTRYPOINT"])
    result = subprocess.run(
        [str(venv / "bin" / entrypoint[0]), *entrypoint[1:], "--help"],
        check=False,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr
    assert "--kafka-bootstrap-servers" in result.stdout
    installed = subprocess.run(
        [str(venv / "bin" / "python"), "-m", "pip", "list", "--format=json"],
        check=False,
        capture_output=True,
        text=True,
    )
    names = {d["name"].lower().replace("_", "-") for d in json.loads(installed.stdout)}
    assert {"label-studio-sdk", "kafka-python", "prometheus-client"} <= names
    assert "langchain-core" not in names, "the image must not carry the producer's LangChain"
