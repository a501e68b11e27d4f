"""Reference agents in plain numpy, independent of spicedsl's code generation and runtime.

:class:`QLearning` is the tutorials' ground-truth agent (examples/q_learning.spice):
the chosen action's value moves toward the reward at rate ``alpha``, every other value
decays toward ``forget_to`` at rate ``forget``, and choices follow a softmax of
``beta`` times the values. Tests compare the generated network against it, and use it
to make data with a known truth.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class QLearning:
    """Q-learning with forgetting of the values of the actions not chosen.

    Parameters
    ----------
    alpha : float
        Learning rate of the chosen action's value.
    forget : float
        Rate at which the values of the other actions decay toward ``forget_to``.
    beta : float
        Inverse temperature of the softmax choice rule.
    initial : float
        Value of every action at the start of a session.
    forget_to : float
        Value that forgotten values decay toward.
    """

    alpha: float = 0.3
    forget: float = 0.2
    beta: float = 3.0
    initial: float = 0.5
    forget_to: float = 0.5

    def update(self, values: np.ndarray, choice: np.ndarray, reward: np.ndarray) -> np.ndarray:
        """Values after one trial.

        Parameters
        ----------
        values : numpy.ndarray
            ``(sessions, actions)`` values before the trial.
        choice : numpy.ndarray
            ``(sessions,)`` chosen action; -1 (padding) means no action was chosen.
        reward : numpy.ndarray
            ``(sessions,)`` reward of the chosen action.

        Returns
        -------
        numpy.ndarray
            ``(sessions, actions)`` values after the trial.
        """
        chosen = np.arange(values.shape[1]) == choice[:, None]
        learnt = values + self.alpha * (reward[:, None] - values)
        forgotten = values + self.forget * (self.forget_to - values)
        return np.where(chosen, learnt, forgotten)

    def probabilities(self, values: np.ndarray) -> np.ndarray:
        """Softmax choice probabilities, ``(sessions, actions)``."""
        logits = self.beta * values
        logits = logits - logits.max(axis=1, keepdims=True)
        weights = np.exp(logits)
        return weights / weights.sum(axis=1, keepdims=True)

    def next_choice_probabilities(
        self, choices: np.ndarray, rewards: np.ndarray, n_actions: int
    ) -> np.ndarray:
        """Probabilities of the next choice after each trial of given sessions.

        Parameters
        ----------
        choices : numpy.ndarray
            ``(sessions, trials)`` chosen actions counted from 0; -1 at padding.
        rewards : numpy.ndarray
            ``(sessions, trials)`` rewards of the chosen actions.
        n_actions : int
            Number of actions.

        Returns
        -------
        numpy.ndarray
            ``(sessions, trials, actions)``: entry ``t`` is computed from trials 1..t.
        """
        n_sessions, n_trials = choices.shape
        values = np.full((n_sessions, n_actions), self.initial, dtype=np.float64)
        out = np.empty((n_sessions, n_trials, n_actions))
        for t in range(n_trials):
            values = self.update(values, choices[:, t], rewards[:, t].astype(np.float64))
            out[:, t] = self.probabilities(values)
        return out

    def simulate(
        self, rng: np.random.Generator, reward_probabilities: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """Choices and 0/1 rewards of the agent on a bandit.

        Parameters
        ----------
        rng : numpy.random.Generator
            Source of randomness.
        reward_probabilities : numpy.ndarray
            ``(sessions, trials, actions)`` probability that each action pays 1.

        Returns
        -------
        tuple of numpy.ndarray
            ``(sessions, trials)`` int64 choices and float32 rewards.
        """
        n_sessions, n_trials, n_actions = reward_probabilities.shape
        values = np.full((n_sessions, n_actions), self.initial, dtype=np.float64)
        choices = np.empty((n_sessions, n_trials), dtype=np.int64)
        rewards = np.empty((n_sessions, n_trials), dtype=np.float32)
        sessions = np.arange(n_sessions)
        for t in range(n_trials):
            cumulative = self.probabilities(values).cumsum(axis=1)
            draw = rng.random((n_sessions, 1))
            choice = np.minimum((draw > cumulative).sum(axis=1), n_actions - 1)
            reward = rng.random(n_sessions) < reward_probabilities[sessions, t, choice]
            choices[:, t], rewards[:, t] = choice, reward
            values = self.update(values, choice, reward.astype(np.float64))
        return choices, rewards
