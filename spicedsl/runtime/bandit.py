"""The drifting multi-armed bandit that SPICE's tutorials and off-policy sessions use.

Each action pays a reward of 1 with a probability that follows a Gaussian random walk,
clipped to [0, 1], and 0 otherwise.

>>> rng = np.random.default_rng(0)
>>> p = drifting_reward_probabilities(rng, n_sessions=3, n_trials=5, n_actions=2)
>>> p.shape, bool(((p >= 0) & (p <= 1)).all())
((3, 5, 2), True)
>>> r = draw_rewards(rng, p)
>>> r.dtype, bool(np.isin(r, (0, 1)).all())
(dtype('float32'), True)
"""

from __future__ import annotations

import numpy as np


def drifting_reward_probabilities(
    rng: np.random.Generator,
    n_sessions: int,
    n_trials: int,
    n_actions: int,
    sigma: float = 0.2,
    start: float | None = None,
) -> np.ndarray:
    """Reward probabilities of every action on every trial of a drifting bandit.

    On the first trial each action's probability is ``start``, or drawn uniformly from
    [0, 1] per session and action. Each later trial adds independent Gaussian noise
    with standard deviation ``sigma`` to the previous probability and clips the result
    to [0, 1].

    Parameters
    ----------
    rng
        Source of randomness; the same seed gives the same probabilities.
    n_sessions, n_trials, n_actions
        Shape of the result.
    sigma
        Standard deviation of the per-trial step of the random walk.
    start
        Probability of every action on the first trial; ``None`` draws it.

    Returns
    -------
    numpy.ndarray
        ``(n_sessions, n_trials, n_actions)`` float64 probabilities in [0, 1].

    Raises
    ------
    ValueError
        If a size is negative, ``sigma`` is negative or ``start`` is outside [0, 1].
    """
    if min(n_sessions, n_trials, n_actions) < 0:
        raise ValueError(f"sizes must not be negative: {(n_sessions, n_trials, n_actions)}")
    if sigma < 0:
        raise ValueError(f"sigma must not be negative, not {sigma}")
    if start is not None and not 0 <= start <= 1:
        raise ValueError(f"start must be in [0, 1], not {start}")
    probabilities = np.empty((n_sessions, n_trials, n_actions))
    if n_trials == 0:
        return probabilities
    if start is None:
        current = rng.uniform(size=(n_sessions, n_actions))
    else:
        current = np.full((n_sessions, n_actions), float(start))
    steps = rng.normal(0.0, sigma, size=(n_sessions, n_trials - 1, n_actions))
    probabilities[:, 0] = current
    for trial in range(1, n_trials):
        current = np.clip(current + steps[:, trial - 1], 0.0, 1.0)
        probabilities[:, trial] = current
    return probabilities


def draw_rewards(rng: np.random.Generator, probabilities: np.ndarray) -> np.ndarray:
    """Draw a Bernoulli reward (1 with the given probability, else 0) for each entry.

    Parameters
    ----------
    rng
        Source of randomness.
    probabilities
        Reward probabilities in [0, 1], of any shape, e.g. from
        :func:`drifting_reward_probabilities`.

    Returns
    -------
    numpy.ndarray
        float32 array of 0s and 1s with the shape of ``probabilities``.

    Raises
    ------
    ValueError
        If a probability is outside [0, 1] or NaN.
    """
    probabilities = np.asarray(probabilities)
    if not ((probabilities >= 0) & (probabilities <= 1)).all():
        raise ValueError("probabilities must be in [0, 1]")
    return (rng.random(probabilities.shape) < probabilities).astype(np.float32)
