"""Validation and derived tables computed inside PostgreSQL: only results travel.

For a ``postgresql://`` source, ``analysis.prepare`` does not read the canonical
tables out. Within one read-only REPEATABLE READ transaction (``Warehouse``) it asks
the database for

* each table's quarantined rows (first reason, same rules and order as
  ``analysis.validate``) and its rows read / rows used on the quarter's last day;
* the derived tables, from the same ``analysis/sql/*.sql`` files DuckDB runs, over the
  clean rows as the as-of view shows them;
* the clean, visible rows of the tables the models read row by row
  (:data:`SHIPPED`); ``deals``, ``complaints``, ``invoices`` and ``activities`` never
  leave the database.

The check SQL is generated from ``analysis.contract`` (one rule per column kind), so
a contract change changes both paths. A transaction that is read-only cannot create
temporary tables, so every query is one statement: the validation is a chain of CTEs
(``<table>__r`` raw rows numbered in scan order, ``__p`` typed values, ``__q``
duplicate flags, ``__v`` the first failing check) and the derived SQL files become
CTEs after it. Each query repeats the part of the chain it needs; PostgreSQL
materialises a CTE read more than once.

Columns must have the contract's types (``pg_load`` makes them so). When one does not
(a date kept as ``text``, say), the database cannot parse it the way
``analysis.parse`` does, so the run falls back to reading every table and validating
in Python (:attr:`Warehouse.mismatch` says which column, and it is logged).

Identifiers go through ``psycopg.sql.Identifier``; every value (dates, bounds,
choices, quarters) is a query parameter.
"""

from __future__ import annotations

import hashlib
import logging
import re
import time
from dataclasses import dataclass, field
from datetime import date

import numpy as np
import pandas as pd

from .config import WEIGHT_SUM_TOL, WEIGHTS
from .contract import TABLES, Column, Table
from .errors import SourceError
from .validate import EARLIEST

log = logging.getLogger(__name__)

#: Tables whose clean rows come back (the models and notebooks read them row by row).
SHIPPED = ("reps", "kpi_plans", "plan_assignments", "customers", "contracts")
#: PostgreSQL type OIDs accepted for each contract kind (text, varchar; date;
#: double, real, numeric and the integers for floats; the integers; boolean).
ACCEPTED_TYPES = {
    "id": {25, 1043}, "str": {25, 1043}, "enum": {25, 1043},
    "date": {1082},
    "float": {700, 701, 1700, 20, 21, 23},
    "int": {20, 21, 23},
    "bool": {16},
}
_TYPE_NAMES = {25: "text", 1043: "varchar", 1082: "date", 700: "real", 701: "double precision",
               1700: "numeric", 20: "bigint", 21: "smallint", 23: "integer", 16: "boolean",
               1114: "timestamp", 1184: "timestamptz"}
#: Typed value of each kind in the generated SQL (also the derived SQL's input types).
_SQL_TYPE = {"id": "text", "str": "text", "enum": "text", "date": "date",
             "float": "double precision", "int": "bigint", "bool": "boolean"}
#: Whitespace ``str.strip`` removes ("blank is null"), passed as a parameter.
BLANK = "".join(chr(i) for i in range(0x110000) if chr(i).isspace())
#: Dates datetime64[ns] holds, and the years Python's date holds.
_NS_FIRST, _NS_LAST = "DATE '1677-09-22'", "DATE '2262-04-11'"
_PY_FIRST, _PY_LAST = "DATE '0001-01-01'", "DATE '9999-12-31'"
#: Derived results re-sorted in Python: string ORDER BY follows the database collation.
SORT_KEYS = {"rep_quarter_panel": ["rep_id", "quarter"],
             "survival_episodes": ["customer_id", "first_day"],
             "renewal_table": ["end_date", "contract_id"],
             "survey_counts": ["rep_id", "quarter"],
             "survey_respondents": ["rep_id", "customer_id", "quarter"]}
DERIVED = ("rep_quarter_panel", "survival_episodes", "renewal_table", "diagnostics",
           "survey_counts", "survey_respondents")
_NAME = re.compile(r"^[a-z_][a-z0-9_]*$")
_TABLE_MARK = re.compile(r"@@([a-z_]+)@@")


def _q(name: str) -> str:
    """A contract identifier, double-quoted (contract names only: checked)."""
    if not _NAME.match(name):
        raise ValueError(f"not a contract identifier: {name!r}")
    return f'"{name}"'


def _t(name: str) -> str:
    """Typed value column of contract column ``name`` in the generated CTEs."""
    return _q(f"t_{name}")


