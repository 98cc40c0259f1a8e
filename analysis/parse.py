"""Turn one raw column (strings from CSV, stored types from Parquet/DuckDB) into typed values.

Each parser returns the typed values together with two masks: which cells were null
(missing) and which held something that is not a value of the column's kind. The
checks that follow (nullability, ranges, choices) are pandera's job in
``analysis.validate``; parsing only decides what each cell *is*.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
from pandas.arrays import ArrowStringArray

from .contract import Column

#: Dates before 1677-09-22 or after 2262-04-11 do not fit datetime64[ns].
_ISO_DATE = r"\d{4}-\d{2}-\d{2}"
_TRUE = {"true", "1"}
_FALSE = {"false", "0"}

#: Reason for a present but unparseable cell, by column kind.
PARSE_REASON = {
    "date": "not a date",
    "float": "not a number",
    "int": "not an integer",
    "bool": "not a boolean",
}
DATE_RANGE_REASON = "date out of range"

#: dtype of each kind while checking (bool becomes plain ``bool`` once nulls are gone).
CHECK_DTYPE = {"id": object, "str": object, "enum": object, "date": "datetime64[ns]",
               "float": "float64", "int": "Int64", "bool": "boolean"}


@dataclass
class Parsed:
    """A parsed column: typed ``values`` (null where ``null`` or ``bad``) and the masks."""

    values: pd.Series
    null: np.ndarray
    bad: np.ndarray
    out_of_range: np.ndarray  # dates only: ISO-shaped but outside datetime64[ns]
    #: Arrow text only: each cell's position in ``distinct`` (the column's distinct
    #: texts as read, first appearance first), -1 for a missing cell.
    codes: np.ndarray | None = None
    distinct: pa.Array | None = None


def parse_column(raw: pd.Series, col: Column) -> Parsed:
    """Parse ``raw`` as a value of ``col.kind``.

    Parameters
    ----------
    raw : Series
        The column as read (any dtype); not modified.
    col : Column
        Its contract definition.

    Returns
    -------
    Parsed
        Values with the dtype of ``CHECK_DTYPE[col.kind]`` on the same index.
    """
    if is_arrow_text(raw):  # CSV cells as read by sources: strings already
        text = _IdText(raw) if col.kind == "id" else _ArrowText(raw)
        null = text.null
    else:
        text = _text(raw)
        null = raw.isna().to_numpy()
        if text.is_text.any():
            null = null | (text.text.str.len() == 0).to_numpy(dtype=bool, na_value=False)
    parser = {"id": _parse_id, "str": _parse_str, "enum": _parse_str, "date": _parse_date,
              "float": _parse_float, "int": _parse_int, "bool": _parse_bool}[col.kind]
    values, bad, oor = parser(raw, text, text.is_text, null)
    codes = distinct = None
    if isinstance(text, _IdText):
        codes = text.id_codes()  # for duplicate ids
    elif isinstance(text, _ArrowText) and col.kind in ("str", "enum"):
        codes = text.raw_codes  # for enum checks and references
        distinct = text.distinct_raw if col.kind == "str" else None
    return Parsed(values=values, null=null, bad=bad & ~null, out_of_range=oor & ~null,
                  codes=codes, distinct=distinct)


class _Text:
    """Stripped text of the string cells of a column (NA elsewhere, Arrow-backed).

    ``factorized()`` gives ``pandas.factorize`` of that text, computed once.
    """

    def __init__(self, text: pd.Series, is_text: np.ndarray):
        self.text, self.is_text = text, is_text
        self._factorized = None

    def factorized(self) -> tuple[np.ndarray, pd.Series]:
        """(codes, distinct stripped texts): -1 where the text is NA."""
        if self._factorized is None:
            codes, uniques = pd.factorize(self.text)
            self._factorized = codes, pd.Series(uniques, dtype=_TEXT)
        return self._factorized


class _ArrowText(_Text):
    """Arrow text, stripped per distinct cell rather than per row.

    The column is dictionary-encoded once; the distinct stripped texts and their codes
    equal ``pandas.factorize`` of the stripped column (same values, same order: first
    appearance), so every parser sees exactly what it would see on the whole column.
    """

    def __init__(self, raw: pd.Series):
        self.cells = cells = _one_chunk(raw)
        enc = pc.dictionary_encode(cells)
        self.distinct_raw = enc.dictionary
        self.raw_codes = pc.fill_null(enc.indices, -1).to_numpy()
        del enc
        _release_arrow_scratch(len(cells))
        self.is_text = self.raw_codes >= 0
        stripped = pd.Series(ArrowStringArray(self.distinct_raw), dtype=_TEXT).str.strip()
        blank = (stripped.str.len() == 0).to_numpy(dtype=bool)
        self.null = ~self.is_text | _take(blank, self.raw_codes, True)
        self._stripped = stripped
        self._factorized = None
        self.text = None  # never built row by row

    def factorized(self) -> tuple[np.ndarray, pd.Series]:
        if self._factorized is None:
            stripped = self._stripped
            if _total_length(stripped) == _total_length(self.distinct_raw):
                # nothing was stripped: still distinct, in the same order
                self._factorized = self.raw_codes, stripped
            else:
                s_codes, uniques = pd.factorize(stripped)
                _release_arrow_scratch(len(stripped))
                codes = _take(s_codes, self.raw_codes, -1)
                self._factorized = codes, pd.Series(uniques, dtype=_TEXT)
        return self._factorized


def _total_length(text) -> int:
    """Bytes in all the strings of ``text`` (a string Series or Arrow array)."""
    cells = pa.array(text)
    return int(pc.sum(pc.binary_length(cells)).as_py() or 0)


class _IdText(_Text):
    """A column of ids as Arrow text: stripped row by row (ids hardly repeat)."""

    def __init__(self, raw: pd.Series):
        self.cells = _one_chunk(raw)
        self.is_text = ~self.cells.is_null().to_numpy(zero_copy_only=False)
        blank = pd.Series(ArrowStringArray(self.cells), dtype=_TEXT).str.strip().str.len() == 0
        self.null = ~self.is_text | blank.to_numpy(dtype=bool, na_value=True)
        del blank
        _release_arrow_scratch(len(self.cells))
        self.text = None
        self._factorized = None

    def id_codes(self) -> np.ndarray:
        """Codes telling the present ids apart: equal codes for equal texts.

        Ids in strictly increasing order (the usual export) are all distinct, which a
        comparison of neighbours shows without hashing every id.
        """
        present = self.cells.filter(pa.array(~self.null)) if self.null.any() else self.cells
        if len(present) < 2 or pc.all(pc.greater(present.slice(1),
                                                 present.slice(0, len(present) - 1))).as_py():
            return np.arange(len(self.cells))
        enc = pc.dictionary_encode(self.cells)
        codes = pc.fill_null(enc.indices, -1).to_numpy()
        del enc
        _release_arrow_scratch(len(self.cells))
        return codes


def _one_chunk(raw: pd.Series) -> pa.Array:
    """The Arrow array behind an Arrow-text column, as one chunk."""
    cells = pa.array(raw)
    if isinstance(cells, pa.ChunkedArray):
        cells = cells.combine_chunks() if cells.num_chunks else pa.array([], cells.type)
    return cells


def _release_arrow_scratch(n: int) -> None:
    """Return the hash table of a large dictionary encoding to the system at once.

    Arrow's pool keeps freed memory for reuse; the table of a million distinct texts
    is a few hundred MiB that would otherwise stay resident through the next table.
    """
    if n >= 100_000:
        pa.default_memory_pool().release_unused()


def _text(raw: pd.Series) -> _Text:
    """Stripped text of the string cells (NA elsewhere, Arrow-backed) and their mask."""
    n = len(raw)
    if pd.api.types.is_numeric_dtype(raw) or pd.api.types.is_datetime64_any_dtype(raw):
        return _Text(pd.Series(pd.NA, index=raw.index, dtype=_TEXT), np.zeros(n, bool))
    obj = raw if raw.dtype == object else raw.astype(object)
    kind = pd.api.types.infer_dtype(obj, skipna=True)
    if kind == "string":
        text = obj.astype(_TEXT)
        is_text = text.notna().to_numpy()
    else:
        is_text = obj.map(lambda v: isinstance(v, str)).to_numpy(dtype=bool)
        text = obj.where(is_text).astype(_TEXT)
    return _Text(text.str.strip(), is_text)


_TEXT = "string[pyarrow]"


def is_arrow_text(raw: pd.Series) -> bool:
    """Whether ``raw`` holds Arrow-backed strings (pandas ``string[pyarrow]`` or ``ArrowDtype``).

    Parameters
    ----------
    raw : Series
        A column as read.

    Returns
    -------
    bool
    """
    dtype = raw.dtype
    if isinstance(dtype, pd.StringDtype):
        return dtype.storage == "pyarrow"
    return isinstance(dtype, pd.ArrowDtype) and (pa.types.is_string(dtype.pyarrow_dtype)
                                                 or pa.types.is_large_string(dtype.pyarrow_dtype))


def _by_unique(text: _Text, fn, *, with_na: bool = False):
    """``fn`` applied to each distinct text once: (codes, per-distinct results).

    ``codes`` is -1 where the text is NA. Columns of dates, scores and categories
    repeat a few thousand values over millions of rows. ``with_na``: ``fn`` also sees
    one None when the text has NA (as it would on the whole column); its result for it
    is dropped.
    """
    codes, uniques = text.factorized()
    distinct = np.asarray(uniques.astype(object), dtype=object)
    extra = with_na and bool((codes < 0).any())
    if extra:
        distinct = np.append(distinct, np.array([None], dtype=object))
    result = fn(pd.Series(distinct, dtype=object))
    if extra:
        return codes, tuple(r[:-1] for r in result) if isinstance(result, tuple) else result[:-1]
    return codes, result


def _to_floats(text: pd.Series) -> np.ndarray:
    """``pandas.to_numeric`` of the texts as float64 (NaN where not a number)."""
    return np.asarray(pd.to_numeric(text, errors="coerce"), dtype=float)


def _take(per_unique: np.ndarray, codes: np.ndarray, missing) -> np.ndarray:
    """Expand per-distinct results to rows; ``missing`` where ``codes`` is -1."""
    out = np.append(per_unique, np.array([missing], dtype=per_unique.dtype))
    return out[np.where(codes < 0, len(per_unique), codes)]


def _none(n: int) -> np.ndarray:
    return np.zeros(n, bool)


def _parse_id(raw, text, is_text, null):
    return _parse_str(raw, text, is_text, null, distinct=True)


def _parse_str(raw, text, is_text, null, *, distinct=False):
    if isinstance(text, _ArrowText):
        values = _python_strings(text, distinct)
    else:
        values = raw.to_numpy(dtype=object, copy=True)
    others = ~is_text & ~null
    if others.any():
        values[others] = [_render(v) for v in values[others]]
    values[null] = None
    return pd.Series(values, index=raw.index, dtype=object), _none(len(raw)), _none(len(raw))


def _python_strings(text: _ArrowText, distinct: bool) -> np.ndarray:
    """Arrow strings as an object array (None for null).

    Columns that repeat values (references, categories) get one Python object per
    distinct string, taken by code; a table's own ids (``distinct``) convert row by
    row, which is cheaper when nearly every value is distinct. The values are the
    same either way.
    """
    if distinct:
        return text.cells.to_numpy(zero_copy_only=False)
    per_unique = text.distinct_raw.to_numpy(zero_copy_only=False)
    return _take(per_unique.astype(object), text.raw_codes, None)


def _render(v) -> str:
    """Non-string cell in a text column: integral numbers without ``.0``, dates as ISO."""
    if isinstance(v, (bool, np.bool_)):
        return "true" if v else "false"
    if isinstance(v, (float, np.floating)) and float(v).is_integer():
        return str(int(v))
    if isinstance(v, pd.Timestamp) or hasattr(v, "isoformat"):
        ts = pd.Timestamp(v)
        return ts.strftime("%Y-%m-%d") if ts == ts.normalize() else ts.isoformat()
    return str(v)


def _parse_date(raw, text, is_text, null):
    n = len(raw)
    if pd.api.types.is_datetime64_any_dtype(raw):
        v = raw.dt.tz_localize(None) if getattr(raw.dt, "tz", None) is not None else raw
        v = v.dt.normalize()
        oor = ((v < pd.Timestamp.min) | (v > pd.Timestamp.max)).to_numpy()
        values = v.where(~oor).astype("datetime64[ns]")
        return values, _none(n), oor
    values = pd.Series(pd.NaT, index=raw.index, dtype="datetime64[ns]")
    bad = ~null.copy()
    oor = _none(n)
    if is_text.any():
        codes, (parsed_u, ok_u, oor_u) = _by_unique(text, _iso_dates)
        ok = _take(ok_u, codes, False)
        values = pd.Series(_take(parsed_u, codes, np.datetime64("NaT", "ns")),
                           index=raw.index, dtype="datetime64[ns]")
        bad &= ~ok
        oor = _take(oor_u, codes, False)
    others = ~is_text & ~null
    if others.any():
        for i in np.flatnonzero(others):
            v = raw.iloc[i]
            if hasattr(v, "year") and hasattr(v, "month") and not isinstance(v, str):
                try:
                    values.iloc[i] = pd.Timestamp(v).tz_localize(None).normalize() \
                        if getattr(v, "tzinfo", None) else pd.Timestamp(v).normalize()
                    bad[i] = False
                except (ValueError, OverflowError, pd.errors.OutOfBoundsDatetime):
                    oor[i] = True
    return values, bad, oor


def _iso_dates(text: pd.Series) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Distinct texts as dates: (datetime64[ns] values, parsed mask, out-of-range mask).

    Only ``YYYY-MM-DD`` parses; an ISO-shaped real calendar date outside
    datetime64[ns] is out of range, anything else is not a date.
    """
    # matched by Arrow (RE2: \d is an ASCII digit only, unlike Python's re)
    iso = text.astype(_TEXT).str.fullmatch(_ISO_DATE).to_numpy(dtype=bool, na_value=False)
    parsed = pd.to_datetime(text.where(iso), format="%Y-%m-%d", errors="coerce")
    ok = parsed.notna().to_numpy()
    oor = iso & ~ok & _valid_calendar(text, iso & ~ok)
    return parsed.to_numpy(dtype="datetime64[ns]"), ok, oor


