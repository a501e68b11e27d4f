"""Per-participant param values from a table: one row per participant.

The table is a CSV file with a ``participant`` column and one column per param, e.g.::

    participant,alpha,beta
    1,0.5,3
    2,0.8,3

Every param in it must be declared ``per participant`` in the model, with no fixed
value: the table gives each participant theirs.
"""

from __future__ import annotations

import csv
import math
from dataclasses import dataclass
from pathlib import Path

from spicedsl import ir
from spicedsl.errors import DataError


@dataclass(frozen=True)
class ParamTable:
    """Participant labels, in table order, and each param's value per participant."""

    participant_ids: tuple[str, ...]
    values: dict[str, tuple[float, ...]]


def read_param_table(path: str | Path, model: ir.Model) -> ParamTable:
    """Read and check a table of per-participant param values for ``model``.

    Raises
    ------
    DataError
        For a missing file, no ``participant`` column, a column that is not a
        per-participant param of the model, a repeated participant, or a value that is
        not a finite number or lies outside the param's bounds; rows are file lines.
    """
    shown = str(path)
    try:
        with open(path, newline="", encoding="utf-8") as handle:
            rows = list(csv.reader(handle))
    except (OSError, UnicodeDecodeError) as error:
        raise DataError(f"cannot read the param table: {error}", path=shown) from None
    if not rows or "participant" not in rows[0]:
        raise DataError("the param table needs a 'participant' column", path=shown, row=1)
    header = rows[0]
    params = {p.name: p for p in model.params}
    for name in header:
        if name == "participant":
            continue
        param = params.get(name)
        if param is None or not param.per_participant or param.fixed:
            raise DataError(
                f"'{name}' is not a per-participant param without a value in model '{model.name}'",
                path=shown,
                row=1,
                column=name,
                hint="declare it as 'param NAME ... per participant' with no '= value'",
            )
    ids: list[str] = []
    values: dict[str, list[float]] = {name: [] for name in header if name != "participant"}
    for line, row in enumerate(rows[1:], start=2):
        if not row:
            continue
        if len(row) != len(header):
            raise DataError(
                f"the row has {len(row)} fields, the header {len(header)}", path=shown, row=line
            )
        record = dict(zip(header, row, strict=True))
        label = record["participant"].strip()
        if label in ids:
            raise DataError(f"participant {label!r} appears twice", path=shown, row=line)
        ids.append(label)
        for name in values:
            values[name].append(_value(record[name], params[name], shown, line))
    if not ids:
        raise DataError("the param table has no participant rows", path=shown)
    return ParamTable(tuple(ids), {name: tuple(v) for name, v in values.items()})


def _value(text: str, param: ir.Param, path: str, line: int) -> float:
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not math.isfinite(value):
        raise DataError(
            f"{text.strip()!r} is not a finite number", path=path, row=line, column=param.name
        )
    low = param.lower if param.lower is not None else -math.inf
    high = param.upper if param.upper is not None else math.inf
    if not low < value < high:
        raise DataError(
            f"{value:g} is outside the bounds of '{param.name}'",
            path=path,
            row=line,
            column=param.name,
        )
    return value