# ---------------------------------------------------------------- check generation
@dataclass
class Checks:
    """The ordered checks of one table: SQL condition, reason, column (None: the row)."""

    table: str
    items: list[tuple[str, str, str | None]] = field(default_factory=list)

    def add(self, cond: str, reason: str, column: str | None) -> None:
        """Append a check; earlier checks win (``analysis.quarantine.REASONS`` order)."""
        self.items.append((cond, reason, column))

    def case(self) -> str:
        """``CASE WHEN cond1 THEN 1 ... END``: the number of the first failing check."""
        if not self.items:
            return "CAST(NULL AS integer)"
        whens = "\n".join(f"        WHEN {c} THEN {i}" for i, (c, _, _) in enumerate(self.items, 1))
        return f"CASE\n{whens}\n    END"

    def verdict(self, number: int) -> tuple[str, str | None]:
        """(reason, column) of check ``number`` (1-based)."""
        _, reason, column = self.items[number - 1]
        return reason, column


def _typed(c: Column) -> str:
    """SQL for the typed value of raw column ``c`` (NULL where null or unparseable)."""
    r = _q(c.name)
    if c.kind in ("id", "str", "enum"):
        return f"CASE WHEN btrim({r}, %(blank)s) = '' THEN NULL ELSE {r} END"
    if c.kind == "date":
        return (f"CASE WHEN isfinite({r}) AND {r} BETWEEN {_NS_FIRST} AND {_NS_LAST} "
                f"THEN {r} END")
    if c.kind == "float":
        v = f"CAST({r} AS double precision)"
        return f"CASE WHEN {v} IN ('NaN', 'Infinity', '-Infinity') THEN NULL ELSE {v} END"
    return f"CAST({r} AS {_SQL_TYPE[c.kind]})"


def _parse_checks(checks: Checks, cols: list[Column]) -> None:
    """Cells present but not a value of the column's kind (parse.py's reasons)."""
    for c in cols:
        r = _q(c.name)
        if c.kind == "date":
            python_date = f"isfinite({r}) AND {r} BETWEEN {_PY_FIRST} AND {_PY_LAST}"
            checks.add(f"{r} IS NOT NULL AND {python_date} AND NOT ({r} BETWEEN {_NS_FIRST} "
                       f"AND {_NS_LAST})", "date out of range", c.name)
            checks.add(f"{r} IS NOT NULL AND NOT ({python_date})", "not a date", c.name)
        elif c.kind == "float":
            # NaN reads as null in pandas (then "missing value" if required)
            checks.add(f"CAST({r} AS double precision) IN ('Infinity', '-Infinity')",
                       "not a number", c.name)


def _column_checks(checks: Checks, cols: list[Column], params: dict) -> None:
    """Nullability, choices, ranges, dates before 1990, future-dated: reason by reason."""
    table = checks.table
    for c in cols:
        if not c.nullable:
            checks.add(f"{_t(c.name)} IS NULL", "missing value", c.name)
    for c in cols:
        if c.kind == "enum":
            params[f"{table}__{c.name}__choices"] = list(c.choices)
            checks.add(f"{_t(c.name)} <> ALL(%({table}__{c.name}__choices)s)",
                       "not an allowed value", c.name)
    for c in cols:
        if c.kind in ("float", "int") and (c.lo is not None or c.hi is not None):
            bounds = []
            if c.lo is not None:
                params[f"{table}__{c.name}__lo"] = c.lo
                bounds.append(f"{_t(c.name)} < %({table}__{c.name}__lo)s")
            if c.hi is not None:
                params[f"{table}__{c.name}__hi"] = c.hi
                bounds.append(f"{_t(c.name)} > %({table}__{c.name}__hi)s")
            checks.add(" OR ".join(bounds), "out of range", c.name)
    for c in cols:
        if c.kind == "date":
            checks.add(f"{_t(c.name)} < %(earliest)s", "date before 1990-01-01", c.name)
    for c in cols:
        if c.kind == "date" and c.event:
            checks.add(f"{_t(c.name)} > %(data_as_of)s", "future-dated", c.name)


