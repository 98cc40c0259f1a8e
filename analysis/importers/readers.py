"""Read one exported file (CSV or XLSX) into header + rows, without interpreting values.

CSV bytes are decoded strictly: with the declared encoding, or by trying UTF-8 (with
or without BOM) and then GB18030 (a superset of GBK). Nothing is ever decoded as
Latin-1 behind the user's back; an undecodable byte is an :class:`InputError` naming
the file, byte offset and line. XLSX files are read with openpyxl twice — cached
values, and formulas — so a formula cell with no cached value becomes a
:class:`Formula` marker instead of a silent blank. Both formats may carry title or
filter rows above the header: the header is the row among the first
``search_rows`` that matches most of the expected headers.
"""

from __future__ import annotations

import csv
import io
import logging
import re
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import InputError
from .parsers import clean_text

log = logging.getLogger(__name__)

AUTO_ENCODINGS = ("utf-8-sig", "gb18030")


@dataclass(frozen=True)
class Formula:
    """A formula cell whose workbook holds no cached value (never recalculated)."""

    cell: str
    formula: str


@dataclass
class RawTable:
    """One file's header and data rows, cells as read (str, number, datetime, None).

    ``row_numbers`` are the rows as a spreadsheet or text editor shows them (1-based,
    counting title rows and the header), so a user can find every reported row.
    """

    file: Path
    headers: list[str]
    rows: list[list[object]]
    row_numbers: list[int]
    header_row: int
    encoding: str | None = None
    sheet: str | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def rows_above_header(self) -> int:
        """Title and filter rows skipped above the header."""
        return self.header_row - 1


def normal_header(text: object) -> str:
    """The form headers are compared in: NFKC, case-folded, single spaces, no ``*``."""
    value = clean_text(text) or ""
    value = unicodedata.normalize("NFKC", value).strip().rstrip("*").strip()
    return re.sub(r"\s+", " ", value).casefold()


def decode_bytes(data: bytes, encoding: str, file: str) -> tuple[str, str]:
    """Decode a CSV file's bytes strictly; return ``(text, encoding used)``.

    Parameters
    ----------
    data : the file's bytes.
    encoding : a Python codec name, or ``"auto"`` (UTF-16 by BOM, else UTF-8, else
        GB18030).
    file : the file name, for error messages.
    """
    if encoding == "auto":
        if data[:2] in (b"\xff\xfe", b"\xfe\xff"):
            candidates: tuple[str, ...] = ("utf-16",)
        else:
            candidates = AUTO_ENCODINGS
    else:
        candidates = (encoding,)
    failures = []
    for codec in candidates:
        try:
            return data.decode(codec, errors="strict"), codec
        except UnicodeDecodeError as exc:
            line = data.count(b"\n", 0, exc.start) + 1
            failures.append(f"as {codec} at byte offset {exc.start} (line {line}, "
                            f"byte {data[exc.start:exc.start + 1]!r})")
        except LookupError:
            raise InputError(f"unknown encoding {encoding!r}", file=file,
                             hint="use a Python codec name such as utf-8-sig, gb18030 or gbk") from None
    raise InputError("cannot be decoded " + "; nor ".join(failures), file=file,
                     hint="save the export as UTF-8, or declare its `encoding:` in the mapping")


def _delimiter(text: str) -> str:
    head = text.splitlines()[:20]
    counts = {d: sum(line.count(d) for line in head) for d in (",", "\t", ";")}
    return max(counts, key=counts.get) if any(counts.values()) else ","


def _csv_rows(path: Path, encoding: str) -> tuple[list[tuple[int, list[object]]], str]:
    text, used = decode_bytes(path.read_bytes(), encoding, path.name)
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=_delimiter(text))
    rows, start = [], 1
    for cells in reader:
        rows.append((start, list(cells)))
        start = reader.line_num + 1
    return rows, used


