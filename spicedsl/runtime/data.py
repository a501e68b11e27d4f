"""Load behavioural data from a CSV file into padded per-session arrays.

One row of the file is one trial. The rows of a session stand together, in the order
of its trials; sessions are numbered in the order of the file. Sessions are padded to
the longest one, and :attr:`Dataset.mask` tells the real trials from the padding. Every
mistake in the file raises a :class:`~spicedsl.errors.DataError` that names the file,
the line and the column.

>>> import tempfile, pathlib
>>> with tempfile.TemporaryDirectory() as tmp:
...     file = pathlib.Path(tmp, "x.csv")
...     _ = file.write_text("session,choice,reward\\na,1,0\\na,2,5\\nb,2,10\\nb,1,0\\nb,1,5\\n")
...     data = load_dataset(file)
>>> data.choices
array([[ 0,  1, -1],
       [ 1,  0,  0]])
>>> data.reward_range, data.choice_base, data.n_trials
((0.0, 10.0), 1, 5)
"""

from __future__ import annotations

import csv
import difflib
import io
import os
import re
import warnings
from array import array
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from operator import itemgetter
from typing import Protocol

import numpy as np

from spicedsl.columns import REWARDS_COLUMN as REWARDS
from spicedsl.errors import DataError
from spicedsl.files import DATA_FILE_LIMIT, read_input_text, write_output
from spicedsl.settings import MAX_ACTIONS, MISSED_TRIALS

#: Fields that mean "no value": a missed choice, an unobserved reward.
_MISSING_TOKENS = frozenset({"", "NA", "NaN", "nan"})

#: What each standard field holds, for messages about missing columns.
_ROLE_TEXT = {
    "session": "the session label",
    "choice": "the chosen action",
    "reward": "the reward of the chosen action",
    "participant": "the participant label",
    "block": "the block label",
    "experiment": "the experiment label",
}

_SEPARATOR_NAMES = {",": "','", ";": "';'", "\t": "tab"}


@dataclass(frozen=True)
class ColumnMap:
    """Names of the file columns that hold the standard fields.

    Parameters
    ----------
    session
        Column of the session label, or several, comma-separated (``"subjID,block"``):
        then their values together key a session.
    choice, reward
        Columns of the chosen action and its reward. Counterfactual rewards are read
        from the columns ``<reward>_0``, ``<reward>_1``, ... (or as ``per_action`` says).
    participant
        Column of the participant label. ``None`` uses the column ``participant`` when
        the file has one, and otherwise treats every session as its own participant.
    block, experiment
        Columns of the block label and the experiment label. A block column keys
        sessions too: each block of a session is a session of its own, whose states
        start afresh. ``None`` reads neither.
    """

    session: str = "session"
    choice: str = "choice"
    reward: str = "reward"
    participant: str | None = None
    block: str | None = None
    experiment: str | None = None

    @property
    def session_keys(self) -> tuple[str, ...]:
        """The columns whose values together key a session."""
        keys = tuple(name.strip() for name in self.session.split(","))
        return keys + ((self.block,) if self.block else ())


