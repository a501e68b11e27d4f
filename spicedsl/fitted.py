"""The fitted model file: the original program with each ``learn(...)`` replaced by its
discovered equation and every param given its fitted value."""

from __future__ import annotations

import math
from collections.abc import Mapping

from spicedsl.printer import polynomial
from spicedsl.runtime.equations import DiscoveredEquation
from spicedsl.syntax import ast


def round_significant(value: float, digits: int) -> float:
    """``value`` rounded to ``digits`` significant digits.

    >>> round_significant(0.0912345, 3), round_significant(2.5995, 2)
    (0.0912, 2.6)
    """
    return float(f"{value:.{digits}g}")


def fitted_program(
    program: ast.Program,
    equations: Mapping[str, DiscoveredEquation],
    param_values: Mapping[str, float],
    digits: int = 4,
) -> ast.Program:
    """``program`` with discovered equations and fitted params, at ``digits`` precision.

    Statements keep their source spans, so the formatter keeps the comments in place.
    The participant embedding is dropped: nothing learnable is left to feed.
    """
    statements: list[ast.Statement] = []
    for stmt in program.statements:
        if isinstance(stmt, ast.ModuleDecl) and stmt.name.id in equations:
            terms = [
                (round_significant(c, digits), dict(powers))
                for c, powers in equations[stmt.name.id].terms
            ]
            body = ast.Equation(ast.Name(stmt.name.id), polynomial(terms), span=stmt.body.span)
            stmt = ast.ModuleDecl(stmt.name, stmt.target, stmt.filter, body, span=stmt.span)
        elif isinstance(stmt, ast.ParamDecl) and not stmt.fixed and stmt.name.id in param_values:
            stmt = _valued(stmt, param_values[stmt.name.id], digits, fixed=True)
        elif isinstance(stmt, ast.EmbeddingDecl):
            continue
        statements.append(stmt)
    return ast.Program(tuple(statements), program.comments)


def refit_program(
    program: ast.Program,
    equations: Mapping[str, DiscoveredEquation],
    param_values: Mapping[str, float],
) -> tuple[ast.Program, dict[str, tuple[str, int]]]:
    """``program`` with each discovered equation's coefficients as learnable params.

    Every learnable param starts at its value in ``param_values``, every coefficient at
    its discovered value, so that all of them can be refit to the choices (coefficients
    snapped to exactly 1 stay fixed). Returns the program and, per coefficient param,
    its (module, term index).
    """
    taken = {s.name.id for s in program.statements if hasattr(s, "name") and s.name}
    coefficient_params: dict[str, tuple[str, int]] = {}
    statements: list[ast.Statement] = []
    for stmt in program.statements:
        if isinstance(stmt, ast.ModuleDecl) and stmt.name.id in equations:
            terms = []
            for index, (coefficient, powers) in enumerate(equations[stmt.name.id].terms):
                if coefficient == 1:  # snapped to 1: structure, not a free coefficient
                    terms.append((ast.Number(1.0), dict(powers)))
                    continue
                name = f"{stmt.name.id}_c{index}"
                while name in taken:
                    name += "_"
                taken.add(name)
                coefficient_params[name] = (stmt.name.id, index)
                statements.append(ast.ParamDecl(ast.Name(name), value=ast.Number(coefficient)))
                terms.append((ast.Name(name), dict(powers)))
            body = ast.Equation(ast.Name(stmt.name.id), _weighted_sum(terms), span=stmt.body.span)
            stmt = ast.ModuleDecl(stmt.name, stmt.target, stmt.filter, body, span=stmt.span)
        elif isinstance(stmt, ast.ParamDecl) and not stmt.fixed and stmt.name.id in param_values:
            stmt = _valued(stmt, param_values[stmt.name.id], 17, fixed=False)
        elif isinstance(stmt, ast.EmbeddingDecl):
            continue
        statements.append(stmt)
    return ast.Program(tuple(statements)), coefficient_params


def _weighted_sum(terms: list[tuple[ast.Expr, dict[str, int]]]) -> ast.Expr:
    result: ast.Expr = ast.Number(0.0)
    for index, (weight, powers) in enumerate(terms):
        term: ast.Expr = weight
        for name, power in powers.items():
            factor: ast.Expr = ast.Name(name)
            if power != 1:
                factor = ast.BinOp("^", factor, ast.Number(float(power)))
            term = ast.BinOp("*", term, factor)
        result = term if index == 0 else ast.BinOp("+", result, term)
    return result


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
