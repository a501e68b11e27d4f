"""Fit and score models of the two public human data sets the way published work does.

Each model file under ``examples/real/`` is fitted with ``spicedsl fit --holdout-last F``
(the last fraction F of every session held out, states carried over from its start) in
its own process under GNU time, and scored on the held-out trials. The GRU baseline
(``spicedsl baseline``) runs on the same split when ``--gru`` is given. Prints a markdown
table: held-out NLL per trial and trial likelihood exp(-NLL) of the equation model, the
number of held-out trials, the equations' terms per module, wall time and peak memory.

The data are read from ``../shared/data/real/`` beside the repository (not part of it).
Run from the repository root::

    .venv/bin/python benchmarks/bench_real.py sugawara --gru
    .venv/bin/python benchmarks/bench_real.py bahrami --gru
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT.parent / "shared" / "data" / "real"
SPICEDSL = str(Path(sys.executable).parent / "spicedsl")

STUDIES = {
    "sugawara": (
        "sugawara2021.csv",
        [
            "sugawara_rw",
            "sugawara_rw_forgetting",
            "sugawara_rw_perseveration",
            "sugawara_rw_individual",
            "sugawara_rw_forgetting_individual",
            "sugawara_rw_perseveration_individual",
            "sugawara_discovery",
            "sugawara_discovery_embedding",
            "sugawara_discovery_embedding_modules",
        ],
    ),
    "bahrami": ("bahrami2020.csv", ["bahrami_rw", "bahrami_discovery"]),
}


def timed(command: list[str], log: Path) -> tuple[float, float]:
    """Run ``command`` under GNU time; its wall time (s) and peak memory (MB)."""
    with open(log, "w") as err:
        done = subprocess.run(
            ["/usr/bin/time", "-f", "TIME %e %M", *command],
            cwd=ROOT,
            stdout=subprocess.DEVNULL,
            stderr=err,
        )
    text = log.read_text()
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed:\n{text}")
    wall, kilobytes = re.findall(r"TIME ([\d.]+) (\d+)", text)[-1]
    return float(wall), int(kilobytes) / 1024


def terms_per_module(report: dict) -> float | None:
    """The mean number of terms of the discovered equations (None without any)."""
    counts = list(report["equation_terms"].values())
    return sum(counts) / len(counts) if counts else None


def row(name: str, report: dict, stage: str, wall: float, memory: float) -> str:
    test = report["metrics"][stage]["test"]
    terms = terms_per_module(report) if stage == "equations" else None
    shown = "—" if terms is None else f"{terms:.1f}"
    return (
        f"| {name} | {test['nll_per_trial']:.4f} | {test['trial_likelihood']:.4f} | "
        f"{test['n_trials']} | {shown} | {wall:.0f} s | {memory:.0f} MB |"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("study", choices=sorted(STUDIES))
    parser.add_argument("--holdout-last", default="0.3")
    parser.add_argument("--models", nargs="*", help="a subset of the study's models")
    parser.add_argument("--gru", action="store_true", help="also train the GRU baseline")
    args = parser.parse_args()
    data_name, models = STUDIES[args.study]
    data = str(DATA / data_name)
    split = ["--holdout-last", args.holdout_last]
    print(f"{data_name}, the last {args.holdout_last} of every session held out\n")
    print(
        "| model | held-out NLL/trial | trial likelihood | trials | terms/module | wall "
        "| peak memory |"
    )
    print("|---|---|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as tmp:
        for model in args.models or models:
            out = Path(tmp, model)
            command = [SPICEDSL, "fit", f"examples/real/{model}.spice", data, *split]
            wall, memory = timed([*command, "-q", "-o", str(out)], Path(tmp, f"{model}.log"))
            report = json.loads((out / "report.json").read_text())
            print(row(model, report, "equations", wall, memory), flush=True)
        if args.gru:
            out = Path(tmp, "gru")
            model = f"examples/real/{(args.models or models)[0]}.spice"
            command = [SPICEDSL, "baseline", model, data, *split, "-q", "-o", str(out)]
            wall, memory = timed(command, Path(tmp, "gru.log"))
            report = json.loads((out / "report.json").read_text())
            print(row("GRU (16 units)", report, "network", wall, memory), flush=True)


if __name__ == "__main__":
    main()
