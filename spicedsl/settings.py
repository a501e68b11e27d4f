"""Fit settings: their names, defaults and valid ranges, in one table.

The model file's ``fit`` statement, the command line and the Python API all set the
same options, checked by the same rules.

>>> FitSettings().epochs
1024
>>> OPTIONS["learning_rate"].problem(0.0)
'must be greater than 0'
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from dataclasses import dataclass

# The most actions a task may have (in a model's `actions`, or inferred from data).
MAX_ACTIONS = 1024

# What data loading does with a trial without a choice (a time-out): keep its place in
# its session, not predicted ("skip"), or refuse it ("error").
MISSED_TRIALS = ("skip", "error")

# The options that train a network (the others concern learnable modules and equations):
# all that the GRU baseline takes.
TRAINING_OPTIONS = ("epochs", "learning_rate", "weight_decay", "convergence", "patience")
# Hidden units of the GRU baseline by default, as SPICE's GRU baseline.
BASELINE_HIDDEN = 16


# The most members an ensemble may have.
MAX_MEMBERS = 256


def _pairs(members: float) -> str | None:
    if members > 1 and members % 2:
        return "must be 1 or an even number: members come in complementary pairs"
    return None


@dataclass(frozen=True)
class Option:
    name: str
    integer: bool
    minimum: float
    minimum_inclusive: bool
    maximum: float | None
    help: str
    # A further rule: why a value in range is still invalid, or None.
    rule: Callable[[float], str | None] | None = None

    def problem(self, value: float) -> str | None:
        """Why ``value`` is invalid for this option, or None when it is valid.

        >>> OPTIONS["ensemble"].problem(3)
        'must be 1 or an even number: members come in complementary pairs'
        """
        if not math.isfinite(value):
            return "must be a finite number"
        if self.integer and value != int(value):
            return "must be a whole number"
        if value < self.minimum or (value == self.minimum and not self.minimum_inclusive):
            comparison = "at least" if self.minimum_inclusive else "greater than"
            return f"must be {comparison} {self.minimum:g}"
        if self.maximum is not None and value > self.maximum:
            return f"must be at most {self.maximum:g}"
        return self.rule(value) if self.rule else None


@dataclass(frozen=True)
class FitSettings:
    """Defaults of ``spicedsl fit``; each can be set in the model file and on the CLI."""

    epochs: int = 1024
    learning_rate: float = 0.03
    weight_decay: float = 1e-4
    hidden_size: int = 8
    dropout: float = 0.0
    convergence: float = 1e-5
    patience: int = 50
    degree: int = 1
    threshold: float = 0.05
    sindy_sessions: int = 8
    sindy_trials: int = 1000
    sindy_repeat: int = 5
    ensemble: int = 1
    stability: float = 0.7
    pooling: int = 1
    self_bound: int = 1

    def replace(self, **changes: float) -> FitSettings:
        """A copy with ``changes`` applied; integers stay integers."""
        typed = {k: int(v) if OPTIONS[k].integer else float(v) for k, v in changes.items()}
        return dataclasses.replace(self, **typed)


OPTIONS: dict[str, Option] = {
    o.name: o
    for o in (
        Option("epochs", True, 1, True, None, "maximum training epochs"),
        Option("learning_rate", False, 0, False, None, "Adam learning rate"),
        Option("weight_decay", False, 0, True, None, "L2 penalty on network weights"),
        Option("hidden_size", True, 1, True, 1024, "hidden units of each learnable module"),
        Option("dropout", False, 0, True, 0.95, "dropout in learnable modules while training"),
        Option("convergence", False, 0, True, None, "stop when the smoothed loss change is below"),
        Option("patience", True, 1, True, None, "epochs the change must stay below convergence"),
        Option("degree", True, 1, True, 3, "polynomial degree of equation libraries"),
        Option("threshold", False, 0, True, None, "sparsity threshold of the equation fit"),
        Option("sindy_sessions", True, 1, True, None, "off-policy sessions for the equation fit"),
        Option("sindy_trials", True, 2, True, None, "trials of each off-policy session"),
        Option("sindy_repeat", True, 1, True, None, "times each action is chosen in a row there"),
        Option(
            "ensemble",
            True,
            1,
            True,
            MAX_MEMBERS,
            "networks trained at once, each on half of the training sessions",
            _pairs,
        ),
        Option(
            "stability",
            False,
            0.5,
            False,
            1,
            "share of an ensemble's members that must select a term to keep it",
        ),
        Option(
            "pooling",
            True,
            0,
            True,
            1,
            "1: shrink per-participant values toward their group (estimated); 0: do not",
        ),
        Option(
            "self_bound",
            True,
            0,
            True,
            1,
            "1: keep each equation's coefficient of its own state within [-1, 1]; 0: do not",
        ),
    )
}
