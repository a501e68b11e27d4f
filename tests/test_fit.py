"""spicedsl fit: training, equation discovery, fitted model files and their round trip."""

from __future__ import annotations

import json
import subprocess
import sys
import warnings
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from spicedsl import api
from spicedsl.discovery.candidates import fit_module
from spicedsl.discovery.equation import DiscoveredEquation
from spicedsl.discovery.selection import select_equations
from spicedsl.errors import DataError, FitError, SpiceError
from spicedsl.fitted import fitted_program
from spicedsl.fitting import FitResult
from spicedsl.frontend import checked_program, load_ir, read_source
from spicedsl.printer import format_program
from spicedsl.runtime.network import BaseRNN, ModuleSpec
from spicedsl.runtime.weights import load_weights
from spicedsl.semantics.functions import MODULE_CLIP
from spicedsl.syntax.parser import parse

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"
QUICK = {"epochs": 15, "sindy_sessions": 2, "sindy_trials": 100, "validation": 0.0}


@pytest.fixture(scope="module")
def small_data():
    dataset, _ = api.simulate(EXAMPLES / "q_learning.spice", 30, 40, seed=4)
    return dataset


@pytest.fixture(scope="module")
def quick_fit(small_data) -> FitResult:
    return api.fit(EXAMPLES / "learning_rate.spice", small_data, progress=False, **QUICK)


def spec(inputs=(), threshold=0.05, degree=1) -> ModuleSpec:
    return ModuleSpec("v", "all", tuple(inputs), (), None, degree, threshold, False, 1)


def test_fit_module_recovers_a_linear_map():
    rng = np.random.default_rng(0)
    before = rng.random(500)
    after = 0.1 + 0.8 * before
    candidates, library = fit_module("m", spec(), before, after, np.zeros((500, 0)))
    first = candidates[0]
    assert library == ((), (("v", 1),))
    assert [powers for _, powers in first.terms] == [(), (("v", 1),)]
    np.testing.assert_allclose([c for c, _ in first.terms], [0.1, 0.8], atol=1e-6)


def test_an_update_with_no_term_above_the_threshold_raises_no_pysindy_warning():
    before = np.random.default_rng(0).random(200)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        candidates, _ = fit_module("m", spec(), before, 0.001 * before, np.zeros((200, 0)))
    assert candidates[0].terms == ()


def test_binary_powers_are_folded_into_the_input():
    rng = np.random.default_rng(1)
    before, reward = rng.random(400), rng.integers(0, 2, 400).astype(float)
    after = 0.3 * reward + 0.5 * before
    candidates, _ = fit_module("m", spec(["r"], degree=2), before, after, reward[:, None])
    for candidate in candidates:
        assert all(dict(powers).get("r", 0) <= 1 for _, powers in candidate.terms)
    best = min(candidates, key=lambda c: (c.n_coefficients < 2, c.n_coefficients))
    assert dict((p, c) for c, p in best.terms) == pytest.approx(
        {(("r", 1),): 0.3, (("v", 1),): 0.5}, abs=1e-6
    )


def test_only_the_self_coefficient_is_snapped_to_one():
    rng = np.random.default_rng(2)
    before, reward = rng.random(400), rng.integers(0, 2, 400).astype(float)
    for after, snapped in ((before + 0.98 * reward, (("v", 1),)), (0.7 * before + reward, None)):
        candidates, _ = fit_module("m", spec(["r"]), before, after, reward[:, None])
        ones = {powers for c, powers in candidates[0].terms if c == 1.0}
        # The reward's coefficient depends on the scale the network gave its values.
        assert ones == ({snapped} if snapped else set())


def test_the_empty_equation_is_a_candidate():
    before = np.random.default_rng(3).random(300)
    candidates, _ = fit_module("m", spec(), before, 0.1 + 0.8 * before, np.zeros((300, 0)))
    assert candidates[0].terms != () and any(c.terms == () for c in candidates)