@dataclass(frozen=True, eq=False)
class Dataset:
    """Trials of many sessions, padded to the longest session.

    Attributes
    ----------
    choices : numpy.ndarray
        ``(n_sessions, max_trials)`` int64: the chosen action counted from 0; -1 at
        padding and on missed trials (no choice: a time-out).
    reward : numpy.ndarray
        ``(n_sessions, max_trials)`` float32: reward of the chosen action as the file
        gives it; 0 at padding and where a missed trial has none.
    rewards : numpy.ndarray or None
        ``(n_sessions, max_trials, n_actions)`` float32 rewards of every action, NaN where
        the file left one unobserved; ``None`` when the file has no such columns.
    inputs : dict of str to numpy.ndarray
        Extra per-trial inputs, each ``(n_sessions, max_trials)`` float32, or
        ``(n_sessions, max_trials, n_actions)`` for one value per action; 0 at padding.
    lengths : numpy.ndarray
        ``(n_sessions,)`` int64 number of trials per session, missed ones included.
    session_ids : tuple of str
        Session labels as written in the file (several key columns: their values joined
        by ``/``), in order of first appearance.
    participant_index : numpy.ndarray
        ``(n_sessions,)`` int64 index of each session's participant in
        :attr:`participant_ids`.
    participant_ids : tuple of str
        Participant labels in order of first appearance.
    n_actions : int
        Number of actions (items).
    choice_base : int
        0 or 1: how the file coded the first action.
    reward_range : tuple of float or None
        ``(min, max)`` of the file's rewards (chosen and counterfactual); ``None`` when
        they are all equal.
    offered : numpy.ndarray or None
        ``(n_sessions, max_trials, n_actions)`` bool: the actions offered on each trial;
        ``None`` when every action is offered on every trial.
    session_labels : dict of str to tuple of str
        Columns that are constant within each session (the block, the experiment, the
        session key columns when there are several, and any asked for), each with one
        label per session.
    """

    choices: np.ndarray
    reward: np.ndarray
    rewards: np.ndarray | None
    inputs: dict[str, np.ndarray]
    lengths: np.ndarray
    session_ids: tuple[str, ...]
    participant_index: np.ndarray
    participant_ids: tuple[str, ...]
    n_actions: int
    choice_base: int
    reward_range: tuple[float, float] | None
    offered: np.ndarray | None = field(default=None, kw_only=True)
    session_labels: dict[str, tuple[str, ...]] = field(default_factory=dict, kw_only=True)

    def __post_init__(self) -> None:
        grid = self.choices.shape
        n_sessions = grid[0]
        per_action = (*grid, self.n_actions)
        shapes = {
            "reward": (self.reward.shape, grid),
            "lengths": (self.lengths.shape, (n_sessions,)),
            "session_ids": ((len(self.session_ids),), (n_sessions,)),
            "participant_index": (self.participant_index.shape, (n_sessions,)),
        }
        if self.rewards is not None:
            shapes["rewards"] = (self.rewards.shape, per_action)
        if self.offered is not None:
            shapes["offered"] = (self.offered.shape, per_action)
        for name, values in self.inputs.items():
            shapes[f"inputs[{name!r}]"] = (values.shape, per_action if values.ndim == 3 else grid)
        for name, labels in self.session_labels.items():
            shapes[f"session_labels[{name!r}]"] = ((len(labels),), (n_sessions,))
        for name, (shape, expected) in shapes.items():
            if shape != expected:
                raise ValueError(f"{name} has shape {shape}, expected {expected}")
        if self.choice_base not in (0, 1):
            raise ValueError(f"choice_base must be 0 or 1, not {self.choice_base}")

    @property
    def mask(self) -> np.ndarray:
        """``(n_sessions, max_trials)`` bool: True where the trial is real, not padding."""
        return np.arange(self.choices.shape[1]) < self.lengths[:, None]

    @property
    def n_trials(self) -> int:
        """Number of real trials over all sessions, missed ones included."""
        return int(self.lengths.sum())

    @property
    def n_missed(self) -> int:
        """Number of missed trials: real trials without a choice."""
        return int((self.mask & (self.choices < 0)).sum())

    def subset(self, sessions: Sequence[int]) -> Dataset:
        """The sessions at the indices ``sessions``, in that order, as a Dataset.

        Participants are numbered anew: :attr:`participant_ids` keeps those who have a
        session in the subset, in their original order, so that a model fitted to the
        subset learns no values for participants it never saw. Match participants
        across subsets by label. The padding shrinks to the longest session kept.

        >>> data = Dataset(np.array([[0, 1], [1, 0], [0, -1]]), np.zeros((3, 2)), None, {},
        ...     np.array([2, 2, 1]), ("a", "b", "c"), np.array([0, 1, 0]), ("p", "q"), 2, 0, None)
        >>> part = data.subset([2])
        >>> part.choices, part.session_ids, part.participant_ids, part.participant_index
        (array([[0]]), ('c',), ('p',), array([0]))
        """
        index = np.asarray(sessions, dtype=np.int64)
        width = int(self.lengths[index].max(initial=0))
        kept = np.unique(self.participant_index[index])
        renumber = np.full(len(self.participant_ids), -1, dtype=np.int64)
        renumber[kept] = np.arange(len(kept))

        def trials(values: np.ndarray) -> np.ndarray:
            return values[index, :width]

        return replace(
            self,
            choices=trials(self.choices),
            reward=trials(self.reward),
            rewards=None if self.rewards is None else trials(self.rewards),
            offered=None if self.offered is None else trials(self.offered),
            inputs={name: trials(values) for name, values in self.inputs.items()},
            lengths=self.lengths[index],
            session_ids=tuple(self.session_ids[i] for i in index),
            participant_index=renumber[self.participant_index[index]],
            participant_ids=tuple(self.participant_ids[i] for i in kept),
            session_labels={
                name: tuple(labels[i] for i in index)
                for name, labels in self.session_labels.items()
            },
        )

    def to_csv(self, path: str | os.PathLike[str], *, sep: str = ",") -> None:
        """Write the trials in the standard layout.

        The columns are ``session``, ``participant``, the session labels, ``choice``
        (coded from :attr:`choice_base`; empty on a missed trial), ``reward``,
        ``reward_0`` ... when counterfactual rewards are known, ``offered_0`` ... (0/1)
        when not every action is offered, then the extra inputs (``NAME_0`` ... for one
        value per action). The file is written to a temporary file beside ``path`` and
        then moved over it, so a reader never sees half a file. :func:`load_dataset`
        with the same ``inputs`` and ``choice_base`` reads back equal arrays.

        Parameters
        ----------
        path
            File to write, replaced if it exists; ``-`` writes to stdout.
        sep
            Field separator.

        Raises
        ------
        ValueError
            If an extra input has the name of a standard column.
        """
        mask = self.mask
        session_of_trial = np.nonzero(mask)[0]

        def per_session(labels) -> list[str]:
            return np.asarray(labels, dtype=object)[session_of_trial].tolist()

        header = ["session", "participant"]
        columns = [
            per_session(self.session_ids),
            per_session(np.asarray(self.participant_ids, dtype=object)[self.participant_index]),
        ]
        for name, labels in self.session_labels.items():
            if name not in header:  # a key column named 'session' is in the session label
                header.append(name)
                columns.append(per_session(labels))
        choices = self.choices[mask]
        header += ["choice", "reward"]
        columns.append(["" if c < 0 else str(c + self.choice_base) for c in choices.tolist()])
        columns.append(self.reward[mask].astype(str).tolist())
        per_action = [("reward", self.rewards), ("offered", self.offered)]
        per_action += [(name, v) for name, v in self.inputs.items() if v.ndim == 3]
        for name, values in per_action:
            if values is not None:
                for action in range(self.n_actions):
                    header.append(f"{name}_{action}")
                    columns.append(values[mask][:, action].astype(np.float32).astype(str).tolist())
        for name, values in self.inputs.items():
            if values.ndim == 3:
                continue
            if name in header:
                raise ValueError(f"input {name!r} has the name of a standard column")
            header.append(name)
            columns.append(values[mask].astype(str).tolist())

        text = io.StringIO()
        writer = csv.writer(text, delimiter=sep, lineterminator="\n")
        writer.writerow(header)
        writer.writerows(zip(*columns, strict=True))
        write_output(path, text.getvalue())


