"""The GRU baseline: it trains, sees only what its model sees, and is scored as a fit."""

from __future__ import annotations

import json
import math
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from spicedsl import api
from spicedsl.baseline import BaselineInputs, GRUBaseline, baseline
from spicedsl.errors import FitError
from spicedsl.frontend import load_ir
from spicedsl.runtime.batch import make_batch
from spicedsl.runtime.data import Dataset
from spicedsl.runtime.train import train_network
from spicedsl.settings import FitSettings
from spicedsl.splits import Holdout
from tests.test_cli import assert_no_traceback, spicedsl

ROOT = Path(__file__).resolve().parent.parent
TRUTH = ROOT / "examples" / "q_learning.spice"
RW = ROOT / "examples" / "rescorla_wagner.spice"

# A model that reads every action's reward and a column after the choice, and a cue
# before it.
CUED = """
model cued
state x = 0.5
control c_reward = data.reward
control c_every = data.rewards
control c_extra = data.extra
control c_cue = data.cue before choice
module x_chosen updates x when chosen
    learn(c_reward, c_every, c_extra)
param beta > 0
logits = beta * x + c_cue
"""

PAIRS = """
model pairs
actions 4
offered data.option_a, data.option_b
state x = 0.5
control c_reward = data.reward
module x_chosen updates x when chosen
    x_chosen = x + alpha * (c_reward - x)
param alpha in (0, 1)
param beta > 0
logits = beta * x
"""


@pytest.fixture(scope="module")
def simulated() -> Dataset:
    data, _ = api.simulate(TRUTH, 100, 50, seed=3)
    return data


def with_columns(data: Dataset, seed: int = 0) -> Dataset:
    """``data`` with random ``extra`` and ``cue`` columns and every action's reward."""
    rng = np.random.default_rng(seed)
    shape = data.choices.shape
    columns = {name: rng.random(shape).astype(np.float32) for name in ("extra", "cue")}
    rewards = rng.random((*shape, data.n_actions)).astype(np.float32)
    return replace(data, inputs=columns, rewards=rewards)


def gru_logits(model: str, data: Dataset, seed: int = 0) -> torch.Tensor:
    """The logits of an untrained GRU that reads what ``model`` reads, (trials, sessions,
    actions)."""
    model_ir = load_ir(model)
    torch.manual_seed(seed)
    inputs = BaselineInputs.of(model_ir, data, data.n_actions)
    net = GRUBaseline(inputs, len(data.participant_ids), embedding_size=3)
    batch = make_batch(data, data.n_actions, model_ir.predicts_first_choice)
    with torch.no_grad():
        return net(batch.trials, batch.chosen, batch.participants)


def test_the_gru_trains_close_to_the_truth_and_is_scored_on_every_split(simulated):
    held_out = Holdout(last=0.3)
    result = baseline(RW, simulated, hidden=8, holdout=held_out, epochs=60, progress=False)
    assert result.log.train_loss[-1] < result.log.train_loss[0] - 0.03
    assert set(result.metrics) == {"train", "validation", "test"}
    test = result.metrics["test"]
    truth = api.evaluate(TRUTH, simulated, scored=held_out)
    assert test["n_trials"] == truth["n_trials"]
    assert test["nll_per_trial"] < min(math.log(2) - 0.04, truth["nll_per_trial"] + 0.03)
    assert test["trial_likelihood"] == pytest.approx(math.exp(-test["nll_per_trial"]))
    n_weights = sum(p.numel() for p in result.network.parameters())
    assert test["n_params"] == n_weights == 3 * (8 * 3 + 8 * 8 + 2 * 8) + 8 * 2 + 2
    predicted = sum(result.metrics[split]["n_trials"] for split in result.metrics)
    assert predicted == 100 * 49  # every choice but each session's first
    assert result.inputs == [
        "previous choice (2 actions)",
        "previous reward, rescaled from [0, 1] to [0, 1]",
    ]


