"""Ensembles: members trained side by side in one batched network, their equations
refit side by side, and stability selection over the terms they select."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from spicedsl import api
from spicedsl.codegen.instantiate import network_class
from spicedsl.discovery.candidates import record_modules
from spicedsl.discovery.equation import DiscoveredEquation
from spicedsl.discovery.refit import Refit, Refitter, Request
from spicedsl.discovery.stability import complementary_halves, consensus, stability_selection
from spicedsl.fitting import _voters
from spicedsl.frontend import checked_program, load_ir, read_source
from spicedsl.runtime.batch import IGNORE, make_batch, member_batches, member_subset
from spicedsl.runtime.train import TrainingLog, _members_done, train_network
from spicedsl.semantics.lower import lower
from spicedsl.settings import FitSettings
from tests.test_cli import assert_no_traceback, spicedsl

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"
QUICK = ["--epochs", "15", "--sindy-sessions", "2", "--sindy-trials", "100", "-q"]


@pytest.fixture(autouse=True)
def one_thread():
    """One torch thread, as ``fit`` uses: tiny operations on several threads of a busy
    machine wait for each other."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def small_data():
    dataset, _ = api.simulate(EXAMPLES / "q_learning.spice", 30, 40, seed=4)
    return dataset


def test_a_single_network_keeps_the_layout_of_its_weights():
    single = api.load_model(EXAMPLES / "learning_rate.spice").state_dict()
    ensemble = api.load_model(EXAMPLES / "learning_rate.spice", members=4).state_dict()
    assert tuple(single["nets.x_learning_rate_reward.weight"].shape) == (3, 8)
    assert tuple(single["raw_params.beta_value"].shape) == (1,)
    assert tuple(ensemble["nets.x_learning_rate_reward.weight"].shape) == (4, 3, 8)
    assert tuple(ensemble["raw_params.beta_value"].shape) == (4, 1)


def test_each_member_predicts_what_it_would_alone():
    torch.manual_seed(0)
    model = EXAMPLES / "individual_differences.spice"
    ensemble = api.load_model(model, n_participants=2, members=3).eval()
    dataset, _ = api.simulate(
        EXAMPLES / "individual_differences_truth.spice", 6, 20, seed=1, n_participants=2
    )
    batch = make_batch(dataset)
    sessions = [np.arange(6), np.array([0, 2, 4, 1, 3, 5]), np.arange(6)[::-1].copy()]
    stacked = member_batches(sessions, batch)[0]
    with torch.no_grad():
        logits = ensemble(stacked.trials, stacked.chosen, stacked.participants)
        logits = logits.view(logits.shape[0], 3, 6, -1)
        for k, own in enumerate(sessions):
            alone = member_batches([own], batch)[0]
            single = ensemble.member(k)
            expected = single(alone.trials, alone.chosen, alone.participants)
            torch.testing.assert_close(logits[:, k], expected, atol=1e-5, rtol=1e-5)


def test_the_members_of_a_float64_network_compute_in_float64():
    # Refits run float64 networks and evaluate subsets of their members in line searches;
    # a float32 copy there moved the gradients by 1e-4 against the whole network's.
    torch.manual_seed(0)
    model = EXAMPLES / "individual_differences.spice"
    ensemble = api.load_model(model, n_participants=2, members=3).double().eval()
    dataset, _ = api.simulate(
        EXAMPLES / "individual_differences_truth.spice", 6, 20, seed=1, n_participants=2
    )
    stacked = member_batches([np.arange(6)] * 3, make_batch(dataset).double())[0]
    picked = member_subset(3, np.array([2, 0]), stacked)[0]
    with torch.no_grad():
        whole = ensemble(stacked.trials, stacked.chosen, stacked.participants)
        subset = ensemble.members_subset([2, 0])
        alone = subset(picked.trials, picked.chosen, picked.participants)
    assert alone.dtype == torch.float64
    expected = whole.view(whole.shape[0], 3, 6, -1)[:, [2, 0]].reshape(alone.shape)
    torch.testing.assert_close(alone, expected, rtol=1e-12, atol=1e-12)


def test_every_member_records_its_modules_on_every_session():
    torch.manual_seed(0)
    ensemble = api.load_model(EXAMPLES / "learning_rate.spice", members=2).eval()
    dataset, _ = api.simulate(EXAMPLES / "q_learning.spice", 3, 10, seed=2)
    batch = make_batch(dataset)  # 3 sessions: not a multiple of the 2 members
    trials = np.ones((3, 10), dtype=bool)
    trials[1, 5:] = False
    recorded = record_modules(ensemble, batch, trials)["x_learning_rate_reward"]
    for k in range(2):
        alone = record_modules(ensemble.member(k), batch, trials)["x_learning_rate_reward"]
        mine = recorded["member"] == k
        assert mine.sum() == len(alone["after"]) > 0
        np.testing.assert_allclose(recorded["after"][mine], alone["after"], rtol=1e-5)


