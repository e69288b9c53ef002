"""Reading label configs: the first TextArea and its object decide where a run goes."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from labelstudio_ingest.consumer.labelconfig import LabelConfigError, TaskLayout, default_config, task_layout
from tests.label_configs import CUSTOM_CONFIG

MISSION_CONTEXT = Path(__file__).resolve().parents[3] / "shared" / "docs" / "mission-context.md"


def test_default_prompt_config() -> None:
    assert task_layout(default_config("prompt")) == TaskLayout(
        data_key="prompt",
        object_name="prompt",
        object_tag="Text",
        textarea_name="response",
        dialogue=False,
    )


def test_default_chat_config_is_a_dialogue_with_role_and_content() -> None:
    assert task_layout(default_config("chat")) == TaskLayout(
        data_key="prompt",
        object_name="dialogue",
        object_tag="Paragraphs",
        textarea_name="response",
        dialogue=True,
        name_key="role",
        text_key="content",
    )


@pytest.mark.skipif(not MISSION_CONTEXT.exists(), reason="the shared mission context is not on this machine")
def test_default_configs_are_the_documented_ones_verbatim() -> None:
    documented = re.findall(r"```xml\n(.*?)```", MISSION_CONTEXT.read_text(), re.S)
    assert default_config("prompt") == documented[0]
    assert default_config("chat") == documented[1]


def test_unknown_mode_is_refused() -> None:
    with pytest.raises(ValueError, match="mode"):
        default_config("other")  # type: ignore[arg-type]


def test_custom_config_first_textarea_wins() -> None:
    layout = task_layout(CUSTOM_CONFIG)
    assert layout.textarea_name == "response"
    assert (layout.object_name, layout.data_key, layout.object_tag) == ("prompt", "prompt", "Text")
    assert not layout.dialogue


def test_first_textarea_in_document_order_even_when_nested() -> None:
    config = """<View>
      <Text name="question" value="$question"/>
      <View><TextArea name="answer" toName="question"/></View>
      <TextArea name="notes" toName="question"/>
    </View>"""
    layout = task_layout(config)
    assert (layout.textarea_name, layout.data_key) == ("answer", "question")


def test_textarea_with_several_targets_uses_the_first() -> None:
    config = """<View>
      <Text name="a" value="$first"/><Text name="b" value="$second"/>
      <TextArea name="r" toName="a,b"/>
    </View>"""
    assert task_layout(config).data_key == "first"


def test_paragraphs_without_keys_uses_label_studio_defaults() -> None:
    config = '<View><Paragraphs name="d" value="$conv"/><TextArea name="r" toName="d"/></View>'
    layout = task_layout(config)
    assert layout.dialogue
    assert (layout.name_key, layout.text_key) == ("author", "text")
    assert layout.data_key == "conv"


def test_paragraphs_with_custom_keys() -> None:
    config = (
        '<View><Paragraphs name="d" value="$conv" nameKey="speaker" textKey="utterance"/>'
        '<TextArea name="r" toName="d"/></View>'
    )
    layout = task_layout(config)
    assert (layout.name_key, layout.text_key) == ("speaker", "utterance")


def test_hypertext_is_not_a_dialogue() -> None:
    config = '<View><HyperText name="h" value="$html"/><TextArea name="r" toName="h"/></View>'
    layout = task_layout(config)
    assert (layout.object_tag, layout.dialogue) == ("HyperText", False)


def test_xml_declaration_is_accepted() -> None:
    config = '<?xml version="1.0" encoding="UTF-8"?>\n' + default_config("prompt")
    assert task_layout(config) == task_layout(default_config("prompt"))


@pytest.mark.parametrize(
    ("config", "reason"),
    [
        (
            '<View><Text name="prompt" value="$prompt"/><Rating name="r" toName="prompt"/></View>',
            "no TextArea",
        ),
        ('<View><Text name="prompt" value="$prompt"/><TextArea name="r"/></View>', "no TextArea"),
        ("<View/>", "no TextArea"),
        ('<View><Text name="p" value="$p"/><TextArea name="r" toName="q"/></View>', "points to 'q'"),
        ('<View><Text name="p"/><TextArea name="r" toName="p"/></View>', "points to 'p'"),
        ('<View><Text name="p" value="fixed"/><TextArea name="r" toName="p"/></View>', "needs a task field"),
        ('<View><Text name="p" value="$run_id"/><TextArea name="r" toName="p"/></View>', "run_id"),
        ('<View><Text name="p" value="$p"/><TextArea name="r" toName="p">', "not valid XML"),
        ("not xml at all", "not valid XML"),
        ("", "empty"),
        ("   \n", "empty"),
    ],
)
def test_unusable_configs_say_why(config: str, reason: str) -> None:
    with pytest.raises(LabelConfigError, match=re.escape(reason)):
        task_layout(config)


def test_label_config_error_is_a_value_error() -> None:
    with pytest.raises(ValueError, match="TextArea"):
        task_layout("<View/>")