def on_trial(values: np.ndarray, t: int, new: np.ndarray) -> np.ndarray:
    """``values`` (sessions, trials, ...) with trial ``t`` taken from ``new``."""
    at_t = (np.arange(values.shape[1]) == t).reshape(1, -1, *[1] * (values.ndim - 2))
    return np.where(at_t, new, values).astype(values.dtype)


def test_the_gru_never_sees_a_trials_own_choice_or_outcome(simulated):
    data = with_columns(simulated.subset(range(4)))
    before = gru_logits(CUED, data)
    t = 20
    extra = data.inputs["extra"]
    changes = {
        "choices": on_trial(data.choices, t, 1 - data.choices),
        "reward": on_trial(data.reward, t, 1 - data.reward),
        "rewards": on_trial(data.rewards, t, 1 - data.rewards),
        "inputs": {**data.inputs, "extra": on_trial(extra, t, extra + 5)},
    }
    for field, changed in changes.items():
        after = gru_logits(CUED, replace(data, **{field: changed}))
        assert torch.equal(after[: t + 1], before[: t + 1]), field
        assert not torch.allclose(after[t + 1], before[t + 1]), field


def test_the_gru_sees_a_cue_before_the_choice_of_its_own_trial(simulated):
    data = with_columns(simulated.subset(range(4)))
    before = gru_logits(CUED, data)
    cue = on_trial(data.inputs["cue"], 20, data.inputs["cue"] + 5)
    after = gru_logits(CUED, replace(data, inputs={**data.inputs, "cue": cue}))
    assert torch.equal(after[:20], before[:20])
    assert not torch.allclose(after[20], before[20])


def test_the_gru_reads_nothing_its_model_does_not(simulated):
    data = with_columns(simulated.subset(range(4)))
    before = gru_logits(str(RW), data)
    rng = np.random.default_rng(1)
    other = replace(
        data,
        rewards=rng.random(data.rewards.shape).astype(np.float32),
        inputs={name: rng.random(v.shape).astype(np.float32) for name, v in data.inputs.items()},
    )
    assert torch.equal(gru_logits(str(RW), other), before)


def test_a_missed_trial_changes_nothing(simulated):
    """A session with a missed trial gives the logits of the same session without it."""
    one = simulated.subset([0])
    missed = 10
    choices = one.choices.copy()
    choices[0, missed] = -1
    without = np.full_like(choices, -1)
    without[0, :-1] = np.delete(one.choices[0], missed)
    reward = np.zeros_like(one.reward)
    reward[0, :-1] = np.delete(one.reward[0], missed)
    data = replace(
        one.subset([0, 0]),
        choices=np.concatenate([choices, without]),
        reward=np.concatenate([one.reward, reward]),
        lengths=np.array([one.lengths[0], one.lengths[0] - 1]),
        participant_index=np.array([0, 0]),
    )
    logits = gru_logits(str(RW), data)
    assert torch.allclose(logits[:missed, 0], logits[:missed, 1])
    assert torch.allclose(logits[missed + 1 :, 0], logits[missed:-1, 1], atol=1e-6)


def pairs_dataset(n_sessions: int = 6, n_trials: int = 40, seed: int = 0) -> Dataset:
    """Random choices among pairs of 4 items: (1, 2) or (3, 4) on each trial."""
    rng = np.random.default_rng(seed)
    first = rng.integers(0, 2, (n_sessions, n_trials)) * 2
    offered = np.zeros((n_sessions, n_trials, 4), dtype=bool)
    np.put_along_axis(offered, first[..., None], True, axis=-1)
    np.put_along_axis(offered, first[..., None] + 1, True, axis=-1)
    choices = first + rng.integers(0, 2, first.shape)
    return Dataset(
        choices,
        rng.choice([-10.0, 10.0], choices.shape).astype(np.float32),
        None,
        {},
        np.full(n_sessions, n_trials),
        tuple(str(s) for s in range(n_sessions)),
        np.arange(n_sessions),
        tuple(str(s) for s in range(n_sessions)),
        4,
        1,
        (-10.0, 10.0),
        offered=offered,
    )


