"""The runtime base class of every generated model: a recurrent network over trials.

A generated subclass declares its states, params and modules as data and writes two
methods: :meth:`BaseRNN.update`, with the model's update equations, and
:meth:`BaseRNN.choice_logits`, with its choice rule. This class owns
everything else: parameters with bounds, learnable module networks, participant
embeddings, the loop over trials, and the recording used by the equation stage.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from spicedsl.semantics.functions import MODULE_CLIP as CLIP

ACTIVATIONS: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "sigmoid": torch.sigmoid,
    "tanh": torch.tanh,
    "softplus": nn.functional.softplus,
}

# Activations whose values lie inside [-CLIP, CLIP] already: clipping them changes nothing.
WITHIN_CLIP = frozenset({"sigmoid", "tanh"})
# While a network trains, each new value of a learnable module beyond +-VALUE_RANGE adds
# RANGE_PENALTY * (|value| - VALUE_RANGE)^2 to its loss (per choice, summed over the
# modules and actions). The choices cannot pin a state's scale or offset where an inverse
# temperature multiplies it, and a network left to drift there saturates the tanh units of
# its modules: at values near -89 they no longer see the value, and the network learns
# only the last reward (Rescorla-Wagner, data seed 5). The penalty pulls it back along
# that free direction at no cost in the choices, and within the range it is exactly 0.
VALUE_RANGE = 10.0
RANGE_PENALTY = 0.1


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

    @property
    def raw_scale(self) -> str:
        """What the raw number measures: the value itself, the logit of the value's place
        in its interval, or the inverse softplus of its distance to its one bound."""
        if self.lower is not None and self.upper is not None:
            return "logit"
        if self.lower is not None or self.upper is not None:
            return "inverse softplus"
        return "value"

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

    ``filter`` is the kind of its trial filter (``chosen``, ``not_chosen``, ``all`` or
    ``condition``), for people: the generated code passes the filter's mask, with any
    condition, to :meth:`BaseRNN.learned`, which records only the entries it selects.
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
    """The network of one learnable module, for each member of an ensemble: an update of
    each action's value.

    One tanh layer of ``hidden_size`` units and a linear read-out, initialised like
    :class:`torch.nn.Linear`. Each member has its own weights, stacked along a first axis
    (a single network keeps the layout of one member, without that axis), and the
    members' rows go through batched matrix products. A participant embedding enters the
    hidden layer as a per-session bias (:meth:`hidden_bias`), which is the same on every
    trial of a forward pass.

    Parameters
    ----------
    n_features : int
        Number of per-action features: the module's target value and its inputs.
    embedding_size : int
        Size of the participant embedding the module reads; 0 for none.
    hidden_size : int
        Number of hidden units.
    dropout : float
        Dropout probability of the hidden units during training.
    members : int
        Number of members.
    """

    def __init__(
        self,
        n_features: int,
        embedding_size: int,
        hidden_size: int,
        dropout: float,
        members: int = 1,
    ) -> None:
        super().__init__()
        self.members = members
        bound = 1 / math.sqrt(n_features + embedding_size)
        out_bound = 1 / math.sqrt(hidden_size)
        self.weight = nn.Parameter(_uniform(members, (n_features, hidden_size), bound))
        if embedding_size:
            shape = (embedding_size, hidden_size)
            self.embedding_weight = nn.Parameter(_uniform(members, shape, bound))
        else:
            self.register_parameter("embedding_weight", None)
        self.bias = nn.Parameter(_uniform(members, (hidden_size,), bound))
        self.out_weight = nn.Parameter(_uniform(members, (hidden_size,), out_bound))
        self.out_bias = nn.Parameter(_uniform(members, (1,), out_bound))
        self.dropout = dropout

    def hidden_bias(self, embedded: torch.Tensor | None, n_actions: int) -> torch.Tensor:
        """The hidden layer's bias of each member: one for all entries, or one per
        (session, action) entry of the member's sessions.

        Parameters
        ----------
        embedded : torch.Tensor or None
            ``(batch, embedding_size)`` participant embedding of each session, the
            sessions of each member in turn.
        n_actions : int
            Number of actions per session.

        Returns
        -------
        torch.Tensor
            A single network's ``(hidden,)`` without an embedding, else
            ``(batch * n_actions, hidden)``; an ensemble's ``(members, 1, hidden)``,
            else ``(members, batch / members * n_actions, hidden)``.
        """
        members = self.members
        if self.embedding_weight is None or embedded is None:
            return self.bias if members == 1 else self.bias.view(members, 1, -1)
        if members == 1:
            per_session = torch.addmm(self.bias, embedded, self.embedding_weight)
            return per_session.repeat_interleave(n_actions, dim=0)
        sessions = embedded.view(members, -1, embedded.shape[-1])
        weight = self.embedding_weight.view(members, sessions.shape[-1], -1)
        per_session = torch.baddbmm(self.bias.view(members, 1, -1), sessions, weight)
        return per_session.repeat_interleave(n_actions, dim=1)

    def forward(self, features: torch.Tensor, hidden_bias: torch.Tensor) -> torch.Tensor:
        """The update of each row of ``features`` ``(entries, n_features)``, ``(entries,)``;
        the rows of each member in turn.

        A single network multiplies with ``addmm`` and ``addmv``, an ensemble with their
        batched forms (which round small products differently, so a single network
        keeps the results it always had).
        """
        members = self.members
        if members == 1:
            hidden = torch.tanh(torch.addmm(hidden_bias, features, self.weight))
        else:
            rows = features.view(members, -1, features.shape[-1])
            weight = self.weight.view(members, rows.shape[-1], -1)
            hidden = torch.tanh(torch.baddbmm(hidden_bias, rows, weight))
        if self.training and self.dropout > 0:
            hidden = nn.functional.dropout(hidden, self.dropout)
        if members == 1:
            return torch.addmv(self.out_bias, hidden, self.out_weight)
        out_weight = self.out_weight.view(members, -1, 1)
        return torch.baddbmm(self.out_bias.view(members, 1, 1), hidden, out_weight).view(-1)


def stacked_shape(members: int, shape: tuple[int, ...]) -> tuple[int, ...]:
    """The shape of a weight of ``members`` members that each have ``shape``: a first axis
    for the members, except for a single network, which keeps the shape of one.

    >>> stacked_shape(1, (3, 8)), stacked_shape(4, (3, 8))
    ((3, 8), (4, 3, 8))
    """
    return shape if members == 1 else (members, *shape)


def _uniform(members: int, shape: tuple[int, ...], bound: float) -> torch.Tensor:
    return torch.empty(stacked_shape(members, shape)).uniform_(-bound, bound)


class ParamEmbedding(nn.Module):
    """How the participant embedding shifts an embedded param, for each member: a linear
    read-out without bias (the weight of one member is ``(1, embedding_size)``, as in
    :class:`torch.nn.Linear`), starting at zero."""

    def __init__(self, size: int, members: int) -> None:
        super().__init__()
        # Drawn and then zeroed, as torch.nn.Linear would be: the draw keeps the random
        # stream (and so the dropout masks) of a single network where it always was.
        weight = _uniform(members, (1, size), 1.0)
        self.weight = nn.Parameter(weight.zero_())
        self.members = members

    def forward(self, embedded: torch.Tensor) -> torch.Tensor:
        """``(batch, 1)``: the shift of each session, its member's read-out of its
        embedding ``embedded`` ``(batch, size)``."""
        if self.members == 1:  # as torch.nn.Linear computes it (see ModuleNet.forward)
            return nn.functional.linear(embedded, self.weight)
        sessions = embedded.view(self.members, -1, embedded.shape[-1])
        weight = self.weight.view(self.members, 1, -1).transpose(1, 2)
        return torch.bmm(sessions, weight).view(-1, 1)


class MemberEmbedding(nn.Module):
    """A participant embedding for each member: ``weight`` is ``(participants, size)``
    per member, drawn from a standard normal distribution like :class:`torch.nn.Embedding`."""

    def __init__(self, n_participants: int, size: int, members: int) -> None:
        super().__init__()
        shape = stacked_shape(members, (n_participants, size))
        self.weight = nn.Parameter(torch.empty(shape).normal_())
        self.size = size

    def forward(self, rows: torch.Tensor) -> torch.Tensor:
        """The embeddings at ``rows`` of the members' stacked tables (``member *
        participants + participant``), ``(batch, size)``."""
        return nn.functional.embedding(rows, self.weight.view(-1, self.size))


class NamedModules(nn.ModuleDict):
    """A :class:`torch.nn.ModuleDict` whose keys may be any model name.

    ``ModuleDict`` refuses a key that is an attribute of a module, such as ``update``,
    ``eval`` or ``__class__``, and models may use such names. The modules are kept in
    ``_modules`` as ``ModuleDict`` keeps them, and are only ever reached by key.
    """

    def __setitem__(self, key: str, module: nn.Module) -> None:
        self._modules[key] = module


class NamedParameters(nn.Module):
    """Parameters by model name, like :class:`torch.nn.ParameterDict` for any name.

    ``ParameterDict`` looks its keys up as attributes, so a param named ``__class__`` or
    ``forward`` would give the attribute instead; here they live in ``_parameters`` only.
    """

    def __setitem__(self, key: str, parameter: nn.Parameter) -> None:
        self._parameters[key] = parameter

    def __getitem__(self, key: str) -> nn.Parameter:
        return self._parameters[key]


@dataclass
class Recording:
    """What one learnable module saw and did on the trials its filter selected.

    Arrays are flat over (trial, session, action) entries the module wrote.
    """

    before: list[torch.Tensor]
    after: list[torch.Tensor]
    inputs: list[torch.Tensor]
    participant: list[torch.Tensor]
    member: list[torch.Tensor]


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
    members : int
        Number of members of an ensemble: networks with weights of their own, run side by
        side in one batch (see :meth:`forward`).

    Notes
    -----
    Subclasses set the class attributes ``name``, ``states`` (name -> initial value),
    ``params`` (name -> :class:`ParamSpec`), ``module_specs`` (name -> :class:`ModuleSpec`),
    ``data_columns`` and ``embedding_size``/``embedding_dropout``, and implement
    :meth:`update` and :meth:`choice_logits`.

    Inside :meth:`running` (so during :meth:`forward`) the params and the hidden-layer
    biases of the module networks are computed once, not on every trial: they do not
    change within a pass.
    """

    name: str = ""
    states: Mapping[str, float] = {}
    params: Mapping[str, ParamSpec] = {}
    module_specs: Mapping[str, ModuleSpec] = {}
    data_columns: tuple[str, ...] = ()
    embedding_size: int = 0
    embedding_dropout: float = 0.0

    def __init__(
        self,
        n_actions: int,
        n_participants: int = 1,
        hidden_size: int = 8,
        dropout: float = 0.0,
        members: int = 1,
    ) -> None:
        super().__init__()
        self.n_actions = n_actions
        self.n_participants = n_participants
        self.hidden_size = hidden_size
        self.module_dropout = dropout
        self.members = members
        size = self.embedding_size
        self.embedding = MemberEmbedding(n_participants, size, members) if size else None
        self.embedding_drop = nn.Dropout(self.embedding_dropout)
        self.nets = NamedModules(
            {
                name: ModuleNet(
                    1 + len(spec.inputs),
                    size if spec.embedded else 0,
                    hidden_size,
                    dropout,
                    members,
                )
                for name, spec in self.module_specs.items()
            }
        )
        self.raw_params = NamedParameters()
        self.param_embeddings = NamedModules()
        for name, spec in self.params.items():
            if spec.fixed:
                continue
            shape = stacked_shape(members, (n_participants,) if spec.per_participant else (1,))
            self.raw_params[name] = nn.Parameter(torch.full(shape, spec.to_raw(spec.value)))
            if spec.embedded and size:
                self.param_embeddings[name] = ParamEmbedding(size, members)
        # An empty buffer that moves with .to(device), so the network knows its device.
        self.register_buffer("device_anchor", torch.empty(0), persistent=False)
        self.recordings: dict[str, Recording] | None = None
        self._embedded: torch.Tensor | None = None
        self._participants: torch.Tensor | None = None
        # Inside running(): the member of each session, and its row in the members' stacked
        # per-participant tables (member * n_participants + participant).
        self._member_index: torch.Tensor | None = None
        self._table_index: torch.Tensor | None = None
        # Inside forward(): the current trial, and (batch, 1) whether each session's current
        # trial has a choice.
        self._trial = 0
        self._present: torch.Tensor | None = None
        self._vectors: dict[tuple, torch.Tensor] = {}
        # While recording: (trials, batch, 1), the entries to record; None for all.
        self._recorded_trials: torch.Tensor | None = None
        # Set only inside running(): each param's value and each module's hidden bias.
        self._param_values: dict[str, torch.Tensor] | None = None
        self._hidden_biases: dict[str, torch.Tensor] | None = None
        # After a forward pass in training mode: each member's sum of (|value| -
        # VALUE_RANGE)^2 over its modules' new values beyond the range, per choice; during
        # it, those new values and the entries they are written to.
        self.beyond_range: torch.Tensor | None = None
        self._written: list[tuple[torch.Tensor, torch.Tensor | None]] | None = None

    def set_participant_values(
        self, values: Mapping[str, Sequence[float] | np.ndarray], learnable: bool = False
    ) -> None:
        """Give params these values: one per participant (one in all for a shared param),
        the same for every member, or a row of them per member. Unless ``learnable``,
        they stay there: training no longer changes them."""
        for name, column in values.items():
            spec = self.params[name]
            raw = self.raw_params[name]
            rows = self.member_rows(raw)
            given = np.broadcast_to(np.asarray(column, dtype=float), rows.shape)
            converted = [spec.to_raw(float(v)) for v in given.ravel()]
            with torch.no_grad():
                rows.copy_(torch.tensor(converted, dtype=raw.dtype).view(rows.shape))
            raw.requires_grad_(learnable)

    def member(self, index: int) -> BaseRNN:
        """Member ``index`` of the ensemble as a network of its own (a copy)."""
        return self.members_subset([index])

    def members_subset(self, indices: Sequence[int]) -> BaseRNN:
        """The ensemble of the members ``indices``, in that order (a copy, in the same
        precision and training or evaluation mode)."""
        subset = type(self)(
            self.n_actions, self.n_participants, self.hidden_size, self.module_dropout, len(indices)
        ).to(self.device, self.device_anchor.dtype)
        chosen = torch.as_tensor(indices, device=self.device)
        subset.load_state_dict(
            {
                key: self.member_rows(value.detach())[chosen].reshape(shape)
                for (key, value), shape in zip(
                    self.state_dict().items(),
                    (v.shape for v in subset.state_dict().values()),
                    strict=True,
                )
            }
        )
        for name, raw in self.raw_params._parameters.items():
            subset.raw_params[name].requires_grad_(raw.requires_grad)
        return subset.train(self.training)

    def member_rows(self, tensor: torch.Tensor) -> torch.Tensor:
        """A weight of this network (or a tensor of its shape) as one row per member."""
        return tensor.view(self.members, -1)

    def member_param_values(self, names: Sequence[str]) -> dict[str, np.ndarray]:
        """The values of learnable params, float64 ``(members, n)``: ``n`` is the number
        of participants for a param per participant or fed the participant embedding,
        else 1."""
        self.eval()
        participants = torch.arange(self.n_participants, device=self.device)
        values = {}
        with torch.no_grad(), self.running(participants.repeat(self.members)):
            for name in names:
                value = self.param(name).double().cpu()
                table = value.expand(self.members * self.n_participants, 1)
                table = table.reshape(self.members, self.n_participants)
                spec = self.params[name]
                shared = not spec.per_participant and name not in self.param_embeddings
                values[name] = (table[:, :1] if shared else table).numpy()
        return values

    # -- what generated code calls ------------------------------------------------------
    def param(self, name: str) -> torch.Tensor:
        """The value of param ``name``: a number, or one per session, shape (batch, 1)."""
        if self._param_values is not None:
            return self._param_values[name]
        spec = self.params[name]
        if spec.fixed:
            return torch.tensor(spec.value, device=self.device)
        raw = self.raw_params[name]
        if spec.per_participant:
            raw = raw.view(-1)[self._table_index].unsqueeze(-1)
        elif self.members > 1:
            raw = raw.view(-1)[self._member_index].unsqueeze(-1)
        if name in self.param_embeddings:
            raw = raw + self.param_embeddings[name](self._embedded)
        return spec.from_raw(raw)

    def learned(
        self, name: str, value: torch.Tensor, mask: torch.Tensor | None, *inputs: torch.Tensor
    ) -> torch.Tensor:
        """Apply learnable module ``name`` to ``value`` where ``mask`` holds (all if None).

        The module's network ``f`` reads the value and the inputs. The new value is
        ``value + f``, or ``activation(f)`` for a module with an activation, clipped to
        [-CLIP, CLIP].

        Parameters
        ----------
        name : str
            The module.
        value : torch.Tensor
            ``(batch, actions)`` current value of the module's target state.
        mask : torch.Tensor or None
            Boolean, broadcastable to ``value``: the entries the module writes.
        *inputs : torch.Tensor
            The module's inputs in declared order, each ``(batch, 1)`` or ``(batch, actions)``.

        Returns
        -------
        torch.Tensor
            The new value: the module's output where ``mask`` holds, ``value`` elsewhere.
        """
        spec = self.module_specs[name]
        net = self.nets[name]
        # One row of features per (session, action) entry: the value, then the inputs.
        if inputs:
            columns = [
                value,
                *(x if x.shape == value.shape else x.expand_as(value) for x in inputs),
            ]
            features = torch.stack(columns, dim=-1).view(-1, len(columns))
        else:
            features = value.reshape(-1, 1)
        if self._hidden_biases is not None:
            hidden_bias = self._hidden_biases[name]
        else:
            hidden_bias = net.hidden_bias(self._embedded, value.shape[-1])
        update = net(features, hidden_bias).view_as(value)
        # No residual under an activation: squashing value + f would tie the new value
        # to the old one, so a constant (say, a learning rate) could only be learnt by f
        # cancelling the value exactly. The value is still an input of f.
        activation = ACTIVATIONS.get(spec.activation)
        new = value + update if activation is None else activation(update)
        if spec.activation not in WITHIN_CLIP:
            # The same as clamp, with a backward pass of one operation instead of several.
            new = nn.functional.hardtanh(new, -CLIP, CLIP)
        if self._written is not None:
            self._written.append((new, mask))
        if self.recordings is not None:
            self._record(name, value, new, features[:, 1:].view(*value.shape, len(inputs)), mask)
        return new if mask is None else torch.where(mask, new, value)

    def update(
        self,
        state: dict[str, torch.Tensor],
        data: Mapping[str, torch.Tensor],
        chosen: torch.Tensor,
    ) -> dict[str, torch.Tensor]:
        """The states after one trial: ``state`` updated with the trial's ``data``.

        ``chosen`` is the (batch, actions) boolean mask of the chosen action.
        """
        raise NotImplementedError

    def choice_logits(
        self, state: dict[str, torch.Tensor], data: Mapping[str, torch.Tensor]
    ) -> torch.Tensor | float:
        """The logits of a trial's choice, from the states at the start of the trial and
        what is seen before the choice."""
        raise NotImplementedError

    def trial_logits(
        self, state: dict[str, torch.Tensor], data: Mapping[str, torch.Tensor], batch_size: int
    ) -> torch.Tensor:
        """:meth:`choice_logits` as a (batch, actions) tensor; actions not offered on the
        trial (``data["offered"]`` false) get a logit of minus infinity."""
        logits = self.choice_logits(state, data)
        expected = (batch_size, self.n_actions)
        if not isinstance(logits, torch.Tensor):
            logits = torch.full(expected, float(logits), device=self.device)
        elif logits.shape != expected:
            logits = logits.expand(expected)
        offered = data.get("offered")
        return logits if offered is None else logits.masked_fill(~offered, -math.inf)

    # -- the loop -----------------------------------------------------------------------
    @contextmanager
    def running(self, participants: torch.Tensor) -> Iterator[None]:
        """Prepare :meth:`update` and :meth:`choice_logits` calls on sessions of the given
        participants.

        :meth:`forward` runs inside it; a caller that steps through trials itself (such
        as the simulator) wraps its loop in it.

        Parameters
        ----------
        participants : torch.Tensor
            ``(batch,)`` participant index of each session.
        """
        self._participants = participants
        sessions = len(participants) // self.members
        self._member_index = torch.arange(self.members, device=participants.device)
        self._member_index = self._member_index.repeat_interleave(sessions)
        self._table_index = self._member_index * self.n_participants + participants
        self._embedded = None
        if self.embedding is not None:
            self._embedded = self.embedding_drop(self.embedding(self._table_index))
        self._param_values = {name: self.param(name) for name in self.params}
        self._hidden_biases = {
            name: net.hidden_bias(self._embedded, self.n_actions) for name, net in self.nets.items()
        }
        try:
            yield
        finally:
            self._param_values = self._hidden_biases = None

    def vector(self, values: tuple[float, ...]) -> torch.Tensor:
        """A per-action constant as a (1, actions) tensor."""
        key = (values, self.device)
        if key not in self._vectors:
            self._vectors[key] = torch.tensor([values], device=self.device)
        return self._vectors[key]

    @property
    def has_dropout(self) -> bool:
        """True when training mode drops units (of the embedding or a module network)."""
        return self.embedding_drop.p > 0 or any(net.dropout > 0 for net in self.nets.values())

    @property
    def device(self) -> torch.device:
        """Where the network's tensors live (it follows ``.to(device)``)."""
        return self.device_anchor.device

    def initial_state(self, batch_size: int) -> dict[str, torch.Tensor]:
        """Every state at its initial value, in the network's precision."""
        anchor = self.device_anchor
        return {
            name: torch.full(
                (batch_size, self.n_actions), float(value), device=anchor.device, dtype=anchor.dtype
            )
            for name, value in self.states.items()
        }

    def forward(
        self,
        trials: list[dict[str, torch.Tensor]],
        chosen: torch.Tensor,
        participants: torch.Tensor,
        return_states: bool = False,
    ) -> torch.Tensor | tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """The logits of each trial's choice, shape (trials, batch, actions).

        The logits of trial t come from the states at its start (after trials 1..t-1)
        and what is seen before its choice. A trial without a choice (a missed trial, or
        padding) changes no state.

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
        present = chosen.any(-1, keepdim=True)  # (trials, batch, 1)
        some_absent = (~present).any(1).flatten().tolist()
        self._written = [] if self.training else None
        with self.running(participants):
            state = self.initial_state(batch_size)
            logits = []
            history: dict[str, list[torch.Tensor]] = {name: [] for name in self.states}
            for t, (data, chosen_now) in enumerate(zip(trials, chosen.unbind(0), strict=True)):
                logits.append(self.trial_logits(state, data, batch_size))
                self._trial, self._present = t, present[t]
                new_state = self.update(state, data, chosen_now)
                if some_absent[t]:
                    new_state = {
                        name: torch.where(present[t], value, state[name])
                        for name, value in new_state.items()
                    }
                state = new_state
                if return_states:
                    for name, value in state.items():
                        history[name].append(value)
            self._present = None
        self.beyond_range = self._excess(self._written, len(trials) * batch_size)
        self._written = None
        stacked = torch.stack(logits)
        if return_states:
            return stacked, {name: torch.stack(values) for name, values in history.items()}
        return stacked

    def _excess(
        self, written: list[tuple[torch.Tensor, torch.Tensor | None]] | None, entries: int
    ) -> torch.Tensor | None:
        """Each member's summed ``(|value| - VALUE_RANGE)^2`` of the ``written`` values
        beyond the range (on the entries their masks select), per one of ``entries``
        sessions' trials; None for None. All at once after the trials: a few operations
        on stacked values rather than several for every module on every trial."""
        if written is None:
            return None
        if not written:
            return torch.zeros(self.members, device=self.device)
        values = torch.stack([value for value, _ in written])
        masks = torch.stack(
            [
                torch.ones_like(v, dtype=torch.bool) if m is None else m.expand_as(v)
                for v, m in written
            ]
        )
        beyond = nn.functional.relu(values.abs() - VALUE_RANGE) * masks
        per_member = beyond.square().view(len(written), self.members, -1).sum((0, 2))
        return per_member / (entries / self.members)

    # -- recording for the equation stage ------------------------------------------------
    def start_recording(self, trials: torch.Tensor | None = None) -> None:
        """Record what the learnable modules do in the next :meth:`forward`: on the
        ``(trials, batch)`` entries ``trials`` marks, or on every trial."""
        self.recordings = {name: Recording([], [], [], [], []) for name in self.module_specs}
        self._recorded_trials = None if trials is None else trials.unsqueeze(-1)

    def stop_recording(self) -> dict[str, Recording]:
        recordings, self.recordings = self.recordings or {}, None
        self._recorded_trials = None
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
        if self._present is not None:  # a trial without a choice updates nothing
            selected = selected & self._present
        if self._recorded_trials is not None:
            selected = selected & self._recorded_trials[self._trial]
        selected = selected.expand_as(before)
        record = self.recordings[name]
        record.before.append(before[selected].detach())
        record.after.append(after[selected].detach())
        record.inputs.append(inputs[selected].detach())
        sessions = self._participants.unsqueeze(1).expand_as(before)
        record.participant.append(sessions[selected])
        record.member.append(self._member_index.unsqueeze(1).expand_as(before)[selected])
