"""How ``labelstudio-ingest export`` scales: N reviewed tasks in a real Label Studio, exported once.

python bench/export_scale.py --tasks 20000

Imports N tasks shaped like the consumer's (prompt, run_id, prediction) with one annotation each
(text, rating, choice) into a fresh project, then runs the export CLI as a subprocess and reports
tasks per second and the subprocess's peak RSS (GNU time), next to the peak RSS of the same CLI printing
``--help`` (the interpreter and imports alone). Label Studio: ``LABEL_STUDIO_URL`` +
``LABEL_STUDIO_API_KEY``, else the embedded one (``LABEL_STUDIO_BIN`` or ``.venv-ls``).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

from label_studio_sdk import LabelStudio

from labelstudio_ingest.consumer.embedded import find_label_studio, start_label_studio

REPO_ROOT = Path(__file__).resolve().parent.parent
CONFIG = """<View>
<Text name="prompt" value="$prompt"/>
<TextArea name="response" toName="prompt"/>
<Rating name="rating" toName="prompt"/>
<Choices name="sentiment" toName="prompt"><Choice value="Positive"/><Choice value="Negative"/></Choices>
</View>"""
IMPORT_CHUNK = 1000


@contextlib.contextmanager
def label_studio() -> Iterator[tuple[str, str]]:
    url, key = os.environ.get("LABEL_STUDIO_URL"), os.environ.get("LABEL_STUDIO_API_KEY")
    if url and key:
        yield url.rstrip("/"), key
        return
    workdir = Path(tempfile.mkdtemp(prefix="lsi-bench-export-"))
    server = start_label_studio(workdir / "label-studio", executable=find_label_studio(REPO_ROOT))
    try:
        yield server.url, server.api_key
    finally:
        server.stop()
        shutil.rmtree(workdir, ignore_errors=True)


def task(i: int) -> dict[str, object]:
    result = [
        {"from_name": "response", "to_name": "prompt", "type": "textarea", "value": {"text": [f"fixed {i}"]}},
        {"from_name": "rating", "to_name": "prompt", "type": "rating", "value": {"rating": 1 + i % 5}},
        {
            "from_name": "sentiment",
            "to_name": "prompt",
            "type": "choices",
            "value": {"choices": ["Positive"]},
        },
    ]
    prediction = [
        {"from_name": "response", "to_name": "prompt", "type": "textarea", "value": {"text": [f"model {i}"]}}
    ]
    return {
        "data": {"prompt": f"question {i} " + "x" * 200, "run_id": str(uuid.uuid4()), "prompt_index": 0},
        "predictions": [{"model_version": "bench", "result": prediction}],
        "annotations": [{"result": result}],
    }


def peak_rss_mib(argv: list[str], env: dict[str, str]) -> tuple[float, float, str]:
    """(seconds, peak RSS MiB, stderr) of one run, measured by GNU time (``/usr/bin/time -f %M``).

    ``getrusage(RUSAGE_CHILDREN)`` would count the pages the child shared with this process before
    its ``exec``, i.e. this process's own size.
    """
    started = time.monotonic()
    done = subprocess.run(
        ["/usr/bin/time", "-f", "maxrss_kib=%M", *argv], env=env, capture_output=True, text=True, check=True
    )
    seconds = time.monotonic() - started
    *lines, last = done.stderr.strip().splitlines()
    return seconds, int(last.removeprefix("maxrss_kib=")) / 1024, "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--tasks", type=int, default=20_000)
    args = parser.parse_args()
    with label_studio() as (url, key):
        client = LabelStudio(base_url=url, api_key=key, timeout=300)  # type: ignore[no-untyped-call]
        project = client.projects.create(title=f"bench-export-{uuid.uuid4().hex[:6]}", label_config=CONFIG)
        started = time.monotonic()
        for first in range(0, args.tasks, IMPORT_CHUNK):
            chunk = [task(i) for i in range(first, min(args.tasks, first + IMPORT_CHUNK))]
            client.projects.import_tasks(id=project.id, request=chunk)
        print(f"imported {args.tasks} reviewed tasks in {time.monotonic() - started:.0f} s", file=sys.stderr)
        env = {k: v for k, v in os.environ.items() if not k.startswith(("INGEST_", "LABEL_STUDIO_"))}
        env.update(LABEL_STUDIO_URL=url, LABEL_STUDIO_API_KEY=key)
        cli = [sys.executable, "-m", "labelstudio_ingest.consumer.cli"]
        _, base_rss, _ = peak_rss_mib([*cli, "export", "--help"], env)
        with tempfile.TemporaryDirectory() as out_dir:
            out = Path(out_dir) / "reward.jsonl"
            argv = [
                *cli,
                "export",
                "--project",
                str(project.id),
                "--format",
                "reward",
                "--out",
                str(out),
                "--quiet",
            ]
            seconds, rss, stderr = peak_rss_mib(argv, env)
            lines = sum(1 for _ in out.open())
        print(stderr.strip().splitlines()[-1])
        print(
            f"tasks={args.tasks} records={lines} seconds={seconds:.1f} "
            f"tasks_per_s={args.tasks / seconds:.0f} peak_rss_mib={rss:.0f} "
            f"(cli --help alone: {base_rss:.0f})"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
