"""INGEST_PRODUCER_ENABLED=false (or enabled=False): a handler that starts and imports nothing."""

from __future__ import annotations

import json

import pytest

from labelstudio_ingest.producer import LabelStudioCallbackHandler, LabelStudioPublisher, PublishOutcome

from .support import run_app

APP = """
    import json, os, sys, threading

    def children():
        mine = str(os.getpid())
        found = []
        for pid in filter(str.isdigit, os.listdir("/proc")):
            try:
                with open(f"/proc/{{pid}}/stat") as stat:
                    if stat.read().rsplit(")", 1)[1].split()[1] == mine:
                        found.append(pid)
            except OSError:
                pass
        return found

    from langchain_core.language_models.fake_chat_models import FakeListChatModel
    from langchain_core.runnables import RunnableLambda
    threads = threading.active_count()
    from labelstudio_ingest.producer import LabelStudioCallbackHandler

    handler = LabelStudioCallbackHandler({options})
    chat = FakeListChatModel(responses=["a"])
    (RunnableLambda(lambda q: q) | chat).invoke("hi", config={{"callbacks": [handler]}})
    report = {{
        "enabled": handler.enabled,
        "kafka": sorted(m for m in sys.modules if m == "kafka" or m.startswith("kafka.")),
        "new_threads": threading.active_count() - threads,
        "children": children(),
        "flush": handler.flush(),
        "close": handler.close(),
        "dropped": handler.stats.dropped,
    }}
    # The control: an enabled handler that publishes does load kafka-python (so the check above can fail).
    enabled = LabelStudioCallbackHandler(enabled=True, sender="thread", bootstrap_servers={bootstrap!r})
    chat.invoke("hi", config={{"callbacks": [enabled]}})
    enabled.close(30)
    report["kafka_when_enabled"] = "kafka" in sys.modules
    print(json.dumps(report))
"""


@pytest.mark.integration
@pytest.mark.parametrize(
    ("options", "env"),
    [("", "INGEST_PRODUCER_ENABLED=false"), ("enabled=False", "")],
    ids=["environment", "option"],
)
def test_a_disabled_handler_imports_no_kafka_client_and_starts_no_thread_or_process(
    options: str, env: str, monkeypatch: pytest.MonkeyPatch, kafka_bootstrap: str
) -> None:
    if env:
        name, value = env.split("=")
        monkeypatch.setenv(name, value)

    result = run_app(APP.format(options=options, bootstrap=kafka_bootstrap))

    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report == {
        "enabled": False,
        "kafka": [],
        "new_threads": 0,
        "children": [],
        "flush": True,
        "close": True,
        "dropped": 0,
        "kafka_when_enabled": True,
    }


def test_a_disabled_handler_is_never_called_by_langchain() -> None:
    handler = LabelStudioCallbackHandler(enabled=False, project_name="P", topic="t")
    assert isinstance(handler, LabelStudioCallbackHandler)
    assert (handler.enabled, handler.project_name, handler.topic) == (False, "P", "t")
    assert all(
        getattr(handler, f"ignore_{kind}") for kind in ("llm", "chat_model", "chain", "agent", "retriever")
    )
    assert handler.pending_runs == 0


def test_a_disabled_publisher_publishes_nothing() -> None:
    publisher = LabelStudioPublisher(enabled=False)
    assert publisher.publish(prompt="p", response="r") is PublishOutcome.DISABLED
    assert publisher.close()
