"""Label configs from events: only allowlisted tags, attributes, values and CSS pass; attacks are named."""

from __future__ import annotations

import re
from pathlib import Path
from xml.sax.saxutils import quoteattr

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from labelstudio_ingest.consumer.configallowlist import ALLOWED_TAGS, markdown_table
from labelstudio_ingest.consumer.configsafety import (
    UnsafeLabelConfigError,
    check_config_safety,
    config_problems,
)
from labelstudio_ingest.consumer.labelconfig import LabelConfigError, default_config
from tests.label_configs import (
    CALLING_OUT_TEMPLATES,
    CUSTOM_CONFIG,
    HARMLESS_TEMPLATES,
    STYLED_CUSTOM_CONFIG,
    label_studio_template,
)

BODY = '<Text name="prompt" value="$prompt"/><TextArea name="response" toName="prompt"/>'
SECURITY_DOC = Path(__file__).parents[2] / "docs" / "SECURITY.md"


def _view(extra: str, *, attrs: str = "") -> str:
    return f"<View{attrs}>{BODY}{extra}</View>"


def _style(css: str) -> str:
    return _view(f"<Style>{css}</Style>")


HARMLESS = [
    pytest.param(default_config("prompt"), id="default-prompt-with-style"),
    pytest.param(default_config("chat"), id="default-chat"),
    pytest.param(CUSTOM_CONFIG, id="documented-custom"),
    pytest.param(STYLED_CUSTOM_CONFIG, id="custom-with-plain-style"),
    *(pytest.param(label_studio_template(name), id=f"ls-{name}") for name in HARMLESS_TEMPLATES),
    pytest.param('<?xml version="1.0" encoding="utf-8"?>' + _view(""), id="xml-declaration"),
    pytest.param(_view("<!-- a comment <b>not a tag</b> -->"), id="comment-outside-style"),
    pytest.param(_view('<Header value="Metadata: see the data: section"/>'), id="words-like-data-url"),
    pytest.param(_view('<Header value="Q: $prompt"/>'), id="header-template-shown-as-text"),
    pytest.param(_view("<Header>Rate the answer &amp; explain</Header>"), id="header-text-content"),
    pytest.param(_view('<View style="display: flex; color: #333"/>'), id="view-style-layout"),
    pytest.param(_view("<View style=\"font-family: 'Roboto', sans-serif; margin: 0\"/>"), id="style-string"),
    pytest.param(
        _view('<View style="padding: var(--spacing-tight); width: calc(50% - 1em)"/>'), id="var-calc"
    ),
    pytest.param(_style(".a { color: red !important; background: rgba(0, 0, 0, 0.1) }"), id="important-rgba"),
    pytest.param(_style("/* a css comment */ .a > .b:hover, p:not(.x) { margin: 0 auto }"), id="selectors"),
    pytest.param(_style(".a[data-x='y'] { font-family: 'Roboto', sans-serif }"), id="attribute-selector"),
    pytest.param(
        _style(".a { position: sticky; top: 0 } <!-- plain words, here -->"), id="style-word-comment"
    ),
    pytest.param(_style(".htx-chat { --excess-height: 275px; }"), id="custom-property"),
    pytest.param(
        _view('<Choices name="c" toName="prompt" showInLine="true"><Choice value="a" hint="x"/></Choices>'),
        id="attribute-name-case",
    ),
    pytest.param(
        _view('<Labels name="l" toName="prompt"><Label value="Fact" background="#36B37E"/></Labels>'),
        id="labels-colour",
    ),
    pytest.param(
        '<View><Paragraphs name="d" value="$prompt" layout="dialogue" nameKey="speaker" textKey="said"/>'
        '<TextArea name="response" toName="d"/></View>',
        id="paragraphs-keys",
    ),
]


@pytest.mark.parametrize("config", HARMLESS)
def test_harmless_configs_pass(config: str) -> None:
    assert config_problems(config) == []
    check_config_safety(config)


def _ht(attrs: str, inner: str = "") -> str:
    return _view(f"<HyperText {attrs}>{inner}</HyperText>" if inner else f"<HyperText {attrs}/>")


