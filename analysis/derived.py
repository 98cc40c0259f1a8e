"""Derived tables: the rep x quarter panel, survival episodes and renewal decisions.

Each table is one SQL file in ``analysis/sql/`` (a chain of named CTEs), run by DuckDB
on an in-memory connection over the typed tables of the as-of view (DataFrames, or the
Parquet files a prepared quarter writes them to). The SQL keeps to
the dialect DuckDB and PostgreSQL share, so the same files can run where the data
lives. Known differences, all outside the SQL's logic:

* parameters are written ``$as_of`` / ``$first_day`` (DuckDB named parameters);
  a PostgreSQL driver needs its own placeholder (``%(as_of)s`` for psycopg);
* the loader here casts the pandas ``datetime64`` columns to ``DATE`` (in PostgreSQL
  they already are), and the small ``quarters`` table is passed in as data;
* ``CREATE TEMP TABLE name AS <query>`` chains the building blocks (PostgreSQL
  accepts the same statement);
* ``ORDER BY`` on strings follows the database's collation (bytewise in DuckDB, the
  database locale in PostgreSQL) — re-sort in pandas if the order must match exactly;
* PostgreSQL returns SUM/AVG of integers as ``numeric``: convert to float (see
  :func:`tidy_result`).

``tests/test_derived.py::test_same_results_in_postgres`` (``KPISAT_TEST_PG_URL``) runs
the files in PostgreSQL through :func:`pyformat_params` and compares the results.

Building blocks, each a temporary table made from its own SQL file, in order:
``team_plan_days`` (plan in force per team and day), ``customer_churn`` (churn date per
customer), ``customer_owner_spans`` (runs of days a customer is at risk under one
owner), ``complaint_owners`` (the rep a complaint counts against). The public tables
are built from them; see docs/architecture.md "Derived tables" for their columns.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator, Mapping
from datetime import date
from importlib import resources
from pathlib import Path

import duckdb
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from .config import WEIGHTS
from .contract import TABLES
from .quarters import (parse_quarter, quarter_end, quarter_of, quarter_range,
                       quarter_start)

logger = logging.getLogger(__name__)

#: Input tables and the columns of each that the SQL reads (only these are copied
#: into DuckDB: copying a million unused strings costs more than the query).
INPUT_COLUMNS: dict[str, tuple[str, ...]] = {
    "reps": ("rep_id", "team_id", "hire_date", "exit_date"),
    "kpi_plans": ("plan_id", *WEIGHTS),
    "plan_assignments": ("team_id", "plan_id", "valid_from", "valid_to"),
    "customers": ("customer_id", "segment", "acquired_date"),
    "deals": ("rep_id", "close_date", "status", "amount", "is_new_business"),
    "contracts": ("contract_id", "customer_id", "rep_id", "start_date", "end_date",
                  "annual_value", "outcome", "cancel_date"),
    "surveys": ("customer_id", "rep_id", "sent_date", "responded_date", "csat", "nps"),
    "complaints": ("complaint_id", "customer_id", "rep_id", "created_date"),
}

#: Building blocks and the blocks each needs first.
_BLOCKS: dict[str, tuple[str, ...]] = {
    "team_plan_days": (),
    "customer_churn": (),
    "customer_owner_spans": ("customer_churn",),
    "complaint_owners": (),
}
#: Blocks each public table (or the diagnostics) needs.
_NEEDS: dict[str, tuple[str, ...]] = {
    "rep_quarter_panel": ("team_plan_days", "customer_churn", "complaint_owners"),
    "survival_episodes": ("team_plan_days", "customer_churn", "customer_owner_spans"),
    "renewal_table": ("team_plan_days",),
    "diagnostics": ("team_plan_days", "customer_churn", "customer_owner_spans",
                    "complaint_owners"),
    "survey_counts": (),
    "survey_respondents": (),
}
#: Every table :func:`build_all` returns, in order.
PUBLIC = ("rep_quarter_panel", "survival_episodes", "renewal_table", "diagnostics",
          "survey_counts", "survey_respondents")
#: The survey aggregates (they read only ``surveys``; see :func:`survey_tables`).
SURVEY_TABLES = ("survey_counts", "survey_respondents")
#: Score columns of ``survey_counts``: answers per CSAT (1..5) and NPS (0..10) score.
CSAT_SCORES = tuple(range(1, 6))
NPS_SCORES = tuple(range(0, 11))

_SQL_TYPES = {"id": "VARCHAR", "str": "VARCHAR", "enum": "VARCHAR", "date": "DATE",
              "float": "DOUBLE", "int": "BIGINT", "bool": "BOOLEAN"}
_PARAM = re.compile(r"\$([a-z_]+)")

#: Integer columns of the outputs (DuckDB may hand back wider types).
_INT_COLUMNS = {
    "rep_quarter_panel": ("plan_days", "won_deals", "new_customers", "surveys_sent",
                          "responses", "csat_responses", "nps_responses", "complaints",
                          "renewals_due", "renewals_renewed",
                          "churned_customers"),
    "survival_episodes": ("start", "stop", "event"),
    "renewal_table": ("renewed", "tenure_days"),
    "diagnostics": ("n",),
    "survey_counts": ("surveys_sent", "responses", *(f"csat_{k}" for k in CSAT_SCORES),
                      *(f"nps_{k}" for k in NPS_SCORES)),
}
_FLOAT_COLUMNS = {
    "rep_quarter_panel": ("bookings", "log_bookings", "csat_mean", "nps", "response_rate",
                          "exposure"),
    "renewal_table": ("annual_value",),
}
_DATE_COLUMNS = {
    "survival_episodes": ("first_day", "last_day"),
    "renewal_table": ("end_date",),
}


def read_sql(name: str) -> str:
    """Return the text of ``analysis/sql/<name>.sql``."""
    return resources.files("analysis").joinpath("sql", f"{name}.sql").read_text("utf-8")


def pyformat_params(sql: str) -> str:
    """Rewrite ``$name`` parameters as ``%(name)s`` for psycopg (PostgreSQL).

    The SQL files use DuckDB's named parameters; this is the one rewrite a
    PostgreSQL driver needs (the files contain no literal ``%``).
    """
    if "%" in _PARAM.sub("", sql):
        raise ValueError("SQL contains a literal '%'; escape it before pyformat binding")
    return _PARAM.sub(r"%(\1)s", sql)


def block_order(name: str) -> list[str]:
    """Building blocks to create, in order, before running ``sql/<name>.sql``."""
    order: list[str] = []

    def visit(block: str) -> None:
        for need in _BLOCKS[block]:
            visit(need)
        if block not in order:
            order.append(block)

    for block in _NEEDS[name]:
        visit(block)
    return order


def quarters_frame(quarters: list[str]) -> pd.DataFrame:
    """The ``quarters`` input of the SQL: quarter, q_start, q_end, n_days, q_key."""
    frame = pd.DataFrame({
        "quarter": quarters,
        "q_start": [quarter_start(q) for q in quarters],
        "q_end": [quarter_end(q) for q in quarters],
    })
    frame["n_days"] = [(e - s).days + 1 for s, e in zip(frame.q_start, frame.q_end)]
    # 4 * year + quarter - 1, as the SQL computes it from a date
    frame["q_key"] = [4 * y + q - 1 for y, q in map(parse_quarter, quarters)]
    return frame


def analysed_quarters(tables: dict[str, pd.DataFrame], quarter: str) -> list[str]:
    """Quarters the derived tables cover, oldest first.

    From the first quarter with any plan assignment (``valid_from``), deal
    (``created_date``) or contract (``start_date``) through ``quarter``; only
    ``quarter`` when there are none or all lie later.

    Parameters
    ----------
    tables : typed tables of the as-of view (DataFrames or Parquet files).
    quarter : the analysed quarter, e.g. ``"2025Q4"``.

    Returns
    -------
    list of str
    """
    starts = []
    for table, column in (("plan_assignments", "valid_from"), ("deals", "created_date"),
                          ("contracts", "start_date")):
        df = tables.get(table)
        if isinstance(df, Path):
            df = pd.read_parquet(df, columns=[column])
        if df is not None and len(df) and df[column].notna().any():
            starts.append(df[column].min())
    first = quarter
    if starts:
        earliest = min(starts).date()
        if earliest <= quarter_end(quarter):
            first = quarter_of(earliest)
    return quarter_range(first, quarter)


def sql_params(sql: str, as_of: date, first_day: date) -> dict[str, date]:
    """The parameters ``sql`` uses: ``as_of`` (D) and ``first_day`` (of the first quarter)."""
    known = {"as_of": as_of, "first_day": first_day}
    return {name: known[name] for name in sorted(set(_PARAM.findall(sql)))}


class _Workspace:
    """An in-memory DuckDB connection holding the inputs and the building blocks.

    An input is a DataFrame or the Path of its Parquet file (DuckDB then reads only the
    columns it needs, without the table ever being in pandas).
    """

    def __init__(self, tables: Mapping[str, pd.DataFrame | Path], quarter: str,
                 inputs: tuple[str, ...] = tuple(INPUT_COLUMNS)):
        self.quarter = quarter
        self.as_of: date = quarter_end(quarter)
        self.quarters = analysed_quarters(tables, quarter)
        self.first_day: date = quarter_start(self.quarters[0])
        # One thread: parallel float sums add up in no fixed order, and findings must
        # be identical to the last digit for identical inputs.
        self.con = duckdb.connect(":memory:", config={"threads": 1})
        self._built: set[str] = set()
        for name in inputs:
            if name not in tables:
                raise KeyError(f"derived tables need the typed table {name!r}")
            self._load(name, tables[name])
        self._load_quarters()

    def __enter__(self) -> "_Workspace":
        return self

    def __exit__(self, *exc) -> None:
        self.con.close()

    def _load(self, name: str, df: pd.DataFrame | Path) -> None:
        """Copy one typed table into DuckDB with the contract's SQL types."""
        columns = [TABLES[name].column(c) for c in INPUT_COLUMNS[name]]
        select = ", ".join(
            f'CAST("{c.name}" AS {_SQL_TYPES[c.kind]}) AS "{c.name}"' for c in columns)
        view = f"input_{name}"
        present = pq.read_schema(df).names if isinstance(df, Path) else df.columns
        missing = [c.name for c in columns if c.name not in present]
        if missing:
            raise KeyError(f"typed table {name!r} lacks the columns {missing}")
        if isinstance(df, Path):  # a view: DuckDB scans the file where it is used
            literal = "'" + str(df).replace("'", "''") + "'"
            self.con.execute(f'CREATE TEMP VIEW "{name}" AS SELECT {select} '
                             f"FROM read_parquet({literal})")
            return
        # the whole frame: DuckDB reads only the selected columns (a pandas column
        # subset would first copy them, a million strings each)
        self.con.register(view, df)
        self.con.execute(f'CREATE TEMP TABLE "{name}" AS SELECT {select} FROM "{view}"')
        self.con.unregister(view)

    def _load_quarters(self) -> None:
        self.con.register("input_quarters", quarters_frame(self.quarters))
        self.con.execute(
            "CREATE TEMP TABLE quarters AS SELECT CAST(quarter AS VARCHAR) AS quarter, "
            "CAST(q_start AS DATE) AS q_start, CAST(q_end AS DATE) AS q_end, "
            "CAST(n_days AS BIGINT) AS n_days, CAST(q_key AS INTEGER) AS q_key "
            "FROM input_quarters")
        self.con.unregister("input_quarters")

    def _params(self, sql: str) -> dict[str, date]:
        return sql_params(sql, self.as_of, self.first_day)

    def ensure(self, block: str) -> None:
        """Create the temporary table ``block`` once (its own needs first)."""
        if block in self._built:
            return
        for need in _BLOCKS[block]:
            self.ensure(need)
        sql = read_sql(block)
        self.con.execute(f"CREATE TEMP TABLE {block} AS {sql}", self._params(sql))
        self._built.add(block)

    def query(self, name: str) -> pd.DataFrame:
        """Run ``sql/<name>.sql`` after its building blocks; return a tidy DataFrame."""
        for block in block_order(name):
            self.ensure(block)
        sql = read_sql(name)
        # via Arrow: two to three times faster than .df() on a million-row result;
        # dates become datetime64[ns] in Arrow, without a pandas round trip
        result = self.con.sql(sql, params=self._params(sql)).to_arrow_table()
        result = result.cast(pa.schema([
            f.with_type(pa.timestamp("ns")) if pa.types.is_date(f.type) else f
            for f in result.schema]))
        # buffers are released column by column as they are converted (lower peak)
        return tidy_result(name, result.to_pandas(date_as_object=False, split_blocks=True,
                                                  self_destruct=True))


