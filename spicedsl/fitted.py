"""The fitted model file: the original program with each ``learn(...)`` replaced by its
discovered equation and every param given its fitted value."""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import replace
from typing import TYPE_CHECKING

from spicedsl.columns import REWARD_COLUMN, REWARDS_COLUMN
from spicedsl.printer import INDENT, format_expr, polynomial
from spicedsl.semantics.functions import output_range
from spicedsl.source import Span
from spicedsl.syntax import ast

if TYPE_CHECKING:
    from spicedsl.discovery.equation import DiscoveredEquation
    from spicedsl.discovery.stability import Stability


def round_significant(value: float, digits: int) -> float:
    """``value`` rounded to ``digits`` significant digits.

    >>> round_significant(0.0912345, 3), round_significant(2.5995, 2)
    (0.0912, 2.6)
    """
    return float(f"{value:.{digits}g}")


# The participant table a fitted model names, written beside ``fitted.spice``.
TABLE_FILE = "fitted_participants.csv"


def fitted_program(
    program: ast.Program,
    equations: Mapping[str, DiscoveredEquation],
    param_values: Mapping[str, float],
    digits: int = 4,
    table_file: str | None = None,
    n_actions: int | None = None,
) -> ast.Program:
    """``program`` with discovered equations and fitted params, at ``digits`` precision.

    With ``n_actions``, the fitted model says ``actions n_actions``: its ``actions``
    statement is replaced, or one is added after the model's name.

    With ``table_file``, per-participant params and the free coefficients of
    per-participant equations are params ``per participant`` that the model's
    participant table (``participants from "table_file"``) gives values; their columns
    are named by :func:`coefficient_params`. Statements keep their source spans, so the
    formatter keeps the comments in place. The participant embedding is dropped: nothing
    learnable is left to feed.
    """
    named = coefficient_params(program, equations, per_participant_only=True)
    if table_file is None:
        named = {}

    def param(stmt: ast.ParamDecl) -> ast.ParamDecl:
        if stmt.per_participant and table_file is not None:
            return replace(stmt, value=None, fixed=False)
        return _valued(stmt, param_values[stmt.name.id], digits, fixed=True)

    rewritten = _rewrite(program, equations, named, param, digits, valued_coefficients=False)
    # The fitted model names its own table (a table the program named is one of its inputs).
    statements = [s for s in rewritten if not isinstance(s, ast.ParticipantsDecl)]
    if table_file is not None:
        statements.append(ast.ParticipantsDecl(table_file))
    if n_actions is not None:
        statements = _with_actions(statements, n_actions)
    return ast.Program(tuple(statements), program.comments)


def _with_actions(statements: list[ast.Statement], n_actions: int) -> list[ast.Statement]:
    """``statements`` with ``actions n_actions`` in place of their ``actions`` statement,
    or, if they have none, just after the model's name (where it ends, so that the
    formatter keeps the blank lines and comments around it)."""
    if any(isinstance(s, ast.ActionsDecl) for s in statements):
        return [
            replace(s, count=n_actions) if isinstance(s, ast.ActionsDecl) else s for s in statements
        ]
    out: list[ast.Statement] = []
    for stmt in statements:
        out.append(stmt)
        if isinstance(stmt, ast.ModelDecl):
            out.append(ast.ActionsDecl(n_actions, span=Span(stmt.span.end, stmt.span.end)))
    return out


def participant_columns(
    program: ast.Program,
    equations: Mapping[str, DiscoveredEquation],
    participant_params: Mapping[str, list[float]],
    digits: int = 4,
) -> tuple[dict[str, list[float]], dict[str, str]]:
    """The columns of a fitted model's participant table, one value per participant,
    rounded as :func:`fitted_program` rounds, and what each column is, for people.

    The columns are the per-participant params, then the free coefficients of the
    per-participant equations, named as in the fitted model.
    """
    decls = {s.name.id: s for s in program.statements if isinstance(s, ast.ParamDecl)}
    columns = {
        name: [_inside_bounds(decls[name], v, digits) for v in values]
        for name, values in participant_params.items()
    }
    labels = {name: "param" for name in columns}
    for (module, index), name in coefficient_params(program, equations, True).items():
        equation = equations[module]
        columns[name] = [round_significant(row[index], digits) for row in equation.per_participant]
        labels[name] = f"{module}: {term_text(equation.terms[index][1])}"
    return columns, labels


def column_values(
    program: ast.Program, equations: Mapping[str, DiscoveredEquation], by_key: Mapping
) -> dict:
    """``by_key`` (per-participant param name, or ``(module, powers)`` for a coefficient
    of a per-participant equation -> anything) keyed by participant table column, as
    :func:`participant_columns` names them."""
    named = coefficient_params(program, equations, True)
    columns = {(m, equations[m].terms[i][1]): name for (m, i), name in named.items()}
    return {columns.get(key, key): value for key, value in by_key.items()}


