"""How `spicedsl fit` of the participant-embedding model scales with the number of participants.

For each participant count N, in a temporary folder: a participant table of N rows is
drawn (alpha_reward uniform in (0.2, 0.8); a random half learn symmetrically,
alpha_no_reward = alpha_reward, the other half have alpha_no_reward uniform in
(0.1, 0.4)), N sessions of T trials are simulated from
examples/individual_differences_truth.spice with that table (one session per
participant), and examples/individual_differences.spice is fitted with
``spicedsl fit --validation 0`` (each participant has one session, and the validation
split is drawn within participants). The fit runs in its own process under GNU time, so
the wall time includes start-up and the peak resident memory is that fit's alone.

Prints a markdown table (wall time, the report's training and equation-stage times, peak
memory, NLL per trial on the fitted data of the network, of the equations and of the
truth with the drawn table), the growth of the wall
time from each smaller N to the largest, and whether the largest run stayed under
10 minutes and 4 GB. Run from the repository root (several minutes)::

    .venv/bin/python benchmarks/bench_participants.py --participants 10 50 200

``--pooling 0 1`` fits each data set without partial pooling and with it (the fit's
``--pooling``), and adds the ratio of the fit times.
"""

from __future__ import annotations

import argparse
import csv
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
TRUTH = "examples/individual_differences_truth.spice"
TRUTH_TABLE = '"data/individual_differences_params.csv"'  # the table the truth names
MODEL = "examples/individual_differences.spice"
GNU_TIME = "/usr/bin/time"
LIMIT_S = 600.0
LIMIT_MB = 4096.0

#: Run in the child when GNU time is missing: run the command, report its peak memory.
WRAPPER = """
import resource, subprocess, sys
code = subprocess.run(sys.argv[2:]).returncode
with open(sys.argv[1], "w") as handle:
    handle.write(f"0 {resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss}\\n")
sys.exit(code)
"""


