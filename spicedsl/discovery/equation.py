"""A discovered equation: the sparse polynomial that replaces one learnable module."""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
import sympy

from spicedsl import ir

Powers = tuple[tuple[str, int], ...]


@dataclass(frozen=True)
class DiscoveredEquation:
    """``target[k+1] = sum(coefficient * prod(name ^ power))`` for one learnable module.

    ``terms`` lists the library's terms with non-zero coefficients, in library order;
    the names are the module's target state and inputs.
    """

    module: str
    target: str
    terms: tuple[tuple[float, Powers], ...]
    n_samples: int
    # One row of coefficients per participant, in the order of ``terms`` (whose
    # coefficients are then the participants' mean); None for a shared equation.
    per_participant: tuple[tuple[float, ...], ...] | None = None

    @property
    def n_coefficients(self) -> int:
        return len(self.terms)


Term = tuple[str, tuple[tuple[str, int], ...]]  # (module, powers): a term of an equation


def equation_expr(equation: DiscoveredEquation) -> sympy.Expr:
    """The sympy form of a discovered equation."""
    return sympy.Add(
        *(
            sympy.Float(c) * sympy.Mul(*(ir.symbol(n) ** p for n, p in powers))
            for c, powers in equation.terms
        )
    )


def with_coefficients(
    module: str,
    equation: DiscoveredEquation,
    coefficient_params: dict[str, tuple[str, int]],
    values: dict[str, np.ndarray],
) -> DiscoveredEquation:
    """``equation`` with the refit values of its coefficient params."""
    terms = list(equation.terms)
    rows = [list(row) for row in equation.per_participant or ()]
    for param, (owner, index) in coefficient_params.items():
        if owner != module:
            continue
        value = values[param]
        terms[index] = (float(np.mean(value)), terms[index][1])
        for row, own in zip(rows, value, strict=True) if rows else ():
            row[index] = float(own)
    per_participant = tuple(tuple(row) for row in rows) if rows else None
    return replace(equation, terms=tuple(terms), per_participant=per_participant)


def without_terms(equation: DiscoveredEquation, dropped: set) -> DiscoveredEquation:
    """``equation`` without the terms whose powers are in ``dropped``."""
    keep = [i for i, (_, powers) in enumerate(equation.terms) if powers not in dropped]
    rows = equation.per_participant
    return replace(
        equation,
        terms=tuple(equation.terms[i] for i in keep),
        per_participant=tuple(tuple(row[i] for i in keep) for row in rows) if rows else None,
    )
