"""Validation and derived tables inside PostgreSQL give what the Python path gives.

Every row-level case of the bad-input corpus (tests/test_bad_inputs.py) that a typed
warehouse can hold is loaded into PostgreSQL with ``pg_load.load_folder`` and prepared
twice on the same data: in the database (``analysis.warehouse``) and by reading every
table and validating in Python (``prepare._build``). Quarantine (row, id, column, raw
value, reason), counts, model tables and derived tables must be equal. Cases a typed
column cannot hold (``n/a`` in a date column) are refused by the loader; loaded into
``text`` columns instead, the run falls back to Python validation and matches the
folder run row for row.

Server tests need ``KPISAT_TEST_PG_URL`` / ``KPISAT_TEST_PG_PASSWORD`` (see
tests/test_postgres.py); without them they skip.
"""

from __future__ import annotations

import logging
import os
import secrets
import shutil
from datetime import date

import pandas as pd
import pytest

from analysis import pg, warehouse
from analysis.contract import TABLES
from analysis.errors import InputError
from analysis.pg_load import load_folder
from analysis.quarantine import REASONS
from test_bad_inputs import COMPANY, ROW_CASES, read, write
from test_postgres import pg_env  # noqa: F401  (the fixture: server password only)

PG_URL = os.environ.get("KPISAT_TEST_PG_URL", "")
PG_PASSWORD = os.environ.get("KPISAT_TEST_PG_PASSWORD", "")
QUARTER = "2025Q4"
AS_OF = date(2025, 12, 31)
TOL = 1e-9

needs_pg = pytest.mark.skipif(not PG_URL, reason="KPISAT_TEST_PG_URL is not set: no "
                              "PostgreSQL server (eval \"$(.ci/postgres.sh start)\")")


# ---------------------------------------------------------------- without a server
@pytest.mark.parametrize("name", list(TABLES))
def test_generated_checks_follow_the_reason_order(name):
    """Checks run in analysis.validate's order: identity, parsing (column by column),
    column checks (reason by reason), row rules, references (column by column), team,
    overlaps; every reason is one of REASONS and names a contract column."""
    params: dict = {}
    table = TABLES[name]
    _, checks = warehouse.table_ctes(table, [c.name for c in table.columns], set(TABLES), params)
    reasons = [r for _, r, _ in checks.items]
    sections = {0: {"missing id", "conflicting duplicate id", "duplicate row"},
                1: {"date out of range", "not a date", "not a number"},
                2: {"missing value", "not an allowed value", "out of range",
                    "date before 1990-01-01", "future-dated"},
                4: {r for r in REASONS if r.startswith("unknown ") or r.endswith(" quarantined")}
                - {"unknown team"},
                5: {"unknown team"}, 6: {"overlapping plan assignment"}}
    section = [next((k for k, v in sections.items() if r in v), 3) for r in reasons]
    assert section == sorted(section), reasons
    column_checks = [REASONS.index(r) for r, k in zip(reasons, section) if k == 2]
    assert column_checks == sorted(column_checks), reasons
    assert {c for _, _, c in checks.items} - {None} <= {c.name for c in table.columns}
    assert all(r in REASONS for _, r, _ in checks.items)


def test_generated_sql_has_values_only_as_parameters():
    params: dict = {}
    ctes, _ = warehouse.table_ctes(TABLES["deals"], [c.name for c in TABLES["deals"].columns],
                                   set(TABLES), params)
    text = "\n".join(body for _, body in ctes)
    for choice in TABLES["deals"].column("status").choices:
        assert choice in params["deals__status__choices"]
    assert "1990" not in text and "as_of" not in text.replace("%(as_of)s", "").replace(
        "%(data_as_of)s", "")
    assert "@@deals@@" in text  # the schema-qualified table is composed as an Identifier


