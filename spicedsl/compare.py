"""``spicedsl compare``: which of several models best predicts choices it has not seen.

K-fold cross-validation. The sessions (or, ``by="participant"``, the participants with
all their sessions) are dealt at random into K folds. Every model is fitted
(:func:`spicedsl.api.fit`, with its validation split inside the training folds) on the
other folds and scored (:func:`spicedsl.api.evaluate`) on its own fold; participants it
never saw get the mean values of its participant table. Classical models (params only)
and discovery models (learnable modules) are treated alike.

Each (model, fold) is one task of :mod:`spicedsl.executor`, sent the model text and the
data (workers need not see the files). Its seed comes from the comparison's seed and
the fold, and the folds from the comparison's seed, so the results do not depend on
where the tasks ran.

With an output folder, each finished task is written there at once, atomically
(``MODEL/fold-K/``: the fitted model, ``report.json``, ``network.npz``, then
``result.json``), and running the same comparison again skips the tasks whose results
are there. ``tasks.jsonl`` logs each run: one JSON object a line, with ``event`` one of
``run``, ``skipped``, ``submitted``, ``finished``, ``failed``.
"""

from __future__ import annotations

import datetime
import hashlib
import json
import math
import pickle
import tempfile
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import numpy as np

from spicedsl import __version__
from spicedsl.errors import DataError, FitError, SpiceError, UsageError
from spicedsl.executor import Task, open_executor
from spicedsl.files import write_atomic
from spicedsl.runtime.data import Dataset

#: What the folds deal out.
FOLD_BY = ("session", "participant")
#: Files of an output folder.
LOG_FILE = "tasks.jsonl"
RESULT_FILE = "result.json"
FOLDS_FILE = "folds.json"
TABLE_JSON, TABLE_TEXT, PAGE = "compare.json", "compare.txt", "compare.html"


@dataclass(frozen=True)
class Candidate:
    """A model to compare: its name (from its ``model`` line), its file and its text."""

    name: str
    path: str
    text: str


def read_candidates(paths: Sequence[str | Path], data: Dataset) -> list[Candidate]:
    """Check the model files for a comparison on ``data``; their :class:`Candidate`.

    Raises
    ------
    UsageError
        Two models with the same name, or one that names a participant table (its
        values are tied to a file the workers may not see).
    DataError
        A model whose action count is not the data's.
    """
    from spicedsl.frontend import load_ir, read_source

    found: dict[str, Candidate] = {}
    for path in paths:
        model = load_ir(Path(path))
        if model.name in found:
            raise UsageError(
                f"{found[model.name].path} and {path} both define model '{model.name}'; "
                "rename one: the results are filed under the model's name"
            )
        if model.participant_table is not None:
            raise UsageError(
                f"{path}: compare cannot take a model that names a participant table yet; "
                "declare its per-participant params without the table to fit them"
            )
        if model.n_actions not in (None, data.n_actions):
            raise DataError(
                f"model '{model.name}' has {model.n_actions} actions but the data has "
                f"{data.n_actions}"
            )
        found[model.name] = Candidate(model.name, str(path), read_source(Path(path)).text)
    return list(found.values())


def fold_sessions(data: Dataset, folds: int, by: str = "session", seed: int = 0) -> list:
    """Each fold's held-out sessions (indices, ascending): the sessions, or the
    participants, dealt at random (from ``seed``) into ``folds`` folds of near-equal size.

    >>> from spicedsl.api import simulate
    >>> data, _ = simulate("examples/q_learning.spice", 5, 3, n_participants=2)
    >>> [f.tolist() for f in fold_sessions(data, 2, "participant")]
    [[0, 2, 4], [1, 3]]
    """
    if by not in FOLD_BY:
        raise UsageError(f"folds are dealt by {' or '.join(FOLD_BY)}, not {by!r}")
    units = len(data.session_ids) if by == "session" else len(data.participant_ids)
    if not 2 <= folds <= units:
        raise UsageError(f"--folds must be between 2 and the number of {by}s ({units})")
    dealt = np.array_split(np.random.default_rng(seed).permutation(units), folds)
    if by == "session":
        return [np.sort(part) for part in dealt]
    return [np.flatnonzero(np.isin(data.participant_index, part)) for part in dealt]