def test_items_not_offered_get_no_probability():
    data = pairs_dataset()
    result = baseline(PAIRS, data, validation=0, epochs=5, progress=False)
    batch = make_batch(data, 4)
    with torch.no_grad():
        probabilities = torch.softmax(
            result.network(batch.trials, batch.chosen, batch.participants), -1
        )
    offered = torch.as_tensor(data.offered.transpose(1, 0, 2))
    assert torch.all(probabilities[~offered] == 0)
    assert torch.all(probabilities[offered] > 0)
    assert "items offered" in result.inputs
    assert math.isfinite(result.metrics["train"]["nll_per_trial"])


def test_a_diverging_gru_is_named_by_its_weights_not_as_an_embedding(simulated):
    data = simulated.subset(range(4))
    model = load_ir(RW)
    net = GRUBaseline(BaselineInputs.of(model, data, 2), 1)
    with torch.no_grad():
        net.readout.bias[0] = math.nan
    batch = make_batch(data, 2)
    with pytest.raises(FitError, match="the gradient of the weights 'cell.weight_ih'"):
        train_network(net, batch, FitSettings(epochs=2), progress=False)


@pytest.fixture(scope="module")
def data_file(simulated, tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("baseline") / "data.csv"
    simulated.to_csv(path)
    return path


def test_the_cli_prints_the_metrics_and_writes_its_outputs(data_file, tmp_path):
    out = tmp_path / "gru"
    result = spicedsl(
        "baseline", str(RW), str(data_file), "-o", str(out), "--holdout-last", "0.3",
        "--epochs", "5", "--hidden", "4", "-q",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    rows = [line.split()[1:3] for line in result.stdout.splitlines()[2:]]
    assert rows == [["gru", "train"], ["gru", "validation"], ["gru", "test"]]
    report = json.loads((out / "report.json").read_text())
    assert set(report["metrics"]) == {"train", "validation", "test"}
    assert report["options"]["hidden"] == 4 and report["settings"]["epochs"] == 5
    assert report["versions"]["spicedsl"]
    with np.load(out / "network.npz", allow_pickle=False) as weights:
        assert weights["readout.weight"].shape == (2, 4)
    assert f"wrote {out}: report.json, network.npz" in result.stderr

    printed = spicedsl("baseline", str(RW), str(data_file), "--epochs", "5", "-q", "--json")
    assert printed.returncode == 0, printed.stderr
    assert set(json.loads(printed.stdout)) == {"train", "validation"}

    again = spicedsl("baseline", str(RW), str(data_file), "-o", str(out), "--epochs", "1", "-q")
    assert again.returncode == 1 and "--overwrite" in again.stderr
    assert_no_traceback(again)


@pytest.mark.parametrize(
    "args, code, message",
    [
        (("--hidden", "0"), 2, "hidden_size must be at least 1"),
        (("--embedding", "-1"), 2, "embedding size must be a whole number from 0 to 1024"),
        (("--holdout", "session=nope"), 2, "no session has session nope"),
        (("--validation", "1"), 2, "validation fraction must be in [0, 1)"),
        (("--degree", "2"), 2, "unrecognized arguments: --degree"),
    ],
)
def test_the_cli_refuses_bad_options(data_file, args, code, message):
    result = spicedsl("baseline", str(RW), str(data_file), "-q", *args)
    assert result.returncode == code
    assert message in result.stderr
    assert_no_traceback(result)


def test_the_cli_refuses_bad_files(data_file, tmp_path):
    missing = spicedsl("baseline", str(RW), str(tmp_path / "none.csv"), "-q")
    assert missing.returncode == 1 and "the data file does not exist" in missing.stderr
    broken = tmp_path / "broken.spice"
    broken.write_text("model broken\nstate x = 0.5\nlogits = beta * x\n")
    bad_model = spicedsl("baseline", str(broken), str(data_file), "-q")
    assert bad_model.returncode == 1 and "broken.spice:3:" in bad_model.stderr
    for result in (missing, bad_model):
        assert_no_traceback(result)
