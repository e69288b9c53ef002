"""Small fake LangChain models (langchain-core's own fakes plus what they cannot do)."""

from __future__ import annotations

from typing import Any

from langchain_core.callbacks import CallbackManagerForLLMRun
from langchain_core.language_models import LLM, BaseLLM
from langchain_core.language_models.fake import FakeListLLM, FakeStreamingListLLM
from langchain_core.language_models.fake_chat_models import FakeListChatModel, GenericFakeChatModel
from langchain_core.messages import AIMessage
from langchain_core.outputs import Generation, LLMResult

__all__ = [
    "FailingLLM",
    "FakeListChatModel",
    "FakeListLLM",
    "FakeStreamingListLLM",
    "GenericFakeChatModel",
    "TwoAnswersLLM",
    "tool_calling_chat",
]


class FailingLLM(LLM):
    """A text LLM whose provider always fails."""

    message: str = "provider unavailable"

    @property
    def _llm_type(self) -> str:
        return "failing"

    def _call(
        self,
        prompt: str,
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> str:
        raise RuntimeError(self.message)


class TwoAnswersLLM(BaseLLM):
    """A text LLM sampling n=2 answers per prompt, reporting usage and model name like OpenAI."""

    @property
    def _llm_type(self) -> str:
        return "two-answers"

    def _generate(
        self,
        prompts: list[str],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> LLMResult:
        return LLMResult(
            generations=[[Generation(text=f"{p} (1)"), Generation(text=f"{p} (2)")] for p in prompts],
            llm_output={
                "token_usage": {"prompt_tokens": 7, "completion_tokens": 9, "total_tokens": 16},
                "model_name": "two-answers-v1",
            },
        )


def tool_calling_chat() -> GenericFakeChatModel:
    """A chat model that answers with a tool call and reports token usage."""
    answer = AIMessage(
        content="Let me check.",
        tool_calls=[{"name": "weather", "args": {"city": "Paris"}, "id": "call-7"}],
        usage_metadata={"input_tokens": 12, "output_tokens": 5, "total_tokens": 17},
        response_metadata={"model_name": "fake-tools-1"},
    )
    return GenericFakeChatModel(messages=iter([answer]))
