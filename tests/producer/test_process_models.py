"""The process models services run, each with the real program and the real broker.

Every test starts the program as people run it (gunicorn, uvicorn, a Celery worker, a
``multiprocessing`` pool, an asyncio app), with the handler configured through the environment only
(``KAFKA_BOOTSTRAP_SERVERS``, ``INGEST_TOPIC``, ``INGEST_PRODUCER_SENDER``), stops it the way its
supervisor does, then reads the topic back: exactly the runs the app says it made, each once.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import textwrap
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import pytest

from labelstudio_ingest.consumer.embedded import free_port, wait_until

from .support import read_events

pytestmark = pytest.mark.integration

BIN = Path(sys.executable).parent
STOP_TIMEOUT = 60.0


@pytest.fixture(params=["thread", "process"])
def app_env(
    request: pytest.FixtureRequest, kafka_bootstrap: str, kafka_topic: Callable[..., str]
) -> dict[str, str]:
    """The environment of an app whose handler takes every setting from it; both senders."""
    return {
        **os.environ,
        "KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap,
        "INGEST_TOPIC": kafka_topic(2),
        "INGEST_PRODUCER_SENDER": str(request.param),
    }


def _write(directory: Path, name: str, source: str) -> None:
    (directory / name).write_text(textwrap.dedent(source))


@contextmanager
def _running(argv: Sequence[str], cwd: Path, env: dict[str, str], port: int | None = None) -> Iterator[None]:
    """Run a server until the block ends, then stop it with SIGTERM as a supervisor would."""
    log = (cwd / "server.log").open("w")
    process = subprocess.Popen(argv, cwd=cwd, env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        if port is not None:
            wait_until(lambda: _listens(port) or process.poll() is not None, 60, message="no server")
            assert process.poll() is None, (cwd / "server.log").read_text()
        yield
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log.close()
    assert process.returncode == 0, (cwd / "server.log").read_text()


def _listens(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


def _get(port: int, prompt: str) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/?q={prompt}", timeout=30) as answer:
        return str(answer.read().decode())


def _run_app(directory: Path, name: str, source: str, env: dict[str, str]) -> list[str]:
    """Run an app script to its end; the prompts it says it sent (its stdout), sorted."""
    _write(directory, name, source)
    done = subprocess.run(
        [sys.executable, name],
        check=False,
        cwd=directory,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    return sorted(done.stdout.split())


def _published_prompts(env: dict[str, str], expected: int) -> list[str]:
    events = read_events(env["KAFKA_BOOTSTRAP_SERVERS"], env["INGEST_TOPIC"], expected)
    return sorted(prompt for read in events if read.event.kind == "prompt" for prompt in read.event.prompts)


WSGI_APP = """
    from urllib.parse import parse_qs
    from langchain_core.language_models.fake import FakeListLLM
    from labelstudio_ingest.producer import LabelStudioCallbackHandler

    handler = LabelStudioCallbackHandler()  # at import: with --preload, in the master, before the fork
    llm = FakeListLLM(responses=["an answer"])

    def app(environ, start_response):
        prompt = parse_qs(environ["QUERY_STRING"])["q"][0]
        llm.invoke(prompt, config={"callbacks": [handler]})
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [prompt.encode()]
    """


def test_gunicorn_sync_workers_with_preload_deliver_every_run(
    tmp_path: Path, app_env: dict[str, str]
) -> None:
    _write(tmp_path, "wsgi_app.py", WSGI_APP)
    port = free_port()
    argv = [str(BIN / "gunicorn"), "--preload", "-w", "3", "-b", f"127.0.0.1:{port}", "wsgi_app:app"]
    with _running(argv, tmp_path, app_env, port):
        sent = sorted(_get(port, f"wsgi-{i}") for i in range(60))
    assert _published_prompts(app_env, len(sent)) == sent


ASGI_APP = """
    import asyncio
    from urllib.parse import parse_qs
    from langchain_core.language_models.fake import FakeListLLM
    from labelstudio_ingest.producer import LabelStudioCallbackHandler

    handler = LabelStudioCallbackHandler()
    llm = FakeListLLM(responses=["an answer"])

    async def app(scope, receive, send):
        if scope["type"] == "lifespan":
            message = await receive()
            while message["type"] != "lifespan.shutdown":
                if message["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                message = await receive()
            # uvicorn ends its process with the SIGTERM it caught, which skips exit hooks: close here
            await asyncio.to_thread(handler.close)
            await send({"type": "lifespan.shutdown.complete"})
            return
        prompt = parse_qs(scope["query_string"].decode())["q"][0]
        await llm.ainvoke(prompt, config={"callbacks": [handler]})
        headers = [(b"content-type", b"text/plain")]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": prompt.encode()})
    """


@pytest.mark.parametrize("server", ["gunicorn-uvicorn-worker", "uvicorn-workers"])
def test_asgi_workers_deliver_every_run(tmp_path: Path, app_env: dict[str, str], server: str) -> None:
    _write(tmp_path, "asgi_app.py", ASGI_APP)
    port = free_port()
    if server == "gunicorn-uvicorn-worker":
        argv = [str(BIN / "gunicorn"), "-k", "uvicorn.workers.UvicornWorker", "-w", "2"]
        argv += ["-b", f"127.0.0.1:{port}", "asgi_app:app"]
    else:
        argv = [str(BIN / "uvicorn"), "--workers", "2", "--port", str(port), "asgi_app:app"]
    with _running(argv, tmp_path, app_env, port):
        sent = sorted(_get(port, f"asgi-{i}") for i in range(60))
    assert _published_prompts(app_env, len(sent)) == sent


CELERY_APP = """
    import os
    from celery import Celery
    from langchain_core.language_models.fake import FakeListLLM
    from labelstudio_ingest.producer import LabelStudioCallbackHandler

    queue = os.path.join(os.path.dirname(os.path.abspath(__file__)), "queue")
    os.makedirs(queue, exist_ok=True)
    app = Celery("celery_app", broker="filesystem://", backend="file://" + os.path.join(queue, "results"))
    app.conf.broker_transport_options = {"data_folder_in": queue, "data_folder_out": queue}
    os.makedirs(os.path.join(queue, "results"), exist_ok=True)

    handler = LabelStudioCallbackHandler()
    llm = FakeListLLM(responses=["an answer"])

    @app.task
    def ask(prompt):
        llm.invoke(prompt, config={"callbacks": [handler]})
        return prompt
    """


def test_celery_prefork_with_one_task_per_child_delivers_every_run(
    tmp_path: Path, app_env: dict[str, str]
) -> None:
    _write(tmp_path, "celery_app.py", CELERY_APP)
    argv = [str(BIN / "celery"), "-A", "celery_app", "worker", "--pool", "prefork", "-c", "2"]
    argv += ["--max-tasks-per-child", "1", "--loglevel", "warning", "--without-mingle", "--without-gossip"]
    client = f"""
        import sys
        sys.path.insert(0, {str(tmp_path)!r})
        from celery_app import ask
        results = [ask.delay(f"celery-{{i}}") for i in range(8)]
        print(" ".join(result.get(timeout=120) for result in results))
        """
    with _running(argv, tmp_path, app_env):
        done = subprocess.run(
            [sys.executable, "-c", textwrap.dedent(client)],
            cwd=tmp_path,
            env=app_env,
            capture_output=True,
            text=True,
            timeout=180,
            check=True,
        )
    sent = sorted(done.stdout.split())
    assert len(sent) == 8
    assert _published_prompts(app_env, len(sent)) == sent


POOL_APP = """
    import multiprocessing
    from langchain_core.language_models.fake import FakeListLLM
    from labelstudio_ingest.producer import LabelStudioCallbackHandler

    handler = LabelStudioCallbackHandler()
    llm = FakeListLLM(responses=["an answer"])

    def ask(i):
        prompt = f"pool-{i}"
        llm.invoke(prompt, config={"callbacks": [handler]})
        return prompt

    if __name__ == "__main__":
        pool = multiprocessing.get_context("fork").Pool(3, maxtasksperchild=5)
        sent = pool.map(ask, range(40))
        pool.close()  # workers end through multiprocessing's exit path, which flushes the handler
        pool.join()
        print(" ".join(sent))
    """


def test_a_multiprocessing_pool_delivers_every_run(tmp_path: Path, app_env: dict[str, str]) -> None:
    sent = _run_app(tmp_path, "pool_app.py", POOL_APP, app_env)
    assert len(sent) == 40
    assert _published_prompts(app_env, len(sent)) == sent


ASYNCIO_APP = """
    import asyncio
    from langchain_core.language_models.fake import FakeListLLM
    from labelstudio_ingest.producer import LabelStudioCallbackHandler

    class NetworkLLM(FakeListLLM):
        async def _acall(self, prompt, stop=None, run_manager=None, **kwargs):
            await asyncio.sleep(0.05)  # a model behind the network: hundreds of calls wait at once
            return "an answer"

    async def main():
        handler = LabelStudioCallbackHandler()
        llm = NetworkLLM(responses=["an answer"])
        prompts = [f"async-{i}" for i in range(400)]
        await asyncio.gather(*(llm.ainvoke(p, config={"callbacks": [handler]}) for p in prompts))
        print(" ".join(prompts))  # no flush, no close: the bounded flush at exit delivers them

    asyncio.run(main())
    """


def test_asyncio_with_hundreds_of_concurrent_calls_delivers_every_run(
    tmp_path: Path, app_env: dict[str, str]
) -> None:
    sent = _run_app(tmp_path, "async_app.py", ASYNCIO_APP, app_env)
    assert len(sent) == 400
    assert _published_prompts(app_env, len(sent)) == sent
