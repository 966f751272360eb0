"""``{settings-reference}``: the table of every ``PROMETHEUS_*`` setting, from ``conf.SETTINGS``.

Each row is generated at build time: the name, the default (``repr``), the type (the first
line of the docstring of the rule the value must follow) and the system check id of a bad
value. A setting added to ``SETTINGS`` appears here with no edit to the docs.
"""

from __future__ import annotations

import math
import re

from docutils import nodes
from sphinx.util.docutils import SphinxDirective


def _inline(text: str) -> list[nodes.Node]:
    """Docstring text with its ``literals`` kept as literals."""
    parts = re.split(r"``(.+?)``", text)
    return [nodes.literal(p, p) if i % 2 else nodes.Text(p) for i, p in enumerate(parts) if p]


def default_text(value: object) -> str:
    if isinstance(value, float) and value > 0 and math.log2(value).is_integer() and value < 2**-20:
        return f"2**{int(math.log2(value))}"
    if isinstance(value, tuple) and value and isinstance(value[-1], float) and math.isinf(value[-1]):
        return "(" + ", ".join(repr(v) for v in value[:-1]) + ", inf)"
    return repr(value)


def rows() -> list[tuple[str, str, str, str]]:
    from django_prometheus import conf

    out = []
    for name, entry in conf.SETTINGS.items():
        kind = (entry.rule.__doc__ or "").strip().splitlines()[0] if entry.rule.__doc__ else ""
        out.append((name, default_text(entry.default), kind, entry.check_id))
    return out


def _cell(*children: nodes.Node) -> nodes.entry:
    entry = nodes.entry()
    entry += nodes.paragraph("", "", *children)
    return entry


class SettingsReference(SphinxDirective):
    has_content = False

    def run(self) -> list[nodes.Node]:
        headers = ("setting", "default", "type (the rule a value must follow)", "check id of a bad value")
        table = nodes.table(classes=["settings-reference"])
        group = nodes.tgroup(cols=len(headers))
        table += group
        for width in (30, 25, 35, 10):
            group += nodes.colspec(colwidth=width)
        head = nodes.thead()
        row = nodes.row()
        for title in headers:
            row += _cell(nodes.Text(title))
        head += row
        group += head
        body = nodes.tbody()
        for name, default, kind, check_id in rows():
            row = nodes.row(ids=[nodes.make_id(name)])
            row += _cell(nodes.literal(name, name))
            row += _cell(nodes.literal(default, default))
            row += _cell(*_inline(kind))
            row += _cell(nodes.literal(check_id, check_id))
            body += row
        group += body
        return [table]


def setup(app):
    app.add_directive("settings-reference", SettingsReference)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
