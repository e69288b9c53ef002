"""Check CSS from event label configs (``<Style>`` blocks, ``style`` attributes) against an allowlist.

Label Studio puts a ``<Style>`` block's text into a ``<style>`` element of the labelling page and
turns ``style`` attributes into inline styles, so CSS from an event reaches every reviewer's
browser. CSS cannot run script in current browsers, but it can fetch (``url(``, ``@import``,
``image-set(``), draw over Label Studio's own controls (``position: fixed``) or write text
(``content:``). The CSS is parsed by a real tokenizer (tinycss2) and allowed only when every rule
is a plain selector with declarations whose property is on :data:`ALLOWED_PROPERTIES` and whose
value is made of keywords, numbers, lengths, colours, strings and the functions in
:data:`ALLOWED_FUNCTIONS`. At-rules, ``url(``, escapes (``\\``) and anything else are refused.
See docs/SECURITY.md.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

import tinycss2  # type: ignore[import-untyped]  # no type hints shipped
from tinycss2 import ast

ALLOWED_PROPERTIES = frozenset(
    {
        # colours and backgrounds (the value check refuses url(), so no images)
        "color",
        "background",
        "background-color",
        "opacity",
        # boxes
        "border",
        "border-top",
        "border-right",
        "border-bottom",
        "border-left",
        "border-color",
        "border-style",
        "border-width",
        "border-radius",
        "box-shadow",
        "box-sizing",
        "outline",
        "margin",
        "margin-top",
        "margin-right",
        "margin-bottom",
        "margin-left",
        "padding",
        "padding-top",
        "padding-right",
        "padding-bottom",
        "padding-left",
        "width",
        "height",
        "min-width",
        "min-height",
        "max-width",
        "max-height",
        # layout
        "display",
        "flex",
        "flex-basis",
        "flex-direction",
        "flex-grow",
        "flex-shrink",
        "flex-wrap",
        "order",
        "gap",
        "row-gap",
        "column-gap",
        "align-items",
        "align-self",
        "align-content",
        "justify-content",
        "justify-items",
        "justify-self",
        "grid-template-columns",
        "grid-template-rows",
        "grid-column",
        "grid-row",
        "float",
        "clear",
        "overflow",
        "overflow-x",
        "overflow-y",
        "position",
        "top",
        "right",
        "bottom",
        "left",
        "vertical-align",
        "visibility",
        # text
        "font",
        "font-family",
        "font-size",
        "font-style",
        "font-weight",
        "line-height",
        "letter-spacing",
        "text-align",
        "text-decoration",
        "text-shadow",
        "text-transform",
        "white-space",
        "word-break",
        "word-wrap",
        "overflow-wrap",
        # interaction
        "cursor",
        "transition",
    }
)
"""CSS properties an event's config may set (plus custom properties ``--name``, whose values are
checked like every other value, so ``var()`` can only ever bring in checked values)."""

ALLOWED_FUNCTIONS = frozenset({"rgb", "rgba", "hsl", "hsla", "var", "calc", "min", "max", "clamp"})
"""Functions allowed in values: colours, theme variables, arithmetic. Not ``url``, ``image-set``,
``expression``, ``attr``, ``element``, ``image``, ``cross-fade``, ``src``, ..."""

ALLOWED_SELECTOR_FUNCTIONS = frozenset(
    {"not", "is", "where", "has", "nth-child", "nth-of-type", "nth-last-child"}
)
"""Functional pseudo-classes allowed in selectors."""

RESTRICTED_VALUES = {"position": frozenset({"static", "relative", "sticky"})}
"""Properties whose value must be one of a few keywords (``fixed``/``absolute`` can cover Label
Studio's own controls with a look-alike)."""

MAX_NESTING = 8
"""Brackets and functions nested in one value or selector at most (``calc(var(--x, ...))``)."""

_VALUE_TOKENS = (
    ast.WhitespaceToken,
    ast.IdentToken,
    ast.NumberToken,
    ast.PercentageToken,
    ast.DimensionToken,
    ast.HashToken,
    ast.StringToken,
)
_VALUE_LITERALS = frozenset({",", "/", "+", "-", "*"})
_SELECTOR_TOKENS = (
    ast.StringToken,
    ast.WhitespaceToken,
    ast.IdentToken,
    ast.HashToken,
    ast.NumberToken,
    ast.DimensionToken,
)
_SELECTOR_LITERALS = frozenset({".", ",", ">", "+", "~", "*", ":", "="})


def stylesheet_problems(css: str) -> list[str]:
    """What is wrong with a ``<Style>`` block's CSS (empty when it is allowed)."""
    if "\\" in css:
        return ["CSS escapes ('\\') are not allowed"]
    problems: list[str] = []
    for rule in tinycss2.parse_stylesheet(css, skip_comments=True, skip_whitespace=True):
        if isinstance(rule, ast.ParseError):
            problems.append(f"CSS does not parse ({rule.message})")
        elif isinstance(rule, ast.AtRule):
            problems.append(f"CSS at-rule '@{rule.at_keyword}' is not allowed")
        elif isinstance(rule, ast.QualifiedRule):
            problems.extend(_selector_problems(rule.prelude))
            problems.extend(_declarations_problems(rule.content))
    return problems


def declarations_problems(css: str) -> list[str]:
    """What is wrong with a ``style`` attribute's declarations (empty when they are allowed).

    Label Studio does not parse these as CSS: it splits them at every ``;`` and each part at its
    first ``:`` (``cssConverter`` in its front end), even inside strings, so
    ``font-family: 'a;background:url(x)'`` sets ``background``. Both readings must pass.
    """
    if "\\" in css:
        return ["CSS escapes ('\\') are not allowed"]
    problems = list(_declarations_problems(tinycss2.parse_component_value_list(css, skip_comments=True)))
    for part in css.split(";"):
        name, colon, value = part.partition(":")
        if problems or not (colon and name.replace(" ", "")):
            continue  # one reading is refused already: the attribute is
        tokens = tinycss2.parse_component_value_list(f"{name.replace(' ', '')}: {value}", skip_comments=True)
        problems.extend(_declarations_problems(tokens))
    return problems


def _declarations_problems(content: list[Any] | None) -> Iterator[str]:
    for item in tinycss2.parse_blocks_contents(content or [], skip_comments=True, skip_whitespace=True):
        if isinstance(item, ast.ParseError):
            yield f"CSS does not parse ({item.message})"
        elif isinstance(item, ast.AtRule):
            yield f"CSS at-rule '@{item.at_keyword}' is not allowed"
        elif isinstance(item, ast.QualifiedRule):
            yield "nested CSS rules are not allowed"
        elif isinstance(item, ast.Declaration):
            yield from _declaration_problems(item)


def _declaration_problems(declaration: ast.Declaration) -> Iterator[str]:
    name = declaration.lower_name
    if not name.startswith("--") and name not in ALLOWED_PROPERTIES:
        yield f"CSS property {declaration.name!r} is not allowed"
        return
    restricted = RESTRICTED_VALUES.get(name)
    if restricted is not None:
        words = [t for t in declaration.value if not isinstance(t, ast.WhitespaceToken)]
        if (
            len(words) != 1
            or not isinstance(words[0], ast.IdentToken)
            or words[0].lower_value not in restricted
        ):
            yield f"CSS property {declaration.name!r} may only be {', '.join(sorted(restricted))}"
            return
    yield from _value_problems(declaration.name, declaration.value)


def _value_problems(prop: str, tokens: Iterable[Any], depth: int = 0) -> Iterator[str]:
    if depth > MAX_NESTING:
        yield f"CSS value of {prop!r} is nested more than {MAX_NESTING} deep"
        return
    for token in tokens:
        if isinstance(token, ast.FunctionBlock):
            if token.lower_name not in ALLOWED_FUNCTIONS:
                yield f"CSS function '{token.name}(' in {prop!r} is not allowed"
            else:
                yield from _value_problems(prop, token.arguments, depth + 1)
        elif isinstance(token, ast.ParenthesesBlock):
            yield from _value_problems(prop, token.content, depth + 1)
        elif isinstance(token, ast.URLToken):
            yield f"CSS 'url(' in {prop!r} is not allowed"
        elif isinstance(token, ast.LiteralToken) and token.value in _VALUE_LITERALS:
            continue
        elif not isinstance(token, _VALUE_TOKENS):
            yield f"CSS value {token.serialize()!r} in {prop!r} is not allowed"


def _selector_problems(prelude: Iterable[Any], depth: int = 0) -> Iterator[str]:
    if depth > MAX_NESTING:
        yield f"CSS selector is nested more than {MAX_NESTING} deep"
        return
    for token in prelude:
        if isinstance(token, ast.FunctionBlock):
            if token.lower_name not in ALLOWED_SELECTOR_FUNCTIONS:
                yield f"CSS selector function ':{token.name}(' is not allowed"
            else:
                yield from _selector_problems(token.arguments, depth + 1)
        elif isinstance(token, ast.SquareBracketsBlock):
            yield from _selector_problems(token.content, depth + 1)
        elif not _plain_selector_token(token):
            yield f"CSS selector part {token.serialize()!r} is not allowed"


def _plain_selector_token(token: Any) -> bool:
    if isinstance(token, ast.LiteralToken):
        return token.value in _SELECTOR_LITERALS
    return isinstance(token, _SELECTOR_TOKENS)