def tidy_result(name: str, df: pd.DataFrame) -> pd.DataFrame:
    """Give the result of ``sql/<name>.sql`` its documented dtypes."""
    for column in _INT_COLUMNS.get(name, ()):
        df[column] = df[column].astype("int64", copy=False)
    for column in _DATE_COLUMNS.get(name, ()):
        if df[column].dtype != "datetime64[ns]":  # to_datetime scans even when it is
            df[column] = pd.to_datetime(df[column]).astype("datetime64[ns]", copy=False)
    for column in (*WEIGHTS, *_FLOAT_COLUMNS.get(name, ())):
        if column in df:
            df[column] = df[column].astype("float64", copy=False)
    return df


def _log_diagnostics(diagnostics: pd.DataFrame) -> None:
    for row in diagnostics.itertuples(index=False):
        if row.n and row.check_name != "complaints_attributed_to_owner":
            logger.warning("derived tables: %d %s (%s)", row.n, row.check_name, row.note)
        elif row.n:
            logger.info("derived tables: %d %s", row.n, row.check_name)


def rep_quarter_panel(tables: dict[str, pd.DataFrame], quarter: str) -> pd.DataFrame:
    """Rep x quarter panel: plan weights, bookings, surveys, complaints, exposure.

    Parameters
    ----------
    tables : typed tables of the as-of view of ``quarter``'s last day.
    quarter : the analysed quarter, e.g. ``"2025Q4"``.

    Returns
    -------
    DataFrame
        One row per rep and quarter in which the rep was employed at least one day,
        from the first analysed quarter through ``quarter``, sorted by rep_id, quarter.
        Columns as in docs/architecture.md. Unattributed complaints are logged as a
        warning; :func:`build_all` also returns them in ``diagnostics``.
    """
    with _Workspace(tables, quarter) as ws:
        panel = ws.query("rep_quarter_panel")
        unattributed = ws.con.execute(
            "SELECT COUNT(*) FROM complaint_owners WHERE attribution = 'unattributed'"
        ).fetchone()[0]
    if unattributed:
        logger.warning("derived tables: %d unattributed_complaints (complaints with no "
                       "rep_id and no active contract on created_date; counted against "
                       "nobody)", unattributed)
    return panel


