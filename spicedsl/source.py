"""Source text of a model file and spans into it."""

from __future__ import annotations

import bisect
import re
from dataclasses import dataclass

# Characters that a terminal may act on: controls other than tab and newline, and the
# marks that reorder text (bidirectional overrides).
_UNPRINTABLE = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u200e\u200f\u202a-\u202e\u2066-\u2069]")


def printable(text: str) -> str:
    """``text`` with the characters a terminal may act on shown escaped.

    >>> print(printable("a\\x1b[31mb\\u202ec"))
    a\\x1b[31mb\\u202ec
    """
    return _UNPRINTABLE.sub(lambda match: match[0].encode("unicode_escape").decode(), text)


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
        """The source line of ``span`` and a caret line under it, indented by 4; control
        characters are shown escaped.

        >>> print("\\n".join(Source("m", "x = \\x1b[2J y").excerpt(Span(9, 10))))
            x = \\x1b[2J y
                        ^
        """
        line, col = self.line_col(span.start)
        text = self.line_text(line).replace("\t", " ")
        width = max(1, min(span.end, span.start + len(text) - col + 1) - span.start)
        before, marked = printable(text[: col - 1]), printable(text[col - 1 : col - 1 + width])
        return ["    " + printable(text), "    " + " " * len(before) + "^" * max(1, len(marked))]
