"""Time :func:`spicedsl.runtime.data.load_dataset` on a file of one million trials.

Writes 10,000 sessions x 100 trials of a two-armed drifting bandit (columns session,
choice, reward) to a temporary directory, loads it in a fresh Python process, and prints
one JSON line: the load time, the child's peak resident memory, and that memory just
before the load (the interpreter and imports), so that the load's own share is visible.

Run from the repository root::

    .venv/bin/python benchmarks/bench_load.py
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from spicedsl.runtime.bandit import draw_rewards, drifting_reward_probabilities  # noqa: E402

#: Run in the child: import, note memory, load, report.
CHILD = """
import json, resource, sys, time
from spicedsl.runtime.data import load_dataset
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
start = time.perf_counter()
data = load_dataset(sys.argv[1])
seconds = time.perf_counter() - start
print(json.dumps({"load_s": seconds, "rss_before_load_kib": before, "trials": data.n_trials}))
"""


def write_file(path: Path, n_sessions: int, n_trials: int, seed: int, chunk: int = 500) -> None:
    """Write a bandit data set with random choices and Bernoulli rewards.

    Sessions are made and written ``chunk`` at a time, so that this process stays small
    and the child's peak memory (which Linux carries over from the parent) is the load's.
    """
    rng = np.random.default_rng(seed)
    with open(path, "w", encoding="utf-8") as handle:
        handle.write("session,choice,reward\n")
        for first in range(0, n_sessions, chunk):
            count = min(chunk, n_sessions - first)
            probabilities = drifting_reward_probabilities(rng, count, n_trials, 2)
            choices = rng.integers(0, 2, size=(count, n_trials))
            chosen = np.take_along_axis(probabilities, choices[..., None], axis=2)[..., 0]
            rewards = draw_rewards(rng, chosen).astype(np.int64)
            sessions = np.repeat(np.arange(first, first + count), n_trials)
            rows = zip(
                sessions.tolist(), choices.ravel().tolist(), rewards.ravel().tolist(), strict=True
            )
            handle.writelines(f"s{s},{c},{r}\n" for s, c, r in rows)


def main() -> None:
    """Write the file, load it in a child process and print the measurements."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sessions", type=int, default=10_000)
    parser.add_argument("--trials", type=int, default=100)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder, "trials.csv")
        start = time.perf_counter()
        write_file(path, args.sessions, args.trials, args.seed)
        write_seconds = time.perf_counter() - start
        child = subprocess.run(
            [sys.executable, "-c", CHILD, str(path)],
            cwd=ROOT,
            check=True,
            capture_output=True,
            text=True,
        )
        size = path.stat().st_size
    report = json.loads(child.stdout)
    peak_kib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    print(
        json.dumps(
            {
                "rows": args.sessions * args.trials,
                "file_mb": round(size / 2**20, 1),
                "write_s": round(write_seconds, 2),
                "load_s": round(report["load_s"], 3),
                "peak_rss_mb": round(peak_kib / 1024, 1),
                "rss_before_load_mb": round(report["rss_before_load_kib"] / 1024, 1),
                "trials_loaded": report["trials"],
            }
        )
    )


if __name__ == "__main__":
    main()