def fold_seed(seed: int, fold: int) -> int:
    """The fit seed of fold ``fold`` (from 0) of a comparison with ``seed``.

    >>> fold_seed(0, 1) == fold_seed(0, 1) != fold_seed(0, 2)
    True
    """
    return int(np.random.SeedSequence([seed, fold]).generate_state(1)[0])


def fit_fold(
    text: str, data: Dataset, held_out: np.ndarray, seed: int, options: dict[str, object]
) -> dict[str, object]:
    """One task: fit the model ``text`` to the sessions of ``data`` not in ``held_out``
    and score it on those in ``held_out``.

    Returns
    -------
    dict
        ``files``: the fit's output folder (name -> bytes); ``held_out``: NLL per
        trial, accuracy and trials of the held-out sessions; ``participants``: each
        held-out participant's NLL per trial and trials; ``train``: BIC, NLL per trial
        and trials of the fitted model on the training sessions; ``notes``: what the
        fit warned about.
    """
    from spicedsl.api import evaluate, fit

    train = data.subset(np.setdiff1d(np.arange(len(data.session_ids)), held_out))
    test = data.subset(held_out)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = fit(text, train, seed=seed, progress=False, **options)
    if result.log.stopped == "interrupted":  # Ctrl-C in this process: the fit is not whole
        raise KeyboardInterrupt
    with tempfile.TemporaryDirectory() as tmp:
        folder = result.save(Path(tmp, "fit"))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the table's rows of the other fold are unused
            scores = evaluate(folder / "fitted.spice", test, "mean")
            training = evaluate(folder / "fitted.spice", train, "mean")
        files = {path.name: path.read_bytes() for path in sorted(folder.iterdir())}
    own = {"nll_per_trial": scores["nll_per_trial"], "n_trials": scores["n_trials"]}
    return {
        "files": files,
        "held_out": {k: scores[k] for k in ("nll_per_trial", "accuracy", "n_trials")},
        "participants": scores.get("participants", {test.participant_ids[0]: own}),
        "train": {k: training[k] for k in ("bic", "nll_per_trial", "n_trials", "n_params")},
        "notes": list(dict.fromkeys(str(w.message) for w in caught)),
    }


@dataclass(frozen=True)
class ModelScore:
    """A model's results over the folds, per fold in fold order.

    ``nll``: held-out NLL per trial; ``bic``: BIC of the fold's fitted model on its
    training folds; ``best_for``: participants whose held-out NLL per trial, pooled over
    the folds, is lowest under this model; ``rank``: 1 for the lowest mean ``nll``.
    """

    name: str
    path: str
    nll: tuple[float, ...]
    bic: tuple[float, ...]
    best_for: int
    rank: int

    @property
    def likelihood(self) -> tuple[float, ...]:
        """The held-out trial likelihood of each fold, ``exp(-nll)``."""
        return tuple(math.exp(-v) for v in self.nll)


def mean_se(values: Sequence[float]) -> tuple[float, float]:
    """Mean and standard error of the mean.

    >>> mean_se([1.0, 2.0, 4.0])
    (2.3333333333333335, 0.8819171036881969)
    """
    array = np.asarray(values, dtype=float)
    return float(array.mean()), float(array.std(ddof=1) / math.sqrt(len(array)))


