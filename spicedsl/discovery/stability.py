"""Stability selection over an ensemble: which terms the data support, with error control.

Each member of an ensemble is trained on half of the training sessions and finds its
own equations. A term's selection frequency is the share of members whose equations
have it; a term is kept when its frequency reaches the ``stability`` threshold
(Meinshausen & Bühlmann, 2010). The halves are drawn as complementary pairs: each
pair splits the training sessions into two disjoint halves (Shah & Samworth, 2013).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np

from spicedsl.discovery.equation import DiscoveredEquation, Powers
from spicedsl.discovery.refit import Refit
from spicedsl.fitted import equation_text, term_text


def complementary_halves(
    sessions: np.ndarray,
    members: int,
    rng: np.random.Generator,
    groups: np.ndarray | None = None,
) -> list[np.ndarray]:
    """The training sessions of each member: ``members / 2`` complementary pairs, each a
    random split of ``sessions`` into two disjoint halves.

    With ``groups`` (one label per session, say its participant), each group's sessions
    are split in half, so that both halves hold as many sessions of everyone as can be;
    a group's odd session goes to the half that has fewer so far.

    >>> halves = complementary_halves(np.arange(10), 4, np.random.default_rng(0))
    >>> [len(h) for h in halves], np.sort(np.concatenate(halves[:2])).tolist()
    ([5, 5, 5, 5], [0, 1, 2, 3, 4, 5, 6, 7, 8, 9])
    """
    groups = np.zeros(len(sessions), dtype=np.int64) if groups is None else np.asarray(groups)
    halves: list[np.ndarray] = []
    for _ in range(members // 2):
        first: list[np.ndarray] = []
        second: list[np.ndarray] = []
        for group in np.unique(groups):
            mine = rng.permutation(sessions[groups == group])
            cut = len(mine) // 2
            if len(mine) % 2 and sum(map(len, first)) < sum(map(len, second)):
                cut += 1
            first.append(mine[:cut])
            second.append(mine[cut:])
        halves += [np.sort(np.concatenate(first)), np.sort(np.concatenate(second))]
    return halves


@dataclass(frozen=True)
class TermFrequency:
    """How often the members selected one term of a module's library, and the spread of
    its coefficient among the members that did."""

    module: str
    powers: Powers
    selected: int  # members whose equation has the term
    frequency: float
    kept: bool
    # The members' coefficients of the term (for a per-participant equation, their means
    # over participants): median and central interval (INTERVAL of them).
    median: float
    interval: tuple[float, float]


@dataclass(frozen=True)
class Stability:
    """What stability selection over an ensemble found.

    ``terms`` holds every term some member selected, module by module, most frequent
    first; ``members`` the equations and params each member's own refit gave, on its
    half of the training sessions, for the members that vote: ``voters`` (their indices)
    of the ``trained`` members (those left out learnt nothing).
    """

    threshold: float
    libraries: dict[str, tuple[Powers, ...]]
    terms: tuple[TermFrequency, ...]
    members: tuple[Refit, ...]
    param_intervals: dict[str, tuple[float, float]]
    voters: tuple[int, ...] = ()
    trained: int = 0
    # Terms of the fitted model beyond the stable ones: those of the members' most
    # frequent structure, when it predicts the training choices better (see
    # modal_structure), and how many members chose that structure.
    added: tuple[tuple[str, Powers], ...] = ()
    modal_members: int = 0

    def stable(self) -> dict[str, set[Powers]]:
        """The kept terms of each module: those that reach the threshold."""
        return {
            module: {t.powers for t in self.frequencies(module) if t.kept}
            for module in self.libraries
        }

    @property
    def left_out(self) -> list[int]:
        """The members that do not vote (indices)."""
        return [m for m in range(self.trained) if m not in self.voters]

    @property
    def library_size(self) -> int:
        """``p``: the number of terms in the libraries of all modules."""
        return sum(len(terms) for terms in self.libraries.values())

    @property
    def mean_selected(self) -> float:
        """``q``: the mean number of terms a member selected (all modules together)."""
        return float(np.mean([_size(member) for member in self.members]))

    @property
    def error_bound(self) -> float | None:
        """The bound on the expected number of falsely kept terms, ``q² / ((2π − 1) p)``
        for threshold ``π`` (Meinshausen & Bühlmann, 2010, Theorem 1; Shah & Samworth,
        2013, show that it holds for complementary pairs as drawn here). It assumes, as
        they do, that the falsely selected terms are exchangeable and that a member
        selects no worse than at random. None for an empty library."""
        if not self.library_size:
            return None
        return self.mean_selected**2 / ((2 * self.threshold - 1) * self.library_size)

    def frequencies(self, module: str) -> list[TermFrequency]:
        """The terms of ``module`` that some member selected, most frequent first."""
        return [term for term in self.terms if term.module == module]


#: The share of members' coefficients that a term's interval covers (the central 90 %).
INTERVAL = 0.9


def stability_selection(
    members: Sequence[Refit],
    libraries: dict[str, tuple[Powers, ...]],
    threshold: float,
    voters: Sequence[int] | None = None,
    trained: int | None = None,
) -> Stability:
    """Each term's selection frequency among the ``members``' equations; a term is kept
    when it reaches ``threshold``.

    Parameters
    ----------
    members : sequence of Refit
        Each voting member's chosen equations, refit on its own training sessions.
    libraries : dict
        Each module's library: the terms a member could have selected.
    threshold : float
        The share of members that must select a term to keep it, in (0.5, 1].
    voters, trained : sequence of int and int, optional
        The indices of the voting members among the ``trained`` ones (by default, all
        of them vote).
    """
    terms = []
    for module, library in libraries.items():
        found = []
        for powers in library:
            coefficients = [
                c for member in members for c, p in member.equations[module].terms if p == powers
            ]
            if not coefficients:
                continue
            frequency = len(coefficients) / len(members)
            found.append(
                TermFrequency(
                    module,
                    powers,
                    len(coefficients),
                    frequency,
                    frequency >= threshold,
                    float(np.median(coefficients)),
                    _interval(coefficients),
                )
            )
        terms += sorted(found, key=lambda term: -term.selected)
    names = members[0].params if members else {}
    intervals = {name: _interval([m.params[name] for m in members]) for name in names}
    voters = tuple(range(len(members))) if voters is None else tuple(voters)
    trained = len(members) if trained is None else trained
    return Stability(
        threshold, dict(libraries), tuple(terms), tuple(members), intervals, voters, trained
    )


def consensus(
    members: Sequence[Refit], stability: Stability, structure: dict[str, set[Powers]] | None = None
) -> tuple[dict[str, DiscoveredEquation], dict[str, np.ndarray]]:
    """The equations of a ``structure`` (module -> its terms; by default the stable terms),
    and every param's value, to refit from: each coefficient and param the median over
    the members that have it. A shared coefficient that most of them hold at exactly 1
    (structure, not a free number, as a snapped coefficient of a single network's
    equation) stays 1.

    Returns the equations and each param's values ``(1, n)`` (``n`` participants for a
    param per participant, else 1).
    """
    structure = stability.stable() if structure is None else structure
    equations = {}
    for module, library in stability.libraries.items():
        first = members[0].equations[module]
        terms, columns = [], []
        for powers in (p for p in library if p in structure[module]):
            having = [m.equations[module] for m in members if powers in _powers_of(m, module)]
            index = [_powers(eq).index(powers) for eq in having]
            values = [eq.terms[i][0] for eq, i in zip(having, index, strict=True)]
            structural = first.per_participant is None and 2 * values.count(1.0) > len(values)
            median = float(np.median(values))
            if median == 1.0 and not structural:
                # Exactly 1 would read as structure (held at 1): the nearest float instead.
                median = math.nextafter(1.0, 0.0)
            terms.append((1.0 if structural else median, powers))
            if first.per_participant is not None:
                rows = [
                    [row[i] for row in eq.per_participant]
                    for eq, i in zip(having, index, strict=True)
                ]
                columns.append(np.median(rows, axis=0))
        rows = None
        if first.per_participant is not None:
            rows = tuple(
                tuple(float(c[p]) for c in columns) for p in range(len(first.per_participant))
            )
        equations[module] = replace(first, terms=tuple(terms), per_participant=rows)
    params = {}
    for name in members[0].params:
        per_participant = name in members[0].participant_params
        values = [
            m.participant_params[name] if per_participant else [m.params[name]] for m in members
        ]
        params[name] = np.median(values, axis=0)[None, :]
    return equations, params


def modal_structure(stability: Stability) -> tuple[dict[str, set[Powers]], int] | None:
    """The structure (module -> terms) that the most members chose, among those that hold
    every stable term, and how many chose it; None when it is the stable terms alone or
    no member's structure holds them.

    Models with a symmetry split the members' votes: when a state's scale or offset is
    free, a constant may sit in the update of the chosen action or of the others, to the
    same effect, and each member picks one. Then the stable terms can lack a term that
    every member has in one place or the other; the members' most frequent structure
    still has it, and refit on all the training sessions its BIC tells.
    """
    stable = stability.stable()
    counts: dict[tuple, int] = {}
    for member in stability.members:
        key = tuple(
            (module, frozenset(_powers_of(member, module))) for module in stability.libraries
        )
        if all(stable[module] <= terms for module, terms in key):
            counts[key] = counts.get(key, 0) + 1
    if not counts:
        return None
    key = max(counts, key=lambda k: counts[k])  # the first of the most frequent
    structure = {module: set(terms) for module, terms in key}
    return None if structure == stable else (structure, counts[key])


def _powers(equation: DiscoveredEquation) -> list[Powers]:
    return [powers for _, powers in equation.terms]


def _powers_of(member: Refit, module: str) -> list[Powers]:
    return _powers(member.equations[module])


def _size(member: Refit) -> int:
    return sum(len(eq.terms) for eq in member.equations.values())


def _interval(values: Sequence[float]) -> tuple[float, float]:
    low, high = np.quantile(values, [(1 - INTERVAL) / 2, (1 + INTERVAL) / 2])
    return float(low), float(high)


def stability_report(stability: Stability) -> dict[str, object]:
    """What stability selection found, for ``report.json``."""
    return {
        "members": stability.trained,
        "voting": len(stability.members),
        "left_out": stability.left_out,
        "threshold": stability.threshold,
        "library_size": stability.library_size,
        "mean_selected": stability.mean_selected,
        "expected_false_terms_bound": stability.error_bound,
        "terms": [
            {
                "module": t.module,
                "term": term_text(t.powers),
                "selected": t.selected,
                "frequency": t.frequency,
                "kept": t.kept,
                "added_by_most_frequent_structure": (t.module, t.powers) in stability.added,
                "median": t.median,
                "interval": list(t.interval),
            }
            for t in stability.terms
        ],
        "most_frequent_structure_members": stability.modal_members,
        "interval_coverage": INTERVAL,
        "param_intervals": {name: list(v) for name, v in stability.param_intervals.items()},
        "member_equations": [
            {name: equation_text(eq, 17) for name, eq in member.equations.items()}
            for member in stability.members
        ],
        "member_params": [member.params for member in stability.members],
    }


def stability_summary(stability: Stability) -> str:
    """A comment line on the ensemble's selection, for people."""
    bound = stability.error_bound
    left_out = stability.left_out
    return (
        f"# ensemble of {stability.trained} networks, each trained on half of the "
        "training sessions"
        + (f" ({len(left_out)} left out: nearer chance than the others)" if left_out else "")
        + f"; a term is kept when at least {stability.threshold:g} of them select it"
        + (f"; expected number of falsely kept terms at most {bound:.3g}" if bound else "")
        + (
            f"; the members' most frequent structure ({stability.modal_members} of them) "
            f"adds {len(stability.added)} and predicts the training choices better"
            if stability.added
            else ""
        )
    )
