"""The abstract syntax tree of a model file.

Every node is a frozen dataclass. Its ``span`` locates it in the source and takes no
part in equality, so two trees parsed from differently formatted text compare equal.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from spicedsl.source import Span

NO_SPAN = Span(0, 0)


def _span() -> Span:
    return field(default=NO_SPAN, compare=False, repr=False, kw_only=True)


# -- expressions -------------------------------------------------------------------------


@dataclass(frozen=True)
class Number:
    value: float
    span: Span = _span()


@dataclass(frozen=True)
class Name:
    id: str
    span: Span = _span()


@dataclass(frozen=True)
class Column:
    """``data.NAME``: the data file's column ``NAME`` on the current trial."""

    name: Name
    span: Span = _span()


@dataclass(frozen=True)
class Vector:
    """``[v1, v2, ...]``: a constant with one value per action."""

    values: tuple[Number, ...]
    span: Span = _span()


@dataclass(frozen=True)
class Call:
    func: Name
    args: tuple[Expr, ...]
    span: Span = _span()


@dataclass(frozen=True)
class BinOp:
    """``left op right`` with ``op`` one of ``+ - * / ^``."""

    op: str
    left: Expr
    right: Expr
    span: Span = _span()

    # Compared and hashed along its chain (see :func:`chain`), without recursion there.
    def __eq__(self, other: object) -> bool:
        if not isinstance(other, BinOp):
            return NotImplemented
        first, links = chain(self)
        other_first, other_links = chain(other)
        return (
            len(links) == len(other_links)
            and all(
                a.op == b.op and a.right == b.right for a, b in zip(links, other_links, strict=True)
            )
            and first == other_first
        )

    def __hash__(self) -> int:
        first, links = chain(self)
        return hash((first, tuple((link.op, link.right) for link in links)))


@dataclass(frozen=True)
class Neg:
    operand: Expr
    span: Span = _span()


Expr = Number | Name | Column | Vector | Call | BinOp | Neg


def chain(expr: BinOp) -> tuple[Expr, list[BinOp]]:
    """``expr`` as its first operand and the operations that follow it: a chain of ``+``
    and ``-`` (or of ``*`` and ``/``) is unrolled, so that walking it needs no recursion
    however long it is. A power is a chain of one operation.

    >>> first, links = chain(BinOp("-", BinOp("+", Name("a"), Name("b")), Name("c")))
    >>> first, [(link.op, link.right) for link in links]
    (Name(id='a'), [('+', Name(id='b')), ('-', Name(id='c'))])
    """
    links = [expr]
    while expr.op != "^" and _chained(expr.left, expr.op):
        expr = expr.left
        links.append(expr)
    return expr.left, links[::-1]


def _chained(expr: Expr, op: str) -> bool:
    return isinstance(expr, BinOp) and _CHAIN_GROUPS.get(expr.op, expr.op) == _CHAIN_GROUPS[op]


_CHAIN_GROUPS = {"+": "+", "-": "+", "*": "*", "/": "*", "^": "^"}


def subexpressions(expr: Expr) -> list[Expr]:
    """``expr`` and every expression in it, outermost first, in reading order; walked
    without recursion. Function names are not expressions.

    >>> [type(e).__name__ for e in subexpressions(BinOp("+", Name("a"), Neg(Number(1.0))))]
    ['BinOp', 'Name', 'Neg', 'Number']
    """
    found, stack = [], [expr]
    while stack:
        node = stack.pop()
        found.append(node)
        if isinstance(node, BinOp):
            stack += (node.right, node.left)
        elif isinstance(node, Neg):
            stack.append(node.operand)
        elif isinstance(node, Call):
            stack += reversed(node.args)
    return found


def names_in(expr: Expr) -> list[Name]:
    """Every variable reference in ``expr``, in reading order (function names excluded).

    >>> [n.id for n in names_in(BinOp("+", Name("a"), Call(Name("exp"), (Name("b"),))))]
    ['a', 'b']
    """
    return [node for node in subexpressions(expr) if isinstance(node, Name)]


def columns_in(expr: Expr) -> list[Column]:
    """Every data column ``expr`` reads, in reading order.

    >>> [c.name.id for c in columns_in(BinOp("/", Column(Name("gain")), Name("x")))]
    ['gain']
    """
    return [node for node in subexpressions(expr) if isinstance(node, Column)]


def numbers_in(expr: Expr) -> list[Number]:
    """Every number literal in ``expr``."""
    return [node for node in subexpressions(expr) if isinstance(node, Number)]


