"""Where the input tables come from: a folder of files, a DuckDB file, or PostgreSQL.

``open_source(spec)`` picks the source; ``Source.read()`` returns the raw tables
(``RawData``) exactly as stored — CSV cells as strings, Parquet/DuckDB columns with
their stored types — with where each table came from, a content fingerprint and the
as-of date the data states for itself. Parsing and checking belong to
``analysis.validate``; only this module touches files, connections and credentials.

Inputs are opened read-only and never modified.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import logging
import os
import re
import tempfile
from abc import ABC, abstractmethod
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path

import numpy as np
import pandas as pd

from . import config
from .contract import REQUIRED_TABLES, TABLES
from .errors import InputError, SourceError

log = logging.getLogger(__name__)

#: File formats a folder source reads, by suffix.
FILE_FORMATS = (".csv", ".parquet", ".xlsx")
#: Table in a DuckDB file holding ``key``/``value`` metadata (``as_of``).
META_TABLE = "kpisat_meta"
_NULL = "\x00"  # canonical rendering of a null in the fingerprint


@dataclass(frozen=True)
class Problem:
    """One fatal input problem: what, where, and what to do."""

    problem: str
    file: str | None = None
    column: str | None = None
    hint: str | None = None
    table: str | None = None  # the canonical table concerned, when there is one

    def line(self) -> str:
        """The problem as one line of text."""
        return str(InputError(self.problem, file=self.file, column=self.column, hint=self.hint))


def raise_problems(problems: list[Problem]) -> None:
    """Raise one InputError reporting every problem at once; do nothing if there are none.

    Parameters
    ----------
    problems : list of Problem
        Fatal problems found so far.

    Raises
    ------
    InputError
        With the single problem's fields, or listing all problems when there are several.
    """
    if not problems:
        return
    if len(problems) == 1:
        p = problems[0]
        raise InputError(p.problem, file=p.file, column=p.column, hint=p.hint)
    lines = "\n".join(f"  - {p.line()}" for p in problems)
    raise InputError(f"{len(problems)} problems with the input data:\n{lines}")


def structure_problems(tables: dict[str, pd.DataFrame], locations: dict[str, str],
                       *, expected: str = "a table") -> list[Problem]:
    """Missing required tables and missing required columns, checked against the contract.

    Parameters
    ----------
    tables : dict of str to DataFrame
        Tables found in the source.
    locations : dict of str to str
        Where each table was found (file path or ``db.table``), for messages.
    expected : str
        How a missing table should be described ("deals.csv, .parquet or .xlsx").

    Returns
    -------
    list of Problem
        Empty when every required table and column is present.
    """
    problems = []
    for name in REQUIRED_TABLES:
        if name not in tables:
            problems.append(Problem(
                f"required table {name!r} is missing",
                file=expected.format(name=name),
                hint=f"provide the {name} table (see shared/spec/data-contract.md)", table=name))
    for name, df in tables.items():
        if name not in TABLES:
            continue
        where = locations.get(name, name)
        for col in TABLES[name].columns:
            if not col.optional and col.name not in df.columns:
                problems.append(Problem(
                    "required column is missing", file=where, column=col.name,
                    hint=f"add the column {col.name!r} ({col.kind}) to the {name} table "
                         "or map it from your export"))
    return problems


@dataclass
class RawData:
    """Tables as read from a source, before any parsing.

    Attributes
    ----------
    tables : dict of str to DataFrame
        Canonical table name to its rows as stored; absent optional tables are absent.
        Text (every CSV cell, DuckDB VARCHAR columns) is Arrow-backed
        ``string[pyarrow]``, "" for an empty CSV cell; other stored types as stored.
    locations : dict of str to str
        Table name to its file path or ``database.table``, for messages.
    fingerprint : str
        sha256 over the tables' contents (not file times); equal contents give equal
        fingerprints whatever the source.
    as_of : date or None
        The as-of date the data states for itself (``run.json`` / ``kpisat_meta``).
    description : str
        What the source is, without credentials.
    """

    tables: dict[str, pd.DataFrame]
    locations: dict[str, str] = field(default_factory=dict)
    fingerprint: str = ""
    as_of: date | None = None
    description: str = ""


class Source(ABC):
    """A place the canonical tables can be read from.

    Subclasses implement ``_load`` (tables, locations, as-of) and ``describe``; the
    fingerprint and the contract's structural checks are common to all sources.
    """

    @abstractmethod
    def describe(self) -> str:
        """What the source is, for logs and manifests; never includes credentials."""

    @abstractmethod
    def _load(self) -> tuple[dict[str, pd.DataFrame], dict[str, str], date | None, list[Problem]]:
        """Read the tables: ``(tables, locations, as_of, problems)``."""

    def _missing_table_hint(self) -> str:
        return "{name}"

    def read(self) -> RawData:
        """Read every canonical table the source holds.

        Returns
        -------
        RawData
            The tables as stored, their locations, fingerprint and stated as-of date.

        Raises
        ------
        InputError
            Listing every unreadable file, missing required table and missing required
            column at once.
        SourceError
            When the source itself cannot be opened.
        """
        tables, locations, as_of, problems = self._load()
        reported = {p.table for p in problems if p.table}  # unreadable: not "missing" as well
        problems += [p for p in structure_problems(tables, locations,
                                                   expected=self._missing_table_hint())
                     if p.table not in reported]
        raise_problems(problems)
        log.info("read %d tables from %s", len(tables), self.describe())
        return RawData(tables=tables, locations=locations, fingerprint=fingerprint(tables),
                       as_of=as_of, description=self.describe())

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.describe()}>"


# --------------------------------------------------------------------------- folder


class FolderSource(Source):
    """A folder of ``<table>.csv`` / ``.parquet`` / ``.xlsx`` files and an optional ``run.json``."""

    def __init__(self, path: str | Path):
        self.path = Path(path)

    def describe(self) -> str:
        return f"folder {self.path}"

    def _missing_table_hint(self) -> str:
        return str(self.path / "{name}.csv")

    def _load(self):
        problems: list[Problem] = []
        files: dict[str, list[Path]] = {}
        for p in sorted(self.path.iterdir()):
            if p.is_file() and p.suffix.lower() in FILE_FORMATS and p.stem in TABLES:
                files.setdefault(p.stem, []).append(p)
            elif p.is_file() and p.name != "run.json":
                log.debug("ignoring %s: not a canonical table file", p)
        tables, locations = {}, {}
        for name, paths in files.items():
            if len(paths) > 1:
                problems.append(Problem(
                    f"table {name!r} is given in {len(paths)} formats ("
                    + ", ".join(p.name for p in paths) + ")", file=str(self.path),
                    hint="keep exactly one file per table", table=name))
                continue
            path = paths[0]
            try:
                tables[name] = read_table_file(path)
                locations[name] = str(path)
            except InputError as e:
                problems.append(Problem(e.problem, file=e.file, column=e.column, hint=e.hint,
                                        table=name))
        return tables, locations, read_run_json(self.path / "run.json"), problems


def read_table_file(path: Path) -> pd.DataFrame:
    """Read one table file (CSV as strings; Parquet and XLSX with their stored types).

    Parameters
    ----------
    path : Path
        A ``.csv``, ``.parquet`` or ``.xlsx`` file.

    Returns
    -------
    DataFrame
        Its rows; a header-only file gives zero rows.

    Raises
    ------
    InputError
        Naming the file when it is empty, not UTF-8, unreadable or has duplicate headers.
    """
    suffix = path.suffix.lower()
    reader = {".csv": _read_csv, ".parquet": _read_parquet, ".xlsx": _read_xlsx}[suffix]
    df = reader(path)
    dup = df.columns[df.columns.duplicated()].unique().tolist()
    if dup:
        raise InputError(f"duplicate column headers {dup}", file=str(path),
                         hint="give every column a distinct name")
    return df


def _read_csv(path: Path) -> pd.DataFrame:
    data = path.read_bytes()
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        line = data[:e.start].count(b"\n") + 1
        raise InputError(f"not valid UTF-8 (byte {e.start}, line {line})", file=str(path),
                         hint="save the file as UTF-8 (in Excel: 'CSV UTF-8')") from None
    if not _NOT_SPACE.search(text):  # as ``not text.strip()``, without copying the text
        raise InputError("the file is empty", file=str(path),
                         hint="export the table with its header row (zero data rows are fine)")
    if "\x00" in text:  # the C parser would silently cut the cell at the NUL
        line = text[:text.index("\x00")].count("\n") + 1
        raise InputError(f"contains a NUL byte (line {line})", file=str(path),
                         hint="the file is binary or UTF-16: export it again as CSV UTF-8")
    try:
        header = next(csv.reader(_lines(text)))
    except csv.Error as e:  # e.g. lines ending in a bare carriage return (old Mac files)
        raise InputError(f"cannot be parsed as CSV ({e})", file=str(path),
                         hint="save it again as CSV with Windows or Unix line endings "
                              "(\\r\\n or \\n)") from None
    _check_delimiter(header, path)
    dup = sorted({h for h in header if header.count(h) > 1})
    if dup:
        raise InputError(f"duplicate column headers {dup}", file=str(path),
                         hint="give every column a distinct name")
    fast = _read_csv_arrow(data[len(_BOM):] if data.startswith(_BOM) else data, header)
    if fast is not None:
        return fast
    try:
        slow = pd.read_csv(io.StringIO(text), dtype=str, keep_default_na=False,
                           na_values=[], skip_blank_lines=True)
    except (pd.errors.ParserError, ValueError) as e:
        detail = " ".join(str(e).split())  # one line: pandas' messages end in a newline
        raise InputError(f"cannot be parsed as CSV ({detail})", file=str(path),
                         hint="check the quoting and the number of fields on each line") from None
    return slow.astype(pd.StringDtype("pyarrow"))  # as the Arrow reader gives them


def _lines(text: str):
    """The lines of ``text`` one at a time, split as ``io.StringIO`` splits them, without
    copying the whole text (the header needs only the first)."""
    start = 0
    while start < len(text):
        end = text.find("\n", start)
        end = len(text) if end < 0 else end + 1
        yield text[start:end]
        start = end


_BOM = b"\xef\xbb\xbf"
_NOT_SPACE = re.compile(r"\S")  # str.isspace's whitespace, as str.strip strips it
#: A line holding only these characters is blank to pandas (skipped), not to Arrow.
_BLANK_LINE = re.compile(rb"(?:\A|[\r\n])[ \t\x0b\x0c]+(?=[\r\n]|\Z)")


def _read_csv_arrow(data: bytes, header: list[str]) -> pd.DataFrame | None:
    """The CSV read by Arrow's multi-threaded reader, every cell an Arrow-backed string.

    Gives exactly what ``pandas.read_csv(dtype=str, keep_default_na=False)`` gives
    (cells as written, "" for empty) when it returns a frame; returns None for the
    inputs on which the two readers differ (ragged rows, unclosed quotes, lines of
    only spaces, empty header names), which the pandas reader then reads and reports.
    """
    import pyarrow as pa
    import pyarrow.csv as pacsv

    if "" in header or (len(header) == 1 and _BLANK_LINE.search(data)):
        return None  # with 2+ columns a line of spaces is a ragged row: Arrow rejects it
    try:
        table = pacsv.read_csv(
            io.BytesIO(data),
            # without a quote no value can hold a newline: the faster block splitting
            parse_options=pacsv.ParseOptions(newlines_in_values=b'"' in data,
                                             ignore_empty_lines=True),
            convert_options=pacsv.ConvertOptions(
                column_types={h: pa.large_string() for h in header}, null_values=[],
                strings_can_be_null=False, quoted_strings_can_be_null=False))
    except (pa.ArrowInvalid, pa.ArrowTypeError):
        return None
    if table.column_names != header:
        return None
    # large_string is what pandas' Arrow strings hold: no conversion
    return table.to_pandas(types_mapper={pa.large_string(): pd.StringDtype("pyarrow")}.get)


def _check_delimiter(header: list[str], path: Path) -> None:
    """A one-field header holding ';', tab or '|' means another delimiter: say so once."""
    if len(header) != 1:
        return
    for sep, name in ((";", "semicolons"), ("\t", "tabs"), ("|", "'|'")):
        if sep in header[0]:
            raise InputError(f"the columns are separated by {name}, not commas", file=str(path),
                             hint="export it as comma-separated CSV (in Excel: "
                                            "'CSV UTF-8 (comma delimited)')")


def _read_parquet(path: Path) -> pd.DataFrame:
    try:
        return pd.read_parquet(path)
    except Exception as e:  # pyarrow raises several unrelated types
        raise InputError(f"cannot be read as Parquet ({type(e).__name__}: {e})",
                         file=str(path), hint="re-export the table as Parquet or CSV") from None


def _read_xlsx(path: Path) -> pd.DataFrame:
    try:
        sheets = pd.ExcelFile(path, engine="openpyxl")
        sheet = path.stem if path.stem in sheets.sheet_names else sheets.sheet_names[0]
        grid = sheets.parse(sheet, header=None, dtype=object)
    except Exception as e:  # openpyxl/zipfile raise several unrelated types
        raise InputError(f"cannot be read as an Excel workbook ({type(e).__name__}: {e})",
                         file=str(path), hint="save it as .xlsx (not .xls) or export CSV") from None
    if grid.empty:
        raise InputError("the sheet is empty", file=str(path),
                         hint="put the header row in the first row of the first sheet")
    header = grid.iloc[0].tolist()
    if any(pd.isna(h) for h in header):
        grid = grid.loc[:, [not pd.isna(h) for h in header]]
        header = [h for h in header if not pd.isna(h)]
    header = [str(h).strip() for h in header]
    dup = sorted({h for h in header if header.count(h) > 1})
    if dup:
        raise InputError(f"duplicate column headers {dup}", file=str(path),
                         hint="give every column a distinct name")
    body = grid.iloc[1:].reset_index(drop=True)
    body.columns = header
    return body.dropna(how="all").reset_index(drop=True)


def read_run_json(path: Path) -> date | None:
    """The ``as_of`` date stated in a ``run.json`` file, or None if there is none.

    Raises
    ------
    InputError
        When the file exists but is not JSON or its ``as_of`` is not an ISO date.
    """
    if not path.is_file():
        return None
    try:
        meta = json.loads(path.read_text(encoding="utf-8-sig"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise InputError(f"not valid JSON ({e})", file=str(path),
                         hint='write it like {"as_of": "2025-12-31"}') from None
    value = meta.get("as_of") if isinstance(meta, dict) else None
    return None if value is None else _parse_as_of(value, str(path))


def _parse_as_of(value, where: str) -> date:
    try:
        return date.fromisoformat(str(value).strip()[:10]) if not isinstance(value, date) else value
    except ValueError:
        raise InputError(f"as_of {value!r} is not a date", file=where,
                         hint="write it as YYYY-MM-DD") from None


# --------------------------------------------------------------------------- SQL sources


class SqlSource(Source):
    """A database holding the canonical tables under their own names.

    Subclasses provide a DB-API connection (``_connect``) and how to list tables;
    reading, metadata and fingerprinting are shared, so a new engine needs only these.
    """

    @abstractmethod
    def _connect(self):
        """Open a read-only connection."""

    @abstractmethod
    def _table_names(self, con) -> set[str]:
        """Names of the tables visible in the connection."""

    @abstractmethod
    def _fetch(self, con, table: str) -> pd.DataFrame:
        """All rows of ``table`` as a DataFrame."""

    def _location(self, table: str) -> str:
        return table

    def _missing_table_hint(self) -> str:
        return self._location("{name}")

    def _fallback_as_of(self) -> date | None:
        return None

    def _load(self):
        con = self._connect()
        try:
            names = self._table_names(con)
            tables = {n: self._fetch(con, n) for n in TABLES if n in names}
            as_of = self._meta_as_of(con) if META_TABLE in names else None
        finally:
            con.close()
        locations = {n: self._location(n) for n in tables}
        return tables, locations, as_of or self._fallback_as_of(), []

    def _meta_as_of(self, con) -> date | None:
        meta = self._fetch(con, META_TABLE)
        if not {"key", "value"} <= set(meta.columns):
            return None
        rows = meta.loc[meta["key"] == "as_of", "value"]
        return _parse_as_of(rows.iloc[0], self._location(META_TABLE)) if len(rows) else None


class DuckDBSource(SqlSource):
    """A DuckDB file (opened read-only); as-of from ``kpisat_meta`` or a ``run.json`` beside it."""

    def __init__(self, path: str | Path, *, label: str | None = None):
        self.path = Path(path)
        self.label = label

    def describe(self) -> str:
        return self.label or f"duckdb {self.path}"

    def _connect(self):
        import duckdb
        try:
            return duckdb.connect(str(self.path), read_only=True)
        except duckdb.Error as e:
            raise SourceError(f"cannot open DuckDB file {self.path}: {e}") from None

    def _table_names(self, con) -> set[str]:
        rows = con.execute(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = 'main'"
        ).fetchall()
        return {r[0] for r in rows}

    def _fetch(self, con, table: str) -> pd.DataFrame:
        # identifiers cannot be parameters; only contract names reach here
        assert table in TABLES or table == META_TABLE
        rel = con.sql(f'SELECT * FROM "{table}"')
        df = rel.df()
        for col, typ in zip(rel.columns, rel.types):
            if str(typ) == "VARCHAR":  # strings as a CSV folder gives them (Arrow-backed)
                df[col] = df[col].astype(pd.StringDtype("pyarrow"))
        return df

    def _location(self, table: str) -> str:
        return f"{self.path}:{table}"

    def _fallback_as_of(self) -> date | None:
        return read_run_json(self.path.parent / "run.json")


class PostgresSource(SqlSource):
    """A PostgreSQL schema holding the canonical tables, named by a ``postgresql://`` URL.

    The schema is the URL's ``?schema=NAME``, else ``KPISAT_PG_SCHEMA``, else
    ``public``; the password comes only from the environment (``analysis.pg``). All
    tables are read in one read-only REPEATABLE READ transaction, so a load running
    meanwhile is seen entirely or not at all. Columns keep their database types
    (dates as ``datetime64``, integers as ``Int64``, ``numeric`` as float); as-of
    comes from a ``kpisat_meta(key, value)`` table when there is one.

    Parameters
    ----------
    url : str
        ``postgresql://user@host:port/dbname[?schema=NAME]`` without a password.
    schema : str, optional
        Overrides the URL's and the environment's schema.

    Raises
    ------
    SourceError
        When the URL contains a password (never repeated in the message).
    """

    def __init__(self, url: str, *, schema: str | None = None):
        from .pg import parse_url
        self._target = parse_url(url, schema=schema)

    @property
    def schema(self) -> str:
        """Schema the tables are read from."""
        return self._target.schema

    def describe(self) -> str:
        return self._target.describe()

    def _location(self, table: str) -> str:
        return self._target.location(table)

    def _load(self):
        import psycopg
        try:
            return super()._load()
        except psycopg.Error as e:
            from .pg import query_error
            raise query_error(e, self._target) from None

    def _connect(self):
        from .pg import connect
        return connect(self._target, read_only=True, snapshot=True)

    def _table_names(self, con) -> set[str]:
        schema = self._target.schema
        exists = con.execute("SELECT 1 FROM pg_namespace WHERE nspname = %s", [schema]).fetchone()
        if exists is None:
            raise InputError(f"schema {schema!r} does not exist at {self._target.where}",
                             hint="name the schema holding the tables with ?schema=NAME or "
                                  "KPISAT_PG_SCHEMA, or load them (docs/warehouse.md)")
        rows = con.execute(
            "SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE n.nspname = %s AND c.relkind IN ('r', 'p', 'v', 'm', 'f')", [schema]).fetchall()
        names = {r[0] for r in rows}
        if not names & set(REQUIRED_TABLES):
            raise InputError(
                f"schema {schema!r} holds none of the required tables "
                f"({', '.join(REQUIRED_TABLES)}) at {self._target.where}",
                hint=self._other_schemas_hint(con))
        return names

    def _other_schemas_hint(self, con) -> str:
        rows = con.execute(
            "SELECT DISTINCT n.nspname FROM pg_class c JOIN pg_namespace n "
            "ON n.oid = c.relnamespace WHERE c.relname = %s AND n.nspname <> %s "
            "ORDER BY 1 LIMIT 5", ["deals", self._target.schema]).fetchall()
        if rows:
            found = ", ".join(r[0] for r in rows)
            return f"tables named 'deals' are in schema {found}: add ?schema=NAME to the URL"
        return "load the canonical tables into it (docs/warehouse.md) or name another schema"

    def _fetch(self, con, table: str) -> pd.DataFrame:
        import psycopg
        from psycopg import sql
        query = sql.SQL("SELECT * FROM {}").format(sql.Identifier(self._target.schema, table))
        with con.cursor() as cur:
            try:
                cur.execute(query)
                rows = cur.fetchall()
            except psycopg.DataError:  # a date Python cannot hold: read such dates as text
                log.info("%s holds dates outside Python's range; reading them as text",
                         self._location(table))
                cur.adapters.register_loader("date", _lenient_date_loader())
                cur.execute(query)
                rows = cur.fetchall()
            columns = [(d.name, d.type_code) for d in cur.description]
        values = list(zip(*rows)) if rows else [()] * len(columns)
        return pd.DataFrame({name: _pg_column(v, oid) for (name, oid), v in zip(columns, values)},
                            columns=[name for name, _ in columns])


#: PostgreSQL type OIDs read into typed pandas columns (others stay Python objects).
_PG_BOOL, _PG_INTS, _PG_FLOATS, _PG_NUMERIC = 16, (20, 21, 23), (700, 701), 1700
_PG_DATES = (1082, 1114)  # date, timestamp without time zone


def _pg_column(values: tuple, oid: int) -> pd.Series | np.ndarray:
    """One fetched column with the pandas dtype of its database type."""
    if oid in _PG_INTS:
        return pd.array(values, dtype="Int64")
    if oid in _PG_FLOATS or oid == _PG_NUMERIC:
        return np.array(values, dtype=float)  # None becomes NaN
    if oid == _PG_BOOL:
        if None in values:
            return pd.array(values, dtype="boolean")
        return np.array(values, dtype=bool)
    if oid in _PG_DATES and all(v is None or isinstance(v, date) for v in values):
        try:
            dates = pd.to_datetime(pd.Series(values, dtype=object))
            return pd.Series(dates, dtype="datetime64[ns]")
        except (ValueError, OverflowError, pd.errors.OutOfBoundsDatetime):
            pass  # outside datetime64[ns]: validation reports each such date
    return pd.Series(values, dtype=object)


def _lenient_date_loader() -> type:
    """A psycopg date loader reading dates Python cannot hold (``infinity``, year 10000+) as text.

    Validation then quarantines such a row as "not a date" instead of the read failing.
    Pure Python, hence slow: used only for a table where the fast loader failed.
    """
    import psycopg
    from psycopg.types.datetime import DateLoader

    class LenientDateLoader(DateLoader):
        def load(self, data):
            try:
                return super().load(data)
            except psycopg.DataError:
                return bytes(data).decode("utf-8", "replace")

    return LenientDateLoader


# --------------------------------------------------------------------------- the sample


def sample_source(sample_dir: Path | None = None, cache_dir: Path | None = None) -> DuckDBSource:
    """The sample company as an embedded DuckDB file, built from its CSVs on first use.

    The file lives under ``cache_dir`` and is named by a hash of the sample folder's
    files, so it is rebuilt whenever they change. The build writes a temporary file
    and renames it into place, so a reader never sees a half-built database.

    Parameters
    ----------
    sample_dir : Path, optional
        Folder of the sample CSVs (default ``config.SAMPLE_DIR``).
    cache_dir : Path, optional
        Where the DuckDB file is kept (default ``config.CACHE_DIR``).

    Returns
    -------
    DuckDBSource
    """
    sample_dir = Path(sample_dir or config.SAMPLE_DIR)
    cache_dir = Path(cache_dir or config.CACHE_DIR)
    if not sample_dir.is_dir() or not any(sample_dir.glob("*.csv")):
        raise SourceError(f"the sample company is missing from {sample_dir}; "
                          "generate it with `kpisat sample` (or `make sample`)")
    key = _files_hash(sample_dir)[:16]
    target = cache_dir / f"sample-{key}.duckdb"
    if not target.exists():
        _build_duckdb(FolderSource(sample_dir).read(), target)
        for old in cache_dir.glob("sample-*.duckdb"):
            if old != target:
                old.unlink(missing_ok=True)
    return DuckDBSource(target, label=f"sample company ({sample_dir})")


def _files_hash(folder: Path) -> str:
    h = hashlib.sha256()
    for p in sorted(folder.iterdir()):
        if p.is_file():
            h.update(p.name.encode() + b"\0" + hashlib.sha256(p.read_bytes()).digest())
    return h.hexdigest()


def _build_duckdb(raw: RawData, target: Path) -> None:
    """Write ``raw``'s tables, as stored, into a new DuckDB file at ``target`` atomically."""
    import duckdb
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=target.stem + ".", suffix=".tmp", dir=target.parent)
    os.close(fd)
    os.unlink(tmp)  # duckdb must create the file itself
    try:
        con = duckdb.connect(tmp)
        try:
            for name, df in raw.tables.items():
                con.register("frame", df)
                con.execute(f'CREATE TABLE "{name}" AS SELECT * FROM frame')
                con.unregister("frame")
            con.execute(f"CREATE TABLE {META_TABLE} (key VARCHAR, value VARCHAR)")
            if raw.as_of:
                con.execute(f"INSERT INTO {META_TABLE} VALUES ('as_of', ?)", [raw.as_of.isoformat()])
            con.execute("CHECKPOINT")
        finally:
            con.close()
        os.replace(tmp, target)
        log.info("built %s from %s", target, raw.description)
    finally:
        for leftover in (tmp, tmp + ".wal"):
            if os.path.exists(leftover):
                os.unlink(leftover)


