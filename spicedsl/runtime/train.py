"""Stage one of SPICE: fit the network to the choices (masked next-choice cross-entropy)."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field, replace

import numpy as np
import torch

from spicedsl.errors import FitError
from spicedsl.runtime.batch import IGNORE, Batch, member_subset
from spicedsl.runtime.network import RANGE_PENALTY, BaseRNN
from spicedsl.runtime.pooling import Group, group_spreads, median_error, pseudo_observations
from spicedsl.runtime.progress import Progress
from spicedsl.settings import FitSettings


def choice_nll(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Mean negative log-likelihood of the predicted choices; padding never counts."""
    return torch.nn.functional.cross_entropy(
        logits.reshape(-1, logits.shape[-1]), targets.reshape(-1), ignore_index=IGNORE
    )


def member_nll(logits: torch.Tensor, targets: torch.Tensor, members: int) -> torch.Tensor:
    """Each member's mean NLL of its predicted choices, shape ``(members,)``: the sessions
    of the batch are those of each member in turn (see :class:`BaseRNN`)."""
    if members == 1:
        return choice_nll(logits, targets).reshape(1)
    n_trials, n_actions = logits.shape[0], logits.shape[-1]
    nll = torch.nn.functional.cross_entropy(
        logits.reshape(-1, n_actions), targets.reshape(-1), ignore_index=IGNORE, reduction="none"
    )
    counts = (targets != IGNORE).view(n_trials, members, -1).sum((0, 2))
    return nll.view(n_trials, members, -1).sum((0, 2)) / counts.clamp(min=1)


def batch_nll(net: BaseRNN, batch: Batch) -> float:
    """Mean per-trial NLL of ``batch`` under ``net`` in evaluation mode (for an ensemble,
    the mean over its members)."""
    return float(np.mean(members_nll(net, batch)))


def members_nll(net: BaseRNN, batch: Batch) -> np.ndarray:
    """Each member's mean per-trial NLL of ``batch`` in evaluation mode, ``(members,)``."""
    was_training = net.training
    net.eval()
    with torch.no_grad():
        logits = net(batch.trials, batch.chosen, batch.participants)
        losses = member_nll(logits, batch.targets, net.members)
    net.train(was_training)
    return losses.double().cpu().numpy()


@dataclass
class TrainingLog:
    """What happened in training: per-epoch losses and why it stopped.

    For an ensemble, the losses are the means over its members, ``best_epoch`` is the
    last of the members' best epochs, ``best_loss`` the mean of their best losses, and
    ``members`` says, member by member, its best epoch and loss and when it stopped.
    """

    train_loss: list[float] = field(default_factory=list)
    validation_loss: list[float] = field(default_factory=list)
    stopped: str = "max_epochs"  # or "converged", "interrupted"
    best_epoch: int = 0
    # The monitored loss (validation, else training) of the kept weights.
    best_loss: float = math.inf
    # Fresh initialisations trained after networks that stayed at chance.
    restarts: int = 0
    members: list[dict[str, float]] = field(default_factory=list)

    def report(self) -> dict:
        """The log as ``report.json`` holds it."""
        return {
            "epochs_run": len(self.train_loss),
            "best_epoch": self.best_epoch,
            "best_loss": self.best_loss,
            "stopped": self.stopped,
            "restarts": self.restarts,
            "members": self.members,
            "train_loss": self.train_loss,
            "validation_loss": self.validation_loss,
        }


