"""Label configs the tests share: the documented custom config, Label Studio templates, unusable configs."""

from pathlib import Path

CUSTOM_CONFIG = """<View>
<Text name="prompt" value="$prompt"/>
<TextArea name="response" toName="prompt"/>
<TextArea name="user_feedback" toName="prompt"/>
<Rating name="rating" toName="prompt"/>
<Choices name="sentiment" toName="prompt">
    <Choice value="Positive"/>
    <Choice value="Negative"/>
</Choices>
</View>"""
"""The custom config from the LangChain integration's documentation (two TextAreas, a Rating, Choices)."""

NO_TEXTAREA = '<View><Text name="prompt" value="$prompt"/><Rating name="rating" toName="prompt"/></View>'
"""A config without a TextArea: it cannot receive LLM responses."""

TEMPLATES = Path(__file__).parent / "fixtures" / "label_studio_templates"
"""Label Studio 1.23.2's own templates (``label_studio/annotation_templates``), configs copied verbatim."""

HARMLESS_TEMPLATES = (
    "generative-ai--chatbot-assessment",
    "generative-ai--human-feedback-collection",
    "generative-ai--llm-ranker",
    "generative-ai--response-grading",
    "generative-ai--supervised-llm",
    "chat--chat_eval",
    "chat--chat_rlhf",
    "chat--chatbot",
    "natural-language-processing--text-classification",
    "ranking-and-scoring--pairwise-classification",
    "conversational-ai--response-generation",
    "conversational-ai--response-selection",
)
"""Templates for LLM evaluation, ranking, pairwise (RLHF) comparison, chat review and text
classification: an event may create a project with any of them."""

CALLING_OUT_TEMPLATES = ("chat--chat_llm_eval", "chat--chat_red_team")
"""Templates whose ``<Chat llm="...">`` makes Label Studio call an outside model: refused."""


def label_studio_template(name: str) -> str:
    """The config of one copied Label Studio template."""
    return (TEMPLATES / f"{name}.xml").read_text(encoding="utf-8")


STYLED_CUSTOM_CONFIG = """<View>
<Style>
  .card { background-color: #fafafa; border: 1px solid #ddd; border-radius: 6px; padding: 12px; }
  .row { display: flex; gap: 8px; justify-content: space-between; }
  .card:hover > .row { color: rgb(30, 30, 30); }
</Style>
<View className="card">
  <Header value="Prompt"/>
  <Text name="prompt" value="$prompt"/>
</View>
<View className="row" style="margin-top: 8px; font-size: 14px">
  <TextArea name="response" toName="prompt" editable="true" rows="4"/>
  <Choices name="verdict" toName="prompt" choice="single-radio" showInline="true">
    <Choice value="Good"/>
    <Choice value="Bad"/>
  </Choices>
</View>
</View>"""
"""A custom config with a Style block of plain colours and layout: harmless, an event may use it."""
