"""What an ensemble costs: `spicedsl fit --ensemble N` beside `--ensemble 1`, in one run.

On the seed workload (examples/learning_rate.spice on examples/data/q_learning.csv), each
round runs the single fit and then the ensemble fit, each as its own process with the
default settings; the wall time includes start-up and writing the results. The rounds
alternate the two so that both see the same load on a shared machine; the load average
is read before each fit. Prints a markdown table and the ratio of the medians. Run from
the repository root::

    .venv/bin/python benchmarks/bench_ensemble.py --rounds 3
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MODEL = "examples/learning_rate.spice"
DATA = "examples/data/q_learning.csv"
LIMIT = 2.5


def fit(members: int, folder: Path) -> dict:
    """Run one fit as its own process; its wall time, load before it and its report."""
    out = folder / f"ensemble{members}"
    command = [sys.executable, "-m", "spicedsl.cli", "fit", MODEL, DATA, "-q", "-o", str(out)]
    command += ["--overwrite", "--ensemble", str(members)]
    load = os.getloadavg()[0]
    start = time.perf_counter()
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True)
    wall = time.perf_counter() - start
    if done.returncode != 0:
        sys.exit(f"the fit with --ensemble {members} failed:\n{done.stderr[-2000:]}")
    report = json.loads((out / "report.json").read_text())
    return {
        "members": members,
        "wall_s": wall,
        "load": load,
        "training_s": report["timings"]["training_s"],
        "equations_s": report["timings"]["equations_s"],
        "epochs": report["training"]["epochs_run"],
        "fitted": (out / "fitted.spice").read_text(),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--members", type=int, default=16)
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench_ensemble_") as folder:
        for round_ in range(1, args.rounds + 1):
            for members in (1, args.members):
                row = fit(members, Path(folder)) | {"round": round_}
                rows.append(row)
                print(
                    f"round {round_}, --ensemble {members}: {row['wall_s']:.1f} s", file=sys.stderr
                )
    print("| round | ensemble | wall (s) | training (s) | equations (s) | epochs | load |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['round']} | {r['members']} | {r['wall_s']:.1f} | {r['training_s']:.1f} "
            f"| {r['equations_s']:.1f} | {r['epochs']} | {r['load']:.2f} |"
        )
    single = statistics.median(r["wall_s"] for r in rows if r["members"] == 1)
    many = statistics.median(r["wall_s"] for r in rows if r["members"] == args.members)
    ratio = many / single
    verdict = "met" if ratio <= LIMIT else "missed"
    print()
    print(
        f"Median wall time: {single:.1f} s for --ensemble 1, {many:.1f} s for --ensemble "
        f"{args.members}: ratio {ratio:.2f} (limit {LIMIT}: {verdict})."
    )
    fitted = {r["fitted"] for r in rows if r["members"] == args.members}
    print(f"Ensemble fitted.spice identical across rounds: {'yes' if len(fitted) == 1 else 'no'}.")


if __name__ == "__main__":
    main()