def test_members_train_as_they_would_alone(small_data):
    model = load_ir(EXAMPLES / "learning_rate.spice")
    torch.manual_seed(3)
    ensemble = network_class(model)(2, 1, 8, 0.0, 2)
    singles = [ensemble.member(k) for k in range(2)]
    halves = [np.arange(0, 15), np.arange(15, 30)]
    batch = make_batch(small_data)
    settings = FitSettings(epochs=12, patience=1000)
    train_network(ensemble, member_batches(halves, batch)[0], settings, progress=False)
    for k, single in enumerate(singles):
        train_network(single, member_batches([halves[k]], batch)[0], settings, progress=False)
        trained = ensemble.member(k).state_dict()
        for name, value in single.state_dict().items():
            torch.testing.assert_close(trained[name], value, atol=1e-4, rtol=1e-4)


def test_a_member_predicts_only_its_own_half_of_sessions_that_all_members_run(small_data):
    # With the end of every session held out for validation, every member runs on every
    # session; the training choices it predicts must still be its own half's alone.
    batch = make_batch(small_data)
    halves = [np.arange(0, 15), np.arange(15, 30)]
    every = np.arange(30)
    train, validation = member_batches([every, every], batch, batch, trained=halves)
    predicted = (train.targets != IGNORE).any(0).view(2, 30).numpy()
    assert predicted[0].tolist() == [True] * 15 + [False] * 15
    assert predicted[1].tolist() == [False] * 15 + [True] * 15
    assert (validation.targets != IGNORE).any(0).all()


def test_a_member_stops_on_its_own_and_slow_ones_at_a_budget():
    settled, fresh = np.array([True, False]), np.array([0, 0])
    nobody = np.zeros(4, dtype=int)
    assert _members_done(settled, fresh, nobody, 100, 10).tolist() == [True, False]
    # Half of the members stopped by epoch 30: the rest stop at 1.25 x 30, after epoch 38.
    stopped = np.array([0, 0, 25, 30])
    assert _members_done(settled, fresh, stopped, 37, 10).tolist() == [True, False]
    assert _members_done(settled, fresh, stopped, 38, 10).tolist() == [True, True]


def test_a_member_stops_when_its_validation_loss_stops_improving_after_a_warm_up():
    settled, nobody = np.array([False, False]), np.zeros(4, dtype=int)
    since_best = np.array([10, 9])
    # No stop for want of improvement within the first three patiences (30 epochs).
    assert _members_done(settled, since_best, nobody, 29, 10).tolist() == [False, False]
    assert _members_done(settled, since_best, nobody, 30, 10).tolist() == [True, False]


def test_members_that_learnt_nothing_have_no_say():
    log = TrainingLog(members=[{"best_loss": loss} for loss in (0.57, 0.66, 0.58, 0.69, 0.56)])
    chance = float(np.log(2))  # (median 0.58 + chance 0.693) / 2 = 0.637
    assert _voters(log, chance) == [0, 2, 4]
    assert _voters(TrainingLog(), chance) is None


def test_complementary_halves_are_disjoint_pairs_of_everything():
    rng = np.random.default_rng(0)
    sessions = np.arange(11)
    groups = np.array([0] * 5 + [1] * 6)
    halves = complementary_halves(sessions, 6, rng, groups)
    assert len(halves) == 6
    for first, second in zip(halves[::2], halves[1::2], strict=True):
        assert not set(first) & set(second)
        assert sorted([*first, *second]) == list(range(11))
        assert {len(first), len(second)} == {5, 6}
        for half in (first, second):
            assert set(groups[half]) == {0, 1}  # everyone's sessions in both halves
    assert any(not np.array_equal(halves[0], h) for h in halves[2::2])


def equation(module: str, terms: dict) -> DiscoveredEquation:
    return DiscoveredEquation(module, "v", tuple((c, p) for p, c in terms.items()), 100)


ONE, V, R = (), (("v", 1),), (("r", 1),)


