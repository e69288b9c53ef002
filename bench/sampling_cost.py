"""What the handler adds to one agent run when sampling keeps it, drops it, or the handler is off.

One agent run is a chain of two lambdas whose second step calls ``FakeListChatModel`` twice (three
chain runs, two LLM runs: the handler sees them all, to follow the trace root). Per round, each
scenario times ``--iterations`` runs on the app's thread, interleaved with the baseline (no callback
at all); every figure is the median over ``--rounds`` rounds of the scenario's percentile minus the
baseline's, with the ratio of the medians:

| scenario | what |
| --- | --- |
| no-op callback | a handler that does nothing: LangChain's own cost of having any callback |
| disabled | ``enabled=False``: LangChain never calls it |
| sampled out | ``sample_rate=0``: decided at each LLM run's start, nothing built |
| kept | ``sample_rate=1``: built, encoded and handed to the sender thread (no broker listens, so
  nothing is sent; delivery costs are ``producer_latency.py``'s) |

    .venv/bin/python -m bench.sampling_cost [--rounds 5] [--iterations 2000] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections.abc import Callable
from typing import Any

from langchain_core.callbacks import BaseCallbackHandler
from langchain_core.language_models.fake_chat_models import FakeListChatModel
from langchain_core.runnables import Runnable, RunnableConfig, RunnableLambda

from labelstudio_ingest.producer import LabelStudioCallbackHandler
from tests.harness import free_port


class NoOpHandler(BaseCallbackHandler):
    """Receives every event LangChain sends and does nothing."""

    run_inline = True


def agent() -> Runnable[str, str]:
    """Two chain steps, the second calling the model twice."""
    llm = FakeListChatModel(responses=["plan", "answer"])

    def think(question: str, config: RunnableConfig) -> str:
        llm.invoke(question, config)
        return str(llm.invoke(question, config).content)

    return RunnableLambda(lambda q: q.strip()) | RunnableLambda(think)


def _times(run: Callable[[], Any], n: int) -> list[float]:
    out = []
    clock = time.perf_counter
    for _ in range(n):
        start = clock()
        run()
        out.append((clock() - start) * 1000.0)
    return sorted(out)


def _pct(values: list[float], q: float) -> float:
    return values[min(int(q * len(values)), len(values) - 1)]


def measure(rounds: int, iterations: int) -> dict[str, dict[str, float]]:
    """Added p50/p99 (ms) per agent run and the p50 ratio, for every scenario."""
    offline = f"127.0.0.1:{free_port()}"
    options: dict[str, Any] = {"bootstrap_servers": offline, "sender": "thread", "mode": "chat"}
    handlers: dict[str, BaseCallbackHandler] = {
        "no-op callback": NoOpHandler(),
        "disabled": LabelStudioCallbackHandler(enabled=False),
        "sampled out": LabelStudioCallbackHandler(sample_rate=0.0, **options),
        "kept": LabelStudioCallbackHandler(
            sample_rate=1.0, max_buffered_events=2 * rounds * iterations + 1, **options
        ),
    }
    chain = agent()
    results: dict[str, list[tuple[float, float, float, float]]] = {name: [] for name in handlers}
    for _ in range(rounds):
        for name, handler in handlers.items():
            base = _times(lambda: chain.invoke("q"), iterations)
            config: RunnableConfig = {"callbacks": [handler]}
            timed = _times(lambda config=config: chain.invoke("q", config=config), iterations)  # type: ignore[misc]
            results[name].append((_pct(base, 0.5), _pct(base, 0.99), _pct(timed, 0.5), _pct(timed, 0.99)))
    for handler in handlers.values():
        if isinstance(handler, LabelStudioCallbackHandler):
            handler.close(0)
    report = {}
    for name, rows in results.items():
        report[name] = {
            "base_p50_ms": statistics.median(r[0] for r in rows),
            "added_p50_ms": statistics.median(r[2] - r[0] for r in rows),
            "added_p99_ms": statistics.median(r[3] - r[1] for r in rows),
            "ratio_p50": statistics.median(r[2] / r[0] for r in rows),
        }
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--iterations", type=int, default=2000)
    parser.add_argument("--json", default=None, help="also write the results to this file")
    args = parser.parse_args(argv)
    report = measure(args.rounds, args.iterations)
    print(f"{'scenario':<16} {'base p50':>9} {'added p50':>10} {'added p99':>10} {'ratio p50':>10}")
    for name, row in report.items():
        print(
            f"{name:<16} {row['base_p50_ms']:>7.3f}ms {row['added_p50_ms']:>8.3f}ms "
            f"{row['added_p99_ms']:>8.3f}ms {row['ratio_p50']:>10.2f}"
        )
    if args.json:
        with open(args.json, "w", encoding="utf-8") as out:
            json.dump(report, out, indent=2)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