def test_select_equations_keeps_what_the_score_prefers():
    def equation(n: int) -> DiscoveredEquation:
        return DiscoveredEquation("m", "v", tuple((1.0, (("v", i),)) for i in range(n)), 10)

    candidates = {"a": [equation(3), equation(1)], "b": [equation(2), equation(1)]}
    [chosen] = select_equations([candidates], size_score(lambda sizes: sum(sizes)))
    assert chosen["a"].n_coefficients == 1 and chosen["b"].n_coefficients == 1


def size_score(score):
    """A scorer of combinations (see selection.Scorer) by their equations' sizes."""

    def scores(asked):
        return [score([e.n_coefficients for e in eqs.values()]) for _, eqs, _ in asked]

    return scores


def test_fit_finds_an_equation_for_every_learnable_module(quick_fit):
    assert set(quick_fit.equations) == {"x_learning_rate_reward", "x_value_reward_not_chosen"}
    assert "learn(" not in quick_fit.fitted_text
    assert "param beta_value > 0 = " in quick_fit.fitted_text


def test_fitted_model_checks_and_evaluates_to_the_reported_nll(quick_fit, small_data):
    checked_program(read_source(quick_fit.fitted_text))
    metrics = api.evaluate(quick_fit.fitted_text, small_data)
    reported = quick_fit.metrics["equations"]["train"]
    assert metrics["nll_per_trial"] == pytest.approx(reported["nll_per_trial"], abs=1e-6)
    assert metrics["n_params"] == reported["n_params"]


def test_fitted_model_keeps_the_comments(quick_fit):
    assert "# learnable: a network during training" in quick_fit.fitted_text


def test_refitting_a_fully_specified_model_changes_nothing_but_the_actions(small_data):
    result = api.fit(EXAMPLES / "q_learning.spice", small_data, progress=False, **QUICK)
    assert result.log.stopped == "nothing to train"
    source = (EXAMPLES / "q_learning.spice").read_text()
    assert result.fitted_text == source.replace(
        "model q_learning\n", "model q_learning\nactions 2\n"
    )
    assert result.report()["n_actions"] == 2


def test_the_fitted_model_says_how_many_actions_the_fit_had():
    text = "model m  # mine\n\nstate x = 0  # x\nparam b > 0\nlogits = b * x  # rule\n"
    added = format_program(fitted_program(parse(text), {}, {"b": 2.0}, n_actions=3), text)
    assert added == (
        "model m  # mine\nactions 3\n\nstate x = 0  # x\nparam b > 0 = 2\nlogits = b * x  # rule\n"
    )
    from_data = text.replace("model m  # mine\n", "model m  # mine\nactions from data  # a\n")
    replaced = fitted_program(parse(from_data), {}, {"b": 2.0}, n_actions=3)
    assert format_program(replaced, from_data).splitlines()[1] == "actions 3  # a"


def test_end_of_line_comments_stay_when_the_fitted_model_names_a_table():
    text = "model m\nstate x = 0  # x\nparam b > 0 per participant\nlogits = b * x  # rule\n"
    fitted = fitted_program(parse(text), {}, {"b": 2.0}, table_file="t.csv")
    assert format_program(fitted, text) == (
        "model m\nstate x = 0  # x\nparam b > 0 per participant\nlogits = b * x  # rule\n"
        'participants from "t.csv"\n'
    )


def test_a_number_counts_once_as_written_like_a_param_holding_it():
    written = "model m\nstate x = 0\ncontrol c = data.reward\nparam b = 3\nlogits = b * x\n"
    written += "module u updates x when chosen\n    u = x + 0.3 * (c - x)\n"
    named = written.replace("x + 0.3 * (c - x)", "x + alpha * (c - x)") + "param alpha = 0.3\n"
    assert load_ir(written).n_free_parameters() == load_ir(named).n_free_parameters() == 2
    fitted = written.replace("x + 0.3 * (c - x)", "0.1007 + 0.8009 * x - 0.25 * x * c ^ 2")
    assert load_ir(fitted).n_free_parameters() == 4


