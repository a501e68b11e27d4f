"""Refitting the coefficients and params of equation models to the training choices.

Many equation models are refit at once. One generated model holds every term that any
of them uses, each coefficient a param, and each equation model is a member of it (see
:class:`~spicedsl.runtime.network.BaseRNN`) whose coefficients of the terms it lacks are
held at 0. One L-BFGS run (:func:`~spicedsl.runtime.train.refit_params`) then refits all
of them side by side, each on the training sessions of the network it came from.

With several participants, the precise refits (of the model kept) pool each
per-participant value toward its group (:mod:`spicedsl.runtime.pooling`), and
:meth:`Refitter.choose_participant_terms` decides, by cross-validation, which terms of
per-participant equations are each participant's own.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields, replace

import numpy as np
import torch

from spicedsl import ir
from spicedsl.codegen.instantiate import network_class
from spicedsl.discovery.equation import DiscoveredEquation, Powers, Term, without_terms
from spicedsl.fitted import refit_program
from spicedsl.runtime.batch import IGNORE, Batch, member_batches
from spicedsl.runtime.metrics import session_nll
from spicedsl.runtime.network import BaseRNN
from spicedsl.runtime.pooling import Group
from spicedsl.runtime.train import Pooling, refit_params
from spicedsl.semantics.lower import lower

# Refit coefficients or params beyond this size mean the refit diverged.
MAX_COEFFICIENT = 1e4
# How far refits go: (most iterations, tolerance on the change of the mean NLL). Those
# that choose among candidates need a BIC within a fraction of a unit (1e-6 of the mean
# NLL is 0.02 units of BIC at 10,000 choices), and so do those that choose each
# participant's terms with the groups kept (compared by their held-out NLL, or by each
# participant's NLL); the model kept (a precise request) is refit to convergence.
CHOOSING = (30, 1e-6)
PRECISE = (100, 1e-11)
# The coefficient every term of a combined equation model is written with: neither 0
# (no term) nor 1 (a fixed coefficient), so that every term gets a param.
PLACEHOLDER = 0.5
# The folds of the cross-validation that decides which terms are each participant's own.
FOLDS = 5
# The bound on the coefficient of a state's own linear term (with ``self_bound`` on).
SELF_BOUND = 1.0


@dataclass(frozen=True)
class GroupValue:
    """The group of a pooled value: its prior's mean and spread on the raw scale (the
    unconstrained number the refit moves, see
    :attr:`~spicedsl.runtime.network.ParamSpec.raw_scale`), the value at that mean, the
    name of the raw scale, and whether the spread is at its floor (the participants
    differ no more than the noise of their own data explains)."""

    mean: float
    spread: float
    value: float
    scale: str
    floored: bool


@dataclass(frozen=True)
class Refit:
    """An equation model with its coefficients and params refit to the choices."""

    equations: dict[str, DiscoveredEquation]
    params: dict[str, float]  # per-participant ones: the mean over participants
    participant_params: dict[str, list[float]]  # per-participant params, by participant
    bic: float
    # Per term of a per-participant equation, the participants without it (coefficient 0).
    absent: dict[Term, np.ndarray] = field(default_factory=dict)
    # Each participant's summed NLL of the training choices, and their number of choices.
    participant_nll: tuple[np.ndarray, np.ndarray] | None = None
    # The terms of per-participant equations with one value shared by everyone.
    shared: frozenset[Term] = frozenset()
    # The groups of the pooled values: by term for coefficients, by name for params.
    groups: dict[Term | str, GroupValue] = field(default_factory=dict)
    # Refit without a fold: the summed NLL of the fold's choices.
    held_out_nll: float | None = None
    # The terms whose refit coefficient fell below their module's threshold (for every
    # participant): the model is not scored (its BIC is infinite) but refit without them.
    tiny: tuple[Term, ...] = ()


@dataclass(frozen=True)
class Request:
    """An equation model to refit: the equations found in the network of ``member`` (an
    ensemble's member, 0 for a single network), refit to the choices of its training
    sessions; ``absent`` marks, per term of a per-participant equation, the participants
    who lack it, and the terms ``shared`` have one value for everyone. With ``fold``, the
    refit leaves out that fold of the training choices (see
    :meth:`Refitter.choose_participant_terms`) and is scored on it.

    A precise refit pools the per-participant values: it estimates their groups,
    starting from the spreads of ``start``, or, with ``keep_groups``, keeps those. With
    ``hold_shared``, the values shared by everyone (in effect, for a pooled param whose
    spread is at its floor) stay at those of ``start``.

    The refit starts from the params that network learnt and the candidates'
    coefficients, or, with ``start``, from that refit of a model close to this one: its
    params, and its coefficients of the modules whose terms are the same. (A model is
    refit once, from the start it was first asked with.)
    """

    member: int
    equations: dict[str, DiscoveredEquation]
    absent: dict[Term, np.ndarray] = field(default_factory=dict)
    start: Refit | None = None
    precise: bool = False
    shared: frozenset[Term] = frozenset()
    fold: int | None = None
    keep_groups: bool = False
    hold_shared: bool = False

    def key(self) -> tuple:
        equations = tuple(
            (name, eq.terms, eq.per_participant) for name, eq in sorted(self.equations.items())
        )
        absent = tuple((term, mask.tobytes()) for term, mask in sorted(self.absent.items()))
        shared = tuple(sorted(self.shared))
        return (
            self.member,
            equations,
            absent,
            self.precise,
            shared,
            self.fold,
            self.keep_groups,
            self.hold_shared,
        )


@dataclass(frozen=True)
class EquationModel:
    """A generated equation model with a param for the coefficient of each of its terms."""

    network_class: type[BaseRNN]
    coefficients: dict[str, Term]  # param -> the (module, term) whose coefficient it is
    params: tuple[str, ...]  # every param that is not fixed, coefficients included
    per_participant: dict[str, bool]  # module -> whether its coefficients are


class Refitter:
    """Refits the coefficients and params of equation models to the training choices.

    Each equation model is refit once: coordinate descent asks for the current choice
    again for every module, and the winner is needed once more.

    Parameters
    ----------
    program, source : ast.Program, Source
        The model file, to write equation models from.
    model : ir.Model
        The model that was trained.
    train : Batch
        Every session, with the training choices to predict.
    table : dict
        Values of per-participant params that a participant table gives.
    n_participants : int
        Number of participants.
    starts : dict of str to numpy.ndarray
        The value of each param that is not fixed, ``(members, n)``: one row per network
        whose equations are refit (an ensemble's members), with ``n`` 1 or one value per
        participant. Refits start there.
    sessions : sequence of numpy.ndarray
        The training sessions of each of those networks.
    pooling : bool
        Pool the per-participant values of precise refits toward their groups.
    self_bound : bool
        Keep the coefficient of each equation's own state (its linear term) within
        ``[-SELF_BOUND, SELF_BOUND]``, for every participant.
    """

    def __init__(
        self,
        program,
        source,
        model: ir.Model,
        train: Batch,
        table: Mapping[str, Sequence[float]],
        n_participants: int,
        starts: Mapping[str, np.ndarray],
        sessions: Sequence[np.ndarray],
        pooling: bool = True,
        self_bound: bool = True,
    ):
        self.program, self.source, self.table = program, source, table
        self.train = train.double()
        self.n_participants = n_participants
        self.starts, self.sessions = starts, sessions
        self.pooling = pooling and n_participants > 1
        self.self_terms = (
            {m.name: ((m.target, 1),) for m in model.learned_modules} if self_bound else {}
        )
        # Each training choice's fold, (trials, sessions), -1 for the others; dealt when
        # terms are chosen by cross-validation.
        self.folds: np.ndarray | None = None
        self.per_participant_params = {p.name for p in model.params if p.per_participant}
        self.thresholds = {m.name: m.threshold for m in model.learned_modules}
        self.targets = {m.name: m.target for m in model.learned_modules}
        self.per_participant_modules = {
            m.name for m in model.learned_modules if m.embedded and n_participants > 1
        }
        self.done: dict[tuple, Refit] = {}
        self._models: dict[tuple, EquationModel] = {}

    def refit_both(
        self, asked: Sequence[tuple[int, dict[str, DiscoveredEquation], tuple[Refit, Refit] | None]]
    ) -> list[tuple[Refit, Refit]]:
        """Each equation model of ``asked`` (member, equations, and a pair of starts or
        None) refit twice: with each participant's own values, and with every term of its
        per-participant equations shared by everyone. The better BIC scores a structure
        while the equations are chosen: own values alone make a term pay the BIC's price
        once per participant (with 20 participants of 70 choices, even the term of a
        value's own decay lost), and shared values alone miss a term that only some
        participants have. Which terms are each participant's own is decided afterwards,
        out of sample (:meth:`choose_participant_terms`). Without per-participant
        equations both refits are the same one."""
        requests = []
        for member, equations, starts in asked:
            own, shared = starts or (None, None)
            structure = frozenset(
                (name, powers)
                for name, equation in equations.items()
                if name in self.per_participant_modules
                for powers in _powers(equation)
            )
            requests += [
                Request(member, equations, start=own),
                Request(member, equations, start=shared, shared=structure),
            ]
        fits = self.refit_all(requests)
        return list(zip(fits[::2], fits[1::2], strict=True))

    def refit(
        self,
        equations: dict[str, DiscoveredEquation],
        absent: dict[Term, np.ndarray] | None = None,
        member: int = 0,
        start: Refit | None = None,
        precise: bool = False,
        shared: frozenset[Term] = frozenset(),
    ) -> Refit:
        """One equation model refit (see :class:`Request` and :meth:`refit_all`)."""
        request = Request(member, equations, absent or {}, start, precise, shared)
        return self.refit_all([request])[0]

    def refit_all(self, requests: Sequence[Request]) -> list[Refit]:
        """Refit every coefficient and param of each equation model to its network's
        training choices, all of them at once.

        The coefficients of the participants that ``absent`` names are held at 0.
        Per-participant coefficients that end below their module's threshold join them,
        and the rest are refit once more. A model with a term whose coefficient ends below
        the threshold (for everyone) stands for the sparser model without it: that one is
        refit and returned in its place.
        """
        new: dict[tuple, Request] = {}
        for request in requests:
            if request.key() not in self.done:
                new.setdefault(request.key(), request)
        for kind in sorted({_kind(r) for r in new.values()}):
            group = {k: r for k, r in new.items() if _kind(r) == kind}
            for key, result in zip(group, self._refit(list(group.values())), strict=True):
                self.done[key] = result
        pruned = {key: request for key, request in new.items() if self.done[key].tiny}
        if pruned:
            # Each stands for the sparser model without its tiny terms, refit from there.
            sparser = [
                replace(_without(r, self.done[key].tiny), start=self.done[key])
                for key, r in pruned.items()
            ]
            for key, result in zip(pruned, self.refit_all(sparser), strict=True):
                self.done[key] = result
        return [self.done[request.key()] for request in requests]

    def diverged(self, request: Request) -> Refit:
        """The candidate as the network gave it, out of the running: its refit left the
        stable region."""
        mine = {name: values[request.member] for name, values in self.starts.items()}
        return Refit(
            request.equations,
            {name: float(np.mean(v)) for name, v in mine.items()},
            {n: [float(x) for x in v] for n, v in mine.items() if n in self.per_participant_params},
            math.inf,
        )

    def choose_participant_terms(
        self, final: Refit, rng: np.random.Generator, member: int = 0
    ) -> Refit:
        """``final`` with each term of its per-participant equations shared by everyone
        (one value) unless the participants' own values predict held-out choices
        better; and, of the terms left each participant's own, each participant's value
        set to 0 unless it pays for itself in that participant's BIC.

        A term whose pooled spread is at its floor (the participants differ no more
        than the noise of their own data explains) is shared. For the others, each
        participant's training choices are dealt at random into ``FOLDS`` folds; two
        variants of ``final`` for each term, ``final`` as it is and the term shared,
        are refit to all training choices and then without each fold (from there),
        predicting its choices; all of them at once, pooling with the spreads of
        ``final``. The term stays each participant's own when that beats sharing it:
        its held-out NLL, summed over the folds, is lower by more than one standard
        error of that sum (from the folds' differences). The model so chosen is refit
        precisely.

        Then each term left each participant's own is a term that some participants may
        lack, as a term of any equation may be: the model without it is refit, with the
        values everyone shares held (so that one participant's loss does not move the
        others' fit), and a participant lacks it (coefficient 0) unless their own value
        pays for itself in their own BIC (twice the NLL of their training choices falls
        by more than the log of their number).
        """
        if final.participant_nll is None:  # the refit diverged
            return final
        differing = [
            (name, powers)
            for name, eq in final.equations.items()
            if eq.per_participant is not None
            for i, (_, powers) in enumerate(eq.terms)
            if len({row[i] for row in eq.per_participant if row[i] != 0}) > 1
        ]
        # Pooling found no difference between participants: one value for everyone.
        shared = {t for t in differing if t in final.groups and final.groups[t].floored}
        differing = [t for t in differing if t not in shared]
        if differing:
            nll = self._held_out_nll(final, differing, rng, member)
            shared |= {t for k, t in enumerate(differing) if not _beats(nll[0], nll[1 + k])}
        absent = {t: m for t, m in final.absent.items() if t not in shared}
        shared_now = final.shared | shared
        own = [t for t in differing if t not in shared]
        if own:
            # These refits choose (the groups of ``final`` kept); only the model chosen
            # is refit precisely, once.
            start = final
            if shared:
                request = Request(member, final.equations, absent, final, True, shared_now)
                fit = self.refit_all([replace(request, keep_groups=True)])[0]
                start = final if fit.participant_nll is None else fit
            base = Request(member, final.equations, absent, start, True, shared_now)
            without = self.refit_all(
                [replace(_without(base, [t]), keep_groups=True, hold_shared=True) for t in own]
            )
            nll, n_trials = start.participant_nll
            for term, fit in zip(own, without, strict=True):
                if fit.participant_nll is None:  # the refit diverged: the term is needed
                    continue
                lacking = 2 * (fit.participant_nll[0] - nll) <= np.log(np.maximum(n_trials, 1))
                lacking &= n_trials > 0  # one without training choices keeps the group's
                if lacking.any():
                    absent[term] = absent.get(term, np.zeros(self.n_participants, bool)) | lacking
        unchanged = absent.keys() == final.absent.keys() and all(
            (absent[t] == final.absent[t]).all() for t in absent
        )
        if not shared and unchanged:
            return final
        chosen = self.refit(final.equations, absent, member, final, True, shared_now)
        return chosen if chosen.bic < math.inf else final

    def _held_out_nll(
        self, final: Refit, terms: list[Term], rng: np.random.Generator, member: int
    ) -> np.ndarray:
        """The held-out NLL of the choices of each fold, ``(variants, FOLDS)``, of
        ``final``, then of it with each of ``terms`` shared in turn."""
        self._deal_folds(rng)
        base = Request(member, final.equations, final.absent, final, True, final.shared, None, True)
        variants = [base] + [
            replace(
                base,
                absent={t: m for t, m in final.absent.items() if t != term},
                shared=final.shared | {term},
            )
            for term in terms
        ]
        # Each variant is refit to every training choice first, and without each fold
        # from there: no variant starts nearer its optimum than another.
        starts = [final, *self.refit_all(variants[1:])]
        requests = [
            replace(variant, start=start, fold=fold)
            for fold in range(FOLDS)
            for variant, start in zip(variants, starts, strict=True)
        ]
        nll = np.zeros((len(variants), FOLDS))
        for i, fit in enumerate(self.refit_all(requests)):
            fold, variant = divmod(i, len(variants))
            nll[variant, fold] = math.inf if fit.held_out_nll is None else fit.held_out_nll
        return nll

    def _deal_folds(self, rng: np.random.Generator) -> None:
        """Deal each participant's training choices at random into ``FOLDS`` folds."""
        if self.folds is not None:
            return
        targets = self.train.targets.cpu().numpy()
        trials, sessions = np.nonzero(targets != IGNORE)
        participants = self.train.participants.cpu().numpy()[sessions]
        order = np.lexsort((rng.random(len(sessions)), participants))
        by_participant = participants[order]
        rank = np.empty(len(order), dtype=int)
        rank[order] = np.arange(len(order)) - np.searchsorted(by_participant, by_participant)
        self.folds = np.full(targets.shape, -1)
        self.folds[trials, sessions] = rank % FOLDS

    # -- one batch of refits ------------------------------------------------------------
    def _refit(self, requests: list[Request]) -> list[Refit]:
        model = self._equation_model(_union([r.equations for r in requests]))
        starts, held = self._starts(requests, model)
        values, nll, groups = self._fit(
            model, requests, starts, held, self._start_groups(model, requests)
        )
        # Per-participant coefficients that end below their module's threshold are held
        # at 0 too, and those models are refit once more.
        small = {
            p: held[p] | (np.abs(values[p]) < self.thresholds[module])
            for p, (module, _) in model.coefficients.items()
            if model.per_participant[module]
        }
        again = np.array(
            [
                i
                for i in range(len(requests))
                if math.isfinite(nll[i]) and any((small[p][i] != held[p][i]).any() for p in small)
            ],
            dtype=int,
        )
        if len(again):
            for p in small:
                values[p][again] = np.where(small[p][again], 0.0, values[p][again])
                held[p][again] = small[p][again]
            more, more_nll, more_groups = self._fit(
                model,
                [requests[i] for i in again],
                {p: v[again] for p, v in values.items()},
                {p: m[again] for p, m in held.items()},
                {p: _group_rows(g, again) for p, g in groups.items()},
            )
            for p, v in more.items():
                values[p][again] = v
            nll[again] = more_nll
            groups.update({p: _with_rows(groups[p], again, g) for p, g in more_groups.items()})
        nll_by_participant, n_trials = self._participant_nll(model, requests, values)
        held_out = None
        if any(r.fold is not None for r in requests):
            held_out = self._participant_nll(model, requests, values, held_out=True)[0].sum(1)
        return [
            self._result(
                model,
                request,
                i,
                values,
                held,
                groups,
                nll_by_participant[i],
                n_trials[i],
                None if held_out is None else float(held_out[i]),
            )
            if math.isfinite(nll[i])
            else self.diverged(request)
            for i, request in enumerate(requests)
        ]

    def _equation_model(self, union: dict[str, tuple[Powers, ...]]) -> EquationModel:
        """The equation model with every term of ``union`` (module -> its terms), each
        coefficient a param; generated once per union."""
        key = tuple(sorted(union.items()))
        if key not in self._models:
            equations = {
                name: DiscoveredEquation(
                    name,
                    self.targets[name],
                    tuple((PLACEHOLDER, powers) for powers in terms),
                    0,
                    ((PLACEHOLDER,) * len(terms),) * self.n_participants
                    if name in self.per_participant_modules
                    else None,
                )
                for name, terms in union.items()
            }
            start = {name: float(np.mean(v)) for name, v in self.starts.items()}
            refit_ast, named = refit_program(self.program, equations, start)
            refit_ir = lower(refit_ast, self.source)
            self._models[key] = EquationModel(
                network_class(refit_ir),
                {param: (module, union[module][index]) for param, (module, index) in named.items()},
                tuple(p.name for p in refit_ir.params if not p.fixed),
                {name: name in self.per_participant_modules for name in union},
            )
        return self._models[key]

    def _starts(
        self, requests: list[Request], model: EquationModel
    ) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
        """Each param's starting values and its entries held fixed, ``(requests, n)``.

        A coefficient starts at the candidate's value; one that the candidate snapped to
        exactly 1 is held there (it is structure, not a free number), and so is 0 for a
        term the candidate lacks or a participant it names as lacking the term.
        """
        starts, held = {}, {}
        for param in model.params:
            if param in self.table:
                continue
            if param not in model.coefficients:
                rows = [
                    _param_start(r.start, param) or self.starts[param][r.member] for r in requests
                ]
                if param not in self.per_participant_params:
                    rows = [[np.mean(row)] for row in rows]
                starts[param] = np.array(rows, dtype=float)
                hold = [r.hold_shared and _shared_param(r.start, param) for r in requests]
                held[param] = np.zeros(starts[param].shape, dtype=bool) | np.c_[hold]
                continue
            module, powers = model.coefficients[param]
            width = self.n_participants if model.per_participant[module] else 1
            starts[param] = np.zeros((len(requests), width))
            held[param] = np.ones((len(requests), width), dtype=bool)
            for i, request in enumerate(requests):
                equation = request.equations[module]
                if powers not in _powers(equation):
                    continue
                near = request.start.equations[module] if request.start else None
                if near is not None and _powers(near) == _powers(equation):
                    equation = near
                index = _powers(equation).index(powers)
                if equation.per_participant is None:
                    value = np.array([equation.terms[index][0]])
                else:
                    value = np.array([row[index] for row in equation.per_participant])
                lacking = request.absent.get((module, powers), np.zeros(width, dtype=bool))
                starts[param][i] = np.where(lacking, 0.0, value)
                held[param][i] = lacking | bool((value == 1).all())
                if request.hold_shared and (width == 1 or (module, powers) in request.shared):
                    held[param][i] = True
        return starts, held

    def _fit(
        self,
        model: EquationModel,
        requests: list[Request],
        starts: dict[str, np.ndarray],
        held: dict[str, np.ndarray],
        groups: dict[str, Group],
    ) -> tuple[dict[str, np.ndarray], np.ndarray, dict[str, Group]]:
        """The refit values of every param, ``(requests, n)``, each request's mean NLL
        (infinite where the refit diverged), and the groups of the pooled params.

        Precise requests pool their per-participant values, with the spreads of
        ``groups`` as they are or estimating them from there (see :class:`Request`)."""
        net = self._network(model, len(requests), starts)
        batch = self._batch(requests)
        first = requests[0]
        final = first.precise and first.fold is None and not first.keep_groups
        iterations, tolerance = PRECISE if final else CHOOSING
        tied = {
            param: np.array([(module, powers) in r.shared for r in requests])
            for param, (module, powers) in model.coefficients.items()
            if model.per_participant[module]
        }
        bounds = {
            param: (-SELF_BOUND, SELF_BOUND)
            for param, (module, powers) in model.coefficients.items()
            if self.self_terms.get(module) == powers
        }
        pooling = None
        if self.pooling and requests[0].precise:
            untied = np.zeros(len(requests), dtype=bool)
            entries = {
                param: ~held[param] & ~tied.get(param, untied)[:, None]
                for param in self._participant_values(model)
            }
            pooling = Pooling(entries, groups, fixed=requests[0].keep_groups)
        nll, groups = refit_params(net, batch, iterations, held, tolerance, bounds, tied, pooling)
        values = net.member_param_values(model.params)
        diverged = ~np.isfinite(nll)
        for value in values.values():
            diverged |= ~(np.abs(value) < MAX_COEFFICIENT).all(1)
        return values, np.where(diverged, math.inf, nll), groups

    def _participant_values(self, model: EquationModel) -> list[str]:
        """The params of ``model`` refit with one value per participant: the
        coefficients of per-participant equations and the per-participant params that no
        participant table gives."""
        coefficients = [p for p, (m, _) in model.coefficients.items() if model.per_participant[m]]
        params = [p for p in model.params if p in self.per_participant_params]
        return coefficients + [p for p in params if p not in self.table]

    def _start_groups(self, model: EquationModel, requests: list[Request]) -> dict[str, Group]:
        """The groups of the starts of ``requests``, by param (the spreads count)."""
        keys = {param: model.coefficients.get(param, param) for param in model.params}
        groups = {}
        for param, key in keys.items():
            found = [r.start.groups.get(key) if r.start else None for r in requests]
            if any(found):
                groups[param] = Group(
                    np.array([g.mean if g else np.nan for g in found]),
                    np.array([g.spread if g else np.nan for g in found]),
                    np.full((len(requests), self.n_participants), np.inf),
                    np.array([bool(g and g.floored) for g in found]),
                )
        return groups

    def _batch(self, requests: list[Request], held_out: bool = False) -> Batch:
        """The sessions of each request's network, member after member, predicting its
        training choices (those outside its fold), or with ``held_out`` its fold's."""
        sessions = [self.sessions[r.member] for r in requests]
        folds = sorted({r.fold for r in requests}, key=lambda fold: -1 if fold is None else fold)
        batches = member_batches(sessions, *(self._predicting(f, held_out) for f in folds))
        if len(batches) == 1:
            return batches[0]
        width = batches[0].targets.shape[1] // len(requests)
        targets = torch.cat(
            [
                batches[folds.index(r.fold)].targets[:, i * width : (i + 1) * width]
                for i, r in enumerate(requests)
            ],
            dim=1,
        )
        first = batches[0]
        return Batch(first.trials, first.chosen, targets, first.participants)

    def _predicting(self, fold: int | None, held_out: bool) -> Batch:
        """The training batch predicting the choices outside ``fold`` (with
        ``held_out``, those in it); all of them without a fold."""
        if fold is None:
            return self.train
        keep = self.folds == fold if held_out else (self.folds >= 0) & (self.folds != fold)
        keep = torch.as_tensor(keep, device=self.train.targets.device)
        targets = torch.where(keep, self.train.targets, IGNORE)
        return Batch(self.train.trials, self.train.chosen, targets, self.train.participants)

    def _network(
        self, model: EquationModel, members: int, values: dict[str, np.ndarray]
    ) -> BaseRNN:
        net = model.network_class(
            self.train.chosen.shape[-1], self.n_participants, members=members
        ).double()
        net.set_participant_values(values, learnable=True)
        net.set_participant_values(self.table)
        return net

    def _participant_nll(
        self,
        model: EquationModel,
        requests: list[Request],
        values: dict[str, np.ndarray],
        held_out: bool = False,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Each request's summed NLL of each participant's training choices (those
        outside its fold; with ``held_out``, those in it), and their number,
        ``(requests, participants)`` each."""
        learnt = {name: v for name, v in values.items() if name not in self.table}
        net = self._network(model, len(requests), learnt)
        batch = self._batch(requests, held_out)
        nll, counts = session_nll(net, batch)
        index = np.repeat(np.arange(len(requests)), len(nll) // len(requests))
        index = index * self.n_participants + batch.participants.cpu().numpy()
        size = len(requests) * self.n_participants
        shape = (len(requests), self.n_participants)
        return (
            np.bincount(index, nll, minlength=size).reshape(shape),
            np.bincount(index, counts, minlength=size).reshape(shape),
        )

    def _result(
        self,
        model: EquationModel,
        request: Request,
        i: int,
        values: dict[str, np.ndarray],
        held: dict[str, np.ndarray],
        groups: dict[str, Group],
        nll: np.ndarray,
        n_trials: np.ndarray,
        held_out_nll: float | None,
    ) -> Refit:
        """The refit of request ``i``: its equations with their refit coefficients, its
        params, the groups of its pooled values, and its BIC."""
        param_of = {term: param for param, term in model.coefficients.items()}
        free = {name: values[name][i] for name in model.params if name not in model.coefficients}
        equations, absent, tiny = {}, {}, []
        for module, equation in request.equations.items():
            terms, columns = [], []
            for powers in _powers(equation):
                param = param_of[(module, powers)]
                value = values[param][i]
                structural = bool(held[param][i].all()) and bool((value == 1).all())
                terms.append((float(np.mean(value)), powers))
                columns.append(value)
                if structural:
                    continue
                if (module, powers) in request.shared:
                    free[param] = value[:1]
                    if abs(float(value[0])) < self.thresholds[module]:
                        tiny.append((module, powers))
                    continue
                free[param] = value
                if model.per_participant[module]:
                    small = bool(held[param][i].all())
                    if held[param][i].any():
                        absent[(module, powers)] = held[param][i].copy()
                else:
                    small = abs(float(value[0])) < self.thresholds[module]
                if small:
                    tiny.append((module, powers))
            rows = None
            if model.per_participant[module]:
                rows = tuple(
                    tuple(float(c[p]) for c in columns) for p in range(self.n_participants)
                )
            equations[module] = replace(equation, terms=tuple(terms), per_participant=rows)
        pooled = {
            name: _group_rows(group, np.array([i]))
            for name, group in groups.items()
            if name in free and not np.isnan(group.spread[i])
        }
        shares = {name: group.shrinkage()[0] for name, group in pooled.items()}
        bic = 2 * nll.sum() + _penalty(free, self.table, n_trials, shares)
        if tiny:
            bic = math.inf  # a term too small to keep: the model without it is refit instead
        params = {
            n: v
            for n, v in ((n, values[n][i]) for n in model.params)
            if n not in model.coefficients
        }
        specs = model.network_class.params
        return Refit(
            equations,
            {n: float(np.mean(v)) for n, v in params.items()},
            {
                n: [float(x) for x in v]
                for n, v in params.items()
                if n in self.per_participant_params
            },
            bic,
            absent,
            (nll, n_trials),
            request.shared,
            {
                model.coefficients.get(name, name): GroupValue(
                    float(group.mean[0]),
                    float(group.spread[0]),
                    float(specs[name].from_raw(torch.tensor(float(group.mean[0])))),
                    specs[name].raw_scale,
                    bool(group.floored[0]),
                )
                for name, group in pooled.items()
            },
            held_out_nll,
            tuple(tiny),
        )


def _kind(request: Request) -> tuple[bool, bool, bool]:
    """What refits of ``request`` share with the others fitted at once with it: whether
    it is precise, keeps its groups, and leaves out a fold."""
    return request.precise, request.keep_groups, request.fold is not None


def _without(request: Request, dropped: Sequence[Term]) -> Request:
    """``request`` without the terms ``dropped``, for everyone."""
    equations = {
        module: without_terms(equation, {p for m, p in dropped if m == module})
        for module, equation in request.equations.items()
    }
    absent = {term: mask for term, mask in request.absent.items() if term not in dropped}
    shared = frozenset(term for term in request.shared if term not in dropped)
    return replace(request, equations=equations, absent=absent, shared=shared)


def _param_start(start: Refit | None, param: str) -> list[float] | None:
    """The values of ``param`` in the refit ``start`` (one per participant for a param
    per participant), or None without one."""
    if start is None:
        return None
    return start.participant_params.get(param) or [start.params[param]]


def _shared_param(start: Refit | None, param: str) -> bool:
    """Whether ``param`` has one value for everyone in the refit ``start``: it is not per
    participant, or pooling found no difference between the participants."""
    if start is None or param not in start.participant_params:
        return True
    group = start.groups.get(param)
    return group is not None and group.floored


def _powers(equation: DiscoveredEquation) -> list[Powers]:
    return [powers for _, powers in equation.terms]


def _union(
    combinations: Sequence[Mapping[str, DiscoveredEquation]],
) -> dict[str, tuple[Powers, ...]]:
    """Module -> every term any of ``combinations`` gives it, in the order first seen."""
    union: dict[str, list[Powers]] = {}
    for equations in combinations:
        for name, equation in equations.items():
            terms = union.setdefault(name, [])
            terms += [p for p in _powers(equation) if p not in terms]
    return {name: tuple(terms) for name, terms in union.items()}


def _beats(better: np.ndarray, simpler: np.ndarray) -> bool:
    """Whether the held-out NLLs ``better`` are lower than ``simpler`` in sum over the
    folds by more than one standard error of that sum (from the spread of the folds'
    differences, paired), over ``(folds,)``. An infinite NLL (a refit that diverged)
    loses.

    >>> simpler = np.array([10.0, 10.0, 10.0])
    >>> bool(_beats(np.array([9.0, 8.5, 9.2]), simpler))
    True
    >>> bool(_beats(np.array([9.0, 10.5, 9.5]), simpler))
    False
    """
    if not np.isfinite(better).all():
        return False
    if not np.isfinite(simpler).all():
        return True
    gain = simpler - better
    return bool(gain.sum() > np.sqrt(len(gain) * gain.var(ddof=1)))


def _group_rows(group: Group, rows: np.ndarray) -> Group:
    """The group of the members ``rows`` only."""
    return Group(*(getattr(group, f.name)[rows] for f in fields(Group)))


def _with_rows(group: Group, rows: np.ndarray, new: Group) -> Group:
    """``group`` with the members ``rows`` taken from ``new``."""
    arrays = {f.name: getattr(group, f.name).copy() for f in fields(Group)}
    for name, array in arrays.items():
        array[rows] = getattr(new, name)
    return Group(**arrays)


def _penalty(
    values: dict[str, np.ndarray], table, n_trials: np.ndarray, shares: dict[str, np.ndarray]
) -> float:
    """The BIC's penalty for the free values: ``ln(n)`` for a shared one, with ``n`` the
    number of predicted choices, and ``ln(n_p)`` for participant ``p``'s own non-zero
    value of a per-participant one, with ``n_p`` their number of choices (their own BIC's
    penalty: only their choices inform it). A pooled value costs ``ln(n_p)`` times
    its share of their data (see :meth:`Group.shrinkage`: a value held at the group's
    mean costs nothing of its own), and its group's mean and spread ``ln(n)`` each.
    Values from a participant table are given.

    >>> n_trials = np.array([100, 100])
    >>> round(_penalty({"a": np.array([0.2, 0.4])}, {}, n_trials, {}), 4)
    9.2103
    >>> round(_penalty({"a": np.array([0.2, 0.4])}, {}, n_trials, {"a": np.array([0.5, 0.0])}), 4)
    12.8992
    """
    per_choice = np.log(np.maximum(n_trials, 1))
    whole = math.log(max(int(n_trials.sum()), 1))
    penalty = 0.0
    for name, value in values.items():
        if name in table:
            continue
        if len(value) > 1:
            share = shares.get(name, 1.0)
            penalty += float((share * per_choice)[value != 0].sum())
            penalty += 2 * whole if name in shares else 0.0
        else:
            penalty += whole
    return penalty
