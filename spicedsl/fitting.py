"""``spicedsl fit``: train the network, discover the equations, write the fitted model."""

from __future__ import annotations

import hashlib
import json
import math
import platform
import time
import warnings
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import sympy
import torch

from spicedsl import __version__, ir
from spicedsl.codegen.instantiate import network_class
from spicedsl.discovery import discover_equations
from spicedsl.discovery.candidates import OffPolicy, RecordedSessions, record_modules
from spicedsl.discovery.equation import DiscoveredEquation, equation_expr
from spicedsl.discovery.refit import GroupValue
from spicedsl.discovery.stability import (
    Stability,
    complementary_halves,
    stability_report,
    stability_summary,
)
from spicedsl.dynamics import flag_unstable_equations, unstable_report
from spicedsl.errors import DataError, FitError, SpiceError, UsageError
from spicedsl.files import new_output_dir, write_atomic
from spicedsl.fitted import (
    TABLE_FILE,
    column_values,
    fitted_program,
    participant_columns,
    rewards_rescaled,
    with_frequencies,
)
from spicedsl.frontend import checked_program, load_ir, read_source
from spicedsl.mathtext import equations_latex
from spicedsl.printer import format_program, format_statement
from spicedsl.runtime.batch import Batch, make_batch, member_batches
from spicedsl.runtime.data import Dataset
from spicedsl.runtime.metrics import chance_nll, choice_metrics
from spicedsl.runtime.network import BaseRNN
from spicedsl.runtime.param_table import format_param_table, model_values
from spicedsl.runtime.train import TrainingLog, train_network
from spicedsl.runtime.weights import load_weights, save_weights
from spicedsl.semantics.functions import MODULE_CLIP as CLIP
from spicedsl.semantics.lower import lower
from spicedsl.settings import OPTIONS, FitSettings
from spicedsl.splits import Holdout, Split, split_trials
from spicedsl.syntax import ast


