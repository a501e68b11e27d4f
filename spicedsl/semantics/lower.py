"""Checked AST -> :class:`spicedsl.ir.Model`, with expressions as sympy objects.

sympy objects are built from the AST node by node; no user text ever goes through
``sympify``, so names such as ``beta``, ``gamma``, ``E``, ``I`` or ``lambda`` are plain
symbols.
"""

from __future__ import annotations

import operator
from collections.abc import Mapping

import sympy

from spicedsl import ir
from spicedsl.runtime.param_table import table_path
from spicedsl.semantics import sympy_functions
from spicedsl.semantics.check import declarations
from spicedsl.semantics.functions import FUNCTIONS
from spicedsl.settings import FitSettings
from spicedsl.source import Source
from spicedsl.syntax import ast

_RELATIONS = {
    "<": sympy.StrictLessThan,
    "<=": sympy.LessThan,
    ">": sympy.StrictGreaterThan,
    ">=": sympy.GreaterThan,
    "==": sympy.Eq,
    "!=": sympy.Ne,
}


def to_sympy(expr: ast.Expr) -> sympy.Expr:
    """The sympy form of an AST expression.

    >>> from spicedsl.syntax.ast import BinOp, Name, Number
    >>> to_sympy(BinOp("*", Name("lambda"), BinOp("^", Name("E"), Number(2.0))))
    E**2*lambda
    """
    if isinstance(expr, ast.Number):
        value = expr.value
        return sympy.Integer(int(value)) if value == int(value) else sympy.Float(value)
    if isinstance(expr, ast.Name):
        return ir.symbol(expr.id)
    if isinstance(expr, ast.Column):
        return ir.column_symbol(expr.name.id)
    if isinstance(expr, ast.Vector):
        return ir.vector_symbol(tuple(v.value for v in expr.values))
    if isinstance(expr, ast.Neg):
        return -to_sympy(expr.operand)
    if isinstance(expr, ast.Call):
        spelling = FUNCTIONS[expr.func.id].sympy
        function = getattr(sympy_functions, spelling, None) or getattr(sympy, spelling)
        return function(*(to_sympy(arg) for arg in expr.args))
    first, links = ast.chain(expr)
    value = to_sympy(first)
    for link in links:
        value = _SYMPY_OPERATIONS[link.op](value, to_sympy(link.right))
    return value


_SYMPY_OPERATIONS = {
    "+": operator.add,
    "-": operator.sub,
    "*": operator.mul,
    "/": operator.truediv,
    # Unevaluated, so that a constant power such as (2 * x) ^ 1e14 is not expanded.
    "^": lambda base, exponent: sympy.Pow(base, exponent, evaluate=False),
}


def lower(
    program: ast.Program, source: Source, settings: Mapping[str, float] | None = None
) -> ir.Model:
    """Build the IR of a program that :func:`spicedsl.semantics.check.check` accepted.

    ``settings`` override the program's ``fit`` options (as ``spicedsl fit --degree 2``
    does), so a learnable module without its own degree or threshold takes theirs.
    """
    decls = declarations(program)

    def line(node) -> int:
        return source.line_col(node.span.start)[0]

    embedded = {n.id for n in decls.embedding.targets} if decls.embedding else set()
    defaults = FitSettings()
    fit = defaults.replace(
        **{o.name.id: o.value.value for o in (decls.fit.options if decls.fit else ())}
    ).replace(**(settings or {}))
    modules: list[ir.Module] = []
    for module in decls.modules.values():
        trial_filter = _filter(module.filter)
        body = module.body
        if isinstance(body, ast.Equation):
            modules.append(
                ir.EquationModule(
                    module.name.id,
                    module.target.id,
                    trial_filter,
                    to_sympy(body.expr),
                    line(module),
                    sum(n.value != int(n.value) for n in ast.numbers_in(body.expr)),
                )
            )
        else:
            modules.append(
                ir.LearnedModule(
                    name=module.name.id,
                    target=module.target.id,
                    filter=trial_filter,
                    inputs=tuple(n.id for n in body.inputs),
                    activation=body.activation.id if body.activation else None,
                    degree=body.degree if body.degree is not None else fit.degree,
                    threshold=body.threshold.value if body.threshold else fit.threshold,
                    embedded=module.name.id in embedded,
                    line=line(module),
                )
            )
    embedding = None
    if decls.embedding is not None:
        dropout = decls.embedding.dropout.value if decls.embedding.dropout else 0.0
        embedding = ir.Embedding(decls.embedding.size, dropout)
    return ir.Model(
        name=decls.model.name.id,
        description=decls.model.description,
        n_actions=decls.actions.count if decls.actions else None,
        states=tuple(ir.State(s.name.id, s.initial.value, line(s)) for s in decls.states.values()),
        controls=tuple(
            ir.Control(c.name.id, to_sympy(c.expr), c.before_choice, line(c))
            for c in decls.controls.values()
        ),
        modules=tuple(modules),
        params=tuple(
            ir.Param(
                name=p.name.id,
                lower=p.lower.value if p.lower else None,
                upper=p.upper.value if p.upper else None,
                value=p.value.value if p.value else None,
                fixed=p.fixed,
                per_participant=p.per_participant,
                embedded=p.name.id in embedded,
                line=line(p),
            )
            for p in decls.params.values()
        ),
        logits=to_sympy(decls.logits.expr),
        logits_line=line(decls.logits),
        embedding=embedding,
        fit=fit,
        source_name=source.name,
        participant_table=(
            table_path(source.name, decls.participants.path) if decls.participants else None
        ),
        offered=tuple(c.name.id for c in decls.offered.columns) if decls.offered else (),
        offered_line=line(decls.offered) if decls.offered else 0,
    )


def _filter(trial_filter: ast.TrialFilter) -> ir.TrialFilter:
    condition = trial_filter.condition
    if condition is None:
        return ir.TrialFilter(trial_filter.kind)
    left, right = to_sympy(condition.left), to_sympy(condition.right)
    # Unevaluated: a condition such as c + 1 > c stays a comparison, not True.
    relation = _RELATIONS[condition.op](left, right, evaluate=False)
    return ir.TrialFilter(trial_filter.kind, relation)
