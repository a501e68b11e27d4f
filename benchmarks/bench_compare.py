"""``spicedsl compare`` of the five tutorial-family models on the seed workload, in this
process and on the local Dask cluster, in one run; the scheduler's cost per task; the
task times of one fold at a larger scale, for an estimate of a cluster run.

1. Start-up of the local cluster, and the scheduler's cost per task: many tasks that do
   nothing, through :mod:`spicedsl.executor`, after a first round that warms the workers.
2. ``spicedsl compare MODELS examples/data/q_learning.csv --folds 5`` with
   ``--workers 0`` and on the local cluster (one worker per core), each as a fresh
   process (wall times include start-up); the two tables must be equal.
3. With ``--scale-participants P`` (default 1000): P participants with one session of
   100 trials each (simulated from examples/q_learning.spice), and each model's first
   fold (a fit to 4/5 of them, scored on the rest) as a task on the local cluster: the
   task times of that workload.

Prints one JSON object. Run from the repository root::

    .venv/bin/python benchmarks/bench_compare.py
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
MODELS = [
    "examples/q_learning_params.spice",
    "examples/rescorla_wagner.spice",
    "examples/forgetting.spice",
    "examples/learning_rate.spice",
    "examples/choice_perseverance.spice",
]
DATA = "examples/data/q_learning.csv"
FOLDS = 5


def load() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def scheduler_cost(workers: int, n_tasks: int) -> dict[str, float]:
    """Seconds to start the local cluster, and per task that does nothing."""
    from spicedsl.executor import Task, open_executor

    start = time.perf_counter()
    with open_executor(workers) as executor:
        warm = [Task(f"warm-{i}", len, ((),)) for i in range(workers * 2)]
        list(executor.run(warm, progress=False))
        started = time.perf_counter() - start
        tasks = [Task(f"noop-{i}", len, ((),)) for i in range(n_tasks)]
        begin = time.perf_counter()
        list(executor.run(tasks, progress=False))
        per_task = (time.perf_counter() - begin) / n_tasks
    return {"cluster_start_s": round(started, 2), "seconds_per_noop_task": round(per_task, 5)}


def compare(out: Path, *options: str) -> tuple[dict, float]:
    start = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-m", "spicedsl.cli", "compare", *MODELS, DATA]
        + ["--folds", str(FOLDS), "-o", str(out), "--json", "-q", *options],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(done.stdout), time.perf_counter() - start


def task_times(out: Path) -> dict[str, list[float]]:
    """Each model's task seconds, as its worker measured them, from the task log."""
    times: dict[str, list[float]] = {}
    for line in (out / "tasks.jsonl").read_text().splitlines():
        event = json.loads(line)
        if event["event"] == "finished":
            times.setdefault(event["task"].split("-fold")[0], []).append(event["seconds"])
    return times


def scaled_task_times(participants: int, workers: int) -> dict[str, float]:
    """Seconds of each model's first-fold task with ``participants`` participants."""
    from spicedsl import api
    from spicedsl.compare import fit_fold, fold_seed, fold_sessions
    from spicedsl.executor import Task, open_executor

    data, _ = api.simulate(
        ROOT / "examples/q_learning.spice", participants, 100, n_participants=participants
    )
    held_out = fold_sessions(data, FOLDS, "participant")[0]
    with open_executor(workers) as executor:
        shared = executor.shared(data)
        tasks = [
            Task(
                Path(m).stem,
                fit_fold,
                ((ROOT / m).read_text(), shared, held_out, fold_seed(0, 0), {}),
            )
            for m in MODELS
        ]
        outcomes = list(executor.run(tasks, progress=False))
    for outcome in outcomes:
        assert outcome.error is None, outcome.error
    return {o.task.key: round(o.seconds, 1) for o in outcomes}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, default=os.cpu_count(), help="local cluster")
    parser.add_argument("--noop-tasks", type=int, default=500)
    parser.add_argument("--scale-participants", type=int, default=1000, help="0: skip")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench_compare_"))
    report: dict[str, object] = {"workers": args.workers, "load_before": load()}
    report["scheduler"] = scheduler_cost(args.workers, args.noop_tasks)

    here, here_s = compare(work / "here", "--workers", "0")
    cluster, cluster_s = compare(work / "cluster", "--workers", str(args.workers))
    assert here == cluster, "the tables differ"
    times = task_times(work / "cluster")
    busy = sum(sum(t) for t in times.values())
    report["compare"] = {
        "in_process_wall_s": round(here_s, 1),
        "local_cluster_wall_s": round(cluster_s, 1),
        "speed_up": round(here_s / cluster_s, 2),
        "tables_equal": True,
        "task_seconds_sum": round(busy, 1),
        "overhead_per_task_s": round(
            (cluster_s * args.workers - busy) / sum(map(len, times.values())), 2
        ),
        "task_seconds": {m: [round(t, 1) for t in ts] for m, ts in times.items()},
        "slowest_fold_over_mean": round(
            max(max(ts) / statistics.mean(ts) for ts in times.values()), 2
        ),
        "table": here,
    }
    report["load_after_compare"] = load()
    if args.scale_participants:
        report["scaled"] = {
            "participants": args.scale_participants,
            "first_fold_task_seconds": scaled_task_times(args.scale_participants, args.workers),
        }
    report["load_after"] = load()
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
