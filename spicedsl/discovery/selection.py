"""Choosing one candidate equation per module by the choices they predict."""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Iterator, Sequence
from dataclasses import replace

import numpy as np

from spicedsl.discovery.equation import DiscoveredEquation, Powers, without_terms

Combination = dict[str, DiscoveredEquation]
#: Scores combinations, each for one network: ``[(network, combination, near), ...]`` ->
#: scores, where ``near`` is the network's current combination (one module away), or None.
Scorer = Callable[[list[tuple[int, Combination, Combination | None]]], list[float]]


def select_equations(
    candidates: Sequence[dict[str, list[DiscoveredEquation]]], score: Scorer
) -> list[Combination]:
    """One equation per module for each network (an ensemble's members), by coordinate
    descent on ``score`` (lower is better; ties keep the earlier candidate).

    ``candidates[n]`` are network ``n``'s candidates. For each network: start from every
    module's first candidate; then, module by module, keep the candidate whose equation
    model scores best with the other modules' choices fixed, and sweep over the modules
    again while a choice changes (at most ``MAX_SWEEPS`` times): a module's best equation
    can depend on what the others do. With the BIC of the choices as score, a term stays
    only if it pays for itself in predicted choices, not just in fitting the network.

    When no candidate of a module can be scored (every refit diverged), the network
    starts again from the first combination that can (see :func:`_scorable_starts`): from
    a start whose refit diverges, every single change may diverge too, and the descent
    would be stuck.

    The descent changes one module at a time, so it cannot move a constant from one
    module to another; after it, the values' free offset is moved where it scores best
    (:func:`_move_offsets`), and the descent goes on from there.

    The networks go through the descent side by side: each step scores the options of
    every network that is still moving in one call, so that they can be fitted together.
    """
    chosen = [{name: options[0] for name, options in own.items()} for own in candidates]
    scored: set[int] = set()  # the networks whose current combination has a finite score
    _descend(chosen, candidates, score, scored, list(range(len(candidates))))
    moved = _move_offsets(chosen, score)
    # The moved equations join the candidates, so that the descent can keep them.
    candidates = [
        {
            name: [*options, *([chosen[n][name]] if n in moved else [])]
            for name, options in own.items()
        }
        for n, own in enumerate(candidates)
    ]
    _descend(chosen, candidates, score, scored, moved)
    return chosen


def _descend(
    chosen: list[Combination],
    candidates: Sequence[dict[str, list[DiscoveredEquation]]],
    score: Scorer,
    scored: set[int],
    moving: list[int],
) -> None:
    """The coordinate descent of :func:`select_equations`, from ``chosen`` (changed in
    place) for the networks ``moving``."""
    modules = list(candidates[0]) if candidates else []
    for _ in range(MAX_SWEEPS):
        if not moving:
            break
        changed = set()
        for name in modules:
            asked = [
                (n, {**chosen[n], name: option}, chosen[n] if n in scored else None)
                for n in moving
                for option in candidates[n][name]
            ]
            scores = iter(score(asked))
            stuck = []
            for n in moving:
                options = candidates[n][name]
                values = [next(scores) for _ in options]
                best = int(np.argmin(values))
                if not math.isfinite(values[best]):
                    stuck.append(n)
                    continue
                scored.add(n)
                if options[best] != chosen[n][name]:
                    chosen[n][name] = options[best]
                    changed.add(n)
            if stuck:
                starts = _scorable_starts([candidates[n] for n in stuck], score, stuck)
                for n, start in zip(stuck, starts, strict=True):
                    chosen[n] = start
                scored.update(stuck)
                changed.update(stuck)
        moving = sorted(changed)


def _move_offsets(chosen: list[Combination], score: Scorer) -> list[int]:
    """Move the free offset of a state's values to where it scores best, for each network
    (``chosen`` changed in place); the networks whose combination changed.

    Choices do not change when every action's value moves by the same amount, and a
    learnt state is anchored only by its initial value: a network may offset its values,
    and its equations then carry a constant that the truth lacks, in one module or
    another. Moving a constant between two modules changes both at once, which the
    descent, one module at a time, cannot do. The options (see :func:`_offset_moves`)
    are scored beside the combination itself, which stays unless one beats it.
    """
    options = [[own, *_offset_moves(own)] for own in chosen]
    values = iter(score([(n, c, None) for n, own in enumerate(options) for c in own]))
    moved = []
    for n, own in enumerate(options):
        best = int(np.argmin([next(values) for _ in own]))
        if best:
            chosen[n] = own[best]
            moved.append(n)
    return moved


