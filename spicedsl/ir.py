"""The checked model: the one description that code generation, simulation and fitting read.

Expressions are sympy objects whose symbols come from :func:`symbol`. Nothing here
refers to the parse tree or the AST; ``line`` fields point back into the model file
for messages and for the ``# model.spice:LINE`` comments of generated code.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import sympy

from spicedsl.columns import CHOICE_COLUMN, REWARD_COLUMN, REWARDS_COLUMN
from spicedsl.settings import FitSettings


def symbol(name: str) -> sympy.Symbol:
    """The sympy symbol of a model name (states, controls and params alike)."""
    return sympy.Symbol(name, real=True)


DATA_PREFIX = "data."


def column_symbol(column: str) -> sympy.Symbol:
    """The sympy symbol of the data column ``column`` (no model name has a dot)."""
    return symbol(DATA_PREFIX + column)


def column_of(symbol: sympy.Symbol) -> str | None:
    """The data column a symbol stands for, or None for a model name."""
    return symbol.name[len(DATA_PREFIX) :] if symbol.name.startswith(DATA_PREFIX) else None


def vector_symbol(values: tuple[float, ...]) -> sympy.Symbol:
    """The sympy symbol of a per-action constant (no model name has brackets).

    >>> vector_symbol((-1.0, 1.0)), vector_of(vector_symbol((-1.0, 1.0)))
    ([-1.0, 1.0], (-1.0, 1.0))
    """
    return symbol("[" + ", ".join(repr(float(v)) for v in values) + "]")


def vector_of(symbol: sympy.Symbol) -> tuple[float, ...] | None:
    """The values of a per-action constant's symbol, or None for any other symbol."""
    if not symbol.name.startswith("["):
        return None
    return tuple(float(v) for v in symbol.name[1:-1].split(","))


@dataclass(frozen=True)
class State:
    name: str
    initial: float
    line: int


@dataclass(frozen=True)
class Control:
    """A per-trial signal: ``expr`` of data columns (:func:`column_symbol`) and the
    start-of-trial values of states. ``before_choice``: seen before the trial's choice."""

    name: str
    expr: sympy.Expr
    before_choice: bool
    line: int

    @cached_property
    def columns(self) -> tuple[str, ...]:
        """The data columns the control reads."""
        found = (column_of(s) for s in self.expr.free_symbols)
        return tuple(sorted(c for c in found if c is not None))

    @property
    def column(self) -> str | None:
        """The data column, when the control is that column as it is."""
        return column_of(self.expr) if isinstance(self.expr, sympy.Symbol) else None

    @property
    def state(self) -> str | None:
        """The state, when the control copies a state's start-of-trial value."""
        if isinstance(self.expr, sympy.Symbol) and column_of(self.expr) is None:
            return self.expr.name
        return None


@dataclass(frozen=True)
class TrialFilter:
    """``chosen``, ``not_chosen``, ``all``, or ``condition`` with a sympy relational;
    ``chosen`` and ``not_chosen`` may have a relational too, and then both must hold."""

    kind: str
    condition: sympy.Basic | None = None


@dataclass(frozen=True)
class LearnedModule:
    """A module learnt as a network, then replaced by a sparse polynomial equation."""

    name: str
    target: str
    filter: TrialFilter
    inputs: tuple[str, ...]
    activation: str | None
    degree: int
    threshold: float
    embedded: bool
    line: int


@dataclass(frozen=True)
class EquationModule:
    """A hard-coded module: the target's new value is ``expr``.

    ``n_constants`` counts the numbers in the equation as written that are not integers
    (``x + 0.3 * (c - x)`` has one, though sympy spreads it over two terms).
    """

    name: str
    target: str
    filter: TrialFilter
    expr: sympy.Expr
    line: int
    n_constants: int


Module = LearnedModule | EquationModule


@dataclass(frozen=True)
class Param:
    """A named scalar. Learnable unless ``fixed``; ``value`` is its value or starting point."""

    name: str
    lower: float | None
    upper: float | None
    value: float | None
    fixed: bool
    per_participant: bool
    embedded: bool
    line: int

    @property
    def initial(self) -> float:
        """The starting value of a learnable param: its ``init``, or a point inside its bounds."""
        if self.value is not None:
            return self.value
        if self.lower is not None and self.upper is not None:
            return (self.lower + self.upper) / 2
        if self.lower is not None:
            return self.lower + 1.0
        if self.upper is not None:
            return self.upper - 1.0
        return 0.0


