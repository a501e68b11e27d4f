"""Which structure `spicedsl fit` recovers on the five tutorial workloads, seed by seed.

For each seed and model, 100 sessions x 100 trials are simulated from the model's truth
(seed s) to fit and 100 more (seed 1000 + s) to hold out:

- rescorla_wagner (tutorial 1): examples/rescorla_wagner_truth.spice, alpha = 0.3, no
  forgetting; true terms: chosen {value, reward}, not chosen {value};
- forgetting (tutorial 2) and learning_rate (tutorial 3, the seed): examples/q_learning.spice,
  alpha = 0.3, forgetting 0.2 toward 0.5; true terms: chosen {value, reward} and not chosen
  {1, value}, or a constant learning rate {1} and not chosen {1, value};
- individual_differences (tutorial 4): examples/individual_differences_truth.spice with its
  table (participant 1 alpha = 0.5; participant 2 alpha+ = 0.8, alpha- = 0.2); true terms:
  chosen {value, reward, value * reward} (value * reward for participant 2 alone), not
  chosen {1, value};
- choice_perseverance (tutorial 5): examples/choice_perseverance_truth.spice; true terms:
  reward chosen {value, reward}, reward not chosen {1, value}, choice chosen {1}, choice not
  chosen none.

"Exact" means each module's discovered terms are exactly the true ones (the coefficients
are free: several tutorials do not identify the scale of the values); "but constants"
leaves every constant out of that comparison (the values' offset is free too). For individual
differences the per-participant detail is reported beside it. Each line of output is one
JSON object: the equations, exactness, held-out NLL per trial of the equation model and of
the truth, timings and the load average; ``--table`` prints a markdown table of lines
read from a file instead. Run from the repository root::

    .venv/bin/python benchmarks/bench_recovery.py --seeds 1 2 3 4 5
    .venv/bin/python benchmarks/bench_recovery.py --models learning_rate forgetting \\
        --seeds 1 2 3 4 5 6 7 8 9 10 --degree 2 --ensemble 1 16
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path

import numpy as np
import sympy

from spicedsl import api

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"

ONE = ()
VALUE = (("x_value_reward", 1),)
REWARD = (("c_reward", 1),)
VALUE_REWARD = (("x_value_reward", 1), ("c_reward", 1))
CHOICE = (("x_value_choice", 1),)

#: Model -> its truth and the true terms of each learnable module.
WORKLOADS = {
    "rescorla_wagner": (
        "rescorla_wagner_truth.spice",
        {"x_value_reward_chosen": {VALUE, REWARD}, "x_value_reward_not_chosen": {VALUE}},
    ),
    "forgetting": (
        "q_learning.spice",
        {"x_value_reward_chosen": {VALUE, REWARD}, "x_value_reward_not_chosen": {ONE, VALUE}},
    ),
    "learning_rate": (
        "q_learning.spice",
        {"x_learning_rate_reward": {ONE}, "x_value_reward_not_chosen": {ONE, VALUE}},
    ),
    "individual_differences": (
        "individual_differences_truth.spice",
        {
            "x_value_reward_chosen": {VALUE, REWARD, VALUE_REWARD},
            "x_value_reward_not_chosen": {ONE, VALUE},
        },
    ),
    "choice_perseverance": (
        "choice_perseverance_truth.spice",
        {
            "x_value_reward_chosen": {VALUE, REWARD},
            "x_value_reward_not_chosen": {ONE, VALUE},
            "x_value_choice_chosen": {ONE},
            "x_value_choice_not_chosen": set(),
        },
    ),
}


def terms(equation) -> set:
    return {powers for _, powers in equation.terms}


def exact_but_constants(model: str, equations: dict[str, str]) -> bool:
    """Whether the printed ``equations`` have the truth's terms once every constant is
    left out: the truth up to where the values' free offset sits (a constant in one
    module or another; the choices pin it only through the states' initial values)."""
    truth = WORKLOADS[model][1]
    for module, text in equations.items():
        found = {
            monomial
            for monomial in (
                term.as_coeff_Mul()[1] for term in sympy.Add.make_args(sympy.sympify(text))
            )
            if monomial != 1
        }
        expected = {
            sympy.Mul(*(sympy.Symbol(name) ** power for name, power in powers))
            for powers in truth[module]
            if powers
        }
        if found != expected:
            return False
    return True


