"""``spicedsl baseline``: a small GRU fitted to the choices, as the bar for a model.

Published work reports a GRU beside every interpretable model: a flexible network that
shows how much of the choices' predictable structure a model leaves unexplained. The GRU
here is trained and scored exactly as ``spicedsl fit`` trains and scores a model (the
same split, training loop, seeds and metrics), and it reads exactly the data that model
reads, no more:

- the previous choice (one-hot over the model's actions);
- the previous reward, when the model reads ``data.reward``, and every action's previous
  reward, when it reads ``data.rewards``, both rescaled from the data's reward range to
  [0, 1];
- the previous trial's values of the data columns the model reads after the choice;
- this trial's items offered, when the model declares them, and this trial's values of
  the columns its ``before choice`` controls read;
- a participant embedding, when asked for (``embedding``).

Trial t's logits come from the GRU's state after the trials before t, stepped once with
what is known before t's choice: the outcome of the last trial with a choice, t's items
offered and the columns seen before t's choice. The step is kept only when t has a
choice. So a missed trial (no choice), like padding, changes nothing, as it changes no
state of a model: the GRU's logits on a session are those of the same session without
its missed trials. The first trial's "previous" inputs are zeros. Items not offered get
a logit of minus infinity.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn

from spicedsl import ir
from spicedsl.columns import REWARD_COLUMN
from spicedsl.errors import FitError, UsageError
from spicedsl.files import new_output_dir, write_atomic
from spicedsl.fitting import (
    check_actions,
    metrics_summary,
    restart_seed,
    software_versions,
    train_with_restarts,
)
from spicedsl.frontend import load_ir
from spicedsl.runtime.batch import make_batch
from spicedsl.runtime.data import Dataset
from spicedsl.runtime.metrics import choice_metrics
from spicedsl.runtime.train import TrainingLog
from spicedsl.runtime.weights import save_weights
from spicedsl.settings import BASELINE_HIDDEN, OPTIONS, TRAINING_OPTIONS, FitSettings
from spicedsl.splits import Holdout, split_trials

# The largest participant embedding, as the model language allows.
MAX_EMBEDDING = 1024


@dataclass(frozen=True)
class BaselineInputs:
    """What the GRU reads on each trial: what a model reads of the data.

    Attributes
    ----------
    n_actions : int
        The model's actions.
    reward_range : tuple of float or None
        ``(low, high)`` of the data's rewards: they are read as ``(reward - low) /
        (high - low)``; None when they never change.
    reward, every_reward : bool
        Whether the previous reward of the chosen action (``data.reward``), and of
        every action (``data.rewards``), are read: when the model reads them and they
        change.
    offered : bool
        Whether the trial's items offered are read (the model declares them).
    seen_before : tuple of str
        Data columns read on their own trial, before its choice (``before choice``).
    outcomes : tuple of str
        Data columns read after the choice: the GRU reads them on the next trial.
    widths : dict of str to int
        Values per trial of each data column: 1, or one per action.
    """

    n_actions: int
    reward_range: tuple[float, float] | None
    reward: bool
    every_reward: bool
    offered: bool
    seen_before: tuple[str, ...]
    outcomes: tuple[str, ...]
    widths: dict[str, int] = field(default_factory=dict)

    @classmethod
    def of(cls, model: ir.Model, data: Dataset, n_actions: int) -> BaselineInputs:
        """What ``model`` reads of ``data``."""
        cues = tuple(
            dict.fromkeys(column for c in model.controls if c.before_choice for column in c.columns)
        )
        reads_reward = any(REWARD_COLUMN in c.columns for c in model.controls)
        # Rewards that never change tell nothing.
        informative = data.reward_range is not None
        return cls(
            n_actions=n_actions,
            reward_range=data.reward_range,
            reward=reads_reward and informative,
            every_reward=model.reads_every_reward and informative,
            offered=bool(model.offered),
            seen_before=cues,
            outcomes=tuple(c for c in model.data_columns if c not in cues),
            widths={
                name: n_actions if values.ndim == 3 else 1 for name, values in data.inputs.items()
            },
        )

    @property
    def size(self) -> int:
        """The number of input values per trial."""
        return (
            self.n_actions
            + self.reward
            + self.n_actions * self.every_reward
            + self.n_actions * self.offered
            + sum(self.widths[name] for name in self.seen_before + self.outcomes)
        )

    def describe(self) -> list[str]:
        """Each input, for people."""
        described = [f"previous choice ({self.n_actions} actions)"]
        if self.reward or self.every_reward:
            low, high = self.reward_range
            scaled = f"rescaled from [{low:g}, {high:g}] to [0, 1]"
        if self.reward:
            described.append(f"previous reward, {scaled}")
        if self.every_reward:
            described.append(f"previous reward of every action, {scaled}")
        described += [f"data.{name}, previous trial" for name in self.outcomes]
        if self.offered:
            described.append("items offered")
        described += [f"data.{name}, seen before the choice" for name in self.seen_before]
        return described

    def outcome(self, trials: list[dict[str, torch.Tensor]], chosen: torch.Tensor) -> torch.Tensor:
        """``(trials, sessions, values)``: what each trial's choice and outcome show."""
        parts = [chosen.float()]
        if self.reward:
            parts.append(self._rescaled(_stacked(trials, "reward")))
        if self.every_reward:
            parts.append(self._rescaled(_stacked(trials, "rewards")))
        parts += [_stacked(trials, name) for name in self.outcomes]
        return torch.cat(parts, dim=-1)

    def before_choice(self, trials: list[dict[str, torch.Tensor]]) -> torch.Tensor:
        """``(trials, sessions, values)``: what is seen on each trial before its choice."""
        parts = [_stacked(trials, "offered").float()] if self.offered else []
        parts += [_stacked(trials, name) for name in self.seen_before]
        if not parts:
            return trials[0]["reward"].new_zeros(len(trials), trials[0]["reward"].shape[0], 0)
        return torch.cat(parts, dim=-1)

    def _rescaled(self, rewards: torch.Tensor) -> torch.Tensor:
        low, high = self.reward_range
        return (rewards - low) / (high - low)


