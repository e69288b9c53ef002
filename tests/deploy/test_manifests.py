"""deploy/: every manifest valid for Kubernetes 1.30, every file listed, the promises of the issue kept."""

from __future__ import annotations

import copy
from typing import Any

import kubernetes_validate
import pytest

from tests.deploy.manifests import (
    DEPLOY,
    Document,
    kustomizations,
    load_yaml_documents,
    manifest_documents,
    referenced_files,
)

K8S_VERSION = "1.30"
CRD_KINDS = {"ScaledObject", "TriggerAuthentication", "PodMonitor", "ServiceMonitor", "PrometheusRule"}
"""Custom resources: their CRDs are not in kubernetes-validate's schemas and no PyPI package ships them."""

DOCUMENTS = list(manifest_documents())
RESOURCES = [d for d in DOCUMENTS if d.role == "resource"]


def _merge(base: Any, patch: Any) -> Any:
    """A strategic-merge-patch subset: maps merge, lists of named maps merge by name, others replace."""
    if isinstance(base, dict) and isinstance(patch, dict):
        merged = dict(base)
        for key, value in patch.items():
            merged[key] = _merge(base[key], value) if key in base else value
        return merged
    named = isinstance(base, list) and isinstance(patch, list)
    if named and all(isinstance(i, dict) and "name" in i for i in [*base, *patch]):
        by_name = {item["name"]: item for item in base}
        for item in patch:
            by_name[item["name"]] = _merge(by_name.get(item["name"], {}), item)
        return list(by_name.values())
    return copy.deepcopy(patch)


def _target_of(patch: Document) -> dict[str, Any]:
    key = (patch.body["kind"], patch.body["metadata"]["name"])
    for doc in RESOURCES:
        if (doc.body["kind"], doc.body["metadata"]["name"]) == key:
            return doc.body
    raise AssertionError(f"{patch.id} patches {key}, which no resource under deploy/ defines")


def _validated(doc: Document) -> dict[str, Any]:
    """The document as kubernetes-validate should see it: a patch is applied to its target first."""
    return _merge(_target_of(doc), doc.body) if doc.role == "patch" else doc.body


@pytest.mark.parametrize("doc", DOCUMENTS, ids=lambda d: d.id)
def test_manifest_is_valid_against_the_kubernetes_schema(doc: Document) -> None:
    if doc.body["kind"] in CRD_KINDS:
        pytest.skip(f"{doc.body['kind']} is a CRD: no published schema available offline (checked below)")
    kubernetes_validate.validate(_validated(doc), K8S_VERSION, strict=True)


@pytest.mark.parametrize("doc", [d for d in DOCUMENTS if d.body["kind"] in CRD_KINDS], ids=lambda d: d.id)
def test_custom_resource_has_the_basic_shape(doc: Document) -> None:
    """Without the CRD schemas: apiVersion/kind/metadata.name/spec present and of the expected group."""
    body = _validated(doc)
    group = body["apiVersion"].split("/")[0]
    assert group in {"keda.sh", "monitoring.coreos.com"}, body["apiVersion"]
    assert body["metadata"]["name"]
    assert isinstance(body["spec"], dict)
    assert body["spec"]


def test_every_file_a_kustomization_lists_exists() -> None:
    for kustomization in kustomizations():
        for path, role in referenced_files(kustomization).items():
            if role == "component" or (role == "resource" and path.is_dir()):
                assert any((path / n).is_file() for n in ("kustomization.yaml", "kustomization.yml")), path
            else:
                assert path.is_file(), f"{kustomization} lists {path}, which does not exist"


def test_no_orphan_files_under_deploy() -> None:
    listed = {p for k in kustomizations() for p in referenced_files(k)}
    kustomization_files = set(kustomizations())
    for path in DEPLOY.rglob("*"):
        if path.is_file() and path.suffix in {".yaml", ".yml", ".json"}:
            assert path in kustomization_files or path.resolve() in listed, f"{path} is in no kustomization"


def _resource(kind: str, name: str | None = None) -> dict[str, Any]:
    matches = [d.body for d in RESOURCES if d.body["kind"] == kind]
    matches = [m for m in matches if name is None or m["metadata"]["name"] == name]
    assert len(matches) == 1, f"expected one {kind}, found {len(matches)}"
    return matches[0]