def refit_program(
    program: ast.Program,
    equations: Mapping[str, DiscoveredEquation],
    param_values: Mapping[str, float],
) -> tuple[ast.Program, dict[str, tuple[str, int]]]:
    """``program`` with each discovered equation's coefficients as learnable params.

    Every learnable param starts at its value in ``param_values``, every coefficient at
    its discovered value, so that all of them can be refit to the choices (coefficients
    snapped to exactly 1 stay fixed). The coefficients of per-participant equations are
    params per participant. Returns the program and, per coefficient param, its
    (module, term index).
    """
    named = coefficient_params(program, equations, per_participant_only=False)

    def param(stmt: ast.ParamDecl) -> ast.ParamDecl:
        return _valued(stmt, param_values[stmt.name.id], 17, fixed=False)

    statements = _rewrite(program, equations, named, param, 17, valued_coefficients=True)
    return ast.Program(tuple(statements)), {name: key for key, name in named.items()}


def coefficient_params(
    program: ast.Program, equations: Mapping[str, DiscoveredEquation], per_participant_only: bool
) -> dict[tuple[str, int], str]:
    """The param name of each free coefficient, by (module, term index): ``MODULE_cINDEX``,
    made unique. Coefficients snapped to exactly 1 are structure, not free; with
    ``per_participant_only``, only those of per-participant equations are named."""
    taken = {s.name.id for s in program.statements if getattr(s, "name", None)}
    names: dict[tuple[str, int], str] = {}
    for stmt in program.statements:
        equation = equations.get(stmt.name.id) if isinstance(stmt, ast.ModuleDecl) else None
        if equation is None or (per_participant_only and equation.per_participant is None):
            continue
        for index in range(len(equation.terms)):
            if _structural(equation, index):
                continue
            name = f"{stmt.name.id}_c{index}"
            while name in taken:
                name += "_"
            taken.add(name)
            names[(stmt.name.id, index)] = name
    return names


def _structural(equation: DiscoveredEquation, index: int) -> bool:
    """True for a term whose coefficient is exactly 1 (for every participant)."""
    if equation.per_participant is not None:
        return all(row[index] == 1 for row in equation.per_participant)
    return equation.terms[index][0] == 1


def _rewrite(
    program: ast.Program,
    equations: Mapping[str, DiscoveredEquation],
    named: Mapping[tuple[str, int], str],
    param: Callable[[ast.ParamDecl], ast.ParamDecl],
    digits: int,
    valued_coefficients: bool,
) -> list[ast.Statement]:
    """The statements of ``program`` with each discovered module's equation, ``param``
    applied to each learnable param, and no embedding. The named coefficients are
    declared as params just before their module, starting at their discovered values
    with ``valued_coefficients``, else valueless (a participant table gives them)."""
    statements: list[ast.Statement] = []
    for stmt in program.statements:
        declared: list[ast.Statement] = []
        if isinstance(stmt, ast.ModuleDecl) and stmt.name.id in equations:
            equation = equations[stmt.name.id]
            terms: list[tuple[float | str, dict[str, int]]] = []
            for index, (coefficient, powers) in enumerate(equation.terms):
                name = named.get((stmt.name.id, index))
                if name is None:
                    terms.append((round_significant(coefficient, digits), dict(powers)))
                    continue
                declared.append(
                    ast.ParamDecl(
                        ast.Name(name),
                        per_participant=equation.per_participant is not None,
                        value=ast.Number(coefficient) if valued_coefficients else None,
                        # Where the module starts: the formatter sets the group apart.
                        span=Span(stmt.span.start, stmt.span.start),
                    )
                )
                terms.append((name, dict(powers)))
            activation = stmt.body.activation.id if stmt.body.activation else None
            expr = clipped(polynomial(terms), output_range(activation))
            body = ast.Equation(ast.Name(stmt.name.id), expr, span=stmt.body.span)
            stmt = ast.ModuleDecl(stmt.name, stmt.target, stmt.filter, body, span=stmt.span)
        elif isinstance(stmt, ast.ParamDecl) and not stmt.fixed:
            stmt = param(stmt)
        elif isinstance(stmt, ast.EmbeddingDecl):
            continue
        statements += [*declared, stmt]
    return statements


def clipped(expr: ast.Expr, bounds: tuple[float, float]) -> ast.Expr:
    """``clip(expr, low, high)``: a discovered equation held to the range of the network
    it replaces, so that the equation model means what the equation stage fitted. A
    constant inside the range needs no clip.

    >>> from spicedsl.printer import format_expr
    >>> format_expr(clipped(ast.Name("v"), (-10.0, 10.0)))
    'clip(v, -10, 10)'
    >>> format_expr(clipped(ast.Number(0.3), (0.0, 1.0)))
    '0.3'
    """
    low, high = bounds
    constant = expr
    if isinstance(expr, ast.Neg) and isinstance(expr.operand, ast.Number):
        constant = ast.Number(-expr.operand.value)
    if isinstance(constant, ast.Number) and low <= constant.value <= high:
        return expr
    ends = [ast.Number(end) if end >= 0 else ast.Neg(ast.Number(-end)) for end in bounds]
    return ast.Call(ast.Name("clip"), (expr, *ends))