def _xlsx_rows(path: Path, sheet: str | None) -> tuple[list[tuple[int, list[object]]], str]:
    import openpyxl
    from openpyxl.utils import get_column_letter

    try:
        values_wb = openpyxl.load_workbook(path, data_only=True, read_only=True)
        formula_wb = openpyxl.load_workbook(path, data_only=False, read_only=True)
    except Exception as exc:  # openpyxl raises many types for a damaged file
        raise InputError(f"cannot be opened as an XLSX workbook ({exc})", file=path.name,
                         hint="re-save it from Excel or WPS as .xlsx") from None
    name = sheet or values_wb.sheetnames[0]
    if name not in values_wb.sheetnames:
        raise InputError(f"has no sheet {name!r}; sheets: {', '.join(values_wb.sheetnames)}",
                         file=path.name, hint="fix `sheet:` in the mapping")
    rows = []
    pairs = zip(values_wb[name].iter_rows(), formula_wb[name].iter_rows())
    for number, (vals, forms) in enumerate(pairs, start=1):
        cells: list[object] = []
        for col, (v, f) in enumerate(zip(vals, forms), start=1):
            value = getattr(v, "value", None)
            if value is None and getattr(f, "data_type", None) == "f":
                value = Formula(f"{get_column_letter(col)}{number}", str(f.value))
            cells.append(value)
        rows.append((number, cells))
    values_wb.close()
    formula_wb.close()
    return rows, name


def _is_blank(cells: list[object]) -> bool:
    return all(c is None or (isinstance(c, str) and clean_text(c) is None) for c in cells)


def find_header(rows: list[tuple[int, list[object]]], expected: set[str], search_rows: int,
                file: str) -> int:
    """Index (in ``rows``) of the header: the row matching most expected headers."""
    best, best_score = None, 0
    for i, (_, cells) in enumerate(rows[:search_rows]):
        score = len({normal_header(c) for c in cells} & expected)
        if score > best_score:
            best, best_score = i, score
    if best is None or best_score < min(2, len(expected)):
        first = next((c for _, c in rows if not _is_blank(c)), [])
        seen = ", ".join(str(clean_text(c)) for c in first if clean_text(c))[:200]
        raise InputError(f"no header row found in the first {search_rows} rows (first row: {seen})",
                         file=file, hint="check the mapping's column names match this export's headers")
    return best


def _header_names(cells: list[object], width: int) -> list[str]:
    names: list[str] = []
    for i in range(width):
        text = clean_text(cells[i]) if i < len(cells) else None
        name = text or f"(unnamed column {i + 1})"
        base, n = name, 2
        while name in names:
            name, n = f"{base} ({n})", n + 1
        names.append(name)
    return names


def read_table(path: Path, *, expected: Iterable[str], encoding: str = "auto",
               sheet: str | None = None, search_rows: int = 20) -> RawTable:
    """Read a CSV or XLSX export into a :class:`RawTable`.

    Parameters
    ----------
    path : the file; never modified.
    expected : source headers the mapping knows, used to find the header row.
    encoding : CSV encoding, or ``"auto"``.
    sheet : XLSX sheet name; ``None`` = the first sheet.
    search_rows : how many rows from the top may hold the header.
    """
    suffix = path.suffix.lower()
    if suffix in (".csv", ".txt", ".tsv"):
        rows, used = _csv_rows(path, encoding)
        enc, sheet_name = used, None
    elif suffix in (".xlsx", ".xlsm"):
        rows, sheet_name = _xlsx_rows(path, sheet)
        enc = None
    else:
        raise InputError(f"unsupported file type {suffix!r}", file=path.name,
                         hint="export as CSV or XLSX (old .xls files: re-save as .xlsx)")
    wanted = {normal_header(h) for h in expected}
    h = find_header(rows, wanted, search_rows, path.name)
    body = rows[h + 1:]
    width = max([len(rows[h][1])] + [len(c) for _, c in body])
    table = RawTable(path, _header_names(rows[h][1], width),
                     [c + [None] * (width - len(c)) for _, c in body],
                     [n for n, _ in body], rows[h][0], enc, sheet_name)
    log.debug("read %s: header on row %d, %d data rows, encoding %s",
              path.name, table.header_row, len(table.rows), enc)
    return table
