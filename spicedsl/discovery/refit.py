"""Refitting the coefficients and params of equation models to the training choices."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import torch

from spicedsl import ir
from spicedsl.codegen.instantiate import network_class
from spicedsl.discovery.equation import DiscoveredEquation, Term, with_coefficients, without_terms
from spicedsl.fitted import refit_program
from spicedsl.runtime.batch import Batch
from spicedsl.runtime.metrics import participant_nll
from spicedsl.runtime.network import BaseRNN
from spicedsl.runtime.train import refit_params
from spicedsl.semantics.lower import lower

# Refit coefficients or params beyond this size mean the refit diverged.
MAX_COEFFICIENT = 1e4


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


class Refitter:
    """Refits the coefficients and params of equation models to the training choices.

    Each combination of candidate equations is refit once (coordinate descent scores the
    current choice again for every module, and the winner is needed once more).
    """

    def __init__(self, program, source, net: BaseRNN, model: ir.Model, train: Batch, table):
        self.program, self.source, self.train, self.table = program, source, train, table
        self.n_actions, self.n_participants = net.n_actions, net.n_participants
        self.network_values = learned_param_values(net, model)
        self.network_params = {name: float(np.mean(v)) for name, v in self.network_values.items()}
        self.network_participant_params = {
            p.name: [float(x) for x in self.network_values[p.name]]
            for p in model.params
            if p.per_participant and not p.fixed
        }
        self.thresholds = {name: spec.threshold for name, spec in net.module_specs.items()}
        self.done: dict[tuple, Refit] = {}

    def refit(
        self, equations: dict[str, DiscoveredEquation], absent: dict[Term, np.ndarray] | None = None
    ) -> Refit:
        """Refit every coefficient and param of the equation model to the training choices.

        ``absent`` marks, per term of a per-participant equation, the participants who
        lack it: their coefficient is held at 0. Per-participant coefficients that end
        below their module's threshold join them, and the rest are refit once more.
        """
        absent = absent or {}
        key = (
            tuple((name, eq.terms) for name, eq in sorted(equations.items())),
            tuple((term, mask.tobytes()) for term, mask in sorted(absent.items())),
        )
        if key not in self.done:
            self.done[key] = self._refit(equations, absent)
        return self.done[key]

    def _refit(
        self, equations: dict[str, DiscoveredEquation], absent: dict[Term, np.ndarray]
    ) -> Refit:
        refit_ast, coefficient_params = refit_program(self.program, equations, self.network_params)
        refit_ir = lower(refit_ast, self.source)
        net = network_class(refit_ir)(self.n_actions, self.n_participants)
        per_participant = {
            param: (module, equations[module].terms[index][1])
            for param, (module, index) in coefficient_params.items()
            if equations[module].per_participant is not None
        }
        starts = {
            p.name: self.network_values[p.name]
            for p in refit_ir.params
            if p.per_participant and p.name in self.network_values
        }
        for param, term in per_participant.items():
            module, index = coefficient_params[param]
            column = np.array([row[index] for row in equations[module].per_participant])
            starts[param] = np.where(absent.get(term, False), 0.0, column)
        net.set_participant_values(starts, learnable=True)
        net.set_participant_values(self.table)
        held = {
            p: absent.get(term, np.zeros(self.n_participants, bool))
            for p, term in per_participant.items()
        }
        values = self._fit(net, refit_ir, held)
        if _diverged(values):
            return self.diverged(equations)
        small = {
            p: (np.abs(values[p]) < self.thresholds[t[0]]) | held[p]
            for p, t in per_participant.items()
        }
        if any((small[p] != held[p]).any() for p in held):
            net.set_participant_values(
                {p: np.where(small[p], 0.0, values[p]) for p in held}, learnable=True
            )
            held = small
            values = self._fit(net, refit_ir, held)
            if _diverged(values):
                return self.diverged(equations)
        refitted = {
            name: with_coefficients(name, eq, coefficient_params, values)
            for name, eq in equations.items()
        }
        nll, n_trials = participant_nll(net, self.train, self.n_participants)
        bic = 2 * nll.sum() + _penalty(values, self.table, n_trials)
        shared = [
            abs(c) < self.thresholds[name]
            for name, eq in refitted.items()
            if eq.per_participant is None
            for c, _ in eq.terms
        ]
        if any(shared) or any(mask.all() for mask in held.values()):
            bic = math.inf  # a term too small to keep: a sparser candidate says the same
        per_participant_params = {p.name for p in refit_ir.params if p.per_participant}
        return Refit(
            refitted,
            {n: float(np.mean(v)) for n, v in values.items() if n not in coefficient_params},
            {
                n: [float(x) for x in v]
                for n, v in values.items()
                if n in per_participant_params and n not in coefficient_params
            },
            bic,
            {per_participant[p]: mask for p, mask in held.items() if mask.any()},
            (nll, n_trials),
        )

    def diverged(self, equations: dict[str, DiscoveredEquation]) -> Refit:
        """The candidate as the network gave it, out of the running: its refit left the
        stable region."""
        return Refit(equations, self.network_params, self.network_participant_params, math.inf)

    def _fit(self, net: BaseRNN, model: ir.Model, held: dict[str, np.ndarray]):
        """The refit values of every learnable param; infinite where the refit diverged."""
        nll = refit_params(net, self.train, held={p: torch.as_tensor(m) for p, m in held.items()})
        values = learned_param_values(net, model)
        if not math.isfinite(nll):
            return {name: np.full_like(v, np.inf) for name, v in values.items()}
        return values

    def drop_participant_terms(self, final: Refit) -> Refit:
        """``final`` without the terms of per-participant equations that do not pay for
        themselves in a participant's own choices.

        Each term is held at 0 for everyone in turn (one refit each, over all participants
        at once); a participant loses the term when that raises their summed NLL by less
        than ``ln(n) / 2`` for their ``n`` training trials, as their own BIC would have it.
        A term nobody keeps leaves the equation.
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
        for term in terms:
            without = self.refit(final.equations, {**final.absent, term: everyone})
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
        dropped = self.refit(equations, kept)
        return dropped if dropped.bic < math.inf else final


def learned_param_values(net: BaseRNN, model: ir.Model) -> dict[str, np.ndarray]:
    """The trained values of every learnable param: one value, or one per participant for
    a param per participant or fed the participant embedding."""
    net.eval()
    with torch.no_grad(), net.running(torch.arange(net.n_participants, device=net.device)):
        return {
            p.name: net.param(p.name).reshape(-1).double().cpu().numpy()
            for p in model.params
            if not p.fixed
        }


def _diverged(values: dict[str, np.ndarray]) -> bool:
    """True when a refit value is not finite or beyond ``MAX_COEFFICIENT``."""
    return not all(np.abs(v).max() < MAX_COEFFICIENT for v in values.values())


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