def calls_in(expr: Expr) -> list[Call]:
    """Every function call in ``expr``, outermost first."""
    return [node for node in subexpressions(expr) if isinstance(node, Call)]


# -- statements --------------------------------------------------------------------------


@dataclass(frozen=True)
class ModelDecl:
    name: Name
    description: str | None = None
    span: Span = _span()


@dataclass(frozen=True)
class ActionsDecl:
    """``actions 2``; ``count`` is None for ``actions from data``."""

    count: int | None
    span: Span = _span()


@dataclass(frozen=True)
class StateDecl:
    name: Name
    initial: Number
    span: Span = _span()


@dataclass(frozen=True)
class ControlDecl:
    """``control c = expression [before choice]``: a per-trial signal computed from data
    columns (``data.NAME``) and start-of-trial state values.

    ``before_choice``: the signal is seen before the trial's choice, so that the choice
    rule may read it.
    """

    name: Name
    expr: Expr
    before_choice: bool = False
    span: Span = _span()

    @property
    def column(self) -> Name | None:
        """The data column, when the control is one column as it is."""
        return self.expr.name if isinstance(self.expr, Column) else None

    @property
    def state(self) -> Name | None:
        """The state, when the control copies one state's start-of-trial value."""
        return self.expr if isinstance(self.expr, Name) else None


@dataclass(frozen=True)
class OfferedDecl:
    """``offered data.a, data.b``: the items offered on each trial, one column each (coded
    as the choices are), or ``offered data.available``: one 0/1 column per item."""

    columns: tuple[Column, ...]
    span: Span = _span()


@dataclass(frozen=True)
class Comparison:
    left: Expr
    op: str
    right: Expr
    span: Span = _span()


@dataclass(frozen=True)
class TrialFilter:
    """Which entries of the target state a module writes: ``chosen``, ``not_chosen``,
    ``not_offered``, ``all`` or ``condition``. ``condition`` holds the comparison of
    ``condition``, and of ``chosen and ...`` or ``not chosen and ...``, where both must
    hold."""

    kind: str
    condition: Comparison | None = None
    span: Span = _span()


@dataclass(frozen=True)
class Learn:
    """A learnable module: a network in training, a sparse equation after fitting."""

    inputs: tuple[Name, ...]
    activation: Name | None = None
    degree: int | None = None
    threshold: Number | None = None
    span: Span = _span()


@dataclass(frozen=True)
class Equation:
    """A hard-coded module: ``name = expression``."""

    name: Name
    expr: Expr
    span: Span = _span()


@dataclass(frozen=True)
class ModuleDecl:
    name: Name
    target: Name
    filter: TrialFilter
    body: Learn | Equation
    span: Span = _span()


@dataclass(frozen=True)
class ParamDecl:
    """``param name [> lo | < hi | in (lo, hi)] [per participant] [= value | init value]``.

    ``fixed`` is True when the value is fixed (``= v``) and False when it is only the
    starting point of a learnable param (``init v``) or absent.
    """

    name: Name
    lower: Number | None = None
    upper: Number | None = None
    per_participant: bool = False
    value: Number | None = None
    fixed: bool = False
    span: Span = _span()


@dataclass(frozen=True)
class LogitsDecl:
    expr: Expr
    span: Span = _span()


@dataclass(frozen=True)
class EmbeddingDecl:
    size: int
    dropout: Number | None = None
    targets: tuple[Name, ...] = ()
    span: Span = _span()


@dataclass(frozen=True)
class FitOption:
    name: Name
    value: Number
    span: Span = _span()


@dataclass(frozen=True)
class FitDecl:
    options: tuple[FitOption, ...]
    span: Span = _span()


@dataclass(frozen=True)
class ParticipantsDecl:
    """``participants from "table.csv"``: per-participant param values, one row each.

    ``path`` is as written, relative to the model file's folder.
    """

    path: str
    span: Span = _span()


Statement = (
    ModelDecl
    | ActionsDecl
    | StateDecl
    | ControlDecl
    | ModuleDecl
    | ParamDecl
    | LogitsDecl
    | EmbeddingDecl
    | FitDecl
    | ParticipantsDecl
    | OfferedDecl
)


@dataclass(frozen=True)
class Comment:
    text: str
    span: Span = _span()


@dataclass(frozen=True)
class Program:
    """A whole model file: its statements, plus the comments kept for the formatter."""

    statements: tuple[Statement, ...]
    comments: tuple[Comment, ...] = field(default=(), compare=False)