class _LineReader(Protocol):
    """A :func:`csv.reader`: rows of fields, and the line number of the last row read."""

    line_num: int

    def __iter__(self) -> Iterator[list[str]]: ...


class _Rows:
    """Where the data rows of a file are, to point error messages at them."""

    def __init__(self, path: str, lines: array) -> None:
        self.path = path
        self.lines = lines

    def error(
        self, message: str, index: int, column: str | None, hint: str | None = None
    ) -> DataError:
        """A :class:`DataError` for data row ``index`` (0-based, header excluded)."""
        return DataError(message, path=self.path, row=self.lines[index], column=column, hint=hint)


def load_dataset(
    path: str | os.PathLike[str],
    *,
    inputs: Sequence[str] = (),
    n_actions: int | None = None,
    columns: ColumnMap = ColumnMap(),
    sep: str | None = None,
    choice_base: int | None = None,
    per_action: Mapping[str, Sequence[str]] | None = None,
    offered: Sequence[str] = (),
    missed: str = "skip",
    labels: Sequence[str] = (),
) -> Dataset:
    """Read a CSV file of trials into a :class:`Dataset`.

    Parameters
    ----------
    path
        The file. Error messages show it as given.
    inputs
        Names of extra inputs to read per trial: the column of that name, or one column
        per action, ``NAME_0``, ``NAME_1``, ... (or as ``per_action`` names them). Values
        must be finite on every trial with a choice.
    n_actions
        Number of actions. ``None`` infers it as the largest choice (or offered item)
        plus one, at least 2, and at least the number of counterfactual reward columns;
        an action below the largest choice that no row chooses gets a note (a
        :mod:`warnings` warning), and two or more in a row are an error.
    columns
        Which file columns hold the standard fields.
    sep
        Field separator. ``None`` sniffs it from the header line: tab if the header has
        one, else ``';'`` if the header has a semicolon and no comma, else ``','``.
    choice_base
        0 or 1, how the file codes the first action. ``None`` detects it: the file is
        1-based if its smallest choice is 1, else 0-based, except that rows with choice
        0 among choices that otherwise count from 1 are reported as mistakes (see
        :func:`_detect_base`).
    per_action
        The columns of a per-action input, by its name, in the order of the actions:
        ``{"rewards": ["reward_c1", ...]}`` reads every action's reward from those.
    offered
        The items offered on each trial: two or more columns holding one offered item
        each (coded as the choices), or one name whose per-action 0/1 columns say which
        items are available. Empty: every action is offered on every trial.
    missed
        A row without a choice (empty, ``NA`` or ``NaN``) is a missed trial: ``"skip"``
        keeps its place in the session, ``"error"`` refuses it.
    labels
        Further columns to read one label per session of (they must be constant within
        each session), as for choosing sessions to hold out.

    Returns
    -------
    Dataset
        The sessions, padded to the longest one.

    Raises
    ------
    DataError
        If the file cannot be read or its content is not valid trial data.
    ValueError
        If ``choice_base``, ``n_actions`` or ``missed`` is not a valid setting.
    """
    if choice_base not in (None, 0, 1):
        raise ValueError(f"choice_base must be 0, 1 or None, not {choice_base!r}")
    if n_actions is not None and n_actions < 2:
        raise ValueError(f"n_actions must be at least 2, not {n_actions}")
    if missed not in MISSED_TRIALS:
        raise ValueError(f"missed must be one of {MISSED_TRIALS}, not {missed!r}")
    per_action = {name: list(names) for name, names in (per_action or {}).items()}
    mapped = set(per_action)
    shown = os.fspath(path)
    text = read_input_text(path, "data file", DATA_FILE_LIMIT)
    if not text.strip():
        raise DataError(
            "the file is empty",
            path=shown,
            hint="the first line must name the columns, e.g. session,choice,reward",
        )
    separator = sep if sep is not None else _sniff_separator(text)
    reader = csv.reader(io.StringIO(text), delimiter=separator, skipinitialspace=True)
    header = [name.strip() for name in next(row for row in reader if row)]
    header_line = reader.line_num
    position = _column_positions(header, shown, header_line)

    participant = columns.participant
    if participant is None and "participant" in position:
        participant = "participant"
    needed = [("session", key) for key in columns.session_keys[: 1 if columns.block else None]]
    needed += [("choice", columns.choice), ("reward", columns.reward)]
    for role, name in (
        ("participant", participant),
        ("block", columns.block),
        ("experiment", columns.experiment),
        *(("label", name) for name in labels),
    ):
        if name is not None:
            needed.append((role, name))
    _check_columns(needed, header, shown, header_line)
    if REWARDS not in per_action:
        per_action[REWARDS] = _numbered_columns(columns.reward, header)
    items = _item_columns(offered, per_action, header, shown, header_line)
    scalar_inputs, action_inputs = _input_columns(inputs, per_action, header, shown, header_line)
    per_session = [key for key in (columns.block, columns.experiment, *labels) if key]
    if len(columns.session_keys) > 1:
        per_session = [*columns.session_keys, *per_session]
    wanted = list(
        dict.fromkeys(
            [
                *(name for _, name in needed),
                *per_action[REWARDS],
                *items,
                *scalar_inputs,
                *(c for name in action_inputs for c in per_action[name]),
                *per_session,
            ]
        )
    )
    fields, rows = _read_rows(reader, header, wanted, separator, shown)
    del text, reader
    column = dict(zip(wanted, fields, strict=True))

    keys = [column[key] for key in columns.session_keys]
    session_labels = keys[0] if len(keys) == 1 else ["/".join(v) for v in zip(*keys, strict=True)]
    session_of_row, session_ids = _codes(session_labels, columns.session_keys[0], rows)
    _check_sessions_together(session_of_row, session_ids, columns.session_keys[0], rows)
    counterfactual = per_action[REWARDS]
    inferred = n_actions is None
    choice, base, n_actions = _choices(
        column[columns.choice],
        columns.choice,
        rows,
        choice_base,
        n_actions,
        max(len(counterfactual), len(items) if len(offered) == 1 else 0),
        missed,
    )
    made = choice >= 0
    for name in mapped:
        if len(per_action[name]) != n_actions:
            raise DataError(
                f"--per-action {name} names {len(per_action[name])} columns, but the data "
                f"have {n_actions} actions",
                path=shown,
                row=header_line,
                hint="name one column per action, in the order of the actions",
            )
    if len(offered) > 1:
        offered_mask, n_actions = _offered_items(
            {name: column[name] for name in items}, base, n_actions, inferred, rows, made
        )
    elif offered:
        offered_mask = _per_action_values(column, items, rows, made) != 0
    else:
        offered_mask = None
    if offered_mask is not None:
        _check_chosen_offered(choice, offered_mask, base, columns.choice, rows)
    reward = _numbers(
        column[columns.reward],
        columns.reward,
        rows,
        hint="every trial with a choice needs the reward of the chosen action",
        required=made,
    )
    every = None
    if len(counterfactual) >= n_actions:
        every = np.stack(
            [_numbers(column[name], name, rows, missing_ok=True) for name in counterfactual],
            axis=1,
        )[:, :n_actions]
    observed = reward[made] if every is None else np.concatenate([reward[made], every.ravel()])
    observed = observed.astype(np.float32)  # as stored: a written file reads back the same
    low, high = float(np.nanmin(observed)), float(np.nanmax(observed))
    reward_range = (low, high) if high > low else None
    extra = {
        name: _numbers(column[name], name, rows, what=f"input {name}", required=made)
        for name in scalar_inputs
    }
    for name in action_inputs:
        extra[name] = _per_action_values(column, per_action[name], rows, made)

    n_sessions = len(session_ids)
    order = np.argsort(session_of_row, kind="stable")
    lengths = np.bincount(session_of_row, minlength=n_sessions)
    starts = np.concatenate([[0], np.cumsum(lengths)[:-1]])
    first_row = order[starts]
    single = np.flatnonzero(lengths == 1)
    if single.size:
        index = int(first_row[single[0]])
        raise rows.error(
            f"session {session_ids[single[0]]!r} has only one trial",
            index,
            columns.session_keys[0],
            hint="the model learns from how each choice follows the trials before it; "
            "remove sessions with a single trial",
        )
    trial = np.empty_like(session_of_row)
    trial[order] = np.arange(order.size) - np.repeat(starts, lengths)
    grid = (n_sessions, int(lengths.max()))
    where = (session_of_row, trial)

    def padded(values: np.ndarray, fill: float, dtype: type) -> np.ndarray:
        out = np.full(grid + values.shape[1:], fill, dtype=dtype)
        out[where] = values
        return out

    if participant is None:
        participant_index, participant_ids = np.arange(n_sessions), session_ids
    else:
        participant_index, participant_ids = _per_session(
            column[participant], participant, rows, session_of_row, first_row, session_ids
        )
    session_columns = {}
    for name in per_session:
        index, ids = _per_session(column[name], name, rows, session_of_row, first_row, session_ids)
        session_columns[name] = tuple(ids[i] for i in index)
    return Dataset(
        choices=padded(choice, -1, np.int64),
        reward=padded(np.where(made, reward, 0), 0, np.float32),
        rewards=None if every is None else padded(every, 0, np.float32),
        inputs={name: padded(values, 0, np.float32) for name, values in extra.items()},
        lengths=lengths.astype(np.int64),
        session_ids=session_ids,
        participant_index=participant_index,
        participant_ids=participant_ids,
        n_actions=n_actions,
        choice_base=base,
        reward_range=reward_range,
        offered=None if offered_mask is None else padded(offered_mask, False, np.bool_),
        session_labels=session_columns,
    )