@dataclass
class FitResult:
    """Everything ``spicedsl fit`` found.

    Attributes
    ----------
    n_actions : int
        The number of actions of the fit (the fitted model says ``actions n_actions``).
    equations : dict of str to sympy.Expr
        The discovered equation of each learnable module, in the model's symbols.
    fitted_text : str
        The fitted model file: every ``learn(...)`` replaced, every param valued.
    metrics : dict
        ``metrics[stage][split]`` for stage ``network`` or ``equations`` and split
        ``train`` or ``validation``: NLL per trial, accuracy, AIC, BIC and counts. For an
        ensemble, ``network`` is the member with the best validation loss.
    network : BaseRNN
        The trained network (of an ensemble, that member).
    ensemble : BaseRNN or None
        Every member of an ensemble, stacked (None for a single network).
    stability : Stability or None
        For an ensemble, each term's selection frequency, the kept terms, the bound on
        the expected number of false ones, the coefficients' intervals and every
        member's own equations.
    participant_groups : dict of str to GroupValue
        Per column of the participant table that partial pooling shrank: its group's
        mean and spread.
    """

    model_name: str
    n_actions: int
    equations: dict[str, sympy.Expr]
    discovered: dict[str, DiscoveredEquation]
    params: dict[str, float]
    fitted_text: str
    participant_ids: tuple[str, ...]
    # The fitted model's participant table (column -> one value per participant) and what
    # each column is; None when the fitted model names no table.
    participant_table: dict[str, list[float]] | None
    participant_labels: dict[str, str] | None
    metrics: dict[str, dict[str, dict[str, float]]]
    network: BaseRNN
    equation_network: BaseRNN  # the fitted model, its participant table applied
    log: TrainingLog
    settings: FitSettings
    options: dict[str, object]
    timings: dict[str, float] = field(default_factory=dict)
    ensemble: BaseRNN | None = None
    stability: Stability | None = None
    participant_groups: dict[str, GroupValue] = field(default_factory=dict)

    def summary(self) -> str:
        """A short table of the fit, for people."""
        text = metrics_summary(
            self.model_name, self.log, self.timings.get("training_s", 0), self.metrics
        )
        if self.stability is not None:
            text += "\n" + stability_summary(self.stability)
            text += "\n# network: the member with the best validation loss"
        return text

    def participant_summary(self) -> str:
        """Per column of the participant table: for how many participants its term is
        active (non-zero), the distribution of its values, and, for a pooled one, its
        group's value (at the group's mean) and spread (on the raw scale)."""
        if not self.participant_table:
            return ""
        n = len(self.participant_ids)
        lines = [
            f"# per participant ({n}): active = non-zero for how many; mean, sd, min, median, "
            "max; pooled toward the group: its value, and its spread on the raw scale"
        ]
        for name, values in self.participant_table.items():
            v = np.asarray(values)
            active = int(np.count_nonzero(v))
            group = self.participant_groups.get(name)
            pooled = (
                f"{group.value:9.4g} {group.spread:9.4g} {group.scale:16}"
                if group
                else f"{'-':>9} {'-':>9} {'':16}"
            )
            lines.append(
                f"#   {name:28} {active:>5}/{n:<5} {v.mean():9.4g} {v.std():9.4g} {v.min():9.4g} "
                f"{np.median(v):9.4g} {v.max():9.4g} {pooled}  {self.participant_labels[name]}"
            )
        return "\n".join(lines)

    def report(self) -> dict[str, object]:
        """The content of ``report.json``."""
        return {
            "model": self.model_name,
            "n_actions": self.n_actions,
            "equations": {name: str(expr) for name, expr in self.equations.items()},
            "equation_samples": {name: eq.n_samples for name, eq in self.discovered.items()},
            "equation_terms": {name: eq.n_coefficients for name, eq in self.discovered.items()},
            "unstable_equations": unstable_report(self.discovered, self.participant_ids),
            "params": self.params,
            "participants": (
                {
                    "ids": list(self.participant_ids),
                    "columns": self.participant_labels,
                    "values": self.participant_table,
                    "groups": {name: asdict(g) for name, g in self.participant_groups.items()},
                }
                if self.participant_table
                else None
            ),
            "metrics": self.metrics,
            "training": self.log.report(),
            "ensemble": stability_report(self.stability) if self.stability else None,
            "settings": asdict(self.settings),
            "options": self.options,
            "timings": self.timings,
            "versions": software_versions(),
        }

    def save(self, outdir: str | Path, overwrite: bool = False) -> Path:
        """Write ``fitted.spice`` (and its participant table, ``fitted_participants.csv``,
        if it names one), ``report.json`` and ``network.npz`` (and, for an ensemble, every
        member in ``ensemble.npz``) into ``outdir`` (:func:`spicedsl.report.write_report`
        adds ``report.html``)."""
        out = new_output_dir(outdir, overwrite)
        if self.participant_table:
            table = format_param_table(self.participant_ids, self.participant_table)
            write_atomic(out / TABLE_FILE, table)
        write_atomic(out / "fitted.spice", self.fitted_text)
        write_atomic(out / "report.json", json.dumps(self.report(), indent=1) + "\n")
        save_weights(self.network, out / "network.npz")
        if self.ensemble is not None:
            save_weights(self.ensemble, out / ENSEMBLE_FILE)
        return out

    def _repr_latex_(self) -> str:
        """The discovered equations as LaTeX, for notebooks."""
        return equations_latex(self)


def metrics_summary(
    title: str, log: TrainingLog, seconds: float, metrics: dict[str, dict[str, dict]]
) -> str:
    """How training went and ``metrics[stage][split]`` as a table, for people."""
    lines = [
        f"# {title}: training {log.stopped} after {len(log.train_loss)} epochs ({seconds:.1f} s)"
        + (f", after {log.restarts} restarts from chance" if log.restarts else "")
    ]
    lines.append(
        f"# {'':10} {'split':10} {'trials':>7} {'NLL/trial':>10} {'likelihood':>10} "
        f"{'accuracy':>9} {'AIC':>10} {'BIC':>10}"
    )
    for stage, splits in metrics.items():
        for split, m in splits.items():
            lines.append(
                f"# {stage:10} {split:10} {m['n_trials']:7d} {m['nll_per_trial']:10.5f} "
                f"{m['trial_likelihood']:10.5f} {m['accuracy']:9.4f} "
                f"{m['aic']:10.1f} {m['bic']:10.1f}"
            )
    return "\n".join(lines)


