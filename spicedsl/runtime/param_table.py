"""Per-participant param values from a table: one row per participant.

The table is a CSV file with a ``participant`` column and one column per param, e.g.::

    participant,alpha,beta
    1,0.5,3
    2,0.8,3

Every param in it must be declared ``per participant`` in the model, with no fixed
value: the table gives each participant theirs. A model names its table with
``participants from "table.csv"`` (relative to the model file), and ``spicedsl simulate
--params`` takes one for a run. Reading it needs neither numpy nor torch, so that
``spicedsl check`` can check it too.
"""

from __future__ import annotations

import csv
import io
import math
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

from spicedsl.errors import DataError
from spicedsl.files import TABLE_FILE_LIMIT, read_input_text

PARTICIPANT_COLUMN = "participant"
# What to do with participants of the data that the table lacks.
UNKNOWN_PARTICIPANTS = ("error", "mean")


class Bounds(NamedTuple):
    """The open bounds of a param the table may give (None: unbounded on that side)."""

    lower: float | None
    upper: float | None


@dataclass(frozen=True)
class ParamTable:
    """Participant labels, in table order, and each param's value per participant.

    ``rows`` holds the file line of each participant's row, for messages.
    """

    path: str
    participant_ids: tuple[str, ...]
    rows: tuple[int, ...]
    values: dict[str, tuple[float, ...]]

    def for_participants(
        self, participant_ids: Sequence[str], unknown: str = "error"
    ) -> dict[str, list[float]]:
        """Each param's value for each of ``participant_ids`` (the data's participants).

        Participants missing from the table are an error, or with ``unknown="mean"`` get
        the group values, the mean over the table's participants, with a note through
        :mod:`warnings` saying how many and who. Table rows whose participant is not
        among ``participant_ids`` get a note with the first one's row.
        """
        index = {label: i for i, label in enumerate(self.participant_ids)}
        missing = [label for label in participant_ids if label not in index]
        shown = listed_labels(missing)
        if missing and unknown != "mean":
            raise DataError(
                f"the data's participants {shown} have no row in the participant table",
                path=self.path,
                hint="add their rows, or give them the table's mean values "
                "(--unknown-participants mean)",
            )
        if missing:
            count = f"{len(missing)} participant{'s have' if len(missing) > 1 else ' has'}"
            warnings.warn(
                f"{self.path}: {count} no row in the participant table ({shown}): "
                "they get the group values, the table's mean (--unknown-participants error "
                "refuses them)",
                stacklevel=3,
            )
        wanted = set(participant_ids)
        unused = [
            (label, row)
            for label, row in zip(self.participant_ids, self.rows, strict=True)
            if label not in wanted
        ]
        if len(unused) == 1:
            label, row = unused[0]
            note = f"participant {label!r} is not in the data; the row is unused"
            warnings.warn(f"{self.path}:{row}: {note}", stacklevel=3)
        elif unused:
            labels = listed_labels([label for label, _ in unused])
            note = f"participants {labels} are not in the data; their rows are unused"
            warnings.warn(f"{self.path}:{unused[0][1]}: {note}", stacklevel=3)
        return {
            name: [
                column[index[label]] if label in index else math.fsum(column) / len(column)
                for label in participant_ids
            ]
            for name, column in self.values.items()
        }


def listed_labels(labels: Sequence[str], shown: int = 5) -> str:
    """The first ``shown`` of ``labels``, quoted, and how many more.

    >>> listed_labels(["a", "b"]), listed_labels([str(i) for i in range(8)], 2)
    ("'a', 'b'", "'0', '1' and 6 more")
    """
    more = f" and {len(labels) - shown} more" if len(labels) > shown else ""
    return ", ".join(repr(label) for label in labels[:shown]) + more


def table_path(model_path: str, written: str) -> str:
    """Where the table a model file names lies: relative to the model file's folder
    (to the working folder for model text that is not a file)."""
    if model_path.startswith("<"):
        return written
    return str(Path(model_path).parent / written)


def model_values(
    model, participant_ids: Sequence[str], unknown: str = "error"
) -> dict[str, list[float]] | None:
    """The values the table of a checked model (:class:`spicedsl.ir.Model`) gives each of
    ``participant_ids`` (see :meth:`ParamTable.for_participants`); None if it names none."""
    table = model_table(model)
    return table.for_participants(participant_ids, unknown) if table is not None else None


