"""Write (or check) the JSON Schema files in ``schemas/`` from the pydantic models.

python -m labelstudio_ingest.schemas.generate          # rewrite the files
python -m labelstudio_ingest.schemas.generate --check  # exit 1 when they drifted
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from labelstudio_ingest.schemas import events, feedback

SCHEMA_DIR = Path(__file__).resolve().parent

SCHEMAS: dict[str, Callable[[], dict[str, Any]]] = {
    f"interaction-event.v{events.SCHEMA_VERSION}.schema.json": events.json_schema,
    f"feedback-event.v{feedback.FEEDBACK_SCHEMA_VERSION}.schema.json": feedback.feedback_json_schema,
}


def render(factory: Callable[[], dict[str, Any]]) -> str:
    """The schema as the exact text kept in the repository."""
    return json.dumps(factory(), indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def drifted(directory: Path = SCHEMA_DIR) -> list[str]:
    """Names of schema files that are missing or differ from the models."""
    return [
        name
        for name, factory in SCHEMAS.items()
        if not (directory / name).is_file() or (directory / name).read_text("utf-8") != render(factory)
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--check", action="store_true", help="only report drift, write nothing")
    args = parser.parse_args(argv)
    if args.check:
        stale = drifted()
        for name in stale:
            print(f"{name} is out of date: run `make schemas`", file=sys.stderr)
        return 1 if stale else 0
    for name, factory in SCHEMAS.items():
        (SCHEMA_DIR / name).write_text(render(factory), "utf-8")
        print(f"wrote schemas/{name}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
