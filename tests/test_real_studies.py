"""What real experiments need: missed trials, offered items, cues seen before the choice,
controls computed from data columns, held-out scoring and rewards in their own units.

The data are made here by a small numpy agent, so that every expectation has a known
source: Rescorla-Wagner over items offered in pairs, with ±10 rewards and time-outs.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from spicedsl import api
from spicedsl.errors import SpiceError, UsageError
from spicedsl.frontend import load_ir
from spicedsl.runtime.batch import make_batch
from spicedsl.splits import Holdout
from tests.test_cli import spicedsl

ROOT = Path(__file__).resolve().parent.parent

PAIRS_MODEL = """
model pairs
actions 4
offered data.option_a, data.option_b
state x = 0.5
control c_reward = (data.reward + 10) / 20
module learn_chosen updates x when chosen
    learn_chosen = x + alpha * (c_reward - x)
module forget_absent updates x when not offered
    forget_absent = x + 0.1 * (0.5 - x)
param alpha in (0, 1) = 0.4
param beta > 0 = 4
logits = beta * x
"""

QUICK = {"epochs": 30, "sindy_sessions": 2, "sindy_trials": 100}


def pairs_data(path: Path, n_sessions: int = 12, n_trials: int = 60, seed: int = 0) -> Path:
    """Sessions of a 4-item task offering pair (1, 2) or (3, 4) on each trial, chosen by a
    Rescorla-Wagner agent (alpha 0.4, beta 4, offered-out items forget 10 % toward 0.5),
    with rewards of +10 or -10 and a time-out on every 9th trial."""
    rng = np.random.default_rng(seed)
    pay = np.array([0.8, 0.3, 0.6, 0.2])
    lines = ["session,trial,option_a,option_b,choice,reward"]
    for session in range(n_sessions):
        value = np.full(4, 0.5)
        for trial in range(n_trials):
            pair = np.array([0, 1]) if rng.random() < 0.5 else np.array([2, 3])
            absent = np.setdiff1d(np.arange(4), pair)
            if trial % 9 == 8:
                lines.append(f"{session},{trial},{pair[0] + 1},{pair[1] + 1},,")
                continue
            p = np.exp(4 * value[pair]) / np.exp(4 * value[pair]).sum()
            item = pair[int(rng.random() > p[0])]
            reward = 10 if rng.random() < pay[item] else -10
            value[item] += 0.4 * ((reward + 10) / 20 - value[item])
            value[absent] += 0.1 * (0.5 - value[absent])
            lines.append(f"{session},{trial},{pair[0] + 1},{pair[1] + 1},{item + 1},{reward}")
    path.write_text("\n".join(lines) + "\n")
    return path


def reference_nll(path: Path) -> tuple[float, int]:
    """The true agent's summed NLL of the file's choices and their number, in numpy."""
    from spicedsl.runtime.data import load_dataset

    data = load_dataset(path, offered=("option_a", "option_b"))
    total, n = 0.0, 0
    for s in range(len(data.session_ids)):
        value = np.full(4, 0.5)
        seen = False
        for t in range(int(data.lengths[s])):
            offered = data.offered[s, t]
            choice = data.choices[s, t]
            if choice < 0:
                continue
            if seen:
                logits = np.where(offered, 4 * value, -np.inf)
                total -= logits[choice] - np.log(np.exp(logits[offered]).sum())
                n += 1
            seen = True
            value[choice] += 0.4 * ((data.reward[s, t] + 10) / 20 - value[choice])
            value[~offered] += 0.1 * (0.5 - value[~offered])
    return total, n


@pytest.fixture(scope="module")
def pairs(tmp_path_factory) -> Path:
    return pairs_data(tmp_path_factory.mktemp("pairs") / "pairs.csv")


def test_offered_items_missed_trials_and_a_scaled_reward_match_a_numpy_agent(pairs):
    metrics = api.evaluate(PAIRS_MODEL, pairs)
    total, n = reference_nll(pairs)
    assert metrics["n_trials"] == n
    assert metrics["nll_per_trial"] == pytest.approx(total / n, abs=1e-6)
    assert metrics["trial_likelihood"] == pytest.approx(math.exp(-total / n), abs=1e-6)


def test_items_not_offered_get_no_probability_and_missed_trials_change_no_state(pairs):
    model = api.load_model(PAIRS_MODEL, n_actions=4)
    data = api.read_data(pairs, load_ir(PAIRS_MODEL))
    batch = make_batch(data, 4)
    with torch.no_grad():
        logits, states = model(batch.trials, batch.chosen, batch.participants, True)
    offered = torch.stack([trial["offered"] for trial in batch.trials])
    probabilities = torch.softmax(logits, -1)
    assert torch.all(probabilities[~offered] == 0)
    missed = ~batch.chosen.any(-1) & torch.as_tensor(data.mask.T)
    t, s = (int(i) for i in torch.nonzero(missed)[0])
    torch.testing.assert_close(states["x"][t, s], states["x"][t - 1, s])


def test_a_cue_seen_before_the_choice_predicts_the_first_choice_too(tmp_path):
    rows = ["session,cue_0,cue_1,choice,reward"]
    rng = np.random.default_rng(1)
    for session in range(6):
        for _ in range(20):
            cued = int(rng.integers(0, 2))
            choice = cued if rng.random() < 0.9 else 1 - cued
            rows.append(f"{session},{int(cued == 0)},{int(cued == 1)},{choice},1")
    path = tmp_path / "cued.csv"
    path.write_text("\n".join(rows) + "\n")
    cued = "model cued\nstate x = 0\ncontrol c_cue = data.cue before choice\n"
    metrics = api.evaluate(cued + "param w = 2.2\nlogits = w * c_cue + x\n", path)
    assert metrics["n_trials"] == 6 * 20  # the first choice of each session too
    assert metrics["nll_per_trial"] < 0.45  # the cue tells the choice 90 % of the time
    plain = api.evaluate("model plain\nstate x = 0\nlogits = x\n", path)
    assert plain["n_trials"] == 6 * 19


def test_the_choice_rule_cannot_read_an_outcome(tmp_path):
    text = "model m\nstate x = 0\ncontrol c = data.reward\nlogits = c * x\n"
    model = tmp_path / "m.spice"
    model.write_text(text)
    done = spicedsl("check", str(model))
    assert done.returncode == 1 and "only known after the choice" in done.stderr


def test_controls_are_expressions_of_data_columns(tmp_path):
    path = tmp_path / "gl.csv"
    path.write_text("session,choice,reward,gain,loss\na,0,0,3,-1\na,1,0,1,-2\na,0,0,2,0\n")
    text = """
