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
from labelstudio_ingest.schemas.feedback import (
    DEFAULT_FEEDBACK_TOPIC,
    FEEDBACK_SCHEMA_VERSION,
    FeedbackEvent,
    FeedbackProject,
    FeedbackRating,
    decode_feedback,
    encode_feedback,
    feedback_event_id,
    feedback_headers,
    feedback_key,
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
    "DEFAULT_FEEDBACK_TOPIC",
    "DEFAULT_LIMITS",
    "DEFAULT_PROJECT_NAME",
    "DEFAULT_TOPIC",
    "FEEDBACK_SCHEMA_VERSION",
    "SCHEMA_VERSION",
    "SUPPORTED_SCHEMA_VERSIONS",
    "ChatEvent",
    "DecodeErrorReason",
    "Event",
    "EventDecodeError",
    "FeedbackEvent",
    "FeedbackProject",
    "FeedbackRating",
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
    "decode_feedback",
    "encode",
    "encode_feedback",
    "event_headers",
    "event_key",
    "feedback_event_id",
    "feedback_headers",
    "feedback_key",
    "limit_violations",
]
