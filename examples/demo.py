"""``make demo``: the whole path on the embedded local stack, with a LangChain app on a fake LLM.

Starts a Kafka-protocol broker, Label Studio and ``labelstudio-ingest consume``; runs a small LangChain
app in prompt mode, chat mode and with a custom labeling config; waits until every run is a task;
prints where to look; stays up until Ctrl-C; then stops everything it started.

``KAFKA_BOOTSTRAP_SERVERS`` and ``LABEL_STUDIO_URL`` + ``LABEL_STUDIO_API_KEY`` use servers that
already run instead. ``--once`` exits after the summary (for tests and scripted runs).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path

from label_studio_sdk.client import LabelStudio
from langchain_core.language_models.fake import FakeListLLM
from langchain_core.language_models.fake_chat_models import FakeListChatModel
from langchain_core.messages import HumanMessage, SystemMessage

from labelstudio_ingest.consumer import embedded
from labelstudio_ingest.producer import LabelStudioCallbackHandler

REPO = Path(__file__).resolve().parents[1]
RUN_ID = time.strftime("%H%M%S")
PROMPT_PROJECT = f"Demo prompts {RUN_ID}"
CHAT_PROJECT = f"Demo chat {RUN_ID}"
FEEDBACK_PROJECT = f"Demo feedback {RUN_ID}"

# The custom config from the LangChain integration's documentation.
FEEDBACK_CONFIG = """<View>
<Text name="prompt" value="$prompt"/>
<TextArea name="response" toName="prompt"/>
<TextArea name="user_feedback" toName="prompt"/>
<Rating name="rating" toName="prompt"/>
<Choices name="sentiment" toName="prompt">
    <Choice value="Positive"/>
    <Choice value="Negative"/>
</Choices>
</View>"""


@dataclass
class Stack:
    """Where the demo's servers answer."""

    bootstrap: str
    ls_url: str
    ls_api_key: str
    login: str
    metrics_url: str


def say(text: str) -> None:
    """One line of the demo's story."""
    print(f"[demo] {text}", flush=True)


@contextmanager
def servers(workdir: Path) -> Iterator[tuple[str, embedded.LabelStudio]]:
    """The broker and Label Studio: running ones from the environment, else started here."""
    with ExitStack() as stack:
        bootstrap = os.environ.get("KAFKA_BOOTSTRAP_SERVERS")
        if not bootstrap:
            say("starting the Kafka-protocol broker (tansu)…")
            broker = embedded.start_broker(workdir)
            stack.callback(broker.stop)
            bootstrap = broker.bootstrap
        url, key = os.environ.get("LABEL_STUDIO_URL"), os.environ.get("LABEL_STUDIO_API_KEY")
        if url and key:
            ls = embedded.LabelStudio(url.rstrip("/"), key, username="(yours)", password="(yours)")
        else:
            say("starting Label Studio (the first start migrates its database: about 30 s)…")
            ls = embedded.start_label_studio(
                workdir / "label-studio", executable=embedded.find_label_studio(REPO), password="labelstudio"
            )
            stack.callback(ls.stop)
        yield bootstrap, ls


@contextmanager
def consumer(workdir: Path, bootstrap: str, ls: embedded.LabelStudio) -> Iterator[str]:
    """``labelstudio-ingest consume`` as a child process; yields its metrics URL."""
    port = embedded.free_port()
    env = {
        **os.environ,
        "KAFKA_BOOTSTRAP_SERVERS": bootstrap,
        "LABEL_STUDIO_URL": ls.url,
        "LABEL_STUDIO_API_KEY": ls.api_key,
        "INGEST_GROUP_ID": f"demo-{RUN_ID}",
        "INGEST_METRICS_HOST": "127.0.0.1",
        "INGEST_METRICS_PORT": str(port),
        # A one-member group on a local broker: a short session timeout makes the first join take seconds.
        "INGEST_SESSION_TIMEOUT_MS": "6000",
        "INGEST_HEARTBEAT_INTERVAL_MS": "1000",
        "INGEST_BATCH_MAX_WAIT_MS": "200",
    }
    here = str(Path(sys.executable).parent)
    command = shutil.which("labelstudio-ingest", path=here) or "labelstudio-ingest"
    log = (workdir / "consumer.log").open("ab")
    say(f"starting the consumer (its JSON log: {workdir / 'consumer.log'})…")
    proc = subprocess.Popen([command, "consume"], env=env, stdout=log, stderr=subprocess.STDOUT)
    metrics = f"http://127.0.0.1:{port}"

    def healthy() -> bool:
        if proc.poll() is not None:
            tail = (workdir / "consumer.log").read_text(errors="replace").splitlines()[-5:]
            raise embedded.StackError("the consumer exited:\n" + "\n".join(tail))
        return embedded.http_ok(f"{metrics}/healthz")

    try:
        embedded.wait_until(healthy, timeout=60, message="the consumer did not answer /healthz")
        yield metrics
    finally:
        proc.send_signal(signal.SIGTERM)  # finishes its batch, commits, leaves the group
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


