"""The producer side: a LangChain callback that publishes every LLM run to Kafka.

Use it where the old ``langchain_community`` handler was used::

    from labelstudio_ingest.producer import LabelStudioCallbackHandler

    handler = LabelStudioCallbackHandler(project_name="My Project", mode="chat")
    chat_model.invoke(messages, config={"callbacks": [handler]})
"""

from labelstudio_ingest.producer.handler import LabelStudioCallbackHandler
from labelstudio_ingest.producer.metrics import DropReason, ProducerStats

__all__ = ["DropReason", "LabelStudioCallbackHandler", "ProducerStats"]
