"""The tags and attributes an event's label config may use, and what each attribute may hold.

The list covers what labelling configs for text and chat review need: the default prompt and
chat configs, the documented custom config and Label Studio's own templates for LLM evaluation,
ranking, pairwise (RLHF) comparison, chatbot evaluation and text classification. Everything else
is refused by :mod:`~labelstudio_ingest.consumer.configsafety`; tags and attributes that render
HTML, load a URL or call out of Label Studio are left out on purpose and named in
:data:`REFUSED_TAG_REASONS` / :data:`REFUSED_ATTRIBUTE_REASONS` so a refusal can say why.
Label Studio's front end reads tag and attribute names case-insensitively, and so do we.
docs/SECURITY.md shows this list (:func:`markdown_table`; a test keeps the two equal).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

from labelstudio_ingest.consumer.configcss import (
    ALLOWED_FUNCTIONS,
    ALLOWED_PROPERTIES,
    ALLOWED_SELECTOR_FUNCTIONS,
    RESTRICTED_VALUES,
    declarations_problems,
)


@dataclass(frozen=True, slots=True)
class ValueRule:
    """What one attribute may hold: ``check`` answers None when a value is allowed, else why not."""

    description: str
    check: Callable[[str], str | None]


def _pattern(description: str, regex: str, max_length: int = 200) -> ValueRule:
    compiled = re.compile(regex)

    def check(value: str) -> str | None:
        if len(value) <= max_length and compiled.fullmatch(value):
            return None
        return f"must be {description}"

    return ValueRule(description, check)


def _one_of(*values: str) -> ValueRule:
    allowed = frozenset(values)
    description = " or ".join(f"`{v}`" for v in values)
    return ValueRule(description, lambda value: None if value in allowed else f"must be {description}")


_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
_INVISIBLE = re.compile(r"[\s\x00-\x20\x7f-\x9f\u200b-\u200f\u2028\u2029\ufeff]+")
_SCRIPT_URL = re.compile(r"(java|vb)script:|data:", re.IGNORECASE)
"""A value starting like this would be a script or inline document if anything used it as a URL."""
MAX_TEXT = 2000
"""Characters in one text attribute at most."""


def script_url_in(value: str) -> bool:
    """Whether ``value`` is a ``javascript:``/``vbscript:``/``data:`` URL, invisible characters ignored."""
    return bool(_SCRIPT_URL.match(_INVISIBLE.sub("", value)))


def _text(value: str) -> str | None:
    if len(value) > MAX_TEXT:
        return f"must be at most {MAX_TEXT} characters"
    if _CONTROL.search(value):
        return "must not hold control characters"
    if script_url_in(value):
        return "must not be a javascript:, vbscript: or data: URL"
    return None


def _css(value: str) -> str | None:
    problems = declarations_problems(value)
    return "; ".join(problems[:2]) if problems else None


def _data_key(value: str) -> str | None:
    if value.lower() == "html":
        return "must not be `html` (Label Studio renders a message's `html` key as HTML in lists)"
    return NAME.check(value)


NAME = _pattern("a name (letters, digits, `_`, `-`, `.`)", r"[A-Za-z_][A-Za-z0-9_.-]*", 100)
NAMES = _pattern(
    "names separated by commas", r"[A-Za-z_][A-Za-z0-9_.-]*(\s*,\s*[A-Za-z_][A-Za-z0-9_.-]*)*", 500
)
FIELD = _pattern("a task field `$name`", r"\$[A-Za-z_][A-Za-z0-9_]*", 100)
TEXT = ValueRule("text, shown as text (may use `$field`)", _text)
BOOL = _one_of("true", "false")
INTEGER = _pattern("a whole number", r"[0-9]{1,6}")
INTEGER_OR_FIELD = _pattern("a whole number or `$field`", r"[0-9]{1,6}|\$[A-Za-z_][A-Za-z0-9_]*", 100)
NUMBER = _pattern("a number", r"-?[0-9]{1,9}(\.[0-9]{1,9})?")
COLOUR = _pattern("a colour (`#hex` or a colour name)", r"#[0-9A-Fa-f]{3,8}|[A-Za-z]{3,30}")
CLASSES = _pattern("CSS class names", r"[A-Za-z_-][A-Za-z0-9_-]*(\s+[A-Za-z_-][A-Za-z0-9_-]*)*", 300)
HOTKEY = _pattern("a hotkey (`ctrl+1`)", r"[A-Za-z0-9+_-]{1,30}")
CSS = ValueRule("CSS declarations on the CSS allowlist", _css)
DATA_KEY = ValueRule("a message key name other than `html`", _data_key)
VISIBLE_WHEN = _one_of("region-selected", "no-region-selected", "choice-selected", "choice-unselected")

_VISIBILITY = {
    "visibleWhen": VISIBLE_WHEN,
    "whenTagName": NAME,
    "whenLabelValue": TEXT,
    "whenChoiceValue": TEXT,
}
_CONTROL_COMMON = {
    "name": NAME,
    "toName": NAMES,
    "required": BOOL,
    "requiredMessage": TEXT,
    "perRegion": BOOL,
    "perItem": BOOL,
}
_LABELS = {
    **_CONTROL_COMMON,
    "choice": _one_of("single", "multiple"),
    "maxUsages": INTEGER,
    "showInline": BOOL,
    "opacity": NUMBER,
    "fillColor": COLOUR,
    "strokeColor": COLOUR,
    "strokeWidth": INTEGER,
    **_VISIBILITY,
}

ALLOWED_TAGS: dict[str, dict[str, ValueRule]] = {
    # layout and text
    "View": {
        "className": CLASSES,
        "style": CSS,
        "display": _one_of("block", "inline"),
        "whenRole": NAMES,
        **_VISIBILITY,
    },
    "Header": {"value": TEXT, "size": INTEGER, "style": CSS, "underline": BOOL},
    "Style": {},
    # objects: what the task shows
    "Text": {
        "name": NAME,
        "value": TEXT,
        "valueType": _one_of("text"),
        "saveTextResult": _one_of("true", "false", "yes", "no"),
        "selectionEnabled": BOOL,
        "highlightColor": COLOUR,
        "showLabels": BOOL,
        "encoding": _one_of("none", "base64", "base64unicode"),
        "granularity": _one_of("symbol", "word", "sentence", "paragraph"),
    },
    "Paragraphs": {
        "name": NAME,
        "value": FIELD,
        "valueType": _one_of("json"),
        "layout": _one_of("none", "dialogue"),
        "nameKey": DATA_KEY,
        "textKey": DATA_KEY,
        "granularity": _one_of("symbol", "word", "sentence", "paragraph"),
        "contextScroll": BOOL,
        "saveTextResult": _one_of("true", "false", "yes", "no"),
    },
    "Chat": {
        "name": NAME,
        "toName": NAMES,
        "value": FIELD,
        "editable": BOOL,
        "minMessages": INTEGER,
        "maxMessages": INTEGER_OR_FIELD,
        "messageroles": NAMES,
    },
    "List": {"name": NAME, "value": FIELD, "title": TEXT},
    # controls: what reviewers answer
    "TextArea": {
        **_CONTROL_COMMON,
        "value": TEXT,
        "label": TEXT,
        "placeholder": TEXT,
        "maxSubmissions": INTEGER,
        "editable": BOOL,
        "transcription": BOOL,
        "skipDuplicates": BOOL,
        "showSubmitButton": BOOL,
        "displayMode": _one_of("tag", "region-list"),
        "rows": INTEGER,
        **_VISIBILITY,
    },
    "Rating": {
        **_CONTROL_COMMON,
        "maxRating": INTEGER,
        "defaultValue": INTEGER,
        "size": _one_of("small", "medium", "large"),
        "icon": NAME,
        "hotkey": HOTKEY,
        **_VISIBILITY,
    },
    "Choices": {
        **_CONTROL_COMMON,
        "choice": _one_of("single", "single-radio", "multiple"),
        "showInline": BOOL,
        "layout": _one_of("select", "inline", "vertical"),
        **_VISIBILITY,
    },
    "Choice": {"value": TEXT, "alias": TEXT, "hint": TEXT, "selected": BOOL, "hotkey": HOTKEY, "style": CSS},
    "Labels": _LABELS,
    "ParagraphLabels": _LABELS,
    "Label": {
        "value": TEXT,
        "alias": TEXT,
        "hint": TEXT,
        "selected": BOOL,
        "hotkey": HOTKEY,
        "maxUsages": INTEGER,
        "showAlias": BOOL,
        "aliasStyle": CSS,
        "size": _one_of("small", "medium", "large"),
        "background": COLOUR,
        "selectedColor": COLOUR,
        "granularity": _one_of("symbol", "word"),
        "category": INTEGER,
    },
    "Number": {
        **_CONTROL_COMMON,
        "min": NUMBER,
        "max": NUMBER,
        "step": NUMBER,
        "defaultValue": NUMBER,
        "hotkey": HOTKEY,
        "slider": BOOL,
        **_VISIBILITY,
    },
    "Pairwise": {**_CONTROL_COMMON, "selectionStyle": CSS, "leftClass": CLASSES, "rightClass": CLASSES},
    "Ranker": {"name": NAME, "toName": NAMES},
    "Bucket": {"name": NAME, "title": TEXT, "default": BOOL},
}
"""Allowed tags (as Label Studio documents them) and, per tag, its allowed attributes and their rules."""

TEXT_CONTENT = {"Header": TEXT}
"""Tags that may hold text (Label Studio uses it as the value); ``Style`` holds CSS. Others: none."""

REFUSED_TAG_REASONS = {
    **dict.fromkeys(("hypertext", "hypertextlabels"), "renders HTML"),
    "markdown": "renders Markdown as HTML",
    **dict.fromkeys(
        ("image", "audio", "audioplus", "video", "pdf", "timeseries", "multichannel", "table"),
        "loads or shows data from URLs",
    ),
    "custominterface": "runs custom code in the page",
    "repeater": "repeats config over task data",
    **dict.fromkeys(
        (
            "script",
            "iframe",
            "frame",
            "object",
            "embed",
            "link",
            "meta",
            "base",
            "form",
            "svg",
            "math",
            "img",
            "a",
        ),
        "is HTML, not a Label Studio tag",
    ),
}
"""Why a few well-known tags are not on the list (any other tag is refused as not on it)."""

REFUSED_ATTRIBUTE_REASONS = {
    "html": "renders HTML",
    "valuetype": "only the values listed load no URL",
    "audiourl": "loads a URL",
    "resolver": "loads data from a URL",
    "llm": "makes Label Studio call a model outside",
    "clickablelinks": "turns task text into links",
    "inline": "embeds HTML into the page",
    "idattr": "sets element ids of the page",
    "srcdoc": "embeds a page",
    "src": "loads a URL",
    "href": "is a link",
}
"""Why a few well-known attributes are not allowed (``on*`` handlers are named as such)."""

_BY_LOWER = {
    tag.lower(): (tag, {name.lower(): rule for name, rule in attrs.items()})
    for tag, attrs in ALLOWED_TAGS.items()
}


def tag_rules(tag: str) -> tuple[str, dict[str, ValueRule]] | None:
    """The documented name and attribute rules (keyed in lower case) of an allowed tag, or None."""
    return _BY_LOWER.get(tag.lower())


def markdown_table() -> str:
    """The allowlist as a Markdown table, the one docs/SECURITY.md shows."""
    lines = ["| tag | attributes: what each may hold |", "|---|---|"]
    for tag, attrs in ALLOWED_TAGS.items():
        content = " Text inside: CSS on the CSS allowlist." if tag == "Style" else ""
        if tag in TEXT_CONTENT:
            content = f" Text inside: {TEXT_CONTENT[tag].description}."
        cells = "; ".join(f"`{name}`: {rule.description}" for name, rule in attrs.items()) or "none"
        lines.append(f"| `{tag}` | {cells}.{content} |")
    restricted = "; ".join(f"`{p}` only {', '.join(sorted(v))}" for p, v in RESTRICTED_VALUES.items())
    lines += [
        "",
        "CSS properties: "
        + ", ".join(f"`{p}`" for p in sorted(ALLOWED_PROPERTIES))
        + ", and custom properties `--*`"
        f" ({restricted}).",
        "",
        "CSS functions in values: "
        + ", ".join(f"`{f}()`" for f in sorted(ALLOWED_FUNCTIONS))
        + "; in selectors: "
        + ", ".join(f"`:{f}()`" for f in sorted(ALLOWED_SELECTOR_FUNCTIONS))
        + ".",
    ]
    return "\n".join(lines)


if __name__ == "__main__":  # regenerate the block in docs/SECURITY.md
    print(markdown_table())