def write_params(path: Path, n: int, seed: int) -> None:
    """Write a participant table of ``n`` rows, half of them symmetric learners."""
    rng = np.random.default_rng(seed)
    alpha_reward = rng.uniform(0.2, 0.8, size=n)
    symmetric = np.zeros(n, dtype=bool)
    symmetric[rng.choice(n, size=n // 2, replace=False)] = True
    alpha_no_reward = np.where(symmetric, alpha_reward, rng.uniform(0.1, 0.4, size=n))
    with open(path, "w", encoding="utf-8") as handle:
        handle.write("participant,alpha_reward,alpha_no_reward\n")
        for i in range(n):
            handle.write(f"{i + 1},{alpha_reward[i]:.3f},{alpha_no_reward[i]:.3f}\n")


def fail(what: str, done: subprocess.CompletedProcess) -> None:
    """Stop with the command's exit status and the end of its error output."""
    tail = "\n".join((done.stderr or "").strip().splitlines()[-20:])
    sys.exit(f"{what} failed with exit status {done.returncode}:\n{tail}")


def spicedsl(*args: str) -> subprocess.CompletedProcess:
    """Run a spicedsl command in a fresh process; stop if it fails."""
    done = subprocess.run(
        [sys.executable, "-m", "spicedsl.cli", *args], cwd=ROOT, capture_output=True, text=True
    )
    if done.returncode != 0:
        fail(f"spicedsl {args[0]}", done)
    return done


def measured(args: list[str], stats: Path) -> tuple[float, float, float]:
    """Run a spicedsl command in its own process; return its wall seconds, peak MB and
    CPU seconds (user and system; 0 without GNU time)."""
    command = [sys.executable, "-m", "spicedsl.cli", *args]
    if Path(GNU_TIME).exists():
        command = [GNU_TIME, "-f", "%U %S %e %M", "-o", str(stats), *command]
    else:
        command = [sys.executable, "-c", WRAPPER, str(stats), *command]
    start = time.perf_counter()
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if done.returncode != 0:
        fail(f"spicedsl {args[0]}", done)
    fields = stats.read_text().split()
    if len(fields) < 2:
        sys.exit(f"could not read the peak memory from {stats}: {stats.read_text()!r}")
    cpu = float(fields[0]) + float(fields[1]) if len(fields) == 4 else 0.0
    return seconds, int(fields[-1]) / 1024, cpu


def run_one(n: int, trials: int, seed: int, pooling: int, folder: Path) -> dict:
    """Simulate and fit ``n`` participants of one session each (with ``pooling`` 0 or 1);
    return one table row."""
    params = folder / "params.csv"
    data = folder / "data.csv"
    out = folder / "fit"
    write_params(params, n, seed)
    spicedsl(
        "simulate", TRUTH, "--params", str(params), "--sessions", str(n),
        "--trials", str(trials), "--seed", "1", "-o", str(data),
    )  # fmt: skip
    fit = ["fit", MODEL, str(data), "--validation", "0", "--pooling", str(pooling)]
    wall, peak_mb, cpu = measured([*fit, "-q", "-o", str(out)], folder / "time.txt")
    # The truth itself, with this table, as the yardstick of the NLLs.
    truth = folder / "truth.spice"
    text = (ROOT / TRUTH).read_text(encoding="utf-8")
    truth.write_text(text.replace(TRUTH_TABLE, '"params.csv"'), encoding="utf-8")
    evaluated = spicedsl("evaluate", str(truth), str(data), "--json")
    report = json.loads((out / "report.json").read_text())
    with open(out / "fitted_participants.csv", encoding="utf-8", newline="") as handle:
        fitted = sum(1 for row in csv.reader(handle) if row) - 1
    return {
        "participants": n,
        "pooling": pooling,
        "fitted": fitted,
        "trials": trials,
        "wall_s": wall,
        "cpu_s": cpu,
        "training_s": report["timings"]["training_s"],
        "equations_s": report["timings"]["equations_s"],
        "peak_mb": peak_mb,
        "network_nll": report["metrics"]["network"]["train"]["nll_per_trial"],
        "equations_nll": report["metrics"]["equations"]["train"]["nll_per_trial"],
        "truth_nll": json.loads(evaluated.stdout)["nll_per_trial"],
    }


def main() -> None:
    """Run the fits one after the other and print the table and the growth of time."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--participants", type=int, nargs="+", default=[10, 50, 200])
    parser.add_argument("--trials", type=int, default=100, help="trials each (100)")
    parser.add_argument("--seed", type=int, default=1, help="seed of the participant table")
    parser.add_argument(
        "--pooling", type=int, nargs="+", default=[1], choices=[0, 1], help="fit --pooling (1)"
    )
    args = parser.parse_args()
    if not Path(GNU_TIME).exists():
        note = f"note: {GNU_TIME} not found; a Python wrapper reads the peak memory"
        print(note, file=sys.stderr)
    rows = []
    for n in sorted(args.participants):
        for pooling in args.pooling:
            folder = Path(tempfile.mkdtemp(prefix=f"bench_participants_{n}_"))
            try:
                rows.append(run_one(n, args.trials, args.seed, pooling, folder))
            finally:
                shutil.rmtree(folder, ignore_errors=True)
            took = f"N = {n}, pooling {pooling}: fit took {rows[-1]['wall_s']:.1f} s"
            print(took, file=sys.stderr, flush=True)
    print(
        "| participants | pooling | trials each | fit wall (s) | training (s) | equations (s) "
        "| peak memory (MB) | network NLL/trial | equations NLL/trial | truth NLL/trial |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|")
    for row in rows:
        label = str(row["participants"])
        if row["fitted"] != row["participants"]:
            label += f" ({row['fitted']} fitted)"
        print(
            f"| {label} | {row['pooling']} | {row['trials']} | {row['wall_s']:.1f} "
            f"| {row['training_s']:.1f} | {row['equations_s']:.1f} | {row['peak_mb']:.0f} "
            f"| {row['network_nll']:.5f} | {row['equations_nll']:.5f} | {row['truth_nll']:.5f} |"
        )
    if len(args.pooling) > 1:
        print()
        for n in sorted(args.participants):
            wall = {row["pooling"]: row["wall_s"] for row in rows if row["participants"] == n}
            cpu = {row["pooling"]: row["cpu_s"] for row in rows if row["participants"] == n}
            print(
                f"{n} participants: pooling on / off, fit wall time {wall[1] / wall[0]:.2f}x, "
                f"CPU time {cpu[1] / max(cpu[0], 1e-9):.2f}x ({cpu[0]:.1f} s and {cpu[1]:.1f} s)."
            )
    rows = [row for row in rows if row["pooling"] == args.pooling[-1]]
    largest = rows[-1]
    print()
    ratios = [
        f"{largest['participants']} vs {row['participants']}: "
        f"{largest['wall_s'] / row['wall_s']:.2f}x"
        for row in rows[:-1]
    ]
    if ratios:
        print(f"Wall-time growth, {'; '.join(ratios)}.")
    met = largest["wall_s"] < LIMIT_S and largest["peak_mb"] < LIMIT_MB
    print(
        f"Largest run ({largest['participants']} participants): {largest['wall_s']:.1f} s, "
        f"{largest['peak_mb']:.0f} MB; under 10 minutes and under 4 GB: {'yes' if met else 'no'}."
    )
    print(f"fitted_participants.csv rows: {', '.join(str(row['fitted']) for row in rows)}.")


if __name__ == "__main__":
    main()