def train_network(
    net: BaseRNN,
    train: Batch,
    settings: FitSettings,
    validation: Batch | None = None,
    progress: bool = True,
) -> TrainingLog:
    """Fit ``net`` with Adam on full batches; keep the best weights.

    Training stops after ``settings.epochs``, or when the smoothed relative change of the
    loss stays below ``settings.convergence`` for ``settings.patience`` epochs. Ctrl-C
    stops it too; the best weights so far are kept and the log says "interrupted".

    An ensemble (``net.members`` > 1) trains every member at once, each on its own
    sessions of the batches (the sessions of each member in turn, see
    :func:`spicedsl.runtime.batch.member_batches`): the loss is the sum of the members'
    losses, so each member's weights follow its own loss, as they would alone. Each
    member keeps the weights of its own best epoch and stops on its own, by its training
    or its validation loss (see :func:`_members_done`). Stopped members leave the batch;
    training ends when every member has stopped.

    Raises
    ------
    FitError
        When the loss becomes non-finite; the message names the first module or param
        whose gradient or value stopped being finite.
    """
    members = net.members
    log = TrainingLog()
    best_loss, best_state = np.full(members, math.inf), _copy_state(net)
    best_epoch, stopped_at = np.zeros(members, dtype=int), np.zeros(members, dtype=int)
    smoothed_change = np.full(members, math.nan)
    calm_epochs = np.zeros(members, dtype=int)
    previous = None
    # The members still training, by their index in ``net``; ``work`` holds their weights.
    active, work = np.arange(members), net
    optimizer = _adam(work, settings)
    bar = Progress(settings.epochs, "training", enabled=progress, unit="epochs")
    work.train()
    try:
        for epoch in range(settings.epochs):
            # When validation sessions run in the training batch (see Batch.predicting) and
            # no dropout makes training logits differ from evaluation ones, one forward
            # pass serves both.
            shared_forward = (
                validation is not None
                and validation.trials is train.trials
                and not work.has_dropout
            )
            logits = work(train.trials, train.chosen, train.participants)
            beyond_range = work.beyond_range
            losses = member_nll(logits, train.targets, work.members)
            values = losses.detach().double().cpu().numpy()
            monitored = values
            if validation is not None:
                if shared_forward:
                    detached = logits.detach()
                    monitored = member_nll(detached, validation.targets, work.members)
                    monitored = monitored.double().cpu().numpy()
                else:
                    monitored = members_nll(work, validation)
                log.validation_loss.append(float(np.mean(monitored)))
            log.train_loss.append(float(np.mean(values)))
            # The weights that produced this epoch's losses are those before the step.
            improved = monitored < best_loss[active]
            if improved.any():
                best_loss[active[improved]] = monitored[improved]
                best_epoch[active[improved]] = epoch + 1
                _copy_members(best_state, net, work, active, improved)
            optimizer.zero_grad()
            if beyond_range is not None:
                losses = losses + RANGE_PENALTY * beyond_range
            losses.sum().backward()
            if not np.isfinite(values).all() or not _gradients_finite(work):
                raise FitError(
                    f"training diverged at epoch {epoch + 1}: {_first_non_finite(work)}; "
                    "try a smaller learning_rate"
                )
            optimizer.step()
            if previous is not None:
                change = np.abs(previous - values) / np.maximum(np.abs(previous), 1e-12)
                before = smoothed_change[active]
                smoothed = np.where(np.isnan(before), change, 0.9 * before + 0.1 * change)
                smoothed_change[active] = smoothed
                calm = smoothed < settings.convergence
                calm_epochs[active] = np.where(calm, calm_epochs[active] + 1, 0)
            previous = values
            bar.update(
                epoch + 1,
                loss=log.train_loss[-1],
                validation=log.validation_loss[-1] if validation else None,
            )
            done = calm_epochs[active] >= settings.patience
            if members > 1:
                since_best = epoch + 1 - best_epoch[active]
                done = _members_done(done, since_best, stopped_at, epoch + 1, settings.patience)
            stopped_at[active[done]] = epoch + 1
            if done.all():
                log.stopped = "converged"
                break
            if done.any():
                keep = np.flatnonzero(~done)
                train, validation = member_subset(work.members, keep, train, validation)
                work, optimizer = _keep_members(work, optimizer, keep, settings)
                active, previous = active[keep], previous[keep]
    except KeyboardInterrupt:
        log.stopped = "interrupted"
    finally:
        bar.close()
    net.load_state_dict(best_state)
    net.eval()
    log.best_loss, log.best_epoch = float(np.mean(best_loss)), int(best_epoch.max())
    if members > 1:
        stopped_at[stopped_at == 0] = len(log.train_loss)
        log.members = [
            {"best_epoch": int(e), "best_loss": float(b), "epochs": int(s)}
            for e, b, s in zip(best_epoch, best_loss, stopped_at, strict=True)
        ]
    return log


# An ensemble member's epoch budget, relative to the epoch when half of them had stopped.
MEMBER_BUDGET = 1.25
# Patiences of epochs before a member may stop for want of a better monitored loss.
MEMBER_WARM_UP = 3


