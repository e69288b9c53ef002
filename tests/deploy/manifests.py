"""Reading deploy/: kustomizations, their documents, the alert rules and the dashboard's queries."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from tests.harness import REPO_ROOT

DEPLOY = REPO_ROOT / "deploy"
DASHBOARD = DEPLOY / "base" / "dashboards" / "labelstudio-ingest.json"
PROMETHEUS_RULE = DEPLOY / "base" / "prometheusrule.yaml"
KUSTOMIZATION_NAMES = ("kustomization.yaml", "kustomization.yml", "Kustomization")


@dataclass(frozen=True)
class Document:
    """One YAML document of a file under deploy/, and how a kustomization uses it."""

    path: Path
    index: int
    body: dict[str, Any]
    role: str  # "resource" or "patch"

    @property
    def id(self) -> str:
        return f"{self.path.relative_to(DEPLOY)}#{self.index}:{self.body.get('kind')}"


def load_yaml_documents(path: Path) -> list[dict[str, Any]]:
    """The non-empty documents of a YAML file."""
    with path.open() as stream:
        return [doc for doc in yaml.safe_load_all(stream) if doc]


def kustomizations() -> list[Path]:
    """Every kustomization file under deploy/."""
    return sorted(p for p in DEPLOY.rglob("*") if p.name in KUSTOMIZATION_NAMES)


def referenced_files(kustomization: Path) -> dict[Path, str]:
    """Files (not directories) a kustomization names, with their role: resource, patch or generated."""
    spec = load_yaml_documents(kustomization)[0]
    here = kustomization.parent
    found: dict[Path, str] = {}
    for entry in spec.get("resources", []):
        found[(here / entry).resolve()] = "resource"
    for entry in spec.get("components", []):
        found[(here / entry).resolve()] = "component"
    for patch in spec.get("patches", []) + spec.get("patchesStrategicMerge", []):
        path = patch["path"] if isinstance(patch, dict) else patch
        found[(here / path).resolve()] = "patch"
    for generator in spec.get("configMapGenerator", []) + spec.get("secretGenerator", []):
        for entry in generator.get("files", []):
            found[(here / entry.split("=", 1)[-1]).resolve()] = "generated"
    return found


def manifest_documents() -> Iterator[Document]:
    """Every document of every YAML file a kustomization lists as a resource or a patch."""
    for kustomization in kustomizations():
        for path, role in referenced_files(kustomization).items():
            if role in {"resource", "patch"} and path.is_file():
                for index, body in enumerate(load_yaml_documents(path)):
                    yield Document(path, index, body, role)


def rule_groups() -> list[dict[str, Any]]:
    """``spec.groups`` of the PrometheusRule: a Prometheus rule file's ``groups``."""
    groups: list[dict[str, Any]] = load_yaml_documents(PROMETHEUS_RULE)[0]["spec"]["groups"]
    return groups


def alert_expressions() -> dict[str, str]:
    """PromQL of every rule (alert or record), by its name."""
    rules = [rule for group in rule_groups() for rule in group["rules"]]
    return {rule.get("alert") or rule["record"]: rule["expr"] for rule in rules}


def dashboard() -> dict[str, Any]:
    result: dict[str, Any] = json.loads(DASHBOARD.read_text())
    return result


def dashboard_expressions() -> dict[str, str]:
    """PromQL of every dashboard target, by ``panel title/refId``."""
    return {
        f"{panel['title']}/{target['refId']}": target["expr"]
        for panel in dashboard()["panels"]
        for target in panel.get("targets", [])
    }


GRAFANA_VARIABLES = {"$__rate_interval": "30s", "$__interval": "15s", "$__range": "5m"}


def grafana_to_promql(expr: str) -> str:
    """A dashboard expression with Grafana's interval variables replaced by fixed durations."""
    for variable, value in GRAFANA_VARIABLES.items():
        expr = expr.replace(variable, value)
    return expr


_KEYWORDS = {"and", "or", "unless", "by", "without", "on", "ignoring", "group_left", "group_right"}
_KEYWORDS |= {"offset", "bool", "inf", "nan"}
_STRIPPED = [
    r'"(?:[^"\\]|\\.)*"',  # strings (label values)
    r"\{[^}]*\}",  # label matchers
    r"\[[^\]]*\]",  # range selectors
    r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)",  # label lists
    r"\{\{[^}]*\}\}",  # templating in annotations, should it ever be passed in
]


def metric_names(expr: str) -> set[str]:
    """Names of the series a PromQL expression selects (functions, keywords and labels left out)."""
    text = grafana_to_promql(expr)
    for pattern in _STRIPPED:
        text = re.sub(pattern, " ", text)
    names = set()
    for match in re.finditer(r"[A-Za-z_:][A-Za-z0-9_:]*", text):
        word = match.group(0)
        rest = text[match.end() :].lstrip()
        if rest.startswith("(") or word.lower() in _KEYWORDS:
            continue  # a function call or an operator
        if re.fullmatch(r"\d+[smhdwy]", word) or (match.start() > 0 and text[match.start() - 1].isdigit()):
            continue
        names.add(word)
    return names


def recording_rule_names() -> set[str]:
    return {rule["record"] for group in rule_groups() for rule in group["rules"] if "record" in rule}
