"""Discovered equations whose state grows without bound when they are applied again and
again: flagged in the fit's report, in the fitted model's text and in a note.

An equation is **unstable** (for a participant, when its coefficients are per
participant) when its coefficient ``b`` on the state's own linear term has ``|b| > 1``
and none of its other terms contains the state (with a non-zero coefficient for that
participant). The update is then ``x' = b * x + g(inputs)``: each update multiplies a
difference in ``x`` by ``b``, so repeated updates drive ``x`` away without bound
(alternating in sign when ``b < -1``). The fitted equation's clip bounds it, but the
state then sits at the clip. Equations with other terms in the state (``x ^ 2``,
``x * r``) are not judged: whether those pull it back depends on the values it takes
and on the inputs.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING

from spicedsl.fitted import with_comment
from spicedsl.runtime.param_table import listed_labels

if TYPE_CHECKING:
    from spicedsl.discovery.equation import DiscoveredEquation


@dataclass(frozen=True)
class UnstableEquation:
    """An unstable equation: its module, its state, and the self-coefficients that make
    it unstable, one per participant in ``participants`` (None for a shared equation,
    with its one coefficient)."""

    module: str
    state: str
    coefficients: tuple[float, ...]
    participants: tuple[str, ...] | None


def unstable_equations(
    equations: Mapping[str, DiscoveredEquation], participant_ids: Sequence[str]
) -> list[UnstableEquation]:
    """The unstable equations among ``equations`` (see the module's docstring), with the
    participants of ``participant_ids`` (in the order of per-participant rows) for whom
    they are.

    >>> from spicedsl.discovery.equation import DiscoveredEquation
    >>> x = (("x", 1),)
    >>> shared = DiscoveredEquation("m", "x", ((0.1, ()), (1.2, x)), 50)
    >>> unstable_equations({"m": shared}, ["1"])
    [UnstableEquation(module='m', state='x', coefficients=(1.2,), participants=None)]
    >>> held = DiscoveredEquation("m", "x", ((1.2, x), (-0.3, (("x", 2),))), 50)
    >>> unstable_equations({"m": held}, ["1"])
    []
    """
    found = []
    for module, equation in equations.items():
        rows = equation.per_participant or (tuple(c for c, _ in equation.terms),)
        coefficients = [_self_coefficient(equation, row) for row in rows]
        flagged = [i for i, b in enumerate(coefficients) if b is not None and abs(b) > 1]
        if not flagged:
            continue
        who = None
        if equation.per_participant is not None:
            who = tuple(participant_ids[i] for i in flagged)
        own = tuple(coefficients[i] for i in flagged)
        found.append(UnstableEquation(module, equation.target, own, who))
    return found


def _self_coefficient(equation: DiscoveredEquation, row: Sequence[float]) -> float | None:
    """The coefficient in ``row`` on the equation's state alone, or None when another
    term with a non-zero coefficient in ``row`` also contains the state."""
    own = None
    for coefficient, (_, powers) in zip(row, equation.terms, strict=True):
        if coefficient == 0 or equation.target not in (name for name, _ in powers):
            continue
        if powers != ((equation.target, 1),):
            return None
        own = coefficient
    return own


def unstable_report(
    equations: Mapping[str, DiscoveredEquation], participant_ids: Sequence[str]
) -> list[dict[str, object]]:
    """The unstable equations as the fit's ``report.json`` lists them."""
    return [asdict(found) for found in unstable_equations(equations, participant_ids)]


def flag_unstable_equations(
    fitted_text: str,
    equations: Mapping[str, DiscoveredEquation],
    participant_ids: Sequence[str],
) -> str:
    """``fitted_text`` with a trailing comment on the line of each unstable equation,
    and a note through :mod:`warnings` for each.

    >>> import warnings
    >>> from spicedsl.discovery.equation import DiscoveredEquation
    >>> text = "module m updates x when chosen\\n    m = clip(1.2 * x, -10, 10)\\n"
    >>> unstable = {"m": DiscoveredEquation("m", "x", ((1.2, (("x", 1),)),), 50)}
    >>> with warnings.catch_warnings(record=True):
    ...     flagged = flag_unstable_equations(text, unstable, ["1"])
    >>> print(flagged.splitlines()[1].replace("  #", "\\n    #"))
        m = clip(1.2 * x, -10, 10)
        # unstable: x' = 1.2 x + ... grows until the clip holds it
    """
    n = len(participant_ids)
    for found in unstable_equations(equations, participant_ids):
        x = found.state
        largest = max(found.coefficients, key=abs)
        if found.participants is None:
            update, whom, who = f"{x}' = {largest:.4g} {x} + ...", "", ""
        else:
            update = f"{x}' = b {x} + ... with |b| up to {abs(largest):.4g}"
            k = len(found.participants)
            whom = f" for {k} of {n} participants"
            who = f" for participants {listed_labels(found.participants)} ({k} of {n})"
        comment = f"unstable{whom}: {update} grows until the clip holds it"
        fitted_text = with_comment(fitted_text, found.module, comment)
        warnings.warn(
            f"module '{found.module}' is unstable{who}: {update}, and no other term in {x}, "
            f"so repeated updates grow {x} until the clip holds it",
            stacklevel=2,
        )
    return fitted_text
