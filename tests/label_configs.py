"""Label configs the tests share: the documented custom config and configs a project cannot use."""

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
