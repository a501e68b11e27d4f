"""Time `spicedsl simulate` on 10,000 sessions x 200 trials of examples/q_learning.spice.

Runs the command in a fresh process (start-up included), three times, and prints one
JSON object with the median wall time and the rows written. Run from the repository
root::

    .venv/bin/python benchmarks/bench_simulate.py
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def main() -> None:
    out = Path(tempfile.mkdtemp(prefix="bench_simulate_")) / "data.csv"
    command = [
        sys.executable,
        "-m",
        "spicedsl.cli",
        "simulate",
        "examples/q_learning.spice",
        "--sessions",
        "10000",
        "--trials",
        "200",
        "--seed",
        "1",
        "-o",
        str(out),
    ]
    times = []
    for _ in range(3):
        start = time.perf_counter()
        subprocess.run(command, check=True, cwd=ROOT, capture_output=True)
        times.append(time.perf_counter() - start)
    rows = sum(1 for _ in out.open()) - 1
    print(
        json.dumps(
            {
                "sessions": 10000,
                "trials": 200,
                "rows": rows,
                "median_wall_s": round(statistics.median(times), 2),
                "runs_s": [round(t, 2) for t in times],
            }
        )
    )


if __name__ == "__main__":
    main()
