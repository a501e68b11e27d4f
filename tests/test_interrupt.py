"""Signals during `spicedsl fit`: the work done is kept, and an interrupted fit resumes."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from spicedsl import api
from tests.test_cli import ROOT

QUICK = ["--epochs", "15", "--sindy-sessions", "2", "--sindy-trials", "300", "--validation", "0"]


@pytest.fixture(scope="module")
def data_file(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("data") / "data.csv"
    dataset, _ = api.simulate(ROOT / "examples" / "q_learning.spice", 30, 40, seed=4)
    dataset.to_csv(path)
    return path


def start_fit(data: Path, out: Path, *options: str) -> subprocess.Popen[str]:
    command = [sys.executable, "-m", "spicedsl.cli", "fit", "examples/forgetting.spice"]
    return subprocess.Popen(
        [*command, str(data), "-o", str(out), *options],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def test_sigterm_during_training_keeps_the_network_and_writes_the_results(data_file, tmp_path):
    fit = start_fit(data_file, tmp_path / "out", "--epochs", "100000", "--convergence", "0")
    assert fit.stderr.readline().startswith("training: at most 100000 epochs")
    time.sleep(1)
    fit.send_signal(signal.SIGTERM)
    stdout, stderr = fit.communicate(timeout=120)
    assert fit.returncode == 0, stderr
    assert "training was interrupted" in stderr and "Traceback" not in stderr
    assert "x_value_reward_chosen = " in stdout
    written = {p.name for p in (tmp_path / "out").iterdir()}
    assert {"fitted.spice", "network.npz", "report.json", "training.json"} <= written


@pytest.mark.parametrize("stop", [signal.SIGINT, signal.SIGTERM])
def test_an_interrupted_equation_stage_resumes_to_the_same_result(data_file, tmp_path, stop):
    whole = subprocess.run(
        [sys.executable, "-m", "spicedsl.cli", "fit", "examples/forgetting.spice", str(data_file)]
        + ["-o", str(tmp_path / "whole"), "-q", *QUICK],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert whole.returncode == 0, whole.stderr
    out = tmp_path / "out"
    fit = start_fit(data_file, out, "-q", *QUICK)
    deadline = time.monotonic() + 120
    while not (out / "training.json").exists():  # written when training ends
        assert fit.poll() is None and time.monotonic() < deadline
        time.sleep(0.01)
    fit.send_signal(stop)
    _, stderr = fit.communicate(timeout=120)
    assert fit.returncode == 130, stderr
    assert f"--resume {out}" in stderr and "Traceback" not in stderr
    assert not (out / "fitted.spice").exists()

    resumed = subprocess.run(
        [sys.executable, "-m", "spicedsl.cli", "fit", "examples/forgetting.spice", str(data_file)]
        + ["--resume", str(out), "-q", *QUICK],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert resumed.returncode == 0, resumed.stderr
    assert (out / "fitted.spice").read_text() == (tmp_path / "whole" / "fitted.spice").read_text()


def test_resume_refuses_a_network_of_other_settings(data_file, tmp_path):
    out = tmp_path / "out"
    first = subprocess.run(
        [sys.executable, "-m", "spicedsl.cli", "fit", "examples/forgetting.spice", str(data_file)]
        + ["-o", str(out), "-q", *QUICK],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert first.returncode == 0, first.stderr
    other = subprocess.run(
        [sys.executable, "-m", "spicedsl.cli", "fit", "examples/forgetting.spice", str(data_file)]
        + ["--resume", str(out), "-q", *QUICK, "--seed", "3"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert other.returncode == 2
    assert "was trained with another model, data or settings" in other.stderr
