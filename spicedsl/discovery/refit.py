"""Refitting the coefficients and params of equation models to the training choices.

Many equation models are refit at once. One generated model holds every term that any
of them uses, each coefficient a param, and each equation model is a member of it (see
:class:`~spicedsl.runtime.network.BaseRNN`) whose coefficients of the terms it lacks are
held at 0. One L-BFGS run (:func:`~spicedsl.runtime.train.refit_params`) then refits all
of them side by side, each on the training sessions of the network it came from.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace

import numpy as np

from spicedsl import ir
from spicedsl.codegen.instantiate import network_class
from spicedsl.discovery.equation import DiscoveredEquation, Powers, Term, without_terms
from spicedsl.fitted import refit_program
from spicedsl.runtime.batch import Batch, member_batches
from spicedsl.runtime.metrics import session_nll
from spicedsl.runtime.network import BaseRNN
from spicedsl.runtime.train import refit_params
from spicedsl.semantics.lower import lower

# Refit coefficients or params beyond this size mean the refit diverged.
MAX_COEFFICIENT = 1e4
# How far refits go: (most iterations, tolerance on the change of the mean NLL). Those
# that choose among candidates need a BIC within a fraction of a unit; the model kept
# (a precise request) is refit to convergence.
CHOOSING = (30, 1e-7)
PRECISE = (100, 1e-11)
# The coefficient every term of a combined equation model is written with: neither 0
# (no term) nor 1 (a fixed coefficient), so that every term gets a param.
PLACEHOLDER = 0.5


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
    # The terms whose refit coefficient fell below their module's threshold (for every
    # participant): the model is not scored (its BIC is infinite) but refit without them.
    tiny: tuple[Term, ...] = ()


@dataclass(frozen=True)
class Request:
    """An equation model to refit: the equations found in the network of ``member`` (an
    ensemble's member, 0 for a single network), refit to the choices of its training
    sessions; ``absent`` marks, per term of a per-participant equation, the participants
    who lack it.

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

    def key(self) -> tuple:
        equations = tuple(
            (name, eq.terms, eq.per_participant) for name, eq in sorted(self.equations.items())
        )
        absent = tuple((term, mask.tobytes()) for term, mask in sorted(self.absent.items()))
        return self.member, equations, absent, self.precise


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
    ):
        self.program, self.source, self.train, self.table = program, source, train, table
        self.n_participants = n_participants
        self.starts, self.sessions = starts, sessions
        self.per_participant_params = {p.name for p in model.params if p.per_participant}
        self.thresholds = {m.name: m.threshold for m in model.learned_modules}
        self.targets = {m.name: m.target for m in model.learned_modules}
        self.per_participant_modules = {
            m.name for m in model.learned_modules if m.embedded and n_participants > 1
        }
        self.done: dict[tuple, Refit] = {}
        self._models: dict[tuple, EquationModel] = {}

    def refit(
        self,
        equations: dict[str, DiscoveredEquation],
        absent: dict[Term, np.ndarray] | None = None,
        member: int = 0,
        start: Refit | None = None,
        precise: bool = False,
    ) -> Refit:
        """One equation model refit (see :class:`Request` and :meth:`refit_all`)."""
        return self.refit_all([Request(member, equations, absent or {}, start, precise)])[0]

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
        for precise in (False, True):
            group = {key: r for key, r in new.items() if r.precise == precise}
            if group:
                for key, result in zip(group, self._refit(list(group.values())), strict=True):
                    self.done[key] = result
        pruned = {key: request for key, request in new.items() if self.done[key].tiny}
        if pruned:
            sparser = [_without_tiny(r, self.done[key]) for key, r in pruned.items()]
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

    def drop_participant_terms(self, final: Refit, member: int = 0) -> Refit:
        """``final`` without the terms of per-participant equations that do not pay for
        themselves in a participant's own choices.

        Each term is held at 0 for everyone in turn (all these refits at once, each over
        all participants); a participant loses the term when that raises their summed NLL
        by less than ``ln(n) / 2`` for their ``n`` training trials, as their own BIC would
        have it. A term nobody keeps leaves the equation.
        """
        if final.participant_nll is None:  # the refit diverged
            return final
        terms = [
            (name, powers)
            for name, eq in final.equations.items()
            if eq.per_participant is not None
            for _, powers in eq.terms
        ]
        if not terms:
            return final
        nll, n_trials = final.participant_nll
        penalty = 0.5 * np.log(np.maximum(n_trials, 1))
        everyone = np.ones(self.n_participants, dtype=bool)
        absent = dict(final.absent)
        withouts = self.refit_all(
            [
                Request(member, final.equations, {**final.absent, term: everyone}, final)
                for term in terms
            ]
        )
        for term, without in zip(terms, withouts, strict=True):
            if without.participant_nll is None:
                continue
            gain = without.participant_nll[0] - nll
            absent[term] = absent.get(term, ~everyone) | (gain < penalty)
        equations = {
            name: without_terms(
                eq, {p for (m, p), mask in absent.items() if m == name and mask.all()}
            )
            for name, eq in final.equations.items()
        }
        kept = {t: mask for t, mask in absent.items() if not mask.all()}
        dropped = self.refit(equations, kept, member, final, precise=True)
        return dropped if dropped.bic < math.inf else final

    # -- one batch of refits ------------------------------------------------------------
    def _refit(self, requests: list[Request]) -> list[Refit]:
        model = self._equation_model(_union([r.equations for r in requests]))
        starts, held = self._starts(requests, model)
        values, nll = self._fit(model, requests, starts, held)
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
            more, more_nll = self._fit(
                model,
                [requests[i] for i in again],
                {p: v[again] for p, v in values.items()},
                {p: m[again] for p, m in held.items()},
            )
            for p, v in more.items():
                values[p][again] = v
            nll[again] = more_nll
        nll_by_participant, n_trials = self._participant_nll(model, requests, values)
        return [
            self._result(model, request, i, values, held, nll_by_participant[i], n_trials[i])
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
                held[param] = np.zeros(starts[param].shape, dtype=bool)
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
        return starts, held

    def _fit(
        self,
        model: EquationModel,
        requests: list[Request],
        starts: dict[str, np.ndarray],
        held: dict[str, np.ndarray],
    ) -> tuple[dict[str, np.ndarray], np.ndarray]:
        """The refit values of every param, ``(requests, n)``, and each request's mean NLL
        (infinite where the refit diverged)."""
        net = self._network(model, len(requests), starts)
        batch = member_batches([self.sessions[r.member] for r in requests], self.train)[0]
        iterations, tolerance = PRECISE if requests[0].precise else CHOOSING
        nll = refit_params(net, batch, iterations, held, tolerance)
        values = net.member_param_values(model.params)
        diverged = ~np.isfinite(nll)
        for value in values.values():
            diverged |= ~(np.abs(value) < MAX_COEFFICIENT).all(1)
        return values, np.where(diverged, math.inf, nll)

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
        self, model: EquationModel, requests: list[Request], values: dict[str, np.ndarray]
    ) -> tuple[np.ndarray, np.ndarray]:
        """Each request's summed NLL of each participant's training choices, and their
        number, ``(requests, participants)`` each."""
        learnt = {name: v for name, v in values.items() if name not in self.table}
        net = self._network(model, len(requests), learnt)
        batch = member_batches([self.sessions[r.member] for r in requests], self.train)[0]
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
        nll: np.ndarray,
        n_trials: np.ndarray,
    ) -> Refit:
        """The refit of request ``i``: its equations with their refit coefficients, its
        params, and its BIC."""
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
        bic = 2 * nll.sum() + _penalty(free, self.table, n_trials)
        if tiny:
            bic = math.inf  # a term too small to keep: the model without it is refit instead
        params = {
            n: v
            for n, v in ((n, values[n][i]) for n in model.params)
            if n not in model.coefficients
        }
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
            tuple(tiny),
        )


