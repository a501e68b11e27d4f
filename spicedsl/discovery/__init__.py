"""Stage two of SPICE: replace each learnable module of a trained network by a sparse
equation.

:mod:`~spicedsl.discovery.candidates` finds candidate equations of each module in the
network's recorded updates (pysindy), :mod:`~spicedsl.discovery.refit` refits
combinations of candidates to the training choices, and
:mod:`~spicedsl.discovery.selection` keeps the combination with the best BIC. For an
ensemble, every member does this on its own training sessions, and
:mod:`~spicedsl.discovery.stability` keeps the terms that enough members select (or,
when the members' most frequent structure holds those terms and more and predicts the
training choices better, that structure).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

import numpy as np

from spicedsl import ir
from spicedsl.discovery.candidates import OffPolicy, RecordedSessions, equation_candidates
from spicedsl.discovery.refit import Refit, Refitter, Request
from spicedsl.discovery.selection import select_equations
from spicedsl.discovery.stability import (
    Stability,
    consensus,
    modal_structure,
    stability_selection,
)
from spicedsl.runtime.batch import Batch
from spicedsl.runtime.network import BaseRNN
from spicedsl.settings import FitSettings
from spicedsl.source import Source
from spicedsl.syntax import ast


def discover_equations(
    net: BaseRNN,
    program: ast.Program,
    source: Source,
    model: ir.Model,
    train: Batch,
    table: dict[str, list[float]],
    settings: FitSettings,
    rng: np.random.Generator,
    data: OffPolicy | RecordedSessions,
    sessions: Sequence[np.ndarray],
    voters: Sequence[int] | None = None,
) -> tuple[Refit, Stability | None]:
    """The equations of the learnable modules of ``net`` and the params refit with them;
    for an ensemble, also what stability selection found.

    Parameters
    ----------
    net : BaseRNN
        The trained network of ``model``, or an ensemble of them.
    program, source : ast.Program, Source
        The model file, to write equation models from.
    model : ir.Model
        The model ``net`` was generated from.
    train : Batch
        Every session, with the training choices to predict.
    table : dict
        Values of per-participant params that a participant table gives.
    settings : FitSettings
        The fit's settings (off-policy sessions for the equation data, the stability
        threshold, pooling and the bound on self-coefficients).
    rng : numpy.random.Generator
        Draws the off-policy sessions and the folds that choose each participant's
        terms.
    data : OffPolicy or RecordedSessions
        What the network is run on to record its modules' updates.
    sessions : sequence of numpy.ndarray
        The training sessions of each member of ``net``.
    voters : sequence of int, optional
        The members of an ensemble whose equations count (by default all): a member that
        learnt nothing has no say.
    """
    trained = [np.unique(train.participants[own].cpu().numpy()) for own in sessions]
    candidates, libraries = equation_candidates(net, model, settings, rng, data, trained)
    starts = net.member_param_values([p.name for p in model.params if not p.fixed])
    n_participants = net.n_participants
    switches = {"pooling": bool(settings.pooling), "self_bound": bool(settings.self_bound)}
    refitter = Refitter(
        program, source, model, train, table, n_participants, starts, sessions, **switches
    )

    voters = list(range(net.members)) if voters is None else list(voters)

    def score(asked: list[tuple[int, dict, dict | None]]) -> list[float]:
        nears = iter(refitter.refit_both([(voters[i], near, None) for i, _, near in asked if near]))
        pairs = refitter.refit_both(
            [(voters[i], eqs, next(nears) if near else None) for i, eqs, near in asked]
        )
        return [min(own.bic, shared.bic) for own, shared in pairs]

    chosen = select_equations([candidates[n] for n in voters], score)
    pairs = refitter.refit_both([(n, eqs, None) for n, eqs in zip(voters, chosen, strict=True)])
    members = [min(pair, key=lambda fit: fit.bic) for pair in pairs]
    if net.members == 1:
        final = refitter.refit(chosen[0], start=members[0], precise=True)
        return refitter.choose_participant_terms(final, rng), None
    stability = stability_selection(members, libraries, settings.stability, voters, net.members)
    equations, params = consensus(members, stability)
    options = [equations]
    modal = modal_structure(stability)
    if modal is not None:
        options.append(consensus(members, stability, modal[0])[0])
    everything = [np.unique(np.concatenate(sessions))]
    refitter = Refitter(
        program, source, model, train, table, n_participants, params, everything, **switches
    )
    fits = refitter.refit_all([Request(0, eqs, precise=True) for eqs in options])
    if len(fits) > 1 and fits[1].bic < fits[0].bic:
        stable = stability.stable()
        added = tuple((m, p) for m, terms in modal[0].items() for p in terms - stable[m])
        stability = replace(stability, added=added, modal_members=modal[1])
        return refitter.choose_participant_terms(fits[1], rng), stability
    return refitter.choose_participant_terms(fits[0], rng), stability