def test_save_writes_results_that_load_without_pickle(quick_fit, tmp_path, small_data):
    out = quick_fit.save(tmp_path / "out")
    assert sorted(p.name for p in out.iterdir()) == ["fitted.spice", "network.npz", "report.json"]
    report = json.loads((out / "report.json").read_text())
    assert report["n_actions"] == 2
    assert report["metrics"]["equations"]["train"]["nll_per_trial"] > 0
    assert set(report["versions"]) >= {"spicedsl", "torch", "pysindy"}
    fresh = api.load_model(EXAMPLES / "learning_rate.spice")
    load_weights(fresh, out / "network.npz")
    for name, value in quick_fit.network.state_dict().items():
        torch.testing.assert_close(fresh.state_dict()[name], value)


def test_report_lists_the_unstable_equations_of_the_fit(quick_fit, tmp_path):
    def reports(b: float) -> dict:
        value = (("x_value_reward", 1),)
        not_chosen = DiscoveredEquation(
            "x_value_reward_not_chosen", "x_value_reward", ((0.1, ()), (b, value)), 100
        )
        discovered = {**quick_fit.discovered, "x_value_reward_not_chosen": not_chosen}
        out = replace(quick_fit, discovered=discovered).save(tmp_path / str(b))
        return json.loads((out / "report.json").read_text())

    assert reports(0.8)["unstable_equations"] == []
    assert reports(1.2)["unstable_equations"] == [
        {
            "module": "x_value_reward_not_chosen",
            "state": "x_value_reward",
            "coefficients": [1.2],
            "participants": None,
        }
    ]


def test_fit_result_shows_its_equations_as_latex(quick_fit):
    latex = quick_fit._repr_latex_()
    assert latex.startswith("$$") and r"\mathrm{x\_value\_reward}" in latex


def test_save_refuses_a_non_empty_folder(quick_fit, tmp_path):
    (tmp_path / "keep.txt").write_text("mine")
    with pytest.raises(SpiceError, match="not empty"):
        quick_fit.save(tmp_path)
    assert (tmp_path / "keep.txt").read_text() == "mine"


def test_diverging_fit_names_where_it_broke(small_data):
    exploding = (
        "model boom\nstate x = 1\ncontrol c_reward = data.reward\n"
        "module grow updates x when chosen\n    grow = x * exp(w)\n"
        "module rest updates x when not chosen\n    learn()\n"
        "param w init 60\nlogits = x\n"
    )
    with pytest.raises(FitError, match="diverged at epoch 1: .*(module|param) '"):
        api.fit(exploding, small_data, progress=False, **QUICK)


def test_a_param_pushed_onto_its_bound_stays_printable():
    text = "model m\nstate x = 0\nparam b > 0\nlogits = b * x\n"
    program = parse(text)
    fitted = fitted_program(program, {}, {"b": 0.0})
    printed = format_program(fitted, text)
    assert "param b > 0 = 5e-324" in printed
    checked_program(read_source(printed))


def test_interrupted_training_still_gives_a_result(small_data, monkeypatch):
    calls = {"n": 0}
    original = BaseRNN.forward

    def interrupt_on_third_epoch(self, *args, **kwargs):
        if self.training:
            calls["n"] += 1
            if calls["n"] == 3:
                raise KeyboardInterrupt
        return original(self, *args, **kwargs)

    monkeypatch.setattr(BaseRNN, "forward", interrupt_on_third_epoch)
    result = api.fit(EXAMPLES / "learning_rate.spice", small_data, progress=False, **QUICK)
    assert result.log.stopped == "interrupted"
    assert len(result.log.train_loss) == 2
    checked_program(read_source(result.fitted_text))


def test_action_count_mismatch_is_a_clear_error(small_data):
    model = (
        (EXAMPLES / "learning_rate.spice")
        .read_text()
        .replace("model learning_rate", "model learning_rate\nactions 3")
    )
    with pytest.raises(DataError, match="the model has 3 actions but the data has 2"):
        api.fit(model, small_data, progress=False, **QUICK)


