"""Figures of a fit: one session through the eyes of several models, losses, coefficients.

Every function returns a :class:`matplotlib.figure.Figure` drawn with the Agg backend
(no display needed); :func:`figure_png` turns one into PNG bytes. A model can be given
as a network (a trained one such as ``FitResult.network``, or any
:class:`~spicedsl.runtime.network.BaseRNN`) or as a fully specified model file or text
(a ground truth such as ``examples/q_learning.spice``, or a ``fitted.spice``).
:func:`fitted_networks` loads the two models of a fit's output folder, and
:func:`plot_command` is what ``spicedsl plot`` calls.
"""

from __future__ import annotations

import io
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from spicedsl.errors import UsageError
from spicedsl.runtime.batch import make_batch
from spicedsl.runtime.data import Dataset
from spicedsl.runtime.network import BaseRNN

if TYPE_CHECKING:
    from spicedsl.compare import Comparison
    from spicedsl.discovery.stability import Stability
    from spicedsl.fitting import FitResult
    from spicedsl.runtime.train import TrainingLog

#: A model for :func:`session_figure`: a network, or a fully specified model file or text.
ModelLike = BaseRNN | str | os.PathLike

#: Colours of the usual model names; other names take the next colour of ``tab10``.
MODEL_COLOURS = {"truth": "black", "network": "tab:blue", "equations": "tab:orange"}

#: Line style of each action's line (cycled beyond four actions).
ACTION_STYLES = ("-", "--", ":", "-.")

#: How training stopped (``TrainingLog.stopped``), in words.
STOPPED_TEXT = {"max_epochs": "reached the epoch limit", "interrupted": "was interrupted"}

#: Resolution of the PNG images.
DPI = 100


