"""The sender process: a child that owns kafka-python, fed through a pipe (real broker, real processes)."""

from __future__ import annotations

import gc
import logging
import os
import signal
from collections.abc import Callable
from pathlib import Path

import pytest

from labelstudio_ingest.consumer import embedded
from labelstudio_ingest.consumer.embedded import wait_until
from labelstudio_ingest.producer import DropReason, LabelStudioCallbackHandler
from labelstudio_ingest.producer.process_transport import SenderProcessTransport
from labelstudio_ingest.producer.transport import Record

from .fakes import FakeListLLM
from .support import FAST_RECOVERY, read_events, run_app, unique_topic

pytestmark = pytest.mark.integration

MakeHandler = Callable[..., LabelStudioCallbackHandler]
MakeBroker = Callable[[], embedded.Broker]


@pytest.fixture
def sender() -> str:
    """This module is about the sender process alone."""
    return "process"


def _calls(handler: LabelStudioCallbackHandler, count: int, prefix: str) -> None:
    llm = FakeListLLM(responses=["fine"])
    for i in range(count):
        llm.invoke(f"{prefix}-{i}", config={"callbacks": [handler]})


def _sender_pid(handler: LabelStudioCallbackHandler) -> int:
    transport = handler._transport
    assert isinstance(transport, SenderProcessTransport)
    wait_until(lambda: transport.sender_pid is not None, 30, message="no sender process started")
    pid = transport.sender_pid
    assert pid is not None
    return pid


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0]
    except FileNotFoundError:
        return False
    return state != "Z"


def test_kafka_runs_in_a_child_that_never_sees_the_settings_on_its_command_line(
    kafka_bootstrap: str, make_handler: MakeHandler
) -> None:
    topic = unique_topic()
    marker = "client-id-not-for-argv"
    handler = make_handler(
        bootstrap_servers=kafka_bootstrap,
        topic=topic,
        sender="process",
        producer_config={"client_id": marker},
    )
    assert handler.sender == "process"
    _calls(handler, 30, "child")
    assert handler.flush(60)
    assert (handler.stats.published, handler.stats.buffered) == (30, 0)
    pid = _sender_pid(handler)
    assert pid != os.getpid()
    assert Path(f"/proc/{pid}/stat").read_text().split()[3] == str(os.getpid())  # our child
    assert marker not in Path(f"/proc/{pid}/cmdline").read_text()
    read = read_events(kafka_bootstrap, topic, 30)
    assert sorted(e.event.prompts[0] for e in read if e.event.kind == "prompt") == sorted(
        f"child-{i}" for i in range(30)
    )

    handler.close(10)
    wait_until(lambda: not _alive(pid), 30, message="the sender outlived close()")


def test_a_burst_larger_than_the_pipe_waits_in_the_app_and_arrives_whole(
    kafka_bootstrap: str, make_handler: MakeHandler
) -> None:
    topic = unique_topic()
    handler = make_handler(bootstrap_servers=kafka_bootstrap, topic=topic, sender="process")
    # ~12 MB written before the sender has even started: far more than the 1 MiB pipe holds
    long_prompt = "p" * 4000
    llm = FakeListLLM(responses=["r" * 4000])
    for i in range(3000):
        llm.invoke(f"{i}:{long_prompt}", config={"callbacks": [handler]})
    assert handler.flush(120), handler.stats
    assert (handler.stats.published, handler.stats.dropped) == (3000, 0)
    read = read_events(kafka_bootstrap, topic, 3000)
    assert sorted(int(e.event.prompts[0].split(":")[0]) for e in read if e.event.kind == "prompt") == list(
        range(3000)
    )


