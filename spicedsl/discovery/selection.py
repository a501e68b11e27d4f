"""Choosing one candidate equation per module by the choices they predict."""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Iterator

import numpy as np

from spicedsl.discovery.equation import DiscoveredEquation


def select_equations(
    candidates: dict[str, list[DiscoveredEquation]],
    score: Callable[[dict[str, DiscoveredEquation]], float],
) -> dict[str, DiscoveredEquation]:
    """One equation per module, by coordinate descent on ``score`` (lower is better; ties
    keep the earlier candidate).

    Starts from each module's first candidate; then, module by module, keeps the
    candidate whose equation model scores best with the other modules' choices fixed,
    and sweeps over the modules again while a choice changes (at most ``MAX_SWEEPS``
    times): a module's best equation can depend on what the others do. With the BIC of
    the choices as score, a term stays only if it pays for itself in predicted choices,
    not just in fitting the network.

    The start is the first combination, in order of the candidates' summed ranks, that
    can be scored (a finite score; at most ``MAX_STARTS`` are tried): from a start whose
    refit diverges, every single change may diverge too, and the descent would be stuck.
    """
    chosen = _scorable_start(candidates, score)
    for _ in range(MAX_SWEEPS):
        before = dict(chosen)
        for name, options in candidates.items():
            scores = [score({**chosen, name: option}) for option in options]
            chosen[name] = options[int(np.argmin(scores))]
        if chosen == before:
            break
    return chosen


MAX_SWEEPS = 3
MAX_STARTS = 30


def _scorable_start(
    candidates: dict[str, list[DiscoveredEquation]],
    score: Callable[[dict[str, DiscoveredEquation]], float],
) -> dict[str, DiscoveredEquation]:
    """The first combination of candidates with a finite score, best-ranked first."""
    names = list(candidates)
    first = {name: options[0] for name, options in candidates.items()}
    ranks = _by_rank_sum([len(candidates[name]) for name in names])
    for combination in itertools.islice(ranks, MAX_STARTS):
        start = {name: candidates[name][i] for name, i in zip(names, combination, strict=True)}
        if math.isfinite(score(start)):
            return start
    return first


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
