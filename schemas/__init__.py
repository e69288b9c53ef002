"""The event contract between the producer (LangChain callback) and the consumer (Label Studio sink).

Import models and the wire helpers from here::

    from labelstudio_ingest.schemas import PromptEvent, ChatEvent, decode, encode
"""

from labelstudio_ingest.schemas.events import (
    DEFAULT_PROJECT_NAME,
    DEFAULT_TOPIC,
    SCHEMA_VERSION,
    SUPPORTED_SCHEMA_VERSIONS,
    ChatEvent,
    Generation,
    InteractionEvent,
    Message,
    Mode,
    PromptEvent,
    Role,
    RunError,
    Source,
    Target,
    TokenUsage,
    ToolCall,
)
from labelstudio_ingest.schemas.limits import DEFAULT_LIMITS, Limits, limit_violations
from labelstudio_ingest.schemas.wire import (
    DecodeErrorReason,
    Event,
    EventDecodeError,
    decode,
    encode,
    event_headers,
    event_key,
)

__all__ = [
    "DEFAULT_LIMITS",
    "DEFAULT_PROJECT_NAME",
    "DEFAULT_TOPIC",
    "SCHEMA_VERSION",
    "SUPPORTED_SCHEMA_VERSIONS",
    "ChatEvent",
    "DecodeErrorReason",
    "Event",
    "EventDecodeError",
    "Generation",
    "InteractionEvent",
    "Limits",
    "Message",
    "Mode",
    "PromptEvent",
    "Role",
    "RunError",
    "Source",
    "Target",
    "TokenUsage",
    "ToolCall",
    "decode",
    "encode",
    "event_headers",
    "event_key",
    "limit_violations",
]