def _valued(param: ast.ParamDecl, value: float, digits: int, fixed: bool) -> ast.ParamDecl:
    """``param`` with ``value`` as its fixed value, or as the start of a learnable one."""
    return ast.ParamDecl(
        param.name,
        param.lower,
        param.upper,
        param.per_participant,
        ast.Number(_inside_bounds(param, value, digits)),
        fixed=fixed,
        span=param.span,
    )


def _inside_bounds(param: ast.ParamDecl, value: float, digits: int) -> float:
    """``value`` rounded, with more digits where rounding would land on an open bound."""
    low = param.lower.value if param.lower else -math.inf
    high = param.upper.value if param.upper else math.inf
    for more in range(digits, 18):
        rounded = round_significant(value, more)
        if low < rounded < high:
            return rounded
    # The network pushed the param onto its bound: take the nearest value inside.
    return math.nextafter(low, high) if value <= low else math.nextafter(high, low)


def rewards_rescaled(program: ast.Program, low: float, high: float) -> ast.Program:
    """``program`` with every control that reads ``data.reward`` or ``data.rewards`` as it
    is reading it rescaled from ``[low, high]`` to [0, 1] instead, as SPICE does.

    >>> from spicedsl.printer import format_program
    >>> from spicedsl.syntax.parser import parse
    >>> text = "model m\\ncontrol c = data.reward\\ncontrol d = data.gain\\n"
    >>> print(format_program(rewards_rescaled(parse(text), -10.0, 10.0)), end="")
    model m
    control c = (data.reward + 10) / 20
    control d = data.gain
    """

    def scaled(stmt: ast.Statement) -> ast.Statement:
        column = stmt.column if isinstance(stmt, ast.ControlDecl) else None
        if column is None or column.id not in (REWARD_COLUMN, REWARDS_COLUMN):
            return stmt
        expr: ast.Expr = stmt.expr
        if low:
            expr = ast.BinOp("-" if low > 0 else "+", expr, ast.Number(abs(low)))
        if high - low != 1:
            expr = ast.BinOp("/", expr, ast.Number(high - low))
        return replace(stmt, expr=expr)

    return ast.Program(tuple(scaled(s) for s in program.statements), program.comments)


def with_frequencies(text: str, stability: Stability) -> str:
    """The fitted model ``text`` with a comment at the end of each discovered equation:
    how many members of the ensemble selected each term, the kept ones first."""
    for module in stability.libraries:
        text = with_comment(text, module, frequency_text(stability, module))
    return text


def with_comment(text: str, module: str, comment: str) -> str:
    """The fitted model ``text`` with ``# comment`` at the end of the line of
    ``module``'s equation.

    >>> print(with_comment("module m updates x\\n    m = 0.5 * x\\n", "m", "note"), end="")
    module m updates x
        m = 0.5 * x  # note
    """
    start = f"{INDENT}{module} = "
    lines = text.split("\n")
    return "\n".join(f"{line}  # {comment}" if line.startswith(start) else line for line in lines)


def frequency_text(stability: Stability, module: str) -> str:
    """How many members selected each term of ``module``, for people: the kept terms
    first, then those that the members' most frequent structure added, then the others.

    For example ``members selecting each term: 1 16/16, x 16/16; below 0.7: x^2 3/16``.
    """
    members = len(stability.members)
    added = {powers for name, powers in stability.added if name == module}
    terms = stability.frequencies(module)

    def listed(chosen) -> str:
        return ", ".join(f"{term_text(t.powers)} {t.selected}/{members}" for t in chosen)

    text = f"members selecting each term: {listed(t for t in terms if t.kept) or 'none'}"
    extra = listed(t for t in terms if t.powers in added)
    if extra:
        text += (
            f"; kept with the members' most frequent structure "
            f"({stability.modal_members}/{members}): {extra}"
        )
    below = listed(t for t in terms if not t.kept and t.powers not in added)
    return text + (f"; below {stability.threshold:g}: {below}" if below else "")


def term_text(powers) -> str:
    """A term of a library as model text.

    >>> term_text(()), term_text((("r", 1), ("v", 2)))
    ('1', 'r * v ^ 2')
    """
    return format_expr(polynomial([(1.0, dict(powers))]))


def equation_text(equation: DiscoveredEquation, digits: int = 4) -> str:
    """A discovered equation's right-hand side as model text, at ``digits`` precision.

    >>> from spicedsl.discovery.equation import DiscoveredEquation
    >>> equation_text(DiscoveredEquation("m", "v", ((0.10012, ()), (0.8, (("v", 1),))), 10))
    '0.1001 + 0.8 * v'
    """
    terms = [(round_significant(c, digits), dict(powers)) for c, powers in equation.terms]
    return format_expr(polynomial(terms))
