"""Load behavioural data from a CSV file into padded per-session arrays.

One row of the file is one trial. Rows are grouped into sessions by their session
label, in order of first appearance; within a session the trials keep the order of
the file. Sessions are padded to the longest one, and :attr:`Dataset.mask` tells the
real trials from the padding. Every mistake in the file raises a
:class:`~spicedsl.errors.DataError` that names the file, the line and the column.

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
from array import array
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field, replace
from operator import itemgetter
from pathlib import Path
from typing import Protocol

import numpy as np

from spicedsl.errors import DataError
from spicedsl.files import write_atomic
from spicedsl.settings import MAX_ACTIONS

#: Fields of a counterfactual reward column that mean "not observed".
_MISSING_TOKENS = frozenset({"", "NA"})

#: What each standard field holds, for messages about missing columns.
_ROLE_TEXT = {
    "session": "the session label",
    "choice": "the chosen action",
    "reward": "the reward of the chosen action",
    "participant": "the participant label",
    "block": "the block label",
    "experiment": "the experiment label",
}

#: Largest number of actions inferred from the choices; a larger choice is a mistake.

_SEPARATOR_NAMES = {",": "','", ";": "';'", "\t": "tab"}


@dataclass(frozen=True)
class ColumnMap:
    """Names of the file columns that hold the standard fields.

    Parameters
    ----------
    session, choice, reward
        Columns of the session label, the chosen action and its reward. Counterfactual
        rewards are read from the columns ``<reward>_0``, ``<reward>_1``, ...
    participant
        Column of the participant label. ``None`` uses the column ``participant`` when
        the file has one, and otherwise treats every session as its own participant.
    block, experiment
        Columns of the block label (per trial) and the experiment label (per session).
        ``None`` reads neither.
    """

    session: str = "session"
    choice: str = "choice"
    reward: str = "reward"
    participant: str | None = None
    block: str | None = None
    experiment: str | None = None


@dataclass(frozen=True, eq=False)
class Dataset:
    """Trials of many sessions, padded to the longest session.

    Attributes
    ----------
    choices : numpy.ndarray
        ``(n_sessions, max_trials)`` int64: the chosen action counted from 0; -1 at padding.
    reward : numpy.ndarray
        ``(n_sessions, max_trials)`` float32: reward of the chosen action, rescaled to
        [0, 1] when :attr:`reward_range` is set; 0 at padding.
    rewards : numpy.ndarray or None
        ``(n_sessions, max_trials, n_actions)`` float32 rewards of every action, scaled like
        :attr:`reward`, NaN where the file left one unobserved; ``None`` when the file
        does not have one counterfactual column per action.
    inputs : dict of str to numpy.ndarray
        Extra per-trial inputs, each ``(n_sessions, max_trials)`` float32, 0 at padding.
    lengths : numpy.ndarray
        ``(n_sessions,)`` int64 number of real trials per session.
    session_ids : tuple of str
        Session labels as written in the file, in order of first appearance.
    participant_index : numpy.ndarray
        ``(n_sessions,)`` int64 index of each session's participant in
        :attr:`participant_ids`.
    participant_ids : tuple of str
        Participant labels in order of first appearance.
    n_actions : int
        Number of actions.
    choice_base : int
        0 or 1: how the file coded the first action.
    reward_range : tuple of float or None
        ``(min, max)`` of the file's rewards when they were rescaled, else ``None``.
    block_index : numpy.ndarray or None
        ``(n_sessions, max_trials)`` int64 index of each trial's block in :attr:`block_ids`,
        -1 at padding; ``None`` when no block column was read.
    block_ids : tuple of str or None
        Block labels in order of first appearance.
    experiment_index : numpy.ndarray or None
        ``(n_sessions,)`` int64 index of each session's experiment in
        :attr:`experiment_ids`; ``None`` when no experiment column was read.
    experiment_ids : tuple of str or None
        Experiment labels in order of first appearance.
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
    block_index: np.ndarray | None = field(default=None, kw_only=True)
    block_ids: tuple[str, ...] | None = field(default=None, kw_only=True)
    experiment_index: np.ndarray | None = field(default=None, kw_only=True)
    experiment_ids: tuple[str, ...] | None = field(default=None, kw_only=True)

    def __post_init__(self) -> None:
        grid = self.choices.shape
        n_sessions = grid[0]
        shapes = {
            "reward": (self.reward.shape, grid),
            "lengths": (self.lengths.shape, (n_sessions,)),
            "session_ids": ((len(self.session_ids),), (n_sessions,)),
            "participant_index": (self.participant_index.shape, (n_sessions,)),
        }
        if self.rewards is not None:
            shapes["rewards"] = (self.rewards.shape, (*grid, self.n_actions))
        if self.block_index is not None:
            shapes["block_index"] = (self.block_index.shape, grid)
        if self.experiment_index is not None:
            shapes["experiment_index"] = (self.experiment_index.shape, (n_sessions,))
        for name, values in self.inputs.items():
            shapes[f"inputs[{name!r}]"] = (values.shape, grid)
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
        """Number of real trials over all sessions."""
        return int(self.lengths.sum())

    def subset(self, sessions: Sequence[int]) -> Dataset:
        """The sessions at the indices ``sessions``, in that order, as a Dataset.

        Participants are numbered anew: :attr:`participant_ids` keeps those who have a
        session in the subset, in their original order, so that a model fitted to the
        subset learns no values for participants it never saw. Match participants
        across subsets by label. Blocks and experiments keep their labels and indices;
        the padding shrinks to the longest session kept.

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
            inputs={name: trials(values) for name, values in self.inputs.items()},
            lengths=self.lengths[index],
            session_ids=tuple(self.session_ids[i] for i in index),
            participant_index=renumber[self.participant_index[index]],
            participant_ids=tuple(self.participant_ids[i] for i in kept),
            block_index=None if self.block_index is None else trials(self.block_index),
            experiment_index=(
                None if self.experiment_index is None else self.experiment_index[index]
            ),
        )

    def to_csv(self, path: str | os.PathLike[str], *, sep: str = ",") -> None:
        """Write the trials in the standard layout, in the file's original units.

        The columns are ``session``, ``participant``, ``experiment`` and ``block`` when
        known, ``choice`` (coded from :attr:`choice_base`), ``reward``, ``reward_0`` ...
        when counterfactual rewards are known, then the extra inputs. Rewards are mapped
        back from [0, 1] to :attr:`reward_range`. The file is written to a temporary
        file beside ``path`` and then moved over it, so a reader never sees half a file.
        :func:`load_dataset` with the same ``inputs`` and ``choice_base`` reads back
        equal arrays.

        Parameters
        ----------
        path
            File to write; replaced if it exists.
        sep
            Field separator.

        Raises
        ------
        ValueError
            If an extra input has the name of a standard column.
        """
        mask = self.mask
        session_of_trial = np.nonzero(mask)[0]
        header = ["session", "participant"]
        labels = np.asarray(self.session_ids, dtype=object)
        people = np.asarray(self.participant_ids, dtype=object)
        columns = [
            labels[session_of_trial].tolist(),
            people[self.participant_index[session_of_trial]].tolist(),
        ]
        if self.experiment_index is not None and self.experiment_ids is not None:
            header.append("experiment")
            experiments = np.asarray(self.experiment_ids, dtype=object)
            columns.append(experiments[self.experiment_index[session_of_trial]].tolist())
        if self.block_index is not None and self.block_ids is not None:
            header.append("block")
            blocks = np.asarray(self.block_ids, dtype=object)
            columns.append(blocks[self.block_index[mask]].tolist())
        header += ["choice", "reward"]
        columns.append((self.choices[mask] + self.choice_base).astype(str).tolist())
        columns.append(self._original_units(self.reward[mask]).astype(str).tolist())
        if self.rewards is not None:
            real = self._original_units(self.rewards[mask])
            for action in range(self.n_actions):
                header.append(f"reward_{action}")
                columns.append(real[:, action].astype(str).tolist())
        for name, values in self.inputs.items():
            if name in header:
                raise ValueError(f"input {name!r} has the name of a standard column")
            header.append(name)
            columns.append(values[mask].astype(str).tolist())

        text = io.StringIO()
        writer = csv.writer(text, delimiter=sep, lineterminator="\n")
        writer.writerow(header)
        writer.writerows(zip(*columns, strict=True))
        write_atomic(path, text.getvalue())

    def _original_units(self, values: np.ndarray) -> np.ndarray:
        """Map stored rewards back to the file's units (exactly at the range's ends)."""
        if self.reward_range is None:
            return values
        low, high = self.reward_range
        scaled = values.astype(np.float64) * (high - low) + low
        return np.where(values == 1, high, scaled)


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
    rescale_rewards: bool = True,
) -> Dataset:
    """Read a CSV file of trials into a :class:`Dataset`.

    Parameters
    ----------
    path
        The file. Error messages show it as given.
    inputs
        Names of extra columns to read as per-trial model inputs; values must be finite.
    n_actions
        Number of actions. ``None`` infers it as the largest choice plus one, at least 2,
        and at least the number of counterfactual reward columns ``reward_0``, ...
    columns
        Which file columns hold the standard fields.
    sep
        Field separator. ``None`` sniffs it from the header line: tab if the header has
        one, else ``';'`` if the header has a semicolon and no comma, else ``','``.
    choice_base
        0 or 1, how the file codes the first action. ``None`` detects it: the file is
        1-based if its smallest choice is 1, else 0-based.
    rescale_rewards
        Rescale all rewards (chosen and counterfactual) linearly to [0, 1] using their
        minimum and maximum over the file. Nothing is rescaled when they are all equal.

    Returns
    -------
    Dataset
        The sessions, padded to the longest one.

    Raises
    ------
    DataError
        If the file cannot be read or its content is not valid trial data.
    ValueError
        If ``choice_base`` or ``n_actions`` is not a valid setting.
    """
    if choice_base not in (None, 0, 1):
        raise ValueError(f"choice_base must be 0, 1 or None, not {choice_base!r}")
    if n_actions is not None and n_actions < 2:
        raise ValueError(f"n_actions must be at least 2, not {n_actions}")
    shown = os.fspath(path)
    text = _read_text(Path(path), shown)
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
    roles = {"session": columns.session, "choice": columns.choice, "reward": columns.reward}
    for role, name in (
        ("participant", participant),
        ("block", columns.block),
        ("experiment", columns.experiment),
    ):
        if name is not None:
            roles[role] = name
    _check_columns(roles, inputs, header, shown, header_line)
    counterfactual = _counterfactual_columns(columns.reward, header)
    wanted = list(dict.fromkeys([*roles.values(), *counterfactual, *inputs]))

    fields, rows = _read_rows(reader, header, wanted, separator, shown)
    del text, reader
    column = dict(zip(wanted, fields, strict=True))

    session_labels = column[roles["session"]]
    session_of_row, session_ids = _codes(session_labels, roles["session"], rows)
    choice, base, n_actions = _choices(
        column[roles["choice"]], roles["choice"], rows, choice_base, n_actions, len(counterfactual)
    )
    reward = _numbers(
        column[roles["reward"]],
        roles["reward"],
        rows,
        hint="every trial needs the reward of the chosen action",
    )
    if len(counterfactual) >= n_actions:
        every = np.stack(
            [
                _numbers(column[name], name, rows, missing_ok=True)
                for name in counterfactual[:n_actions]
            ],
            axis=1,
        )
    else:
        every = None
    reward_range = None
    if rescale_rewards:
        observed = reward if every is None else np.concatenate([reward, every.ravel()])
        low, high = float(np.nanmin(observed)), float(np.nanmax(observed))
        if high > low:
            reward_range = (low, high)
            reward = (reward - low) / (high - low)
            if every is not None:
                every = (every - low) / (high - low)
    extra = {name: _numbers(column[name], name, rows, what=f"input {name}") for name in inputs}

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
            roles["session"],
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
    block_index = block_ids = experiment_index = experiment_ids = None
    if columns.block is not None:
        block_of_row, block_ids = _codes(column[columns.block], columns.block, rows)
        block_index = padded(block_of_row, -1, np.int64)
    if columns.experiment is not None:
        experiment_index, experiment_ids = _per_session(
            column[columns.experiment],
            columns.experiment,
            rows,
            session_of_row,
            first_row,
            session_ids,
        )
    return Dataset(
        choices=padded(choice, -1, np.int64),
        reward=padded(reward, 0, np.float32),
        rewards=None if every is None else padded(every, 0, np.float32),
        inputs={name: padded(values, 0, np.float32) for name, values in extra.items()},
        lengths=lengths.astype(np.int64),
        session_ids=session_ids,
        participant_index=participant_index,
        participant_ids=participant_ids,
        n_actions=n_actions,
        choice_base=base,
        reward_range=reward_range,
        block_index=block_index,
        block_ids=block_ids,
        experiment_index=experiment_index,
        experiment_ids=experiment_ids,
    )


def _read_text(path: Path, shown: str) -> str:
    """The file's text, decoded as UTF-8 (a byte-order mark is dropped)."""
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise DataError("file not found", path=shown) from None
    except IsADirectoryError:
        raise DataError("this is a directory, not a data file", path=shown) from None
    except OSError as exc:
        raise DataError(f"cannot read the file: {exc.strerror}", path=shown) from None
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise DataError(
            "the file is not UTF-8 text",
            path=shown,
            row=raw.count(b"\n", 0, exc.start) + 1,
            hint="save the file with UTF-8 encoding",
        ) from None


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


