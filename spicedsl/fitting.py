"""``spicedsl fit``: train the network, discover the equations, write the fitted model."""

from __future__ import annotations

import json
import math
import platform
import time
import zipfile
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np
import sympy
import torch

from spicedsl import __version__, ir
from spicedsl.codegen.instantiate import network_class
from spicedsl.errors import DataError, FitError, SpiceError, UsageError
from spicedsl.files import new_output_dir, write_atomic
from spicedsl.fitted import fitted_program, refit_program
from spicedsl.frontend import checked_program, load_ir, read_source
from spicedsl.printer import format_program
from spicedsl.runtime.batch import Batch, make_batch
from spicedsl.runtime.data import Dataset
from spicedsl.runtime.equations import (
    DiscoveredEquation,
    fit_module,
    offpolicy_batch,
    record_modules,
)
from spicedsl.runtime.metrics import choice_metrics
from spicedsl.runtime.network import BaseRNN
from spicedsl.runtime.train import TrainingLog, refit_params, train_network
from spicedsl.semantics.lower import lower
from spicedsl.settings import OPTIONS, FitSettings


@dataclass
class FitResult:
    """Everything ``spicedsl fit`` found.

    Attributes
    ----------
    equations : dict of str to sympy.Expr
        The discovered equation of each learnable module, in the model's symbols.
    fitted_text : str
        The fitted model file: every ``learn(...)`` replaced, every param valued.
    metrics : dict
        ``metrics[stage][split]`` for stage ``network`` or ``equations`` and split
        ``train`` or ``validation``: NLL per trial, accuracy, AIC, BIC and counts.
    """

    model_name: str
    equations: dict[str, sympy.Expr]
    discovered: dict[str, DiscoveredEquation]
    params: dict[str, float]
    fitted_text: str
    metrics: dict[str, dict[str, dict[str, float]]]
    network: BaseRNN
    log: TrainingLog
    settings: FitSettings
    options: dict[str, object]
    timings: dict[str, float] = field(default_factory=dict)

    def summary(self) -> str:
        """A short table of the fit, for people."""
        lines = [
            f"# {self.model_name}: training {self.log.stopped} after "
            f"{len(self.log.train_loss)} epochs ({self.timings.get('training_s', 0):.1f} s)"
        ]
        header = f"# {'':10} {'split':10} {'NLL/trial':>10} {'accuracy':>9} {'AIC':>10} {'BIC':>10}"
        lines.append(header)
        for stage, splits in self.metrics.items():
            for split, m in splits.items():
                lines.append(
                    f"# {stage:10} {split:10} {m['nll_per_trial']:10.5f} {m['accuracy']:9.4f} "
                    f"{m['aic']:10.1f} {m['bic']:10.1f}"
                )
        return "\n".join(lines)

    def report(self) -> dict[str, object]:
        """The content of ``report.json``."""
        return {
            "model": self.model_name,
            "equations": {name: str(expr) for name, expr in self.equations.items()},
            "equation_samples": {name: eq.n_samples for name, eq in self.discovered.items()},
            "params": self.params,
            "metrics": self.metrics,
            "training": {
                "epochs_run": len(self.log.train_loss),
                "best_epoch": self.log.best_epoch,
                "stopped": self.log.stopped,
                "train_loss": self.log.train_loss,
                "validation_loss": self.log.validation_loss,
            },
            "settings": asdict(self.settings),
            "options": self.options,
            "timings": self.timings,
            "versions": {
                "spicedsl": __version__,
                "python": platform.python_version(),
                "torch": torch.__version__,
                "numpy": np.__version__,
                "sympy": sympy.__version__,
                "pysindy": _version("pysindy"),
            },
        }

    def save(self, outdir: str | Path, overwrite: bool = False, dataset=None) -> Path:
        """Write ``fitted.spice``, ``report.json`` and ``network.npz`` into ``outdir``, and
        ``report.html`` when the fitted ``dataset`` is given (its sessions are drawn)."""
        out = new_output_dir(outdir, overwrite)
        write_atomic(out / "fitted.spice", self.fitted_text)
        write_atomic(out / "report.json", json.dumps(self.report(), indent=1) + "\n")
        save_weights(self.network, out / "network.npz")
        if dataset is not None:
            from spicedsl.report import write_report

            write_report(self, dataset, out / "report.html")
        return out

    def _repr_latex_(self) -> str:
        """The discovered equations as LaTeX, for notebooks."""
        from spicedsl.report import equations_latex

        return equations_latex(self)


