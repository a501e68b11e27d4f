"""The Python API: what the CLI calls, and what notebooks and scripts use directly."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from spicedsl.frontend import load_ir


def compile_model(path_or_text: str | Path) -> str:
    """The generated Python/torch module of a model file or model text.

    >>> code = compile_model("model m\\nstate x = 0\\nparam b = 2\\nlogits = b * x")
    >>> [line for line in code.splitlines() if line.startswith("class")]
    ['class MModel(BaseRNN):']
    """
    from spicedsl.codegen.generate import generate

    return generate(load_ir(path_or_text))


def load_model(path_or_text: str | Path, n_actions: int = 2, n_participants: int = 1, **options):
    """An instantiated torch network for a model (options: ``hidden_size``, ``dropout``)."""
    from spicedsl.codegen.instantiate import network_class

    return network_class(load_ir(path_or_text))(n_actions, n_participants, **options)


def read_data(path: str | Path, model, *more_models, **options):
    """Load a data file for ``model`` and any ``more_models`` drawn beside it: every extra
    input column they read, their rewards, the first model's offered items and action
    count. Missed trials (no choice) get a note with their number.

    ``options`` go to :func:`spicedsl.runtime.data.load_dataset` (``columns``, ``sep``,
    ``choice_base``, ``n_actions``, ``per_action``, ``missed``, ``labels``);
    ``n_actions`` defaults to the model's ``actions``, and must agree with it.
    """
    import warnings

    import numpy as np

    from spicedsl.errors import DataError, UsageError
    from spicedsl.runtime.data import load_dataset

    models = (model, *more_models)
    if options.get("n_actions") is None:
        options["n_actions"] = model.n_actions
    elif model.n_actions is not None and options["n_actions"] != model.n_actions:
        raise UsageError(f"the model has {model.n_actions} actions, not {options['n_actions']}")
    inputs = list(dict.fromkeys(column for m in models for column in m.data_columns))
    dataset = load_dataset(path, inputs=inputs, offered=model.offered, **options)
    if dataset.n_missed:
        warnings.warn(
            f"{path}: {dataset.n_missed} missed trials (no choice) keep their place in their "
            "sessions; they are not predicted and change no state",
            stacklevel=2,
        )
    if any(m.reads_every_reward for m in models):
        if dataset.rewards is None:
            raise DataError(
                "the model reads data.rewards but the file has no columns "
                f"reward_0 .. reward_{dataset.n_actions - 1}",
                path=str(path),
                hint="--per-action rewards=COLUMN,COLUMN,... names one column per action",
            )
        made = dataset.choices >= 0
        missing = ~np.isfinite(dataset.rewards) & made[..., None]
        if missing.any():
            session, trial, action = (int(i) for i in np.argwhere(missing)[0])
            raise DataError(
                f"the model reads data.rewards, but session {dataset.session_ids[session]} "
                f"has no reward for action {action} on its trial {trial + 1}",
                path=str(path),
            )
    return dataset


def fit(model: str | Path, data, **options):
    """Fit a model to data: train, discover the equations, build the fitted model.

    ``data`` is a CSV path or a loaded :class:`~spicedsl.runtime.data.Dataset`;
    ``options`` are those of :func:`spicedsl.fitting.fit` (``validation``, ``seed``,
    ``epochs``, ...). Returns a :class:`spicedsl.fitting.FitResult`.
    """
    from spicedsl.fitting import fit as run_fit

    if isinstance(data, (str, Path)):
        data = read_data(data, load_ir(model))
    return run_fit(model, data, **options)


def baseline(model: str | Path, data, **options):
    """Train the GRU baseline of a model: a small GRU that reads what the model reads,
    trained and scored as :func:`fit` would train the model.

    ``data`` is a CSV path or a loaded :class:`~spicedsl.runtime.data.Dataset`;
    ``options`` are those of :func:`spicedsl.baseline.baseline` (``hidden``,
    ``embedding``, ``validation``, ``holdout``, ``seed``, ``epochs``, ...). Returns a
    :class:`spicedsl.baseline.BaselineResult`.
    """
    from spicedsl.baseline import baseline as run_baseline

    if isinstance(data, (str, Path)):
        data = read_data(data, load_ir(model))
    return run_baseline(model, data, **options)


def generative_network(
    model, n_actions: int, n_participants: int = 1, weights=None, participant_values=None
):
    """The network of a fully specified model, or of a fitted one with its ``weights``.

    ``participant_values`` (param name -> one value per participant) gives per-participant
    params their values, as a participant table does.
    """
    from spicedsl.codegen.instantiate import network_class
    from spicedsl.errors import SpiceError
    from spicedsl.runtime.weights import load_weights, weights_hidden_size

    given = set(participant_values or {})
    unknown = [m.name for m in model.learned_modules] + [
        p.name for p in model.params if not p.fixed and p.name not in given
    ]
    if weights is None and unknown:
        raise SpiceError(
            f"model '{model.name}' is not fully specified: {', '.join(unknown)} "
            f"{'needs a value' if len(unknown) == 1 else 'need values'}\n"
            "hint: fit it first ('spicedsl fit') and use the fitted model, or give "
            "per-participant params a table ('participants from \"table.csv\"')"
        )
    if weights is None:
        net = network_class(model)(n_actions, n_participants)
    else:
        net = network_class(model)(n_actions, n_participants, weights_hidden_size(weights))
        load_weights(net, weights)
    net.set_participant_values(participant_values or {})
    return net


def evaluate(
    model: str | Path,
    data,
    unknown_participants: str = "mean",
    scored=None,
    **data_options,
) -> dict[str, float]:
    """NLL per trial, trial likelihood, accuracy, AIC and BIC of a fully specified model
    on data, and with several participants each one's NLL per trial and number of
    predicted trials (under ``"participants"``).

    Participants of the data that the model's participant table lacks get the group
    values, the table's mean, with a note through :mod:`warnings`; with
    ``unknown_participants="error"`` they are an error. ``scored``, a
    :class:`spicedsl.splits.Holdout`, scores only its trials (each session still runs
    from its start).
    """
    from spicedsl.runtime.batch import make_batch
    from spicedsl.runtime.metrics import choice_metrics, participant_nll
    from spicedsl.runtime.param_table import model_values

    model_ir = load_ir(model)
    if isinstance(data, (str, Path)):
        data = read_data(data, model_ir, **data_options)
    n_actions = model_ir.n_actions or data.n_actions
    values = model_values(model_ir, data.participant_ids, unknown_participants)
    ids = data.participant_ids
    net = generative_network(model_ir, n_actions, len(ids), None, values)
    batch = make_batch(data, n_actions, model_ir.predicts_first_choice)
    if scored is not None:
        batch = batch.predicting(scored.mask(data))
    metrics = choice_metrics(net, batch, model_ir.n_free_parameters(values))
    if len(ids) > 1:
        nll, n_trials = participant_nll(net, batch, len(ids))
        metrics["participants"] = {
            label: {
                "nll_per_trial": float(nll[i] / max(n_trials[i], 1)),
                "n_trials": int(n_trials[i]),
            }
            for i, label in enumerate(ids)
        }
    return metrics


def simulate(
    model: str | Path,
    n_sessions: int,
    n_trials: int,
    *,
    n_actions: int | None = None,
    seed: int = 0,
    sigma: float = 0.2,
    n_participants: int | None = None,
    weights: str | Path | None = None,
    param_table: str | Path | None = None,
    unknown_participants: str = "mean",
):
    """Simulate a fully specified model in a drifting bandit.

    Sessions are dealt in turn to the participants of the model's participant table, or
    of ``param_table`` in its place (a CSV of per-participant param values, see
    :mod:`spicedsl.runtime.param_table`), labelled as there; or, with
    ``n_participants``, to participants labelled 1, 2, ..., ``n_participants`` (one by
    default). With a table, those of them it lacks get the group values, as
    :func:`evaluate` gives them (``unknown_participants``).
    Returns the :class:`Dataset` and the latents (choice probabilities and states).
    """
    import numpy as np
    import torch

    from spicedsl.errors import UsageError
    from spicedsl.runtime.simulate import simulate as run

    model_ir = load_ir(model)
    unmade = model_ir.data_columns + model_ir.offered
    if unmade:
        columns = ", ".join(f"data.{c}" for c in unmade)
        raise UsageError(f"simulate can only make rewards; it cannot make {columns}")
    n_actions = n_actions or model_ir.n_actions or 2
    if model_ir.n_actions is not None and n_actions != model_ir.n_actions:
        raise UsageError(f"the model has {model_ir.n_actions} actions, not {n_actions}")
    from spicedsl.runtime.param_table import model_table, read_param_table, table_bounds
    from spicedsl.runtime.simulate import MAX_SIMULATION_BYTES, simulation_bytes

    needed = simulation_bytes(n_sessions, n_trials, n_actions, len(model_ir.states))
    if needed > MAX_SIMULATION_BYTES:
        from spicedsl.files import size_text

        raise UsageError(
            f"simulating {n_sessions} sessions of {n_trials} trials would take about "
            f"{size_text(needed)} of memory, more than the limit of "
            f"{size_text(MAX_SIMULATION_BYTES)}\nhint: simulate fewer sessions or trials"
        )

    if param_table is not None:
        bounds = table_bounds(model_ir.table_params)
        table = read_param_table(param_table, bounds, model_ir.name)
    else:
        table = model_table(model_ir)
    if table is not None and n_participants is None:
        ids = table.participant_ids
    else:
        ids = tuple(str(i + 1) for i in range(n_participants or 1))
    values = table.for_participants(ids, unknown_participants) if table is not None else None
    torch.manual_seed(seed)
    net = generative_network(model_ir, n_actions, len(ids), weights, values)
    participants = np.arange(n_sessions) % len(ids)
    rng = np.random.default_rng(seed)
    dataset, latents = run(
        net,
        n_sessions,
        n_trials,
        rng,
        participants=participants,
        sigma=sigma,
        every_reward=model_ir.reads_every_reward,
    )
    if table is not None:
        dataset = replace(dataset, participant_ids=ids)
    return dataset, latents