def _check_columns(
    roles: dict[str, str], inputs: Sequence[str], header: list[str], path: str, line: int
) -> None:
    """Raise if a standard field or an extra input has no column in ``header``."""
    listing = ", ".join(repr(name) for name in header)
    missing = [(role, name) for role, name in roles.items() if name not in header]
    if missing:
        unused = [name for name in header if name not in roles.values()]
        described = [f"{name!r} ({_ROLE_TEXT[role]})" for role, name in missing]
        guesses = [
            f"{guess!r} for {name!r}"
            for _, name in missing
            if (guess := _suggest(name, unused)) is not None
        ]
        flags = ["session", "choice", "reward"]
        flags += [role for role, _ in missing if role not in flags]
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
    for name in inputs:
        if name not in header:
            guess = _suggest(name, header)
            hint = f"the file's columns are {listing}"
            if guess is not None:
                hint = f"did you mean {guess!r}? The file's columns are {listing}"
            raise DataError(
                f"the model reads data.{name} but the file has no column {name!r}",
                path=path,
                row=line,
                hint=hint,
            )


def _counterfactual_columns(reward: str, header: list[str]) -> list[str]:
    """The columns ``<reward>_0``, ``<reward>_1``, ... present in a row without gaps."""
    pattern = re.compile(re.escape(reward) + r"_(\d+)")
    numbers = {int(m[1]) for name in header if (m := pattern.fullmatch(name))}
    found: list[str] = []
    while len(found) in numbers:
        found.append(f"{reward}_{len(found)}")
    return found


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
    hint: str | None = None,
) -> np.ndarray:
    """Parse a column of numbers; only ``missing_ok`` columns may hold NaN or be empty."""
    what = what or column
    try:
        out = np.fromiter(map(float, values), np.float64, count=len(values))
    except ValueError:
        out = np.empty(len(values))
        for index, value in enumerate(values):
            try:
                out[index] = float(value)
            except ValueError:
                if missing_ok and value.strip() in _MISSING_TOKENS:
                    out[index] = np.nan
                elif not value.strip():
                    raise rows.error(f"{what} is missing", index, column, hint) from None
                else:
                    raise rows.error(
                        f"{what} is not a number: {value!r}", index, column, hint
                    ) from None
    bad = np.isinf(out) if missing_ok else ~np.isfinite(out)
    if bad.any():
        index = int(np.argmax(bad))
        raise rows.error(f"{what} is not a finite number: {values[index]!r}", index, column, hint)
    return out


def _choices(
    values: Sequence[str],
    column: str,
    rows: _Rows,
    choice_base: int | None,
    n_actions: int | None,
    n_counterfactual: int,
) -> tuple[np.ndarray, int, int]:
    """Parse the choices; return them counted from 0, the file's base and ``n_actions``."""
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
    base = choice_base if choice_base is not None else int(raw.min() == 1)
    below = np.flatnonzero(raw < base)
    if below.size:
        index = int(below[0])
        if raw[index] < 0:
            message, hint = f"choice {values[index]} is negative", None
        else:
            message = f"choice {values[index]} is out of range: choices were declared 1-based"
            hint = "this file seems to count actions from 0"
        raise rows.error(message, index, column, hint)
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
            hint = "leave the number of actions unset to infer it from the data"
        raise rows.error(message, index, column, hint)
    shifted = (raw - base).astype(np.int64)
    if n_actions is None:
        n_actions = max(int(shifted.max()) + 1, 2, n_counterfactual)
    return shifted, base, n_actions