ATTACKS = [
    # HyperText in every form: it renders HTML
    (_ht('name="h" value="$prompt"'), "<HyperText>"),
    (_ht('name="h" value="Q: $prompt"'), "<HyperText>"),
    (_ht('name="h" value="&lt;b&gt;Rate&lt;/b&gt; it"'), "<HyperText>"),
    (_ht('name="h"', "<p>static</p>"), "<HyperText>"),
    (_ht('name="h" value="$prompt" inline="true"'), "<HyperText>"),
    (_view('<hypertext name="h" value="$prompt"/>'), "<hypertext>"),
    (_view('<HYPERTEXT name="h" value="$prompt"/>'), "<HYPERTEXT>"),
    (
        _view('<HyperTextLabels name="l" toName="prompt"><Label value="x"/></HyperTextLabels>'),
        "<HyperTextLabels>",
    ),
    (_view('<Markdown name="m" value="$prompt"/>'), "<Markdown>"),
    # html attributes on the tags that render them (every other tag: test below)
    (
        _view(
            '<Choices name="c" toName="prompt">'
            '<Choice value="a" html="&lt;img src=x onerror=alert(1)&gt;"/></Choices>'
        ),
        "'html'",
    ),
    (
        _view('<Choices name="c" toName="prompt"><Choice value="a" HTML="&lt;b&gt;x&lt;/b&gt;"/></Choices>'),
        "'HTML'",
    ),
    (
        _view('<Labels name="l" toName="prompt"><Label value="a" html="&lt;img src=//evil&gt;"/></Labels>'),
        "'html'",
    ),
    # task data that Label Studio would render as HTML
    (_view('<Choices name="c" toName="prompt" value="$prompt"/>'), "<Choices> attribute 'value'"),
    (_view('<Labels name="l" toName="prompt" value="$prompt"/>'), "<Labels> attribute 'value'"),
    (
        '<View><Paragraphs name="d" value="$prompt" textKey="html"/><TextArea name="r" toName="d"/></View>',
        "'textKey'",
    ),
    # URLs: loading data from outside or from task data
    (_view('<Text name="u" value="$prompt" valueType="url"/>'), "'valueType'"),
    (_view('<Text name="u" value="$prompt" valueType="URL"/>'), "'valueType'"),
    (_view('<Paragraphs name="p" value="$prompt" valueType="url"/>'), "'valueType'"),
    (_view('<Paragraphs name="p" value="$prompt" audioUrl="https://evil.example/a.mp3"/>'), "'audioUrl'"),
    (_view('<Text name="u" value="$prompt" resolver="csv"/>'), "'resolver'"),
    (_view('<Text name="u" value="$prompt" clickableLinks="true"/>'), "'clickableLinks'"),
    (_view('<Image name="i" value="https://evil.example/pixel.png"/>'), "<Image>"),
    (_view('<Image name="i" value="$prompt"/>'), "<Image>"),
    (_view('<Audio name="a" value="https://evil.example/a.mp3"/>'), "<Audio>"),
    (_view('<Audio name="a" value="$prompt"/>'), "<Audio>"),
    (_view('<Video name="v" value="https://evil.example/v.mp4"/>'), "<Video>"),
    (_view('<Video name="v" value="$prompt"/>'), "<Video>"),
    (_view('<Pdf name="p" value="$prompt"/>'), "<Pdf>"),
    (_view('<Table name="t" value="$prompt"/>'), "<Table>"),
    (_view('<List name="l" value="https://evil.example/items.json"/>'), "<List> attribute 'value'"),
    (_view('<Chat name="c" value="$prompt" llm="openai/gpt-4.1-nano"/>'), "'llm'"),
    # style attributes
    (_view("", attrs=' style="background: url(https://evil.example/x)"'), "'url('"),
    (_view("", attrs=' style="background: url(data:image/png;base64,AAAA)"'), "'url('"),
    (_view('<View style="width: expression(alert(1))"/>'), "'expression('"),
    (
        _view("<View style=\"background-image: image-set('https://evil.example/x' 1x)\"/>"),
        "'background-image'",
    ),
    (_view("<View style=\"background: image-set('https://evil.example/x' 1x)\"/>"), "'image-set('"),
    (_view('<View style="behavior: url(x.htc)"/>'), "'behavior'"),
    (_view('<View style="-moz-binding: url(x.xml#x)"/>'), "'-moz-binding'"),
    (_view('<View style="background: u\\72l(https://evil.example/x)"/>'), "escapes"),
    (_view('<View style="position: fixed; top: 0; left: 0; width: 100%"/>'), "'position'"),
    # Label Studio splits style attributes at every ';', also inside strings (a string that tinycss2
    # reads whole); the part before the ';' then holds an unterminated string, refused on its own
    (
        _view("<View style=\"font-family: 'a;background:url(//evil.example);b'\"/>"),
        "<View> attribute 'style'",
    ),
    (_view('<Header value="x" style="background: url(//evil.example)"/>'), "<Header> attribute 'style'"),
    (
        _view('<Choices name="c" toName="prompt"><Choice value="a" style="background: url(//e)"/></Choices>'),
        "'style'",
    ),
    (
        _view('<Pairwise name="p" toName="prompt" selectionStyle="background: url(//evil.example)"/>'),
        "'selectionStyle'",
    ),
    (
        _view(
            '<Labels name="l" toName="prompt"><Label value="a" aliasStyle="background: url(//e)"/></Labels>'
        ),
        "'aliasStyle'",
    ),
    # <Style>: every way to fetch, import or run, plain and escaped
    (_style("@import url(https://evil.example/x.css);"), "'@import'"),
    (_style('@import "https://evil.example/x.css";'), "'@import'"),
    (_style("@IMPORT 'https://evil.example/x.css';"), "'@IMPORT'"),
    (_style("@\\69mport url(https://evil.example/x.css);"), "escapes"),
    (_style("@im\\port url(https://evil.example/x.css);"), "escapes"),
    (_style("@&#x69;mport url(https://evil.example/x.css);"), "'@import'"),
    (_style("@im/**/port url(https://evil.example/x.css);"), "'@im'"),
    (_style("@font-face { font-family: x; src: url(https://evil.example/f.woff) }"), "'@font-face'"),
    (_style("@media all { .a { background: url(https://evil.example/x) } }"), "'@media'"),
    (_style(".a { background: url(https://evil.example/x) }"), "'url('"),
    (_style(".a { background: URL(https://evil.example/x) }"), "'url('"),
    (_style('.a { background: url("https://evil.example/x") }'), "'url('"),
    (_style(".a { background: u\\72l(https://evil.example/x) }"), "escapes"),
    (_style(".a { background: \\75rl(https://evil.example/x) }"), "escapes"),
    (_style(".a { background: u&#x72;l(https://evil.example/x) }"), "'url('"),
    (_style(".a { background: u&#92;72l(https://evil.example/x) }"), "escapes"),
    (_style(".a { background: u/**/rl(https://evil.example/x) }"), "'rl('"),
    (_style(".a { background: url(javascript:alert(1)) }"), "url("),
    (_style(".a { --x: url(https://evil.example/x) } .b { background: var(--x) }"), "'url('"),
    (_style(".a { background: var(--x, url(https://evil.example/x)) }"), "'url('"),
    (_style(".a { width: expression(alert(1)) }"), "'expression('"),
    (_style(".a { width: expr/**/ession(alert(1)) }"), "'ession('"),
    (_style(".a { width: expr\\65ssion(alert(1)) }"), "escapes"),
    (_style(".a { behavior: url(x.htc) }"), "'behavior'"),
    (_style(".a { -moz-binding: url(x.xml#x) }"), "'-moz-binding'"),
    (_style(".a::before { content: 'Session expired: log in at evil.example' }"), "'content'"),
    (_style(".a { position: absolute }"), "'position'"),
    (_style(".a { color: red } <!-- .b { background: url(//evil.example) } -->"), "<Style> comment"),
    (_style(".a { font-family: <!-- it's -->'x url(//evil.example) y' }"), "<Style> comment"),
    (_style(".a { color: red } <b/> @import url(https://evil.example/x.css);"), "<Style> may hold only CSS"),
    (_style(".a { color: red } <b/> @import url(https://evil.example/x.css);"), "'@import'"),
    (_style(".a { color: red } <?x y?> .b { background: url(//evil.example) }"), "processing instruction"),
    (_style("&lt;/style&gt;&lt;script&gt;alert(1)&lt;/script&gt;"), "<Style> CSS"),
    (_style(".a { color: red; } } .b { background: url(//evil.example) }"), "'url('"),
    (_style(".a { .b { background: url(//evil.example) } }"), "<Style>"),
    (_style(".a { width: " + "calc(" * 5000 + "1px" + ")" * 5000 + " }"), "nested more than"),
    (_style(":is(" * 5000 + ".a" + ")" * 5000 + " { color: red }"), "nested more than"),
    # entities, CDATA and other XML tricks
    ('<!DOCTYPE View [<!ENTITY e SYSTEM "file:///etc/passwd">]>' + _view('<Header value="&e;"/>'), "DTD"),
    (
        '<!DOCTYPE v [<!ENTITY a "aaaaaaaaaa"><!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;">]>'
        + _view('<Header value="&b;&b;"/>'),
        "DTD",
    ),
    (_view('<Header value="&e;"/>'), "not well-formed"),
    (_style("<![CDATA[ .a { background: url(//evil.example) } ]]>"), "CDATA"),
    (_style("<![CDATA[</Style><script>alert(1)</script>]]>"), "CDATA"),
    (_view("<Header><![CDATA[<img src=x onerror=alert(1)>]]></Header>"), "CDATA"),
    (_view('<x:HyperText xmlns:x="urn:x" name="h" value="$prompt"/>'), "<x:HyperText>"),
    (_view('<h:script xmlns:h="http://www.w3.org/1999/xhtml">alert(1)</h:script>'), "<h:script>"),
    (_view("", attrs=' xmlns="http://www.w3.org/1999/xhtml"'), "namespace"),
    (_view('<View xmlns:xl="http://www.w3.org/1999/xlink" xl:href="javascript:alert(1)"/>'), "namespace"),
    (_view("<?php echo 1; ?>"), "processing instruction"),
    ("<?xml-stylesheet href='https://evil.example/x.xsl'?>" + _view(""), "processing instruction"),
    ("<View><Text", "not well-formed"),
    # script and HTML elements
    (_view("<script>alert(1)</script>"), "<script>"),
    (_view("<Script>alert(1)</Script>"), "<Script>"),
    (_view('<iframe src="https://evil.example"/>'), "<iframe>"),
    (_view('<embed src="x.swf"/>'), "<embed>"),
    (_view('<svg><circle onload="alert(1)"/></svg>'), "<svg>"),
    (_view('<img src="x" onerror="alert(1)"/>'), "<img>"),
    (_view('<a href="javascript:alert(1)">x</a>'), "<a>"),
    (_view('<Repeater on="$prompt"><Text name="t{{idx}}" value="$prompt"/></Repeater>'), "<Repeater>"),
    (_view('<CustomInterface name="c"/>'), "<CustomInterface>"),
    # event handlers and script URLs in values
    (_view('<Header value="hi" onclick="alert(1)"/>'), "'onclick'"),
    (_view('<View ONMOUSEOVER="alert(1)"/>'), "'ONMOUSEOVER'"),
    (_view('<Header value="x" onerror="fetch(`//evil`)"/>'), "'onerror'"),
    (_view('<View srcdoc="&lt;script&gt;"/>'), "'srcdoc'"),
    (_view('<View idAttr="root"/>'), "'idAttr'"),
    (
        _view('<Choices name="c" toName="prompt"><Choice value="javascript:alert(1)"/></Choices>'),
        "javascript:",
    ),
    (_view('<Header value="  JaVa&#x09;ScRiPt:alert(1)"/>'), "javascript:"),
    (_view('<Header value="java&#10;script:alert(1)"/>'), "javascript:"),
    (_view('<Header value="data:text/html;base64,PHNjcmlwdD4="/>'), "data:"),
    (_view('<TextArea name="t2" toName="prompt" placeholder="vbscript:msgbox(1)"/>'), "vbscript:"),
    # values that do not fit their attribute
    (_view('<Text name="x&quot; onload=&quot;alert(1)" value="$prompt"/>'), "<Text> attribute 'name'"),
    (_view('<TextArea name="t2" toName="prompt" rows="4; color: red"/>'), "'rows'"),
    (_view('<View className="a&quot;&gt;&lt;script&gt;"/>'), "'className'"),
    (
        _view(
            '<Labels name="l" toName="prompt">'
            '<Label value="a" background="red;background:url(//e)"/></Labels>'
        ),
        "'background'",
    ),
    # text where Label Studio would use it as markup or a value
    (_view("<View>loose text</View>"), "<View> may not hold text"),
    (_view('<Text name="t" value="$prompt">more text</Text>'), "<Text> may not hold text"),
    (_view("<Header><b>bold</b></Header>"), "<b>"),
]