def software_versions() -> dict[str, str]:
    """The versions of spicedsl and of what it computes with, for reports."""
    return {
        "spicedsl": __version__,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "numpy": np.__version__,
        "sympy": sympy.__version__,
        "pysindy": _version("pysindy"),
    }


# A float64 has 15 to 17 significant digits; more would print noise.
MAX_DIGITS = 17

# A network whose best loss is within this many nats of chance has learnt nothing.
CHANCE_MARGIN = 1e-3
# Fresh initialisations tried after a network that stayed at chance.
CHANCE_RESTARTS = 2


def train_with_restarts(
    new_network: Callable[[int], BaseRNN],
    full: Batch,
    split: Split,
    settings: FitSettings,
    device: str,
    progress: bool,
    halves: list[np.ndarray] | None = None,
) -> tuple[BaseRNN, TrainingLog]:
    """Train a network from ``new_network(0)``; while it ends at chance, train fresh ones
    from ``new_network(1)``, ... (``CHANCE_RESTARTS`` at most) and keep the best.

    With ``halves``, the networks are ensembles: member ``m`` trains on the training
    sessions ``halves[m]``, and every member is validated on the validation sessions.
    """
    on_device = _device(device)
    moved = full.to(on_device)
    train = moved.predicting(split.train)
    validation = moved.predicting(split.validation) if split.validation.any() else None
    monitored = validation if validation is not None else train
    chance = chance_nll(monitored)
    if halves is not None:
        validating = np.flatnonzero(split.validation.any(axis=1))
        sessions = [np.union1d(half, validating) for half in halves]
        batches = [b for b in [validation] if b is not None]
        train, *validated = member_batches(sessions, train, *batches, trained=halves)
        validation = validated[0] if validated else None
    tried: list[tuple[BaseRNN, TrainingLog]] = []
    for attempt in range(CHANCE_RESTARTS + 1):
        net = new_network(attempt)
        if not any(p.requires_grad for p in net.parameters()):
            return net, TrainingLog(stopped="nothing to train")
        net.to(on_device)
        log = train_network(net, train, settings, validation, progress)
        net.cpu()
        tried.append((net, log))
        if log.stopped == "interrupted" or log.best_loss < chance - CHANCE_MARGIN:
            break
    net, log = min(tried, key=lambda fit: fit[1].best_loss)
    log.restarts = len(tried) - 1
    if log.best_loss >= chance - CHANCE_MARGIN:
        warnings.warn(
            f"the network predicts the choices no better than chance (NLL {log.best_loss:.4f} "
            f"per trial, chance {chance:.4f}) after {len(tried)} initialisations; check that "
            "the model reads the inputs that drive the choices, or try another learning_rate",
            stacklevel=2,
        )
    return net, log


# The random stream, beside the fit's own, that draws the halves of an ensemble.
PAIRS_STREAM = 1


def _voters(log: TrainingLog, chance: float) -> list[int] | None:
    """The members of an ensemble whose equations count: those whose best loss is nearer
    the median member's than ``chance`` (a member that stayed near chance while the
    others learnt has learnt too little to have a say). None for a single network."""
    if not log.members:
        return None
    losses = np.array([info["best_loss"] for info in log.members])
    cutoff = (np.median(losses) + chance) / 2
    return [int(m) for m in np.flatnonzero(losses < cutoff)] or list(range(len(losses)))


def restart_seed(seed: int, attempt: int) -> int:
    """The torch seed of restart ``attempt`` of a fit with ``seed``."""
    return int(np.random.SeedSequence([seed, attempt]).generate_state(1)[0])


def _fingerprint(text: str, data: Dataset, options: list) -> str:
    """A digest of everything training depends on, to tell whether a checkpoint is this
    fit's."""
    digest = hashlib.sha256()
    digest.update(text.encode())
    for array in (data.choices, data.reward, data.lengths, data.participant_index):
        digest.update(np.ascontiguousarray(array).tobytes())
    digest.update(json.dumps(options, default=repr).encode())
    return digest.hexdigest()


