"""The runtime base class of every generated model: a recurrent network over trials.

A generated subclass declares its states, params and modules as data and writes one
method, :meth:`BaseRNN.trial`, with the model's update equations. This class owns
everything else: parameters with bounds, learnable module networks, participant
embeddings, the loop over trials, and the recording used by the equation stage.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import torch
from torch import nn

# A learnable module's new value is clipped to this range, as in SPICE.
CLIP = 10.0

ACTIVATIONS: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "sigmoid": torch.sigmoid,
    "tanh": torch.tanh,
    "softplus": nn.functional.softplus,
}


@dataclass(frozen=True)
class ParamSpec:
    """A named scalar; ``lower``/``upper`` are open bounds kept by reparametrisation."""

    lower: float | None
    upper: float | None
    value: float
    fixed: bool
    per_participant: bool = False
    embedded: bool = False

    def to_raw(self, value: float) -> float:
        """The unconstrained number whose :meth:`from_raw` is ``value``."""
        low, high = self.lower, self.upper
        if low is not None and high is not None:
            p = (value - low) / (high - low)
            return math.log(p / (1 - p))
        if low is not None:
            return _inverse_softplus(value - low)
        if high is not None:
            return _inverse_softplus(high - value)
        return value

    def from_raw(self, raw: torch.Tensor) -> torch.Tensor:
        low, high = self.lower, self.upper
        if low is not None and high is not None:
            return low + (high - low) * torch.sigmoid(raw)
        if low is not None:
            return low + nn.functional.softplus(raw)
        if high is not None:
            return high - nn.functional.softplus(raw)
        return raw


def _inverse_softplus(y: float) -> float:
    return y + math.log(-math.expm1(-y)) if y < 20 else y


@dataclass(frozen=True)
class ModuleSpec:
    """A learnable module and its equation library: the SINDy setup, as data.

    ``inputs`` are the library inputs besides the module's own target state, and
    ``binary_inputs`` those of them that only take the values 0 and 1.
    """

    target: str
    filter: str
    inputs: tuple[str, ...]
    binary_inputs: tuple[str, ...]
    activation: str | None
    degree: int
    threshold: float
    embedded: bool
    line: int


class ModuleNet(nn.Module):
    """The network of one learnable module: a residual update of each action's value."""

    def __init__(self, n_features: int, hidden_size: int, dropout: float) -> None:
        super().__init__()
        self.hidden = nn.Linear(n_features, hidden_size)
        self.dropout = nn.Dropout(dropout)
        self.out = nn.Linear(hidden_size, 1)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.out(self.dropout(torch.tanh(self.hidden(features)))).squeeze(-1)


@dataclass
class Recording:
    """What one learnable module saw and did on the trials its filter selected.

    Arrays are flat over (trial, session, action) entries the module wrote.
    """

    before: list[torch.Tensor]
    after: list[torch.Tensor]
    inputs: list[torch.Tensor]
    participant: list[torch.Tensor]


