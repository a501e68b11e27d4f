"""Candidate equations of each learnable module, from the trained network (pysindy 2.x).

The trained network is run with recording on, by default on off-policy sessions in
which each action is chosen several times in a row; each learnable module's recorded
(value before, inputs) -> value after pairs on the trials its filter selected are then
fitted by ``pysindy.DiscreteSINDy`` with a polynomial library over the module's own
state and its declared inputs.
"""

from __future__ import annotations

import itertools
import warnings
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace

import numpy as np
import pysindy as ps
import torch

from spicedsl import ir
from spicedsl.discovery.equation import DiscoveredEquation, Powers
from spicedsl.runtime.bandit import draw_rewards, drifting_reward_probabilities
from spicedsl.runtime.batch import IGNORE, Batch, member_batches
from spicedsl.runtime.network import BaseRNN, ModuleSpec
from spicedsl.settings import FitSettings


@dataclass(frozen=True)
class OffPolicy:
    """The rewards of off-policy sessions, in the data's own units: ``low`` or ``high``
    (a Bernoulli draw) when the data's rewards are ``binary``, else anywhere between
    (the drifting reward probability itself, scaled)."""

    low: float = 0.0
    high: float = 1.0
    binary: bool = True


@dataclass(frozen=True)
class RecordedSessions:
    """The equation data from real sessions: ``trials``, a ``(sessions, trials)`` mask of
    the sessions of ``batch``."""

    batch: Batch
    trials: np.ndarray