def _offset_moves(combination: Combination) -> list[Combination]:
    """For each module of ``combination`` with a constant and a self-coefficient ``a``
    other than 1: the combination with the state shifted by the offset ``d = c / (1 -
    a)`` that removes that constant ``c``. Every other module of the same state then has
    the constant ``c' + (a' - 1) d`` (its own ``c'`` and ``a'``; a module without a
    constant gets one)."""
    moves = []
    for name, equation in combination.items():
        slope = 1 - _coefficients(equation, ((equation.target, 1),))
        if not _has(equation, ONE) or np.any(slope == 0):
            continue
        offset = _coefficients(equation, ONE) / slope
        moved = {name: without_terms(equation, {ONE})}
        for other, theirs in combination.items():
            if other != name and theirs.target == equation.target:
                own = _coefficients(theirs, ((theirs.target, 1),))
                shift = offset if theirs.per_participant else np.mean(offset)
                constant = _coefficients(theirs, ONE) + (own - 1) * shift
                moved[other] = _with_constant(theirs, constant)
        if len(moved) > 1:
            moves.append({**combination, **moved})
    return moves


ONE: Powers = ()  # the constant term


def _has(equation: DiscoveredEquation, powers: Powers) -> bool:
    return any(p == powers for _, p in equation.terms)


def _coefficients(equation: DiscoveredEquation, powers: Powers) -> np.ndarray:
    """The coefficient of the term ``powers`` (0 without it): one per participant for a
    per-participant equation, else one."""
    for i, (coefficient, p) in enumerate(equation.terms):
        if p == powers:
            rows = equation.per_participant
            return np.array([row[i] for row in rows]) if rows else np.array([coefficient])
    return np.zeros(len(equation.per_participant or [()]))


def _with_constant(equation: DiscoveredEquation, constant: np.ndarray) -> DiscoveredEquation:
    """``equation`` with its constant term (added first if it has none) set to
    ``constant`` (one value per participant for a per-participant equation)."""
    equation = without_terms(equation, {ONE})
    rows = equation.per_participant
    return replace(
        equation,
        terms=((float(np.mean(constant)), ONE), *equation.terms),
        per_participant=tuple((float(c), *row) for c, row in zip(constant, rows, strict=True))
        if rows
        else None,
    )


MAX_SWEEPS = 3
MAX_STARTS = 30
# Starting combinations scored at once for a network that needs one.
STARTS_AT_ONCE = 4


def _scorable_starts(
    candidates: Sequence[dict[str, list[DiscoveredEquation]]],
    score: Scorer,
    networks: Sequence[int],
) -> list[Combination]:
    """For each of ``networks``, whose candidates are ``candidates``, the first
    combination of its candidates with a finite score, best-ranked first (in order of the
    candidates' summed ranks; at most ``MAX_STARTS`` are tried, else the first)."""
    orders = [itertools.islice(_combinations(options), MAX_STARTS) for options in candidates]
    starts: list[Combination | None] = [None] * len(candidates)
    firsts: list[Combination] = [{} for _ in candidates]
    while True:
        asked, owners = [], []
        for i, order in enumerate(orders):
            if starts[i] is None:
                for combination in itertools.islice(order, STARTS_AT_ONCE):
                    asked.append((networks[i], combination, None))
                    owners.append(i)
        if not asked:
            break
        for i, (_, combination, _), value in zip(owners, asked, score(asked), strict=True):
            firsts[i] = firsts[i] or combination
            if starts[i] is None and math.isfinite(value):
                starts[i] = combination
    return [dict(start or first) for start, first in zip(starts, firsts, strict=True)]


def _combinations(candidates: dict[str, list[DiscoveredEquation]]) -> Iterator[Combination]:
    """The combinations of one candidate per module, by increasing sum of their ranks."""
    names = list(candidates)
    for combination in _by_rank_sum([len(candidates[name]) for name in names]):
        yield {name: candidates[name][i] for name, i in zip(names, combination, strict=True)}


def _by_rank_sum(sizes: list[int]) -> Iterator[tuple[int, ...]]:
    """Index combinations for lists of ``sizes``, by increasing sum of the indices.

    >>> list(_by_rank_sum([2, 3]))
    [(0, 0), (0, 1), (1, 0), (0, 2), (1, 1), (1, 2)]
    """

    def with_sum(sizes: list[int], total: int) -> Iterator[tuple[int, ...]]:
        if not sizes:
            if total == 0:
                yield ()
            return
        for first in range(min(sizes[0] - 1, total) + 1):
            for rest in with_sum(sizes[1:], total - first):
                yield (first, *rest)

    for total in range(sum(size - 1 for size in sizes) + 1):
        yield from with_sum(sizes, total)