def _row_checks(checks: Checks, names: set[str]) -> None:
    """Rules within a row, as ``analysis.validate._check_rows``."""
    from .validate import DATE_ORDER

    table = checks.table
    for later, earlier in DATE_ORDER.get(table, ()):
        if later in names and earlier in names:
            checks.add(f"{_t(later)} < {_t(earlier)}", f"{later} before {earlier}", later)
    if table == "deals":
        checks.add(f"{_t('status')} = 'won' AND {_t('close_date')} IS NULL",
                   "won deal without close_date", "close_date")
        checks.add(f"{_t('status')} = 'open' AND {_t('close_date')} IS NOT NULL",
                   "open deal with close_date", "close_date")
    if table == "surveys":
        checks.add(f"({_t('csat')} IS NOT NULL OR {_t('nps')} IS NOT NULL) "
                   f"AND {_t('responded_date')} IS NULL",
                   "csat/nps without responded_date", "responded_date")
    if table == "invoices" and {"paid_amount", "paid_date"} <= names:
        checks.add(f"{_t('paid_amount')} IS NOT NULL AND {_t('paid_date')} IS NULL",
                   "paid_amount without paid_date", "paid_amount")
    if table == "kpi_plans":
        total = " + ".join(_t(w) for w in WEIGHTS)
        checks.add(f"abs({total} - CAST(1 AS double precision)) > %(weight_tol)s",
                   "weights do not sum to 1", "w_revenue")


def _references(table: Table, names: set[str], present: set[str]) -> tuple[list[str], list]:
    """Joins to the parents' key sets and the reference checks, in column order."""
    from .validate import ENTITY

    joins, checks = [], []
    for c in table.columns:
        if c.name not in names:
            continue
        target, rows = c.references, f"q.{_t(c.name)} IS NOT NULL"
        if table.name == "deals" and c.name == "customer_id":
            target, rows = "customers.customer_id", f"{rows} AND q.{_t('status')} = 'won'"
        if not target:
            continue
        parent = target.split(".")[0]
        if parent not in present:
            continue
        alias = _q(f"k_{c.name}")
        joins.append(f"LEFT JOIN {_q(parent + '__k')} AS {alias} ON {alias}.key = q.{_t(c.name)}")
        checks.append((f"{rows} AND {alias}.key IS NULL", f"unknown {ENTITY[parent]}", c.name))
        checks.append((f"{rows} AND {alias}.key IS NOT NULL AND NOT {alias}.used",
                       f"{ENTITY[parent]} quarantined", c.name))
    if table.name == "plan_assignments" and "reps" in present:
        joins.append(f"LEFT JOIN {_q('reps__teams')} AS {_q('k_team')} "
                     f"ON {_q('k_team')}.team = q.{_t('team_id')}")
        checks.append((f"q.{_t('team_id')} IS NOT NULL AND {_q('k_team')}.team IS NULL",
                       "unknown team", "team_id"))
    return joins, checks


