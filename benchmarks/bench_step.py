"""Time one training step of the seed model against autospice 0.2.0, and the compiler.

A training step is what one epoch of full-batch training does: a forward pass of the
network over 100 sessions x 100 trials of a two-armed bandit, the cross-entropy of the
next choices, a backward pass and an Adam step, on one thread. The model is
examples/learning_rate.spice, the seed tutorial's CustomLearningRateRNN. autospice
times the same step of its own implementation of that network, in its own venv,
through the shared harness (``MODE=step``); each round runs it and then ours, so both
see the same machine. The compile time is the wall time of
``spicedsl compile examples/learning_rate.spice`` in a fresh process.

Prints one JSON object. Run from the repository root::

    .venv/bin/python benchmarks/bench_step.py
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from spicedsl.api import load_model  # noqa: E402
from spicedsl.runtime.bandit import draw_rewards, drifting_reward_probabilities  # noqa: E402
from spicedsl.runtime.batch import IGNORE, make_batch  # noqa: E402
from spicedsl.runtime.data import Dataset  # noqa: E402

MODEL = ROOT / "examples" / "learning_rate.spice"

#: Run in a fresh process: compile the model, then say whether torch was imported.
COMPILE_CHILD = """
import sys
from spicedsl.cli import main
code = main(["compile", sys.argv[1], "-o", sys.argv[2]])
print("torch" in sys.modules)
sys.exit(code)
"""


def bandit_dataset(n_sessions: int, n_trials: int, seed: int) -> Dataset:
    """Random choices on a two-armed drifting bandit (the step time does not depend on them)."""
    rng = np.random.default_rng(seed)
    probabilities = drifting_reward_probabilities(rng, n_sessions, n_trials, 2)
    choices = rng.integers(0, 2, size=(n_sessions, n_trials))
    chosen = np.take_along_axis(probabilities, choices[..., None], axis=2)[..., 0]
    return Dataset(
        choices=choices,
        reward=draw_rewards(rng, chosen),
        rewards=None,
        inputs={},
        lengths=np.full(n_sessions, n_trials),
        session_ids=tuple(str(s) for s in range(n_sessions)),
        participant_index=np.zeros(n_sessions, dtype=np.int64),
        participant_ids=("0",),
        n_actions=2,
        choice_base=0,
        reward_range=None,
    )


def spicedsl_step_seconds(reps: int, seed: int) -> float:
    """Mean seconds of one training step of the generated seed model (as the harness does)."""
    torch.manual_seed(seed)
    batch = make_batch(bandit_dataset(100, 100, seed))
    net = load_model(MODEL, n_actions=2)
    optimizer = torch.optim.Adam(net.parameters(), lr=1e-2)

    def step() -> None:
        logits = net(batch.trials, batch.chosen, batch.participants)
        loss = torch.nn.functional.cross_entropy(
            logits.reshape(-1, 2), batch.targets.reshape(-1), ignore_index=IGNORE
        )
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()

    for _ in range(3):
        step()
    start = time.perf_counter()
    for _ in range(reps):
        step()
    return (time.perf_counter() - start) / reps


def autospice_step_seconds(python: Path, script: Path, reps: int) -> float:
    """The harness's mean seconds of one autospice training step (its ``MODE=step``)."""
    env = dict(os.environ, MODE="step", THREADS="1", REPS=str(reps))
    done = subprocess.run(
        [str(python), script.name],
        cwd=script.parent,
        env=env,
        check=True,
        capture_output=True,
        text=True,
    )
    report = next(line for line in done.stdout.splitlines() if line.startswith("{"))
    return float(json.loads(report)["forward_backward_s"])


def compile_seconds(runs: int, output: Path) -> tuple[list[float], list[float], bool]:
    """Wall and CPU (user + system) times of ``spicedsl compile`` in fresh processes, and
    whether it imported torch. On a busy machine the CPU time is the steadier figure."""
    wall, cpu, imported_torch = [], [], False
    for _ in range(runs):
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        start = time.perf_counter()
        done = subprocess.run(
            [sys.executable, "-c", COMPILE_CHILD, str(MODEL), str(output)],
            cwd=ROOT,
            check=True,
            capture_output=True,
            text=True,
        )
        wall.append(time.perf_counter() - start)
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpu.append(after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime)
        imported_torch |= done.stdout.strip() == "True"
    return wall, cpu, imported_torch


def main() -> None:
    """Measure and print the JSON report."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3, help="autospice-then-ours rounds")
    parser.add_argument("--reps", type=int, default=20, help="timed steps per measurement")
    parser.add_argument("--compile-runs", type=int, default=7)
    parser.add_argument("--anchor-python", type=Path, default=Path("/tmp/anchor/bin/python"))
    parser.add_argument(
        "--anchor-script", type=Path, default=Path("/tmp/anchor_work/anchor_tutorial3.py")
    )
    parser.add_argument("--seed", type=int, default=42)
    args = parser.parse_args()
    torch.set_num_threads(1)
    have_anchor = args.anchor_python.exists() and args.anchor_script.exists()
    ours, theirs = [], []
    for _ in range(args.rounds):
        if have_anchor:
            theirs.append(autospice_step_seconds(args.anchor_python, args.anchor_script, args.reps))
        ours.append(spicedsl_step_seconds(args.reps, args.seed))
    output = Path(os.environ.get("TMPDIR", "/tmp"), f"bench_step_{os.getpid()}.py")
    try:
        times, cpu_times, imported_torch = compile_seconds(args.compile_runs, output)
    finally:
        output.unlink(missing_ok=True)
    step = statistics.median(ours)
    report = {
        "batch": [100, 100],
        "threads": 1,
        "spicedsl_step_s": round(step, 5),
        "spicedsl_step_rounds_s": [round(t, 5) for t in ours],
        "autospice_step_s": round(statistics.median(theirs), 5) if theirs else None,
        "autospice_step_rounds_s": [round(t, 5) for t in theirs],
        "ratio": round(step / statistics.median(theirs), 3) if theirs else None,
        "compile_median_s": round(statistics.median(times), 3),
        "compile_runs_s": [round(t, 3) for t in times],
        "compile_cpu_median_s": round(statistics.median(cpu_times), 3),
        "compile_imports_torch": imported_torch,
    }
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