@pytest.mark.parametrize(("config", "named"), ATTACKS)
def test_attacks_are_refused_naming_the_tag_or_attribute(config: str, named: str) -> None:
    with pytest.raises(UnsafeLabelConfigError, match="the label config is refused") as caught:
        check_config_safety(config)
    assert named in str(caught.value)
    assert isinstance(caught.value, LabelConfigError)  # routed like every other unusable config


@pytest.mark.parametrize("name", CALLING_OUT_TEMPLATES)
def test_label_studio_templates_that_call_a_model_are_refused(name: str) -> None:
    assert config_problems(label_studio_template(name)) == [
        "<Chat> attribute 'llm' is not allowed (makes Label Studio call a model outside)"
    ]


@pytest.mark.parametrize("tag", sorted(ALLOWED_TAGS))
@pytest.mark.parametrize("attribute", ["html", "Html", "onclick", "onLoad", "src", "href", "srcdoc", "xyz"])
def test_no_allowed_tag_takes_html_handlers_or_unknown_attributes(tag: str, attribute: str) -> None:
    config = _view(f'<{tag} {attribute}="&lt;img src=x onerror=alert(1)&gt;"/>')
    assert f"<{tag}> attribute {attribute!r} is not allowed" in "; ".join(config_problems(config))


def test_many_problems_are_summarised() -> None:
    config = _view("".join(f'<Header value="x" onclick="a{i}"/>' for i in range(8)))
    assert len(config_problems(config)) == 8
    with pytest.raises(UnsafeLabelConfigError, match=r"and 3 more"):
        check_config_safety(config)