def test_a_killed_sender_is_replaced_and_its_loss_is_counted(
    kafka_bootstrap: str, make_handler: MakeHandler, caplog: pytest.LogCaptureFixture
) -> None:
    topic = unique_topic()
    handler = make_handler(
        bootstrap_servers=kafka_bootstrap, topic=topic, sender="process", producer_config=FAST_RECOVERY
    )
    _calls(handler, 50, "before")
    assert handler.flush(60)
    first = _sender_pid(handler)

    _calls(handler, 50, "racing")  # some may still be inside the sender when it dies
    os.kill(first, signal.SIGKILL)
    wait_until(lambda: _sender_pid(handler) != first, 30, message="no new sender after the kill")
    _calls(handler, 50, "after")
    assert handler.flush(60), handler.stats

    stats = handler.stats
    assert stats.buffered == 0
    assert stats.published + stats.dropped_by_reason.get(DropReason.SENDER_EXITED.value, 0) == 150
    assert "sender process exited (code -9)" in caplog.text
    read = {
        e.event.prompts[0]
        for e in read_events(kafka_bootstrap, topic, stats.published)
        if e.event.kind == "prompt"
    }
    # nothing given to the new sender is lost; what the killed one held is counted, never hidden
    assert {f"after-{i}" for i in range(50)} <= read
    assert {f"before-{i}" for i in range(50)} <= read
    assert len(read) >= stats.published  # a report of deliveries may be a moment older than the kill


def test_the_senders_warnings_are_logged_in_the_app(
    offline_bootstrap: str, make_handler: MakeHandler, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="labelstudio_ingest")
    handler = make_handler(bootstrap_servers=offline_bootstrap, topic=unique_topic(), sender="process")
    _calls(handler, 3, "nobody")
    wait_until(
        lambda: any(
            r.name == "labelstudio_ingest.producer.transport" and "no Kafka broker answers" in r.getMessage()
            for r in caplog.records
        ),
        30,
        message="the sender's warning never reached the app's logging",
    )
    wait_until(lambda: handler.stats.connection_errors >= 1, 30, message="no connection error counted")
    assert handler.stats.buffered == 3


def test_a_sender_that_cannot_start_keeps_the_events_and_says_why(
    caplog: pytest.LogCaptureFixture, kafka_bootstrap: str
) -> None:
    transport = SenderProcessTransport(settings={"bootstrap_servers": [kafka_bootstrap]}, python="/bin/false")
    try:
        record = Record(topic="t", key=b"k", value=b"v", headers=[])
        assert transport.submit(record)
        wait_until(lambda: "sender process exited (code 1)" in caplog.text, 30, message="no warning")
        assert transport.stats().buffered == 1
        assert transport.flush(0.2) is False
    finally:
        assert transport.close(0) is False
    stats = transport.stats()
    assert (stats.buffered, stats.dropped_by_reason) == (0, {DropReason.CLOSED.value: 1})


def test_a_dead_app_takes_its_sender_with_it_after_the_flush(
    kafka_bootstrap: str, kafka_topic: Callable[..., str]
) -> None:
    topic = kafka_topic(1)
    script = f"""
        import os, signal, sys
        from langchain_core.language_models.fake import FakeListLLM
        from labelstudio_ingest.producer import LabelStudioCallbackHandler

        handler = LabelStudioCallbackHandler(
            bootstrap_servers="{kafka_bootstrap}", topic="{topic}", sender="process"
        )
        llm = FakeListLLM(responses=["r"])
        llm.invoke("orphan-first", config={{"callbacks": [handler]}})
        assert handler.flush(30)  # the sender is up: from now on each event goes straight into its pipe
        for i in range(20):
            llm.invoke(f"orphan-{{i}}", config={{"callbacks": [handler]}})
        print(handler._transport.sender_pid, flush=True)
        os.kill(os.getpid(), signal.SIGKILL)  # no exit hook, no close: the sender sees its pipe end
        """
    done = run_app(script)
    assert done.returncode == -signal.SIGKILL, done.stderr
    # the events were still lingering in the sender: it delivers them, then exits
    read = read_events(kafka_bootstrap, topic, 21)
    assert sorted(e.event.prompts[0] for e in read if e.event.kind == "prompt") == sorted(
        [f"orphan-{i}" for i in range(20)] + ["orphan-first"]
    )
    pid = int(done.stdout.strip())
    wait_until(lambda: not _alive(pid), 30, message="the sender outlived its app")