def _rewards_rescaled(program: ast.Program, source, low: float, high: float) -> ast.Program:
    """``program`` reading the rewards rescaled from ``[low, high]`` to [0, 1], with a note
    that says how (see :func:`spicedsl.fitted.rewards_rescaled`)."""
    scaled = rewards_rescaled(program, low, high)
    changed = [
        format_statement(new)[0]
        for old, new in zip(program.statements, scaled.statements, strict=True)
        if new != old
    ]
    if changed:
        warnings.warn(
            f"the rewards range over [{low:g}, {high:g}]; the model is fitted reading them "
            f"rescaled to [0, 1]: {'; '.join(changed)} (--no-rescale reads them as they are)",
            stacklevel=3,
        )
    return scaled


# A learnable module whose output sits on the clip more often than this is noted.
CLIPPED_SHARE = 0.01


def _note_clipped_modules(net: BaseRNN, batch: Batch, trials: np.ndarray) -> None:
    """Note each learnable module whose new values hit the clip on more than
    ``CLIPPED_SHARE`` of its updates in the training trials (of all members of an
    ensemble together)."""
    for name, samples in record_modules(net, batch, trials).items():
        after = samples["after"]
        clipped = np.mean(np.abs(after) >= CLIP) if after.size else 0.0
        if clipped > CLIPPED_SHARE:
            warnings.warn(
                f"module '{name}' reaches the clip (±{CLIP:g}) on {clipped:.1%} of its updates "
                "in the training trials: its values run away; consider an activation, or "
                "rescaling what it reads",
                stacklevel=3,
            )


def _equation_data(
    model: ir.Model, data: Dataset, full: Batch, trials: np.ndarray
) -> OffPolicy | RecordedSessions:
    """What the equation stage runs the network on: off-policy sessions with rewards
    like the data's, or the training trials themselves when the model reads data that
    off-policy sessions cannot make (extra columns, the items offered)."""
    if model.data_columns or model.offered:
        return RecordedSessions(full, trials)
    if data.reward_range is None:
        return OffPolicy()
    low, high = data.reward_range
    observed = np.unique(data.reward[data.choices >= 0])
    return OffPolicy(low, high, binary=len(observed) <= 2)


CHECKPOINT_FILE = "training.json"
# The weights of every member of an ensemble (network.npz holds the one that stands for
# all of them, which a single network can load).
ENSEMBLE_FILE = "ensemble.npz"


def _weights_file(net: BaseRNN) -> str:
    return "network.npz" if net.members == 1 else ENSEMBLE_FILE