def _sniff_separator(text: str) -> str:
    """Guess the field separator from the header line."""
    end = text.find("\n")
    header = text if end < 0 else text[:end]
    if "\t" in header:
        return "\t"
    if ";" in header and "," not in header:
        return ";"
    return ","


def _column_positions(header: list[str], path: str, line: int) -> dict[str, int]:
    """Map each header name to its position, rejecting duplicate names."""
    position: dict[str, int] = {}
    for index, name in enumerate(header):
        if name in position:
            raise DataError(
                f"the header names column {name!r} twice "
                f"(columns {position[name] + 1} and {index + 1})",
                path=path,
                row=line,
                hint="give every column a distinct name",
            )
        position[name] = index
    return position


def _suggest(name: str, candidates: Sequence[str]) -> str | None:
    """The candidate closest to ``name`` ignoring case, if any is close."""
    lowered = {candidate.lower(): candidate for candidate in candidates}
    match = difflib.get_close_matches(name.lower(), list(lowered), n=1, cutoff=0.6)
    return lowered[match[0]] if match else None


def _check_columns(needed: list[tuple[str, str]], header: list[str], path: str, line: int) -> None:
    """Raise if a column the reading needs (``(role, name)`` pairs) is not in ``header``."""
    listing = ", ".join(repr(name) for name in header)
    missing = [(role, name) for role, name in needed if name not in header]
    if not missing:
        return
    unused = [name for name in header if name not in {n for _, n in needed}]
    described = [f"{name!r} ({_ROLE_TEXT.get(role, role)})" for role, name in missing]
    guesses = [
        f"{guess!r} for {name!r}"
        for _, name in missing
        if (guess := _suggest(name, unused)) is not None
    ]
    flags = ["session", "choice", "reward"]
    flags += [role for role, _ in missing if role not in flags and role in _ROLE_TEXT]
    flag_text = ", ".join(f"--{role}-column" for role in flags[:-1])
    hint = f"map the file's own column names with {flag_text} or --{flags[-1]}-column"
    if guesses:
        hint = f"did you mean {' and '.join(guesses)}? Or {hint}"
    noun = "column" if len(missing) == 1 else "columns"
    raise DataError(
        f"missing {noun} {' and '.join(described)}; the file's columns are {listing}",
        path=path,
        row=line,
        hint=hint,
    )