def _stacked(trials: list[dict[str, torch.Tensor]], name: str) -> torch.Tensor:
    return torch.stack([trial[name] for trial in trials])


class GRUBaseline(nn.Module):
    """A GRU over trials with a linear read-out of each action's logit.

    It is called as a generated model's network is (``forward(trials, chosen,
    participants)``), so that training and metrics treat both alike.

    Parameters
    ----------
    inputs : BaselineInputs
        What it reads.
    n_participants : int
        Participants of the data (rows of the embedding).
    hidden_size : int
        Units of the GRU.
    embedding_size : int
        Size of the participant embedding added to every trial's input; 0 for none.
    """

    def __init__(
        self,
        inputs: BaselineInputs,
        n_participants: int,
        hidden_size: int = BASELINE_HIDDEN,
        embedding_size: int = 0,
    ) -> None:
        super().__init__()
        self.inputs = inputs
        self.embedding = nn.Embedding(n_participants, embedding_size) if embedding_size else None
        self.cell = nn.GRUCell(inputs.size + embedding_size, hidden_size)
        self.readout = nn.Linear(hidden_size, inputs.n_actions)

    #: One network, not an ensemble (training reads this as it reads a generated model's).
    members = 1
    beyond_range = None  # no learnt state to keep within range (see BaseRNN.beyond_range)

    @property
    def has_dropout(self) -> bool:
        """False: training and evaluation give the same logits."""
        return False

    def forward(
        self,
        trials: list[dict[str, torch.Tensor]],
        chosen: torch.Tensor,
        participants: torch.Tensor,
    ) -> torch.Tensor:
        """The logits of each trial's choice, shape (trials, sessions, actions).

        Parameters
        ----------
        trials : list of dict
            Per trial, the data columns, each (sessions, 1) or (sessions, actions).
        chosen : torch.Tensor
            (trials, sessions, actions) boolean mask of the chosen actions.
        participants : torch.Tensor
            (sessions,) participant index of each session.
        """
        n_trials, n_sessions, _ = chosen.shape
        present = chosen.any(-1)
        features = [
            _last_before(self.inputs.outcome(trials, chosen), present),
            self.inputs.before_choice(trials),
        ]
        if self.embedding is not None:
            features.append(self.embedding(participants).expand(n_trials, -1, -1))
        steps = torch.cat(features, dim=-1)
        state = steps.new_zeros(n_sessions, self.cell.hidden_size)
        logits = []
        for t in range(n_trials):
            stepped = self.cell(steps[t], state)
            logits.append(self.readout(stepped))
            state = torch.where(present[t].unsqueeze(-1), stepped, state)
        stacked = torch.stack(logits)
        if self.inputs.offered:
            stacked = stacked.masked_fill(~_stacked(trials, "offered"), -math.inf)
        return stacked


def _last_before(values: torch.Tensor, present: torch.Tensor) -> torch.Tensor:
    """On each trial, ``values`` of the last earlier trial of its session that is
    ``present``; zeros when there is none."""
    n_trials = values.shape[0]
    order = torch.arange(1, n_trials + 1, device=values.device).unsqueeze(-1)
    latest = torch.cummax(torch.where(present, order, 0), dim=0).values
    before = torch.cat([torch.zeros_like(latest[:1]), latest[:-1]])
    padded = torch.cat([torch.zeros_like(values[:1]), values])
    return padded.gather(0, before.unsqueeze(-1).expand(-1, -1, values.shape[-1]))


