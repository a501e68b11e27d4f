"""Stage two of SPICE: replace each learnable module of a trained network by a sparse
equation.

:mod:`~spicedsl.discovery.candidates` finds candidate equations of each module in the
network's recorded updates (pysindy), :mod:`~spicedsl.discovery.refit` refits each
combination of candidates to the training choices, and
:mod:`~spicedsl.discovery.selection` keeps the combination with the best BIC.
"""

from __future__ import annotations

import numpy as np

from spicedsl import ir
from spicedsl.discovery.candidates import OffPolicy, RecordedSessions, equation_candidates
from spicedsl.discovery.refit import Refit, Refitter
from spicedsl.discovery.selection import select_equations
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
) -> Refit:
    """The equations of the learnable modules of ``net`` and the params refit with them.

    Parameters
    ----------
    net : BaseRNN
        The trained network of ``model``.
    program, source : ast.Program, Source
        The model file, to write equation models from.
    model : ir.Model
        The model ``net`` was generated from.
    train : Batch
        The training choices that the candidates are refit to.
    table : dict
        Values of per-participant params that a participant table gives.
    settings : FitSettings
        The fit's settings (off-policy sessions for the equation data).
    rng : numpy.random.Generator
        Draws the off-policy sessions.
    data : OffPolicy or RecordedSessions
        What the network is run on to record its modules' updates.
    """
    candidates = equation_candidates(net, model, settings, rng, data)
    refitter = Refitter(program, source, net, model, train, table)
    chosen = select_equations(candidates, lambda equations: refitter.refit(equations).bic)
    return refitter.drop_participant_terms(refitter.refit(chosen))
