"""The JSON Schema files checked into schemas/ are exactly what the models generate."""

from __future__ import annotations

import json

from labelstudio_ingest.schemas import events, generate


def test_schema_files_match_the_models() -> None:
    assert generate.drifted() == [], "schema files drifted from the models: run `make schemas`"


def test_drift_is_detected(tmp_path) -> None:  # type: ignore[no-untyped-def]
    for name, factory in generate.SCHEMAS.items():
        (tmp_path / name).write_text(generate.render(factory).replace("run_id", "runId"), "utf-8")
    assert generate.drifted(tmp_path) == list(generate.SCHEMAS)


def test_schema_describes_both_kinds_and_requires_the_essentials() -> None:
    schema = events.json_schema()
    assert schema["$schema"].endswith("2020-12/schema")
    assert schema["discriminator"]["propertyName"] == "kind"
    for kind in ("PromptEvent", "ChatEvent"):
        required = set(schema["$defs"][kind]["required"])
        assert {"schema_version", "event_id", "run_id", "event_time", "kind", "target"} <= required
    json.dumps(schema)  # plain JSON, nothing left that a JSON Schema tool could not read