def test_with_ctes_merges_into_the_statement_own_with():
    merged = warehouse.with_ctes([("a", "SELECT 1")],
                                 "-- note\nWITH b AS (SELECT 2)\nSELECT * FROM b")
    assert merged.startswith('WITH "a" AS MATERIALIZED (') and "b AS (SELECT 2)" in merged
    assert merged.count("WITH") == 1
    plain = warehouse.with_ctes([("a", "SELECT 1")], "SELECT * FROM a")
    assert plain.endswith("SELECT * FROM a") and plain.count("WITH") == 1


# ---------------------------------------------------------------- with a server
@pytest.fixture(scope="module")
def schemas(pg_env):
    """Schema names handed out to the tests of this module, dropped at the end."""
    made: list[str] = []

    def new() -> str:
        made.append(f"kpisat_w{os.getpid()}_{secrets.token_hex(3)}")
        return made[-1]

    yield new
    with pg.connect(pg.parse_url(PG_URL), read_only=False) as con:
        for name in made:
            con.execute(f'DROP SCHEMA IF EXISTS "{name}" CASCADE')


def _url(schema: str) -> str:
    return f"{PG_URL}?schema={schema}"


def _both(url: str, quarter: str = QUARTER):
    """(in the database, in Python) for the same PostgreSQL data."""
    from analysis.prepare import _build
    from analysis.sources import open_source

    built = _in_database(url, quarter)
    python = _build(open_source(url).read(), quarter, AS_OF)
    return built, python


def _assert_same(built, python) -> None:
    from analysis.prepare import quality_counts

    pd.testing.assert_frame_equal(built.quarantine, python.validated.quarantine)
    quality = quality_counts(list(built.rows_in_warehouse), built.rows_used, built.quarantine,
                             AS_OF)
    assert quality == python.validated.quality
    assert set(built.tables) == set(warehouse.SHIPPED)
    for name, df in built.tables.items():
        pd.testing.assert_frame_equal(df, python.tables[name], obj=name)
    for name, df in python.derived.items():
        pd.testing.assert_frame_equal(built.derived[name], df, check_exact=False,
                                      rtol=TOL, atol=TOL, obj=name)


def _dirty(tmp_path, case: str):
    table, change, expected = ROW_CASES[case]
    folder = shutil.copytree(COMPANY, tmp_path / "company")
    write(folder, table, change(read(folder, table)))
    return folder, expected


@needs_pg
@pytest.mark.postgres
@pytest.mark.parametrize("case", ROW_CASES)
def test_bad_row_is_quarantined_in_the_database_as_in_python(case, schemas, tmp_path):
    folder, (q_table, row, row_id, column, reason) = _dirty(tmp_path, case)
    schema = schemas()
    try:
        load_folder(folder, PG_URL, schema)
    except InputError as e:  # a typed column cannot hold the cell: the load names it
        assert "cannot be loaded into PostgreSQL" in str(e) and e.column and e.row
        return
    if case in PYTHON_PATH_FAILS:
        built = _in_database(_url(schema))
        from_folder = _build_folder(folder)
        pd.testing.assert_frame_equal(built.quarantine, from_folder.validated.quarantine)
    else:
        built, python = _both(_url(schema))
        _assert_same(built, python)
    hit = built.quarantine[(built.quarantine["table"] == q_table)
                           & (built.quarantine["row"] == row)]
    assert hit["reason"].tolist() == TYPED_REASON.get(case, [reason]), built.quarantine


#: Where a typed warehouse run differs from the CSV corpus' expectation (the database
#: and the Python path on the same PostgreSQL data agree).
TYPED_REASON = {
    # NaN in a double precision column reads as null, as from Parquet or DuckDB
    "amount NaN": ["missing value"],
    # PostgreSQL's own input rules: the date keeps its day, "yes" is a boolean
    "date with time": [],
    "bool not true/false": [],
    # created after the as-of date: not visible in any quarter's run
    "event date after as_of": [],
}
#: A date column holding a date datetime64[ns] cannot (9999-12-31) crashes the Python
#: path reading PostgreSQL (analysis.parse._parse_date); compared with the folder run.
PYTHON_PATH_FAILS = {"date beyond datetime64"}


