"""User text inside markdown that itilflow writes (Prefect artifacts): shown, never interpreted."""

from __future__ import annotations

import re

# Every character markdown gives a meaning to: a title cannot become a link (`javascript:` or
# not), an image, emphasis, a heading, a table cell break or raw HTML.
MARKDOWN_SPECIAL = re.compile(r"([\\`*_{}\[\]()#+!|<>~])")


def markdown_text(value: object) -> str:
    """`value` as literal markdown text on one line (whitespace runs become one space)."""
    return MARKDOWN_SPECIAL.sub(r"\\\1", " ".join(str(value).split()))