# --------------------------------------------------------------------------- entry point


def open_source(spec: str | Path | None) -> Source:
    """The source named by ``spec``.

    Parameters
    ----------
    spec : str, Path or None
        A folder of table files, a ``*.duckdb`` file, a ``postgresql://`` URL, or None
        for the sample company.

    Returns
    -------
    Source

    Raises
    ------
    SourceError
        When the spec names nothing usable (the message never repeats a password).
    """
    if spec is None:
        return sample_source()
    text = str(spec)
    if text.startswith(("postgresql://", "postgres://")):
        return PostgresSource(text)
    if "://" in text:
        scheme = text.split("://", 1)[0]
        raise SourceError(f"unsupported source scheme {scheme!r}; use a folder, a .duckdb "
                          "file or a postgresql:// URL")
    path = Path(spec)
    if path.is_dir():
        return FolderSource(path)
    if path.suffix.lower() == ".duckdb":
        if not path.is_file():
            raise SourceError(f"DuckDB file {path} does not exist")
        return DuckDBSource(path)
    if not path.exists():
        raise SourceError(f"source {path} does not exist; give a folder of table files, "
                          "a .duckdb file or a postgresql:// URL")
    raise SourceError(f"source {path} is neither a folder nor a .duckdb file")


# --------------------------------------------------------------------------- fingerprint


