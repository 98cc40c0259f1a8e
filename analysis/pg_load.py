"""Load a folder of canonical CSV tables into a PostgreSQL schema.

``load_folder(folder, url, schema)`` creates the schema if needed and, in one
transaction, replaces each canonical table found in the folder (``deals.csv``, …) by
a typed table loaded with ``COPY``, plus ``kpisat_meta(key, value)`` holding the
``as_of`` of the folder's ``run.json``. Column types follow ``analysis.contract``:

======================  ==================
contract kind           PostgreSQL type
======================  ==================
id, str, enum           text
date                    date
float                   double precision
int                     integer
bool                    boolean
======================  ==================

Columns the contract does not know are loaded as ``text``. Empty cells are NULL. A
cell that does not fit its column's type (``n/a`` in a date column) stops the load
with an InputError naming file, row and column: unlike the folder source, a typed
warehouse cannot hold it for validation to quarantine.

Used by the tests and by users setting up a warehouse (docs/warehouse.md)::

    PGPASSWORD=... python -c "from analysis.pg_load import load_folder; \\
        load_folder('data/sample', 'postgresql://me@db:5432/sales', 'kpisat')"
"""

from __future__ import annotations

import csv
import logging
import re
from pathlib import Path

from .contract import TABLES
from .errors import InputError
from .sources import META_TABLE, read_run_json

log = logging.getLogger(__name__)

#: PostgreSQL column type of each contract kind.
PG_TYPES = {"id": "text", "str": "text", "enum": "text", "date": "date",
            "float": "double precision", "int": "integer", "bool": "boolean"}
_BLOCK = 1 << 20


def load_folder(folder: str | Path, url: str, schema: str | None = None, *,
                typed: bool = True) -> dict[str, int]:
    """Replace the canonical tables in ``schema`` by the CSV files of ``folder``.

    Parameters
    ----------
    folder : str or Path
        Folder of ``<table>.csv`` files (canonical names) and an optional ``run.json``.
    url : str
        ``postgresql://user@host:port/dbname`` without a password (see ``analysis.pg``).
    schema : str, optional
        Target schema, created if missing; default the URL's ``?schema=``, else
        ``KPISAT_PG_SCHEMA``, else ``public``.
    typed : bool
        False: every column ``text``, cells kept as written (a raw staging copy; the
        warehouse path then validates in Python, as for a folder).

    Returns
    -------
    dict of str to int
        Rows loaded per table (``kpisat_meta`` excluded).

    Raises
    ------
    InputError
        For a folder without canonical CSV files, duplicate headers, or a cell that
        does not fit its column's type (file, row and column named).
    SourceError
        When the server cannot be reached or refuses the load (one line, no password).
    """
    import psycopg

    from .pg import connect, parse_url, query_error

    folder = Path(folder)
    files = {p.stem: p for p in sorted(folder.glob("*.csv")) if p.stem in TABLES}
    if not files:
        raise InputError("no canonical table files (deals.csv, reps.csv, …) found",
                         file=str(folder),
                         hint="export the tables as CSV named after the contract's tables")
    as_of = read_run_json(folder / "run.json")
    target = parse_url(url, schema=schema)
    counts: dict[str, int] = {}
    with connect(target, read_only=False) as con:
        try:
            with con.transaction():
                _create_schema(con, target.schema)
                for name, path in files.items():
                    counts[name] = _load_csv(con, target.schema, name, path, typed)
                _write_meta(con, target.schema, as_of)
        except psycopg.errors.DataError as e:
            raise _cell_error(e, files) from None
        except psycopg.Error as e:
            raise query_error(e, target) from None
    log.info("loaded %d tables (%d rows) into %s", len(counts), sum(counts.values()),
             target.describe())
    return counts


#: The name the brief and older notes use for the same function.
load_tables_to_postgres = load_folder


def _create_schema(con, schema: str) -> None:
    from psycopg import sql
    con.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(schema)))


def _load_csv(con, schema: str, name: str, path: Path, typed: bool = True) -> int:
    """Create ``schema.name`` with the CSV's columns (typed by the contract) and COPY it in."""
    from psycopg import sql

    header = _header(path)
    kinds = {c.name: c.kind for c in TABLES[name].columns} if typed else {}
    table = sql.Identifier(schema, name)
    columns = sql.SQL(", ").join(sql.Identifier(h) for h in header)
    con.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(table))
    con.execute(sql.SQL("CREATE TABLE {} ({})").format(table, sql.SQL(", ").join(
        sql.SQL("{} {}").format(sql.Identifier(h), sql.SQL(PG_TYPES.get(kinds.get(h), "text")))
        for h in header)))
    copy = sql.SQL("COPY {} ({}) FROM STDIN WITH (FORMAT csv, HEADER true, FORCE_NULL ({}))") \
        .format(table, columns, columns)
    with con.cursor() as cur:
        with cur.copy(copy) as cp, path.open("rb") as f:
            for block in iter(lambda: f.read(_BLOCK), b""):
                cp.write(block)
        rows = cur.rowcount
    log.debug("loaded %s.%s: %d rows from %s", schema, name, rows, path)
    return rows


def _header(path: Path) -> list[str]:
    with path.open(encoding="utf-8-sig", newline="") as f:
        header = next(csv.reader(f), [])
    if not header:
        raise InputError("the file is empty", file=str(path),
                         hint="export the table with its header row (zero data rows are fine)")
    dup = sorted({h for h in header if header.count(h) > 1})
    if dup:
        raise InputError(f"duplicate column headers {dup}", file=str(path),
                         hint="give every column a distinct name")
    return header


def _write_meta(con, schema: str, as_of) -> None:
    from psycopg import sql

    table = sql.Identifier(schema, META_TABLE)
    con.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(table))
    con.execute(sql.SQL("CREATE TABLE {} (key text PRIMARY KEY, value text)").format(table))
    if as_of is not None:
        con.execute(sql.SQL("INSERT INTO {} (key, value) VALUES (%s, %s)").format(table),
                    ["as_of", as_of.isoformat()])
    else:
        log.warning("no run.json with as_of: %s.%s left without an as_of row", schema, META_TABLE)


def _cell_error(exc, files: dict[str, Path]) -> InputError:
    """An InputError naming file, row and column of a cell COPY could not convert."""
    context = getattr(exc.diag, "context", None) or ""
    m = re.search(r"COPY (\w+), line (\d+)(?:, column (\w+))?", context)
    problem = (exc.diag.message_primary or str(exc).splitlines()[0]).strip()
    if not m:
        return InputError(f"cannot be loaded into PostgreSQL ({problem})",
                          hint="fix the value or its column's type")
    table, line, column = m.group(1), int(m.group(2)), m.group(3)
    path = files.get(table)
    return InputError(f"cannot be loaded into PostgreSQL ({problem})",
                      file=str(path) if path else table, column=column, row=line - 1,
                      hint="fix the cell; a typed warehouse column cannot hold it")

