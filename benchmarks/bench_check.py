"""Time ``spicedsl check examples/learning_rate.spice``, as a user runs it.

Runs the command in a fresh process ``--runs`` times (default 20) and prints one JSON
line: the median and fastest wall time, the goal (a median under 0.5 s), and whether the
check imported torch or sympy (it must not: neither is needed to check a model).

Run from the repository root::

    .venv/bin/python benchmarks/bench_check.py
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
GOAL_S = 0.5

#: Run in the child: the CLI's own entry point, then a look at what it imported.
CHILD = """
import sys
from spicedsl.cli import main
code = main(["check", sys.argv[1]])
heavy = [name for name in ("torch", "sympy", "numpy") if name in sys.modules]
print("IMPORTED", ",".join(heavy), file=sys.stderr)
sys.exit(code)
"""


def time_command(command: list[str], runs: int) -> list[float]:
    """Wall-clock seconds of each of ``runs`` runs of ``command``, which must succeed."""
    seconds = []
    for _ in range(runs):
        start = time.perf_counter()
        subprocess.run(command, cwd=ROOT, check=True, capture_output=True)
        seconds.append(time.perf_counter() - start)
    return seconds


def main() -> None:
    """Time the check and print the measurements."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--model", default="examples/learning_rate.spice")
    args = parser.parse_args()
    seconds = time_command([sys.executable, "-m", "spicedsl.cli", "check", args.model], args.runs)
    probe = subprocess.run(
        [sys.executable, "-c", CHILD, args.model],
        cwd=ROOT,
        check=True,
        capture_output=True,
        text=True,
    )
    imported = probe.stderr.rsplit("IMPORTED", 1)[1].split()
    heavy = imported[0].split(",") if imported else []
    median = statistics.median(seconds)
    print(
        json.dumps(
            {
                "command": f"spicedsl check {args.model}",
                "runs": args.runs,
                "median_s": round(median, 3),
                "min_s": round(min(seconds), 3),
                "goal_s": GOAL_S,
                "meets_goal": median < GOAL_S,
                "imports_torch": "torch" in heavy,
                "imports_sympy": "sympy" in heavy,
                "imports_numpy": "numpy" in heavy,
            }
        )
    )


if __name__ == "__main__":
    main()
