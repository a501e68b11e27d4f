"""User-facing errors: one exception type that the CLI turns into a message and an exit code.

Every mistake in a user's input (model file, data file, command line) becomes a
:class:`SpiceError`. Anything else that escapes is a bug in spicedsl.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from spicedsl.source import Source, Span, printable

EXIT_INPUT_ERROR = 1
EXIT_USAGE_ERROR = 2


@dataclass(frozen=True)
class Diagnostic:
    """One error message, with the place in a model file it refers to.

    >>> src = Source("m.spice", "state x = 1\\n")
    >>> print(Diagnostic("unknown name 'y'", src.span(6, 7), hint="did you mean 'x'?").render(src))
    m.spice:1:7: error: unknown name 'y'
        state x = 1
              ^
    hint: did you mean 'x'?
    """

    message: str
    span: Span | None = None
    hint: str | None = None

    def render(self, source: Source | None) -> str:
        if self.span is None or source is None:
            where = f"{source.name}: " if source is not None else ""
            lines = [f"{where}error: {self.message}"]
        else:
            line, col = source.line_col(self.span.start)
            lines = [f"{source.name}:{line}:{col}: error: {self.message}"]
            lines.extend(source.excerpt(self.span))
        if self.hint:
            lines.append(f"hint: {self.hint}")
        return printable("\n".join(lines))


def did_you_mean(word: str, candidates: Iterable[str]) -> str | None:
    """A hint naming the candidate closest to a mistyped ``word``, or None if none is close.

    Closeness is the number of single-letter edits (a swap of neighbours counts as one);
    ties go to the candidate of the same length, then to the first given.

    >>> did_you_mean("modle", ["module", "model"])
    "did you mean 'model'?"
    >>> did_you_mean("c_rewrd", ["c_reward", "x_value"]), did_you_mean("y", ["x"])
    ("did you mean 'c_reward'?", None)
    """
    ranked = sorted(
        (_edit_distance(word, c), abs(len(c) - len(word)), i, c) for i, c in enumerate(candidates)
    )
    if not ranked:
        return None
    distance, *_, best = ranked[0]
    if distance >= len(word) or distance > max(1, len(word) // 3):
        return None
    return f"did you mean '{best}'?"


def _edit_distance(a: str, b: str) -> int:
    """Insertions, deletions, substitutions and swaps of neighbours that turn a into b."""
    previous2: list[int] = []
    previous = list(range(len(b) + 1))
    for i in range(1, len(a) + 1):
        current = [i] + [0] * len(b)
        for j in range(1, len(b) + 1):
            cost = a[i - 1] != b[j - 1]
            current[j] = min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + cost)
            if i > 1 and j > 1 and a[i - 1] == b[j - 2] and a[i - 2] == b[j - 1]:
                current[j] = min(current[j], previous2[j - 2] + 1)
        previous2, previous = previous, current
    return previous[-1]


class SpiceError(Exception):
    """Base of every error caused by the user's input; the CLI prints ``render()``."""

    exit_code = EXIT_INPUT_ERROR

    def render(self) -> str:
        """The message as printed; characters a terminal may act on are shown escaped."""
        return printable(f"error: {self}")


class UsageError(SpiceError):
    """The command line itself is wrong (exit code 2)."""

    exit_code = EXIT_USAGE_ERROR


@dataclass
class ModelError(SpiceError):
    """One or more errors in a model file, all reported together."""

    source: Source | None
    diagnostics: list[Diagnostic] = field(default_factory=list)

    def __post_init__(self) -> None:
        super().__init__(self.render())

    def render(self) -> str:
        return "\n".join(d.render(self.source) for d in self.diagnostics)


@dataclass
class DataError(SpiceError):
    """A problem in an input file (a data file, a table), located by file, row and column
    where known.

    ``row`` counts lines of the file from 1, the header being row 1.

    >>> error = DataError("choice is not a number: 'x'", path="d.csv", row=3, column="choice")
    >>> print(error.render())
    d.csv:3: column 'choice': error: choice is not a number: 'x'
    """

    message: str
    path: str | None = None
    row: int | None = None
    column: str | None = None
    hint: str | None = None

    def __post_init__(self) -> None:
        super().__init__(self.render())

    def render(self) -> str:
        where = ""
        if self.path:
            where = self.path + (f":{self.row}" if self.row is not None else "") + ": "
        if self.column:
            where += f"column '{self.column}': "
        text = f"{where}error: {self.message}"
        if self.hint:
            text += f"\nhint: {self.hint}"
        return printable(text)


class FileError(DataError):
    """An input file that cannot be read: missing, a folder or a device, too large, or
    not UTF-8 text."""


class FitError(SpiceError):
    """Training or equation fitting failed for a reason the user can act on."""