@dataclass(frozen=True)
class Embedding:
    size: int
    dropout: float


@dataclass(frozen=True)
class Model:
    name: str
    description: str | None
    n_actions: int | None  # None: taken from the data
    states: tuple[State, ...]
    controls: tuple[Control, ...]
    modules: tuple[Module, ...]
    params: tuple[Param, ...]
    logits: sympy.Expr
    logits_line: int
    embedding: Embedding | None
    fit: FitSettings
    source_name: str
    participant_table: str | None = None  # path of the table of per-participant values
    # The columns of the items offered on each trial: several item columns, or one
    # per-item 0/1 column; empty when every action is offered on every trial.
    offered: tuple[str, ...] = ()
    offered_line: int = 0

    @cached_property
    def table_params(self) -> tuple[Param, ...]:
        """The params a participant table may give values: per participant, not fixed."""
        return tuple(p for p in self.params if p.per_participant and not p.fixed)

    @cached_property
    def learned_modules(self) -> tuple[LearnedModule, ...]:
        return tuple(m for m in self.modules if isinstance(m, LearnedModule))

    @cached_property
    def data_columns(self) -> tuple[str, ...]:
        """Extra data columns the controls read (beyond choice and rewards)."""
        fixed = {CHOICE_COLUMN, REWARD_COLUMN, REWARDS_COLUMN}
        read = [column for c in self.controls for column in c.columns]
        return tuple(dict.fromkeys(c for c in read if c not in fixed))

    @cached_property
    def reads_every_reward(self) -> bool:
        """True when the model reads every action's reward (``data.rewards``)."""
        return any(REWARDS_COLUMN in c.columns for c in self.controls)

    @cached_property
    def vectors(self) -> tuple[sympy.Symbol, ...]:
        """The per-action constants (:func:`vector_symbol`) the model's expressions use."""
        exprs = [self.logits, *(c.expr for c in self.controls)]
        exprs += [m.expr for m in self.modules if isinstance(m, EquationModule)]
        exprs += [m.filter.condition for m in self.modules if m.filter.condition is not None]
        found = {s for e in exprs for s in e.free_symbols if vector_of(s) is not None}
        return tuple(sorted(found, key=lambda s: s.name))

    @cached_property
    def predicts_first_choice(self) -> bool:
        """True when the choice rule reads something seen before the choice, or a
        per-action constant: then even the first choice of a session can be told from a
        guess."""
        controls = {c.name for c in self.controls if c.before_choice}
        read = self.logits.free_symbols
        return any(s.name in controls or vector_of(s) is not None for s in read)

    @cached_property
    def is_generative(self) -> bool:
        """True when every mechanism is known: no learnable module, every param fixed or
        given by the participant table."""
        given = set(self.table_params) if self.participant_table else set()
        return not self.learned_modules and all(p.fixed or p in given for p in self.params)

    def n_free_parameters(self, participant_values: dict[str, list[float]] | None = None) -> int:
        """Every param, plus every non-integer number written in the module equations.

        This is the count behind AIC and BIC for a fully specified model: a fitted model's
        discovered coefficients are such numbers, while integers (as in ``1 - x``) are
        structure. A number counts once as written, as a param holding it would. A param
        with a value per participant in ``participant_values`` counts once for each
        participant whose value is not 0 (a term absent for them).
        """
        given = participant_values or {}
        params = sum(
            sum(1 for v in given[p.name] if v != 0) if p.name in given else 1 for p in self.params
        )
        numbers = sum(m.n_constants for m in self.modules if isinstance(m, EquationModule))
        return params + numbers

    def binary_inputs(self, module: LearnedModule) -> tuple[str, ...]:
        """Inputs of ``module`` that only take the values 0 and 1 whatever the data."""
        controls = {c.name: c for c in self.controls}
        return tuple(
            name
            for name in module.inputs
            if name in controls and controls[name].column == CHOICE_COLUMN
        )