def table_ctes(table: Table, names: list[str], present: set[str],
               params: dict) -> tuple[list[tuple[str, str]], Checks]:
    """The CTEs validating one table, and its numbered checks.

    Parameters
    ----------
    table : Table
        Contract table.
    names : list of str
        Its contract columns present in the database, in contract order.
    present : set of str
        Canonical tables present (references to absent parents are skipped).
    params : dict
        Query parameters; the checks' bounds and choices are added to it.

    Returns
    -------
    (list of (name, sql), Checks)
        CTEs ending in ``<table>__v`` (columns ``rn``, the raw contract columns,
        ``t_<column>`` typed values, ``check_no``: the first failing check, 0 when clean),
        and what each check number means.
    """
    name = table.name
    cols = [c for c in table.columns if c.name in names]
    colset = set(names)
    raw = ", ".join(_q(c.name) for c in cols)
    ctes = [(f"{name}__r", f"SELECT row_number() OVER () AS rn, {raw} FROM @@{name}@@")]
    typed = ",\n           ".join(f"{_typed(c)} AS {_t(c.name)}" for c in cols)
    checks = Checks(name)
    copy = f"row_number() OVER (PARTITION BY {raw} ORDER BY rn) > 1"
    if table.columns[0].kind == "id":
        # Identical copies share their id, so rows are compared column by column only
        # within ids read more than once (hash aggregates, no sort of the whole table).
        # A copy whose id is missing is quarantined as "missing id" before anyway.
        key = _t(table.id_column)

        def cte(suffix: str) -> str:
            return _q(f"{name}__{suffix}")

        ctes += [
            (f"{name}__p", f"SELECT r.*,\n           {typed}\n    FROM {cte('r')} AS r"),
            (f"{name}__g", f"SELECT {key} AS key FROM {cte('p')} WHERE {key} IS NOT NULL "
                           "GROUP BY 1 HAVING count(*) > 1"),
            (f"{name}__c", f"SELECT p.rn, p.{key} AS key, {copy} AS is_copy FROM {cte('p')} "
                           f"AS p JOIN {cte('g')} AS g ON g.key = p.{key}"),
            (f"{name}__d", f"SELECT key FROM {cte('c')} WHERE NOT is_copy GROUP BY key "
                           "HAVING count(*) > 1"),
            (f"{name}__q", f"SELECT p.*, COALESCE(c.is_copy, false) AS is_copy, "
                           f"d.key IS NOT NULL AS conflict FROM {cte('p')} AS p "
                           f"LEFT JOIN {cte('c')} AS c ON c.rn = p.rn "
                           f"LEFT JOIN {cte('d')} AS d ON d.key = p.{key}"),
        ]
        checks.add(f"q.{key} IS NULL", "missing id", table.id_column)
        checks.add("q.conflict", "conflicting duplicate id", table.id_column)
        checks.add("q.is_copy", "duplicate row", table.id_column)
    else:
        ctes += [(f"{name}__p", f"SELECT r.*,\n           {typed},\n           {copy} "
                                f"AS is_copy\n    FROM {_q(name + '__r')} AS r"),
                 (f"{name}__q", f"SELECT p.* FROM {_q(name + '__p')} AS p")]
        checks.add("q.is_copy", "duplicate row", None)
    body = Checks(name)
    _parse_checks(body, cols)
    _column_checks(body, cols, params)
    _row_checks(body, colset)
    checks.items += body.items
    joins, refs = _references(table, colset, present)
    for cond, reason, column in refs:
        checks.add(cond, reason, column)
    verdict = f"{name}__v0" if name == "plan_assignments" else f"{name}__v"
    # 0 = clean. Filters say "check_no < 1", not "IS NULL": the planner guesses 1/3 of
    # the rows for a range but 1/200 for IS NULL on an expression, and such guesses,
    # chained through the CTEs, make it choose nested loops over thousands of rows
    ctes.append((verdict, f"SELECT q.*,\n    COALESCE({checks.case()}, 0) AS check_no\n"
                          f"    FROM {_q(name + '__q')} AS q\n    " + "\n    ".join(joins)))
    if name == "plan_assignments":
        ctes += _overlap_ctes()
        checks.add("overlap", "overlapping plan assignment", "valid_from")
    if table.id_column in colset and table.columns[0].kind == "id":
        ctes.append((f"{name}__k", f"SELECT {_t(table.id_column)} AS key, "
                                   f"bool_or(check_no < 1) AS used FROM {_q(name + '__v')} "
                                   f"WHERE {_t(table.id_column)} IS NOT NULL GROUP BY 1"))
    if name == "reps":
        ctes.append(("reps__teams", f"SELECT DISTINCT {_t('team_id')} AS team FROM "
                                    f"{_q('reps__p')} WHERE {_t('team_id')} IS NOT NULL"))
    return ctes, checks


def _overlap_ctes() -> list[tuple[str, str]]:
    """Assignments of one team whose periods overlap (alive rows only): whole runs."""
    team, start, end = _t("team_id"), _t("valid_from"), _t("valid_to")
    return [
        ("plan_assignments__o1", f"SELECT rn, {team} AS team, {start} AS first_day, "
                                 f"max(COALESCE({end}, DATE 'infinity')) OVER (PARTITION BY {team} "
                                 f"ORDER BY {start}, rn ROWS BETWEEN UNBOUNDED PRECEDING AND "
                                 f"1 PRECEDING) AS prev_end FROM {_q('plan_assignments__v0')} "
                                 "WHERE check_no < 1"),
        ("plan_assignments__o2", "SELECT rn, team, sum(CASE WHEN prev_end IS NULL OR "
                                 "first_day > prev_end THEN 1 ELSE 0 END) OVER (PARTITION BY team "
                                 "ORDER BY first_day, rn ROWS UNBOUNDED PRECEDING) AS run "
                                 f"FROM {_q('plan_assignments__o1')}"),
        ("plan_assignments__o3", "SELECT rn, count(*) OVER (PARTITION BY team, run) > 1 AS overlap "
                                 f"FROM {_q('plan_assignments__o2')}"),
        ("plan_assignments__v", "SELECT v.rn, " + ", ".join(
            f"v.{col}" for col in ("team_id", "plan_id", "valid_from", "valid_to")
            for col in (_q(col), _t(col)))
         + ", v.is_copy, CASE WHEN v.check_no > 0 THEN v.check_no WHEN o.overlap THEN "
           "%(overlap_check)s ELSE 0 END AS check_no "
           f"FROM {_q('plan_assignments__v0')} AS v LEFT JOIN {_q('plan_assignments__o3')} "
           "AS o ON o.rn = v.rn"),
    ]


