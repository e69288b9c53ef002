"""Size limits of one event: documented, configurable, and the same on both sides of the topic.

The defaults keep an encoded event under Kafka's default ``message.max.bytes`` (1 MiB) and a
task comfortably inside what a Label Studio page renders. The consumer takes them from its
settings; the producer uses the same numbers to decide what it may send.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from labelstudio_ingest.schemas.events import ChatEvent, PromptEvent, TrajectoryEvent


@dataclass(frozen=True, slots=True)
class Limits:
    """Upper bounds on one event. Every bound is inclusive."""

    max_event_bytes: int = 1_000_000
    """Encoded size of the whole event (UTF-8 JSON)."""
    max_inputs: int = 256
    """Prompts (prompt events) or conversations (chat events) in one run."""
    max_messages: int = 1_000
    """Messages in one conversation."""
    max_generations: int = 32
    """Generations per input (n>1 sampling)."""
    max_text_chars: int = 500_000
    """Characters in any one text: a prompt, a message, a generation."""
    max_project_config_bytes: int = 64 * 1024
    """Size of ``target.project_config`` (a labeling config XML)."""
    max_tags: int = 100
    """Tags on one run."""
    max_trajectory_steps: int = 200
    """Steps in one trajectory; the producer drops steps from the middle beyond it (and says so)."""
    max_step_text_chars: int = 20_000
    """Characters in any one text of a trajectory (a message, a tool result, a tool's arguments as
    JSON); the producer cuts longer ones (and says so). Keeps one step of a long run readable."""


DEFAULT_LIMITS = Limits()


def limit_violations(
    event: PromptEvent | ChatEvent | TrajectoryEvent, limits: Limits = DEFAULT_LIMITS
) -> list[str]:
    """Every limit the event breaks, each as a sentence a person can act on (empty when none)."""
    problems: list[str] = []
    texts: list[tuple[str, str]] = []
    if event.kind == "trajectory":
        return _trajectory_violations(event, limits)
    if event.kind == "prompt":
        inputs = len(event.prompts)
        texts.extend((f"prompts[{i}]", p) for i, p in enumerate(event.prompts))
    else:
        inputs = len(event.messages)
        for i, conversation in enumerate(event.messages):
            if len(conversation) > limits.max_messages:
                problems.append(
                    f"messages[{i}] has {len(conversation)} messages; the limit is {limits.max_messages}"
                )
            texts.extend((f"messages[{i}][{j}].content", m.content) for j, m in enumerate(conversation))
    if inputs > limits.max_inputs:
        problems.append(f"the run has {inputs} inputs; the limit is {limits.max_inputs}")
    for i, generations in enumerate(event.generations):
        if len(generations) > limits.max_generations:
            problems.append(
                f"generations[{i}] has {len(generations)} generations; the limit is {limits.max_generations}"
            )
        texts.extend((f"generations[{i}][{j}].text", g.text) for j, g in enumerate(generations))
    for where, text in texts:
        if len(text) > limits.max_text_chars:
            problems.append(f"{where} has {len(text)} characters; the limit is {limits.max_text_chars}")
    return problems + _common_violations(event, limits)


def _trajectory_violations(event: TrajectoryEvent, limits: Limits) -> list[str]:
    problems: list[str] = []
    if len(event.steps) > limits.max_trajectory_steps:
        problems.append(
            f"the trajectory has {len(event.steps)} steps; the limit is {limits.max_trajectory_steps}"
        )
    if len(event.input) > limits.max_messages:
        problems.append(f"input has {len(event.input)} messages; the limit is {limits.max_messages}")
    texts: list[tuple[str, str]] = [(f"input[{i}].content", m.content) for i, m in enumerate(event.input)]
    if event.output is not None:
        texts.append(("output", event.output))
    for i, step in enumerate(event.steps):
        if len(step.messages) > limits.max_messages:
            problems.append(
                f"steps[{i}] has {len(step.messages)} messages; the limit is {limits.max_messages}"
            )
        texts.extend((f"steps[{i}].messages[{j}].content", m.content) for j, m in enumerate(step.messages))
        if step.output is not None:
            texts.append((f"steps[{i}].output.content", step.output.content))
        if step.result is not None:
            texts.append((f"steps[{i}].result", step.result))
    for where, text in texts:
        if len(text) > limits.max_step_text_chars:
            problems.append(f"{where} has {len(text)} characters; the limit is {limits.max_step_text_chars}")
    return problems + _common_violations(event, limits)


def _common_violations(event: PromptEvent | ChatEvent | TrajectoryEvent, limits: Limits) -> list[str]:
    """The limits every kind shares: the target's label config and the run's tags."""
    problems: list[str] = []
    config = event.target.project_config
    if config is not None and len(config.encode()) > limits.max_project_config_bytes:
        problems.append(
            f"target.project_config has {len(config.encode())} bytes; "
            f"the limit is {limits.max_project_config_bytes}"
        )
    if len(event.tags) > limits.max_tags:
        problems.append(f"the run has {len(event.tags)} tags; the limit is {limits.max_tags}")
    return problems