def _numbered_columns(name: str, header: list[str]) -> list[str]:
    """The columns ``<name>_0``, ``<name>_1``, ... present in a row without gaps."""
    pattern = re.compile(re.escape(name) + r"_(\d+)")
    numbers = {int(m[1]) for column in header if (m := pattern.fullmatch(column))}
    found: list[str] = []
    while len(found) in numbers:
        found.append(f"{name}_{len(found)}")
    return found


def _input_columns(
    inputs: Sequence[str],
    per_action: dict[str, list[str]],
    header: list[str],
    path: str,
    line: int,
) -> tuple[list[str], list[str]]:
    """The model's extra inputs that are one column, and those with one column per action
    (whose columns ``per_action`` then lists)."""
    scalar, action = [], []
    for name in inputs:
        if name not in per_action and name not in header:
            per_action[name] = _numbered_columns(name, header)
        if name in header and name not in per_action:
            scalar.append(name)
        elif per_action[name]:
            action.append(name)
        else:
            listing = ", ".join(repr(column) for column in header)
            guess = _suggest(name, header)
            raise DataError(
                f"the model reads data.{name} but the file has no column {name!r} "
                f"(nor {name}_0, {name}_1, ...)",
                path=path,
                row=line,
                hint=(f"did you mean {guess!r}? " if guess else "")
                + f"{'the' if guess else 'The'} file's columns are {listing}; "
                f"--per-action {name}=COLUMN,COLUMN,... names one column per action",
            )
    return scalar, action


def _item_columns(
    offered: Sequence[str],
    per_action: dict[str, list[str]],
    header: list[str],
    path: str,
    line: int,
) -> list[str]:
    """The columns that say which items are offered: the item columns themselves, or an
    availability mask's per-action columns."""
    if len(offered) != 1:
        return list(offered)
    name = offered[0]
    columns = per_action.get(name) or _numbered_columns(name, header)
    if not columns:
        raise DataError(
            f"the model reads the offered items from data.{name}, but the file has no "
            f"columns {name}_0, {name}_1, ... (one 0/1 column per item)",
            path=path,
            row=line,
            hint=f"name them with --per-action {name}=COLUMN,COLUMN,...; with several "
            "offered columns, each holds one offered item",
        )
    return columns


