"""Simulation: round trips through CSV, agreement with an independent numpy agent."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from reference_agents import QLearning

from spicedsl import api
from spicedsl.errors import SpiceError
from spicedsl.runtime.data import load_dataset

ROOT = Path(__file__).resolve().parent.parent
Q_LEARNING = ROOT / "examples" / "q_learning.spice"


def test_simulated_csv_loads_back_unchanged(tmp_path):
    dataset, _ = api.simulate(Q_LEARNING, 20, 30, seed=3)
    path = tmp_path / "sim.csv"
    dataset.to_csv(path)
    loaded = load_dataset(path)
    np.testing.assert_array_equal(loaded.choices, dataset.choices)
    np.testing.assert_array_equal(loaded.reward, dataset.reward)
    np.testing.assert_array_equal(loaded.lengths, dataset.lengths)
    assert loaded.session_ids == dataset.session_ids


def test_same_seed_same_data_other_seed_other_data():
    first, _ = api.simulate(Q_LEARNING, 10, 50, seed=5)
    again, _ = api.simulate(Q_LEARNING, 10, 50, seed=5)
    other, _ = api.simulate(Q_LEARNING, 10, 50, seed=6)
    np.testing.assert_array_equal(first.choices, again.choices)
    assert not np.array_equal(first.choices, other.choices)


@pytest.mark.parametrize("n_actions", [2, 4])
def test_choice_probabilities_match_numpy_agent(n_actions):
    dataset, latents = api.simulate(Q_LEARNING, 50, 60, n_actions=n_actions, seed=1)
    reference = QLearning().next_choice_probabilities(
        dataset.choices, dataset.reward.astype(np.float64), n_actions
    )
    # latents[t] is the probability of choice t; reference[t] that of choice t + 1.
    np.testing.assert_allclose(latents["probabilities"][:, 1:], reference[:, :-1], atol=1e-6)
    np.testing.assert_allclose(latents["probabilities"][:, 0], 1 / n_actions)


def _stay_rates(choices: np.ndarray, rewards: np.ndarray) -> np.ndarray:
    """How often the previous choice is repeated after a reward of 0 and of 1."""
    stay = choices[:, 1:] == choices[:, :-1]
    previous = rewards[:, :-1]
    return np.array([stay[previous == r].mean() for r in (0.0, 1.0)])


def test_choice_statistics_match_numpy_agent_within_sampling_error():
    n_sessions, n_trials = 2000, 20
    dataset, _ = api.simulate(Q_LEARNING, n_sessions, n_trials, seed=11)
    ours = _stay_rates(dataset.choices, dataset.reward)

    agent, rng = QLearning(), np.random.default_rng(12)
    drift = rng.normal(0, 0.2, (n_sessions, n_trials, 2))
    reward_probability = np.clip(rng.random((n_sessions, 1, 2)) + np.cumsum(drift, 1), 0, 1)
    values = np.full((n_sessions, 2), 0.5)
    choices = np.zeros((n_sessions, n_trials), dtype=int)
    rewards = np.zeros((n_sessions, n_trials))
    for t in range(n_trials):
        choices[:, t] = rng.random(n_sessions) > agent.probabilities(values)[:, 0]
        p = reward_probability[np.arange(n_sessions), t, choices[:, t]]
        rewards[:, t] = rng.random(n_sessions) < p
        values = agent.update(values, choices[:, t], rewards[:, t])
    theirs = _stay_rates(choices, rewards)

    # Win-stay and lose-stay depend on alpha, forgetting and beta; a wrong mechanism
    # moves them by far more than the 4-sigma sampling band used here.
    n = n_sessions * (n_trials - 1) / 2
    assert np.all(np.abs(ours - theirs) < 4 * np.sqrt(2 * 0.25 / n))
    assert ours[1] - ours[0] > 0.1


def test_model_with_learnable_modules_is_refused():
    with pytest.raises(SpiceError, match="not fully specified"):
        api.simulate(ROOT / "examples" / "learning_rate.spice", 2, 5)


def test_cli_simulate_writes_data_and_latents(tmp_path):
    data, latents = tmp_path / "d.csv", tmp_path / "l.csv"
    command = [sys.executable, "-m", "spicedsl.cli", "simulate", str(Q_LEARNING)]
    options = ["--sessions", "3", "--trials", "4", "-o", str(data), "--latents", str(latents)]
    done = subprocess.run(command + options, capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
    assert done.stdout == ""
    assert data.read_text().splitlines()[0] == "session,participant,choice,reward"
    assert len(data.read_text().splitlines()) == 1 + 3 * 4
    header = latents.read_text().splitlines()[0]
    assert header == "session,trial,p_0,p_1,x_value_reward_0,x_value_reward_1"


def test_bundled_demo_data_is_what_simulate_makes(tmp_path):
    dataset, _ = api.simulate(Q_LEARNING, 100, 100, seed=1)
    dataset.to_csv(tmp_path / "again.csv")
    bundled = ROOT / "examples" / "data" / "q_learning.csv"
    assert (tmp_path / "again.csv").read_bytes() == bundled.read_bytes()


def test_cli_simulate_into_a_missing_folder_is_a_clear_error(tmp_path):
    target = tmp_path / "no" / "such" / "data.csv"
    command = [sys.executable, "-m", "spicedsl.cli", "simulate", str(Q_LEARNING), "-o", str(target)]
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    assert done.returncode == 1
    assert "does not exist" in done.stderr and "Traceback" not in done.stderr
    assert not target.parent.exists()


def test_cli_simulate_deals_sessions_to_participants(tmp_path):
    target = tmp_path / "d.csv"
    command = [sys.executable, "-m", "spicedsl.cli", "simulate", str(Q_LEARNING), "-o", str(target)]
    options = ["--sessions", "5", "--trials", "2", "--participants", "2"]
    done = subprocess.run(command + options, capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
    loaded = load_dataset(target)
    assert loaded.participant_ids == ("1", "2")
    assert loaded.participant_index.tolist() == [0, 1, 0, 1, 0]


def test_cli_reads_an_hbayesdm_file_through_flags_alone(tmp_path):
    rows = ["subjID\tchoice\toutcome"]
    rows += [f"{s}\t{1 + (t % 2)}\t{1 if t % 3 else -1}" for s in (101, 102) for t in range(6)]
    data = tmp_path / "gng.txt"
    data.write_text("\n".join(rows) + "\n")
    command = [sys.executable, "-m", "spicedsl.cli", "evaluate", str(Q_LEARNING), str(data)]
    flags = ["--session-column", "subjID", "--reward-column", "outcome", "--json"]
    done = subprocess.run(command + flags, capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["n_trials"] == 2 * 5


COUNTERFACTUAL = """model counterfactual
state v = 0.5
control c_rewards = data.rewards
module learn_all updates v when all
    learn_all = v + 0.3 * (c_rewards - v)
