"""Publishing model calls made without LangChain: a service that calls a model SDK directly.

    KAFKA_BOOTSTRAP_SERVERS=localhost:9092 python -m examples.publish_without_langchain

``call_model`` stands in for the SDK (its reply has the shape of OpenAI's chat completions); put
the real client call there. Each question is one conversation: its id is the trace root, so with
``--sample-rate`` below 1 all the calls of one conversation are kept or dropped together. The
labelstudio-ingest consumer turns each published call into a Label Studio task.
"""

from __future__ import annotations

import argparse
import time
import uuid
from typing import Any

from labelstudio_ingest.producer import LabelStudioPublisher, PublishOutcome

SYSTEM = {"role": "system", "content": "You answer in one short sentence."}


def call_model(messages: list[dict[str, Any]]) -> dict[str, Any]:
    """A stand-in for ``client.chat.completions.create(...).model_dump()``."""
    question = messages[-1]["content"]
    return {
        "model": "example-model-1",
        "choices": [{"message": {"role": "assistant", "content": f"A short answer to {question!r}."}}],
        "usage": {"prompt_tokens": 20, "completion_tokens": 8, "total_tokens": 28},
    }


def answer(publisher: LabelStudioPublisher, question: str, conversation: uuid.UUID) -> PublishOutcome:
    """Ask the model, then publish the call (or its failure) for review. Publishing never raises."""
    messages = [SYSTEM, {"role": "user", "content": question}]
    started = time.perf_counter()
    try:
        reply = call_model(messages)
    except Exception as exc:
        publisher.publish(messages=messages, error=exc, root_run_id=conversation)
        raise
    return publisher.publish(
        messages=messages,
        response=reply["choices"][0]["message"],
        model=reply["model"],
        token_usage=reply["usage"],
        latency_ms=(time.perf_counter() - started) * 1000.0,
        metadata={"feature": "faq"},
        root_run_id=conversation,
    )


def main(argv: list[str] | None = None) -> int:
    """Publish a few calls and print what became of them."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bootstrap-servers", default=None, help="default: $KAFKA_BOOTSTRAP_SERVERS")
    parser.add_argument("--topic", default=None, help="default: $INGEST_TOPIC or llm.interactions")
    parser.add_argument("--sample-rate", type=float, default=1.0)
    args = parser.parse_args(argv)
    with LabelStudioPublisher(
        bootstrap_servers=args.bootstrap_servers,
        topic=args.topic,
        project_name="SDK calls %Y-%m-%d",
        sample_rate=args.sample_rate,
    ) as publisher:
        for question in ("What is Kafka?", "What is Label Studio?"):
            outcome = answer(publisher, question, conversation=uuid.uuid4())
            print(f"{question!r}: {outcome.value}")
        delivered = publisher.flush(10)
        print(f"delivered: {delivered}; {publisher.stats}")
    return 0 if delivered else 1


if __name__ == "__main__":
    raise SystemExit(main())