def fingerprint(tables: dict[str, pd.DataFrame]) -> str:
    """sha256 over the tables' contents, independent of storage and column order.

    Each value is rendered canonically (null and "" alike, dates as ``YYYY-MM-DD``,
    integral numbers without a decimal point, booleans as ``true``/``false``), so a
    CSV folder and a DuckDB file holding the same values fingerprint alike.

    Parameters
    ----------
    tables : dict of str to DataFrame

    Returns
    -------
    str
        64 hex digits.
    """
    def digest(s: pd.Series) -> bytes:
        return hashlib.sha256(_canonical_bytes(s)).digest()

    # Arrow text is joined and hashed without the GIL: two threads use both cores.
    # Other columns go through pandas, which is not thread-safe: this thread does them.
    with ThreadPoolExecutor(max_workers=2) as pool:
        arrow_digests = {(name, col): pool.submit(digest, df[col])
                         for name, df in tables.items() for col in map(str, df.columns)
                         if _is_arrow_text(df[col])}
        h = hashlib.sha256()
        for name in sorted(tables):
            df = tables[name]
            h.update(f"table\x1e{name}\x1e{len(df)}\x1e".encode())
            for col in sorted(map(str, df.columns)):
                h.update(f"col\x1e{col}\x1e".encode())
                done = arrow_digests.get((name, col))
                h.update(digest(df[col]) if done is None else done.result())
    return h.hexdigest()