@dataclass(frozen=True)
class Comparison:
    """The table of a comparison: the models by rank, and each participant's held-out
    NLL per trial under each model (pooled over the folds)."""

    folds: int
    by: str
    seed: int
    n_sessions: int
    models: tuple[ModelScore, ...]
    participants: dict[str, dict[str, float]]

    def to_json(self) -> dict[str, object]:
        """The table as JSON values (``compare.json``, ``--json``)."""

        def spread(values: Sequence[float]) -> dict[str, object]:
            mean, se = mean_se(values)
            return {"mean": mean, "se": se, "folds": list(values)}

        return {
            "folds": self.folds,
            "by": self.by,
            "seed": self.seed,
            "sessions": self.n_sessions,
            "participants": len(self.participants),
            "models": [
                {
                    "rank": m.rank,
                    "model": m.name,
                    "file": m.path,
                    "nll_per_trial": spread(m.nll),
                    "trial_likelihood": spread(m.likelihood),
                    "bic_train": {"mean": float(np.mean(m.bic)), "folds": list(m.bic)},
                    "best_for": m.best_for,
                }
                for m in self.models
            ],
            "per_participant": self.participants,
        }

    def described(self) -> str:
        """The data and the seed, in words."""
        n = len(self.participants)
        people = f"{n} participant{'s' if n != 1 else ''}"
        return f"{self.n_sessions} sessions of {people}, seed {self.seed}"

    def text(self) -> str:
        """The table for people."""
        width = max(len("model"), *(len(m.name) for m in self.models))
        lines = [
            f"# {self.folds}-fold cross-validation over {self.by}s: {self.described()}",
            "# held-out NLL per trial and trial likelihood exp(-NLL): mean ± standard error "
            "over the folds",
            "# BIC: of each fold's fitted model on its training folds, mean over the folds",
            "# best for: participants whose held-out NLL, pooled over the folds, is lowest",
            f"{'rank':>4}  {'model':{width}}  {'NLL/trial':>17}  {'likelihood':>17}  "
            f"{'BIC':>10}  {'best for':>9}",
        ]
        for m in self.models:
            nll, likelihood = mean_se(m.nll), mean_se(m.likelihood)
            best = f"{m.best_for}/{len(self.participants)}"
            lines.append(
                f"{m.rank:>4}  {m.name:{width}}  {nll[0]:8.4f} ± {nll[1]:6.4f}  "
                f"{likelihood[0]:8.4f} ± {likelihood[1]:6.4f}  {np.mean(m.bic):10.1f}  "
                f"{best:>9}"
            )
        return "\n".join(lines) + "\n"


def summarise(
    candidates: Sequence[Candidate],
    results: dict[tuple[str, int], dict],
    data: Dataset,
    folds: int,
    by: str,
    seed: int,
) -> Comparison:
    """The :class:`Comparison` of every (model name, fold) result of :func:`fit_fold`."""
    names = [c.name for c in candidates]
    pooled: dict[str, dict[str, float]] = {}
    for label in data.participant_ids:
        nll = {}
        for name in names:
            scored = (results[name, fold]["participants"] for fold in range(folds))
            own = [participants[label] for participants in scored if label in participants]
            trials = sum(o["n_trials"] for o in own)
            nll[name] = sum(o["nll_per_trial"] * o["n_trials"] for o in own) / max(trials, 1)
        pooled[label] = nll
    wins = [min(names, key=own.__getitem__) for own in pooled.values()]
    nll = {
        n: tuple(results[n, f]["held_out"]["nll_per_trial"] for f in range(folds)) for n in names
    }
    order = sorted(names, key=lambda n: float(np.mean(nll[n])))
    models = tuple(
        ModelScore(
            name=c.name,
            path=c.path,
            nll=nll[c.name],
            bic=tuple(results[c.name, f]["train"]["bic"] for f in range(folds)),
            best_for=wins.count(c.name),
            rank=order.index(c.name) + 1,
        )
        for c in candidates
    )
    ranked = tuple(sorted(models, key=lambda m: m.rank))
    return Comparison(folds, by, seed, len(data.session_ids), ranked, pooled)


