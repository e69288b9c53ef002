"""Refuse label configs from events that would run script in reviewers' browsers or attack our parser.

A ``target.project_config`` comes from whoever can write to the input topic, and a project created
from it is opened by every reviewer. Label Studio renders parts of a config as HTML (``HyperText``,
``Style``, ``style`` attributes), so a config is untrusted markup. This module checks one before any
project is created from it (see docs/SECURITY.md); configs of existing projects were written by
people in Label Studio and are not checked.

The rules, each refused with a sentence that names the tag or attribute:

- no ``<!DOCTYPE``/``<!ENTITY`` declarations (entity expansion, external entities) and no
  processing instructions: Label Studio configs never need them;
- no element that loads or runs code: ``script``, ``iframe``, ``object``, ``embed``, ... (any case);
- no event-handler attribute (``on*``) and no ``srcdoc``; no attribute value with a ``javascript:``,
  ``vbscript:`` or non-image ``data:`` URL (entities and whitespace decoded first, as browsers do);
- ``Style`` blocks and ``style`` attributes stay allowed (the reference prompt config has one), but
  not CSS that runs or fetches code: ``expression(``, ``javascript:``, ``@import``, ``behavior:``,
  ``-moz-binding``, or a ``<`` that could close the block;
- ``HyperText`` with inline HTML is held to the same rules as the config, and a ``HyperText`` that
  shows task data (``value="$..."``) is refused: task data is run text from end users of the LLM app,
  which would be rendered as live HTML in a reviewer's browser. Use ``Text`` or ``Paragraphs``.
"""

from __future__ import annotations

import html
import re
from collections.abc import Iterator

from lxml import etree
from lxml import html as lxml_html

from labelstudio_ingest.consumer.labelconfig import LabelConfigError, normalize_config

MAX_PROBLEMS = 5
"""Problems named in one error message at most (the first ones in document order)."""

FORBIDDEN_ELEMENTS = frozenset(
    {
        "script",
        "iframe",
        "frame",
        "frameset",
        "object",
        "embed",
        "applet",
        "link",
        "meta",
        "base",
        "form",
        "svg",
        "math",
        "template",
        "portal",
        "noscript",
    }
)
"""Elements (compared in lower case) that load or run code in a page; none is a Label Studio tag."""

HTML_OBJECT_TAGS = frozenset({"hypertext"})
"""Label Studio object tags that render their value as HTML."""

_DECLARATION = re.compile(r"<!\s*(DOCTYPE|ENTITY|ELEMENT|ATTLIST)", re.IGNORECASE)
_SCRIPT_SCHEME = re.compile(r"(java|vb)script:", re.IGNORECASE)
_DATA_URL = re.compile(r"data:(?!image/(png|gif|jpe?g|webp|bmp)[;,])", re.IGNORECASE)
_CSS_CODE = re.compile(r"expression\s*\(|javascript:|@import|behavior\s*:|-moz-binding|<", re.IGNORECASE)
_INVISIBLE = re.compile(r"[\x00-\x20\x7f-\x9f\u200b-\u200f\u2028\u2029\ufeff]+")
_HANDLER_ATTRIBUTE = re.compile(r"^on", re.IGNORECASE)


class UnsafeLabelConfigError(LabelConfigError):
    """A label config from an event that could run script in the labelling page, or attack a parser."""


def check_config_safety(config_xml: str) -> None:
    """Raise :class:`UnsafeLabelConfigError` unless ``config_xml`` is safe to create a project with.

    Only safety is checked here; whether the config can receive runs is
    :func:`~labelstudio_ingest.consumer.labelconfig.task_layout`'s job (call this first: it parses
    with entity resolution and network access off, before anything else touches the text).
    """
    problems = config_problems(config_xml)
    if problems:
        shown = "; ".join(problems[:MAX_PROBLEMS])
        more = f" (and {len(problems) - MAX_PROBLEMS} more)" if len(problems) > MAX_PROBLEMS else ""
        raise UnsafeLabelConfigError(f"the label config is refused: {shown}{more}")


def config_problems(config_xml: str) -> list[str]:
    """Every safety problem of a label config, each a sentence (empty when it is safe)."""
    text = normalize_config(config_xml)
    if _DECLARATION.search(text):
        return ["it declares a DTD or entities (<!DOCTYPE/<!ENTITY), which label configs never need"]
    parser = etree.XMLParser(
        resolve_entities=False, no_network=True, load_dtd=False, huge_tree=False, remove_comments=True
    )
    try:
        root = etree.fromstring(text.encode(), parser)
    except etree.XMLSyntaxError as exc:
        return [f"it is not well-formed XML ({exc})"]
    return list(_element_problems(root, html_context=False))


def _element_problems(root: etree._Element, *, html_context: bool) -> Iterator[str]:
    for element in root.iter():
        if isinstance(element, etree._ProcessingInstruction):
            target: object = element.target
            yield f"processing instruction <?{target}?> is not allowed"
            continue
        if isinstance(element, etree._Comment | etree._Entity):
            continue
        tag = etree.QName(element).localname
        where = f"<{tag}>"
        if tag.lower() in FORBIDDEN_ELEMENTS:
            yield f"element {where} can run or load code in the labelling page"
            continue
        yield from _attribute_problems(where, element)
        css_code = _CSS_CODE.search(element.text or "") if tag.lower() == "style" else None
        if css_code:
            yield f"{where} block has CSS that can run or fetch code ({css_code[0]!r})"
        if not html_context and tag.lower() in HTML_OBJECT_TAGS:
            yield from _hypertext_problems(where, element)


def _attribute_problems(where: str, element: etree._Element) -> Iterator[str]:
    for raw_name, raw_value in element.attrib.items():
        name, value = str(raw_name), str(raw_value)
        decoded = _INVISIBLE.sub("", html.unescape(value))
        if _HANDLER_ATTRIBUTE.match(name):
            yield f"{where} has event handler attribute {name!r}"
        elif name.lower() == "srcdoc":
            yield f"{where} has attribute 'srcdoc', which embeds a page"
        elif _SCRIPT_SCHEME.search(decoded) or _DATA_URL.match(decoded):
            yield f"{where} attribute {name!r} holds a script or data URL"
        elif name.lower() == "style" and _CSS_CODE.search(decoded):
            yield f"{where} attribute 'style' has CSS that can run or fetch code"


def _hypertext_problems(where: str, element: etree._Element) -> Iterator[str]:
    """``HyperText`` renders HTML: its inline HTML is checked, and run text may not reach it."""
    value = element.get("value", "")
    if value.strip().startswith("$"):
        yield (
            f"{where} shows task data {value.strip()!r} as HTML; run text comes from end users and would "
            "run as HTML in reviewers' browsers (use Text or Paragraphs)"
        )
        return
    inline = value + "".join(str(child) for child in element.itertext())
    if not inline.strip():
        return
    try:
        fragments = lxml_html.fragments_fromstring(inline)
    except (etree.ParserError, etree.XMLSyntaxError):
        return  # no markup at all: plain text
    for fragment in fragments:
        if isinstance(fragment, etree._Element):
            for problem in _element_problems(fragment, html_context=True):
                yield f"{where} inline HTML: {problem}"