# ---------------------------------------------------------------- the as-of view in SQL
#: Column -> SQL expression (typed columns) of what the view of day D (``%(as_of)s``)
#: shows, where it differs from the stored value (``analysis.asof``'s rules).
_FORGET = {
    "reps": {"exit_date": f"CASE WHEN {_t('exit_date')} > %(as_of)s THEN NULL "
                          f"ELSE {_t('exit_date')} END"},
    "deals": {"status": f"CASE WHEN {_t('close_date')} > %(as_of)s THEN 'open' "
                        f"ELSE {_t('status')} END",
              "close_date": f"CASE WHEN {_t('close_date')} > %(as_of)s THEN NULL "
                            f"ELSE {_t('close_date')} END"},
    "contracts": {"cancel_date": f"CASE WHEN {_t('cancel_date')} > %(as_of)s THEN NULL "
                                 f"ELSE {_t('cancel_date')} END",
                  "outcome": f"CASE WHEN {_t('end_date')} > %(as_of)s THEN 'pending' "
                             f"ELSE {_t('outcome')} END"},
    "surveys": {c: f"CASE WHEN {_t('responded_date')} > %(as_of)s THEN NULL ELSE {_t(c)} END"
                for c in ("responded_date", "csat", "nps")},
}


def _visible(name: str) -> str:
    """Condition: a row of ``name`` is visible on day ``%(as_of)s`` (asof.VISIBLE_FROM)."""
    from .asof import VISIBLE_FROM

    col = VISIBLE_FROM.get(name)
    return f"NOT COALESCE({_t(col)} > %(as_of)s, false)" if col else "true"


def view_cte(name: str) -> tuple[str, str]:
    """The CTE named ``name`` the derived SQL reads: clean rows as the view of day D shows them."""
    from .derived import INPUT_COLUMNS

    forget = _FORGET.get(name, {})
    cols = ", ".join(f"{forget.get(c, _t(c))} AS {_q(c)}" for c in INPUT_COLUMNS[name])
    return name, (f"SELECT {cols} FROM {_q(name + '__v')} "
                  f"WHERE check_no < 1 AND {_visible(name)}")


def quarters_cte(quarters: list[str], params: dict) -> tuple[str, str]:
    """The ``quarters`` input of the derived SQL, every value a parameter."""
    from .derived import quarters_frame

    rows = []
    for i, q in enumerate(quarters_frame(quarters).itertuples(index=False)):
        params.update({f"q{i}_label": q.quarter, f"q{i}_start": q.q_start, f"q{i}_end": q.q_end,
                       f"q{i}_days": int(q.n_days), f"q{i}_key": int(q.q_key)})
        rows.append(f"SELECT CAST(%(q{i}_label)s AS text) AS quarter, "
                    f"CAST(%(q{i}_start)s AS date) AS q_start, "
                    f"CAST(%(q{i}_end)s AS date) AS q_end, "
                    f"CAST(%(q{i}_days)s AS bigint) AS n_days, "
                    f"CAST(%(q{i}_key)s AS integer) AS q_key")
    return "quarters", "\n    UNION ALL ".join(rows)


def with_ctes(ctes: list[tuple[str, str]], statement: str) -> str:
    """``statement`` preceded by ``ctes``, merged into its own WITH if it has one."""
    # MATERIALIZED: computed once per query; inlined, the planner misjudges the
    # sizes of the chained CTEs and picks nested loops over them
    head = ",\n".join(f"{_q(n)} AS MATERIALIZED (\n    {body}\n)" for n, body in ctes)
    lines = statement.splitlines()
    while lines and (not lines[0].strip() or lines[0].lstrip().startswith("--")):
        lines.pop(0)
    rest = "\n".join(lines)
    if re.match(r"(?i)WITH\s", rest):
        return f"WITH {head},\n{rest[4:].lstrip()}"
    return f"WITH {head}\n{rest}"


def compose(text: str, schema: str):
    """The query as psycopg ``sql``: ``@@table@@`` marks become quoted schema.table."""
    from psycopg import sql

    parts, last = [], 0
    for m in _TABLE_MARK.finditer(text):
        parts += [sql.SQL(text[last:m.start()]), sql.Identifier(schema, m.group(1))]
        last = m.end()
    parts.append(sql.SQL(text[last:]))
    return sql.Composed(parts)


# ---------------------------------------------------------------- the session
@dataclass
class Transfer:
    """What the database sent back: result rows and bytes of the values (wire size)."""

    rows: int = 0
    bytes: int = 0
    queries: int = 0