class Interrupted(KeyboardInterrupt):
    """A comparison stopped by Ctrl-C or SIGTERM; ``finished`` of its ``total`` tasks
    are saved in ``outdir`` (None: nothing is saved)."""

    def __init__(self, finished: int, total: int, outdir: Path | None) -> None:
        super().__init__(f"{finished} of {total} tasks finished")
        self.finished, self.total, self.outdir = finished, total, outdir


def compare(
    candidates: Sequence[Candidate],
    data: Dataset,
    *,
    folds: int = 5,
    by: str = "session",
    seed: int = 0,
    outdir: str | Path | None = None,
    workers: int | None = None,
    cluster: str | None = None,
    progress: bool = True,
    **fit_options: object,
) -> Comparison:
    """Cross-validate ``candidates`` on ``data`` (see the module's description).

    Parameters
    ----------
    candidates : sequence of Candidate
        From :func:`read_candidates`.
    data : Dataset
        The data, read for every candidate (:func:`spicedsl.api.read_data`).
    folds, by, seed
        The folds (see :func:`fold_sessions`); ``seed`` also seeds the fits.
    outdir : str or Path, optional
        Where each finished task and the table are written; a folder of an earlier run
        of the same comparison resumes it.
    workers, cluster
        Where the tasks run (see :func:`spicedsl.executor.open_executor`).
    progress : bool
        Show finished, running and failed tasks and the time left on stderr.
    **fit_options
        Options of :func:`spicedsl.api.fit` (``validation``, ``epochs``, ...).

    Raises
    ------
    FitError
        When some fits failed; the others are saved in ``outdir``.
    Interrupted
        On Ctrl-C or SIGTERM; the finished tasks are saved in ``outdir``.
    """
    held_out = fold_sessions(data, folds, by, seed)
    out = _output_folder(outdir) if outdir is not None else None
    digest = hashlib.sha256(pickle.dumps(data)).hexdigest()
    jobs = [
        _Job(
            candidate,
            fold,
            (__version__, candidate.text, digest, sessions.tolist(), seed, fit_options),
        )
        for candidate in candidates
        for fold, sessions in enumerate(held_out)
    ]
    log = _TaskLog(out)
    results: dict[tuple[str, int], dict] = {}
    for job in jobs:
        saved = _saved_result(job.folder(out), job.fingerprint)
        if saved is not None:
            results[job.candidate.name, job.fold] = saved
    to_run = [job for job in jobs if (job.candidate.name, job.fold) not in results]
    log.write("run", tasks=len(jobs), to_run=len(to_run))
    for job in jobs:
        if job not in to_run:
            log.write("skipped", job.key, model=job.candidate.name, fold=job.fold + 1)
    if out is not None:
        labels = {f"fold-{f + 1}": [data.session_ids[i] for i in s] for f, s in enumerate(held_out)}
        write_atomic(out / FOLDS_FILE, json.dumps(labels, indent=1) + "\n")
    failed = []
    if to_run:
        try:
            with open_executor(workers, cluster) as executor:
                shared = executor.shared(data)
                tasks = []
                for job in to_run:
                    seed_of_fold = fold_seed(seed, job.fold)
                    arguments = (job.candidate.text, shared, held_out[job.fold], seed_of_fold)
                    tasks.append(Task(job.key, fit_fold, (*arguments, fit_options)))
                    log.write("submitted", job.key, model=job.candidate.name, fold=job.fold + 1)
                by_key = {job.key: job for job in to_run}
                for outcome in executor.run(tasks, progress):
                    job = by_key[outcome.task.key]
                    where = {"seconds": round(outcome.seconds, 3), "worker": outcome.worker}
                    if outcome.error is not None:
                        failed.append(f"{job}: {outcome.error}")
                        log.write("failed", job.key, error=outcome.error, **where)
                        continue
                    for note in outcome.result["notes"]:
                        warnings.warn(f"{job}: {note}", stacklevel=2)
                    saved = _save_result(job.folder(out), outcome.result, job.fingerprint, where)
                    results[job.candidate.name, job.fold] = saved
                    log.write("finished", job.key, **where)
        except KeyboardInterrupt:
            raise Interrupted(len(results), len(jobs), out) from None
    if failed:
        kept = f"; the {len(results)} finished ones are in {out}" if out and results else ""
        raise FitError(f"{len(failed)} of {len(jobs)} fits failed{kept}:\n  " + "\n  ".join(failed))
    comparison = summarise(candidates, results, data, folds, by, seed)
    if out is not None:
        write_outputs(comparison, out)
    return comparison