def run_cli(*args: str) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "spicedsl.cli", *args]
    return subprocess.run(command, capture_output=True, text=True, check=False, cwd=ROOT)


def test_cli_fit_prints_a_model_and_writes_the_folder(tmp_path, small_data):
    data = tmp_path / "data.csv"
    small_data.to_csv(data)
    quick = ["--epochs", "5", "--sindy-sessions", "1", "--sindy-trials", "50", "-q"]
    quick += ["--validation", "0"]
    out = tmp_path / "out"
    done = run_cli("fit", "examples/learning_rate.spice", str(data), "-o", str(out), *quick)
    assert done.returncode == 0, done.stderr
    checked_program(read_source(done.stdout))
    assert (out / "fitted.spice").read_text() in done.stdout
    again = run_cli("fit", "examples/learning_rate.spice", str(data), "-o", str(out), *quick)
    assert again.returncode == 1 and "not empty" in again.stderr
    assert "Traceback" not in again.stderr
    assert (out / "report.html").read_text().startswith("<!DOCTYPE html>")
    png = tmp_path / "session.png"
    plotted = run_cli(
        "plot",
        "examples/learning_rate.spice",
        str(data),
        "--session",
        small_data.session_ids[0],
        "--truth",
        "examples/q_learning.spice",
        "--fitted",
        str(out),
        "-o",
        str(png),
    )
    assert plotted.returncode == 0, plotted.stderr
    assert png.read_bytes().startswith(b"\x89PNG")
    evaluated = run_cli("evaluate", str(out / "fitted.spice"), str(data), "--json")
    report = json.loads((out / "report.json").read_text())
    nll = json.loads(evaluated.stdout)["nll_per_trial"]
    assert nll == pytest.approx(report["metrics"]["equations"]["train"]["nll_per_trial"], abs=1e-6)


def test_cli_fit_reports_a_missing_input_column(tmp_path):
    data = tmp_path / "data.csv"
    data.write_text("session,choice,reward\n1,0,1\n1,1,0\n")
    model = tmp_path / "cue.spice"
    model.write_text(
        "model cue\nstate x = 0\ncontrol c_cue = data.cue\n"
        "module m updates x when chosen\n    learn(c_cue)\nparam b > 0\nlogits = b * x\n"
    )
    done = run_cli("fit", str(model), str(data))
    assert done.returncode == 1
    assert "the model reads data.cue but the file has no column 'cue'" in done.stderr
    assert "Traceback" not in done.stderr


def test_evaluate_json_has_the_documented_keys():
    done = run_cli(
        "evaluate", "examples/q_learning.spice", "examples/data/q_learning.csv", "--json"
    )
    assert done.returncode == 0, done.stderr
    metrics = json.loads(done.stdout)
    assert set(metrics) >= {"nll_per_trial", "accuracy", "n_trials", "n_params", "aic", "bic"}
    assert metrics["n_trials"] == 100 * 99


@pytest.mark.parametrize(
    "flags",
    [["--epochs", "0"], ["--learning-rate", "nan"], ["--validation", "1.5"], ["--threads", "0"]],
)
def test_cli_fit_rejects_bad_option_values_as_usage_errors(flags, tmp_path, small_data):
    data = tmp_path / "data.csv"
    small_data.to_csv(data)
    done = run_cli(
        "fit", "examples/learning_rate.spice", str(data), "-o", str(tmp_path / "o"), *flags
    )
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr
    assert not (tmp_path / "o").exists()


def test_cli_fit_refuses_an_output_folder_holding_its_input(tmp_path):
    model = tmp_path / "model.spice"
    model.write_text((EXAMPLES / "q_learning.spice").read_text())
    done = run_cli(
        "fit", str(model), "examples/data/q_learning.csv", "-o", str(tmp_path), "--overwrite"
    )
    assert done.returncode == 2 and "inside the output folder" in done.stderr
    assert model.read_text() == (EXAMPLES / "q_learning.spice").read_text()