def _members_done(
    settled: np.ndarray, since_best: np.ndarray, stopped_at: np.ndarray, epoch: int, patience: int
) -> np.ndarray:
    """Which members of an ensemble stop after ``epoch``, among those still training.

    A member stops when its training loss has ``settled``; when its monitored
    (validation) loss has not improved for ``patience`` epochs (``since_best``), once
    ``MEMBER_WARM_UP`` patiences have passed (early on, a member's loss often rises for a
    while after a first quick fall, before it learns the task); or at its epoch budget,
    ``MEMBER_BUDGET`` times the epoch at which half of the members had stopped: a member
    that learns far more slowly than the others would otherwise set the cost of the whole
    ensemble (it keeps its best weights so far). ``stopped_at`` holds each member's last
    epoch, 0 while it trains.
    """
    stops = np.sort(stopped_at[stopped_at > 0])
    half = len(stopped_at) // 2
    if len(stops) >= half and epoch >= MEMBER_BUDGET * stops[half - 1]:
        return np.ones_like(settled)
    overfitting = (since_best >= patience) & (epoch >= MEMBER_WARM_UP * patience)
    return settled | overfitting


def _adam(net: BaseRNN, settings: FitSettings) -> torch.optim.Adam:
    return torch.optim.Adam(
        net.parameters(), lr=settings.learning_rate, weight_decay=settings.weight_decay
    )


def _keep_members(
    net: BaseRNN, optimizer: torch.optim.Adam, keep: np.ndarray, settings: FitSettings
) -> tuple[BaseRNN, torch.optim.Adam]:
    """The ensemble of the members ``keep`` of ``net``, and an optimizer that goes on as
    ``optimizer`` did for them (its moment estimates sliced likewise)."""
    subset = net.members_subset(keep.tolist())
    sliced = _adam(subset, settings)
    rows = torch.as_tensor(keep, device=net.device)
    for old, new in zip(net.parameters(), subset.parameters(), strict=True):
        state = optimizer.state.get(old)
        if state:
            sliced.state[new] = {
                key: net.member_rows(value)[rows].reshape(new.shape)
                if value.shape == old.shape
                else value.clone()
                for key, value in state.items()
            }
    return subset, sliced


def _copy_state(net: BaseRNN) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in net.state_dict().items()}


def _copy_members(
    state: dict[str, torch.Tensor],
    net: BaseRNN,
    work: BaseRNN,
    active: np.ndarray,
    improved: np.ndarray,
) -> None:
    """Copy into ``state`` (of ``net``) the current weights in ``work`` of the members
    ``improved`` (a mask over ``work``'s members, which are ``active`` of ``net``)."""
    if work is net and improved.all():
        state.update(_copy_state(net))
        return
    local = torch.as_tensor(np.flatnonzero(improved), device=net.device)
    rows = torch.as_tensor(active[improved], device=net.device)
    for key, value in work.state_dict().items():
        net.member_rows(state[key])[rows] = work.member_rows(value.detach())[local]


def _gradients_finite(net: BaseRNN) -> bool:
    return all(p.grad is None or bool(torch.isfinite(p.grad).all()) for p in net.parameters())


def _first_non_finite(net: BaseRNN) -> str:
    for name, parameter in net.named_parameters():
        where = _describe_parameter(name)
        if not torch.isfinite(parameter).all():
            return f"{where} is no longer finite"
        if parameter.grad is not None and not torch.isfinite(parameter.grad).all():
            return f"the gradient of {where} is not finite"
    return "the loss is not finite"


def _describe_parameter(name: str) -> str:
    parts = name.split(".")
    if parts[0] == "nets":
        return f"module '{parts[1]}'"
    if parts[0] in ("raw_params", "param_embeddings"):
        return f"param '{parts[1]}'"
    if parts[0] == "embedding":
        return "the participant embedding"
    return f"the weights '{name}'"


# Strength of the pull of refit params toward their starting values (see refit_params).
ANCHOR = 1e-4
# L-BFGS settings of refit_params: its memory; its stopping tolerances on the gradient,
# on the change of the mean NLL (by default; the model is in float64) and on the step;
# the longest step, in any one raw param (a step across other basins of the loss, which
# clipped equations make uneven, lands where the candidate no longer means what it
# did); the sufficient decrease of its backtracking line search and the most steps one
# line search tries.
HISTORY = 20
TOLERANCE_GRAD = 1e-9
TOLERANCE_CHANGE = 1e-11
TOLERANCE_STEP = 1e-10
MAX_STEP = 1.0
SUFFICIENT_DECREASE = 1e-4
LINE_SEARCH_STEPS = 8


