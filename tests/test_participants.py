"""Individual differences: participant tables, per-participant equations, round trips."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest

from spicedsl import api
from spicedsl.discovery.candidates import fit_participants, participant_rows
from spicedsl.discovery.equation import DiscoveredEquation
from spicedsl.errors import ModelError
from spicedsl.fitted import TABLE_FILE
from spicedsl.frontend import checked_program, read_source
from spicedsl.printer import format_program
from spicedsl.runtime.batch import make_batch
from spicedsl.runtime.metrics import choice_metrics
from spicedsl.runtime.network import ModuleSpec

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"
TRUTH = EXAMPLES / "individual_differences_truth.spice"
TINY = {"epochs": 5, "sindy_sessions": 1, "sindy_trials": 60, "validation": 0.0}

# A Rescorla-Wagner agent whose learning rate comes from the table beside the model.
MODEL = """\
model rw
state v = 0.5
control r = data.reward
module learn_v updates v when chosen
    learn_v = v + alpha * (r - v)
param alpha in (0, 1) per participant
param beta > 0 = 3
logits = beta * v
participants from "table.csv"
"""


def spicedsl(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        [sys.executable, "-m", "spicedsl.cli", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert "Traceback" not in result.stdout + result.stderr
    return result


def model_with_table(folder: Path, table: str, model: str = MODEL) -> Path:
    (folder / "table.csv").write_text(table, encoding="utf-8")
    path = folder / "model.spice"
    path.write_text(model, encoding="utf-8")
    return path


def test_the_participants_statement_is_canonical_and_round_trips():
    source = read_source(
        "model m\nstate x = 0\nparam b per participant\nlogits = b * x\n"
        'participants   from "a table.csv"\n'
    )
    text = format_program(checked_program(source), source.text)
    assert text.splitlines()[-1] == 'participants from "a table.csv"'
    assert format_program(checked_program(read_source(text)), text) == text


def test_a_table_needs_a_per_participant_param_without_a_value():
    text = "model m\nstate x = 0\nparam b per participant = 2\nlogits = b * x\n"
    source = read_source(text + 'participants from "t.csv"\n')
    with pytest.raises(ModelError, match="every param here is shared or fixed"):
        checked_program(source)


BAD_TABLES = {
    "participant,alpha\n1,0.5\n2,abc\n": "table.csv:3: column 'alpha': error: "
    "'abc' is not a finite number",
    "participant,alpha\n1,1.5\n": "table.csv:2: column 'alpha': error: "
    "1.5 is outside the bounds of 'alpha'",
    "participant,alpha\n1,0.5\n1,0.6\n": "table.csv:3: column 'participant': error: "
    "participant '1' appears twice (first on row 2)",
    "participant,alpha\n1,0.5\n ,0.6\n": "table.csv:3: column 'participant': error: "
    "the participant is empty",
    "participant,alpha,gamma\n1,0.5,1\n": "table.csv:1: column 'gamma': error: "
    "'gamma' is not a per-participant param without a value in model 'rw'",
    "alpha\n0.5\n": "table.csv:1: error: the participant table needs a 'participant' column",
    "participant,alpha\n1,0.5,7\n": "table.csv:2: error: the row has 3 fields, the header 2",
    "participant,alpha\n": "table.csv: error: the participant table has no participant rows",
    "participant,alpha,alpha\n1,0.5,0.6\n": "table.csv:1: error: "
    "the header names column 'alpha' twice (columns 2 and 3)",
}


@pytest.mark.parametrize(("table", "message"), BAD_TABLES.items())
def test_check_reports_a_bad_table_with_its_row(tmp_path, table, message):
    model = model_with_table(tmp_path, table)
    result = spicedsl("check", str(model), cwd=tmp_path)
    assert result.returncode == 1
    assert result.stderr.strip().splitlines()[0] == str(tmp_path / message)


def test_a_table_with_a_byte_order_mark_is_read(tmp_path):
    model = model_with_table(tmp_path, "\ufeffparticipant,alpha\n1,0.5\n")
    result = spicedsl("check", str(model), cwd=tmp_path)
    assert result.returncode == 0, result.stderr


def test_a_missing_table_is_reported(tmp_path):
    model = model_with_table(tmp_path, "")
    (tmp_path / "table.csv").unlink()
    result = spicedsl("check", str(model), cwd=tmp_path)
    assert result.returncode == 1
    assert "table.csv: error: the participant table does not exist" in result.stderr


def simulated(folder: Path, alphas: dict[str, float], n_sessions: int = 6) -> Path:
    """Data of participants with the given learning rates, two sessions each."""
    rows = "".join(f"{label},{alpha}\n" for label, alpha in alphas.items())
    truth = model_with_table(folder, "participant,alpha\n" + rows)
    dataset, _ = api.simulate(truth, n_sessions, 30, seed=1)
    path = folder / "data.csv"
    dataset.to_csv(path)
    return path


def test_evaluate_gives_participants_the_table_lacks_the_group_values_and_says_so(tmp_path):
    data = simulated(tmp_path, {"1": 0.2, "2": 0.6, "3": 0.4})
    model_with_table(tmp_path, "participant,alpha\n1,0.2\n2,0.6\n")
    mean = spicedsl("evaluate", "model.spice", "data.csv", "--json", cwd=tmp_path)
    assert mean.returncode == 0, mean.stderr
    assert mean.stderr == (
        "note: table.csv: 1 participant has no row in the participant table ('3'): they get "
        "the group values, the table's mean (--unknown-participants error refuses them)\n"
    )
    # The mean of the table's learning rates, 0.4, written out for participant 3.
    model_with_table(tmp_path, "participant,alpha\n1,0.2\n2,0.6\n3,0.4\n")
    full = api.evaluate(tmp_path / "model.spice", data)
    assert json.loads(mean.stdout)["nll_per_trial"] == pytest.approx(
        full["nll_per_trial"], abs=1e-12
    )
    assert set(full["participants"]) == {"1", "2", "3"}


def test_evaluate_refuses_participants_the_table_lacks_when_asked_to(tmp_path):
    simulated(tmp_path, {"1": 0.2, "2": 0.6, "3": 0.4})
    model_with_table(tmp_path, "participant,alpha\n1,0.2\n2,0.6\n")
    options = ["--unknown-participants", "error"]
    refused = spicedsl("evaluate", "model.spice", "data.csv", *options, cwd=tmp_path)
    assert refused.returncode == 1
    assert "participants '3' have no row in the participant table" in refused.stderr
    assert "--unknown-participants mean" in refused.stderr


def test_the_note_on_group_values_counts_the_participants_and_names_the_first(tmp_path):
    simulated(tmp_path, {str(i): 0.5 for i in range(1, 10)}, n_sessions=9)
    model_with_table(tmp_path, "participant,alpha\n1,0.2\n2,0.6\n")
    result = spicedsl("evaluate", "model.spice", "data.csv", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert (
        "note: table.csv: 7 participants have no row in the participant table "
        "('3', '4', '5', '6', '7' and 2 more): they get the group values" in result.stderr
    )


def test_simulate_gives_participants_beyond_the_table_the_group_values(tmp_path):
    model_with_table(tmp_path, "participant,alpha\n1,0.2\n2,0.6\n")
    options = ["--participants", "3", "--sessions", "6", "--trials", "30", "--seed", "1"]
    made = spicedsl("simulate", "model.spice", *options, "-o", "mean.csv", cwd=tmp_path)
    assert made.returncode == 0, made.stderr
    assert (
        "note: table.csv: 1 participant has no row in the participant table ('3'): they get "
        "the group values" in made.stderr
    )
    # The same as a table that gives participant 3 the mean learning rate, 0.4.
    model_with_table(tmp_path, "participant,alpha\n1,0.2\n2,0.6\n3,0.4\n")
    again = spicedsl("simulate", "model.spice", *options, "-o", "full.csv", cwd=tmp_path)
    assert again.returncode == 0, again.stderr
    assert (tmp_path / "mean.csv").read_text() == (tmp_path / "full.csv").read_text()
    model_with_table(tmp_path, "participant,alpha\n1,0.2\n2,0.6\n")
    refusing = [*options, "--unknown-participants", "error", "-o", "no.csv"]
    refused = spicedsl("simulate", "model.spice", *refusing, cwd=tmp_path)
    assert refused.returncode == 1
    assert "participants '3' have no row in the participant table" in refused.stderr
    assert not (tmp_path / "no.csv").exists()


def test_table_rows_of_participants_not_simulated_get_one_note(tmp_path):
    rows = "".join(f"{i},0.5\n" for i in range(1, 9))
    model_with_table(tmp_path, "participant,alpha\n" + rows)
    options = ["--participants", "1", "--sessions", "2", "--trials", "5"]
    result = spicedsl("simulate", "model.spice", *options, "-o", "d.csv", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stderr.count("note:") == 1
    assert (
        "note: table.csv:3: participants '2', '3', '4', '5', '6' and 2 more are not in the "
        "data; their rows are unused" in result.stderr
    )


def test_table_rows_of_participants_not_in_the_data_are_noted(tmp_path):
    simulated(tmp_path, {"1": 0.2, "2": 0.6}, n_sessions=4)
    model_with_table(tmp_path, "participant,alpha\n1,0.2\n2,0.6\n7,0.5\n")
    result = spicedsl("evaluate", "model.spice", "data.csv", cwd=tmp_path)
    assert result.returncode == 0
    assert (
        "note: table.csv:4: participant '7' is not in the data; the row is unused" in result.stderr
    )


def test_simulate_gives_each_participant_of_the_table_their_values(tmp_path):
    rows = "participant,alpha\nann,0.05\nbob,0.95\n"
    model = model_with_table(tmp_path, rows)
    dataset, latents = api.simulate(model, 4, 30, seed=2)
    assert dataset.participant_ids == ("ann", "bob")
    # The same table given on the command line reads the same.
    again, _ = api.simulate(model, 4, 30, seed=2, param_table=tmp_path / "table.csv")
    np.testing.assert_array_equal(dataset.choices, again.choices)
    # With alpha = 0.05 values barely move after a reward; with alpha = 0.95 they jump.
    steps = np.abs(np.diff(latents["v"], axis=1)).max(axis=(1, 2))
    slow, fast = steps[dataset.participant_index == 0], steps[dataset.participant_index == 1]
    assert slow.max() < 0.05 < 0.4 < fast.min()


def test_fit_participants_recovers_each_participants_own_coefficients():
    rng = np.random.default_rng(0)
    n = 600
    before, reward = rng.uniform(0, 1, n), rng.integers(0, 2, n).astype(float)
    participant = np.repeat(np.arange(3), n // 3)
    own = np.array([[0.5, 0.5, 0.0], [0.8, 0.8, -0.6], [0.3, 0.6, 0.2]])  # v, r, v*r
    design = np.column_stack([before, reward, before * reward])
    after = np.einsum("ij,ij->i", design, own[participant])
    terms = ((1.0, (("v", 1),)), (0.1, (("r", 1),)), (0.1, (("v", 1), ("r", 1))))
    equation = DiscoveredEquation("m", "v", terms, n)
    spec = ModuleSpec("v", "chosen", ("r",), ("r",), None, 2, 0.05, True, 1)
    rows = participant_rows(participant, n_participants=4)
    fitted = fit_participants(equation, spec, before, after, reward[:, None], rows)
    np.testing.assert_allclose(np.array(fitted.per_participant[:3]), own, atol=1e-10)
    # Participant 4 has no samples: the shared coefficients, which then enter the mean.
    assert fitted.per_participant[3] == (1.0, 0.1, 0.1)
    rows = np.array(fitted.per_participant)
    np.testing.assert_allclose([c for c, _ in fitted.terms], rows.mean(axis=0))


@pytest.fixture(scope="module")
def embedding_fit(tmp_path_factory):
    folder = tmp_path_factory.mktemp("embedding_fit")
    dataset, _ = api.simulate(TRUTH, 6, 40, seed=3)
    data = folder / "data.csv"
    dataset.to_csv(data)
    result = api.fit(EXAMPLES / "individual_differences.spice", dataset, progress=False, **TINY)
    return folder, data, dataset, result, result.save(folder / "out")


def test_a_fitted_model_with_a_table_reproduces_the_fit(embedding_fit):
    folder, data, dataset, result, out = embedding_fit
    fitted = (out / "fitted.spice").read_text()
    assert f'participants from "{TABLE_FILE}"' in fitted
    with open(out / TABLE_FILE, newline="") as handle:
        table = list(csv.DictReader(handle))
    assert [row["participant"] for row in table] == list(dataset.participant_ids) == ["1", "2"]
    assert set(table[0]) == {"participant", *result.participant_table}
    assert "beta_reward" in result.participant_table
    # Every per-participant coefficient and param of the fitted model is a column.
    assert "param beta_reward > 0 per participant\n" in fitted
    for name in result.participant_table:
        assert f"param {name}" in fitted and f"{name} =" not in fitted
    # evaluate reads the table and gives the NLL the fit's equation model gives.
    batch = make_batch(dataset, dataset.n_actions)
    expected = choice_metrics(result.equation_network, batch, 0)["nll_per_trial"]
    evaluated = api.evaluate(out / "fitted.spice", data)
    assert evaluated["nll_per_trial"] == pytest.approx(expected, abs=1e-9)
    assert evaluated["nll_per_trial"] == pytest.approx(
        result.metrics["equations"]["train"]["nll_per_trial"], abs=1e-9
    )
    # check, compile and simulate accept it; simulate deals sessions to its participants.
    for command in (["check"], ["compile"], ["simulate", "--sessions", "4", "--trials", "5"]):
        extra = ["-o", str(folder / "sim.csv")] if command[0] == "simulate" else []
        done = spicedsl(*command, str(out / "fitted.spice"), *extra, cwd=folder)
        assert done.returncode == 0, done.stderr
    with open(folder / "sim.csv", newline="") as handle:
        assert {row["participant"] for row in csv.DictReader(handle)} == {"1", "2"}
    # plot draws it alone: the table makes it fully specified.
    drawn = spicedsl("plot", str(out / "fitted.spice"), str(data), "--session", "2",
                     "-o", str(folder / "session.png"), cwd=folder)  # fmt: skip
    assert drawn.returncode == 0, drawn.stderr


def test_the_fit_summarises_each_participant_column(embedding_fit):
    _, _, _, result, _ = embedding_fit
    summary = result.participant_summary().splitlines()
    assert summary[0].startswith("# per participant (2)")
    for name, line in zip(result.participant_table, summary[1:], strict=True):
        values = result.participant_table[name]
        assert line.split()[1] == name
        assert line.split()[2] == f"{np.count_nonzero(values)}/2"


def test_fitting_a_model_with_a_table_keeps_the_tables_values(tmp_path):
    data = simulated(tmp_path, {"1": 0.2, "2": 0.6})
    model = model_with_table(
        tmp_path,
        "participant,alpha\n1,0.2\n2,0.6\n",
        MODEL.replace("param beta > 0 = 3", "param beta > 0"),
    )
    result = api.fit(model, api.read_data(data, api.load_ir(model)), progress=False, **TINY)
    assert result.participant_table["alpha"] == [0.2, 0.6]
    assert abs(result.params["beta"] - 3) < 1
    assert "param alpha in (0, 1) per participant\n" in result.fitted_text


EMBEDDED_BETA = """\
model rw
state v = 0.5
control r = data.reward
module learn_v updates v when chosen
    learn_v = v + 0.3 * (r - v)
param beta > 0
logits = beta * v
embedding size 2 for beta
"""


@pytest.mark.parametrize("per_participant", [False, True])
def test_an_embedded_param_not_per_participant_is_shared_with_a_note(per_participant):
    dataset, _ = api.simulate(TRUTH, 4, 20, seed=2)
    model = EMBEDDED_BETA
    if per_participant:
        model = model.replace("param beta > 0", "param beta > 0 per participant")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = api.fit(model, dataset, progress=False, **TINY)
    notes = [str(w.message) for w in caught if "participant embedding" in str(w.message)]
    if per_participant:
        assert notes == []
        assert "param beta > 0 per participant\n" in result.fitted_text
    else:
        assert notes == [
            "param 'beta' reads the participant embedding but is not declared per participant: "
            "the fitted model gives it one value shared by everyone (declare 'param beta ... "
            "per participant' to keep one per participant)"
        ]
        assert "param beta > 0 = " in result.fitted_text
