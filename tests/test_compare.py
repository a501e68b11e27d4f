"""``spicedsl compare``: cross-validation on Dask gives the same table wherever it runs,
loses nothing when a worker dies or the user stops it, and resumes without recomputing."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from distributed import Client

from spicedsl import api
from spicedsl.compare import LOG_FILE, RESULT_FILE, fold_sessions, mean_se
from spicedsl.errors import UsageError
from spicedsl.executor import open_executor
from tests.test_cli import ROOT, assert_no_traceback, spicedsl

MODELS = [
    "examples/q_learning_params.spice",  # classical: params only
    "examples/forgetting.spice",  # discovery: learnable modules
    "examples/learning_rate.spice",  # both
]
NAMES = ["q_learning_params", "forgetting", "learning_rate"]
FOLDS = 3
QUICK = ["--folds", str(FOLDS), "--epochs", "15", "--sindy-sessions", "2"]
QUICK += ["--sindy-trials", "100", "-q"]


@pytest.fixture(scope="module")
def data_file(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("data") / "data.csv"
    dataset, _ = api.simulate(ROOT / "examples" / "q_learning.spice", 12, 25, n_participants=2)
    dataset.to_csv(path)
    return path


def run_compare(
    data: Path, out: Path, *options: str, new_session: bool = False
) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "spicedsl.cli", "compare", *MODELS, str(data), "-o", str(out)]
        + ["--json", *QUICK, *options],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=new_session,
    )


def finish(process: subprocess.Popen[str], timeout: float = 120) -> tuple[int, str, str]:
    try:
        stdout, stderr = process.communicate(timeout=timeout)
    finally:
        process.kill()
    return process.returncode, stdout, stderr


def log_runs(out: Path) -> list[list[dict]]:
    """The events of ``tasks.jsonl``, one list per run."""
    runs: list[list[dict]] = []
    for line in (out / LOG_FILE).read_text().splitlines():
        event = json.loads(line)
        if event["event"] == "run":
            runs.append([])
        runs[-1].append(event)
    return runs


def wait_for_finished_tasks(
    out: Path, process: subprocess.Popen[str], count: int, deadline: float
) -> None:
    while not (out / LOG_FILE).exists() or (out / LOG_FILE).read_text().count('"finished"') < count:
        assert process.poll() is None, process.communicate()
        assert time.monotonic() < deadline, "the tasks did not finish in time"
        time.sleep(0.05)


@pytest.fixture(scope="module")
def reference(data_file, tmp_path_factory) -> tuple[dict, Path]:
    """The table and output folder of the comparison run in one process."""
    out = tmp_path_factory.mktemp("reference") / "out"
    code, stdout, stderr = finish(run_compare(data_file, out, "--workers", "0"))
    assert code == 0, stderr
    return json.loads(stdout), out


def fitted_models(out: Path) -> dict[str, str]:
    return {
        str(p.relative_to(out)): p.read_text() for p in sorted(out.glob("*/fold-*/fitted.spice"))
    }


def test_a_dask_cluster_that_loses_a_worker_gives_the_in_process_table(
    data_file, reference, tmp_path
):
    table, reference_out = reference
    assert [m["model"] for m in table["models"]] != [] and table["folds"] == FOLDS
    assert {m["model"] for m in table["models"]} == set(NAMES)
    scheduler_file = tmp_path / "scheduler.json"
    dask = [sys.executable, "-m", "dask"]
    quiet = {"stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL}
    local = ["--host", "127.0.0.1", "--no-dashboard", "--scheduler-file", str(scheduler_file)]
    processes = [subprocess.Popen([*dask, "scheduler", "--port", "0", *local], **quiet)]
    try:
        deadline = time.monotonic() + 60
        while not scheduler_file.exists():
            assert time.monotonic() < deadline and processes[0].poll() is None
            time.sleep(0.1)
        address = json.loads(scheduler_file.read_text())["address"]
        assert address.startswith("tcp://127.0.0.1:")
        worker = [*dask, "worker", "--nthreads", "1", "--no-nanny", *local]
        workers = [subprocess.Popen(worker, **quiet) for _ in range(2)]
        processes += workers
        out = tmp_path / "out"
        command = run_compare(data_file, out, "--cluster", address)
        processes.append(command)
        wait_for_finished_tasks(out, command, 1, time.monotonic() + 120)
        with Client(address, timeout="10s") as client:
            pids = {pid: worker for worker, pid in client.run(os.getpid).items()}
            lost = client.processing()[pids[workers[0].pid]]
        assert lost, "the worker to kill has no task"
        workers[0].kill()
        code, stdout, stderr = finish(command)
        assert code == 0, stderr
        assert "Traceback" not in stderr
        assert json.loads(stdout) == table
        assert (out / "compare.json").read_text() == (reference_out / "compare.json").read_text()
        assert fitted_models(out) == fitted_models(reference_out)
        assert len(fitted_models(out)) == len(NAMES) * FOLDS
        events = log_runs(out)[-1]
        finished = [e for e in events if e["event"] == "finished"]
        assert len(finished) == len(NAMES) * FOLDS
        # The tasks the killed worker held were run again by the other one.
        survivor = {e["task"]: e["worker"] for e in finished}
        assert {survivor[key] for key in lost} == {f"{socket.gethostname()}:{workers[1].pid}"}

        again = run_compare(data_file, out, "--cluster", address)
        code, stdout, stderr = finish(again)
        assert code == 0, stderr
        assert json.loads(stdout) == table
        second = log_runs(out)[-1]
        assert second[0]["to_run"] == 0
        assert [e["event"] for e in second[1:]] == ["skipped"] * len(NAMES) * FOLDS
    finally:
        for process in reversed(processes):
            process.kill()
            process.wait(timeout=30)


def test_ctrl_c_in_a_terminal_keeps_finished_fits_and_the_run_resumes_to_the_same_table(
    data_file, reference, tmp_path
):
    table, _ = reference
    out = tmp_path / "out"
    command = run_compare(data_file, out, "--workers", "2", new_session=True)
    wait_for_finished_tasks(out, command, 5, time.monotonic() + 120)
    os.killpg(command.pid, signal.SIGINT)  # as Ctrl-C does: to the workers too
    code, stdout, stderr = finish(command)
    assert code == 130 and stdout == "" and "Traceback" not in stderr
    assert f"saved in {out}" in stderr and "run the same command again to resume" in stderr
    saved = sorted(out.glob(f"*/fold-*/{RESULT_FILE}"))
    assert 5 <= len(saved) < len(NAMES) * FOLDS

    resumed = run_compare(data_file, out, "--workers", "0")
    code, stdout, stderr = finish(resumed)
    assert code == 0, stderr
    assert json.loads(stdout) == table
    events = log_runs(out)[-1]
    assert sum(e["event"] == "skipped" for e in events) == len(saved)
    assert sum(e["event"] == "finished" for e in events) == len(NAMES) * FOLDS - len(saved)


def test_a_fit_stopped_in_training_is_not_saved_as_finished(data_file, tmp_path):
    out = tmp_path / "out"
    command = subprocess.Popen(
        [sys.executable, "-m", "spicedsl.cli", "compare", MODELS[0], str(data_file)]
        + ["-o", str(out), "--folds", "2", "--workers", "0", "--epochs", "100000"]
        + ["--convergence", "0"],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 60
    while not (out / LOG_FILE).exists() or '"submitted"' not in (out / LOG_FILE).read_text():
        assert command.poll() is None and time.monotonic() < deadline
        time.sleep(0.05)
    time.sleep(2)  # the first fit is training
    command.send_signal(signal.SIGINT)
    code, _, stderr = finish(command)
    assert code == 130 and "0 of 2 fits are saved" in stderr
    assert not list(out.glob(f"*/fold-*/{RESULT_FILE}"))


def test_the_table_and_the_page(reference, data_file):
    table, out = reference
    nll = [m["nll_per_trial"]["mean"] for m in table["models"]]
    assert [m["rank"] for m in table["models"]] == [1, 2, 3] and nll == sorted(nll)
    for model in table["models"]:
        folds = model["nll_per_trial"]["folds"]
        assert (model["nll_per_trial"]["mean"], model["nll_per_trial"]["se"]) == mean_se(folds)
        assert model["trial_likelihood"]["folds"] == pytest.approx([np.exp(-v) for v in folds])
        assert model["bic_train"]["mean"] == pytest.approx(np.mean(model["bic_train"]["folds"]))
    per_participant = table["per_participant"]
    assert set(per_participant) == {"1", "2"}
    wins = [min(own, key=own.get) for own in per_participant.values()]
    assert [m["best_for"] for m in table["models"]] == [
        wins.count(m["model"]) for m in table["models"]
    ]
    text = (out / "compare.txt").read_text()
    assert text.splitlines()[0].startswith("# 3-fold cross-validation over sessions")
    page = (out / "compare.html").read_text()
    assert '<table id="comparison">' in page and 'id="comparison-figure"' in page
    assert "data:image/png;base64," in page and "http" not in page
    result = spicedsl(
        "evaluate", str(out / "forgetting" / "fold-1" / "fitted.spice"), str(data_file)
    )
    assert result.returncode == 0, result.stderr


def test_folds_deal_every_session_once_and_keep_participants_whole():
    data, _ = api.simulate(ROOT / "examples" / "q_learning.spice", 10, 3, n_participants=3)
    for by in ("session", "participant"):
        folds = fold_sessions(data, 3, by, seed=7)
        assert sorted(np.concatenate(folds).tolist()) == list(range(10))
        assert [f.tolist() for f in folds] == [f.tolist() for f in fold_sessions(data, 3, by, 7)]
    owners = [
        set(data.participant_index[f].tolist()) for f in fold_sessions(data, 3, "participant")
    ]
    assert all(len(o) == 1 for o in owners) and len(set().union(*owners)) == 3


def test_a_subset_numbers_its_participants_anew_and_keeps_their_labels():
    data, _ = api.simulate(ROOT / "examples" / "q_learning.spice", 6, 4, n_participants=3)
    part = data.subset([5, 2])
    assert part.session_ids == (data.session_ids[5], data.session_ids[2])
    assert part.participant_ids == ("3",) and part.participant_index.tolist() == [0, 0]
    assert np.array_equal(part.choices, data.choices[[5, 2]])
    assert np.array_equal(part.reward, data.reward[[5, 2]])


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["data.csv"], "compare needs model files and then a data file"),
        ([*MODELS[:1], "DATA", "--folds", "1"], "--folds must be between 2 and"),
        ([*MODELS[:1], "DATA", "--workers", "0", "--cluster", "tcp://127.0.0.1:1"], "leave out"),
        ([*MODELS[:1], "DATA", "--cluster", "nowhere"], "tcp://HOST:8786"),
        ([*MODELS[:1], *MODELS[:1], "DATA"], "both define model 'q_learning_params'"),
        ([*MODELS[:1], "DATA", "--by", "participant"], "number of participants (1)"),
    ],
)
def test_usage_mistakes(arguments, message, tmp_path):
    data, _ = api.simulate(ROOT / "examples" / "q_learning.spice", 6, 5)
    data.to_csv(tmp_path / "data.csv")
    arguments = [str(tmp_path / "data.csv") if a in ("DATA", "data.csv") else a for a in arguments]
    result = spicedsl("compare", *arguments)
    assert result.returncode == 2, result.stderr
    assert message in result.stderr and result.stdout == ""
    assert_no_traceback(result)


def test_a_folder_that_holds_something_else_is_refused(tmp_path, data_file):
    (tmp_path / "notes.txt").write_text("mine")
    result = spicedsl("compare", MODELS[0], str(data_file), "-o", str(tmp_path))
    assert result.returncode == 1
    assert "holds no comparison; choose another" in result.stderr
    assert sorted(os.listdir(tmp_path)) == ["notes.txt"]


def test_slurm_without_dask_jobqueue_says_what_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "dask_jobqueue", None)  # as if it were not installed
    with (
        pytest.raises(UsageError, match=r"pip install 'spicedsl\[slurm\]'"),
        open_executor(cluster="slurm"),
    ):
        pass


def test_failed_fits_are_listed_logged_and_not_saved(tmp_path):
    data, _ = api.simulate(ROOT / "examples" / "q_learning.spice", 4, 5)
    data.to_csv(tmp_path / "data.csv")
    out = tmp_path / "out"
    result = spicedsl(
        *["compare", MODELS[0], str(tmp_path / "data.csv"), "--folds", "2", "--workers", "0"],
        *["--validation", "0.9", "-o", str(out), "-q"],
    )
    assert result.returncode == 1 and result.stdout == ""
    assert_no_traceback(result)
    assert "error: 2 of 2 fits failed:\n" in result.stderr
    assert "q_learning_params fold 1: error: cannot hold out 0.9 of 2 sessions" in result.stderr
    assert [e["event"] for e in log_runs(out)[-1]].count("failed") == 2
    assert not list(out.glob(f"*/fold-*/{RESULT_FILE}"))
