"""Dataset -> the tensors a generated network reads, trial by trial."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from spicedsl.runtime.data import Dataset

# Target value of trials whose choice is not predicted (padding, a missed or first choice).
IGNORE = -1


@dataclass
class Batch:
    """Sessions as time-major tensors.

    ``trials[t]`` maps each data column a model may read to a (sessions, 1) or
    (sessions, actions) tensor; ``chosen`` is (trials, sessions, actions) boolean, all
    false on a trial without a choice; ``targets[t]`` is the choice on trial t, or
    ``IGNORE`` where it is not predicted.
    """

    trials: list[dict[str, torch.Tensor]]
    chosen: torch.Tensor
    targets: torch.Tensor
    participants: torch.Tensor

    def to(self, device: torch.device | str) -> Batch:
        """The same batch on ``device``."""
        return Batch(
            trials=[{k: v.to(device) for k, v in trial.items()} for trial in self.trials],
            chosen=self.chosen.to(device),
            targets=self.targets.to(device),
            participants=self.participants.to(device),
        )

    def predicting(self, trials: np.ndarray) -> Batch:
        """The same sessions, with only the choices of ``trials`` to predict.

        ``trials`` is a ``(sessions, trials)`` boolean mask, as the dataset lays them out
        (see :mod:`spicedsl.splits`). The network still runs over every trial of every
        session (the inputs are shared, not copied), so one forward pass serves several
        splits, and held-out trials at the end of a session start from the states the
        earlier trials left.
        """
        keep = torch.as_tensor(np.ascontiguousarray(trials.T), device=self.targets.device)
        targets = torch.where(keep, self.targets, IGNORE)
        return Batch(self.trials, self.chosen, targets, self.participants)

    @property
    def n_predicted(self) -> int:
        """The number of choices to predict."""
        return int((self.targets != IGNORE).sum())


def make_batch(
    dataset: Dataset, n_actions: int | None = None, predict_first: bool = False
) -> Batch:
    """Tensors for every session of ``dataset`` (float32, time-major).

    Unless ``predict_first``, the first choice of each session is not a target: a model
    whose logits read nothing but its states has seen nothing yet, and gives every
    action the same probability.
    """
    n_actions = n_actions or dataset.n_actions
    choices = torch.as_tensor(dataset.choices.T.copy())  # (trials, sessions)
    made = choices >= 0
    chosen = torch.nn.functional.one_hot(choices.clamp(min=0), n_actions).bool()
    chosen &= made.unsqueeze(-1)
    predicted = made if predict_first else made & (made.cumsum(0) > 1)
    targets = torch.where(predicted, choices, IGNORE)
    columns = {"reward": _time_major(dataset.reward)}
    if dataset.rewards is not None:
        columns["rewards"] = _time_major(dataset.rewards)
    if dataset.offered is not None:
        columns["offered"] = _time_major(dataset.offered)
    for name, values in dataset.inputs.items():
        columns[name] = _time_major(values)
    n_trials = choices.shape[0]
    trials = [{name: values[t] for name, values in columns.items()} for t in range(n_trials)]
    participants = torch.as_tensor(dataset.participant_index, dtype=torch.long)
    return Batch(trials, chosen, targets, participants)


def _time_major(values: np.ndarray) -> torch.Tensor:
    """``(sessions, trials[, actions])`` -> ``(trials, sessions, 1 or actions)``."""
    moved = np.moveaxis(values, 1, 0)
    return torch.as_tensor(np.ascontiguousarray(moved if values.ndim == 3 else moved[..., None]))