def model_table(model) -> ParamTable | None:
    """The table a checked model (:class:`spicedsl.ir.Model`) names, read; None if none."""
    if model.participant_table is None:
        return None
    return read_param_table(model.participant_table, table_bounds(model.table_params), model.name)


def table_bounds(params) -> dict[str, Bounds]:
    """The bounds of ``params`` (:class:`spicedsl.ir.Param`), by name."""
    return {p.name: Bounds(p.lower, p.upper) for p in params}


def read_param_table(path: str | Path, params: Mapping[str, Bounds], model: str) -> ParamTable:
    """Read and check a table of per-participant param values.

    Parameters
    ----------
    path : str or Path
        The CSV file.
    params : mapping of str to Bounds
        The params of the model that a table may give: per participant, not fixed.
    model : str
        The model's name, for messages.

    Raises
    ------
    DataError
        For a missing file, no ``participant`` column, a column named twice or not one
        of ``params``, an empty or repeated participant, or a value that is not a finite
        number or lies outside the param's bounds; rows are file lines.
    """
    shown = str(path)
    text = read_input_text(path, "participant table", TABLE_FILE_LIMIT)
    try:
        rows = list(csv.reader(io.StringIO(text, newline="")))
    except csv.Error as error:
        raise DataError(f"cannot read the participant table: {error}", path=shown) from None
    header = [name.strip() for name in rows[0]] if rows else []
    first_column: dict[str, int] = {}
    for index, name in enumerate(header):
        if first_column.setdefault(name, index) != index:
            raise DataError(
                f"the header names column {name!r} twice "
                f"(columns {first_column[name] + 1} and {index + 1})",
                path=shown,
                row=1,
                hint="give every column a distinct name",
            )
    if PARTICIPANT_COLUMN not in header:
        raise DataError(
            f"the participant table needs a '{PARTICIPANT_COLUMN}' column", path=shown, row=1
        )
    for name in header:
        if name != PARTICIPANT_COLUMN and name not in params:
            raise DataError(
                f"'{name}' is not a per-participant param without a value in model '{model}'",
                path=shown,
                row=1,
                column=name,
                hint="declare it as 'param NAME ... per participant' with no '= value'",
            )
    ids: list[str] = []
    lines: list[int] = []
    values: dict[str, list[float]] = {name: [] for name in header if name != PARTICIPANT_COLUMN}
    for line, row in enumerate(rows[1:], start=2):
        if not row:
            continue
        if len(row) != len(header):
            raise DataError(
                f"the row has {len(row)} fields, the header {len(header)}", path=shown, row=line
            )
        record = dict(zip(header, row, strict=True))
        label = record[PARTICIPANT_COLUMN].strip()
        if not label:
            raise DataError(
                "the participant is empty", path=shown, row=line, column=PARTICIPANT_COLUMN
            )
        if label in ids:
            first = lines[ids.index(label)]
            raise DataError(
                f"participant {label!r} appears twice (first on row {first})",
                path=shown,
                row=line,
                column=PARTICIPANT_COLUMN,
            )
        ids.append(label)
        lines.append(line)
        for name in values:
            values[name].append(_value(record[name], name, params[name], shown, line))
    if not ids:
        raise DataError("the participant table has no participant rows", path=shown)
    return ParamTable(shown, tuple(ids), tuple(lines), {n: tuple(v) for n, v in values.items()})


def format_param_table(
    participant_ids: Sequence[str], columns: Mapping[str, Sequence[float]]
) -> str:
    """The CSV text of a participant table that :func:`read_param_table` reads back."""
    lines = [",".join((PARTICIPANT_COLUMN, *columns))]
    for index, label in enumerate(participant_ids):
        lines.append(",".join((label, *(repr(float(v[index])) for v in columns.values()))))
    return "\n".join(lines) + "\n"


def _value(text: str, name: str, bounds: Bounds, path: str, line: int) -> float:
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not math.isfinite(value):
        raise DataError(
            f"{text.strip()!r} is not a finite number", path=path, row=line, column=name
        )
    low = bounds.lower if bounds.lower is not None else -math.inf
    high = bounds.upper if bounds.upper is not None else math.inf
    if not low < value < high:
        raise DataError(
            f"{value:g} is outside the bounds of '{name}'", path=path, row=line, column=name
        )
    return value