param beta = 3
logits = beta * v
"""


def test_a_model_reading_every_reward_simulates_and_reads_them_back(tmp_path):
    dataset, _ = api.simulate(COUNTERFACTUAL, 4, 6, seed=2)
    path = tmp_path / "cf.csv"
    dataset.to_csv(path)
    assert path.read_text().splitlines()[0] == "session,participant,choice,reward,reward_0,reward_1"
    assert api.evaluate(COUNTERFACTUAL, path)["n_trials"] == 4 * 5


def test_a_model_reading_every_reward_needs_those_columns(tmp_path):
    factual, _ = api.simulate(Q_LEARNING, 2, 3, seed=2)
    path = tmp_path / "factual.csv"
    factual.to_csv(path)
    with pytest.raises(SpiceError, match="reads data.rewards but the file has no columns"):
        api.evaluate(COUNTERFACTUAL, path)
    path.write_text("session,choice,reward,reward_0,reward_1\n1,0,1,1,NA\n1,1,0,1,0\n")
    with pytest.raises(SpiceError, match="no reward for action 1 on its trial 1"):
        api.evaluate(COUNTERFACTUAL, path)


def test_simulate_refuses_a_model_reading_a_column_it_cannot_make():
    model = COUNTERFACTUAL.replace("data.rewards", "data.cue")
    with pytest.raises(SpiceError, match="cannot make data.cue"):
        api.simulate(model, 2, 3)


TRUTH_4 = ROOT / "examples" / "individual_differences_truth.spice"
TABLE_4 = ROOT / "examples" / "data" / "individual_differences_params.csv"


def test_per_participant_params_come_from_a_table():
    dataset, latents = api.simulate(TRUTH_4, 6, 40, seed=3, param_table=TABLE_4)
    assert dataset.participant_ids == ("1", "2")
    first = dataset.participant_index == 0
    reference = QLearning(alpha=0.5).next_choice_probabilities(
        dataset.choices[first], dataset.reward[first].astype(np.float64), 2
    )
    np.testing.assert_allclose(latents["probabilities"][first][:, 1:], reference[:, :-1], atol=1e-6)
    # Participant 2 learns more from rewards than from their absence: not alpha = 0.5.
    second = QLearning(alpha=0.5).next_choice_probabilities(
        dataset.choices[~first], dataset.reward[~first].astype(np.float64), 2
    )
    assert np.abs(latents["probabilities"][~first][:, 1:] - second[:, :-1]).max() > 0.05


@pytest.mark.parametrize(
    ("table", "message"),
    [
        ("participant,alpha_reward,alpha_no_reward\n1,0.5,x\n", ":2: column 'alpha_no_reward'"),
        ("participant,alpha_reward,alpha_no_reward\n1,0.5,1.5\n", "outside the bounds"),
        ("participant,alpha_reward,alpha_no_reward\n1,0.5,0.5\n1,0.2,0.2\n", ":3: .*twice"),
        ("participant,forget\n1,0.3\n", "not a per-participant param without a value"),
        ("alpha_reward,alpha_no_reward\n0.5,0.5\n", "needs a 'participant' column"),
        ("participant,alpha_reward\n1,0.5\n", "alpha_no_reward needs a value"),
    ],
)
def test_bad_param_tables_are_named_with_their_row(tmp_path, table, message):
    path = tmp_path / "params.csv"
    path.write_text(table)
    with pytest.raises(SpiceError, match=message):
        api.simulate(TRUTH_4, 2, 3, param_table=path)


ASYMMETRIC = ROOT / "examples" / "asymmetric_learning.spice"


def test_asymmetric_learning_rates_simulate_and_evaluate(tmp_path):
    dataset, latents = api.simulate(ASYMMETRIC, 40, 50, seed=2)
    before = np.concatenate([np.full((40, 1, 2), 0.5), latents["x_value_reward"][:, :-1]], axis=1)
    chosen = np.eye(2, dtype=bool)[dataset.choices]
    reward = np.broadcast_to(dataset.reward[..., None], before.shape)
    rate = np.where(reward > 0.5, 0.6, 0.1)
    expected = np.where(chosen, before + rate * (reward - before), before)
    np.testing.assert_allclose(latents["x_value_reward"], expected, atol=1e-6)

    data = tmp_path / "data.csv"
    dataset.to_csv(data)
    symmetric = tmp_path / "symmetric.spice"
    symmetric.write_text(
        ASYMMETRIC.read_text().replace("alpha_gain in (0, 1) = 0.6", "alpha_gain in (0, 1) = 0.1")
    )
    nll = {}
    for model in (ASYMMETRIC, symmetric):
        command = [sys.executable, "-m", "spicedsl.cli", "evaluate", str(model), str(data)]
        done = subprocess.run([*command, "--json"], capture_output=True, text=True, check=False)
        assert done.returncode == 0, done.stderr
        nll[model] = json.loads(done.stdout)["nll_per_trial"]
    assert nll[ASYMMETRIC] < nll[symmetric]
