"""Partial pooling: per-participant values shrunk toward their group.

Each pooled value (a per-participant param, or a per-participant coefficient of a
discovered equation) is taken as drawn, on its raw scale (the unconstrained number the
refit moves, see :class:`~spicedsl.runtime.network.ParamSpec`), from a normal
distribution whose mean and spread the data estimate (empirical Bayes). The refit
maximises the participants' likelihood times that prior, the mean with the values;
between refits, the spread is estimated again from a Laplace approximation of each
participant's likelihood at the current values (see :func:`pseudo_observations` and
:func:`group_spreads`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

# A participant's curvature of the NLL below this (per raw unit squared) says nothing
# about the value: their value does not inform the group.
MIN_CURVATURE = 1e-6
# The least spread, as a fraction of the median participant's own standard error: the
# prior's curvature stays within 1/MIN_SPREAD**2 of the data's, so the refit stays well
# conditioned; at the floor, everyone has the group value to within a few thousandths.
MIN_SPREAD = 0.03
# A group needs at least this many participants whose data inform its value.
MIN_PARTICIPANTS = 2
# Iterations of the REML fixed point, and its tolerance on the spread's change.
REML_ITERATIONS = 200
REML_TOLERANCE = 1e-10


@dataclass(frozen=True)
class Group:
    """The group of one pooled param in each member of a refit.

    Attributes
    ----------
    mean, spread : numpy.ndarray
        ``(members,)``: the normal prior's mean (the mean of the pooled values) and
        standard deviation, on the raw scale; the spread is NaN where the param is not
        pooled (fewer than ``MIN_PARTICIPANTS`` informed it).
    variance : numpy.ndarray
        ``(members, participants)``: the variance of each participant's own estimate
        (the inverse curvature of their NLL); infinite where their data do not inform
        it or the value is not pooled.
    floored : numpy.ndarray
        ``(members,)``: whether the spread is at its floor (the participants differ no
        more than their own data's noise explains).
    """

    mean: np.ndarray
    spread: np.ndarray
    variance: np.ndarray
    floored: np.ndarray

    def shrinkage(self) -> np.ndarray:
        """Each participant's share of their own data in their value,
        ``spread² / (spread² + variance)``, ``(members, participants)``: 1 for a value
        as their data alone give it, 0 for the group's mean; 1 where not pooled.

        >>> variance = np.array([[1.0, 3.0, np.inf]])
        >>> group = Group(np.array([0.0]), np.array([1.0]), variance, np.array([False]))
        >>> group.shrinkage()
        array([[0.5 , 0.25, 0.  ]])
        """
        spread2 = self.spread[:, None] ** 2
        with np.errstate(invalid="ignore"):
            share = spread2 / (spread2 + self.variance)
        return np.where(np.isnan(self.spread)[:, None], 1.0, np.nan_to_num(share, nan=0.0))


def pseudo_observations(
    values: np.ndarray, gradient: np.ndarray, curvature: np.ndarray, active: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """What each participant's own data say about each of their values, the others held
    where they are: the maximum of the quadratic that matches their NLL at ``values``
    (one Newton step), and its variance (the inverse curvature).

    ``values``, ``gradient`` and ``curvature`` (the first and second derivatives of each
    participant's summed NLL in each value) and ``active`` (the values pooled) have one
    shape. A value not active, or whose curvature is below ``MIN_CURVATURE`` (the data
    do not inform it), stays put with an infinite variance. With the other values held,
    a value that trades off against another (a scale and an inverse temperature) seems
    better known than it is, which tends to shrink it less.

    >>> y, v = pseudo_observations(
    ...     np.array([1.0, 0.0]), np.array([-2.0, 3.0]), np.array([4.0, 0.0]), np.ones(2, bool)
    ... )
    >>> y.tolist(), v.tolist()
    ([1.5, 0.0], [0.25, inf])
    """
    informed = active & (curvature > MIN_CURVATURE)
    safe = np.where(informed, curvature, 1.0)
    y = np.where(informed, values - gradient / safe, values)
    return y, np.where(informed, 1 / safe, np.inf)


def median_error(variance: np.ndarray) -> np.ndarray:
    """The median standard error of the informed values of each group, ``(groups,)`` from
    ``(groups, n)`` variances (NaN for a group with none).

    >>> median_error(np.array([[1.0, 4.0, 9.0, np.inf], [np.inf, np.inf, np.inf, np.inf]]))
    array([ 2., nan])
    """
    informed = [row[np.isfinite(row)] for row in variance]
    return np.array([np.sqrt(np.median(row)) if len(row) else np.nan for row in informed])


def group_spreads(y: np.ndarray, variance: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The spread of normal groups from noisy values of their members, by restricted
    maximum likelihood (REML), ``(groups,)`` from ``(groups, n)``, and whether it is at
    its floor.

    Each ``y[g, p]`` is taken as drawn from ``N(mean_g, spread_g² + variance[g, p])``;
    an infinite variance leaves the value out. The spread solves the REML fixed point
    ``spread² = Σ w²((y - mean)² - variance) / Σ w² + 1 / Σ w`` with
    ``w = 1 / (spread² + variance)`` and ``mean`` the ``w``-weighted mean, from the
    DerSimonian-Laird estimate, and is kept at least ``MIN_SPREAD`` times the median
    participant's standard error. NaN for a group with fewer than ``MIN_PARTICIPANTS``
    informed values.

    >>> y = np.array([[1.0, 3.0, 5.0], [1.0, 1.5, 1.0]])
    >>> spread, floored = group_spreads(y, np.ones((2, 3)))
    >>> spread.round(6).tolist(), floored.tolist()
    ([1.732051, 0.03], [False, True])
    """
    informed = np.isfinite(variance)
    counted = informed.sum(1)
    v = np.where(informed, variance, 1.0)
    y = np.where(informed, y, 0.0)

    def weighted_mean(w: np.ndarray) -> np.ndarray:
        return (w * y).sum(1) / np.maximum(w.sum(1), 1e-300)

    w = np.where(informed, 1 / v, 0.0)
    q = (w * (y - weighted_mean(w)[:, None]) ** 2).sum(1)
    scale = w.sum(1) - (w**2).sum(1) / np.maximum(w.sum(1), 1e-300)
    spread2 = np.maximum(q - (counted - 1), 0) / np.maximum(scale, 1e-300)
    for _ in range(REML_ITERATIONS):
        w = np.where(informed, 1 / (v + spread2[:, None]), 0.0)
        w2 = w**2
        deviation = (y - weighted_mean(w)[:, None]) ** 2 - v
        new = (w2 * deviation).sum(1) / np.maximum(w2.sum(1), 1e-300)
        new = np.maximum(new + 1 / np.maximum(w.sum(1), 1e-300), 0.0)
        change = np.abs(new - spread2).max(initial=0.0)
        spread2 = new
        if change <= REML_TOLERANCE * max(float(spread2.max(initial=0.0)), 1e-12):
            break
    floor = MIN_SPREAD * median_error(variance)
    spread = np.maximum(np.sqrt(spread2), floor)
    return np.where(counted < MIN_PARTICIPANTS, np.nan, spread), np.sqrt(spread2) <= floor
