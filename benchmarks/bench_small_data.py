"""Held-out NLL of per-participant equations against pooled ones on small data (issue 14).

For each data seed s, in a temporary folder: a participant table of 20 rows is drawn as
``bench_participants.py`` draws it (alpha_reward uniform in (0.2, 0.8); a random half
with alpha_no_reward = alpha_reward, the rest uniform in (0.1, 0.4)), and 20 sessions of
100 trials are simulated from examples/individual_differences_truth.spice with that
table (one session per participant). Three models are then scored on the last 30 % of
every session, with the states carried over from its start:

- individual: ``spicedsl fit examples/individual_differences.spice --holdout-last 0.3``
  (per-participant equations and beta through the participant embedding);
- pooled: the same model with everyone sharing (its embedding and ``per participant``
  removed), fitted the same way. It is the closest pooled analog: it differs from the
  individual model in pooling alone. examples/forgetting.spice, the tutorials' pooled
  model, has the same states, modules and beta, but its chosen module's library is of
  degree 1, which cannot write the x * r term of the truth's asymmetric learning rates;
- truth: ``spicedsl evaluate`` of the generating model with the drawn table, on the
  same trials.

The fits use ``--seed s`` and the defaults otherwise (at most 1024 epochs, stopping
early on the validation trials, the 20 % before each session's held-out end);
``--epochs`` caps training. Prints a markdown table of held-out NLL per trial (the
equation model's ``test`` row of each fit's report.json; the trained network's beside
it) and the participants (modules, for the pooled model) whose equations the fit flags
as unstable. Run from the repository root
(several minutes)::

    .venv/bin/python benchmarks/bench_small_data.py --seeds 1 2 3
"""

from __future__ import annotations

import argparse
import json
import math
import shutil
import sys
import tempfile
from pathlib import Path

from bench_participants import MODEL, ROOT, TRUTH, TRUTH_TABLE, spicedsl, write_params

PARTICIPANTS = 20
HOLDOUT = "0.3"


def pooled_text() -> str:
    """The individual model with everyone sharing: no embedding, no ``per participant``."""
    text = (ROOT / MODEL).read_text(encoding="utf-8")
    lines = [line for line in text.splitlines() if not line.startswith("embedding ")]
    pooled = "\n".join(lines).rstrip().replace(" per participant", "")
    pooled = pooled.replace("model individual_differences", "model individual_differences_pooled")
    if pooled.count("per participant") or len(lines) == len(text.splitlines()):
        sys.exit(f"{MODEL} changed: cannot make its pooled version")
    return pooled + "\n"


def fitted(model: Path | str, data: Path, out: Path, seed: int, epochs: int | None) -> dict:
    """Fit ``model`` holding out the end of every session; the held-out metrics and the
    number of participants (modules, for a shared equation) flagged as unstable."""
    options = ["--epochs", str(epochs)] if epochs else []
    spicedsl(
        "fit", str(model), str(data), "--holdout-last", HOLDOUT, "--seed", str(seed),
        "-q", "-o", str(out), *options,
    )  # fmt: skip
    report = json.loads((out / "report.json").read_text())
    flagged = set()
    for found in report["unstable_equations"]:
        flagged |= set(found["participants"] or [found["module"]])
    network = report["metrics"]["network"]["test"]["nll_per_trial"]
    return {**report["metrics"]["equations"]["test"], "network": network, "unstable": len(flagged)}


def run_one(seed: int, trials: int, epochs: int | None, folder: Path) -> dict:
    """Simulate one data set and score the three models on its held-out trials."""
    params = folder / "params.csv"
    data = folder / "data.csv"
    write_params(params, PARTICIPANTS, seed)
    spicedsl(
        "simulate", TRUTH, "--params", str(params), "--sessions", str(PARTICIPANTS),
        "--trials", str(trials), "--seed", str(seed), "-o", str(data),
    )  # fmt: skip
    pooled = folder / "pooled.spice"
    pooled.write_text(pooled_text(), encoding="utf-8")
    truth = folder / "truth.spice"
    text = (ROOT / TRUTH).read_text(encoding="utf-8")
    truth.write_text(text.replace(TRUTH_TABLE, '"params.csv"'), encoding="utf-8")
    evaluated = spicedsl("evaluate", str(truth), str(data), "--holdout-last", HOLDOUT, "--json")
    row = {
        "seed": seed,
        "individual": fitted(MODEL, data, folder / "individual", seed, epochs),
        "pooled": fitted(pooled, data, folder / "pooled", seed, epochs),
        "truth": json.loads(evaluated.stdout),
    }
    counts = {row[name]["n_trials"] for name in ("individual", "pooled", "truth")}
    if len(counts) != 1:
        sys.exit(f"seed {seed}: the models were scored on different trials: {counts}")
    return row


def main() -> None:
    """Run every seed and print the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3], help="(1 2 3)")
    parser.add_argument("--trials", type=int, default=100, help="trials per participant (100)")
    parser.add_argument("--epochs", type=int, help="cap on training epochs (fit's default)")
    args = parser.parse_args()
    rows = []
    for seed in args.seeds:
        folder = Path(tempfile.mkdtemp(prefix=f"bench_small_data_{seed}_"))
        try:
            rows.append(run_one(seed, args.trials, args.epochs, folder))
        finally:
            shutil.rmtree(folder, ignore_errors=True)
        print(f"seed {seed} done", file=sys.stderr, flush=True)
    names = ("individual", "pooled", "truth")
    print(
        f"{PARTICIPANTS} participants x {args.trials} trials, last {HOLDOUT} of each session "
        f"held out; chance {math.log(2):.4f}"
    )
    print()
    print(
        "| data seed | held-out trials | individual | pooled | truth | individual − pooled "
        "| networks: individual, pooled | unstable: individual (participants), pooled |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for row in rows:
        nll = {name: row[name]["nll_per_trial"] for name in names}
        print(
            f"| {row['seed']} | {row['truth']['n_trials']} | {nll['individual']:.4f} "
            f"| {nll['pooled']:.4f} | {nll['truth']:.4f} "
            f"| {nll['individual'] - nll['pooled']:+.4f} "
            f"| {row['individual']['network']:.4f}, {row['pooled']['network']:.4f} "
            f"| {row['individual']['unstable']}, {row['pooled']['unstable']} |"
        )
    mean = {name: sum(row[name]["nll_per_trial"] for row in rows) / len(rows) for name in names}
    networks = [sum(row[name]["network"] for row in rows) / len(rows) for name in names[:2]]
    print(
        f"| mean | | {mean['individual']:.4f} | {mean['pooled']:.4f} | {mean['truth']:.4f} "
        f"| {mean['individual'] - mean['pooled']:+.4f} "
        f"| {networks[0]:.4f}, {networks[1]:.4f} | |"
    )


if __name__ == "__main__":
    main()