@dataclass(frozen=True)
class Pooling:
    """Partial pooling in a refit (see :mod:`spicedsl.runtime.pooling`).

    Attributes
    ----------
    entries : dict of str to numpy.ndarray
        Per pooled param, ``(members, participants)``: the entries drawn from the group
        (held entries and the params of members not pooled are left out).
    groups : dict of str to Group
        The group estimates to start from (or to keep, with ``fixed``); a param without
        one starts with no prior (its first refit is its participants' own).
    fixed : bool
        Keep ``groups`` as given: one refit, no estimation.
    """

    entries: Mapping[str, np.ndarray]
    groups: Mapping[str, Group] = field(default_factory=dict)
    fixed: bool = False


# Rounds of partial pooling at most (each a refit, then the groups estimated again), and
# how little the groups must change, relative to their spread, to stop earlier; the
# rounds before the last go as far as a refit that chooses among candidates.
POOLING_ROUNDS = 6
POOLING_TOLERANCE = 0.02
ROUGH = (30, 1e-7)
# The step, in raw units, of the finite differences that give the NLL's curvature.
CURVATURE_STEP = 1e-4


def refit_params(
    net: BaseRNN,
    batch: Batch,
    max_iterations: int = 100,
    held: Mapping[str, np.ndarray] | None = None,
    tolerance: float = TOLERANCE_CHANGE,
    bounds: Mapping[str, tuple[float, float]] | None = None,
    tied: Mapping[str, np.ndarray] | None = None,
    pooling: Pooling | None = None,
) -> tuple[np.ndarray, dict[str, Group]]:
    """Fit the learnable params of each member of a network with no learnable module (an
    equation model) by L-BFGS on its choices; return each member's final mean NLL
    (infinite where the fit diverged) and, with ``pooling``, the groups of the pooled
    params.

    The members are separate problems solved side by side: each has its own L-BFGS
    memory, line search (backtracking to a sufficient decrease) and stopping test, and
    one forward and backward pass over the batch (the sessions of each member in turn)
    evaluates all of them. A member whose loss stops being finite on a step takes a
    shorter one; a member that cannot decrease its loss any more stops there.

    ``held`` maps a param to a boolean mask of its entries, ``(members, n)`` as
    :meth:`BaseRNN.member_rows` lays them out, that stay where they are. ``bounds`` keeps
    a param's raw values within ``[low, high]`` (projected steps: an entry on a bound
    stays there while the gradient pushes it out). ``tied`` maps a param to a
    ``(members,)`` mask of the members whose entries of it move together: one value
    shared by every participant.

    With a handful of scalars and no network weights, a quasi-Newton method converges in
    a few full-batch steps. A weak pull toward the starting values (``ANCHOR`` times the
    squared distance) decides only the directions the choices leave free: without a
    hard-coded equation that fixes the scale of a state, scaling the state's equations up
    and its inverse temperature down predicts the same choices.

    With ``pooling``, each pooled entry's raw value ``theta`` adds
    ``(theta - mean)² / (2 spread²)`` to its member's summed NLL, with ``mean`` the mean
    of the param's pooled values (the group's mean is refit with them). Unless the
    groups are ``fixed``, shorter refits (``ROUGH``) alternate with estimating their
    spreads (:meth:`_MemberLosses.groups`) until the groups change by less than
    ``POOLING_TOLERANCE`` times their spread; the last refit (the ``POOLING_ROUNDS``-th
    at most) goes the whole way.
    """
    groups = dict(pooling.groups) if pooling else {}
    if not any(p.requires_grad for p in net.parameters()):
        return members_nll(net, batch), groups
    net.eval()
    losses = _MemberLosses(net, batch, held or {}, bounds or {}, tied or {})
    x = losses.start.clone()
    settled = pooling is None or pooling.fixed
    with torch.enable_grad():
        for round_ in range(POOLING_ROUNDS):
            last = settled or round_ == POOLING_ROUNDS - 1
            losses.set_prior(groups, pooling.entries if pooling else {})
            budget = (max_iterations, tolerance) if last else ROUGH
            loss, _ = _lbfgs(losses, x, *budget, losses.low, losses.high)
            if last:
                break
            estimated = losses.groups(x, pooling.entries)
            settled = _settled(groups, estimated)
            groups = estimated
    if pooling is not None:
        means = losses.pooled_means(x, pooling.entries)
        groups = {name: replace(g, mean=means[name]) for name, g in groups.items() if name in means}
    losses.write(net, x)
    nll = members_nll(net, batch)
    return np.where(np.isfinite(loss.cpu().numpy()), nll, math.inf), groups