def _new_figure(size: tuple[float, float]) -> Figure:
    """A figure drawn by Agg, whatever pyplot's backend is (pyplot is never used)."""
    fig = Figure(figsize=size, dpi=DPI, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def session_index(dataset: Dataset, session: int | str) -> int:
    """The row of ``dataset`` that holds ``session``.

    Parameters
    ----------
    dataset : Dataset
        The sessions.
    session : int or str
        A 0-based index into the dataset's sessions (an ``int``), or a session label
        as written in the data file (a ``str``).

    Returns
    -------
    int
        The 0-based index.

    Raises
    ------
    UsageError
        If there is no such session.

    Examples
    --------
    >>> import numpy as np
    >>> data = Dataset(np.zeros((2, 3), dtype=np.int64), np.zeros((2, 3), np.float32), None,
    ...                {}, np.array([3, 3]), ("a", "b"), np.array([0, 1]), ("a", "b"), 2, 0,
    ...                None)
    >>> session_index(data, "b"), session_index(data, 0)
    (1, 0)
    """
    n = len(dataset.session_ids)
    if isinstance(session, str):
        if session in dataset.session_ids:
            return dataset.session_ids.index(session)
        shown = ", ".join(repr(s) for s in dataset.session_ids[:5])
        more = ", ..." if n > 5 else ""
        raise UsageError(f"no session {session!r} in the data; its sessions are {shown}{more}")
    index = int(session)
    if not 0 <= index < n:
        raise UsageError(f"session index {index} is out of range: the data has {n} sessions")
    return index


def model_network(
    model: ModelLike,
    n_actions: int,
    participant_ids: Sequence[str] = ("1",),
    weights: str | Path | None = None,
) -> BaseRNN:
    """The network of ``model``: itself if it is one, else built from a model file or text.

    Parameters
    ----------
    model : BaseRNN, str or path
        A network, or a model file or text. Without ``weights`` the model must be fully
        specified (no ``learn``, every param valued).
    n_actions : int
        Number of actions of a network built from a model file.
    participant_ids : sequence of str
        The data's participants; a participant table gives them their values.
    weights : str or Path, optional
        A ``network.npz`` written by a fit of this (learnable) model. Its hidden size is
        read from the weights.

    Returns
    -------
    BaseRNN
        The network, in evaluation mode.
    """
    if isinstance(model, BaseRNN):
        return model.eval()
    from spicedsl.api import generative_network
    from spicedsl.frontend import load_ir
    from spicedsl.runtime.param_table import model_values

    model_ir = load_ir(model)
    values = model_values(model_ir, participant_ids)
    return generative_network(model_ir, n_actions, len(participant_ids), weights, values).eval()


def fitted_networks(
    model: str | Path, outdir: str | Path, n_actions: int, participant_ids: Sequence[str] = ("1",)
) -> dict[str, BaseRNN]:
    """The trained network and the equation model of a fit's output folder.

    Parameters
    ----------
    model : str or Path
        The (learnable) model file that was fitted.
    outdir : str or Path
        The folder ``spicedsl fit -o`` wrote: ``network.npz`` and ``fitted.spice``.
    n_actions : int
        As in the fitted data.
    participant_ids : sequence of str
        The fitted data's participants.

    Returns
    -------
    dict
        ``{"network": ..., "equations": ...}``.
    """
    outdir = Path(outdir)
    for name in ("network.npz", "fitted.spice"):
        if not (outdir / name).is_file():
            from spicedsl.errors import SpiceError

            raise SpiceError(f"'{outdir}' has no {name}: is it a folder written by spicedsl fit?")
    return {
        "network": model_network(model, n_actions, participant_ids, outdir / "network.npz"),
        "equations": model_network(outdir / "fitted.spice", n_actions, participant_ids),
    }


def session_latents(net: BaseRNN, dataset: Dataset, session: int | str) -> dict[str, np.ndarray]:
    """What ``net`` thinks along one session of ``dataset``.

    Parameters
    ----------
    net : BaseRNN
        The model's network.
    dataset : Dataset
        The data; it must have the columns the model reads.
    session : int or str
        See :func:`session_index`.

    Returns
    -------
    dict of str to numpy.ndarray
        ``probabilities``: ``(trials, actions)`` probability of each action on each trial,
        given the trials before it (uniform on the first trial, which nothing predicts);
        and for every state its ``(trials, actions)`` values after each trial.
    """
    index = session_index(dataset, session)
    missing = [c for c in net.data_columns if c not in dataset.inputs]
    if missing:
        raise ValueError(f"model '{net.name}' reads data column(s) {missing} the data lacks")
    participant = int(dataset.participant_index[index])
    if participant >= net.n_participants:
        raise ValueError(
            f"session {dataset.session_ids[index]!r} is of participant {participant + 1}, "
            f"but the network of '{net.name}' knows {net.n_participants} participant(s)"
        )
    n_trials = int(dataset.lengths[index])
    batch = make_batch(dataset, net.n_actions)
    trials = [
        {name: values[index : index + 1] for name, values in trial.items()}
        for trial in batch.trials[:n_trials]
    ]
    net.eval()
    with torch.no_grad():
        logits, states = net(
            trials,
            batch.chosen[:n_trials, index : index + 1],
            torch.tensor([participant]),
            return_states=True,
        )
    return {
        "probabilities": torch.softmax(logits[:, 0].double(), dim=-1).numpy(),
        **{name: values[:, 0].double().numpy() for name, values in states.items()},
    }


def session_figure(models: Mapping[str, ModelLike], dataset: Dataset, session: int | str) -> Figure:
    """One session: the choices and rewards, each model's choice probabilities and states.

    Panels, sharing the trial axis: the choices, coloured by reward; the probability the
    models give to each action (to action 1 alone with two actions); then one panel per
    state with each model's value of each action after each trial. States of several
    models are matched by name.

    Parameters
    ----------
    models : mapping of str to BaseRNN, str or path
        Legend name -> model: a network, or a fully specified model file or text. The
        names ``truth``, ``network`` and ``equations`` get fixed colours.
    dataset : Dataset
        The data, with every column the models read.
    session : int or str
        A 0-based session index, or a session label of the data file.

    Returns
    -------
    matplotlib.figure.Figure
        Its axes have labels ``choices``, ``probabilities`` and ``state:NAME`` (see
        :meth:`matplotlib.axes.Axes.get_label`); each model line's label is
        ``"MODEL, action A"``.
    """
    if not models:
        raise ValueError("session_figure needs at least one model")
    index = session_index(dataset, session)
    networks = {
        name: model_network(model, dataset.n_actions, dataset.participant_ids)
        for name, model in models.items()
    }
    latents = {name: session_latents(net, dataset, index) for name, net in networks.items()}
    n_actions = dataset.n_actions
    state_names = list(dict.fromkeys(s for net in networks.values() for s in net.states))
    n_trials = int(dataset.lengths[index])
    trial_numbers = np.arange(1, n_trials + 1)

    n_panels = 2 + len(state_names)
    fig = _new_figure((10, 1.2 + 2.0 * n_panels))
    ratios = [0.6, 1.0] + [1.0] * len(state_names)
    axes = fig.subplots(n_panels, 1, sharex=True, gridspec_kw={"height_ratios": ratios})
    axes = np.atleast_1d(axes)
    participant = dataset.participant_ids[dataset.participant_index[index]]
    fig.suptitle(f"session {dataset.session_ids[index]} (participant {participant})")

    choices_ax = axes[0]
    choices_ax.set_label("choices")
    choices = dataset.choices[index, :n_trials]
    rewards = dataset.reward[index, :n_trials]
    points = choices_ax.scatter(
        trial_numbers,
        choices,
        c=rewards,
        cmap="RdYlGn",
        vmin=0,
        vmax=1,
        s=18,
        edgecolors="0.3",
        linewidths=0.5,
        zorder=3,
    )
    points.set_label("choice (colour: reward)")
    choices_ax.set_yticks(range(n_actions))
    choices_ax.set_ylim(-0.5, n_actions - 0.5)
    choices_ax.set_ylabel("choice")
    choices_ax.set_title("choices, green when rewarded, red when not", fontsize="small")

    prob_ax = axes[1]
    prob_ax.set_label("probabilities")
    shown_actions = [1] if n_actions == 2 else list(range(n_actions))
    colours = _model_colours(list(networks))
    for name, values in latents.items():
        for action in shown_actions:
            prob_ax.plot(
                trial_numbers,
                values["probabilities"][:, action],
                color=colours[name],
                linestyle=ACTION_STYLES[action % len(ACTION_STYLES)],
                label=f"{name}, action {action}",
            )
    if n_actions == 2:
        # The choices again, at 0 and 1, so that the probabilities can be read against them.
        prob_ax.plot(trial_numbers, choices, "|", color="0.5", markersize=6, label="choice")
        prob_ax.set_ylabel("P(action 1)")
    else:
        prob_ax.set_ylabel("P(action)")
    prob_ax.set_ylim(-0.05, 1.05)
    prob_ax.set_title("probability of each choice given the trials before it", fontsize="small")

    for ax, state in zip(axes[2:], state_names, strict=True):
        ax.set_label(f"state:{state}")
        for name, values in latents.items():
            if state not in values:
                continue
            for action in range(n_actions):
                ax.plot(
                    trial_numbers,
                    values[state][:, action],
                    color=colours[name],
                    linestyle=ACTION_STYLES[action % len(ACTION_STYLES)],
                    label=f"{name}, action {action}",
                )
        ax.set_ylabel("value")
        ax.set_title(f"{state} after each trial", fontsize="small")
    for ax in axes:
        ax.grid(alpha=0.3)
    axes[-1].xaxis.set_major_locator(MaxNLocator(integer=True))
    axes[-1].set_xlabel("trial")
    axes[-1].set_xlim(0.5, n_trials + 0.5)
    _model_legend(fig, colours, n_actions)
    return fig


def _model_colours(names: list[str]) -> dict[str, str]:
    cycle = [f"C{i}" for i in range(10)]
    free = [c for c in cycle if c not in ("C0", "C1")]
    colours = {}
    for name in names:
        colours[name] = MODEL_COLOURS.get(name) or free[len(colours) % len(free)]
    return colours


def _model_legend(fig: Figure, colours: dict[str, str], n_actions: int) -> None:
    """One legend for the figure: a colour per model, a line style per action."""
    from matplotlib.lines import Line2D

    handles = [Line2D([], [], color=colour, label=name) for name, colour in colours.items()]
    handles += [
        Line2D(
            [],
            [],
            color="0.4",
            linestyle=ACTION_STYLES[a % len(ACTION_STYLES)],
            label=f"action {a}",
        )
        for a in range(n_actions)
    ]
    fig.legend(handles=handles, loc="outside lower center", ncol=min(len(handles), 6))


def loss_figure(result: FitResult | TrainingLog) -> Figure:
    """Training (and validation) loss per epoch, with the best epoch marked.

    Parameters
    ----------
    result : FitResult or TrainingLog
        A fit, or its training log.

    Returns
    -------
    matplotlib.figure.Figure
        One axes; its lines are labelled ``train`` and ``validation`` (when the fit held
        sessions out) and their y data are the logged losses.
    """
    log = getattr(result, "log", result)
    fig = _new_figure((8, 4))
    ax = fig.add_subplot()
    ax.set_label("loss")
    epochs = np.arange(1, len(log.train_loss) + 1)
    ax.plot(epochs, log.train_loss, color="tab:blue", label="train")
    if log.validation_loss:
        ax.plot(
            np.arange(1, len(log.validation_loss) + 1),
            log.validation_loss,
            color="tab:orange",
            label="validation",
        )
    if log.best_epoch:  # 1-based; 0 when no epoch was best
        ax.axvline(log.best_epoch, color="0.5", linestyle=":", label="best epoch")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("epoch")
    ax.set_ylabel("NLL per predicted trial")
    stopped = STOPPED_TEXT.get(log.stopped, log.stopped)
    ax.set_title(f"training {stopped} after {len(log.train_loss)} epochs")
    ax.grid(alpha=0.3)
    ax.legend()
    return fig


def participant_coefficients(result: FitResult) -> dict[str, np.ndarray]:
    """Each participant's own coefficients of the discovered equations, and params: the
    columns of the fitted model's participant table.

    Returns
    -------
    dict of str to numpy.ndarray
        ``"MODULE: TERM"`` or ``"PARAM"`` -> ``(n_participants,)`` values; empty when the
        fitted model has no participant table.
    """
    table = result.participant_table or {}
    labels = result.participant_labels or {}
    return {
        name if labels[name] == "param" else labels[name]: np.asarray(values, dtype=float)
        for name, values in table.items()
    }


def coefficient_figure(values: Mapping[str, np.ndarray], pooled: Mapping[str, float] = ()):
    """The distribution over participants of each coefficient: one panel each.

    Parameters
    ----------
    values : mapping of str to numpy.ndarray
        From :func:`participant_coefficients`.
    pooled : mapping of str to float, optional
        A value to draw as a line across each panel, such as the mean.

    Returns
    -------
    matplotlib.figure.Figure or None
        ``None`` when there is nothing to draw. Each axes is labelled with its
        coefficient's name, and its points' y data are the participants' values.
    """
    if not values:
        return None
    pooled = dict(pooled)
    names = list(values)
    columns = min(3, len(names))
    rows = -(-len(names) // columns)
    fig = _new_figure((3.4 * columns, 2.8 * rows))
    axes = np.atleast_1d(fig.subplots(rows, columns, squeeze=False)).ravel()
    rng = np.random.default_rng(0)
    for ax, name in zip(axes, names, strict=False):
        ax.set_label(name)
        ys = np.asarray(values[name], dtype=float)
        xs = rng.uniform(-0.15, 0.15, len(ys))
        ax.boxplot(
            ys[np.isfinite(ys)],
            positions=[0],
            widths=0.5,
            showfliers=False,
            medianprops={"color": "0.3"},
        )
        ax.plot(xs, ys, "o", color="tab:blue", alpha=0.7, markersize=4, label="participants")
        if name in pooled:
            ax.axhline(pooled[name], color="tab:orange", label="mean")
        ax.set_xticks([])
        ax.set_xlim(-0.6, 0.6)
        ax.set_title(name, fontsize="small")
        ax.set_ylabel("coefficient")
    for ax in axes[len(names) :]:
        ax.set_visible(False)
    fig.suptitle("per-participant coefficients")
    return fig


def stability_figure(stability: Stability) -> Figure:
    """Every term some member of an ensemble selected, by its selection frequency, with
    the threshold marked: one horizontal bar per term, module by module.

    Returns
    -------
    matplotlib.figure.Figure
        One axes labelled ``stability``; its bars' widths are the frequencies (kept terms
        in blue, those the members' most frequent structure added in orange, the others
        in grey) and its vertical line is at the threshold.
    """
    from spicedsl.fitted import term_text

    terms = list(stability.terms)
    fig = _new_figure((8, 1.6 + 0.35 * max(len(terms), 1)))
    ax = fig.add_subplot()
    ax.set_label("stability")
    rows = np.arange(len(terms))[::-1]
    added = set(stability.added)
    colours = [
        "tab:blue" if t.kept else "tab:orange" if (t.module, t.powers) in added else "0.65"
        for t in terms
    ]
    ax.barh(rows, [t.frequency for t in terms], color=colours)
    ax.set_yticks(rows, [f"{t.module}: {term_text(t.powers)}" for t in terms], fontsize="small")
    ax.axvline(stability.threshold, color="tab:red", linestyle="--", label="threshold")
    ax.set_xlim(0, 1.05)
    ax.set_ylim(-0.6, len(terms) - 0.4 + 0.5)
    ax.text(
        stability.threshold,
        len(terms) - 0.4 + 0.5,
        f" threshold {stability.threshold:g}",
        color="tab:red",
        va="top",
        fontsize="small",
    )
    ax.set_xlabel(f"selection frequency over {len(stability.members)} members")
    bound = stability.error_bound
    title = "terms by selection frequency"
    if bound is not None:
        title += f"\nexpected number of false terms at most {bound:.3g}"
    ax.set_title(title, fontsize="medium")
    return fig


def pooled_coefficients(result: FitResult) -> dict[str, float]:
    """The mean over participants of each of :func:`participant_coefficients`."""
    return {key: float(np.mean(v)) for key, v in participant_coefficients(result).items()}


def figure_png(fig: Figure) -> bytes:
    """The figure as PNG bytes."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=DPI)
    return buffer.getvalue()


def plot_command(
    model: str | Path,
    data: str | Path | Dataset,
    session: int | str,
    *,
    output: str | Path,
    truth: str | Path | None = None,
    fitted: str | Path | None = None,
    **data_options,
) -> Path:
    """``spicedsl plot MODEL DATA --session K [--truth T] [--fitted OUTDIR] -o PNG``.

    Draws :func:`session_figure` for the models given and writes it as PNG, atomically.

    Parameters
    ----------
    model : str or Path
        The model file. With ``fitted``, the learnable model that was fitted (its trained
        network is read from ``fitted/network.npz``); without, a fully specified model,
        which is drawn under its own name.
    data : str, Path or Dataset
        The data file (or loaded data).
    session : int or str
        A session label of the data file (``str``) or a 0-based index (``int``).
    output : str or Path
        The PNG file to write (``-``: stdout).
    truth : str or Path, optional
        A fully specified model drawn as ``truth`` (say, the model that simulated the data).
    fitted : str or Path, optional
        A folder written by ``spicedsl fit -o``: draws its ``network`` and ``equations``.
    **data_options
        Passed to :func:`spicedsl.api.read_data` (``columns``, ``sep``, ``choice_base``,
        ``n_actions``, ``rescale_rewards``).

    Returns
    -------
    Path
        ``output``.
    """
    from spicedsl.api import read_data
    from spicedsl.errors import SpiceError
    from spicedsl.files import write_output
    from spicedsl.frontend import load_ir

    model_ir = load_ir(model)
    truth_ir = load_ir(truth) if truth is not None else None
    if fitted is None and not model_ir.is_generative:
        raise SpiceError(
            f"model '{model_ir.name}' is not fully specified, so it cannot be drawn alone\n"
            "hint: pass --fitted OUTDIR (the folder spicedsl fit wrote for it), or give a "
            "fitted model file"
        )
    if isinstance(data, Dataset):
        dataset = data
    else:
        others = (truth_ir,) if truth_ir is not None else ()
        dataset = read_data(data, model_ir, *others, **data_options)
    models: dict[str, ModelLike] = {}
    if truth is not None:
        models["truth"] = truth
    if fitted is not None:
        models.update(fitted_networks(model, fitted, dataset.n_actions, dataset.participant_ids))
    else:
        models[model_ir.name] = model
    fig = session_figure(models, dataset, session)
    write_output(output, figure_png(fig))
    return Path(output)


def comparison_figure(comparison: Comparison) -> Figure:
    """The models of ``spicedsl compare``, in rank order: each fold's held-out NLL per
    trial with the mean and its standard error, and (with two models or more) each
    participant's held-out NLL per trial minus that under the best-ranked model.

    The axes are labelled ``folds`` and ``participants``; in the second, each model but
    the best has a line of points, labelled with its name, whose y data are the
    differences.
    """
    from spicedsl.compare import mean_se

    models = comparison.models
    names = [m.name for m in models]
    panels = 2 if len(models) > 1 else 1
    fig = _new_figure((4.2 * panels + 0.3 * len(models), 3.8))
    axes = np.atleast_1d(fig.subplots(1, panels, squeeze=False)).ravel()
    positions = np.arange(len(models))
    rng = np.random.default_rng(0)
    folds = axes[0]
    folds.set_label("folds")
    for x, model in zip(positions, models, strict=True):
        mean, se = mean_se(model.nll)
        folds.plot(x + rng.uniform(-0.12, 0.12, len(model.nll)), model.nll, "o", color="0.6")
        folds.errorbar(x, mean, yerr=se, fmt="D", color="tab:blue", capsize=4)
    folds.set_title("held-out NLL per trial, by fold", fontsize="small")
    folds.set_ylabel("NLL per trial (mean ± s.e.)")
    if panels == 2:
        best = names[0]
        differences = axes[1]
        differences.set_label("participants")
        for x, name in zip(positions[1:], names[1:], strict=True):
            ys = np.array([own[name] - own[best] for own in comparison.participants.values()])
            differences.boxplot(
                ys, positions=[x], widths=0.5, showfliers=False, medianprops={"color": "0.3"}
            )
            xs = x + rng.uniform(-0.15, 0.15, len(ys))
            differences.plot(xs, ys, "o", color="tab:orange", alpha=0.7, markersize=4, label=name)
        differences.axhline(0, color="black", linewidth=0.8)
        differences.set_title(f"per participant, minus {best}", fontsize="small")
        differences.set_ylabel("difference of held-out NLL per trial")
    for ax in axes:
        ax.set_xticks(positions, names, rotation=20, ha="right", fontsize="small")
        ax.set_xlim(-0.6, len(models) - 0.4)
    return fig