def offpolicy_batch(
    n_actions: int,
    n_sessions: int,
    n_trials: int,
    repeat: int,
    rng: np.random.Generator,
    participants: np.ndarray | None = None,
    sigma: float = 0.2,
    rewards: OffPolicy = OffPolicy(),
) -> Batch:
    """Sessions in which each action is chosen ``repeat`` times in a row, in turn.

    Rewards come from a drifting bandit, as ``rewards`` says. ``participants`` gives the
    participant index of each session (all 0 by default).
    """
    choices = (np.arange(n_trials) // repeat) % n_actions
    choices = np.broadcast_to(choices, (n_sessions, n_trials))
    # Start each session at a different action, so every action is seen fresh.
    choices = (choices + np.arange(n_sessions)[:, None]) % n_actions
    probabilities = drifting_reward_probabilities(rng, n_sessions, n_trials, n_actions, sigma)
    drawn = draw_rewards(rng, probabilities) if rewards.binary else probabilities
    values = (rewards.low + (rewards.high - rewards.low) * drawn).astype(np.float32)
    choice_tensor = torch.as_tensor(choices.T.copy())
    chosen = torch.nn.functional.one_hot(choice_tensor, n_actions).bool()
    reward_chosen = np.take_along_axis(values, choices[..., None], axis=-1)[..., 0]
    reward_tensor = torch.as_tensor(reward_chosen.T.copy()).unsqueeze(-1)
    all_rewards = torch.as_tensor(values.transpose(1, 0, 2).copy())
    trials = [{"reward": reward_tensor[t], "rewards": all_rewards[t]} for t in range(n_trials)]
    if participants is None:
        participants = np.zeros(n_sessions, dtype=np.int64)
    targets = torch.full_like(choice_tensor, IGNORE)
    return Batch(trials, chosen, targets, torch.as_tensor(participants, dtype=torch.long))


def record_modules(
    net: BaseRNN, batch: Batch, trials: np.ndarray | None = None
) -> dict[str, dict[str, np.ndarray]]:
    """Run ``net`` (every member of an ensemble) on every session of ``batch`` and
    return, per learnable module, float64 arrays ``before`` (n,), ``after`` (n,),
    ``inputs`` (n, k), and the ``participant`` (n,) and ``member`` (n,) of each sample,
    of the ``(sessions, trials)`` that ``trials`` marks (all by default)."""
    if net.members > 1:
        every = np.arange(batch.targets.shape[1])
        batch = member_batches([every] * net.members, batch)[0]
        trials = None if trials is None else np.tile(trials, (net.members, 1))
    net.eval()
    net.start_recording(None if trials is None else torch.as_tensor(np.ascontiguousarray(trials.T)))
    try:
        with torch.no_grad():
            net(batch.trials, batch.chosen, batch.participants)
    finally:
        recordings = net.stop_recording()
    arrays = {}
    for name, record in recordings.items():
        before = torch.cat(record.before).double().numpy()
        inputs = torch.cat(record.inputs).double().numpy()
        arrays[name] = {
            "before": before,
            "after": torch.cat(record.after).double().numpy(),
            "inputs": inputs.reshape(len(before), len(net.module_specs[name].inputs)),
            "participant": torch.cat(record.participant).numpy(),
            "member": torch.cat(record.member).numpy(),
        }
    return arrays


def fit_module(
    name: str,
    spec: ModuleSpec,
    before: np.ndarray,
    after: np.ndarray,
    inputs: np.ndarray,
    subsets_per_size: int = 3,
) -> tuple[list[DiscoveredEquation], tuple[Powers, ...]]:
    """Candidate sparse equations of one module from its recorded samples, and the terms
    of its library.

    The first candidates come from ``pysindy.DiscreteSINDy`` with a polynomial library
    over the module's state and inputs and the sequentially thresholded least squares
    optimizer (STLSQ) at the module's threshold. For libraries of at most
    ``MAX_SUBSET_TERMS`` terms, the ``subsets_per_size`` best least-squares equations of
    each size (the subsets of library terms with the smallest error, among those whose
    coefficients all reach the threshold) follow, from the empty equation (a state that
    resets to 0, which a network whose values are offset cannot show) up, so that a
    caller can choose among sizes by how well the equations predict choices. The STLSQ
    equation is first.
    Three per size by default, not one: the network's errors can favour a term (say, the
    module's own state, nearly constant in the recordings) over the one the choices need
    (the constant).

    Powers of binary inputs (0/1 only) are folded into the input itself. The coefficient
    of the module's own state (its linear term) is set to 1 when within the threshold of
    it: a state that carries over unchanged is structure, and its self-coefficient is the
    same whatever scale the network gave its values. Every other coefficient stays as
    found. Those depend on that scale (the inverse temperature absorbs it), so fixing
    one at 1, as SPICE does, would pin the scale and leave the equations a constant to
    make up for the mismatch with the state's initial value.
    """
    features = [spec.target, *spec.inputs]
    library = ps.PolynomialLibrary(degree=spec.degree, include_bias=True)
    model = ps.DiscreteSINDy(
        optimizer=ps.STLSQ(threshold=spec.threshold, alpha=1e-3), feature_library=library
    )
    with warnings.catch_warnings():
        # An update that stays near 0 leaves no term above the threshold: the empty
        # equation is a candidate like any other, not something to warn about.
        warnings.filterwarnings("ignore", "Sparsity parameter is too big")
        model.fit(
            before[:, None],
            t=1,
            x_next=after[:, None],
            u=inputs if inputs.shape[1] else None,
            feature_names=features,
        )
    binary = set(spec.binary_inputs) | {
        f for f, column in zip(features[1:], inputs.T, strict=True) if _is_binary(column)
    }
    terms = [
        tuple((f, 1 if f in binary else int(p)) for f, p in zip(features, powers, strict=True) if p)
        for powers in library.powers_
    ]
    # A binary input equals its own powers, so r and r^2 are one column whose weight the
    # regression may split: fold such terms together.
    merged: dict[Powers, float] = {}
    for coefficient, term in zip(model.coefficients()[0], terms, strict=True):
        merged[term] = merged.get(term, 0.0) + float(coefficient)
    candidates = [_equation(name, spec, merged.items(), len(before))]

    unique = list(dict.fromkeys(terms))
    if len(unique) <= MAX_SUBSET_TERMS:
        matrix = np.asarray(library.transform(np.column_stack([before, inputs])))
        columns = matrix[:, [terms.index(t) for t in unique]]
        candidates.append(_equation(name, spec, (), len(before)))  # size 0: reset to 0
        for size in range(1, len(unique) + 1):
            fits = []
            for subset in itertools.combinations(range(len(unique)), size):
                coefficients, *_ = np.linalg.lstsq(columns[:, list(subset)], after, rcond=None)
                error = float(np.sum((columns[:, list(subset)] @ coefficients - after) ** 2))
                if np.abs(coefficients).min() >= spec.threshold:
                    fits.append((error, subset, coefficients))
            fits.sort(key=lambda fit: fit[0])
            for _, subset, coefficients in fits[:subsets_per_size]:
                terms_found = zip((unique[i] for i in subset), coefficients, strict=True)
                candidates.append(_equation(name, spec, terms_found, len(before)))
    return list({c.terms: c for c in candidates}.values()), tuple(unique)


def fit_participants(
    equation: DiscoveredEquation,
    spec: ModuleSpec,
    before: np.ndarray,
    after: np.ndarray,
    inputs: np.ndarray,
    rows: list[np.ndarray],
) -> DiscoveredEquation:
    """``equation``'s terms fitted by least squares to each participant's samples alone
    (``rows[p]``: the samples of participant ``p``, see :func:`participant_rows`).

    One small fit per participant, so the cost grows linearly with their number. Every
    term is free for every participant (none is snapped to 1); a participant without
    samples gets ``equation``'s coefficients. The shared coefficients become the mean.
    """
    if not equation.terms:
        return replace(equation, per_participant=((),) * len(rows))
    features = dict(zip((spec.target, *spec.inputs), (before, *inputs.T), strict=True))
    columns = np.ones((len(before), len(equation.terms)))
    for j, (_, powers) in enumerate(equation.terms):
        for name, power in powers:
            columns[:, j] *= features[name] ** power
    fitted = []
    for mine in rows:
        if len(mine):
            coefficients = np.linalg.lstsq(columns[mine], after[mine], rcond=None)[0]
        else:
            coefficients = np.array([c for c, _ in equation.terms])
        fitted.append(tuple(float(c) for c in coefficients))
    mean = np.mean(fitted, axis=0)
    terms = tuple((float(m), powers) for m, (_, powers) in zip(mean, equation.terms, strict=True))
    return replace(equation, terms=terms, per_participant=tuple(fitted))


def participant_rows(participant: np.ndarray, n_participants: int) -> list[np.ndarray]:
    """The indices of each participant's samples, in order (one sort, not a scan of every
    sample per participant).

    >>> [r.tolist() for r in participant_rows(np.array([1, 0, 1, 1]), 3)]
    [[1], [0, 2, 3], []]
    """
    order = np.argsort(participant, kind="stable")
    ends = np.searchsorted(participant[order], np.arange(1, n_participants))
    return np.split(order, ends)


MAX_SUBSET_TERMS = 10


def _equation(
    name: str, spec: ModuleSpec, terms: Iterable[tuple[Powers, float]], n_samples: int
) -> DiscoveredEquation:
    kept = []
    for term, coefficient in terms:
        coefficient = float(coefficient)
        if coefficient == 0:
            continue
        if term == ((spec.target, 1),) and abs(coefficient - 1) < spec.threshold:
            coefficient = 1.0
        kept.append((coefficient, term))
    return DiscoveredEquation(name, spec.target, tuple(kept), n_samples)


def _is_binary(values: np.ndarray) -> bool:
    return bool(np.isin(values, (0.0, 1.0)).all())


# The most off-policy trials (sessions x trials, all participants together) the equation
# stage records: with many participants each gets fewer sessions, so memory stays bounded.
OFFPOLICY_TRIAL_BUDGET = 2_000_000


def offpolicy_sessions(settings: FitSettings, n_participants: int) -> int:
    """Off-policy sessions per participant: ``sindy_sessions``, or fewer (at least one)
    when ``n_participants`` would need more than ``OFFPOLICY_TRIAL_BUDGET`` trials.

    >>> from spicedsl.settings import FitSettings
    >>> offpolicy_sessions(FitSettings(), 10), offpolicy_sessions(FitSettings(), 965)
    (8, 2)
    """
    affordable = OFFPOLICY_TRIAL_BUDGET // (n_participants * settings.sindy_trials)
    return max(1, min(settings.sindy_sessions, affordable))


def equation_candidates(
    net: BaseRNN,
    model: ir.Model,
    settings: FitSettings,
    rng: np.random.Generator,
    data: OffPolicy | RecordedSessions,
    trained: Sequence[np.ndarray] | None = None,
) -> tuple[list[dict[str, list[DiscoveredEquation]]], dict[str, tuple[Powers, ...]]]:
    """Candidate sparse equations of each learnable module, from what the network does
    in off-policy sessions (or in the real sessions ``data`` names): one dict of them for
    each member of ``net`` (every member runs on the same sessions), and the terms of each
    module's library (all that any member's library has).

    A module that reads the participant embedding (when there are several participants)
    also gets the structures found in each participant's samples alone, and every
    candidate comes with each participant's own coefficients. ``trained[m]`` lists the
    participants whose sessions member ``m`` was trained on (all by default): the
    others' samples say nothing about the data, and are left out.
    """
    if not model.learned_modules:
        return [{} for _ in range(net.members)], {}
    n_participants = net.n_participants
    if isinstance(data, RecordedSessions):
        batch, trials = data.batch, data.trials
    else:
        participants = np.repeat(
            np.arange(n_participants), offpolicy_sessions(settings, n_participants)
        )
        batch = offpolicy_batch(
            net.n_actions,
            len(participants),
            settings.sindy_trials,
            settings.sindy_repeat,
            rng,
            participants,
            rewards=data,
        )
        trials = None
    recordings = record_modules(net, batch, trials)
    candidates, libraries = [], {}
    for member in range(net.members):
        own = {}
        for name, samples in recordings.items():
            mine = samples["member"] == member
            if trained is not None:
                mine &= np.isin(samples["participant"], trained[member])
            own[name] = {key: values[mine] for key, values in samples.items()}
        found, library = _module_candidates(net, model, own, n_participants)
        candidates.append(found)
        for name, terms in library.items():
            known = libraries.setdefault(name, ())
            libraries[name] = known + tuple(t for t in terms if t not in known)
    return candidates, libraries


def _module_candidates(
    net: BaseRNN,
    model: ir.Model,
    recordings: dict[str, dict[str, np.ndarray]],
    n_participants: int,
) -> tuple[dict[str, list[DiscoveredEquation]], dict[str, tuple[Powers, ...]]]:
    """Each learnable module's candidate equations from one network's recordings, and
    the terms of its library."""
    candidates, libraries = {}, {}
    for module in model.learned_modules:
        spec, samples = net.module_specs[module.name], recordings[module.name]
        found, libraries[module.name] = fit_module(
            module.name, spec, samples["before"], samples["after"], samples["inputs"]
        )
        if module.embedded and n_participants > 1:
            # Each participant's own sparse equations add their structures; every
            # structure is then fitted to each participant.
            rows = participant_rows(samples["participant"], n_participants)
            for mine in rows:
                if len(mine):
                    found += fit_module(
                        module.name,
                        spec,
                        samples["before"][mine],
                        samples["after"][mine],
                        samples["inputs"][mine],
                        subsets_per_size=1,
                    )[0]
            structures = {tuple(p for _, p in eq.terms): eq for eq in reversed(found)}
            found = [
                fit_participants(
                    equation, spec, samples["before"], samples["after"], samples["inputs"], rows
                )
                for equation in reversed(structures.values())
            ]
        candidates[module.name] = found
    return candidates, libraries