def run_langchain_app(bootstrap: str) -> int:
    """A tiny LangChain app with the callback on every call. Returns how many tasks it should make."""
    common = {"bootstrap_servers": bootstrap}
    prompt_handler = LabelStudioCallbackHandler(project_name=PROMPT_PROJECT, mode="prompt", **common)
    chat_handler = LabelStudioCallbackHandler(project_name=CHAT_PROJECT, mode="chat", **common)
    feedback_handler = LabelStudioCallbackHandler(
        project_name=FEEDBACK_PROJECT, project_config=FEEDBACK_CONFIG, **common
    )

    llm = FakeListLLM(responses=["Paris.", "Four.", "Blue, on a clear day.", "A haiku about Kafka."])
    say(f"prompt mode → project {PROMPT_PROJECT!r}: invoke, batch of 2, stream")
    llm.invoke("What is the capital of France?", config={"callbacks": [prompt_handler], "tags": ["demo"]})
    llm.batch(["What is 2 + 2?", "What colour is the sky?"], config={"callbacks": [prompt_handler]})
    for _ in llm.stream("Write a haiku about Kafka.", config={"callbacks": [prompt_handler]}):
        pass

    chat = FakeListChatModel(responses=["Hello! How can I help?", "Kafka keeps the events; we label them."])
    say(f"chat mode → project {CHAT_PROJECT!r}: invoke, ainvoke")
    chat.invoke(
        [SystemMessage("You are a helpful assistant."), HumanMessage("Hi!")],
        config={"callbacks": [chat_handler], "metadata": {"user": "demo"}},
    )
    asyncio.run(chat.ainvoke([HumanMessage("Why a queue?")], config={"callbacks": [chat_handler]}))

    feedback_llm = FakeListLLM(responses=["Label Studio is a data labeling tool.", "It supports RLHF."])
    say(f"custom config → project {FEEDBACK_PROJECT!r}: batch of 2")
    feedback_llm.batch(["What is Label Studio?", "What is it for?"], config={"callbacks": [feedback_handler]})

    for handler in (prompt_handler, chat_handler, feedback_handler):
        handler.flush(timeout=30)
        handler.close()
    return 4 + 2 + 2


def task_counts(client: LabelStudio) -> dict[str, int]:
    """Task count of each demo project, by title."""
    wanted = {PROMPT_PROJECT, CHAT_PROJECT, FEEDBACK_PROJECT}
    return {
        project.title: project.task_number or 0
        for project in client.projects.list(title="Demo ")
        if project.title in wanted
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--once", action="store_true", help="exit after the summary instead of waiting")
    parser.add_argument("--workdir", type=Path, default=REPO / ".demo", help="logs and Label Studio data")
    args = parser.parse_args(argv)
    workdir: Path = args.workdir / RUN_ID
    workdir.mkdir(parents=True, exist_ok=True)

    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    try:
        with servers(workdir) as (bootstrap, ls), consumer(workdir, bootstrap, ls) as metrics:
            expected = run_langchain_app(bootstrap)
            client = LabelStudio(base_url=ls.url, api_key=ls.api_key)  # type: ignore[no-untyped-call]

            def all_imported() -> dict[str, int] | None:
                counts = task_counts(client)
                return counts if sum(counts.values()) >= expected else None

            counts = embedded.wait_until(
                all_imported,
                timeout=120,
                interval=0.5,
                message=f"the consumer did not import all {expected} tasks",
            )
            print()
            print(f"  Label Studio  {ls.url}")
            print(f"  login         {ls.username} / {ls.password}")
            print(f"  metrics       {metrics}/metrics   health {metrics}/healthz  {metrics}/readyz")
            for title, count in sorted(counts.items()):
                print(f"  project       {title!r}: {count} tasks")
            print(
                "  try next      labelstudio-ingest backfill --project='Demo chat review'"
                " --kind=chat --since=1h"
            )
            print(
                f"                (replays past runs into a new one; with KAFKA_BOOTSTRAP_SERVERS={bootstrap}"
                f" LABEL_STUDIO_URL={ls.url} LABEL_STUDIO_API_KEY={ls.api_key}, see docs/BACKFILL.md)"
            )
            print()
            if not args.once:
                say("up — open Label Studio and review the tasks; Ctrl-C stops everything")
                while not stop.wait(1):
                    pass
    except KeyboardInterrupt:
        pass
    say("stopped everything the demo started")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
