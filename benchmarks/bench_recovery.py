"""Which structure `spicedsl fit` recovers on the tutorials' workload, seed by seed.

For each seed, 100 sessions x 100 trials are simulated from examples/q_learning.spice
(alpha = 0.3, forgetting 0.2 toward 0.5, beta = 3) to fit and 100 more to hold out.
The seed model (examples/learning_rate.spice) and the forgetting model
(examples/forgetting.spice) are fitted with the defaults; each line of output is one
JSON object with the discovered equations, the held-out NLL of the equation model and of
the true model, and the timings. Run from the repository root::

    .venv/bin/python benchmarks/bench_recovery.py --seeds 1 2 3 4 5
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from spicedsl import api

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3, 4, 5])
    parser.add_argument("--models", nargs="+", default=["learning_rate", "forgetting"])
    args = parser.parse_args()
    for seed in args.seeds:
        train, _ = api.simulate(EXAMPLES / "q_learning.spice", 100, 100, seed=seed)
        held_out, _ = api.simulate(EXAMPLES / "q_learning.spice", 100, 100, seed=1000 + seed)
        truth = api.evaluate(EXAMPLES / "q_learning.spice", held_out)["nll_per_trial"]
        for model in args.models:
            result = api.fit(EXAMPLES / f"{model}.spice", train, seed=seed, progress=False)
            held = api.evaluate(result.fitted_text, held_out)["nll_per_trial"]
            print(
                json.dumps(
                    {
                        "seed": seed,
                        "model": model,
                        "equations": {k: str(v) for k, v in result.equations.items()},
                        "params": {k: round(v, 4) for k, v in result.params.items()},
                        "heldout_nll": round(held, 5),
                        "truth_heldout_nll": round(truth, 5),
                        "gap": round(held - truth, 5),
                        "epochs": len(result.log.train_loss),
                        "training_s": round(result.timings["training_s"], 1),
                        "equations_s": round(result.timings["equations_s"], 1),
                    }
                ),
                flush=True,
            )


if __name__ == "__main__":
    main()
