"""The producer side: a LangChain callback that publishes every LLM run to Kafka.

Use it where the old ``langchain_community`` handler was used::

    from labelstudio_ingest.producer import LabelStudioCallbackHandler

    handler = LabelStudioCallbackHandler(project_name="My Project", mode="chat")
    chat_model.invoke(messages, config={"callbacks": [handler]})

Services that call a model SDK directly publish the same events with ``LabelStudioPublisher``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from labelstudio_ingest.producer.handler import LabelStudioCallbackHandler
    from labelstudio_ingest.producer.metrics import DropReason, ProducerStats
    from labelstudio_ingest.producer.publish import LabelStudioPublisher, PublishOutcome

__all__ = [
    "DropReason",
    "LabelStudioCallbackHandler",
    "LabelStudioPublisher",
    "ProducerStats",
    "PublishOutcome",
]


def __getattr__(name: str) -> Any:
    # Imported on first use: the sender process imports this package without LangChain.
    if name == "LabelStudioCallbackHandler":
        from labelstudio_ingest.producer.handler import LabelStudioCallbackHandler  # noqa: PLC0415

        return LabelStudioCallbackHandler
    if name in ("LabelStudioPublisher", "PublishOutcome"):
        from labelstudio_ingest.producer import publish  # noqa: PLC0415

        return getattr(publish, name)
    if name in ("DropReason", "ProducerStats"):
        from labelstudio_ingest.producer import metrics  # noqa: PLC0415

        return getattr(metrics, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
