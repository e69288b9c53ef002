"""Packaging promises: one namespace, and a producer extra that stays light for host apps."""

from __future__ import annotations

import re
import subprocess
import sys
import zipfile
from importlib import metadata
from pathlib import Path

from packaging.markers import Marker
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

REPO = Path(__file__).resolve().parents[1]
HEAVY = {"label-studio-sdk", "prometheus-client", "django", "label-studio"}


def _closure(name: str, extras: frozenset[str] = frozenset()) -> set[str]:
    """Every distribution that installing ``name[extras]`` pulls in, read from installed metadata."""
    seen: set[str] = set()
    todo: list[tuple[str, frozenset[str]]] = [(name, extras)]
    while todo:
        dist_name, dist_extras = todo.pop()
        requires = metadata.requires(dist_name) or []
        for line in requires:
            req = Requirement(line)
            marker: Marker | None = req.marker
            wanted = marker is None or any(
                marker.evaluate({"extra": extra}) for extra in (dist_extras or {""})
            )
            if not wanted:
                continue
            dep = canonicalize_name(req.name)
            if dep not in seen:
                seen.add(dep)
                todo.append((dep, frozenset(req.extras)))
    return seen


def test_producer_extra_pulls_no_label_studio_prometheus_or_django() -> None:
    pulled = _closure("labelstudio-ingest", frozenset({"producer"}))
    assert {"langchain-core", "kafka-python", "pydantic"} <= pulled
    assert not pulled & HEAVY, f"the producer extra pulls {sorted(pulled & HEAVY)}"


def test_consumer_extra_has_what_the_service_needs() -> None:
    pulled = _closure("labelstudio-ingest", frozenset({"consumer"}))
    assert {"kafka-python", "label-studio-sdk", "prometheus-client", "pydantic-settings"} <= pulled
    assert "langchain-core" not in pulled


def test_wheel_installs_only_under_the_labelstudio_ingest_namespace(tmp_path: Path) -> None:
    subprocess.run(
        [sys.executable, "-c", f"import setuptools.build_meta as b; b.build_wheel({str(tmp_path)!r})"],
        cwd=REPO,
        check=True,
        capture_output=True,
    )
    (wheel,) = tmp_path.glob("*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    top_level = {name.split("/")[0] for name in names if not name.split("/")[0].endswith(".dist-info")}
    assert top_level == {"labelstudio_ingest"}
    for package in ("schemas", "producer", "consumer"):
        assert f"labelstudio_ingest/{package}/__init__.py" in names
        assert f"labelstudio_ingest/{package}/py.typed" in names
    assert any(
        re.fullmatch(r"labelstudio_ingest/schemas/interaction-event\.v\d+\.schema\.json", n) for n in names
    )