def _in_database(url: str, quarter: str = QUARTER):
    from analysis.sources import open_source

    with warehouse.Warehouse(open_source(url)) as wh:
        return wh.build(quarter, wh.as_of)


def _build_folder(folder, quarter: str = QUARTER):
    from analysis.prepare import _build
    from analysis.sources import open_source

    return _build(open_source(folder).read(), quarter, AS_OF)


@needs_pg
@pytest.mark.postgres
def test_many_defects_at_once_and_an_earlier_quarter(schemas, tmp_path):
    """Loadable cases on different rows, in one company (cascades included); two quarters."""
    folder = shutil.copytree(COMPANY, tmp_path / "company")
    for case in ("negative amount", "duplicate id conflicting", "csat out of range",
                 "date before 1990", "end before start", "negative annual value",
                 "orphan customer in contract", "overlapping plan assignments",
                 "unknown satisfaction scope", "event date after as_of"):
        table, change, _ = ROW_CASES[case]
        write(folder, table, change(read(folder, table)))
    schema = schemas()
    load_folder(folder, PG_URL, schema)
    for quarter in (QUARTER, "2024Q3"):
        built, python = _both(_url(schema), quarter)
        _assert_same(built, python)
    reasons = set(_both(_url(schema))[0].quarantine["reason"])
    assert {"out of range", "conflicting duplicate id", "plan quarantined",
            "unknown customer"} <= reasons, reasons


@needs_pg
@pytest.mark.postgres
def test_dates_python_cannot_hold(schemas, tmp_path):
    """``infinity`` and year 10000+ are "not a date"; 1500-01-01 "date out of range"."""
    schema = schemas()
    load_folder(COMPANY, PG_URL, schema)
    with pg.connect(pg.parse_url(PG_URL), read_only=False) as con:
        for table, key, column, value, row_id in (
                ("deals", "deal_id", "close_date", "infinity", "D1"),
                ("deals", "deal_id", "close_date", "10001-01-01", "D2")):
            con.execute(f'UPDATE "{schema}"."{table}" SET "{column}" = %s WHERE "{key}" = %s',
                        [value, row_id])
    built, python = _both(_url(schema))
    _assert_same(built, python)
    q = built.quarantine.set_index("id")
    assert q.loc["D1", "reason"] == q.loc["D2", "reason"] == "not a date"
    assert q.loc["D1", "raw_value"] == "infinity"
    # outside datetime64[ns] but a date: compared with the same cell in a CSV folder
    with pg.connect(pg.parse_url(PG_URL), read_only=False) as con:
        con.execute(f'UPDATE "{schema}".reps SET exit_date = %s WHERE rep_id = %s',
                    ["1500-01-01", "R2"])
    folder = shutil.copytree(COMPANY, tmp_path / "company")
    reps = read(folder, "reps")
    reps.loc[reps["rep_id"] == "R2", "exit_date"] = "1500-01-01"
    write(folder, "reps", reps)
    rows = _in_database(_url(schema)).quarantine
    expected = _build_folder(folder).validated.quarantine
    # an updated row moves to the end of the table: "row" is the scan position
    cols = ["table", "id", "column", "raw_value", "reason"]
    pd.testing.assert_frame_equal(rows.loc[rows["table"] == "reps", cols].reset_index(drop=True),
                                  expected.loc[expected["table"] == "reps", cols]
                                  .reset_index(drop=True))
    assert rows.set_index("id").loc["R2", "reason"] == "date out of range"