def test_security_doc_shows_the_allowlist_of_the_code() -> None:
    doc = SECURITY_DOC.read_text(encoding="utf-8")
    block = re.search(
        r"<!-- label-config-allowlist:start -->\n(.*?)\n<!-- label-config-allowlist:end -->", doc, re.S
    )
    assert block is not None, "docs/SECURITY.md lacks the generated allowlist block"
    assert block[1] == markdown_table(), "regenerate: python -m labelstudio_ingest.consumer.configallowlist"


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=300))
def test_any_text_is_answered_not_crashed(text: str) -> None:
    """Whatever arrives as a config, the check answers with a list of sentences."""
    problems = config_problems(text)
    assert all(isinstance(p, str) and p for p in problems)


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=200))
def test_any_css_is_answered_not_crashed(css: str) -> None:
    config = _view(f"<Style>{_xml_text(css)}</Style><View style={quoteattr(_xml_text(css))}/>")
    problems = config_problems(config)
    assert all(isinstance(p, str) and p for p in problems)


@settings(max_examples=200, deadline=None)
@given(
    st.sampled_from(["onclick", "OnLoad", "onerror", "onfocus"]),
    st.text(st.characters(exclude_categories=("Cs", "Cc", "Cn")), max_size=40),  # characters XML allows
)
def test_every_handler_attribute_is_refused(name: str, value: str) -> None:
    config = _view(f"<View {name}={quoteattr(value)}/>")
    assert any(f"{name!r}" in p for p in config_problems(config))


def _xml_text(text: str) -> str:
    allowed = "".join(c for c in text if c in "\t\n\r" or (c >= " " and c not in "\ufffe\uffff"))
    return allowed.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
