"""Source text of a model file and spans into it."""

from __future__ import annotations

import bisect
from dataclasses import dataclass


@dataclass(frozen=True)
class Span:
    """Half-open character range ``[start, end)`` in a :class:`Source`."""

    start: int
    end: int


class Source:
    """A named text with fast offset -> (line, column) lookup.

    >>> s = Source("m.spice", "a\\nbc\\n")
    >>> s.line_col(3)
    (2, 2)
    """

    def __init__(self, name: str, text: str) -> None:
        self.name = name
        self.text = text
        self._line_starts = [0] + [i + 1 for i, ch in enumerate(text) if ch == "\n"]

    def span(self, start: int, end: int) -> Span:
        return Span(start, end)

    def line_col(self, offset: int) -> tuple[int, int]:
        """1-based line and column of a character offset."""
        line = bisect.bisect_right(self._line_starts, offset) - 1
        return line + 1, offset - self._line_starts[line] + 1

    def line_text(self, line: int) -> str:
        """The text of a 1-based line, without its line break (``\\n`` or ``\\r\\n``)."""
        start = self._line_starts[line - 1]
        end = self.text.find("\n", start)
        return self.text[start : end if end >= 0 else len(self.text)].removesuffix("\r")

    def excerpt(self, span: Span) -> list[str]:
        """The source line of ``span`` and a caret line under it, indented by 4."""
        line, col = self.line_col(span.start)
        text = self.line_text(line)
        width = max(1, min(span.end, span.start + len(text) - col + 1) - span.start)
        return ["    " + text.replace("\t", " "), "    " + " " * (col - 1) + "^" * width]