model gains
state x = 0
control c_net = (data.gain + data.loss) / 10
module m updates x when chosen
    m = x + c_net
param beta = 2
logits = beta * x
"""
    data = api.read_data(path, load_ir(text))
    model = api.load_model(text)
    batch = make_batch(data, 2)
    with torch.no_grad():
        _, states = model(batch.trials, batch.chosen, batch.participants, True)
    # Trial 1: action 0 gains (3 - 1) / 10; trial 2: action 1 gains (1 - 2) / 10.
    np.testing.assert_allclose(states["x"][1, 0].numpy(), [0.2, -0.1], atol=1e-6)


def test_fit_rescales_rewards_in_the_fitted_model_and_it_means_the_same_on_any_file(
    pairs, tmp_path
):
    learnable = PAIRS_MODEL.replace("(data.reward + 10) / 20", "data.reward").replace(
        "param alpha in (0, 1) = 0.4", "param alpha in (0, 1)"
    )
    with pytest.warns(UserWarning, match=r"rewards range over \[-10, 10\]"):
        result = api.fit(learnable, pairs, progress=False, validation=0, **QUICK)
    assert "control c_reward = (data.reward + 10) / 20" in result.fitted_text
    again = api.evaluate(result.fitted_text, pairs)
    assert again["nll_per_trial"] == pytest.approx(
        result.metrics["equations"]["train"]["nll_per_trial"], abs=1e-9
    )
    kept = api.fit(learnable, pairs, progress=False, validation=0, rescale=False, **QUICK)
    assert "control c_reward = data.reward\n" in kept.fitted_text


def test_the_end_of_each_session_is_held_out_and_scored_as_evaluate_scores_it(pairs):
    holdout = Holdout(last=0.3)
    result = api.fit(PAIRS_MODEL.replace(" = 0.4", ""), pairs, progress=False, holdout=holdout)
    test = result.metrics["equations"]["test"]
    train = result.metrics["equations"]["train"]
    validation = result.metrics["equations"]["validation"]
    # 12 sessions of 60 trials: the last 18 of each are held out (some missed), and the
    # last fifth of the remaining 42 (8) validate.
    assert test["n_trials"] == 12 * 16
    assert validation["n_trials"] + train["n_trials"] + test["n_trials"] == 12 * (60 - 6) - 12
    scored = api.evaluate(result.fitted_text, pairs, scored=holdout)
    assert scored["nll_per_trial"] == pytest.approx(test["nll_per_trial"], abs=1e-9)
    assert scored["n_trials"] == test["n_trials"]


def test_held_out_sessions_by_a_label_and_a_label_that_selects_nothing(pairs):
    data = api.read_data(pairs, load_ir(PAIRS_MODEL))
    result = api.fit(
        PAIRS_MODEL.replace(" = 0.4", ""),
        data,
        progress=False,
        holdout=Holdout({"session": ("0", "5")}),
        **QUICK,
    )
    assert result.metrics["equations"]["test"]["n_trials"] == 2 * (60 - 6 - 1)
    with pytest.raises(UsageError, match="no session has session 99"):
        api.fit(PAIRS_MODEL, data, progress=False, holdout=Holdout({"session": ("99",)}))


def test_the_cli_scores_held_out_trials_and_says_what_it_skipped(pairs, tmp_path):
    model = tmp_path / "pairs.spice"
    model.write_text(PAIRS_MODEL)
    done = spicedsl("evaluate", str(model), str(pairs), "--holdout-last", "0.3", "--json")
    assert done.returncode == 0, done.stderr
    assert "72 missed trials (no choice)" in done.stderr
    metrics = json.loads(done.stdout)
    assert metrics["n_trials"] == 12 * 16 and 0 < metrics["trial_likelihood"] < 1
    nothing = spicedsl("evaluate", str(model), str(pairs), "--holdout", "session=x")
    assert nothing.returncode == 2 and "no session has session x" in nothing.stderr
    assert "Traceback" not in nothing.stderr
    wrong = spicedsl(
        "evaluate", str(model), str(pairs), "--per-action", "rewards=option_a,option_b"
    )
    assert wrong.returncode == 1 and "names 2 columns, but the data have 4 actions" in wrong.stderr
    refused = spicedsl("evaluate", str(model), str(pairs), "--missed", "error")
    assert refused.returncode == 1 and "choice is missing (a missed trial)" in refused.stderr


def test_a_discovery_model_on_offered_items_fits_from_its_own_sessions(pairs):
    text = (
        PAIRS_MODEL.replace("learn_chosen = x + alpha * (c_reward - x)", "learn(c_reward)")
        .replace("param alpha in (0, 1) = 0.4\n", "")
        .replace("param beta > 0 = 4", "param beta > 0")
    )
    result = api.fit(text, pairs, progress=False, **QUICK)
    assert "learn(" not in result.fitted_text
    assert result.metrics["equations"]["train"]["n_trials"] > 0
    again = api.evaluate(result.fitted_text, pairs)
    assert math.isfinite(again["nll_per_trial"])


def test_a_model_with_offered_items_cannot_be_simulated():
    with pytest.raises(SpiceError, match="cannot make data.option_a, data.option_b"):
        api.simulate(PAIRS_MODEL, 2, 10)


def test_a_per_action_constant_biases_every_choice_the_first_included(tmp_path):
    text = (
        "model side\nactions 2\nstate x = 0.5\ncontrol c_reward = data.reward\n"
        "module m updates x when chosen\n    m = x + 0.3 * (c_reward - x)\n"
        "param bias = 0.5\nlogits = 3 * x + bias * [-1, 1]\n"
    )
    data, _ = api.simulate(ROOT / "examples" / "q_learning.spice", 4, 10, seed=2)
    net = api.load_model(text)
    batch = make_batch(data, 2)
    with torch.no_grad():
        first = torch.softmax(net(batch.trials, batch.chosen, batch.participants)[0], -1)
    # logits (-0.5, 0.5) on top of equal values: P(action 1) = sigmoid(1)
    torch.testing.assert_close(first[:, 1], torch.full((4,), 1 / (1 + math.exp(-1))))
    assert api.evaluate(text, data)["n_trials"] == 40  # first choices are predicted too


@pytest.mark.parametrize(
    "expression, message",
    [
        ("x + [1, 2, 3]", "has 3 values, but the model has 2 actions"),
        ("x + [a, 1]", "unexpected 'a'"),
    ],
)
def test_per_action_constants_are_checked(tmp_path, expression, message):
    model = tmp_path / "m.spice"
    model.write_text(f"model m\nactions 2\nstate x = 0\nlogits = {expression}\n")
    done = spicedsl("check", str(model))
    assert done.returncode == 1 and message in done.stderr
