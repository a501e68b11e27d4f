"""Partial pooling of per-participant values, the held-out choice of each participant's
terms, and the bound on the coefficient of a state's own term."""

from __future__ import annotations

import csv
import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from spicedsl import api
from spicedsl.discovery.equation import DiscoveredEquation
from spicedsl.discovery.refit import Refitter
from spicedsl.frontend import checked_program, read_source
from spicedsl.runtime.batch import make_batch
from spicedsl.semantics.lower import lower

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"

# Rescorla-Wagner learners whose learning rates a table gives.
TRUTH = """\
model rw_truth
state v = 0.5
control r = data.reward
module learn_v updates v when chosen
    learn_v = v + alpha * (r - v)
param alpha in (0, 1) per participant
param beta > 0 = 4
logits = beta * v
participants from "table.csv"
"""
INDIVIDUAL = """\
model rw_individual
state v = 0.5
control r = data.reward
module learn_v updates v when chosen
    learn_v = v + alpha * (r - v)
param alpha in (0, 1) per participant
param beta > 0 per participant
logits = beta * v
"""
ALPHAS = (0.3, 0.35, 0.25, 0.3, 0.4, 0.2, 0.85, 0.85)
FEW, MANY = 6, 7  # participants 7 and 8 (indices 6 and 7): 30 trials and 800


