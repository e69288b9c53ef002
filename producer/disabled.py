"""The handler when publishing is switched off (``enabled=False``, ``INGEST_PRODUCER_ENABLED=false``).

It keeps the handler's public surface so the app's code does not change, but starts no thread or
process and imports no Kafka client; its ``ignore_*`` properties tell LangChain never to call it.
"""

from __future__ import annotations

import os
from typing import Any

from labelstudio_ingest.producer import settings as env
from labelstudio_ingest.producer.handler import LabelStudioCallbackHandler
from labelstudio_ingest.producer.metrics import ProducerStats
from labelstudio_ingest.schemas import DEFAULT_PROJECT_NAME, DEFAULT_TOPIC


class DisabledCallbackHandler(LabelStudioCallbackHandler):
    """A :class:`LabelStudioCallbackHandler` that publishes nothing and costs nothing."""

    enabled = False

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        """Takes the options of an enabled handler; keeps the target's, checks none of them."""
        self._runs = {}
        self._sampled_out = {}
        self.project_id = kwargs.get("project_id")
        self.project_name = kwargs.get("project_name", DEFAULT_PROJECT_NAME)
        self.project_config = kwargs.get("project_config")
        self.topic = str(kwargs.get("topic") or os.environ.get(env.ENV_TOPIC) or DEFAULT_TOPIC)

    def on_llm_start(self, *args: Any, **kwargs: Any) -> None:
        """Nothing to do."""

    def on_chat_model_start(self, *args: Any, **kwargs: Any) -> None:
        """Nothing to do."""

    def on_llm_end(self, *args: Any, **kwargs: Any) -> None:
        """Nothing to do."""

    def on_llm_error(self, *args: Any, **kwargs: Any) -> None:
        """Nothing to do."""

    def on_chain_start(self, *args: Any, **kwargs: Any) -> None:
        """Nothing to do."""

    def on_chain_end(self, *args: Any, **kwargs: Any) -> None:
        """Nothing to do."""

    def on_chain_error(self, *args: Any, **kwargs: Any) -> None:
        """Nothing to do."""

    def on_tool_start(self, *args: Any, **kwargs: Any) -> None:
        """Nothing to do."""

    def on_tool_end(self, *args: Any, **kwargs: Any) -> None:
        """Nothing to do."""

    def on_tool_error(self, *args: Any, **kwargs: Any) -> None:
        """Nothing to do."""

    def on_retriever_start(self, *args: Any, **kwargs: Any) -> None:
        """Nothing to do."""

    def on_retriever_end(self, *args: Any, **kwargs: Any) -> None:
        """Nothing to do."""

    def on_retriever_error(self, *args: Any, **kwargs: Any) -> None:
        """Nothing to do."""

    @property
    def ignore_llm(self) -> bool:
        """LangChain never calls a disabled handler."""
        return True

    @property
    def ignore_chat_model(self) -> bool:
        """LangChain never calls a disabled handler."""
        return True

    @property
    def ignore_chain(self) -> bool:
        """LangChain never calls a disabled handler."""
        return True

    @property
    def ignore_agent(self) -> bool:
        """LangChain never calls a disabled handler."""
        return True

    @property
    def ignore_retriever(self) -> bool:
        """LangChain never calls a disabled handler."""
        return True

    def flush(self, *args: Any, **kwargs: Any) -> bool:
        """Nothing is ever pending."""
        return True

    def close(self, *args: Any, **kwargs: Any) -> bool:
        """Nothing to release."""
        return True

    @property
    def stats(self) -> ProducerStats:
        """All zero."""
        return ProducerStats()