def test_a_forked_child_publishes_through_a_sender_of_its_own(
    kafka_bootstrap: str, kafka_topic: Callable[..., str]
) -> None:
    topic = kafka_topic(1)
    script = f"""
        import os
        from langchain_core.language_models.fake import FakeListLLM
        from labelstudio_ingest.producer import LabelStudioCallbackHandler

        handler = LabelStudioCallbackHandler(
            bootstrap_servers="{kafka_bootstrap}", topic="{topic}", sender="process"
        )
        llm = FakeListLLM(responses=["r"])
        llm.invoke("parent-0", config={{"callbacks": [handler]}})
        assert handler.flush(30)
        parent_sender = handler._transport.sender_pid
        pid = os.fork()
        if pid == 0:
            for i in range(5):
                llm.invoke(f"child-{{i}}", config={{"callbacks": [handler]}})
            ok = handler.flush(30)
            own = handler._transport.sender_pid
            os._exit(0 if ok and own not in (None, parent_sender) and handler.stats.published == 5 else 3)
        for i in range(1, 5):
            llm.invoke(f"parent-{{i}}", config={{"callbacks": [handler]}})
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0, status
        assert handler.close(30) and handler.stats.published == 5, handler.stats
        """
    done = run_app(script)
    assert done.returncode == 0, done.stderr
    read = read_events(kafka_bootstrap, topic, 10)
    assert sorted(e.event.prompts[0] for e in read if e.event.kind == "prompt") == sorted(
        [f"parent-{i}" for i in range(5)] + [f"child-{i}" for i in range(5)]
    )


def test_an_app_that_restored_sigpipe_survives_its_sender_dying(
    kafka_bootstrap: str, kafka_topic: Callable[..., str]
) -> None:
    topic = kafka_topic(1)
    script = f"""
        import os, signal, time
        from langchain_core.language_models.fake import FakeListLLM
        from labelstudio_ingest.producer import LabelStudioCallbackHandler

        signal.signal(signal.SIGPIPE, signal.SIG_DFL)  # as some command-line programs do
        handler = LabelStudioCallbackHandler(
            bootstrap_servers="{kafka_bootstrap}", topic="{topic}", sender="process"
        )
        llm = FakeListLLM(responses=["r"])
        llm.invoke("first", config={{"callbacks": [handler]}})
        assert handler.flush(30)
        pid = handler._transport.sender_pid
        os.kill(pid, signal.SIGKILL)
        def dead(pid):  # its socket closed: a zombie, or already reaped by the link thread
            try:
                return open(f"/proc/{{pid}}/stat").read().split(")")[-1].split()[0] == "Z"
            except FileNotFoundError:
                return True

        while not dead(pid):
            time.sleep(0.005)
        for i in range(200):  # the first of these go to the dead sender's socket
            llm.invoke(f"after-{{i}}", config={{"callbacks": [handler]}})
        assert handler.flush(30), handler.stats
        print("alive", handler.stats.published + handler.stats.dropped)
        """
    done = run_app(script)
    assert done.returncode == 0, (done.returncode, done.stderr)
    assert "alive 201" in done.stdout


def test_closed_handlers_leave_no_descriptors_or_processes_behind(offline_bootstrap: str) -> None:
    def descriptors() -> int:
        return len(os.listdir("/proc/self/fd"))

    gc.collect()  # what earlier tests left for the collector is not this test's
    before = descriptors()
    senders = []
    for i in range(5):
        handler = LabelStudioCallbackHandler(
            bootstrap_servers=offline_bootstrap,
            topic=unique_topic(),
            producer_config={"client_id": f"c{i}"},
            sender="process",
        )
        _calls(handler, 2, "short-lived")
        senders.append(_sender_pid(handler))
        assert handler.close(0) is False  # nobody listens: the two events are dropped (closed)
        assert handler.stats.dropped_by_reason == {DropReason.CLOSED.value: 2}
        del handler
    gc.collect()
    assert descriptors() == before
    assert not any(_alive(pid) for pid in senders)