def _offered_items(
    item_columns: dict[str, Sequence[str]],
    base: int,
    n_actions: int,
    inferred: bool,
    rows: _Rows,
    made: np.ndarray,
) -> tuple[np.ndarray, int]:
    """The offered-items mask ``(rows, n_actions)`` from columns that hold one offered item
    each (coded like the choices), and the number of actions (an inferred number grows to
    the largest item offered)."""
    codes = {}
    for name, values in item_columns.items():
        raw = _numbers(values, name, rows, what="offered item", required=made)
        known = ~np.isnan(raw)
        bad = np.flatnonzero(known & ((raw != np.floor(raw)) | (raw < base)))
        if bad.size:
            index = int(bad[0])
            raise rows.error(
                f"offered item {values[index]} is not an item coded like the choices (from {base})",
                index,
                name,
            )
        codes[name] = np.where(known, raw - base, -1).astype(np.int64)
    largest = max(int(c.max()) for c in codes.values())
    if largest >= n_actions:
        if not inferred:
            name = next(n for n, c in codes.items() if c.max() == largest)
            index = int(np.argmax(codes[name] == largest))
            raise rows.error(
                f"offered item {largest + base} is out of range for {n_actions} actions",
                index,
                name,
            )
        n_actions = largest + 1
    mask = np.zeros((len(made), n_actions), dtype=bool)
    for item in codes.values():
        known = item >= 0
        mask[np.flatnonzero(known), item[known]] = True
    return mask, n_actions


def _check_chosen_offered(
    choice: np.ndarray, offered: np.ndarray, base: int, column: str, rows: _Rows
) -> None:
    """Raise at the first row whose choice is not among its offered items."""
    made = np.flatnonzero(choice >= 0)
    outside = made[~offered[made, choice[made]]]
    if outside.size:
        index = int(outside[0])
        items = ", ".join(str(i + base) for i in np.flatnonzero(offered[index]))
        raise rows.error(
            f"choice {choice[index] + base} is not among the items offered on this trial "
            f"({items or 'none'})",
            index,
            column,
        )


def _per_action_values(
    column: dict[str, Sequence[str]], names: Sequence[str], rows: _Rows, made: np.ndarray
) -> np.ndarray:
    """``(rows, actions)`` numbers from one column per action; each trial with a choice
    needs every value."""
    return np.stack([_numbers(column[name], name, rows, required=made) for name in names], 1)


def _read_rows(
    reader: _LineReader, header: list[str], wanted: list[str], separator: str, path: str
) -> tuple[list[tuple[str, ...]], _Rows]:
    """Read every data row, keeping the ``wanted`` columns and the line of each row."""
    n_fields = len(header)
    pick = itemgetter(*(header.index(name) for name in wanted))
    picked: list = []
    lines = array("q")
    try:
        for row in reader:
            if len(row) != n_fields:
                if not row:
                    continue
                raise DataError(
                    f"the row has {len(row)} field{'s' * (len(row) != 1)} "
                    f"but the header has {n_fields}",
                    path=path,
                    row=reader.line_num,
                    hint="fields are separated by "
                    f"{_SEPARATOR_NAMES.get(separator, repr(separator))}; "
                    "check for a missing or an extra one",
                )
            picked.append(pick(row))
            lines.append(reader.line_num)
    except csv.Error as exc:
        raise DataError(f"cannot parse the row: {exc}", path=path, row=reader.line_num) from None
    if not picked:
        raise DataError(
            "the file has a header but no data rows", path=path, hint="add one row per trial"
        )
    if len(wanted) == 1:  # itemgetter of one position gives the value, not a tuple
        return [tuple(picked)], _Rows(path, lines)
    return list(zip(*picked, strict=True)), _Rows(path, lines)


def _codes(labels: Sequence[str], column: str, rows: _Rows) -> tuple[np.ndarray, tuple[str, ...]]:
    """Number the distinct labels in order of first appearance."""
    if "" in labels:
        raise rows.error("the label is empty", labels.index(""), column)
    index: dict[str, int] = {}
    codes = np.fromiter(
        (index.setdefault(label, len(index)) for label in labels), np.int64, count=len(labels)
    )
    return codes, tuple(index)


def _check_sessions_together(
    session_of_row: np.ndarray, session_ids: tuple[str, ...], column: str, rows: _Rows
) -> None:
    """Raise when a session's rows are split by another session's: the trials would be
    merged into one session without a word."""
    starts = np.flatnonzero(np.diff(session_of_row)) + 1
    run_starts = np.concatenate([[0], starts])
    run_sessions = session_of_row[run_starts]
    # Sessions are numbered in order of first appearance: a run that does not bring a
    # new number brings back an earlier session.
    again = np.flatnonzero(run_sessions[1:] <= np.maximum.accumulate(run_sessions)[:-1]) + 1
    if not again.size:
        return
    run = int(again[0])
    session = run_sessions[run]
    earlier = int(np.flatnonzero(run_sessions[:run] == session)[-1])
    earlier_end = int(run_starts[earlier + 1]) - 1
    raise rows.error(
        f"session {session_ids[session]!r} appears again here, after other sessions; "
        f"its earlier rows end on row {rows.lines[earlier_end]}",
        int(run_starts[run]),
        column,
        hint="the rows of a session must be together: give each session its own label, "
        "or sort the file by session",
    )


