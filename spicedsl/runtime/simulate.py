"""Generate choices from a fully specified model in a drifting bandit."""

from __future__ import annotations

import numpy as np
import torch

from spicedsl.runtime.bandit import draw_rewards, drifting_reward_probabilities
from spicedsl.runtime.data import Dataset
from spicedsl.runtime.network import BaseRNN

# The most memory a simulation may need, by :func:`simulation_bytes`.
MAX_SIMULATION_BYTES = 4_000_000_000


def simulation_bytes(n_sessions: int, n_trials: int, n_actions: int, n_states: int) -> int:
    """About how many bytes simulating and writing ``n_sessions`` x ``n_trials`` trials
    takes: per trial and action, the reward probabilities, rewards, choice probabilities
    and each state's value (8 bytes each); per trial, the choices, draws and the CSV text
    with its strings (about 100 bytes per field).

    >>> simulation_bytes(100, 100, 2, 1)
    6880000
    """
    per_trial = n_actions * (3 + n_states) * 8 + 3 * 8 + (4 + n_actions) * 100
    return n_sessions * n_trials * per_trial


def simulate(
    net: BaseRNN,
    n_sessions: int,
    n_trials: int,
    rng: np.random.Generator,
    participants: np.ndarray | None = None,
    sigma: float = 0.2,
    every_reward: bool = False,
) -> tuple[Dataset, dict[str, np.ndarray]]:
    """Let ``net`` play ``n_sessions`` sessions of a drifting ``net.n_actions``-armed bandit.

    Each choice is drawn from the softmax of the trial's logits: from the states at the
    start of the trial (every action's entry starts equal, so the first choice is
    uniform unless the choice rule reads more than the states).

    With ``every_reward``, the dataset also keeps every action's reward (as for a model
    that reads ``data.rewards``), so that it is written as ``reward_0, reward_1, ...``.

    Returns
    -------
    dataset : Dataset
        The choices and rewards (rewards of 0 or 1).
    latents : dict
        ``probabilities`` (sessions, trials, actions) of each choice, and every state's
        values after each trial, (sessions, trials, actions).
    """
    n_actions = net.n_actions
    if participants is None:
        participants = np.zeros(n_sessions, dtype=np.int64)
    reward_probabilities = drifting_reward_probabilities(
        rng, n_sessions, n_trials, n_actions, sigma
    )
    rewards = draw_rewards(rng, reward_probabilities)
    choices = np.zeros((n_sessions, n_trials), dtype=np.int64)
    probabilities = np.zeros((n_sessions, n_trials, n_actions))
    history = {name: np.zeros((n_sessions, n_trials, n_actions)) for name in net.states}
    uniforms = rng.random((n_sessions, n_trials))
    net.eval()
    state = net.initial_state(n_sessions)
    with torch.no_grad(), net.running(torch.as_tensor(participants, dtype=torch.long)):
        for t in range(n_trials):
            data = {"rewards": torch.as_tensor(rewards[:, t], dtype=torch.float32)}
            logits = net.trial_logits(state, data, n_sessions)
            p = torch.softmax(logits.double(), -1).numpy()
            probabilities[:, t] = p
            choice = (p.cumsum(axis=1) < uniforms[:, t, None]).sum(axis=1).clip(max=n_actions - 1)
            choices[:, t] = choice
            chosen = torch.nn.functional.one_hot(torch.as_tensor(choice), n_actions).bool()
            reward = rewards[np.arange(n_sessions), t, choice]
            data["reward"] = torch.as_tensor(reward, dtype=torch.float32).unsqueeze(-1)
            state = net.update(state, data, chosen)
            for name, value in state.items():
                history[name][:, t] = value.numpy()
    reward_chosen = np.take_along_axis(rewards, choices[..., None], axis=-1)[..., 0]
    n_participants = int(participants.max()) + 1
    dataset = Dataset(
        choices=choices,
        reward=reward_chosen.astype(np.float32),
        rewards=rewards.astype(np.float32) if every_reward else None,
        inputs={},
        lengths=np.full(n_sessions, n_trials, dtype=np.int64),
        session_ids=tuple(str(i + 1) for i in range(n_sessions)),
        participant_index=participants.astype(np.int64),
        participant_ids=tuple(str(i + 1) for i in range(n_participants)),
        n_actions=n_actions,
        choice_base=0,
        reward_range=(0.0, 1.0),
    )
    return dataset, {"probabilities": probabilities, **history}


def write_latents(path, dataset: Dataset, latents: dict[str, np.ndarray]) -> None:
    """Write the simulation's latents as CSV: one row per trial, one column per
    action of the choice probabilities and of every state (``path`` ``-``: to stdout)."""
    from spicedsl.files import write_output

    n_sessions, n_trials, n_actions = latents["probabilities"].shape
    names = [
        f"{'p' if key == 'probabilities' else key}_{a}" for key in latents for a in range(n_actions)
    ]
    lines = [",".join(["session", "trial", *names])]
    for s in range(n_sessions):
        for t in range(n_trials):
            values = (f"{latents[key][s, t, a]:.9g}" for key in latents for a in range(n_actions))
            lines.append(",".join([dataset.session_ids[s], str(t + 1), *values]))
    write_output(path, "\n".join(lines) + "\n")