def participant_detail(result) -> str | None:
    """For individual differences: which participants have the value * reward term."""
    equation = result.discovered.get("x_value_reward_chosen")
    if equation is None or equation.per_participant is None:
        return None
    powers = [p for _, p in equation.terms]
    if VALUE_REWARD not in powers:
        return "no participant has value * reward"
    index = powers.index(VALUE_REWARD)
    having = [i + 1 for i, row in enumerate(equation.per_participant) if row[index] != 0]
    return f"value * reward for participant(s) {having}"


def run(model: str, seed: int, ensemble: int, degree: int | None) -> dict:
    truth_file, truth_terms = WORKLOADS[model]
    truth = EXAMPLES / truth_file
    train, _ = api.simulate(truth, 100, 100, seed=seed)
    held_out, _ = api.simulate(truth, 100, 100, seed=1000 + seed)
    truth_nll = api.evaluate(truth, held_out)["nll_per_trial"]
    options = {"ensemble": ensemble} | ({"degree": degree} if degree else {})
    load = os.getloadavg()[0]
    result = api.fit(EXAMPLES / f"{model}.spice", train, seed=seed, progress=False, **options)
    with tempfile.TemporaryDirectory(prefix="bench_recovery_") as folder:
        saved = result.save(folder, overwrite=True)  # a participant table lies beside it
        held = api.evaluate(saved / "fitted.spice", held_out)["nll_per_trial"]
    exact = all(terms(result.discovered[m]) == t for m, t in truth_terms.items())
    return {
        "seed": seed,
        "model": model,
        "ensemble": ensemble,
        "degree": degree,
        "exact": exact,
        "equations": {k: str(v) for k, v in result.equations.items()},
        "participants": participant_detail(result),
        "params": {k: round(v, 4) for k, v in result.params.items()},
        "heldout_nll": round(held, 5),
        "truth_heldout_nll": round(truth_nll, 5),
        "gap": round(held - truth_nll, 5),
        "epochs": len(result.log.train_loss),
        "training_s": round(result.timings["training_s"], 1),
        "equations_s": round(result.timings["equations_s"], 1),
        "load": round(load, 2),
    }


def table(lines: list[dict]) -> str:
    """A markdown table of result lines, then exact counts per model and ensemble size."""
    out = [
        "| model | ensemble | seed | exact | but constants | held-out NLL | truth | gap "
        "| train + eq (s) | load |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in lines:
        offset = exact_but_constants(r["model"], r["equations"])
        out.append(
            f"| {r['model']} | {r['ensemble']} | {r['seed']} | {'yes' if r['exact'] else 'no'} "
            f"| {'yes' if offset else 'no'} "
            f"| {r['heldout_nll']:.5f} | {r['truth_heldout_nll']:.5f} | {r['gap']:+.5f} "
            f"| {r['training_s']} + {r['equations_s']} | {r['load']} |"
        )
    out.append("")
    groups: dict[tuple, list[dict]] = {}
    for r in lines:
        groups.setdefault((r["model"], r["ensemble"], r["degree"]), []).append(r)
    for (model, ensemble, degree), rows in groups.items():
        exact = sum(r["exact"] for r in rows)
        offset = sum(exact_but_constants(model, r["equations"]) for r in rows)
        gaps = [r["gap"] for r in rows]
        out.append(
            f"- {model}, ensemble {ensemble}{f', degree {degree}' if degree else ''}: exact "
            f"in {exact} of {len(rows)} seeds, {offset} but for constants; held-out gap at "
            f"most {max(gaps):+.5f} "
            f"(mean {np.mean(gaps):+.5f})"
        )
    return "\n".join(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3, 4, 5])
    parser.add_argument("--models", nargs="+", default=list(WORKLOADS), choices=list(WORKLOADS))
    parser.add_argument("--ensemble", type=int, nargs="+", default=[1], help="sizes to run")
    parser.add_argument("--degree", type=int, help="degree of every module's library")
    parser.add_argument("--table", metavar="LINES", help="print a table of these result lines")
    args = parser.parse_args()
    if args.table:
        with open(args.table, encoding="utf-8") as handle:
            print(table([json.loads(line) for line in handle if line.strip()]))
        return
    for seed in args.seeds:
        for model in args.models:
            for ensemble in args.ensemble:
                print(json.dumps(run(model, seed, ensemble, args.degree)), flush=True)
    print("done", file=sys.stderr)


if __name__ == "__main__":
    main()