# Refit coefficients or params beyond this size mean the refit diverged.
MAX_COEFFICIENT = 1e4


@dataclass(frozen=True)
class Refit:
    """An equation model with its coefficients and params refit to the choices."""

    equations: dict[str, DiscoveredEquation]
    params: dict[str, float]
    bic: float


def save_weights(net: BaseRNN, path: Path) -> None:
    """Network weights as a plain ``.npz`` archive (no pickle)."""
    import io

    buffer = io.BytesIO()
    arrays = {k: v.detach().cpu().numpy() for k, v in net.state_dict().items()}
    np.savez(buffer, **arrays)
    write_atomic(path, buffer.getvalue())


def weights_hidden_size(path: str | Path) -> int:
    """The hidden size of the module networks in a ``network.npz`` (the default if none)."""
    try:
        with np.load(path, allow_pickle=False) as archive:
            for key in archive.files:
                if key.startswith("nets.") and key.endswith(".out_weight"):
                    return int(archive[key].shape[0])
    except (OSError, ValueError, KeyError, zipfile.BadZipFile) as error:
        raise SpiceError(f"cannot read network weights '{path}': {error}") from None
    return FitSettings().hidden_size


def load_weights(net: BaseRNN, path: str | Path) -> None:
    """Load weights written by :func:`save_weights` (``allow_pickle=False``)."""
    try:
        with np.load(path, allow_pickle=False) as archive:
            net.load_state_dict({k: torch.as_tensor(archive[k]) for k in archive.files})
    except (OSError, ValueError, KeyError, zipfile.BadZipFile) as error:
        raise SpiceError(f"cannot read network weights '{path}': {error}") from None
    except RuntimeError as error:
        first = str(error).strip().splitlines()[-1].strip()
        raise SpiceError(
            f"the weights in '{path}' do not fit this model ({first})\n"
            "hint: use the model file, actions and participants of the fit that wrote them"
        ) from None


