"""Read a Label Studio labeling config the way the old LangChain handler did.

The first ``TextArea`` and the object tag it points to (``toName``) decide where a run goes:
the object's ``value="$prompt"`` names the task data field for the prompt (or dialogue), and
the ``TextArea`` receives the generations as a prediction. Parsing uses the SDK's
:class:`~label_studio_sdk.label_interface.LabelInterface`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache
from importlib.resources import files
from typing import Any, Literal

from label_studio_sdk.label_interface.interface import LabelInterface

RESERVED_DATA_KEYS = frozenset({"run_id", "prompt_index"})
"""Task data fields the consumer writes itself; an object tag may not use them as its value."""

DIALOGUE_TAGS = frozenset({"paragraphs", "chat"})
"""Object tags (lower case) that show a list of ``{role, content}`` messages."""

PARAGRAPHS_DEFAULT_NAME_KEY = "author"
PARAGRAPHS_DEFAULT_TEXT_KEY = "text"
"""Label Studio's defaults for ``Paragraphs`` ``nameKey`` / ``textKey`` when a config omits them."""

_XML_DECLARATION = re.compile(r"^\s*<\?xml\s[^>]*\?>")  # not <?xml-stylesheet ...?>
_PACKAGE = __name__.rpartition(".")[0]
_DEFAULT_CONFIG_FILES = {
    "prompt": "default_prompt.xml",
    "chat": "default_chat.xml",
    "trajectory": "default_trajectory.xml",
}


class LabelConfigError(ValueError):
    """A labeling config that cannot receive LLM runs; the message says why."""


@dataclass(frozen=True, slots=True)
class TaskLayout:
    """Where a run goes in a task of one labeling config."""

    data_key: str
    """The object tag's value without ``$``, e.g. ``"prompt"``: the task data field of the input."""
    object_name: str
    """The object tag's name, e.g. ``"prompt"`` or ``"dialogue"`` (the prediction's ``to_name``)."""
    object_tag: str
    """The object tag as written, e.g. ``"Text"``, ``"Paragraphs"``, ``"HyperText"``."""
    textarea_name: str
    """The first ``TextArea``'s name, e.g. ``"response"`` (the prediction's ``from_name``)."""
    dialogue: bool
    """True when the object shows a list of messages (``Paragraphs``, ``Chat``), False for text."""
    name_key: str = "role"
    """For a dialogue: the message key holding the speaker (``Paragraphs`` ``nameKey``)."""
    text_key: str = "content"
    """For a dialogue: the message key holding the text (``Paragraphs`` ``textKey``)."""


@lru_cache(maxsize=256)
def task_layout(config_xml: str) -> TaskLayout:
    """The layout a labeling config gives to tasks (cached: configs repeat).

    Raises:
        LabelConfigError: the config is not XML, has no ``TextArea`` with a ``toName``, or the
            ``TextArea`` points to a missing object or to one without a ``$variable`` value.
    """
    interface = _parse(config_xml)
    textarea = next((c for c in interface.controls or () if c.tag.lower() == "textarea"), None)
    if textarea is None:
        raise LabelConfigError(
            "the label config has no TextArea (with name and toName), so it cannot receive LLM "
            'responses; add e.g. <TextArea name="response" toName="prompt"/>'
        )
    if not textarea.to_name:
        raise LabelConfigError(f"TextArea {textarea.name!r} has an empty toName")
    object_name: str = textarea.to_name[0]
    obj = _object(interface, object_name)
    if obj is None:
        raise LabelConfigError(
            f"TextArea {textarea.name!r} points to {object_name!r}, but the config has no object tag "
            f'named {object_name!r} with a value (e.g. <Text name="{object_name}" value="$prompt"/>)'
        )
    if not obj.value_is_variable:
        raise LabelConfigError(
            f"object tag {object_name!r} has value {obj.value!r}; it needs a task field such as "
            'value="$prompt" to show the prompt'
        )
    data_key = obj.value[1:]
    if data_key in RESERVED_DATA_KEYS:
        raise LabelConfigError(
            f"object tag {object_name!r} reads ${data_key}, a task field the consumer fills itself; "
            f"use another name (reserved: {', '.join(sorted(RESERVED_DATA_KEYS))})"
        )
    dialogue = obj.tag.lower() in DIALOGUE_TAGS
    name_key, text_key = "role", "content"
    if obj.tag.lower() == "paragraphs":
        name_key = obj.get_attr("nameKey", PARAGRAPHS_DEFAULT_NAME_KEY)
        text_key = obj.get_attr("textKey", PARAGRAPHS_DEFAULT_TEXT_KEY)
    return TaskLayout(
        data_key=data_key,
        object_name=object_name,
        object_tag=obj.tag,
        textarea_name=textarea.name,
        dialogue=dialogue,
        name_key=name_key,
        text_key=text_key,
    )


def default_config(mode: Literal["prompt", "chat", "trajectory"]) -> str:
    """The old handler's default labeling config of ``mode`` (its documented XML, verbatim), or
    ours for whole agent runs (``trajectory``, see docs/TRAJECTORIES.md)."""
    return _default_config(mode)


@lru_cache(maxsize=3)
def _default_config(mode: str) -> str:
    try:
        name = _DEFAULT_CONFIG_FILES[mode]
    except KeyError:
        raise ValueError(f"mode must be 'prompt', 'chat' or 'trajectory', not {mode!r}") from None
    return files(_PACKAGE).joinpath(name).read_text(encoding="utf-8")


def normalize_config(config_xml: str) -> str:
    """The config without a leading ``<?xml ...?>`` declaration.

    lxml refuses a ``str`` that declares an encoding, and so does Label Studio (it answers a
    project create with HTTP 500); the text is already decoded, so the declaration adds nothing.
    """
    return _XML_DECLARATION.sub("", config_xml, count=1)


def _parse(config_xml: str) -> LabelInterface:
    text = normalize_config(config_xml)
    if not text.strip():
        raise LabelConfigError("the label config is empty")
    try:
        return LabelInterface(text)
    except Exception as exc:  # the SDK raises bare Exception subclasses for XML syntax errors
        raise LabelConfigError(f"the label config is not valid XML: {exc}") from None


def _object(interface: LabelInterface, name: str) -> Any:
    """The object tag called ``name``, or None (the SDK only lists objects that have a value)."""
    return next((o for o in interface.objects or () if o.name == name), None)
