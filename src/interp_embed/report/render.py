"""The report's single HTML file: the template with its style, its script and the data filled in.

Everything is inline (no CDN, nothing fetched when it is viewed), and the data is inert: it sits in a
``<script type="application/json">`` block with every ``<``, ``>`` and ``&`` written as a JSON escape, so no
text from the store can close the block or open a tag, and the page's script puts it on screen as text
(``textContent``), never as markup. The Content-Security-Policy admits only the page's own script, by hash,
and no network: even a tag that slipped through could neither run nor load anything.
"""
from __future__ import annotations

import base64
import hashlib
import html
import json
import re
from importlib.resources import files

_PLACEHOLDER = re.compile(r"\{\{(title|csp|style|script|data)\}\}")
_JSON_ESCAPES = {"<": "\\u003c", ">": "\\u003e", "&": "\\u0026", "\u2028": "\\u2028", "\u2029": "\\u2029"}


def json_for_html(data) -> str:
    """``data`` as JSON that is safe inside a ``<script>`` block: ``</script>`` or ``<!--`` cannot occur in it.

    >>> json_for_html({"text": "</script><b>"})
    '{"text":"\\\\u003c/script\\\\u003e\\\\u003cb\\\\u003e"}'
    """
    text = json.dumps(data, ensure_ascii=False, allow_nan=False, separators=(",", ":"))
    return re.sub("[<>&\u2028\u2029]", lambda m: _JSON_ESCAPES[m.group()], text)


def render(data: dict) -> bytes:
    """The HTML file for the data gathered by :func:`~interp_embed.report.collect.collect`, as UTF-8 bytes."""
    folder = files(__package__)
    script = folder.joinpath("explorer.js").read_text("utf-8")
    digest = base64.b64encode(hashlib.sha256(script.encode("utf-8")).digest()).decode("ascii")
    values = {
        "title": html.escape(data["title"]),
        "csp": f"default-src 'none'; script-src 'sha256-{digest}'; style-src 'unsafe-inline'; img-src data:",
        "style": folder.joinpath("explorer.css").read_text("utf-8"),
        "script": script,
        "data": json_for_html(data),
    }
    # One pass: text filled in is never searched for placeholders again.
    page = _PLACEHOLDER.sub(lambda m: values[m.group(1)], folder.joinpath("template.html").read_text("utf-8"))
    # A lone surrogate (which no store text holds, but a label set in Python might) becomes its JSON escape.
    return page.encode("utf-8", "backslashreplace")