@dataclass
class BaselineResult:
    """The GRU baseline of a model on data: its metrics and network."""

    model_name: str
    inputs: list[str]
    metrics: dict[str, dict[str, float]]
    network: GRUBaseline
    log: TrainingLog
    settings: dict[str, float]
    options: dict[str, object]
    timings: dict[str, float]

    def summary(self) -> str:
        """A short table of the training and the metrics, for people."""
        return metrics_summary(
            f"GRU baseline of {self.model_name}",
            self.log,
            self.timings["training_s"],
            {"gru": self.metrics},
        )

    def report(self) -> dict[str, object]:
        """The content of ``report.json``."""
        return {
            "model": self.model_name,
            "baseline": "gru",
            "inputs": self.inputs,
            "metrics": self.metrics,
            "training": self.log.report(),
            "settings": self.settings,
            "options": self.options,
            "timings": self.timings,
            "versions": software_versions(),
        }

    def save(self, outdir: str | Path, overwrite: bool = False) -> Path:
        """Write ``report.json`` and ``network.npz`` into ``outdir``."""
        out = new_output_dir(outdir, overwrite)
        write_atomic(out / "report.json", json.dumps(self.report(), indent=1) + "\n")
        save_weights(self.network, out / "network.npz")
        return out


def baseline(
    model: str | Path,
    data: Dataset,
    *,
    hidden: int = BASELINE_HIDDEN,
    embedding: int = 0,
    validation: float = 0.2,
    holdout: Holdout | None = None,
    seed: int = 0,
    threads: int = 1,
    progress: bool = True,
    **settings: float,
) -> BaselineResult:
    """Train a GRU on ``data`` as :func:`spicedsl.fitting.fit` would train ``model``.

    Parameters
    ----------
    model : str or Path
        Model file or model text: it says what the GRU reads (see the module's text).
    data : Dataset
        From :func:`spicedsl.api.read_data` for ``model``.
    hidden : int
        Units of the GRU.
    embedding : int
        Size of a participant embedding read on every trial; 0 for none.
    validation, holdout, seed, threads, progress
        As for :func:`spicedsl.fitting.fit`.
    **settings
        ``epochs``, ``learning_rate``, ``weight_decay``, ``convergence`` and ``patience``;
        the defaults of ``spicedsl fit`` otherwise (not the model file's).
    """
    model_ir = load_ir(model)
    for name, value in settings.items():
        if name not in TRAINING_OPTIONS:
            raise UsageError(f"the GRU baseline has no option {name}")
        problem = OPTIONS[name].problem(value)
        if problem:
            raise UsageError(f"option {name} {problem}")
    problem = OPTIONS["hidden_size"].problem(hidden)
    if problem:
        raise UsageError(f"the GRU's hidden size {problem}")
    if not 0 <= embedding <= MAX_EMBEDDING or embedding != int(embedding):
        raise UsageError(f"the embedding size must be a whole number from 0 to {MAX_EMBEDDING}")
    if threads < 1:
        raise UsageError("threads must be at least 1")
    fit_settings = FitSettings().replace(**settings)
    n_actions = check_actions(model_ir, data)
    inputs = BaselineInputs.of(model_ir, data, n_actions)
    torch.set_num_threads(threads)
    n_participants = len(data.participant_ids)
    rng = np.random.default_rng(seed)
    split = split_trials(data, validation, rng, embedding > 0 and n_participants > 1, holdout)
    full = make_batch(data, n_actions, model_ir.predicts_first_choice)

    def new_network(attempt: int) -> GRUBaseline:
        torch.manual_seed(seed if attempt == 0 else restart_seed(seed, attempt))
        return GRUBaseline(inputs, n_participants, hidden, embedding)

    timings = {}
    start = time.perf_counter()
    net, log = train_with_restarts(new_network, full, split, fit_settings, "cpu", progress)
    timings["training_s"] = time.perf_counter() - start

    start = time.perf_counter()
    n_weights = sum(p.numel() for p in net.parameters())
    metrics = {
        name: choice_metrics(net, full.predicting(mask), n_weights)
        for name, mask in (
            ("train", split.train),
            ("validation", split.validation),
            ("test", split.test),
        )
        if mask.any()
    }
    timings["metrics_s"] = time.perf_counter() - start
    for name, values in metrics.items():
        if not math.isfinite(values["nll_per_trial"]):
            raise FitError(f"the GRU's NLL on the {name} trials is not finite")
    return BaselineResult(
        model_name=model_ir.name,
        inputs=inputs.describe(),
        metrics=metrics,
        network=net,
        log=log,
        settings={name: getattr(fit_settings, name) for name in TRAINING_OPTIONS},
        options={
            "hidden": hidden,
            "embedding": embedding,
            "validation": validation,
            "holdout": asdict(holdout) if holdout else None,
            "seed": seed,
            "threads": threads,
        },
        timings=timings,
    )
