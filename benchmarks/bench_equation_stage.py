"""The equation stage of the individual-differences workload, side by side for several
source trees, in one run.

The workload is SPICE tutorial 4: data from examples/individual_differences_truth.spice
(2 participants, 100 sessions of 100 trials, seed 1), fitted with
examples/individual_differences.spice. The network is trained once, with the first tree;
then each round reruns only the equation stage (``fit --resume``) of a copy of that fit
with each tree in turn, each its own process with one torch thread. The time is the
report's ``equations_s``; the load average is read before each run. Prints a markdown
table and each tree's median. Run from the repository root::

    .venv/bin/python benchmarks/bench_equation_stage.py --rounds 3 --trees . /path/to/other/tree
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TRUTH = ROOT / "examples" / "individual_differences_truth.spice"
MODEL = ROOT / "examples" / "individual_differences.spice"
LIMIT_S = 15.0


def spicedsl(tree: Path, folder: Path, *args: str) -> None:
    """Run a spicedsl command with the code of ``tree``, in ``folder``."""
    environment = {**os.environ, "PYTHONPATH": str(tree.resolve()), "OMP_NUM_THREADS": "1"}
    command = [sys.executable, "-m", "spicedsl.cli", *args]
    done = subprocess.run(command, cwd=folder, env=environment, capture_output=True, text=True)
    if done.returncode != 0:
        sys.exit(f"{' '.join(args[:2])} with {tree} failed:\n{done.stderr[-2000:]}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--trees", type=Path, nargs="+", default=[ROOT])
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench_equation_stage_") as name:
        folder = Path(name)
        first = args.trees[0]
        spicedsl(
            first,
            folder,
            "simulate",
            str(TRUTH),
            "--sessions",
            "100",
            "--trials",
            "100",
            "--seed",
            "1",
            "-o",
            "train.csv",
        )
        spicedsl(first, folder, "fit", str(MODEL), "train.csv", "-q", "-o", "trained")
        for round_ in range(1, args.rounds + 1):
            for index, tree in enumerate(args.trees):
                out = folder / f"tree{index}"
                shutil.rmtree(out, ignore_errors=True)
                shutil.copytree(folder / "trained", out)
                load = os.getloadavg()[0]
                spicedsl(tree, folder, "fit", str(MODEL), "train.csv", "-q", "--resume", out.name)
                report = json.loads((out / "report.json").read_text())
                terms = ", ".join(f"{m}: {n}" for m, n in report["equation_terms"].items())
                rows.append((round_, str(tree), report["timings"]["equations_s"], load, terms))
    print("| round | tree | equation stage (s) | load | terms per module |")
    print("|---|---|---|---|---|")
    for round_, tree, seconds, load, terms in rows:
        print(f"| {round_} | {tree} | {seconds:.2f} | {load:.2f} | {terms} |")
    print()
    for tree in args.trees:
        median = statistics.median(s for _, t, s, _, _ in rows if t == str(tree))
        print(f"- {tree}: median {median:.2f} s (limit {LIMIT_S:.0f} s)")


if __name__ == "__main__":
    main()