def _settled(before: Mapping[str, Group], after: Mapping[str, Group]) -> bool:
    """Whether the groups changed by less than ``POOLING_TOLERANCE`` times their spread
    (or their participants' median standard error, when larger)."""
    if set(before) != set(after):
        return False
    for name, new in after.items():
        old = before[name]
        if not np.array_equal(np.isnan(old.spread), np.isnan(new.spread)):
            return False
        scale = np.fmax(np.fmax(old.spread, new.spread), median_error(new.variance))
        change = np.fmax(np.abs(new.mean - old.mean), np.abs(new.spread - old.spread))
        if (change > POOLING_TOLERANCE * scale).any():
            return False
    return True


class _MemberLosses:
    """The refit loss of each member of an equation model and its gradient, as functions
    of the members' learnable params laid out as rows ``(members, n)``.

    It evaluates only the members a caller needs, with a network and batch of those
    members alone (taken from the whole ones, which it keeps).
    """

    def __init__(
        self,
        net: BaseRNN,
        batch: Batch,
        held: Mapping[str, np.ndarray],
        bounds: Mapping[str, tuple[float, float]],
        tied: Mapping[str, np.ndarray],
    ) -> None:
        self.net, self.batch = net, batch
        named = self._named(net)
        self.sizes = [net.member_rows(p).shape[1] for _, p in named]
        ends = np.cumsum(self.sizes)
        self.columns = {
            name.removeprefix("raw_params."): slice(end - size, end)
            for (name, _), size, end in zip(named, self.sizes, ends, strict=True)
        }
        self.fixed = torch.cat(
            [
                torch.as_tensor(_held_mask(held, name, net.member_rows(p).shape), device=net.device)
                for name, p in named
            ],
            dim=1,
        )
        start = torch.cat([net.member_rows(p.detach()) for _, p in named], dim=1).double()
        self.low = torch.full_like(start, -math.inf)
        self.high = torch.full_like(start, math.inf)
        for name, (low, high) in bounds.items():
            self.low[:, self.columns[name]], self.high[:, self.columns[name]] = low, high
        # Tied entries start from their mean, and their gradient is their mean gradient:
        # they move as one.
        self.ties = [
            (self.columns[name], torch.as_tensor(np.asarray(rows, dtype=bool), device=net.device))
            for name, rows in tied.items()
            if np.any(rows)
        ]
        for columns, rows in self.ties:
            start[rows, columns] = start[rows, columns].mean(1, keepdim=True)
        self.start = torch.maximum(torch.minimum(start, self.high), self.low)
        self.counts = (batch.targets != IGNORE).view(batch.targets.shape[0], net.members, -1)
        self.counts = self.counts.sum((0, 2)).clamp(min=1).double()
        # Per pooled param: its columns, and per member the precision 1 / spread² of
        # each of its entries (0 for those not pooled).
        self.priors: list[tuple[slice, torch.Tensor]] = []
        self._subsets: dict[bytes, tuple[BaseRNN, Batch]] = {}

    @staticmethod
    def _named(net: BaseRNN) -> list[tuple[str, torch.nn.Parameter]]:
        return [(name, p) for name, p in net.named_parameters() if p.requires_grad]

    def write(self, net: BaseRNN, x: torch.Tensor) -> None:
        """Set the learnable params of ``net`` (its members are the rows of ``x``)."""
        with torch.no_grad():
            for (_, p), chunk in zip(
                self._named(net), torch.split(x, self.sizes, dim=1), strict=True
            ):
                net.member_rows(p).copy_(chunk)

    def set_prior(self, groups: Mapping[str, Group], entries: Mapping[str, np.ndarray]) -> None:
        """Pool the ``entries`` of each param toward their mean with the spread of its
        group in ``groups`` (a param or member without a group is not pooled)."""
        self.priors = []
        for name, group in groups.items():
            if name not in entries:
                continue
            pooled = np.asarray(entries[name], dtype=bool) & ~np.isnan(group.spread)[:, None]
            precision = np.where(pooled, 1 / np.nan_to_num(group.spread, nan=1.0)[:, None] ** 2, 0)
            if pooled.any():
                self.priors.append((self.columns[name], torch.as_tensor(precision)))

    def pooled_means(self, x: torch.Tensor, entries: Mapping[str, np.ndarray]) -> dict:
        """Per param, each member's mean of the raw values of its ``entries`` at ``x``."""
        means = {}
        for name, mask in entries.items():
            weights = torch.as_tensor(np.asarray(mask, dtype=float))
            values = x[:, self.columns[name]]
            means[name] = ((weights * values).sum(1) / weights.sum(1)).cpu().numpy()
        return means

    def _prior(self, params: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
        """Each member's minus log prior of ``params`` (its rows ``index``): each pooled
        value's squared distance to the mean of its param's pooled values, times half
        their precision. The mean is the value that maximises the prior for given
        values: the group's mean is estimated with them, in each refit."""
        prior = params.new_zeros(params.shape[0])
        for columns, precision in self.priors:
            weights = precision[index].to(params.dtype)
            pooled = (weights > 0).to(params.dtype)
            values = params[:, columns]
            mean = (pooled * values).sum(1, keepdim=True) / pooled.sum(1, keepdim=True).clamp(min=1)
            prior = prior + 0.5 * (weights * (values - mean) ** 2).sum(1)
        return prior

    def _subset(self, rows: np.ndarray) -> tuple[BaseRNN, Batch]:
        """The network and batch of the members ``rows``."""
        if len(rows) == self.net.members:
            return self.net, self.batch
        key = rows.tobytes()
        if key not in self._subsets:
            if len(self._subsets) > MAX_SUBSETS:
                self._subsets.clear()
            batch = member_subset(self.net.members, rows, self.batch)[0]
            self._subsets[key] = (self.net.members_subset(rows.tolist()), batch)
        return self._subsets[key]

    def _evaluate(
        self, x: torch.Tensor, rows: np.ndarray, penalised: bool
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The loss of the members ``rows`` at ``x[rows]`` and its gradient: the mean NLL
        of their choices, with ``penalised`` the pull toward the start and the prior
        (per choice); else their summed NLL."""
        return self._evaluate_at(x[torch.as_tensor(rows, device=x.device)], rows, penalised)

    def _evaluate_at(
        self, values: torch.Tensor, rows: np.ndarray, penalised: bool
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """:meth:`_evaluate` with the params of the members ``rows`` given as ``values``,
        a row each (a member may appear more than once, at different values)."""
        net, batch = self._subset(rows)
        index = torch.as_tensor(rows, device=values.device)
        self.write(net, values)
        named = self._named(net)
        logits = net(batch.trials, batch.chosen, batch.participants)
        nll = member_nll(logits, batch.targets, net.members)
        if penalised:
            params = torch.cat([net.member_rows(p) for _, p in named], dim=1)
            pull = ((params - self.start[index].to(params.dtype)) ** 2).sum(1)
            loss = nll + ANCHOR * pull + self._prior(params, index) / self.counts[index]
        else:
            loss = nll * self.counts[index]
        gradients = torch.autograd.grad(loss.sum(), [p for _, p in named])
        gradient = torch.cat([net.member_rows(g) for g in gradients], dim=1).double()
        return loss.detach().double(), gradient

    def __call__(self, x: torch.Tensor, needed: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Each member's loss at ``x`` (infinite where not finite) and its gradient, for
        the ``needed`` members (a mask; the others get an infinite loss)."""
        wanted = needed.cpu().numpy().nonzero()[0]
        value, gradient = self._evaluate(x, wanted, penalised=True)
        rows = torch.as_tensor(wanted, device=x.device)
        broken = ~torch.isfinite(value) | ~torch.isfinite(gradient).all(1)
        every_loss = torch.full_like(x[:, 0], math.inf)
        every_loss[rows] = value.masked_fill(broken, math.inf)
        every_gradient = torch.zeros_like(x)
        every_gradient[rows] = gradient.masked_fill(broken[:, None], 0)
        for columns, tied in self.ties:
            block = every_gradient[tied, columns]
            every_gradient[tied, columns] = block.mean(1, keepdim=True).expand_as(block)
        return every_loss, every_gradient.masked_fill(self.fixed, 0)

    def groups(self, x: torch.Tensor, entries: Mapping[str, np.ndarray]) -> dict[str, Group]:
        """The groups of the pooled params estimated at ``x``: each participant's values
        and the Laplace approximation of their likelihood there in each value (the
        first and second derivatives of their summed NLL, the second by central
        differences; each participant's NLL depends on their own values alone, so a
        step of every participant's value of a param gives everyone's, and one pass
        evaluates the steps of every param) make pseudo-observations, from which
        :func:`~spicedsl.runtime.pooling.group_spreads` estimates each group."""
        active = {name: np.asarray(mask, dtype=bool) for name, mask in entries.items()}
        active = {name: mask for name, mask in active.items() if mask.any()}
        # x, then x with each param's pooled entries a step up and a step down: all in
        # one pass, every member once per point.
        points = [x]
        for name, mask in active.items():
            step = torch.zeros_like(x)
            step[:, self.columns[name]] = CURVATURE_STEP * torch.as_tensor(mask, dtype=x.dtype)
            points += [x + step, x - step]
        members = self.net.members
        rows = np.tile(np.arange(members), len(points))
        gradients = self._evaluate_at(torch.cat(points), rows, penalised=False)[1]
        gradient, *stepped = gradients.split(members)
        groups = {}
        steps = zip(active.items(), stepped[::2], stepped[1::2], strict=True)
        for (name, mask), plus, minus in steps:
            columns = self.columns[name]
            curvature = ((plus - minus)[:, columns] / (2 * CURVATURE_STEP)).cpu().numpy()
            y, variance = pseudo_observations(
                x[:, columns].cpu().numpy(), gradient[:, columns].cpu().numpy(), curvature, mask
            )
            spread, floored = group_spreads(y, variance)
            mean = self.pooled_means(x, {name: mask})[name]
            groups[name] = Group(mean, spread, variance, floored)
        return groups


# The most member subsets a refit keeps at once (each a small network and batch).
MAX_SUBSETS = 64


def _held_mask(held: Mapping[str, np.ndarray], name: str, shape: torch.Size) -> np.ndarray:
    """The mask of the entries of parameter ``name`` (``raw_params.PARAM``) held fixed."""
    param = name.removeprefix("raw_params.")
    mask = held.get(param) if param != name else None
    return np.zeros(shape, dtype=bool) if mask is None else np.broadcast_to(mask, shape).copy()


def _lbfgs(
    evaluate,
    x: torch.Tensor,
    max_iterations: int,
    tolerance: float,
    low: torch.Tensor,
    high: torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Minimise each row's loss by L-BFGS row by row, each entry within its bounds
    ``[low, high]``; ``x`` (within them) ends at the minimum found.
    ``evaluate(x, needed)`` gives the ``(losses, gradients)`` of all rows at once, right
    at least for the rows of the mask ``needed``. Returns the final losses and gradients.

    Steps are projected onto the bounds, and an entry on a bound whose gradient pushes
    it out has a zero gradient (it stays there until the gradient turns)."""

    def projected(at: torch.Tensor, gradient: torch.Tensor) -> torch.Tensor:
        outward = ((at <= low) & (gradient > 0)) | ((at >= high) & (gradient < 0))
        return gradient.masked_fill(outward, 0)

    rows, size = x.shape
    steps_s = x.new_zeros(rows, HISTORY, size)
    steps_y = x.new_zeros(rows, HISTORY, size)
    inverse_sy = x.new_zeros(rows, HISTORY)
    stored = torch.zeros(rows, dtype=torch.long, device=x.device)
    loss, gradient = evaluate(x, torch.ones(rows, dtype=torch.bool, device=x.device))
    gradient = projected(x, gradient)
    done = ~torch.isfinite(loss) | (gradient.abs().amax(1) <= TOLERANCE_GRAD)
    everyone = torch.arange(rows, device=x.device)
    for _ in range(max_iterations):
        if done.all():
            break
        direction = -_two_loop(gradient, steps_s, steps_y, inverse_sy, stored)
        slope = (gradient * direction).sum(1)
        uphill = ~(slope < 0)  # a stale memory: start again from steepest descent
        direction[uphill] = -gradient[uphill]
        stored[uphill] = 0
        slope = (gradient * direction).sum(1)
        step = torch.where(
            stored == 0, (1 / gradient.abs().sum(1).clamp(min=1e-12)).clamp(max=1), 1.0
        )
        step = torch.minimum(step, MAX_STEP / direction.abs().amax(1).clamp(min=1e-300))
        pending, moved = ~done, torch.zeros_like(done)
        new_x, new_loss, new_gradient = x.clone(), loss.clone(), gradient.clone()
        for _ in range(LINE_SEARCH_STEPS):
            moved_to = torch.minimum(torch.maximum(x + step[:, None] * direction, low), high)
            trial = torch.where(pending[:, None], moved_to, new_x)
            trial_loss, trial_gradient = evaluate(trial, pending)
            trial_gradient = projected(trial, trial_gradient)
            accept = pending & (trial_loss <= loss + SUFFICIENT_DECREASE * step * slope)
            new_x[accept], new_loss[accept] = trial[accept], trial_loss[accept]
            new_gradient[accept] = trial_gradient[accept]
            pending &= ~accept
            moved |= accept
            if not pending.any():
                break
            # The minimum of the quadratic through the loss, its slope and the trial,
            # kept within [0.1, 0.5] of the step; a tenth where the loss was not finite.
            curvature = 2 * (trial_loss - loss - slope * step)
            quadratic = -slope * step**2 / curvature.clamp(min=1e-300)
            shorter = torch.where(
                torch.isfinite(trial_loss) & (curvature > 0),
                torch.minimum(torch.maximum(quadratic, 0.1 * step), 0.5 * step),
                0.1 * step,
            )
            step = torch.where(pending, shorter, step)
            # A step too short to move the params: no decrease is left to find.
            pending &= (step[:, None] * direction).abs().amax(1) > TOLERANCE_STEP
            if not pending.any():
                break
        s, y = new_x - x, new_gradient - gradient
        sy = (s * y).sum(1)
        keep = moved & (sy > 1e-10)
        slot = stored % HISTORY
        steps_s[everyone[keep], slot[keep]] = s[keep]
        steps_y[everyone[keep], slot[keep]] = y[keep]
        inverse_sy[everyone[keep], slot[keep]] = 1 / sy[keep]
        stored += keep.long()
        change = (loss - new_loss).abs()
        x.copy_(new_x)
        loss, gradient = new_loss, new_gradient
        # Stopped: no step decreased the loss, or the last one changed little.
        done |= (
            ~moved
            | (gradient.abs().amax(1) <= TOLERANCE_GRAD)
            | (change < tolerance)
            | (s.abs().amax(1) <= TOLERANCE_STEP)
        )
    return loss, gradient


def _two_loop(
    gradient: torch.Tensor,
    steps_s: torch.Tensor,
    steps_y: torch.Tensor,
    inverse_sy: torch.Tensor,
    stored: torch.Tensor,
) -> torch.Tensor:
    """L-BFGS's two-loop recursion, row by row: the inverse-Hessian estimate of each row,
    from its stored steps (``stored`` of them, the newest at ``(stored - 1) % HISTORY``),
    times its gradient."""
    rows, history, size = steps_s.shape
    age = torch.arange(history, device=gradient.device)
    slots = (stored[:, None] - 1 - age) % history  # newest first
    valid = age < stored.clamp(max=history)[:, None]
    s = steps_s.gather(1, slots[..., None].expand(rows, history, size))
    y = steps_y.gather(1, slots[..., None].expand(rows, history, size))
    rho = inverse_sy.gather(1, slots) * valid
    q = gradient.clone()
    alphas = []
    for i in range(history):
        alpha = rho[:, i] * (s[:, i] * q).sum(1)
        q -= alpha[:, None] * y[:, i]
        alphas.append(alpha)
    yy = (y[:, 0] * y[:, 0]).sum(1)
    scale = torch.where(valid[:, 0] & (yy > 0), (s[:, 0] * y[:, 0]).sum(1) / yy, 1.0)
    r = q * scale[:, None]
    for i in reversed(range(history)):
        beta = rho[:, i] * (y[:, i] * r).sum(1)
        r += s[:, i] * (alphas[i] - beta)[:, None]
    return r