def test_deployment_keeps_the_issue_promises() -> None:
    deployment = _resource("Deployment")
    pod = deployment["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert {"cpu", "memory"} <= container["resources"]["requests"].keys()
    assert "memory" in container["resources"]["limits"]
    assert pod["topologySpreadConstraints"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert container["securityContext"]["allowPrivilegeEscalation"] is False
    secrets = {e["name"]: e["valueFrom"]["secretKeyRef"] for e in container["env"] if "valueFrom" in e}
    assert {"LABEL_STUDIO_API_KEY", "KAFKA_SASL_USERNAME", "KAFKA_SASL_PASSWORD"} <= secrets.keys()


def test_grace_period_exceeds_the_shutdown_bound() -> None:
    """docs/CONSUMER.md: exit within INGEST_SHUTDOWN_TIMEOUT_S + 1 s + 17 s."""
    config = _resource("ConfigMap", "labelstudio-ingest")["data"]
    bound = float(config["INGEST_SHUTDOWN_TIMEOUT_S"]) + 1 + 17
    grace = _resource("Deployment")["spec"]["template"]["spec"]["terminationGracePeriodSeconds"]
    assert grace > bound


def test_metrics_port_is_the_same_everywhere() -> None:
    port = int(_resource("ConfigMap", "labelstudio-ingest")["data"]["INGEST_METRICS_PORT"])
    (container,) = _resource("Deployment")["spec"]["template"]["spec"]["containers"]
    assert [p["containerPort"] for p in container["ports"] if p["name"] == "metrics"] == [port]
    assert _resource("Service", "labelstudio-ingest-metrics")["spec"]["ports"][0]["targetPort"] == "metrics"
    assert _resource("PodMonitor")["spec"]["podMetricsEndpoints"][0]["port"] == "metrics"


def test_webhook_port_is_its_own_and_consistent() -> None:
    """The webhook component: its own port (never the metrics one), Service and NetworkPolicy agree."""
    (patch,) = [d.body for d in DOCUMENTS if d.role == "patch" and "webhooks" in str(d.path)]
    (container,) = patch["spec"]["template"]["spec"]["containers"]
    env = {e["name"]: e for e in container["env"]}
    (port,) = [p["containerPort"] for p in container["ports"] if p["name"] == "webhooks"]
    assert int(env["INGEST_WEBHOOK_PORT"]["value"]) == port
    assert port != int(_resource("ConfigMap", "labelstudio-ingest")["data"]["INGEST_METRICS_PORT"])
    assert "secretKeyRef" in env["INGEST_WEBHOOK_SECRET"]["valueFrom"]
    assert _resource("Service", "labelstudio-ingest-webhooks")["spec"]["ports"][0]["targetPort"] == "webhooks"
    policy = _resource("NetworkPolicy", "labelstudio-ingest-webhooks")
    assert [p["port"] for rule in policy["spec"]["ingress"] for p in rule["ports"]] == ["webhooks"]


def test_autoscalers_never_exceed_the_partition_count() -> None:
    scaled = _resource("ScaledObject")
    hpa = _resource("HorizontalPodAutoscaler")
    for obj, most in ((scaled, scaled["spec"]["maxReplicaCount"]), (hpa, hpa["spec"]["maxReplicas"])):
        assert most <= int(obj["metadata"]["annotations"]["labelstudio-ingest/input-partitions"])
    (trigger,) = scaled["spec"]["triggers"]
    assert trigger["type"] == "kafka"
    assert trigger["metadata"]["allowIdleConsumers"] == "false"
    config = _resource("ConfigMap", "labelstudio-ingest")["data"]
    assert trigger["metadata"]["consumerGroup"] == config["INGEST_GROUP_ID"]
    assert trigger["metadata"]["topic"] == config["INGEST_TOPIC"]


def test_overlay_builds_on_the_base_and_one_autoscaler() -> None:
    (overlay,) = load_yaml_documents(DEPLOY / "overlays" / "example" / "kustomization.yaml")
    assert "../../base" in overlay["resources"]
    autoscalers = [c for c in overlay["components"] if c.rsplit("/", 1)[-1] in {"keda", "hpa"}]
    assert len(autoscalers) == 1


def test_yaml_files_are_documents_with_kind() -> None:
    for doc in DOCUMENTS:
        assert {"apiVersion", "kind", "metadata"} <= doc.body.keys(), doc.id


def test_the_example_overlay_limits_where_events_write_and_what_they_create() -> None:
    """The overlay is for many producers: an allowlist, creatable titles inside it, a creation cap."""
    from fnmatch import fnmatchcase  # noqa: PLC0415

    from labelstudio_ingest.consumer.settings import Settings  # noqa: PLC0415

    (patch,) = load_yaml_documents(DEPLOY / "overlays" / "example" / "configmap-patch.yaml")
    data = {**_resource("ConfigMap", "labelstudio-ingest")["data"], **patch["data"]}
    secrets = {"LABEL_STUDIO_API_KEY": "x", "KAFKA_SASL_USERNAME": "u", "KAFKA_SASL_PASSWORD": "p"}
    settings = Settings(**{**secrets, **data})  # the Secrets of the Deployment
    assert settings.allowlist.active
    assert settings.allow_create_projects
    creatable = settings.creation_policy.name_patterns
    assert creatable
    for pattern in creatable:  # every creatable title is one the allowlist admits
        example = pattern.replace("*", "2026-11-28").replace("?", "x")
        assert any(fnmatchcase(example, allowed) for allowed in settings.allowed_project_names), pattern
    assert 0 < settings.max_projects_per_hour <= 100