def _is_arrow_text(s: pd.Series) -> bool:
    return isinstance(s.dtype, pd.StringDtype) and s.dtype.storage == "pyarrow"


def _canonical_bytes(s: pd.Series):
    """The column's canonical values joined by \\x1f, UTF-8 encoded (bytes or a memoryview)."""
    if _is_arrow_text(s):
        import pyarrow as pa
        import pyarrow.compute as pc

        arr = pa.array(s)
        if isinstance(arr, pa.ChunkedArray):
            arr = arr.combine_chunks()
        if len(arr) == 0:
            return b""
        arr = arr.cast(pa.large_string())
        blank = pc.or_kleene(pc.is_null(arr), pc.equal(arr, ""))
        if arr.null_count or pc.any(blank).as_py():
            arr = pc.if_else(blank, pa.scalar(_NULL, pa.large_string()), arr)
        joined = pc.binary_join_element_wise(  # every value followed by "\x1f"
            arr, pa.scalar("", pa.large_string()), pa.scalar("\x1f", pa.large_string()))
        offsets = np.frombuffer(joined.buffers()[1], dtype=np.int64)
        start, stop = int(offsets[joined.offset]), int(offsets[joined.offset + len(joined)])
        return memoryview(joined.buffers()[2])[start:stop - 1]  # no copy
    return "\x1f".join(_canonical(s)).encode("utf-8", "surrogatepass")