def _without_tiny(request: Request, result: Refit) -> Request:
    """``request`` without the terms that ``result``, its refit, found too small to keep;
    it starts from that refit."""
    equations = {
        module: without_terms(equation, {p for m, p in result.tiny if m == module})
        for module, equation in request.equations.items()
    }
    absent = {term: mask for term, mask in request.absent.items() if term not in result.tiny}
    return replace(request, equations=equations, absent=absent, start=result)


def _param_start(start: Refit | None, param: str) -> list[float] | None:
    """The values of ``param`` in the refit ``start`` (one per participant for a param
    per participant), or None without one."""
    if start is None:
        return None
    return start.participant_params.get(param) or [start.params[param]]


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


def _penalty(values: dict[str, np.ndarray], table, n_trials: np.ndarray) -> float:
    """The BIC's penalty for the free values: ``ln(n)`` for a shared one, with ``n`` the
    number of predicted choices, and ``ln(n_p)`` for participant ``p``'s own non-zero
    value of a per-participant one, with ``n_p`` their number of choices (their own BIC's
    penalty: only their choices inform it). Values from a participant table are given."""
    per_choice = np.log(np.maximum(n_trials, 1))
    penalty = 0.0
    for name, value in values.items():
        if name in table:
            continue
        if len(value) > 1:
            penalty += float(per_choice[value != 0].sum())
        else:
            penalty += math.log(max(int(n_trials.sum()), 1))
    return penalty