class BaseRNN(nn.Module):
    """Base class of generated models.

    Parameters
    ----------
    n_actions : int
        Number of options per trial.
    n_participants : int
        Number of participants (for embeddings and per-participant params).
    hidden_size : int
        Hidden units of each learnable module network.
    dropout : float
        Dropout inside module networks during training.

    Notes
    -----
    Subclasses set the class attributes ``name``, ``states`` (name -> initial value),
    ``params`` (name -> :class:`ParamSpec`), ``modules`` (name -> :class:`ModuleSpec`),
    ``data_columns`` and ``embedding_size``/``embedding_dropout``, and implement
    :meth:`trial`.
    """

    name: str = ""
    states: Mapping[str, float] = {}
    params: Mapping[str, ParamSpec] = {}
    modules: Mapping[str, ModuleSpec] = {}
    data_columns: tuple[str, ...] = ()
    embedding_size: int = 0
    embedding_dropout: float = 0.0

    def __init__(
        self,
        n_actions: int,
        n_participants: int = 1,
        hidden_size: int = 8,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        self.n_actions = n_actions
        self.n_participants = n_participants
        size = self.embedding_size
        self.embedding = nn.Embedding(n_participants, size) if size else None
        self.embedding_drop = nn.Dropout(self.embedding_dropout)
        self.nets = nn.ModuleDict(
            {
                name: ModuleNet(
                    1 + len(spec.inputs) + (size if spec.embedded else 0), hidden_size, dropout
                )
                for name, spec in self.modules.items()
            }
        )
        self.raw_params = nn.ParameterDict()
        self.param_embeddings = nn.ModuleDict()
        for name, spec in self.params.items():
            if spec.fixed:
                continue
            shape = (n_participants,) if spec.per_participant else (1,)
            self.raw_params[name] = nn.Parameter(torch.full(shape, spec.to_raw(spec.value)))
            if spec.embedded and size:
                self.param_embeddings[name] = nn.Linear(size, 1, bias=False)
                nn.init.zeros_(self.param_embeddings[name].weight)
        self.recordings: dict[str, Recording] | None = None
        self._embedded: torch.Tensor | None = None
        self._participants: torch.Tensor | None = None

    # -- what generated code calls ------------------------------------------------------
    def param(self, name: str) -> torch.Tensor:
        """The value of param ``name``: a number, or one per session, shape (batch, 1)."""
        spec = self.params[name]
        if spec.fixed:
            return torch.tensor(spec.value)
        raw = self.raw_params[name]
        if spec.per_participant:
            raw = raw[self._participants].unsqueeze(-1)
        if name in self.param_embeddings:
            raw = raw + self.param_embeddings[name](self._embedded)
        return spec.from_raw(raw)

    def learned(
        self, name: str, value: torch.Tensor, mask: torch.Tensor | None, *inputs: torch.Tensor
    ) -> torch.Tensor:
        """Apply learnable module ``name`` to ``value`` where ``mask`` holds (all if None)."""
        spec = self.modules[name]
        columns = [value] + [x.expand_as(value) for x in inputs]
        features = torch.stack(columns, dim=-1)
        if spec.embedded and self._embedded is not None:
            embedded = self._embedded.unsqueeze(1).expand(*value.shape, -1)
            features = torch.cat([features, embedded], dim=-1)
        new = value + self.nets[name](features)
        if spec.activation is not None:
            new = ACTIVATIONS[spec.activation](new)
        new = new.clamp(-CLIP, CLIP)
        if self.recordings is not None:
            self._record(name, value, new, features[..., : len(columns)], mask)
        return new if mask is None else torch.where(mask, new, value)

    def trial(
        self,
        state: dict[str, torch.Tensor],
        data: Mapping[str, torch.Tensor],
        chosen: torch.Tensor,
    ) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
        """Update ``state`` with one trial's ``data``; return it and the next choice's logits.

        ``chosen`` is the (batch, actions) boolean mask of the chosen action.
        """
        raise NotImplementedError

    # -- the loop -----------------------------------------------------------------------
    def initial_state(self, batch_size: int) -> dict[str, torch.Tensor]:
        return {
            name: torch.full((batch_size, self.n_actions), float(value))
            for name, value in self.states.items()
        }

    def forward(
        self,
        trials: list[dict[str, torch.Tensor]],
        chosen: torch.Tensor,
        participants: torch.Tensor,
        return_states: bool = False,
    ) -> torch.Tensor | tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Logits of the next choice after each trial, shape (trials, batch, actions).

        Parameters
        ----------
        trials : list of dict
            Per trial, the data columns the model reads, each (batch, 1) or (batch, actions).
        chosen : torch.Tensor
            (trials, batch, actions) boolean mask of the chosen actions.
        participants : torch.Tensor
            (batch,) participant index of each session.
        return_states : bool
            Also return every state's values after each trial, (trials, batch, actions).
        """
        batch_size = chosen.shape[1]
        self._participants = participants
        self._embedded = None
        if self.embedding is not None:
            self._embedded = self.embedding_drop(self.embedding(participants))
        state = self.initial_state(batch_size)
        logits = []
        history: dict[str, list[torch.Tensor]] = {name: [] for name in self.states}
        for t, data in enumerate(trials):
            state, step_logits = self.trial(state, data, chosen[t])
            logits.append(step_logits.expand(batch_size, self.n_actions))
            if return_states:
                for name, value in state.items():
                    history[name].append(value)
        stacked = torch.stack(logits)
        if return_states:
            return stacked, {name: torch.stack(values) for name, values in history.items()}
        return stacked

    # -- recording for the equation stage ------------------------------------------------
    def start_recording(self) -> None:
        self.recordings = {name: Recording([], [], [], []) for name in self.modules}

    def stop_recording(self) -> dict[str, Recording]:
        recordings, self.recordings = self.recordings or {}, None
        return recordings

    def _record(
        self,
        name: str,
        before: torch.Tensor,
        after: torch.Tensor,
        inputs: torch.Tensor,
        mask: torch.Tensor | None,
    ) -> None:
        selected = torch.ones_like(before, dtype=torch.bool) if mask is None else mask
        selected = selected.expand_as(before)
        record = self.recordings[name]
        record.before.append(before[selected].detach())
        record.after.append(after[selected].detach())
        record.inputs.append(inputs[..., 1:][selected].detach())
        sessions = self._participants.unsqueeze(1).expand_as(before)
        record.participant.append(sessions[selected])