@dataclass(eq=False)
class _Job:
    """One (model, fold) of a comparison; ``identity`` lists everything its result
    depends on."""

    candidate: Candidate
    fold: int
    identity: tuple

    @cached_property
    def fingerprint(self) -> str:
        return hashlib.sha256(json.dumps(self.identity).encode()).hexdigest()

    @property
    def key(self) -> str:
        """The task's name: unique, and the same in every run of the same comparison."""
        return f"{self.candidate.name}-fold{self.fold + 1}-{self.fingerprint[:12]}"

    def folder(self, out: Path | None) -> Path | None:
        return out / self.candidate.name / f"fold-{self.fold + 1}" if out is not None else None

    def __str__(self) -> str:
        return f"{self.candidate.name} fold {self.fold + 1}"


def write_outputs(comparison: Comparison, out: Path) -> None:
    """Write the table (``compare.json``, ``compare.txt``) and ``compare.html``."""
    from spicedsl.report import write_comparison_report

    write_atomic(out / TABLE_JSON, json.dumps(comparison.to_json(), indent=1) + "\n")
    write_atomic(out / TABLE_TEXT, comparison.text())
    write_comparison_report(comparison, out / PAGE)


def _output_folder(outdir: str | Path) -> Path:
    """``outdir``, created; refused if it holds something other than a comparison."""
    out = Path(outdir)
    if out.exists() and not out.is_dir():
        raise SpiceError(f"output '{out}' exists and is not a folder")
    if out.is_dir() and any(out.iterdir()) and not (out / LOG_FILE).exists():
        raise SpiceError(
            f"output folder '{out}' is not empty and holds no comparison; choose another"
        )
    out.mkdir(parents=True, exist_ok=True)
    return out


def _saved_result(folder: Path | None, fingerprint: str) -> dict | None:
    """The result a finished task of the same fingerprint saved in ``folder``, if any."""
    if folder is None:
        return None
    try:
        saved = json.loads((folder / RESULT_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return saved if saved.get("fingerprint") == fingerprint else None


def _save_result(folder: Path | None, result: dict, fingerprint: str, where: dict) -> dict:
    """Write a finished task's files into ``folder`` (``result.json`` last, so that a
    folder with one holds the whole result); its scores."""
    scores = {k: v for k, v in result.items() if k != "files"}
    saved = {"fingerprint": fingerprint, **scores, **where}
    if folder is None:
        return saved
    folder.mkdir(parents=True, exist_ok=True)
    for stale in folder.iterdir():  # an earlier result of another fingerprint
        if stale.is_file():
            stale.unlink()
    for name, content in result["files"].items():
        write_atomic(folder / name, content)
    write_atomic(folder / RESULT_FILE, json.dumps(saved, indent=1) + "\n")
    return saved


class _TaskLog:
    """``tasks.jsonl`` of an output folder: one JSON object a line (nothing without one)."""

    def __init__(self, out: Path | None) -> None:
        self.path = out / LOG_FILE if out is not None else None

    def write(self, event: str, task: str | None = None, **fields: object) -> None:
        if self.path is None:
            return
        now = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="milliseconds")
        entry = {"time": now, "event": event, **({"task": task} if task else {}), **fields}
        with open(self.path, "a", encoding="utf-8") as log:
            log.write(json.dumps(entry) + "\n")