def _per_session(
    labels: Sequence[str],
    column: str,
    rows: _Rows,
    session_of_row: np.ndarray,
    first_row: np.ndarray,
    session_ids: tuple[str, ...],
) -> tuple[np.ndarray, tuple[str, ...]]:
    """Codes of a label that must be constant within each session, one per session."""
    codes, ids = _codes(labels, column, rows)
    per_session = codes[first_row]
    conflict = np.flatnonzero(codes != per_session[session_of_row])
    if conflict.size:
        index = int(conflict[0])
        session = int(session_of_row[index])
        earlier = ids[per_session[session]]
        raise rows.error(
            f"session {session_ids[session]!r} has rows with {column} {earlier!r} and "
            f"{labels[index]!r}",
            index,
            column,
            hint=f"each session must have one {column}; give the sessions distinct labels",
        )
    return per_session, ids


def _numbers(
    values: Sequence[str],
    column: str,
    rows: _Rows,
    *,
    what: str | None = None,
    missing_ok: bool = False,
    required: np.ndarray | None = None,
    hint: str | None = None,
) -> np.ndarray:
    """Parse a column of numbers. A field may be missing (empty, ``NA`` or ``NaN``) only
    in a ``missing_ok`` column (it is then NaN) or on a row that ``required`` does not
    mark (it is then 0); infinite values are errors."""
    what = what or column
    out = np.empty(len(values))
    try:
        out[:] = np.fromiter(map(float, values), np.float64, count=len(values))
    except ValueError:
        for index, value in enumerate(values):
            try:
                out[index] = float(value)
            except ValueError:
                if value.strip() not in _MISSING_TOKENS:
                    raise rows.error(
                        f"{what} is not a number: {value!r}", index, column, hint
                    ) from None
                out[index] = np.nan
    if missing_ok:
        absent = np.zeros(len(values), dtype=bool)
    elif required is None:
        absent = np.isnan(out)
    else:
        absent = np.isnan(out) & required
        out[np.isnan(out) & ~required] = 0.0
    if absent.any():
        index = int(np.argmax(absent))
        text = values[index].strip()
        message = (
            f"{what} is missing"
            if text in _MISSING_TOKENS
            else f"{what} is not a finite number: {values[index]!r}"
        )
        raise rows.error(message, index, column, hint)
    infinite = np.flatnonzero(np.isinf(out))
    if infinite.size:
        index = int(infinite[0])
        raise rows.error(f"{what} is not a finite number: {values[index]!r}", index, column, hint)
    return out


def _choices(
    values: Sequence[str],
    column: str,
    rows: _Rows,
    choice_base: int | None,
    n_actions: int | None,
    n_counterfactual: int,
    missed: str,
) -> tuple[np.ndarray, int, int]:
    """Parse the choices; return them counted from 0 (-1 on a missed trial), the file's
    base and ``n_actions`` (see :func:`_made_choices`)."""
    raw = _numbers(values, column, rows, what="choice", missing_ok=True)
    made = np.flatnonzero(~np.isnan(raw))
    if missed == "error" and made.size < len(raw):
        index = int(np.argmax(np.isnan(raw)))
        raise rows.error(
            "choice is missing (a missed trial)",
            index,
            column,
            hint="--missed skip keeps a missed trial's place in its session, not predicted",
        )
    if not made.size:
        raise rows.error("no row has a choice", 0, column)
    made_rows = _Rows(rows.path, array("q", (rows.lines[i] for i in made)))
    shifted, base, n_actions = _made_choices(
        [values[i] for i in made], column, made_rows, choice_base, n_actions, n_counterfactual
    )
    choices = np.full(len(raw), -1, dtype=np.int64)
    choices[made] = shifted
    return choices, base, n_actions


