"""The whole seed workload, spicedsl against autospice 0.2.0, side by side in one run.

For each seed, the shared harness (../shared/bench/anchor_tutorial3.py, run in the
autospice venv) simulates the tutorial's data, writes it as CSV and fits autospice's
version of the seed model (1024 epochs, one thread). spicedsl then fits
examples/learning_rate.spice with its defaults on the very same CSV, as
``spicedsl fit`` in a fresh process, so both totals include start-up. Held-out NLL is
measured on one further data set (harness seed 7) for spicedsl's equation model and for
the true model (examples/q_learning.spice).

Prints one JSON line per seed and a summary. Run from the repository root::

    .venv/bin/python benchmarks/bench_fit.py --anchor-python /tmp/anchor/bin/python --seeds 42
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
HARNESS = ROOT.parent / "shared" / "bench" / "anchor_tutorial3.py"


def run_anchor(python: str, seed: int, csv: Path, mode: str | None = None) -> tuple[dict, float]:
    env = {**os.environ, "SEED": str(seed), "CSV_OUT": str(csv), "THREADS": "1"}
    if mode:
        env["MODE"] = mode
    start = time.perf_counter()
    done = subprocess.run(
        [python, str(HARNESS)], env=env, capture_output=True, text=True, check=True, cwd=csv.parent
    )
    seconds = time.perf_counter() - start
    match = re.search(r"^\{.*\}\s*\Z", done.stdout, re.S | re.M)
    return (json.loads(match.group(0)) if match and mode is None else {}), seconds


def spicedsl(*args: str) -> tuple[subprocess.CompletedProcess, float]:
    start = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-m", "spicedsl.cli", *args],
        capture_output=True,
        text=True,
        check=True,
        cwd=ROOT,
    )
    return done, time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--anchor-python", default="/tmp/anchor/bin/python")
    parser.add_argument("--seeds", type=int, nargs="+", default=[42])
    parser.add_argument("--no-anchor-fit", action="store_true", help="only simulate with it")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench_fit_"))
    heldout = work / "heldout.csv"
    run_anchor(args.anchor_python, 7, heldout, mode="data")
    truth, _ = spicedsl("evaluate", "examples/q_learning.spice", str(heldout), "--json")
    truth_nll = json.loads(truth.stdout)["nll_per_trial"]
    for seed in args.seeds:
        csv = work / f"seed{seed}.csv"
        mode = "data" if args.no_anchor_fit else None
        anchor, anchor_s = run_anchor(args.anchor_python, seed, csv, mode)
        out = work / f"fit{seed}"
        _, ours_s = spicedsl("fit", "examples/learning_rate.spice", str(csv), "-o", str(out), "-q")
        report = json.loads((out / "report.json").read_text())
        held, _ = spicedsl("evaluate", str(out / "fitted.spice"), str(heldout), "--json")
        row = {
            "seed": seed,
            "autospice_total_s": round(anchor_s, 1),
            "autospice_rnn_s": anchor.get("rnn_s"),
            "autospice_sindy_s": anchor.get("sindy_s"),
            "autospice_equations": anchor.get("equations"),
            "spicedsl_total_s": round(ours_s, 1),
            "spicedsl_training_s": round(report["timings"]["training_s"], 1),
            "spicedsl_equations_s": round(report["timings"]["equations_s"], 1),
            "spicedsl_epochs": report["training"]["epochs_run"],
            "ratio_total": round(ours_s / anchor_s, 3) if not args.no_anchor_fit else None,
            "spicedsl_equations": report["equations"],
            "spicedsl_train_nll_equations": round(
                report["metrics"]["equations"]["train"]["nll_per_trial"], 5
            ),
            "spicedsl_heldout_nll_equations": round(json.loads(held.stdout)["nll_per_trial"], 5),
            "truth_heldout_nll": round(truth_nll, 5),
        }
        print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