def survival_episodes(tables: dict[str, pd.DataFrame], quarter: str) -> pd.DataFrame:
    """Customer episodes ``(start, stop]`` on the tenure axis for the churn model.

    Parameters
    ----------
    tables : typed tables of the as-of view of ``quarter``'s last day.
    quarter : the analysed quarter.

    Returns
    -------
    DataFrame
        One row per episode, split where the owning rep, the owning team's plan or the
        calendar quarter changes; sorted by customer_id, start. ``event`` is 1 on the
        episode ending on the churn day. Columns as in docs/architecture.md.
    """
    with _Workspace(tables, quarter) as ws:
        return ws.query("survival_episodes")


def renewal_table(tables: dict[str, pd.DataFrame], quarter: str) -> pd.DataFrame:
    """Renewal decisions: uncancelled contracts that ended on or before the as-of date.

    Parameters
    ----------
    tables : typed tables of the as-of view of ``quarter``'s last day.
    quarter : the analysed quarter.

    Returns
    -------
    DataFrame
        One row per contract, with the plan in force for the owner's team on
        ``end_date``; sorted by end_date, contract_id.
    """
    with _Workspace(tables, quarter) as ws:
        return ws.query("renewal_table")


def build_all(tables: Mapping[str, pd.DataFrame | Path], quarter: str
              ) -> dict[str, pd.DataFrame]:
    """Build every derived table on one connection.

    Parameters
    ----------
    tables : typed tables of the as-of view of ``quarter``'s last day (DataFrames or
        the Paths of their Parquet files).
    quarter : the analysed quarter.

    Returns
    -------
    dict of str to DataFrame
        ``rep_quarter_panel``, ``survival_episodes``, ``renewal_table`` and
        ``diagnostics`` (columns ``check_name, n, note``: counts of rows the derived
        tables could not use as intended, such as unattributed complaints),
        ``survey_counts`` and ``survey_respondents`` (:func:`survey_tables`).
    """
    return dict(build_each(tables, quarter))


