"""Sources: folder / DuckDB / PostgreSQL specs, strict CSV reading, fingerprints, the sample cache."""

from __future__ import annotations

import hashlib
import io
import json
import shutil
from datetime import date
from pathlib import Path

import duckdb
import pandas as pd
import pytest

from analysis.errors import InputError, SourceError
from analysis.sources import (DuckDBSource, FolderSource, PostgresSource, fingerprint,
                              open_source, sample_source)
from analysis.validate import validate

COMPANY = Path(__file__).parent / "fixtures" / "company"

#: DuckDB types of the fixture's columns, for a typed copy of it.
TYPED = {
    "hire_date": "DATE", "exit_date": "DATE", "valid_from": "DATE", "valid_to": "DATE",
    "acquired_date": "DATE", "created_date": "DATE", "close_date": "DATE", "start_date": "DATE",
    "end_date": "DATE", "cancel_date": "DATE", "sent_date": "DATE", "responded_date": "DATE",
    "due_date": "DATE", "paid_date": "DATE", "activity_date": "DATE",
    "amount": "DOUBLE", "annual_value": "DOUBLE", "paid_amount": "DOUBLE",
    "csat": "INTEGER", "nps": "INTEGER", "severity": "INTEGER", "is_new_business": "BOOLEAN",
    **{w: "DOUBLE" for w in ("w_revenue", "w_new_customers", "w_collection", "w_satisfaction",
                             "w_complaints", "w_process")},
}