def fit(
    model: str | Path,
    data: Dataset,
    *,
    validation: float = 0.2,
    seed: int = 0,
    threads: int = 1,
    device: str = "cpu",
    progress: bool = True,
    digits: int = 4,
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
        Fraction of sessions held out from training (0.2 by default). They choose the
        best epoch and give the validation metrics; equations are chosen by their BIC
        on the training sessions.
    seed : int
        Seeds every random draw; the same seed gives the same result.
    threads : int
        torch threads (1 is fastest for these small networks).
    device : str
        Where to train the network: "cpu" or "cuda" (or "cuda:N"). The equation stage
        always runs on the CPU.
    digits : int
        Significant digits of the coefficients in the fitted model.
    **settings
        Overrides of the model file's ``fit`` settings (see ``spicedsl.settings``).
    """
    source = read_source(model)
    program = checked_program(source)
    model_ir = lower(program, source)
    for name, value in settings.items():
        problem = OPTIONS[name].problem(value)
        if problem:
            raise UsageError(f"option {name} {problem}")
    fit_settings = model_ir.fit.replace(**settings)
    if threads < 1 or digits < 1:
        raise UsageError("threads and digits must be at least 1")
    n_actions = _check_actions(model_ir, data)
    torch.manual_seed(seed)
    torch.set_num_threads(threads)
    rng = np.random.default_rng(seed)
    timings: dict[str, float] = {}

    train_sessions, validation_sessions = _split(data, validation, rng)
    full = make_batch(data, n_actions)
    train = full.predicting(train_sessions)
    held_out = full.predicting(validation_sessions) if len(validation_sessions) else None

    n_participants = len(data.participant_ids)
    net = network_class(model_ir)(
        n_actions, n_participants, fit_settings.hidden_size, fit_settings.dropout
    )
    start = time.perf_counter()
    if any(p.requires_grad for p in net.parameters()):
        on_device = _device(device)
        net.to(on_device)
        moved = full.to(on_device)
        log = train_network(
            net,
            moved.predicting(train_sessions),
            fit_settings,
            moved.predicting(validation_sessions) if held_out is not None else None,
            progress,
        )
        net.cpu()
    else:
        log = TrainingLog(stopped="nothing to train")
    timings["training_s"] = time.perf_counter() - start

    start = time.perf_counter()
    network_params = fitted_param_values(net, model_ir)
    candidates = equation_candidates(net, model_ir, fit_settings, rng, n_participants)

    def fitted_text_of(equations: dict[str, DiscoveredEquation], values: dict[str, float]) -> str:
        return format_program(fitted_program(program, equations, values, digits), source.text)

    def refit(equations: dict[str, DiscoveredEquation]) -> Refit:
        """Refit every coefficient and param of the equation model to the training choices."""
        refit_ast, coefficient_params = refit_program(program, equations, network_params)
        refit_ir = lower(refit_ast, source)
        equation_net = network_class(refit_ir)(n_actions, n_participants)
        refit_params(equation_net, train)
        values = fitted_param_values(equation_net, refit_ir)
        if not all(abs(v) < MAX_COEFFICIENT for v in values.values()):
            # L-BFGS left the stable region: keep the candidate as the network gave it.
            return Refit(equations, network_params, math.inf)
        refitted = {name: list(eq.terms) for name, eq in equations.items()}
        for param, (module, index) in coefficient_params.items():
            refitted[module][index] = (values.pop(param), refitted[module][index][1])
        equations = {
            name: replace(eq, terms=tuple(refitted[name])) for name, eq in equations.items()
        }
        per_participant = {p.name for p in refit_ir.params if p.per_participant}
        n_free = len(coefficient_params) + sum(
            n_participants if name in per_participant else 1 for name in values
        )
        bic = choice_metrics(equation_net, train, n_free)["bic"]
        thresholds = {name: spec.threshold for name, spec in net.module_specs.items()}
        if any(abs(c) < thresholds[name] for name, eq in equations.items() for c, _ in eq.terms):
            bic = math.inf  # a term too small to keep: a sparser candidate says the same
        return Refit(equations, values, bic)

    # Coordinate descent scores the current choice again for every module, and the winner
    # is needed once more at the end: refit each combination of candidates only once.
    refits: dict[tuple, Refit] = {}

    def refit_once(equations: dict[str, DiscoveredEquation]) -> Refit:
        key = tuple((name, eq.terms) for name, eq in sorted(equations.items()))
        if key not in refits:
            refits[key] = refit(equations)
        return refits[key]

    chosen = select_equations(candidates, lambda equations: refit_once(equations).bic)
    final = refit_once(chosen)
    discovered, params = final.equations, final.params
    fitted_text = fitted_text_of(discovered, params)
    timings["equations_s"] = time.perf_counter() - start
    fitted_ir = load_ir(fitted_text)
    equation_net = network_class(fitted_ir)(n_actions, n_participants)

    splits = {"train": train, **({"validation": held_out} if held_out is not None else {})}
    n_weights = sum(p.numel() for p in net.parameters() if p.requires_grad)
    metrics = {
        "network": {k: choice_metrics(net, b, n_weights) for k, b in splits.items()},
        "equations": {
            k: choice_metrics(equation_net, b, count_free_parameters(fitted_ir))
            for k, b in splits.items()
        },
    }
    return FitResult(
        model_name=model_ir.name,
        equations={name: equation_expr(eq) for name, eq in discovered.items()},
        discovered=discovered,
        params=params,
        fitted_text=fitted_text,
        metrics=metrics,
        network=net,
        log=log,
        settings=fit_settings,
        options={
            "validation": validation,
            "seed": seed,
            "threads": threads,
            "device": device,
            "digits": digits,
        },
        timings=timings,
    )


def equation_candidates(
    net: BaseRNN,
    model: ir.Model,
    settings: FitSettings,
    rng: np.random.Generator,
    n_participants: int = 1,
) -> dict[str, list[DiscoveredEquation]]:
    """Candidate sparse equations of each learnable module, from off-policy sessions."""
    if not model.learned_modules:
        return {}
    participants = np.repeat(np.arange(n_participants), settings.sindy_sessions)
    batch: Batch = offpolicy_batch(
        net.n_actions,
        len(participants),
        settings.sindy_trials,
        settings.sindy_repeat,
        rng,
        participants,
    )
    recordings = record_modules(net, batch)
    return {
        module.name: fit_module(
            module.name,
            net.module_specs[module.name],
            recordings[module.name]["before"],
            recordings[module.name]["after"],
            recordings[module.name]["inputs"],
        )
        for module in model.learned_modules
    }


def select_equations(
    candidates: dict[str, list[DiscoveredEquation]],
    score: Callable[[dict[str, DiscoveredEquation]], float],
) -> dict[str, DiscoveredEquation]:
    """One equation per module, by coordinate descent on ``score`` (lower is better; ties
    keep the earlier candidate).

    Starts from each module's first candidate; then, module by module, keeps the
    candidate whose equation model scores best with the other modules' choices fixed.
    With the BIC of the choices as score, a term stays only if it pays for itself in
    predicted choices, not just in fitting the network.
    """
    chosen = {name: options[0] for name, options in candidates.items()}
    for name, options in candidates.items():
        scores = [score({**chosen, name: option}) for option in options]
        chosen[name] = options[int(np.argmin(scores))]
    return chosen


def equation_expr(equation: DiscoveredEquation) -> sympy.Expr:
    """The sympy form of a discovered equation."""
    return sympy.Add(
        *(
            sympy.Float(c) * sympy.Mul(*(ir.symbol(n) ** p for n, p in powers))
            for c, powers in equation.terms
        )
    )


def fitted_param_values(net: BaseRNN, model: ir.Model) -> dict[str, float]:
    """The trained value of every learnable param (the mean over participants)."""
    values = {}
    for param in model.params:
        if param.fixed:
            continue
        spec = net.params[param.name]
        values[param.name] = float(spec.from_raw(net.raw_params[param.name].detach()).mean())
    return values


def count_free_parameters(model: ir.Model) -> int:
    """Every param, plus every non-integer number in the module equations.

    This is the count behind AIC and BIC for a fully specified model: a fitted model's
    discovered coefficients are such numbers, while integers (as in ``1 - x``) are
    structure.
    """
    numbers = 0
    for module in model.modules:
        if isinstance(module, ir.EquationModule):
            numbers += sum(
                1
                for node in sympy.preorder_traversal(module.expr)
                if node.is_Number and not node.is_Integer and abs(node) != 1
            )
    return len(model.params) + numbers


def _check_actions(model: ir.Model, data: Dataset) -> int:
    if model.n_actions is not None and model.n_actions != data.n_actions:
        raise DataError(
            f"the model has {model.n_actions} actions but the data has {data.n_actions}"
        )
    return model.n_actions or data.n_actions


def _split(
    data: Dataset, fraction: float, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    n = len(data.session_ids)
    if not 0 <= fraction < 1:
        raise UsageError(f"the validation fraction must be in [0, 1), not {fraction}")
    order = rng.permutation(n)
    n_held = int(round(fraction * n))
    if fraction and (n_held == 0 or n_held == n):
        raise UsageError(
            f"cannot hold out {fraction:g} of {n} sessions for validation; "
            "pass --validation 0 to use them all for training"
        )
    return np.sort(order[n_held:]), np.sort(order[:n_held])


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