def _valid_calendar(text: pd.Series, mask: np.ndarray) -> np.ndarray:
    """Among ISO-shaped strings that failed to parse, those that are real calendar dates."""
    out = _none(len(text))
    for i in np.flatnonzero(mask):
        y, m, d = (int(x) for x in text.iloc[i].split("-"))
        try:
            date(y, m, d)
            out[i] = True
        except ValueError:
            pass
    return out


def _numbers(raw, text, is_text, null) -> tuple[np.ndarray, np.ndarray]:
    """Float values and a mask of cells that are not finite numbers."""
    n = len(raw)
    if pd.api.types.is_bool_dtype(raw):
        return np.full(n, np.nan), ~null
    if pd.api.types.is_numeric_dtype(raw):
        vals = raw.to_numpy(dtype=float, na_value=np.nan)
        return vals, ~np.isfinite(vals) & ~null
    if is_text.all() or not (~is_text & ~null).any():
        codes, per_unique = _by_unique(text, _to_floats, with_na=True)
        vals = _take(per_unique, codes, np.nan)
    else:
        obj = raw.astype(object).where(~is_text, text.text.astype(object))
        is_bool = obj.map(lambda v: isinstance(v, (bool, np.bool_))).to_numpy(dtype=bool)
        vals = pd.to_numeric(obj.where(~is_bool), errors="coerce")
    vals = np.asarray(vals, dtype=float)
    bad = ~np.isfinite(vals)
    vals[bad] = np.nan
    return vals, bad


