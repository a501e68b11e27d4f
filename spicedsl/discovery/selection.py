"""Choosing one candidate equation per module by the choices they predict."""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Iterator, Sequence

import numpy as np

from spicedsl.discovery.equation import DiscoveredEquation

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

    The networks go through the descent side by side: each step scores the options of
    every network that is still moving in one call, so that they can be fitted together.
    """
    chosen = [{name: options[0] for name, options in own.items()} for own in candidates]
    scored: set[int] = set()  # the networks whose current combination has a finite score
    moving = list(range(len(candidates)))
    modules = list(candidates[0]) if candidates else []
    for _ in range(MAX_SWEEPS):
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
        if not moving:
            break
    return chosen


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
