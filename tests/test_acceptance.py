"""Real fits on the tutorials' workload: the discovered structure and its likelihood.

Slow (a few minutes): run with `make test-all`. The data of the seed and forgetting
models come from examples/q_learning.spice (alpha = 0.3, forgetting 0.2 toward 0.5,
beta = 3), 100 sessions x 100 trials to fit and 100 more held out, for each of five
seeds; those of individual differences from examples/individual_differences_truth.spice.
"""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import pytest

from spicedsl import api
from spicedsl.fitted import TABLE_FILE

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"
SEEDS = (1, 2, 3, 4, 5)

pytestmark = pytest.mark.slow


def workload(seed: int):
    train, _ = api.simulate(EXAMPLES / "q_learning.spice", 100, 100, seed=seed)
    held_out, _ = api.simulate(EXAMPLES / "q_learning.spice", 100, 100, seed=1000 + seed)
    return train, held_out


def terms(result, module: str) -> dict[tuple, float]:
    return {powers: c for c, powers in result.discovered[module].terms}


def heldout_gap(result, held_out) -> float:
    ours = api.evaluate(result.fitted_text, held_out)["nll_per_trial"]
    truth = api.evaluate(EXAMPLES / "q_learning.spice", held_out)["nll_per_trial"]
    return ours - truth


def seed_model_recovered(seed: int) -> tuple[bool, str]:
    train, held_out = workload(seed)
    result = api.fit(EXAMPLES / "learning_rate.spice", train, seed=seed, progress=False)
    rate = terms(result, "x_learning_rate_reward")
    forget = terms(result, "x_value_reward_not_chosen")
    value = (("x_value_reward", 1),)
    ok = (
        set(rate) == {()}
        and set(forget) == {(), value}
        and abs(forget[value] - 0.8) <= 0.05
        and heldout_gap(result, held_out) <= 0.003
    )
    return ok, result.fitted_text


def test_seed_model_finds_the_true_structure_in_four_of_five_seeds():
    outcomes = [seed_model_recovered(seed) for seed in SEEDS]
    found = sum(ok for ok, _ in outcomes)
    assert found >= 4, "\n\n".join(text for ok, text in outcomes if not ok)


def test_forgetting_model_finds_both_updates():
    found = 0
    for seed in SEEDS[:3]:
        train, held_out = workload(seed)
        result = api.fit(EXAMPLES / "forgetting.spice", train, seed=seed, progress=False)
        chosen = terms(result, "x_value_reward_chosen")
        forget = terms(result, "x_value_reward_not_chosen")
        value, reward = (("x_value_reward", 1),), (("c_reward", 1),)
        found += (
            set(chosen) - {()} == {value, reward}
            and abs(chosen[value] - 0.7) <= 0.05
            and set(forget) == {(), value}
            and abs(forget[value] - 0.8) <= 0.05
            and heldout_gap(result, held_out) <= 0.003
        )
    assert found >= 2


def test_individual_differences_recover_each_participants_mechanism(tmp_path):
    """SPICE tutorial 4 from the command line: participant 1 learns at 0.5 after either
    outcome, participant 2 at 0.8 after rewards and 0.2 after none; both forget at 0.2;
    50 sessions of 100 trials each to fit, as many held out."""
    truth = EXAMPLES / "individual_differences_truth.spice"

    def spicedsl(*args: str) -> str:
        done = subprocess.run(
            [sys.executable, "-m", "spicedsl.cli", *map(str, args)],
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=1800,
        )
        assert done.returncode == 0, done.stderr
        return done.stdout

    for name, seed in (("train.csv", 1), ("held_out.csv", 2)):
        spicedsl("simulate", truth, "--sessions", 100, "--trials", 100, "--seed", seed, "-o", name)
    printed = spicedsl(
        "fit", EXAMPLES / "individual_differences.spice", "train.csv", "-q", "-o", "out"
    )
    assert "# per participant (2)" in printed
    labels = json.loads((tmp_path / "out" / "report.json").read_text())["participants"]["columns"]
    with open(tmp_path / "out" / TABLE_FILE, newline="") as handle:
        table = {row.pop("participant"): row for row in csv.DictReader(handle)}
    column = {label: name for name, label in labels.items()}
    forgets = column["x_value_reward_not_chosen: x_value_reward"]
    interaction = column["x_value_reward_chosen: x_value_reward * c_reward"]
    for participant in ("1", "2"):
        assert abs(float(table[participant][forgets]) - 0.8) <= 0.05, table
    assert float(table["1"][interaction]) == 0 != float(table["2"][interaction]), table

    def heldout(model) -> dict:
        return json.loads(spicedsl("evaluate", model, "held_out.csv", "--json"))["participants"]

    ours, theirs = heldout(tmp_path / "out" / "fitted.spice"), heldout(truth)
    for participant in ("1", "2"):
        gap = ours[participant]["nll_per_trial"] - theirs[participant]["nll_per_trial"]
        assert gap <= 0.005, (participant, ours, theirs)