def _made_choices(
    values: Sequence[str],
    column: str,
    rows: _Rows,
    choice_base: int | None,
    n_actions: int | None,
    n_counterfactual: int,
) -> tuple[np.ndarray, int, int]:
    """Parse the choices of the trials that have one; return them counted from 0, the
    file's base and ``n_actions``.

    Without ``n_actions``, the number of actions comes from the data: actions below the
    largest choice that no row chooses get a note, or an error when two or more in a row
    are missing (a stray large choice would otherwise add them silently).
    """
    raw = _numbers(values, column, rows, what="choice")
    fraction = np.flatnonzero(raw != np.floor(raw))
    if fraction.size:
        index = int(fraction[0])
        raise rows.error(
            f"choice is not a whole number: {values[index]!r}",
            index,
            column,
            hint="choices number the actions, from 0 or from 1",
        )
    negative = np.flatnonzero(raw < 0)
    if negative.size:
        index = int(negative[0])
        raise rows.error(f"choice {values[index]} is negative", index, column)
    base = choice_base if choice_base is not None else _detect_base(raw, n_actions)
    zeros = np.flatnonzero(raw < base)
    if zeros.size:
        index = int(zeros[0])
        if choice_base is None:
            top = base + n_actions - 1 if n_actions is not None else int(raw.max())
            message = (
                f"choice {values[index]} is out of range: the file looks 1-based "
                f"(its other choices are 1..{top})"
            )
            hint = "fix or remove the rows with choice 0"
            if n_actions is None:
                hint += "; if the file counts actions from 0, pass --choice-base 0"
        else:
            message = f"choice {values[index]} is out of range: choices were declared 1-based"
            hint = "this file seems to count actions from 0"
            if _looks_one_based(raw):
                hint = "the other choices count from 1: fix or remove the rows with choice 0"
        raise rows.error(message + _more_rows(zeros.size), index, column, hint)
    limit = n_actions if n_actions is not None else MAX_ACTIONS
    above = np.flatnonzero(raw - base >= limit)
    if above.size:
        index = int(above[0])
        if n_actions is None:
            message = f"choice {values[index]} is too large: at most {limit} actions are inferred"
            hint = "give the number of actions explicitly if the task really has that many"
        else:
            message = (
                f"choice {values[index]} is out of range for {n_actions} actions "
                f"coded {base}..{base + n_actions - 1}"
            )
            if choice_base is None and raw.min() == 0:
                message += " (the file looks 0-based: it has choice 0)"
            message += _more_rows(above.size)
            hint = (
                f"the model (or --actions) gives {n_actions} actions: fix or remove the rows "
                "with larger choices, or give the right number of actions"
            )
        raise rows.error(message, index, column, hint)
    shifted = (raw - base).astype(np.int64)
    if n_actions is None:
        n_actions = max(int(shifted.max()) + 1, 2, n_counterfactual)
        _check_unchosen(shifted, base, n_actions, values, column, rows)
    return shifted, base, n_actions


#: A 0 among choices that otherwise count 1..K is taken for a mistake when each of 1..K
#: is chosen at least this many times as often as 0.
_STRAY_RATIO = 20


def _detect_base(raw: np.ndarray, n_actions: int | None) -> int:
    """How a file codes its first action, 0 or 1, from its (whole, non-negative) choices.

    A file without a 0 is 1-based when its smallest choice is 1. A file with a 0 is
    0-based, unless its other choices count from 1 and the 0 is the odd one out: with
    ``n_actions`` given, when both 0 and ``n_actions`` occur (no base reads them both)
    and 0 less often; without, when 0 is rare beside 1..K (:func:`_looks_one_based`).
    The caller then reports the rows with choice 0.

    >>> _detect_base(np.array([1.0, 2.0, 2.0]), None), _detect_base(np.array([0.0, 2.0]), None)
    (1, 0)
    >>> _detect_base(np.array([0.0, 1.0, 2.0, 2.0]), 2), _detect_base(np.array([0.0, 0.0, 2.0]), 2)
    (1, 0)
    """
    low = raw.min()
    if low != 0:
        return int(low == 1)
    if n_actions is not None:
        if raw.max() != n_actions:
            return 0
        return int(np.count_nonzero(raw == 0) < np.count_nonzero(raw == n_actions))
    return int(_looks_one_based(raw))


def _looks_one_based(raw: np.ndarray) -> bool:
    """Whether choices 0..K look like 1..K and a few stray 0s: every one of 1..K (K at
    least 2) occurs, each at least ``_STRAY_RATIO`` times as often as 0."""
    codes, counts = np.unique(raw, return_counts=True)
    top = codes[-1]
    if codes[0] != 0 or not 2 <= top <= MAX_ACTIONS or len(codes) != top + 1:
        return False
    return bool(counts[0] * _STRAY_RATIO <= counts[1:].min())


def _more_rows(count: int) -> str:
    """How many more rows share the problem of the one reported."""
    if count == 1:
        return ""
    more = count - 1
    return f"; {more} more row{'s are' if more > 1 else ' is'} out of range too"


def _check_unchosen(
    shifted: np.ndarray, base: int, n_actions: int, values: Sequence[str], column: str, rows: _Rows
) -> None:
    """Note actions of an inferred count that no row chooses; raise when two or more in a
    row below the largest choice are missing."""
    counts = np.bincount(shifted, minlength=n_actions)
    never = np.flatnonzero(counts == 0)
    if not never.size:
        return
    largest = int(shifted.max())
    below = never[never < largest]
    runs = np.split(below, np.flatnonzero(np.diff(below) != 1) + 1)
    widest = max(runs, key=len)
    if len(widest) > 1:
        index = int(np.argmax(shifted == largest))
        raise rows.error(
            f"choice {values[index]} makes {n_actions} actions, but choices "
            f"{widest[0] + base}..{widest[-1] + base} never occur",
            index,
            column,
            hint=f"if the task has {n_actions} actions, say so with 'actions {n_actions}' in the "
            f"model or --actions {n_actions}; otherwise fix this row",
        )
    missing = ", ".join(str(action + base) for action in never)
    plural = "s" * (len(never) > 1)
    per_choice = ", ".join(f"{action + base}: {count}" for action, count in enumerate(counts))
    warnings.warn(
        f"{rows.path}: {n_actions} actions are inferred from the choices, but choice{plural} "
        f"{missing} never occur{'s' * (len(never) == 1)} (rows per choice: {per_choice})",
        stacklevel=4,
    )
