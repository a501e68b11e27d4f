"""Which trials train a model, which choose its best epoch, and which score it.

Published work scores models on held-out data in two ways, and both are here: whole
sessions held out (for example blocks 3, 6 and 9 of every participant), and the last
part of every session held out, with the states carried over from the session's start.
Masks are ``(sessions, trials)`` booleans over a :class:`~spicedsl.runtime.data.Dataset`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from spicedsl.errors import UsageError
from spicedsl.runtime.data import Dataset


@dataclass(frozen=True)
class Holdout:
    """The trials held out from training and validation, to score the model at the end.

    Parameters
    ----------
    sessions : dict of str to tuple of str
        Column -> labels: the sessions whose label in that column is one of these
        (``participant``, ``session``, or a column constant within sessions such as a
        block).
    last : float
        The last part of every session: a fraction of its trials when below 1, else
        a number of trials; 0 for none.
    """

    sessions: dict[str, tuple[str, ...]] = field(default_factory=dict)
    last: float = 0.0

    def __post_init__(self) -> None:
        if not (0 <= self.last < 1 or float(self.last).is_integer()):
            raise UsageError(
                f"the held-out end of each session is a fraction below 1 or a whole number "
                f"of trials, not {self.last:g}"
            )

    @property
    def columns(self) -> tuple[str, ...]:
        """The data columns the held-out sessions are chosen by (beyond participant and
        session)."""
        return tuple(c for c in self.sessions if c not in ("participant", "session"))

    def mask(self, data: Dataset) -> np.ndarray:
        """The held-out trials of ``data`` (padding excluded)."""
        held = np.zeros(len(data.session_ids), dtype=bool)
        for column, values in self.sessions.items():
            labels = _session_labels(data, column)
            unknown = [v for v in values if v not in set(labels)]
            if unknown:
                shown = ", ".join(sorted(set(labels))[:10])
                raise UsageError(
                    f"holdout {column}={','.join(values)}: no session has {column} "
                    f"{', '.join(unknown)} (the data's values: {shown}"
                    f"{', ...' if len(set(labels)) > 10 else ''})"
                )
            held |= np.isin(labels, values)
        mask = data.mask & held[:, None]
        if self.last:
            mask |= data.mask & (
                np.arange(data.choices.shape[1]) >= _kept(data.lengths, self.last)[:, None]
            )
        return mask

    @staticmethod
    def parse(texts: list[str], last: float = 0.0) -> Holdout:
        """From ``COLUMN=V1,V2,...`` texts (one per column).

        >>> Holdout.parse(["block=3,6,9"]).sessions
        {'block': ('3', '6', '9')}
        """
        sessions: dict[str, tuple[str, ...]] = {}
        for text in texts:
            column, _, values = text.partition("=")
            listed = tuple(v.strip() for v in values.split(",") if v.strip())
            if not column.strip() or not listed:
                raise UsageError(f"--holdout {text!r}: write COLUMN=VALUE,VALUE,...")
            sessions[column.strip()] = sessions.get(column.strip(), ()) + listed
        return Holdout(sessions, last)


@dataclass(frozen=True)
class Split:
    """``(sessions, trials)`` masks of the trials that train, validate and test a model."""

    train: np.ndarray
    validation: np.ndarray
    test: np.ndarray


def split_trials(
    data: Dataset,
    validation: float,
    rng: np.random.Generator,
    within_participants: bool,
    holdout: Holdout | None = None,
) -> Split:
    """The trials of ``data`` that train, validate and test a model.

    The ``holdout`` trials test it. Of the rest, ``validation`` is held out to choose
    the best epoch: when the end of each session is held out, the end of each session's
    remaining trials (the states run on from the start); otherwise whole sessions drawn
    at random, ``validation`` of each participant's sessions with
    ``within_participants``, so that everyone keeps training sessions.
    """
    if not 0 <= validation < 1:
        raise UsageError(f"the validation fraction must be in [0, 1), not {validation}")
    holdout = holdout or Holdout()
    test = holdout.mask(data)
    rest = data.mask & ~test
    if not rest.any():
        raise UsageError("the holdout leaves no trial to train on")
    if holdout.last:
        lengths = rest.sum(axis=1)
        validating = rest & (np.arange(rest.shape[1]) >= _kept(lengths, validation)[:, None])
    else:
        sessions = _validation_sessions(
            data, rest.any(axis=1), validation, rng, within_participants
        )
        validating = rest & np.isin(np.arange(len(data.session_ids)), sessions)[:, None]
    return Split(rest & ~validating, validating, test)


def _kept(lengths: np.ndarray, held: float) -> np.ndarray:
    """How many trials of sessions of ``lengths`` stay before a held-out end of ``held``
    (a fraction below 1, else a number of trials)."""
    if held < 1:
        return lengths - np.round(held * lengths).astype(int)
    return np.maximum(lengths - int(held), 0)


def _validation_sessions(
    data: Dataset,
    usable: np.ndarray,
    fraction: float,
    rng: np.random.Generator,
    within_participants: bool,
) -> np.ndarray:
    """``fraction`` of the ``usable`` sessions drawn at random (of each participant's,
    with ``within_participants``)."""
    candidates = np.flatnonzero(usable)
    groups = (
        [
            candidates[data.participant_index[candidates] == p]
            for p in range(len(data.participant_ids))
        ]
        if within_participants
        else [candidates]
    )
    held = np.concatenate(
        [rng.permutation(g)[: int(round(fraction * len(g)))] for g in groups] + [[]]
    ).astype(int)
    if fraction and (len(held) == 0 or len(held) == len(candidates)):
        sessions = (
            "each participant's sessions" if within_participants else f"{len(candidates)} sessions"
        )
        raise UsageError(
            f"cannot hold out {fraction:g} of {sessions} for validation; pass --validation 0 "
            "to use them all for training, or hold out the end of each session "
            "(--holdout-last), whose validation trials come from each session"
        )
    return np.sort(held)


def _session_labels(data: Dataset, column: str) -> np.ndarray:
    """Each session's label in ``column``."""
    if column == "participant":
        return np.asarray(data.participant_ids, dtype=object)[data.participant_index]
    if column == "session":
        return np.asarray(data.session_ids, dtype=object)
    if column not in data.session_labels:
        raise UsageError(f"--holdout {column}=...: the data have no per-session column {column!r}")
    return np.asarray(data.session_labels[column], dtype=object)