def write_checkpoint(folder: str | Path, net: BaseRNN, log: TrainingLog, fingerprint: str) -> None:
    """Save the trained network and its training log into ``folder`` (see :func:`fit`)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    save_weights(net, folder / _weights_file(net))
    content = {"fingerprint": fingerprint, "log": asdict(log)}
    write_atomic(folder / CHECKPOINT_FILE, json.dumps(content) + "\n")


def read_checkpoint(folder: str | Path, net: BaseRNN, fingerprint: str) -> TrainingLog:
    """Load the network a :func:`write_checkpoint` of the same fit saved; its log."""
    folder = Path(folder)
    hint = "run the fit without --resume to train again"
    try:
        content = json.loads((folder / CHECKPOINT_FILE).read_text(encoding="utf-8"))
        fields = content["log"]
        log = TrainingLog(**{k: fields[k] for k in TrainingLog.__dataclass_fields__})
    except FileNotFoundError:
        raise UsageError(f"'{folder}' holds no trained network to resume\nhint: {hint}") from None
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise SpiceError(f"cannot read '{folder / CHECKPOINT_FILE}': {error}") from None
    if content.get("fingerprint") != fingerprint:
        raise UsageError(
            f"the network in '{folder}' was trained with another model, data or settings"
            f"\nhint: {hint}, or give the model, data file and options of that fit"
        )
    load_weights(net, folder / _weights_file(net))
    return log


def fit(
    model: str | Path,
    data: Dataset,
    *,
    validation: float = 0.2,
    holdout: Holdout | None = None,
    seed: int = 0,
    threads: int = 1,
    device: str = "cpu",
    progress: bool = True,
    digits: int = 4,
    rescale: bool = True,
    checkpoint: str | Path | None = None,
    resume: bool = False,
    **settings: float,
) -> FitResult:
    """Fit ``model`` to ``data``: train, discover equations, build the fitted model.

    Parameters
    ----------
    model : str or Path
        Model file or model text.
    data : Dataset
        From :func:`spicedsl.runtime.data.load_dataset`.
    validation : float
        Fraction of sessions held out from training (0.2 by default; of each session's
        trials when the holdout takes the end of each session). They choose the best
        epoch and give the validation metrics; equations are chosen by their BIC on the
        training trials.
    holdout : Holdout, optional
        Trials held out from training and validation, to score the fit at the end (the
        ``test`` metrics): whole sessions, or the end of each session.
    seed : int
        Seeds every random draw; the same seed gives the same result.
    threads : int
        torch threads (1 is fastest for these small networks).
    device : str
        Where to train the network: "cpu" or "cuda" (or "cuda:N"). The equation stage
        always runs on the CPU.
    digits : int
        Significant digits of the coefficients in the fitted model (1 to 17).
    rescale : bool
        When the data's rewards are not within [0, 1], fit the model with every control
        that reads ``data.reward`` or ``data.rewards`` reading it rescaled to [0, 1], as
        SPICE does; the fitted model says so in its text.
    checkpoint : str or Path, optional
        A folder where the trained network is saved (``network.npz``, or ``ensemble.npz``
        for an ensemble, and ``training.json``)
        as soon as training ends, so that an interrupted or failed equation stage loses
        nothing.
    resume : bool
        Take the trained network from ``checkpoint`` instead of training; the model,
        the data and every setting must be those of the fit that saved it.
    **settings
        Overrides of the model file's ``fit`` settings (see ``spicedsl.settings``).
    """
    source = read_source(model)
    program = checked_program(source)
    low_high = data.reward_range
    if rescale and low_high is not None and not 0 <= low_high[0] <= low_high[1] <= 1:
        program = _rewards_rescaled(program, source, *low_high)
    for name, value in settings.items():
        problem = OPTIONS[name].problem(value)
        if problem:
            raise UsageError(f"option {name} {problem}")
    model_ir = lower(program, source, settings)
    fit_settings = model_ir.fit
    if threads < 1:
        raise UsageError("threads must be at least 1")
    if not 1 <= digits <= MAX_DIGITS:
        raise UsageError(f"digits must be between 1 and {MAX_DIGITS}, not {digits}")
    if resume and checkpoint is None:
        raise UsageError("resuming needs the folder of the interrupted fit")
    n_actions = check_actions(model_ir, data)
    torch.set_num_threads(threads)
    rng = np.random.default_rng(seed)
    timings: dict[str, float] = {}

    n_participants = len(data.participant_ids)
    individual = model_ir.embedding is not None or any(p.per_participant for p in model_ir.params)
    split = split_trials(data, validation, rng, individual and n_participants > 1, holdout)
    full = make_batch(data, n_actions, model_ir.predicts_first_choice)
    splits = {
        name: full.predicting(mask)
        for name, mask in (
            ("train", split.train),
            ("validation", split.validation),
            ("test", split.test),
        )
        if mask.any()
    }
    train = splits["train"]
    for param in model_ir.params:
        if param.embedded and not param.per_participant and n_participants > 1:
            warnings.warn(
                f"param '{param.name}' reads the participant embedding but is not declared "
                "per participant: the fitted model gives it one value shared by everyone "
                f"(declare 'param {param.name} ... per participant' to keep one per participant)",
                stacklevel=2,
            )
    table = model_values(model_ir, data.participant_ids) or {}
    members = fit_settings.ensemble
    train_sessions = np.flatnonzero(split.train.any(axis=1))
    halves = None
    if members > 1:
        groups = data.participant_index[train_sessions] if individual else None
        pairs = np.random.default_rng([seed, PAIRS_STREAM])
        halves = complementary_halves(train_sessions, members, pairs, groups)

    def new_network(attempt: int) -> BaseRNN:
        torch.manual_seed(seed if attempt == 0 else restart_seed(seed, attempt))
        net = network_class(model_ir)(
            n_actions, n_participants, fit_settings.hidden_size, fit_settings.dropout, members
        )
        net.set_participant_values(table)
        return net

    fingerprint = _fingerprint(
        format_program(program), data, [validation, seed, asdict(fit_settings), holdout]
    )
    start = time.perf_counter()
    if resume:
        net = new_network(0)
        log = read_checkpoint(checkpoint, net, fingerprint)
    else:
        net, log = train_with_restarts(
            new_network, full, split, fit_settings, device, progress, halves
        )
        if checkpoint is not None:
            write_checkpoint(checkpoint, net, log, fingerprint)
    timings["training_s"] = time.perf_counter() - start

    start = time.perf_counter()
    _note_clipped_modules(net, full, split.train)
    sessions = halves if halves is not None else [train_sessions]
    final, stability = discover_equations(
        net,
        program,
        source,
        model_ir,
        train,
        table,
        fit_settings,
        rng,
        _equation_data(model_ir, data, full, split.train),
        sessions,
        _voters(log, chance_nll(full)),
    )
    discovered, params = final.equations, final.params
    ensemble = None
    if members > 1:  # the member that predicts the validation choices best stands for all
        ensemble, net = net, net.member(int(np.argmin([m["best_loss"] for m in log.members])))
    columns = labels = None
    groups = {}
    if n_participants > 1 and (
        final.participant_params or any(eq.per_participant for eq in discovered.values())
    ):
        columns, labels = participant_columns(program, discovered, final.participant_params, digits)
        groups = column_values(program, discovered, final.groups)
    fitted_ast = fitted_program(
        program, discovered, params, digits, TABLE_FILE if columns else None, n_actions
    )
    fitted_text = format_program(fitted_ast, source.text)
    fitted_text = flag_unstable_equations(fitted_text, discovered, data.participant_ids)
    if stability is not None:
        fitted_text = with_frequencies(fitted_text, stability)
    timings["equations_s"] = time.perf_counter() - start
    fitted_ir = load_ir(fitted_text)
    equation_net = network_class(fitted_ir)(n_actions, n_participants)
    equation_net.set_participant_values(columns or {})

    n_weights = sum(p.numel() for p in net.parameters() if p.requires_grad)
    metrics = {
        "network": {k: choice_metrics(net, b, n_weights) for k, b in splits.items()},
        "equations": {
            k: choice_metrics(equation_net, b, fitted_ir.n_free_parameters(columns))
            for k, b in splits.items()
        },
    }
    for stage, results in metrics.items():
        for name, values in results.items():
            if not math.isfinite(values["nll_per_trial"]):
                model_kind = "trained network" if stage == "network" else "equation model"
                raise FitError(
                    f"the {model_kind}'s NLL on the {name} trials is not finite, so its "
                    "predictions are unusable"
                    + (f"; the trained network is saved in '{checkpoint}'" if checkpoint else "")
                )
    return FitResult(
        model_name=model_ir.name,
        n_actions=n_actions,
        equations={name: equation_expr(eq) for name, eq in discovered.items()},
        discovered=discovered,
        params=params,
        fitted_text=fitted_text,
        participant_ids=data.participant_ids,
        participant_table=columns,
        participant_labels=labels,
        metrics=metrics,
        network=net,
        equation_network=equation_net,
        log=log,
        settings=fit_settings,
        options={
            "validation": validation,
            "holdout": asdict(holdout) if holdout else None,
            "rescale": rescale,
            "seed": seed,
            "threads": threads,
            "device": device,
            "digits": digits,
        },
        timings=timings,
        ensemble=ensemble,
        stability=stability,
        participant_groups=groups,
    )


def check_actions(model: ir.Model, data: Dataset) -> int:
    if model.n_actions is not None and model.n_actions != data.n_actions:
        raise DataError(
            f"the model has {model.n_actions} actions but the data has {data.n_actions}"
        )
    return model.n_actions or data.n_actions


def _device(name: str) -> torch.device:
    try:
        device = torch.device(name)
    except RuntimeError:
        device = None
    if device is None or device.type not in ("cpu", "cuda"):
        raise UsageError(f"unknown device '{name}'; use cpu or cuda")
    if device.type == "cuda" and not torch.cuda.is_available():
        raise FitError("device 'cuda' was asked for, but torch sees no CUDA GPU here")
    return device


def _version(package: str) -> str:
    from importlib.metadata import version

    return version(package)
