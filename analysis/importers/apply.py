"""Apply one table's mapping to the rows of an export file.

Row by row: blank rows and report footers are removed and counted; sub-form
continuation rows get their master cells filled down; rows outside ``keep_if`` are
filtered and counted; then each canonical column is converted. A row with any cell
that cannot be converted goes to the quarantine (one entry per bad cell) — nothing
is dropped silently. Two problems are fatal instead, because one fix repairs every
row: a formula cell with no cached value, and an ambiguous day/month date in a column
with no declared format.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from ..contract import TABLES
from ..errors import InputError
from .mapping import ColumnSpec, Mapping, TableMapping, resolve_sources
from .parsers import (AmbiguousDateError, ParseError, clean_text, parse_amount, parse_bool,
                      parse_date, parse_id, parse_int, parse_text, value_key)
from .readers import Formula, RawTable, normal_header
from .report import QuarantineRow, TableReport


@dataclass
class Record:
    """One mapped row: canonical values plus where it came from."""

    values: dict
    file: str
    row: int
    n_rows: int = 1  # source rows combined into this record (sub-form exports)


@dataclass
class Rejected:
    """A quarantined source row: its id (when readable) and its bad cells."""

    id: object
    file: str
    row: int
    cells: list[QuarantineRow] = field(default_factory=list)


def convert(spec: ColumnSpec, raw: object, tz: str | None = None) -> object:
    """Convert one raw cell to the canonical value of ``spec``; raise ParseError if it cannot."""
    if spec.equals:
        return value_key(raw) in spec.equals
    key = value_key(raw)
    if spec.values and key in spec.values:
        mapped = spec.values[key]
        return _typed(spec, mapped)
    if key is None and spec.kind not in ("id", "str"):
        return None
    if spec.kind == "enum":
        choices = TABLES_CHOICES.get(spec.name, ())
        if key in choices:
            return key
        if spec.default is not None:
            return spec.default
        raise ParseError(f"unknown {spec.name} value")
    return _typed(spec, raw)


def _typed(spec: ColumnSpec, raw: object) -> object:
    kind = spec.kind
    if kind in ("id", "str"):
        return parse_id(raw, kind=spec.id_kind) if spec.id_kind else parse_text(raw)
    if kind == "date":
        return parse_date(raw, formats=spec.formats)
    if kind == "float":
        return parse_amount(raw, decimal=spec.decimal)
    if kind == "int":
        return parse_int(raw)
    if kind == "bool":
        return parse_bool(raw)
    return clean_text(raw)  # enum values from a value map are already canonical


TABLES_CHOICES = {c.name: c.choices for t in TABLES.values() for c in t.columns if c.choices}


def _footer(cells: list[object], patterns: list[re.Pattern]) -> bool:
    first = next((clean_text(c) for c in cells if clean_text(c) is not None), None)
    return first is not None and any(p.match(first) for p in patterns)


def _blank(cells: list[object]) -> bool:
    return all(clean_text(c) is None for c in cells)


def resolve_columns(tm: TableMapping, raw: RawTable) -> dict[str, str | None]:
    """Canonical column -> source header found in this file (``None`` when absent)."""
    return {name: resolve_sources(spec, raw.headers) for name, spec in tm.columns.items()}


def unused_columns(tm: TableMapping, raw: RawTable, used: dict[str, str | None]) -> list[str]:
    """Source headers of the file no part of the mapping reads."""
    taken = {normal_header(h) for h in used.values() if h}
    taken |= {normal_header(h) for h in tm.fill_key + tm.fill_columns}
    if tm.keep_if:
        taken |= {normal_header(h) for h in tm.keep_if[0]}
    return [h for h in raw.headers if normal_header(h) not in taken and not h.startswith("(unnamed")]


def _index(raw: RawTable, names: tuple[str, ...]) -> list[int]:
    pos = {normal_header(h): i for i, h in enumerate(raw.headers)}
    return [pos[normal_header(n)] for n in names if normal_header(n) in pos]


def _fill_down(rows: list[list[object]], key_idx: list[int], fill_idx: list[int]) -> None:
    """Fill master cells of sub-form continuation rows (rows whose key cells are blank)."""
    master: list[object] | None = None
    for cells in rows:
        if all(clean_text(cells[i]) is None for i in key_idx):
            if master is not None:
                for i in fill_idx + key_idx:
                    cells[i] = master[i]
        else:
            master = cells


def apply_file(raw: RawTable, tm: TableMapping, mapping: Mapping, report: TableReport
               ) -> tuple[list[Record], list[Rejected]]:
    """Map every data row of one file; update ``report``'s counts.

    Raises
    ------
    InputError : a formula cell without a cached value, or an ambiguous date with no
        declared format.
    """
    used = resolve_columns(tm, raw)
    patterns = [re.compile(p, re.IGNORECASE) for p in mapping.footer_patterns]
    rows = [list(c) for c in raw.rows]  # never modify what the reader returned
    if tm.fill_key:
        _fill_down(rows, _index(raw, tm.fill_key), _index(raw, tm.fill_columns))
    keep_idx = _index(raw, tm.keep_if[0]) if tm.keep_if else []
    col_idx = {n: raw.headers.index(h) for n, h in used.items() if h}
    id_col = TABLES[tm.table].id_column
    records, rejected, memo = [], [], {}
    report.rows_read += len(rows)
    for number, cells in zip(raw.row_numbers, rows):
        if _blank(cells):
            report.blank_rows += 1
        elif _footer(cells, patterns):
            report.footer_rows += 1
        elif tm.keep_if and not any(value_key(cells[i]) in tm.keep_if[1] for i in keep_idx):
            report.rows_filtered += 1
        else:
            values, bad = _convert_row(raw, tm, mapping, used, col_idx, cells, number, memo)
            if bad:
                rejected.append(Rejected(values.get(id_col), raw.file.name, number, bad))
            else:
                records.append(Record(values, raw.file.name, number))
    return records, rejected


def _cached(memo: dict, spec: ColumnSpec, cell: object, tz: str | None) -> object:
    """Convert a cell, reusing the result for a value already seen in this column."""
    key = (type(cell), cell)
    if key not in memo:
        try:
            memo[key] = (parse_date(cell, formats=spec.formats, tz=tz)
                         if spec.kind == "date" and not spec.values else convert(spec, cell))
        except ParseError as exc:
            memo[key] = exc
    if isinstance(memo[key], ParseError):
        raise type(memo[key])(memo[key].reason)  # a fresh exception: no shared traceback
    return memo[key]


def _convert_row(raw, tm, mapping, used, col_idx, cells, number, memo) -> tuple[dict, list[QuarantineRow]]:
    values, bad = {}, []
    for name, spec in tm.columns.items():
        if spec.constant is not None:
            values[name] = _typed(spec, spec.constant)
            continue
        if name not in col_idx:
            values[name] = None
            continue
        cell = cells[col_idx[name]]
        if isinstance(cell, Formula):
            raise InputError(f"cell {cell.cell} holds the formula {cell.formula} but no saved value",
                             file=raw.file.name, column=used[name], row=number - raw.header_row,
                             hint="open the file in Excel or WPS and save it, so computed values are stored")
        try:
            values[name] = _cached(memo.setdefault(name, {}), spec, cell, mapping.timezone)
        except AmbiguousDateError:
            raise InputError(f"date {clean_text(cell)!r} (file row {number}) could be day/month or "
                             "month/day", file=raw.file.name, column=used[name], row=number - raw.header_row,
                             hint=f"declare the format of {tm.table}.{name} in the mapping, e.g. "
                                  f"format: \"%m/%d/%Y\" or \"%d/%m/%Y\"") from None
        except ParseError as exc:
            values[name] = None
            bad.append(QuarantineRow(tm.table, raw.file.name, number, used[name],
                                     "" if clean_text(cell) is None else str(clean_text(cell)), exc.reason))
    for name, spec in tm.columns.items():
        if spec.only_when and values.get(spec.only_when[0]) not in spec.only_when[1]:
            values[name] = None  # e.g. an open deal's expected close date is not a close date
    return values, bad
