"""A process that forks while the handler is sending: the child must not try to close the parent's producer.

Found by the fault run (bench/fault_run.py): every restart of Label Studio (``subprocess.Popen`` with a
``preexec_fn``, which runs the at-fork hooks in the child) printed ``Exception ignored in
KafkaProducer.__del__ ... KafkaTimeoutError`` while producers were busy, and each such child spent a
second in that ``close`` before it could exec.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest

from .support import run_app

pytestmark = pytest.mark.integration


def test_a_fork_during_traffic_leaves_the_inherited_producer_alone(
    kafka_bootstrap: str, kafka_topic: Callable[..., str]
) -> None:
    topic = kafka_topic(1)
    script = f"""
        import gc, os, subprocess, threading, time
        from langchain_core.language_models.fake import FakeListLLM
        from labelstudio_ingest.producer import LabelStudioCallbackHandler

        handler = LabelStudioCallbackHandler(bootstrap_servers="{kafka_bootstrap}", topic="{topic}")
        llm = FakeListLLM(responses=["a"])
        stop = threading.Event()

        def busy():
            while not stop.is_set():
                llm.invoke("q", config={{"callbacks": [handler]}})
                time.sleep(0.001)

        thread = threading.Thread(target=busy)
        thread.start()
        time.sleep(1)
        for _ in range(3):  # records are in flight now: the case that broke
            subprocess.run(["true"], preexec_fn=lambda: None, check=True)
            pid = os.fork()
            if pid == 0:
                gc.collect()
                os._exit(0)
            os.waitpid(pid, 0)
        stop.set()
        thread.join()
        assert handler.close(30), handler.stats
        print("published", handler.stats.published)
        """
    done = run_app(script)
    assert done.returncode == 0, done.stderr
    assert "published" in done.stdout
    assert "Exception ignored" not in done.stderr, done.stderr
    assert "KafkaTimeoutError" not in done.stderr, done.stderr
