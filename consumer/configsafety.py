"""Refuse label configs from events unless every tag and attribute is on an allowlist.

A ``target.project_config`` comes from whoever can write to the input topic, and a project created
from it is opened by every reviewer. Label Studio renders parts of a config as HTML (``HyperText``,
``html`` attributes of ``Choice``/``Label``), loads URLs (``Image``, ``valueType="url"``, CSS
``url(``) and puts ``<Style>`` text into the page. So a config is untrusted markup, checked here
before any project is created from it (see docs/SECURITY.md); configs of existing projects were
written by people in Label Studio and are not checked.

The rule: the config parses as plain XML (no DTD or entities, no CDATA, no processing
instructions, no namespaces), every tag and attribute is on
:data:`~labelstudio_ingest.consumer.configallowlist.ALLOWED_TAGS` (names compared
case-insensitively, as Label Studio does) and every attribute value passes its tag's rule, text
sits only where Label Studio shows it as text, and ``<Style>`` holds only CSS that passes
:mod:`~labelstudio_ingest.consumer.configcss`. Each problem is a sentence naming the tag and
attribute.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

from lxml import etree

from labelstudio_ingest.consumer.configallowlist import (
    REFUSED_ATTRIBUTE_REASONS,
    REFUSED_TAG_REASONS,
    TEXT_CONTENT,
    tag_rules,
)
from labelstudio_ingest.consumer.configcss import stylesheet_problems
from labelstudio_ingest.consumer.labelconfig import LabelConfigError, normalize_config

MAX_PROBLEMS = 5
"""Problems named in one error message at most (the first ones in document order)."""

_DECLARATION = re.compile(r"<!\s*(DOCTYPE|ENTITY|ELEMENT|ATTLIST)", re.IGNORECASE)
_CDATA = re.compile(r"<!\[CDATA\[", re.IGNORECASE)
_STYLE_COMMENT = re.compile(r"[\w\s.,!?-]*")
"""What a comment inside ``<Style>`` may hold: Label Studio passes it into the page's CSS, where
``<!--`` and ``-->`` are inert but the words between them are CSS (a hidden rule, a ``url(``, or a
quote that moves string boundaries so that text we saw inside a string is outside it there)."""


class UnsafeLabelConfigError(LabelConfigError):
    """A label config from an event with a tag, attribute or value that is not on the allowlist."""


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
    if _CDATA.search(text):
        return ["it has a CDATA section (<![CDATA[), which label configs never need"]
    parser = etree.XMLParser(
        resolve_entities=False,
        no_network=True,
        load_dtd=False,
        huge_tree=False,
        remove_comments=False,
        remove_pis=False,
        strip_cdata=False,
    )
    try:
        root = etree.fromstring(text.encode(), parser)
    except (etree.XMLSyntaxError, ValueError) as exc:
        return [f"it is not well-formed XML ({exc})"]
    problems = [
        _instruction_problem(node)
        for node in (*root.itersiblings(preceding=True), *root.itersiblings())
        if isinstance(node, etree._ProcessingInstruction)
    ]
    problems.extend(_node_problems(root))
    return problems


def _node_problems(node: etree._Element) -> Iterator[str]:
    if isinstance(node, etree._ProcessingInstruction):
        yield _instruction_problem(node)
        return
    if isinstance(node, etree._Entity):
        yield f"entity reference {node.text} is not allowed"
        return
    if isinstance(node, etree._Comment):
        return
    qname = etree.QName(node)
    if qname.namespace or node.prefix or node.nsmap:
        prefix = f"{node.prefix}:" if node.prefix else ""
        yield f"tag <{prefix}{qname.localname}> uses or declares an XML namespace (configs never need one)"
        return
    tag = qname.localname
    rules = tag_rules(tag)
    if rules is None:
        reason = REFUSED_TAG_REASONS.get(tag.lower(), "is not on the allowlist")
        yield f"tag <{tag}> is not allowed ({reason})"
        return
    documented, attributes = rules
    for raw_name, raw_value in node.attrib.items():
        name, value = str(raw_name), str(raw_value)
        rule = attributes.get(name.lower())
        if rule is None:
            why = (
                "an event handler"
                if name.lower().startswith("on")
                else REFUSED_ATTRIBUTE_REASONS.get(name.lower())
            )
            yield f"<{tag}> attribute {name!r} is not allowed ({why or 'not on the allowlist'})"
            continue
        problem = rule.check(value)
        if problem:
            yield f"<{tag}> attribute {name!r} {problem}, not {_shorten(value)!r}"
    if documented == "Style":
        yield from _style_problems(node)
    else:
        yield from _text_problems(documented, node)
    for child in node:
        yield from _node_problems(child)


def _text_problems(tag: str, node: etree._Element) -> Iterator[str]:
    """Text may sit only in tags that show it as text, and only when they hold no other tag."""
    texts = [node.text or "", *(child.tail or "" for child in node)]
    content = "".join(texts)
    if not content.strip():
        return
    rule = TEXT_CONTENT.get(tag)
    if rule is None or any(isinstance(child.tag, str) for child in node):
        yield f"<{tag}> may not hold text ({_shorten(content.strip())!r})"
        return
    problem = rule.check(content)
    if problem:
        yield f"<{tag}> text {problem}"


def _style_problems(node: etree._Element) -> Iterator[str]:
    """A ``<Style>`` holds CSS text only; comments in it hold words only; the CSS is allowlisted."""
    for child in node:
        if isinstance(child, etree._Comment):
            if not _STYLE_COMMENT.fullmatch(child.text or ""):
                yield "<Style> comment may hold only words (Label Studio passes it into the page's CSS)"
        elif isinstance(child.tag, str):
            yield f"<Style> may hold only CSS, not a tag <{etree.QName(child).localname}>"
    css = (node.text or "") + "".join(child.tail or "" for child in node)
    yield from (f"<Style> {problem}" for problem in stylesheet_problems(css))


def _instruction_problem(node: etree._ProcessingInstruction) -> str:
    target: object = node.target
    return f"processing instruction <?{target}?> is not allowed"


def _shorten(value: str, limit: int = 60) -> str:
    return value if len(value) <= limit else value[: limit - 1] + "…"