def test_stability_selection_keeps_the_terms_most_members_select():
    chosen = [
        {ONE: 0.1, V: 0.8},
        {ONE: 0.12, V: 0.78},
        {ONE: 0.08, V: 0.81, R: 0.05},
        {V: 0.9},
    ]
    members = [
        Refit({"m": equation("m", terms)}, {"beta": 3.0 + i}, {}, 0.0)
        for i, terms in enumerate(chosen)
    ]
    stability = stability_selection(members, {"m": (ONE, V, R)}, 0.7)
    frequencies = {t.powers: (t.selected, t.kept) for t in stability.terms}
    assert frequencies == {V: (4, True), ONE: (3, True), R: (1, False)}
    assert stability.mean_selected == 2.0
    # Meinshausen and Bühlmann: q^2 / ((2 pi - 1) p) with q = 2 and p = 3.
    assert stability.error_bound == pytest.approx(4 / (0.4 * 3))
    assert stability.param_intervals["beta"][0] == pytest.approx(3.15)
    equations, params = consensus(members, stability)
    assert equations["m"].terms == ((0.1, ONE), (0.805, V))  # medians, in library order
    assert params["beta"].tolist() == [[4.5]]

    # A coefficient most members hold at exactly 1 is structure; a median of 1 is not.
    def with_value(value: float) -> Refit:
        return Refit({"m": equation("m", {ONE: 0.1, V: value})}, {"beta": 3.0}, {}, 0.0)

    members = [with_value(v) for v in (1.0, 1.0, 1.0, 0.9)]
    equations, _ = consensus(members, stability)
    assert equations["m"].terms == ((0.1, ONE), (1.0, V))
    members = [with_value(v) for v in (1.0, 1.0, 0.8, 1.2)]
    coefficient = consensus(members, stability)[0]["m"].terms[1][0]
    assert coefficient == pytest.approx(1.0) and coefficient != 1.0


def test_refits_side_by_side_equal_refits_one_at_a_time(small_data):
    source = read_source(EXAMPLES / "forgetting.spice")
    program = checked_program(source)
    model = lower(program, source)
    train = make_batch(small_data)
    starts = {"beta_reward": np.array([[2.0], [3.0]])}
    sessions = [np.arange(0, 30, 2), np.arange(1, 30, 2)]
    value, reward = (("x_value_reward", 1),), (("c_reward", 1),)
    chosen = equation("x_value_reward_chosen", {value: 0.7, reward: 0.3})
    requests = [
        Request(
            member,
            {"x_value_reward_chosen": chosen, "x_value_reward_not_chosen": other},
            precise=True,
        )
        for member, other in (
            (0, equation("x_value_reward_not_chosen", {ONE: 0.1, value: 0.8})),
            (1, equation("x_value_reward_not_chosen", {value: 1.0})),
        )
    ]

    def refitter():
        return Refitter(program, source, model, train, {}, 1, starts, sessions)

    together = refitter().refit_all(requests)
    for request, both in zip(requests, together, strict=True):
        alone = refitter().refit_all([request])[0]
        # The same optimum (the scale of the values is only loosely determined).
        assert both.bic == pytest.approx(alone.bic, rel=1e-6)
        assert both.params == pytest.approx(alone.params, rel=1e-3)
        for name, eq in alone.equations.items():
            assert [c for c, _ in both.equations[name].terms] == pytest.approx(
                [c for c, _ in eq.terms], rel=1e-3
            )


@pytest.fixture(scope="module")
def ensemble_fit(tmp_path_factory, small_data):
    folder = tmp_path_factory.mktemp("ensemble")
    data = folder / "data.csv"
    small_data.to_csv(data)
    out = folder / "out"
    args = ["fit", str(EXAMPLES / "learning_rate.spice"), str(data), *QUICK, "--ensemble", "2"]
    result = spicedsl(*args, "-o", str(out))
    return folder, args, result


def test_an_ensemble_fit_writes_a_valid_model_with_term_frequencies(ensemble_fit):
    folder, _, result = ensemble_fit
    assert result.returncode == 0, result.stderr
    out = folder / "out"
    fitted = (out / "fitted.spice").read_text()
    assert "# members selecting each term: " in fitted
    assert "ensemble of 2 networks" in result.stdout
    assert spicedsl("check", str(out / "fitted.spice")).returncode == 0
    formatted = spicedsl("fmt", str(out / "fitted.spice"))
    assert formatted.stdout == fitted
    evaluated = spicedsl("evaluate", str(out / "fitted.spice"), str(folder / "data.csv"))
    assert evaluated.returncode == 0, evaluated.stderr
    plotted = spicedsl(
        "plot", str(EXAMPLES / "learning_rate.spice"), str(folder / "data.csv"),
        "--session", "1", "--fitted", str(out), "-o", str(folder / "session.png"),
    )  # fmt: skip
    assert plotted.returncode == 0, plotted.stderr
    assert (out / "ensemble.npz").exists()


def test_an_ensemble_report_holds_frequencies_bound_intervals_and_members(ensemble_fit):
    folder, _, _ = ensemble_fit
    report = json.loads((folder / "out" / "report.json").read_text())
    ensemble = report["ensemble"]
    assert ensemble["members"] == 2 and ensemble["threshold"] == 0.7
    assert ensemble["expected_false_terms_bound"] > 0
    assert len(ensemble["member_equations"]) == ensemble["voting"]
    assert {"x_learning_rate_reward", "x_value_reward_not_chosen"} <= {
        t["module"] for t in ensemble["terms"]
    }
    for term in ensemble["terms"]:
        low, high = term["interval"]
        assert low <= term["median"] <= high
        assert term["kept"] == (term["frequency"] >= 0.7)
    assert len(report["training"]["members"]) == 2
    page = (folder / "out" / "report.html").read_text()
    assert '<img id="stability"' in page and 'id="member-equations"' in page