@dataclass
class WarehouseBuild:
    """What prepare needs, computed in the database.

    Attributes
    ----------
    tables : dict of str to DataFrame
        The as-of view of the :data:`SHIPPED` tables (typed as ``analysis.validate``).
    derived : dict of str to DataFrame
        ``analysis.derived.build_all``'s tables.
    quarantine : DataFrame
        Quarantined rows visible on the quarter's last day (``QUARANTINE_COLUMNS``).
    rows_used : dict of str to int
        Clean rows visible on the quarter's last day, per table.
    rows_in_warehouse : dict of str to int
        Rows stored, per table.
    transfer : Transfer
    """

    tables: dict[str, pd.DataFrame]
    derived: dict[str, pd.DataFrame]
    quarantine: pd.DataFrame
    rows_used: dict[str, int]
    rows_in_warehouse: dict[str, int]
    transfer: Transfer


class Warehouse:
    """One read-only REPEATABLE READ snapshot of a PostgreSQL source.

    Use as a context manager; on entry the connection is opened, the structure is
    checked (missing tables and columns raise ``InputError`` as ``Source.read``
    does), the column types are compared with the contract and the as-of date is read.

    Parameters
    ----------
    source : analysis.sources.PostgresSource
    """

    def __init__(self, source):
        self.source = source
        self.target = source._target
        self.con = None
        self.columns: dict[str, list[tuple[str, int]]] = {}
        self.as_of: date | None = None
        #: ``table.column`` is ``type``, not the contract's kind: validate in Python.
        self.mismatch: str | None = None
        self.transfer = Transfer()

    # -- session
    def __enter__(self) -> "Warehouse":
        import psycopg

        from .sources import META_TABLE, raise_problems, structure_problems

        self.con = self.source._connect()
        try:
            # the row numbers of the quarantine are scan positions: no parallel or
            # synchronised scans (both may start or interleave a table elsewhere)
            self.con.execute("SET LOCAL max_parallel_workers_per_gather = 0")
            self.con.execute("SET LOCAL synchronize_seqscans = off")
            # the generated queries hold hundreds of expressions: compiling them with
            # LLVM (PostgreSQL's JIT) took 15 of 18 seconds on a 450k-row company
            self.con.execute("SET LOCAL jit = off")
            # no statistics on CTEs: the planner guesses a handful of rows where there are
            # thousands (cancel_date IS NULL: 1 in 200) and loops over them; hash and merge
            # joins are never much worse here (renewal_table on the sample: 37 s -> 0.5 s)
            self.con.execute("SET LOCAL enable_nestloop = off")
            names = self.source._table_names(self.con)
            self.columns = {n: self._describe(n) for n in TABLES if n in names}
            frames = {n: pd.DataFrame(columns=[c for c, _ in cols])
                      for n, cols in self.columns.items()}
            locations = {n: self.source._location(n) for n in frames}
            raise_problems(structure_problems(frames, locations,
                                              expected=self.source._missing_table_hint()))
            self.as_of = self.source._meta_as_of(self.con) if META_TABLE in names else None
            self.mismatch = self._type_mismatch()
        except psycopg.Error as e:
            self.close()
            raise self._error(e) from None
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        """End the transaction (rolled back: nothing was written) and the connection."""
        if self.con is not None:
            self.con.close()
            self.con = None

    def _error(self, exc) -> SourceError:
        from .pg import query_error
        return query_error(exc, self.target)

    def _describe(self, table: str) -> list[tuple[str, int]]:
        from psycopg import sql
        cur = self.con.execute(sql.SQL("SELECT * FROM {} LIMIT 0").format(
            sql.Identifier(self.target.schema, table)))
        return [(d.name, d.type_code) for d in cur.description]

    def _type_mismatch(self) -> str | None:
        for name, cols in self.columns.items():
            table = TABLES[name]
            for col, oid in cols:
                if col in {c.name for c in table.columns}:
                    kind = table.column(col).kind
                    if oid not in ACCEPTED_TYPES[kind]:
                        return (f"{self.source._location(name)}, column {col!r} is "
                                f"{_TYPE_NAMES.get(oid, f'type {oid}')}, not {_SQL_TYPE[kind]}")
        return None

    def present(self, name: str) -> list[str]:
        """Contract columns of ``name`` present in the database, in contract order."""
        have = {c for c, _ in self.columns[name]}
        return [c.name for c in TABLES[name].columns if c.name in have]

    def _query(self, text: str, params: dict | None = None, *, lenient: bool = False):
        """Run one generated query; returns (column names, rows) and counts the transfer."""
        import psycopg

        from .sources import _lenient_date_loader

        t0 = time.perf_counter()
        try:
            with self.con.cursor() as cur:
                if lenient:
                    cur.adapters.register_loader("date", _lenient_date_loader())
                cur.execute(compose(text, self.target.schema), params or {})
                rows = cur.fetchall()
                res = cur.pgresult
                width = sum(len(res.get_value(i, j) or b"") for i in range(res.ntuples)
                            for j in range(res.nfields)) if res is not None else 0
                names = [d.name for d in cur.description]
        except psycopg.Error as e:
            raise self._error(e) from None
        log.debug("query %d: %d rows in %.2fs", self.transfer.queries + 1, len(rows),
                  time.perf_counter() - t0)
        self.transfer.rows += len(rows)
        self.transfer.bytes += width
        self.transfer.queries += 1
        return names, rows

    # -- fingerprint
    def fingerprint(self) -> str:
        """sha256 over every table's columns, types and rows (hashed in the database).

        Each row's text is hashed with its scan position (``hashtextextended``) and the
        hashes summed, so only one number per table travels. It identifies the
        warehouse's contents for the prepared cache; it is not the folder fingerprint.
        """
        h = hashlib.sha256(b"postgres\0")
        for name, cols in sorted(self.columns.items()):
            _, rows = self._query(
                f"SELECT count(*), COALESCE(sum(hashtextextended(CAST(x.r AS text), x.rn)), 0) "
                f"FROM (SELECT row_number() OVER () AS rn, t AS r FROM @@{name}@@ AS t) AS x")
            n, total = rows[0]
            h.update(f"{name}\x1e{cols}\x1e{n}\x1e{total}\x1e".encode())
        return h.hexdigest()

    # -- validation and derived tables
    def _ctes(self, params: dict) -> tuple[list[tuple[str, str]], dict[str, Checks]]:
        present = set(self.columns)
        ctes, checks = [], {}
        for name, table in TABLES.items():
            if name in present:
                c, checks[name] = table_ctes(table, self.present(name), present, params)
                ctes += c
        params["overlap_check"] = len(checks["plan_assignments"].items) \
            if "plan_assignments" in checks else 0
        return ctes, checks

    def build(self, quarter: str, data_as_of: date) -> WarehouseBuild:
        """Validate, cut at the quarter's last day and derive, all in the database.

        Parameters
        ----------
        quarter : str
            The analysed quarter (its last day is the view's day).
        data_as_of : date
            The data's as-of date: event dates after it are future-dated.

        Returns
        -------
        WarehouseBuild
        """
        from .derived import analysed_quarters
        from .quarters import quarter_end, quarter_start

        day = quarter_end(quarter)
        params = {"data_as_of": data_as_of, "as_of": day, "weight_tol": WEIGHT_SUM_TOL,
                  "earliest": EARLIEST.date(), "blank": BLANK}
        ctes, checks = self._ctes(params)
        first_of = {"plan_assignments": "valid_from", "deals": "created_date",
                    "contracts": "start_date"}
        # one query counts every table: rows stored, used and quarantined on the day
        branches = []
        for name in self.columns:
            shown = _visible(name)
            first = first_of.get(name)
            least = (f"min({_t(first)}) FILTER (WHERE check_no < 1 AND {shown})"
                     if first else "CAST(NULL AS date)")
            branches.append(f"SELECT %(table_{name})s, count(*), count(*) FILTER (WHERE "
                            f"check_no < 1 AND {shown}), count(*) FILTER (WHERE check_no "
                            f"> 0 AND {shown}), {least} FROM {_q(name + '__v')}")
            params[f"table_{name}"] = name
        _, rows = self._query(with_ctes(ctes, "\nUNION ALL ".join(branches)), params)
        stored, used, held, firsts = {}, {}, {}, {}
        for name, n, n_used, n_held, least in rows:
            stored[name], used[name], held[name] = int(n), int(n_used), int(n_held)
            if name in first_of:
                firsts[name] = pd.DataFrame({first_of[name]: pd.to_datetime(pd.Series([least]))})
        # the quarantined rows themselves, for the tables that have any
        parts = [self._quarantined(name, ctes, checks[name], params)
                 for name in self.columns if held[name]]
        quarters = analysed_quarters(firsts, quarter)
        params["first_day"] = quarter_start(quarters[0])
        ctes_d = ctes + [view_cte(n) for n in _derived_inputs()] + [quarters_cte(quarters, params)]
        derived = {n: self._derived(n, ctes_d, params) for n in DERIVED}
        tables = {n: self._clean_rows(n, ctes, params) for n in SHIPPED if n in self.columns}
        from .asof import as_of_view
        from .quarantine import QUARANTINE_COLUMNS

        quarantine = (pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(
            {c: pd.Series(dtype="int64" if c == "row" else object) for c in QUARANTINE_COLUMNS}))
        return WarehouseBuild(tables=as_of_view(tables, day), derived=derived,
                              quarantine=quarantine, rows_used=used, rows_in_warehouse=stored,
                              transfer=self.transfer)

    def _raw_frame(self, name: str, names: list[str], rows: list[tuple]) -> pd.DataFrame:
        """Fetched contract columns as ``PostgresSource.read`` would hold them."""
        from .sources import _pg_column

        oids = dict(self.columns[name])
        values = list(zip(*rows)) if rows else [()] * len(names)
        return pd.DataFrame({c: _pg_column(v, oids[c]) for c, v in zip(names, values)},
                            columns=names)

    def _quarantined(self, name: str, ctes, checks: Checks, params: dict) -> pd.DataFrame:
        """Quarantine lines of ``name`` visible on the view's day, rendered as validate does."""
        from .parse import parse_column
        from .quarantine import RowVerdicts, quarantine_rows

        cols = self.present(name)
        raw_cols = ", ".join(_q(c) for c in cols)
        # a quarantined row counts when its visibility date is not after the day
        # (an unreadable date counts as visible), as prepare._visible_rows
        _, rows = self._query(with_ctes(ctes, f"SELECT rn, check_no, {raw_cols} FROM "
                                              f"{_q(name + '__v')} WHERE check_no > 0 "
                                              f"AND {_visible(name)} ORDER BY rn"),
                              params, lenient=True)
        raw = self._raw_frame(name, cols, [r[2:] for r in rows])
        verdicts = RowVerdicts(len(raw))
        for i, r in enumerate(rows):
            verdicts.reason[i], verdicts.column[i] = checks.verdict(int(r[1]))
        table = TABLES[name]
        typed = {c: parse_column(raw[c], table.column(c)).values for c in _id_columns(table)}
        lines = quarantine_rows(name, verdicts, _row_ids(table, typed), raw)
        lines["row"] = np.array([r[0] for r in rows], dtype="int64")
        return lines

    def _clean_rows(self, name: str, ctes, params: dict) -> pd.DataFrame:
        """Clean rows visible on the view's day, typed as ``analysis.validate`` types them."""
        from .parse import parse_column

        cols = self.present(name)
        names, rows = self._query(with_ctes(ctes, f"SELECT {', '.join(_q(c) for c in cols)} "
                                                  f"FROM {_q(name + '__v')} WHERE check_no < 1 "
                                                  f"AND {_visible(name)} ORDER BY rn"), params)
        raw = self._raw_frame(name, names, rows)
        table = TABLES[name]
        typed = pd.DataFrame({c: parse_column(raw[c], table.column(c)).values for c in cols})
        for c in table.columns:
            if c.name in typed and c.kind == "bool":
                typed[c.name] = typed[c.name].astype(bool)
        return typed

    def _derived(self, name: str, ctes, params: dict) -> pd.DataFrame:
        """One derived table from its SQL file, run over the view CTEs."""
        from .derived import block_order, pyformat_params, read_sql, tidy_result

        blocks = [(b, pyformat_params(read_sql(b))) for b in block_order(name)]
        names, rows = self._query(with_ctes(ctes + blocks, pyformat_params(read_sql(name))),
                                  params)
        df = pd.DataFrame.from_records(rows, columns=names)
        for c in df.columns:  # numeric (SUM of integers in PostgreSQL) -> float
            if df[c].map(lambda v: type(v).__name__ == "Decimal").any():
                df[c] = df[c].astype(float)
        df = tidy_result(name, df)
        if name in SORT_KEYS:
            df = df.sort_values(SORT_KEYS[name], kind="mergesort", ignore_index=True)
        return df


def _derived_inputs() -> tuple[str, ...]:
    from .derived import INPUT_COLUMNS
    return tuple(INPUT_COLUMNS)


def _id_columns(table: Table) -> list[str]:
    if table.columns[0].kind == "id":
        return [table.id_column]
    return ["team_id", "plan_id", "valid_from"]


def _row_ids(table: Table, typed: dict[str, pd.Series]) -> pd.Series:
    """What names a row in the quarantine (as ``analysis.validate``): its id, or
    team/plan/valid_from for plan assignments."""
    if table.columns[0].kind == "id":
        return typed[table.id_column]
    parts = [typed["team_id"].fillna(""), typed["plan_id"].fillna(""),
             typed["valid_from"].dt.strftime("%Y-%m-%d").fillna("")]
    return parts[0].str.cat(parts[1:], sep="/").astype(object)