def uneven_data(folder: Path) -> Path:
    """Eight participants: participant 7 has one session of 30 trials, participant 8
    eight sessions of 100, the others four of 100. Participants 7 and 8 learn at 0.85,
    far from the others."""
    rows = "".join(f"{i + 1},{alpha}\n" for i, alpha in enumerate(ALPHAS))
    (folder / "table.csv").write_text("participant,alpha\n" + rows, encoding="utf-8")
    (folder / "truth.spice").write_text(TRUTH, encoding="utf-8")
    dataset, _ = api.simulate(folder / "truth.spice", 64, 100, seed=1)
    dataset.to_csv(folder / "all.csv")
    with open(folder / "all.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    sessions: dict[str, list[str]] = {}
    trials: dict[str, int] = {}
    kept = []
    for row in rows:
        own = sessions.setdefault(row["participant"], [])
        if row["session"] not in own:
            own.append(row["session"])
        trials[row["session"]] = trials.get(row["session"], 0) + 1
        order = own.index(row["session"])
        if row["participant"] == "7" and (order > 0 or trials[row["session"]] > 30):
            continue
        if row["participant"] not in ("7", "8") and order >= 4:
            continue
        kept.append(row)
    path = folder / "data.csv"
    with open(path, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(kept)
    return path


@pytest.fixture(scope="module")
def uneven(tmp_path_factory):
    folder = tmp_path_factory.mktemp("uneven")
    path = uneven_data(folder)
    return folder, path, api.read_data(path, api.load_ir(INDIVIDUAL))


def logit(p):
    return np.log(np.asarray(p) / (1 - np.asarray(p)))


def test_pooling_shrinks_a_participant_with_few_trials_toward_the_group_more(uneven):
    _, _, data = uneven
    model = INDIVIDUAL.replace("param beta > 0 per participant", "param beta > 0")
    fits = {
        pooling: api.fit(
            model, data, progress=False, epochs=5, validation=0.0, digits=8, pooling=pooling
        )  # fmt: skip
        for pooling in (0, 1)
    }
    own = logit(fits[0].participant_table["alpha"])
    pooled = logit(fits[1].participant_table["alpha"])
    group = fits[1].participant_groups["alpha"]
    assert group.scale == "logit" and group.spread > 0
    assert 0.25 < group.value < 0.5  # most participants learn at 0.2 to 0.4
    # Both move toward the group's mean; the one with 30 trials much further, for the
    # share of the way from their own value to the group's mean.
    moved = (own - pooled) / (own - group.mean)
    assert 0 < moved[MANY] < 0.1 < 0.3 < moved[FEW] < 1
    # The others, with 400 trials each, hardly move.
    others = [p for p in range(8) if p not in (FEW, MANY)]
    assert np.abs(pooled[others] - own[others]).max() < 0.15


# The values the fit gave before pooling existed (epochs 5, validation 0, digits 8). The
# refits that choose among structures now stop earlier, and the model kept is refit from
# where they stop: its values agree to 0.5 % (a participant with 30 choices leaves the
# likelihood flat along alpha and beta).
UNPOOLED = {
    "alpha": [0.34582618, 0.40176842, 0.30411358, 0.31211965, 0.36816454, 0.21481895,
              0.91079914, 0.86184207],
    "beta": [3.6616954, 3.245982, 3.9030342, 4.0554696, 3.7609717, 4.1337123, 3.2777766,
             3.376012],
}  # fmt: skip


def test_pooling_off_gives_each_participant_the_values_their_own_choices_give(uneven):
    _, _, data = uneven
    result = api.fit(
        INDIVIDUAL, data, progress=False, epochs=5, validation=0.0, digits=8, pooling=0
    )
    assert result.participant_table == {k: pytest.approx(v, rel=5e-3) for k, v in UNPOOLED.items()}
    assert result.participant_groups == {}
    pooled = api.fit(INDIVIDUAL, data, progress=False, epochs=5, validation=0.0, digits=8)
    assert pooled.participant_table != {k: pytest.approx(v, rel=1e-2) for k, v in UNPOOLED.items()}
    assert set(pooled.participant_groups) == {"alpha", "beta"}


def test_fit_reports_each_pooled_columns_group(uneven):
    folder, path, _ = uneven
    (folder / "model.spice").write_text(INDIVIDUAL + "fit epochs 5\n", encoding="utf-8")

    def fit(*extra: str) -> tuple[str, dict]:
        out = folder / f"out{len(extra)}"
        done = subprocess.run(
            [sys.executable, "-m", "spicedsl.cli", "fit", "model.spice", str(path), "-q",
             "--validation", "0", "-o", str(out), *extra],
            cwd=folder, capture_output=True, text=True, timeout=300,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr
        return done.stdout, json.loads((out / "report.json").read_text())

    printed, report = fit()
    groups = report["participants"]["groups"]
    assert set(groups) == {"alpha", "beta"}
    assert groups["alpha"]["scale"] == "logit" and groups["beta"]["scale"] == "inverse softplus"
    assert groups["alpha"]["value"] == pytest.approx(1 / (1 + math.exp(-groups["alpha"]["mean"])))
    line = next(line for line in printed.splitlines() if line.startswith("#   alpha"))
    assert f"{groups['alpha']['value']:.4g}" in line and "logit" in line
    printed, report = fit("--pooling", "0")
    assert report["participants"]["groups"] == {} and report["settings"]["pooling"] == 0
    line = next(line for line in printed.splitlines() if line.startswith("#   alpha"))
    assert "logit" not in line and " - " in line


def equation(module: str, target: str, terms: dict, n_participants: int | None = None):
    rows = None
    if n_participants:
        rows = (tuple(terms.values()),) * n_participants
    return DiscoveredEquation(module, target, tuple((c, p) for p, c in terms.items()), 0, rows)


X, R, ONE = (("x_value_reward", 1),), (("c_reward", 1),), ()


def refitter(model_path: Path, dataset, starts: dict, **switches) -> Refitter:
    source = read_source(model_path)
    program = checked_program(source)
    model = lower(program, source)
    n = len(dataset.participant_ids)
    sessions = [np.arange(len(dataset.session_ids))]
    train = make_batch(dataset)
    return Refitter(program, source, model, train, {}, n, starts, sessions, **switches)


@pytest.fixture(scope="module")
def six_learners(tmp_path_factory):
    """Six participants learn at different rates (symmetrically) and forget alike."""
    folder = tmp_path_factory.mktemp("six")
    alphas = (0.15, 0.8, 0.15, 0.8, 0.45, 0.45)
    rows = "".join(f"{i + 1},{a},{a}\n" for i, a in enumerate(alphas))
    (folder / "table.csv").write_text("participant,alpha_reward,alpha_no_reward\n" + rows)
    dataset, _ = api.simulate(
        EXAMPLES / "individual_differences_truth.spice", 24, 100, seed=5,
        param_table=folder / "table.csv",
    )  # fmt: skip
    return dataset


@pytest.mark.parametrize("pooling", [True, False])
def test_a_term_is_each_participants_own_only_where_that_predicts_held_out_choices(
    six_learners, pooling
):
    starts = {"beta_reward": np.full((1, 6), 3.0)}
    model = EXAMPLES / "individual_differences.spice"
    refit = refitter(model, six_learners, starts, pooling=pooling)
    equations = {
        "x_value_reward_chosen": equation(
            "x_value_reward_chosen", "x_value_reward", {X: 0.5, R: 0.5}, 6
        ),
        "x_value_reward_not_chosen": equation(
            "x_value_reward_not_chosen", "x_value_reward", {ONE: 0.1, X: 0.8}, 6
        ),
    }
    final = refit.refit(equations, precise=True)
    assert final.shared == frozenset()
    chosen = refit.choose_participant_terms(final, np.random.default_rng(0))
    # Forgetting is the same for everyone: one shared value, near the truth's.
    forgets = np.array(chosen.equations["x_value_reward_not_chosen"].per_participant)
    assert {("x_value_reward_not_chosen", ONE), ("x_value_reward_not_chosen", X)} <= chosen.shared
    assert (forgets == forgets[0]).all()
    assert forgets[0] == pytest.approx([0.1, 0.8], abs=0.07)
    # The weight on the old value differs: each participant's own, the fast learners'
    # below the slow ones'. (Without pooling, the weight on the reward is shared:
    # each participant's inverse temperature makes up for the scale of their values.)
    assert ("x_value_reward_chosen", X) not in chosen.shared
    keeps = np.array(chosen.equations["x_value_reward_chosen"].per_participant)[:, 0]
    assert keeps[[1, 3]].max() < keeps[[0, 2]].min() - 0.1


def test_a_participant_lacks_a_term_their_own_choices_do_not_pay_for(tmp_path):
    # Participants 1-3 learn at 0.5 from either outcome (no value x reward term);
    # participants 4-6 at 0.8 after a reward and 0.2 after none (value x reward -0.6).
    rows = "".join(f"{i},{0.5 if i <= 3 else 0.8},{0.5 if i <= 3 else 0.2}\n" for i in range(1, 7))
    (tmp_path / "table.csv").write_text("participant,alpha_reward,alpha_no_reward\n" + rows)
    dataset, _ = api.simulate(
        EXAMPLES / "individual_differences_truth.spice", 60, 100, seed=7,
        param_table=tmp_path / "table.csv",
    )  # fmt: skip
    starts = {"beta_reward": np.full((1, 6), 3.0)}
    refit = refitter(EXAMPLES / "individual_differences.spice", dataset, starts)
    equations = {
        "x_value_reward_chosen": equation(
            "x_value_reward_chosen", "x_value_reward", {X: 0.6, R: 0.4, X + R: -0.3}, 6
        ),
        "x_value_reward_not_chosen": equation(
            "x_value_reward_not_chosen", "x_value_reward", {ONE: 0.1, X: 0.8}, 6
        ),
    }
    final = refit.refit(equations, precise=True)
    chosen = refit.choose_participant_terms(final, np.random.default_rng(0))
    learning = chosen.equations["x_value_reward_chosen"]
    interaction = np.array(learning.per_participant)[:, [p for _, p in learning.terms].index(X + R)]
    assert (interaction[:3] == 0).all() and (interaction[3:] < -0.3).all(), interaction


DRIFT = """\
model drift
state x_value_reward = 0.5
control c_reward = data.reward
module x_value_reward_chosen updates x_value_reward when chosen
    x_value_reward_chosen = x_value_reward + 0.5 * (c_reward - x_value_reward)
module x_value_reward_not_chosen updates x_value_reward when not chosen
    x_value_reward_not_chosen = clip(1.15 * x_value_reward, -10, 10)
param beta_reward > 0 = 3
logits = beta_reward * x_value_reward
"""


@pytest.mark.parametrize("bound", [True, False])
def test_the_coefficient_of_a_states_own_term_stays_within_one_unless_unbounded(bound):
    dataset, _ = api.simulate(DRIFT, 40, 100, seed=3)
    refit = refitter(
        EXAMPLES / "forgetting.spice", dataset, {"beta_reward": np.array([[3.0]])},
        self_bound=bound,
    )  # fmt: skip
    equations = {
        "x_value_reward_chosen": equation(
            "x_value_reward_chosen", "x_value_reward", {X: 0.5, R: 0.5}
        ),
        "x_value_reward_not_chosen": equation(
            "x_value_reward_not_chosen", "x_value_reward", {X: 1.1}
        ),
    }
    fitted = refit.refit(equations, precise=True)
    ((coefficient, _),) = fitted.equations["x_value_reward_not_chosen"].terms
    if bound:
        assert coefficient == 1.0
        # The other self-coefficient, inside the bound, is free.
        assert fitted.equations["x_value_reward_chosen"].terms[0][0] == pytest.approx(0.5, abs=0.1)
    else:
        assert coefficient > 1.05


def test_a_structure_is_scored_by_its_better_bic_with_own_or_shared_values(tmp_path):
    def learners(alphas: list[float], sessions: int, trials: int, seed: int):
        (tmp_path / "table.csv").write_text(
            "participant,alpha_reward,alpha_no_reward\n"
            + "".join(f"{i + 1},{a},{a}\n" for i, a in enumerate(alphas))
        )
        truth = EXAMPLES / "individual_differences_truth.spice"
        table = tmp_path / "table.csv"
        return api.simulate(truth, sessions, trials, seed=seed, param_table=table)[0]

    def both(dataset, n: int):
        equations = {
            "x_value_reward_chosen": equation(
                "x_value_reward_chosen", "x_value_reward", {X: 0.5, R: 0.5}, n
            ),
            "x_value_reward_not_chosen": equation(
                "x_value_reward_not_chosen", "x_value_reward", {ONE: 0.1, X: 0.8}, n
            ),
        }
        model = EXAMPLES / "individual_differences.spice"
        refit = refitter(model, dataset, {"beta_reward": np.full((1, n), 3.0)})
        [(own, shared)] = refit.refit_both([(0, equations, None)])
        assert own.shared == frozenset() and len(shared.shared) == 4
        return own, shared

    # Learning rates of 0.1 and 0.9, 2,000 choices each: own values pay.
    own, shared = both(learners([0.1, 0.9], 40, 100, seed=1), 2)
    assert own.bic < shared.bic
    # Twenty participants alike, 60 choices each: a value per participant costs more
    # than it gains. Shared, every participant has the same coefficients.
    own, shared = both(learners([0.5] * 20, 20, 60, seed=2), 20)
    assert shared.bic < own.bic
    rows = np.array(shared.equations["x_value_reward_chosen"].per_participant)
    assert (rows == rows[0]).all()
