"""Reading the /status page the way a person sees it: the namespace table's rows as text.

Works on the page as served and on a browser's serialized DOM (``chromium --dump-dom``) alike,
so the in-process tests and the browser test assert on the same shape.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from html.parser import HTMLParser


@dataclass
class Row:
    state: str  # the row's data-state
    cells: dict[str, str] = field(default_factory=dict)  # td class -> its text


class StatusPage(HTMLParser):
    """``rows``: the rows of ``table#namespaces`` in page order; ``elements``: how many of
    each element the document has (a ``script`` count above 0 means injected markup ran);
    ``texts``: the text of elements with an id (``shown``, ``counts``, ``summary``, ``config``)."""

    def __init__(self, markup: str) -> None:
        super().__init__(convert_charrefs=True)
        self.rows: list[Row] = []
        self.elements: dict[str, int] = {}
        self.texts: dict[str, str] = {}
        self._in_table = False
        self._cell: str | None = None
        self._ids: list[tuple[str, str, int]] = []  # (id, tag, depth) being read
        self._depth = 0
        self.feed(markup)
        self.close()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: v or "" for k, v in attrs}
        self.elements[tag] = self.elements.get(tag, 0) + 1
        if tag not in ("meta", "input", "br", "img", "link"):
            self._depth += 1
        if a.get("id"):
            self._ids.append((a["id"], tag, self._depth))
            self.texts[a["id"]] = ""
        if tag == "table" and a.get("id") == "namespaces":
            self._in_table = True
        elif self._in_table and tag == "tr" and "data-state" in a:
            self.rows.append(Row(a["data-state"]))
        elif self._in_table and tag == "td" and self.rows:
            self._cell = a.get("class", "")
            self.rows[-1].cells[self._cell] = ""

    def handle_endtag(self, tag: str) -> None:
        if tag == "table":
            self._in_table = False
        elif tag == "td":
            self._cell = None
        if self._ids and self._ids[-1][1] == tag and self._ids[-1][2] == self._depth:
            self._ids.pop()
        if tag not in ("meta", "input", "br", "img", "link"):
            self._depth -= 1

    def handle_data(self, data: str) -> None:
        if self._cell is not None and self.rows:
            self.rows[-1].cells[self._cell] += data
        for ident, _, _ in self._ids:
            self.texts[ident] += data

    def column(self, name: str) -> list[str]:
        return [r.cells.get(name, "") for r in self.rows]