@pytest.mark.parametrize("dropout", [0.0, 0.3])
def test_the_kept_network_scores_the_reported_best_loss(small_data, dropout):
    from spicedsl.runtime.batch import make_batch
    from spicedsl.runtime.train import batch_nll, train_network
    from spicedsl.settings import FitSettings

    torch.manual_seed(0)
    net = api.load_model(EXAMPLES / "forgetting.spice", dropout=dropout)
    full = make_batch(small_data)
    first = (np.arange(30) < 20)[:, None] & small_data.mask
    train, validation = full.predicting(first), full.predicting(small_data.mask & ~first)
    # A large learning rate makes the loss jump about, so the best epoch is not the last.
    settings = FitSettings(epochs=40, learning_rate=0.3, dropout=dropout)
    log = train_network(net, train, settings, validation, progress=False)
    assert log.best_epoch < len(log.train_loss)
    assert log.best_loss == min(log.validation_loss)
    assert batch_nll(net, validation) == pytest.approx(log.best_loss, abs=1e-6)


def test_fitted_equations_keep_the_clip_of_the_networks_they_replace():
    # Fitted on real four-armed data: this equation drove a logit to -1651 in two trials.
    runaway = ((-2.268, ()), (3.536, (("c_reward", 1),)), (-2.692, (("x_value_reward", 2),)))
    equations = {
        "x_value_reward_chosen": DiscoveredEquation(
            "x_value_reward_chosen", "x_value_reward", runaway, 100
        ),
        "x_value_reward_not_chosen": DiscoveredEquation(
            "x_value_reward_not_chosen", "x_value_reward", ((1.0, (("x_value_reward", 1),)),), 100
        ),
    }
    source = (EXAMPLES / "forgetting.spice").read_text()
    text = format_program(fitted_program(parse(source), equations, {"beta_reward": 1.0}), source)
    assert "clip(-2.268 + 3.536 * c_reward - 2.692 * x_value_reward ^ 2, -100, 100)" in text
    _, latents = api.simulate(text, 5, 30, seed=0)
    assert np.isfinite(latents["x_value_reward"]).all()
    assert np.abs(latents["x_value_reward"]).max() <= MODULE_CLIP


def test_a_start_that_cannot_be_scored_does_not_decide_the_selection():
    def equation(module: str, n: int) -> DiscoveredEquation:
        return DiscoveredEquation(module, "v", tuple((1.0, (("v", i),)) for i in range(n)), 10)

    candidates = {m: [equation(m, n) for n in (3, 2, 1)] for m in ("a", "b")}

    def score(sizes: list[int]) -> float:
        return np.inf if 3 in sizes else sum(sizes)  # any first candidate diverges

    [chosen] = select_equations([candidates], size_score(score))
    assert [e.n_coefficients for e in chosen.values()] == [1, 1]


def test_a_network_at_chance_is_retrained_and_reported():
    guesser = "model guess\nstate x = 0\nlogits = 0 * x\n"
    dataset, _ = api.simulate(guesser, 30, 40, n_actions=2, seed=2)
    with pytest.warns(UserWarning, match="no better than chance"):
        result = api.fit(EXAMPLES / "forgetting.spice", dataset, progress=False, **QUICK)
    assert result.log.restarts == 2
    assert result.report()["training"]["restarts"] == 2
    assert "restarts from chance" in result.summary()


def test_digits_beyond_a_float64s_precision_are_refused(small_data):
    with pytest.raises(SpiceError, match="digits must be between 1 and 17"):
        api.fit(EXAMPLES / "learning_rate.spice", small_data, progress=False, digits=18, **QUICK)


def test_a_fit_with_a_nan_metric_fails_instead_of_reporting_it(small_data):
    broken = (
        "model broken\nstate x = 0.5\nmodule m updates x when chosen\n    m = log(x - 1)\n"
        "param beta = 1\nlogits = beta * x\n"
    )
    with pytest.raises(FitError, match="NLL on the train trials is not finite"):
        api.fit(broken, small_data, progress=False, **QUICK)