@needs_pg
@pytest.mark.postgres
def test_text_columns_fall_back_to_python_and_match_the_folder(schemas, tmp_path, caplog,
                                                               monkeypatch):
    """A date in a text column that is no date: validated in Python, as from CSV."""
    from analysis.prepare import prepare

    monkeypatch.setenv("KPISAT_PREPARED_CACHE", str(tmp_path / "cache"))
    folder, _ = _dirty(tmp_path, "date not ISO")
    schema = schemas()
    with pytest.raises(InputError, match="created_date"):
        load_folder(folder, PG_URL, schema)  # typed: refused
    load_folder(folder, PG_URL, schema, typed=False)
    with caplog.at_level(logging.WARNING, logger="analysis.prepare"):
        from_pg = prepare(_url(schema), QUARTER, None, fresh=True)
    assert any("is text, not date" in r.getMessage() and "validating in Python" in r.getMessage()
               for r in caplog.records)
    from_folder = prepare(str(folder), QUARTER, None, fresh=True)
    pd.testing.assert_frame_equal(from_pg.validated.quarantine, from_folder.validated.quarantine)
    assert from_pg.validated.quarantine["reason"].tolist() == ["not a date"]
    assert from_pg.validated.data_quality() == from_folder.validated.data_quality()


@needs_pg
@pytest.mark.postgres
def test_only_results_come_back(schemas):
    """Rows sent back = derived rows + model tables + quarantine + one per count query."""
    schema = schemas()
    load_folder(COMPANY, PG_URL, schema)
    from analysis.sources import open_source

    with warehouse.Warehouse(open_source(_url(schema))) as wh:
        built = wh.build(QUARTER, wh.as_of)
    expected = (sum(map(len, built.derived.values())) + sum(map(len, built.tables.values()))
                + len(built.quarantine) + len(built.rows_in_warehouse))  # one count row each
    assert built.transfer.rows == expected
    assert not {"deals", "complaints", "invoices", "activities"} & set(built.tables)


@needs_pg
@pytest.mark.postgres
def test_pseudonymised_prepare_matches_the_folder(schemas, tmp_path, monkeypatch):
    """Ids replaced after the database built the tables: same frames, same order."""
    from analysis.prepare import prepare

    monkeypatch.setenv("KPISAT_PREPARED_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("KPISAT_PSEUDONYM_KEY", "k" * 32)
    schema = schemas()
    load_folder(COMPANY, PG_URL, schema)
    from_pg = prepare(_url(schema), QUARTER, None, fresh=True, pseudonymise=True)
    from_folder = prepare(str(COMPANY), QUARTER, None, fresh=True, pseudonymise=True)
    assert "R1" not in set(from_pg.derived["rep_quarter_panel"]["rep_id"])
    for name, df in from_pg.tables.items():
        pd.testing.assert_frame_equal(df, from_folder.tables[name], obj=name)
    for name, df in from_folder.derived.items():
        pd.testing.assert_frame_equal(from_pg.derived[name], df, check_exact=False,
                                      rtol=TOL, atol=TOL, obj=name)


@needs_pg
@pytest.mark.postgres
def test_a_failing_query_is_one_line_without_password(schemas, tmp_path, monkeypatch):
    """An error raised by the database mid-run: one line naming the schema, no secret."""
    from analysis.errors import SourceError
    from analysis.prepare import prepare

    monkeypatch.setenv("KPISAT_PREPARED_CACHE", str(tmp_path / "cache"))
    schema = schemas()
    load_folder(COMPANY, PG_URL, schema)
    with pg.connect(pg.parse_url(PG_URL), read_only=False) as con:
        con.execute(f'ALTER TABLE "{schema}".complaints RENAME TO complaints_stored')
        con.execute(f'CREATE VIEW "{schema}".complaints AS SELECT complaint_id, customer_id, '
                    f'rep_id, created_date, category, severity / (severity - severity) AS '
                    f'severity FROM "{schema}".complaints_stored')
    with pytest.raises(SourceError) as err:
        prepare(_url(schema), QUARTER, None, fresh=True)
    message = str(err.value)
    assert "division by zero" in message and schema in message
    assert "\n" not in message and PG_PASSWORD not in message
