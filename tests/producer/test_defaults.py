"""Defaults that surprise no one: a thread sender, bounded flush and close, an isolated sender process."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from collections.abc import Callable
from pathlib import Path

import pytest

from labelstudio_ingest.producer import DropReason, LabelStudioCallbackHandler

from .fakes import FakeListLLM


def test_the_default_sender_is_a_thread(offline_bootstrap: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("INGEST_PRODUCER_SENDER", raising=False)
    handler = LabelStudioCallbackHandler(bootstrap_servers=offline_bootstrap, topic="t.defaults")
    try:
        assert handler.sender == "thread"
    finally:
        handler.close(0)


def test_flush_and_close_give_up_by_default_while_kafka_is_away(offline_bootstrap: str) -> None:
    handler = LabelStudioCallbackHandler(
        bootstrap_servers=offline_bootstrap, topic="t.defaults", sender="thread"
    )
    FakeListLLM(responses=["r"]).invoke("q", config={"callbacks": [handler]})
    assert handler.flush() is False  # after its default timeout, not never
    assert handler.close() is False
    assert handler.stats.dropped_by_reason == {DropReason.CLOSED.value: 1}


@pytest.mark.integration
def test_the_sender_process_is_isolated_and_the_app_never_imports_kafka(
    kafka_bootstrap: str, kafka_topic: Callable[..., str], tmp_path: Path
) -> None:
    # an APM agent's way in: a sitecustomize on PYTHONPATH, loaded by every Python that inherits it
    agent = tmp_path / "agent"
    agent.mkdir()
    marker = tmp_path / "instrumented"
    (agent / "sitecustomize.py").write_text(
        f"import os\nwith open({str(marker)!r}, 'a') as f:\n    f.write(f'{{os.getpid()}}\\n')\n"
    )
    topic = kafka_topic(1)
    script = f"""
        import sys
        from langchain_core.language_models.fake import FakeListLLM
        from labelstudio_ingest.producer import LabelStudioCallbackHandler

        handler = LabelStudioCallbackHandler(
            bootstrap_servers="{kafka_bootstrap}", topic="{topic}", sender="process"
        )
        FakeListLLM(responses=["r"]).invoke("q", config={{"callbacks": [handler]}})
        assert handler.flush(30), handler.stats
        print(handler._transport.sender_pid, sorted(m for m in sys.modules if m.split(".")[0] == "kafka"))
        assert handler.close(10)
        """
    environment = {**os.environ, "PYTHONPATH": str(agent)}
    done = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(script)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env=environment,
    )
    assert done.returncode == 0, done.stderr
    sender_pid, kafka_modules = done.stdout.split(" ", 1)
    assert kafka_modules.strip() == "[]"
    instrumented = marker.read_text().split()
    assert len(instrumented) == 1  # the app itself
    assert sender_pid not in instrumented