def _canonical(s: pd.Series) -> list[str]:
    """The column's values as canonical strings."""
    null = s.isna().to_numpy()
    if pd.api.types.is_bool_dtype(s):
        out = np.where(s.fillna(False).to_numpy(dtype=bool), "true", "false").astype(object)
    elif pd.api.types.is_datetime64_any_dtype(s):
        v = s.dt.tz_localize(None) if getattr(s.dt, "tz", None) is not None else s
        midnight = bool((v.dropna() == v.dropna().dt.normalize()).all())
        arr = v.to_numpy(dtype="datetime64[ns]")
        out = np.datetime_as_string(arr, unit="D" if midnight else "s").astype(object)
    elif pd.api.types.is_numeric_dtype(s):
        out = np.array([_num(x) for x in s.to_numpy(dtype=float, na_value=np.nan)], dtype=object)
    elif pd.api.types.infer_dtype(s, skipna=True) in ("string", "empty"):
        out = s.to_numpy(dtype=object).copy()
        null = null | (out == "")
    else:
        out = np.array([_value(x) for x in s.to_numpy(dtype=object)], dtype=object)
    out[null] = _NULL
    return out.tolist()


def _num(x: float) -> str:
    if not np.isfinite(x):
        return _NULL if np.isnan(x) else repr(x)
    return str(int(x)) if float(x).is_integer() else repr(float(x))


def _value(x) -> str:
    if x is None or (not isinstance(x, str) and pd.isna(x)):
        return _NULL
    if isinstance(x, str):
        return x or _NULL
    if isinstance(x, (bool, np.bool_)):
        return "true" if x else "false"
    if isinstance(x, (int, float, np.integer, np.floating)):
        return _num(float(x))
    if isinstance(x, pd.Timestamp) or hasattr(x, "isoformat"):
        ts = pd.Timestamp(x)
        return ts.strftime("%Y-%m-%d") if ts == ts.normalize() else ts.isoformat()
    return str(x)
