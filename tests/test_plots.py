"""Figures (spicedsl.plots): the drawn data are the models' numbers, the panels the states."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from spicedsl import api, plots
from spicedsl.codegen.instantiate import network_class
from spicedsl.errors import SpiceError
from spicedsl.frontend import load_ir
from spicedsl.runtime.batch import make_batch
from spicedsl.runtime.simulate import simulate as run_simulation

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"
Q_LEARNING = EXAMPLES / "q_learning.spice"
LEARNING_RATE = EXAMPLES / "learning_rate.spice"
TINY = {"epochs": 5, "sindy_sessions": 1, "sindy_trials": 50, "validation": 0.0}
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def simulation():
    return api.simulate(Q_LEARNING, 5, 20, seed=1)


@pytest.fixture(scope="module")
def data(simulation):
    return simulation[0]


@pytest.fixture(scope="module")
def result(data):
    # A hidden size other than the default, so that loading network.npz must find it.
    return api.fit(LEARNING_RATE, data, progress=False, hidden_size=5, **TINY)


def axes_by_label(fig):
    return {ax.get_label(): ax for ax in fig.axes if ax.get_label()}


def line(ax, label):
    (found,) = [item for item in ax.get_lines() if item.get_label() == label]
    return found


def choice_probabilities(net, dataset, session):
    """P(action) on each trial of ``session``, from one forward pass over all sessions."""
    batch = make_batch(dataset, net.n_actions)
    net.eval()
    with torch.no_grad():
        logits = net(batch.trials, batch.chosen, batch.participants)
    n = int(dataset.lengths[session])
    return torch.softmax(logits[:n, session].double(), -1).numpy()


def test_truth_lines_are_the_simulated_probabilities_and_values(simulation):
    data, latents = simulation
    fig = plots.session_figure({"truth": Q_LEARNING}, data, 2)
    axes = axes_by_label(fig)
    assert list(axes) == ["choices", "probabilities", "state:x_value_reward"]
    probability = line(axes["probabilities"], "truth, action 1")
    np.testing.assert_array_equal(probability.get_xdata(), np.arange(1, 21))
    np.testing.assert_allclose(probability.get_ydata(), latents["probabilities"][2, :, 1], 1e-6)
    for action in range(2):
        values = line(axes["state:x_value_reward"], f"truth, action {action}").get_ydata()
        np.testing.assert_allclose(values, latents["x_value_reward"][2, :, action], atol=1e-6)
    # The choices panel: one point per trial at the chosen action, coloured by its reward.
    (points,) = axes["choices"].collections
    np.testing.assert_array_equal(
        points.get_offsets(), np.column_stack([np.arange(1, 21), data.choices[2]])
    )
    np.testing.assert_allclose(points.get_array(), data.reward[2])
    # Choices are also marked on the probability panel, at 0 and 1.
    np.testing.assert_array_equal(
        line(axes["probabilities"], "choice").get_ydata(), data.choices[2]
    )


def test_network_and_equation_lines_one_panel_per_state_shared_trial_axis(data, result):
    fitted_net = network_class(load_ir(result.fitted_text))(2, len(data.participant_ids))
    fig = plots.session_figure(
        {"truth": Q_LEARNING, "network": result.network, "equations": result.fitted_text},
        data,
        "4",  # a session label, as in the data file: the fourth session
    )
    axes = axes_by_label(fig)
    states = [label for label in axes if label.startswith("state:")]
    assert states == [f"state:{name}" for name in result.network.states]
    assert len(states) == len(result.network.states) == 2
    for name, net in (("network", result.network), ("equations", fitted_net)):
        expected = choice_probabilities(net, data, 3)[:, 1]
        drawn = line(axes["probabilities"], f"{name}, action 1").get_ydata()
        np.testing.assert_allclose(drawn, expected, atol=1e-6)
    # The truth has no learning-rate state: only the two fitted models draw that panel.
    rate_lines = {item.get_label() for item in axes["state:x_learning_rate_reward"].get_lines()}
    assert rate_lines == {f"{m}, action {a}" for m in ("network", "equations") for a in (0, 1)}
    # One trial axis, labelled once at the bottom, shared by every panel.
    ordered = fig.axes
    assert all(ax.get_shared_x_axes().joined(ordered[0], ax) for ax in ordered)
    assert ordered[-1].get_xlabel() == "trial"
    assert all(ax.get_ylabel() for ax in ordered)
    (legend,) = fig.legends
    assert [t.get_text() for t in legend.get_texts()] == [
        "truth",
        "network",
        "equations",
        "action 0",
        "action 1",
    ]
    png = plots.figure_png(fig)
    assert png.startswith(PNG_SIGNATURE)
    image = Image.open(io.BytesIO(png))
    assert image.size == (1000, int(round((1.2 + 2.0 * 4) * plots.DPI)))
    assert len(np.unique(np.asarray(image.convert("RGB")).reshape(-1, 3), axis=0)) > 20


def test_three_actions_draw_every_action_probability(data):
    data3, latents = api.simulate(Q_LEARNING, 2, 15, n_actions=3, seed=2)
    fig = plots.session_figure({"truth": Q_LEARNING}, data3, 0)
    ax = axes_by_label(fig)["probabilities"]
    for action in range(3):
        drawn = line(ax, f"truth, action {action}").get_ydata()
        np.testing.assert_allclose(drawn, latents["probabilities"][0, :, action], atol=1e-6)


def test_bad_sessions_and_models_are_named(data):
    with pytest.raises(SpiceError, match="no session 'x'"):
        plots.session_figure({"truth": Q_LEARNING}, data, "x")
    with pytest.raises(SpiceError, match="out of range"):
        plots.session_figure({"truth": Q_LEARNING}, data, 5)
    with pytest.raises(SpiceError, match="not fully specified"):
        plots.session_figure({"seed": LEARNING_RATE}, data, 0)


def test_loss_figure_draws_the_logged_losses(result):
    fig = plots.loss_figure(result)
    (ax,) = fig.axes
    train = line(ax, "train")
    np.testing.assert_allclose(train.get_ydata(), result.log.train_loss)
    np.testing.assert_array_equal(train.get_xdata(), np.arange(1, 6))
    assert "validation" not in {item.get_label() for item in ax.get_lines()}
    assert line(ax, "best epoch").get_xdata()[0] == result.log.best_epoch
    assert ax.get_xlabel() == "epoch"


def test_loss_figure_with_validation(data):
    held = api.fit(LEARNING_RATE, data, progress=False, **{**TINY, "validation": 0.4})
    (ax,) = plots.loss_figure(held.log).axes
    np.testing.assert_allclose(line(ax, "validation").get_ydata(), held.log.validation_loss)


def test_plot_command_reads_a_fit_folder(tmp_path, data, result):
    outdir = result.save(tmp_path / "fit")
    csv = tmp_path / "data.csv"
    data.to_csv(csv)
    networks = plots.fitted_networks(LEARNING_RATE, outdir, 2, data.participant_ids)
    for name, tensor in result.network.state_dict().items():
        torch.testing.assert_close(networks["network"].state_dict()[name], tensor)
    output = plots.plot_command(
        LEARNING_RATE, csv, "2", truth=Q_LEARNING, fitted=outdir, output=tmp_path / "s.png"
    )
    image = Image.open(output)
    assert image.format == "PNG" and image.size[0] == 1000
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []
    # A fully specified model alone is drawn under its own name.
    alone = plots.plot_command(Q_LEARNING, csv, "2", output=tmp_path / "alone.png")
    assert Image.open(alone).size == (1000, int(round((1.2 + 2.0 * 3) * plots.DPI)))
    with pytest.raises(SpiceError, match="--fitted"):
        plots.plot_command(LEARNING_RATE, csv, "2", output=tmp_path / "no.png")


def test_participant_coefficients_of_an_embedding_fit():
    truth = api.load_model(Q_LEARNING)
    participants = np.repeat(np.arange(3), 2)
    dataset, _ = run_simulation(truth, 6, 20, np.random.default_rng(0), participants)
    fit = api.fit(
        EXAMPLES / "individual_differences.spice", dataset, progress=False, **{**TINY, "epochs": 40}
    )
    values = plots.participant_coefficients(fit)
    labels = fit.participant_labels
    expected_keys = {name if labels[name] == "param" else labels[name] for name in labels}
    assert "beta_reward" in expected_keys and len(expected_keys) > 1
    assert set(values) == expected_keys
    assert all(v.shape == (3,) and np.isfinite(v).all() for v in values.values())
    np.testing.assert_allclose(values["beta_reward"], fit.participant_table["beta_reward"])
    fig = plots.coefficient_figure(values, plots.pooled_coefficients(fit))
    shown = {ax.get_label(): ax for ax in fig.axes if ax.get_visible()}
    assert set(shown) == expected_keys
    for key, ax in shown.items():
        np.testing.assert_allclose(line(ax, "participants").get_ydata(), values[key])
    assert plots.figure_png(fig).startswith(PNG_SIGNATURE)
    # Without individual differences there is nothing to draw.
    assert plots.coefficient_figure({}) is None