def build_each(tables: Mapping[str, pd.DataFrame | Path], quarter: str
               ) -> Iterator[tuple[str, pd.DataFrame]]:
    """``(name, table)`` of every derived table in :data:`PUBLIC` order, one at a time.

    As :func:`build_all` (one connection), for a caller that stores each table and
    drops it before the next is built.
    """
    with _Workspace(tables, quarter) as ws:
        for name in PUBLIC:
            table = ws.query(name)
            if name == "diagnostics":
                _log_diagnostics(table)
            yield name, table


def survey_tables(tables: dict[str, pd.DataFrame], quarter: str) -> dict[str, pd.DataFrame]:
    """The survey aggregates the metrics and the survey-gaming check read.

    Parameters
    ----------
    tables : typed tables of the as-of view of ``quarter``'s last day (only
        ``surveys`` is read).
    quarter : the analysed quarter.

    Returns
    -------
    dict of str to DataFrame
        ``survey_counts``: one row per rep_id and quarter sent (every quarter with a
        survey up to the view's day), columns ``rep_id, quarter, surveys_sent,
        responses, csat_1..csat_5, nps_0..nps_10`` (answers per score, responded
        surveys only); ``survey_respondents``: distinct ``rep_id, customer_id,
        quarter`` of the surveys answered. Both sorted by their columns.
    """
    with _Workspace(tables, quarter, inputs=("surveys",)) as ws:
        return {name: ws.query(name) for name in SURVEY_TABLES}