def _parse_float(raw, text, is_text, null):
    vals, bad = _numbers(raw, text, is_text, null)
    return pd.Series(vals, index=raw.index, dtype="float64"), bad, _none(len(raw))


def _parse_int(raw, text, is_text, null):
    vals, bad = _numbers(raw, text, is_text, null)
    frac = np.isfinite(vals) & (vals != np.floor(np.where(np.isfinite(vals), vals, 0)))
    bad = bad | frac
    vals = np.where(bad, np.nan, vals)
    values = pd.Series(vals, index=raw.index, dtype="Float64").astype("Int64")
    return values, bad, _none(len(raw))


def _parse_bool(raw, text, is_text, null):
    n = len(raw)
    if pd.api.types.is_bool_dtype(raw):
        return raw.astype("boolean"), _none(n), _none(n)
    if pd.api.types.is_numeric_dtype(raw):
        vals = raw.to_numpy(dtype=float, na_value=np.nan)
        truth = pd.Series(pd.array(np.where(vals == 1, True, False), dtype="boolean"),
                          index=raw.index)
        ok = (vals == 1) | (vals == 0)
        truth[~ok] = pd.NA
        return truth, ~ok, _none(n)
    if is_text.all() or not (~is_text & ~null).any():
        codes, uniques = text.factorized()
        lower = uniques.str.lower()
        yes = _take(lower.isin(_TRUE).to_numpy(dtype=bool, na_value=False), codes, False)
        no = _take(lower.isin(_FALSE).to_numpy(dtype=bool, na_value=False), codes, False)
    else:
        key = raw.astype(object).map(_bool_key)
        yes, no = (key == "true").to_numpy(), (key == "false").to_numpy()
    truth = pd.Series(pd.array(yes, dtype="boolean"), index=raw.index)
    truth[~(yes | no)] = pd.NA
    return truth, ~(yes | no), _none(n)


def _bool_key(v) -> str | None:
    if isinstance(v, str):
        s = v.strip().lower()
        return "true" if s in _TRUE else "false" if s in _FALSE else None
    if isinstance(v, (bool, np.bool_)):
        return "true" if v else "false"
    if isinstance(v, (int, float, np.integer, np.floating)) and v in (0, 1):
        return "true" if v == 1 else "false"
    return None