def test_degree_on_the_command_line_widens_every_library(ensemble_fit):
    folder, args, _ = ensemble_fit
    result = spicedsl(*args, "--degree", "2", "-o", str(folder / "degree2"))
    assert result.returncode == 0, result.stderr
    first = json.loads((folder / "out" / "report.json").read_text())["ensemble"]
    second = json.loads((folder / "degree2" / "report.json").read_text())["ensemble"]
    # Learning rate: 1, lr, r, v (r is 0/1: r^2 = r), and lr^2, v^2, lr r, lr v, r v at
    # degree 2; not chosen: 1, v, and v^2.
    assert (first["library_size"], second["library_size"]) == (4 + 2, 9 + 3)


@pytest.mark.slow
def test_an_ensemble_fit_is_reproducible_and_resumable(ensemble_fit):
    folder, args, _ = ensemble_fit
    again = spicedsl(*args, "-o", str(folder / "again"))
    assert again.returncode == 0, again.stderr
    first = (folder / "out" / "fitted.spice").read_bytes()
    assert (folder / "again" / "fitted.spice").read_bytes() == first
    resumed = spicedsl(*args, "--resume", str(folder / "again"))
    assert resumed.returncode == 0, resumed.stderr
    assert (folder / "again" / "fitted.spice").read_bytes() == first


def test_an_ensemble_fits_sessions_that_do_not_split_evenly_among_members(tmp_path):
    dataset, _ = api.simulate(EXAMPLES / "q_learning.spice", 31, 40, seed=4)
    data = tmp_path / "data.csv"
    dataset.to_csv(data)
    model = str(EXAMPLES / "learning_rate.spice")
    result = spicedsl("fit", model, str(data), *QUICK, "--ensemble", "2", "-o", str(tmp_path / "o"))
    assert result.returncode == 0, result.stderr
    assert_no_traceback(result)
    assert "# members selecting each term: " in (tmp_path / "o" / "fitted.spice").read_text()


def test_an_ensemble_comes_in_complementary_pairs(tmp_path):
    result = spicedsl("fit", str(EXAMPLES / "learning_rate.spice"), "x.csv", "--ensemble", "3")
    assert result.returncode == 2
    assert "ensemble must be 1 or an even number" in result.stderr
    assert_no_traceback(result)
    model = tmp_path / "m.spice"
    text = (EXAMPLES / "learning_rate.spice").read_text() + "fit ensemble 5 stability 0.5\n"
    model.write_text(text)
    checked = spicedsl("check", str(model))
    assert checked.returncode == 1
    assert "fit option 'ensemble' must be 1 or an even number" in checked.stderr
    assert "fit option 'stability' must be greater than 0.5" in checked.stderr
    assert f"{model}:{text.count(chr(10))}:" in checked.stderr


def test_a_term_refit_below_the_threshold_gives_the_score_of_the_model_without_it():
    # Rescorla-Wagner data: values not chosen stay as they are, so a constant in that
    # update refits to about 0. The model with it is scored as the model without it,
    # instead of not at all (which hid the true structure from the selection).
    dataset, _ = api.simulate(EXAMPLES / "rescorla_wagner_truth.spice", 60, 100, seed=2)
    source = read_source(EXAMPLES / "rescorla_wagner.spice")
    program = checked_program(source)
    model = lower(program, source)
    starts = {"beta_reward": np.array([[3.0]])}
    value, reward = (("x_value_reward", 1),), (("c_reward", 1),)
    chosen = equation("x_value_reward_chosen", {value: 0.7, reward: 0.3})

    def refit(not_chosen: dict) -> Refit:
        refitter = Refitter(
            program, source, model, make_batch(dataset), {}, 1, starts, [np.arange(60)]
        )
        equations = {
            "x_value_reward_chosen": chosen,
            "x_value_reward_not_chosen": equation("x_value_reward_not_chosen", not_chosen),
        }
        return refitter.refit(equations, precise=True)

    with_constant, without = refit({ONE: 0.02, value: 0.9}), refit({value: 0.9})
    assert without.bic < math.inf
    # (Refit from different starts: the scale of the values is only loosely determined.)
    assert with_constant.bic == pytest.approx(without.bic, rel=1e-3)
    kept = with_constant.equations["x_value_reward_not_chosen"].terms
    assert [powers for _, powers in kept] == [value]