def digest(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture
def company(tmp_path) -> Path:
    """A private copy of the fixture company."""
    return Path(shutil.copytree(COMPANY, tmp_path / "company"))


def write_duckdb(folder: Path, target: Path, *, typed: bool) -> Path:
    """A DuckDB file with the folder's tables, as VARCHAR or with contract types."""
    con = duckdb.connect(str(target))
    for csv in sorted(folder.glob("*.csv")):
        df = pd.read_csv(csv, dtype=str, keep_default_na=False)
        con.register("frame", df)
        cols = ", ".join(
            f'CAST(NULLIF("{c}", \'\') AS {TYPED[c]}) AS "{c}"' if typed and c in TYPED else f'"{c}"'
            for c in df.columns)
        con.execute(f'CREATE TABLE "{csv.stem}" AS SELECT {cols} FROM frame')
        con.unregister("frame")
    con.execute("CREATE TABLE kpisat_meta (key VARCHAR, value VARCHAR)")
    con.execute("INSERT INTO kpisat_meta VALUES ('as_of', '2025-12-31')")
    con.close()
    return target


# ---------------------------------------------------------------- folder reading
def test_folder_reads_every_table_as_strings():
    raw = open_source(COMPANY).read()
    assert set(raw.tables) == {"reps", "kpi_plans", "plan_assignments", "customers", "deals",
                               "contracts", "surveys", "complaints", "invoices", "activities"}
    assert raw.as_of == date(2025, 12, 31)
    assert raw.locations["deals"] == str(COMPANY / "deals.csv")
    assert all(raw.tables["deals"][c].map(type).eq(str).all() for c in raw.tables["deals"])
    assert raw.tables["deals"].loc[5, "close_date"] == ""  # "" is kept, read as null later
    assert "folder" in raw.description and len(raw.fingerprint) == 64


def test_na_stays_a_string_and_bom_is_accepted(company):
    text = (company / "complaints.csv").read_text()
    (company / "complaints.csv").write_bytes(b"\xef\xbb\xbf" + text.replace("billing", "NA").encode())
    raw = open_source(company).read()
    assert list(raw.tables["complaints"].columns)[0] == "complaint_id"
    assert raw.tables["complaints"].loc[0, "category"] == "NA"
    v = validate(raw, raw.as_of)
    assert v.tables["complaints"].loc[0, "category"] == "NA" and v.quarantine.empty


def test_optional_tables_may_be_absent(company):
    (company / "invoices.csv").unlink()
    (company / "activities.csv").unlink()
    raw = open_source(company).read()
    assert "invoices" not in raw.tables and "activities" not in raw.tables


def test_header_only_file_gives_zero_rows(company):
    (company / "complaints.csv").write_text("complaint_id,customer_id,rep_id,created_date,category,severity\n")
    raw = open_source(company).read()
    assert len(raw.tables["complaints"]) == 0
    assert validate(raw, raw.as_of).rows_read["complaints"] == 0


@pytest.mark.parametrize("content, words", [
    (b"", "empty"),
    (b"deal_id,amount\nD1,\xff\xfe\n", "UTF-8"),
    (b"deal_id,amount,amount\nD1,1,2\n", "duplicate column"),
])
def test_bad_csv_is_an_input_error_naming_the_file(company, content, words):
    (company / "deals.csv").write_bytes(content)
    with pytest.raises(InputError) as e:
        open_source(company).read()
    assert "deals.csv" in str(e.value) and words in str(e.value)


def test_unreadable_xlsx_and_two_formats(company):
    (company / "surveys.xlsx").write_bytes(b"not a workbook")
    (company / "surveys.csv").unlink()
    with pytest.raises(InputError, match=r"surveys\.xlsx.*Excel"):
        open_source(company).read()
    shutil.copy(COMPANY / "surveys.csv", company / "surveys.csv")
    with pytest.raises(InputError, match="2 formats"):
        open_source(company).read()


def test_missing_tables_and_columns_are_reported_together(company):
    (company / "deals.csv").unlink()
    df = pd.read_csv(company / "reps.csv", dtype=str, keep_default_na=False)
    df.drop(columns="hire_date").to_csv(company / "reps.csv", index=False)
    with pytest.raises(InputError) as e:
        open_source(company).read()
    msg = str(e.value)
    assert "2 problems" in msg and "deals" in msg
    assert "reps.csv" in msg and "'hire_date'" in msg and "add the column" in msg


def test_parquet_and_xlsx_validate_like_csv(company):
    reference = validate(open_source(COMPANY).read(), date(2025, 12, 31))
    deals = pd.read_csv(company / "deals.csv", dtype=str, keep_default_na=False)
    typed = reference.tables["contracts"]
    (company / "deals.csv").unlink()
    deals.to_excel(company / "deals.xlsx", index=False)
    (company / "contracts.csv").unlink()
    typed.to_parquet(company / "contracts.parquet")
    raw = open_source(company).read()
    v = validate(raw, raw.as_of)
    assert v.quarantine.empty
    for name in ("deals", "contracts"):
        pd.testing.assert_frame_equal(v.tables[name], reference.tables[name])


# ---------------------------------------------------------------- DuckDB and fingerprints
def test_folder_and_varchar_duckdb_are_identical(company, tmp_path):
    db = write_duckdb(company, tmp_path / "company.duckdb", typed=False)
    a, b = open_source(company).read(), open_source(db).read()
    assert set(a.tables) == set(b.tables)
    for name in a.tables:
        pd.testing.assert_frame_equal(a.tables[name], b.tables[name])
    assert a.fingerprint == b.fingerprint and b.as_of == a.as_of
    assert b.locations["deals"].endswith("company.duckdb:deals")


def test_typed_duckdb_validates_identically_with_the_same_fingerprint(company, tmp_path):
    db = write_duckdb(company, tmp_path / "typed.duckdb", typed=True)
    a, b = open_source(company).read(), open_source(db).read()
    assert pd.api.types.is_datetime64_any_dtype(b.tables["deals"]["created_date"])
    assert a.fingerprint == b.fingerprint  # the fixture writes values canonically
    va, vb = validate(a, a.as_of), validate(b, b.as_of)
    assert vb.quarantine.empty
    for name in va.tables:
        pd.testing.assert_frame_equal(va.tables[name], vb.tables[name])


def test_fingerprint_ignores_file_times_but_not_contents(company):
    before = open_source(company).read().fingerprint
    (company / "deals.csv").touch()
    assert open_source(company).read().fingerprint == before
    text = (company / "deals.csv").read_text().replace("12000", "12001")
    (company / "deals.csv").write_text(text)
    assert open_source(company).read().fingerprint != before


def test_fingerprint_treats_empty_string_as_null():
    a = pd.DataFrame({"x": ["1", ""]})
    b = pd.DataFrame({"x": [1.0, None]})
    assert fingerprint({"t": a}) == fingerprint({"t": b})


def test_run_json_beside_a_duckdb_file(company, tmp_path):
    db = tmp_path / "x" / "c.duckdb"
    db.parent.mkdir()
    con = duckdb.connect(str(db))
    con.execute("CREATE TABLE reps AS SELECT 'R1' AS rep_id")
    con.close()
    (db.parent / "run.json").write_text(json.dumps({"as_of": "2024-06-30"}))
    assert DuckDBSource(db)._load()[2] == date(2024, 6, 30)


def test_reading_never_modifies_inputs(company, tmp_path):
    db = write_duckdb(company, tmp_path / "company.duckdb", typed=True)
    before = digest(tmp_path)
    for spec in (company, db):
        raw = open_source(spec).read()
        validate(raw, raw.as_of)
    assert digest(tmp_path) == before


# ---------------------------------------------------------------- specs
def test_postgres_url_with_password_is_refused_without_echo(monkeypatch):
    monkeypatch.delenv("KPISAT_PG_SCHEMA", raising=False)
    with pytest.raises(SourceError) as e:
        open_source("postgresql://ana:s3cret@db.example.com:5432/crm?sslmode=require")
    assert "s3cret" not in str(e.value) and "PGPASSWORD" in str(e.value)
    src = open_source("postgresql://ana@db.example.com:5432/crm?sslmode=require")
    assert isinstance(src, PostgresSource)
    assert src.describe() == "postgresql://ana@db.example.com:5432/crm?schema=public"


@pytest.mark.parametrize("spec, words", [
    ("mysql://x@y/z", "unsupported source scheme"),
    ("/no/such/folder", "does not exist"),
    ("/no/such/file.duckdb", "does not exist"),
])
def test_bad_specs(spec, words):
    with pytest.raises(SourceError, match=words):
        open_source(spec)


def test_folder_and_duckdb_specs(company, tmp_path):
    assert isinstance(open_source(company), FolderSource)
    assert isinstance(open_source(str(write_duckdb(company, tmp_path / "a.duckdb", typed=False))),
                      DuckDBSource)


# ---------------------------------------------------------------- the sample cache
def test_sample_is_built_once_and_rebuilt_when_its_files_change(company, tmp_path):
    cache = tmp_path / "cache"
    first = sample_source(company, cache)
    assert first.path.exists() and first.path.parent == cache
    raw = first.read()
    folder = open_source(company).read()
    assert raw.fingerprint == folder.fingerprint and raw.as_of == folder.as_of
    mtime = first.path.stat().st_mtime_ns
    assert sample_source(company, cache).path.stat().st_mtime_ns == mtime  # reused
    (company / "deals.csv").write_text((company / "deals.csv").read_text().replace("900", "901"))
    second = sample_source(company, cache)
    assert second.path != first.path and not first.path.exists()
    assert second.read().fingerprint != raw.fingerprint
    assert sorted(p.name for p in cache.iterdir()) == [second.path.name]  # no temp files left


def test_missing_sample_says_how_to_make_it(tmp_path):
    with pytest.raises(SourceError, match="kpisat sample"):
        sample_source(tmp_path / "nothing", tmp_path / "cache")


# ---------------------------------------------------------------- the Arrow CSV reader
CSV_SHAPES = {
    "plain": b"a,b\n1,2\n3,4\n",
    "crlf and no final newline": b"a,b\r\n1,2\r\n3,4",
    "empty and quoted cells": b'a,b\n,\n"",x\n" y ",z\n',
    "quoted newline and quote": b'a,b\n"x\ny",2\n"p""q",3\n',
    "quote inside a cell": b'a,b\nx"y,2\n"x"y,3\n',
    "blank lines": b"a,b\n1,2\n\n\n3,4\n",
    "line of spaces": b"a,b\n1,2\n   \n3,4\n",
    "one column with a line of spaces": b"a\n1\n \n2\n",
    "short row": b"a,b\n1\n2,3\n",
    "header only": b"a,b\n",
    "header without newline": b"a,b",
    "byte order mark": b"\xef\xbb\xbfa,b\n\xe4\xb8\xad,\xc3\xa9\n",
    "empty header name": b"a,\n1,2\n",
}


@pytest.mark.parametrize("shape", sorted(CSV_SHAPES))
def test_csv_cells_read_exactly_as_pandas_reads_them(tmp_path, shape):
    """The fast (Arrow) reader and its pandas fallback give the same cells on every shape."""
    from analysis.sources import read_table_file

    path = tmp_path / "deals.csv"
    path.write_bytes(CSV_SHAPES[shape])
    got = read_table_file(path)
    text = CSV_SHAPES[shape].decode("utf-8-sig")
    expected = pd.read_csv(io.StringIO(text), dtype=str, keep_default_na=False, na_values=[],
                           skip_blank_lines=True)
    assert list(got.columns) == list(expected.columns)
    assert got.astype(object).to_dict("list") == expected.astype(object).to_dict("list")
    assert all(str(t) == "string" for t in got.dtypes)  # Arrow-backed text either way
