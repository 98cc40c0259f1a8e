"""PostgreSQL as a source: same answers as the sample folder, and no password anywhere.

The server tests need a PostgreSQL server named by ``KPISAT_TEST_PG_URL`` (no password
in it) with its password in ``KPISAT_TEST_PG_PASSWORD``; CI starts a throwaway one
(``eval "$(.ci/postgres.sh start)"``) and both are set. Without them those tests skip.
The sample company is loaded into a schema of its own per test module, dropped at
the end, so concurrent sessions on one server do not meet.

The server password is random per CI run, so it doubles as the canary: it must occur
in no file a run writes, no log line and no error message.
"""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from analysis import pg
from analysis.errors import InputError, KpisatError, SourceError
from analysis.pg_load import load_folder
from analysis.prepare import prepare
from analysis.sources import PostgresSource, open_source

from conftest import PROJECT_ROOT, kpisat

PG_URL = os.environ.get("KPISAT_TEST_PG_URL", "")
PG_PASSWORD = os.environ.get("KPISAT_TEST_PG_PASSWORD", "")
QUARTER = "2025Q4"
#: Reading typed columns instead of CSV text must not move a digit; 1e-9 leaves room
#: only for summation order, not for a different value anywhere.
TOL = 1e-9

needs_pg = pytest.mark.skipif(
    not PG_URL, reason="KPISAT_TEST_PG_URL is not set: no PostgreSQL server to test against "
    "(CI starts one with .ci/postgres.sh; locally: eval \"$(.ci/postgres.sh start)\")")
server = [pytest.mark.postgres, needs_pg]


def with_server(test):
    """Mark ``test`` as needing the PostgreSQL server (skipped without one)."""
    for mark in server:
        test = mark(test)
    return test


def _url(schema: str | None = None, **replace: str) -> str:
    """The test server's URL, optionally with another port/database and a schema."""
    from urllib.parse import urlsplit, urlunsplit
    parts = urlsplit(PG_URL)
    netloc = parts.netloc
    if "port" in replace:
        netloc = f"{netloc.rpartition(':')[0]}:{replace['port']}"
    path = f"/{replace['dbname']}" if "dbname" in replace else parts.path
    return urlunsplit((parts.scheme, netloc, path, f"schema={schema}" if schema else "", ""))


def _one_line_without_password(message: str, secret: str = PG_PASSWORD) -> None:
    assert "\n" not in message.strip(), message
    assert secret not in message
    assert "Traceback" not in message


# ---------------------------------------------------------------- fixtures
@pytest.fixture(scope="module")
def pg_env():
    """The server password in PGPASSWORD (as a user would set it), nothing else set."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("PGPASSWORD", PG_PASSWORD)
        for name in (pg.PASSWORD_ENV, pg.SCHEMA_ENV):
            mp.delenv(name, raising=False)
        yield mp


@pytest.fixture(scope="module")
def schemas(pg_env, sample_dir):
    """The sample in ``<base>``; copies without ``surveys``, without ``deals.amount``, and
    with two deals closing on ``infinity`` (a date Python cannot hold)."""
    base = f"kpisat_t{os.getpid()}_{secrets.token_hex(3)}"
    names = {"sample": base, "no_table": base + "_notable", "no_column": base + "_nocolumn",
             "odd_dates": base + "_odddates"}
    t0 = time.perf_counter()
    load_folder(sample_dir, PG_URL, names["sample"])
    load_seconds = time.perf_counter() - t0
    with pg.connect(pg.parse_url(PG_URL), read_only=False) as con:
        _copy_schema(con, names["sample"], names["no_table"], skip="surveys")
        _copy_schema(con, names["sample"], names["no_column"])
        con.execute(f'ALTER TABLE "{names["no_column"]}".deals DROP COLUMN amount')
        _copy_schema(con, names["sample"], names["odd_dates"])
        con.execute(f'UPDATE "{names["odd_dates"]}".deals SET close_date = %s '
                    "WHERE deal_id IN ('D00001', 'D00002')", ["infinity"])
    yield {**names, "load_seconds": load_seconds}
    with pg.connect(pg.parse_url(PG_URL), read_only=False) as con:
        for name in names.values():
            con.execute(f'DROP SCHEMA IF EXISTS "{name}" CASCADE')


def _copy_schema(con, source: str, target: str, *, skip: str | None = None) -> None:
    con.execute(f'CREATE SCHEMA "{target}"')
    tables = [r[0] for r in con.execute(
        "SELECT tablename FROM pg_tables WHERE schemaname = %s", [source]).fetchall()]
    for t in tables:
        if t != skip:
            con.execute(f'CREATE TABLE "{target}"."{t}" AS TABLE "{source}"."{t}"')


def _runner_script(source: str, out: Path) -> list[str]:
    """``analysis.runner.run`` in a fresh interpreter, logging everything to stderr."""
    code = ("import logging, sys; logging.basicConfig(level=logging.DEBUG, stream=sys.stderr); "
            "from analysis.runner import run; "
            "print(run(source=sys.argv[1], quarter=sys.argv[2], out=sys.argv[3], progress=True))")
    return [sys.executable, "-c", code, source, QUARTER, str(out)]


@pytest.fixture(scope="module")
def two_runs(schemas, sample_dir, tmp_path_factory):
    """Full runs of QUARTER on the PostgreSQL schema and on the sample folder, in parallel."""
    root = tmp_path_factory.mktemp("pg_runs")
    env = {**os.environ, "PYTHONPATH": str(PROJECT_ROOT), "PYTHONHASHSEED": "0"}
    runs = {"pg": (_url(schemas["sample"]), root / "pg"),
            "folder": (str(sample_dir), root / "folder")}
    t0 = time.perf_counter()
    procs = {k: subprocess.Popen(_runner_script(src, out), cwd=PROJECT_ROOT, text=True,
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                 env=env if k == "pg" else {
                                     k2: v for k2, v in env.items() if k2 != "PGPASSWORD"})
             for k, (src, out) in runs.items()}
    results = {}
    for k, p in procs.items():
        stdout, stderr = p.communicate(timeout=1200)
        results[k] = subprocess.CompletedProcess(p.args, p.returncode, stdout, stderr)
    seconds = time.perf_counter() - t0
    for k, r in results.items():
        assert r.returncode == 0, f"{k} run failed:\n{r.stderr[-4000:]}"
    return {k: {"out": runs[k][1], "published": runs[k][1] / QUARTER, "result": results[k]}
            for k in runs} | {"seconds": seconds}


# ---------------------------------------------------------------- without a server
def test_url_with_password_is_refused_without_echo(monkeypatch):
    canary = "canary-" + secrets.token_hex(6)
    for url in (f"postgresql://kpisat:{canary}@127.0.0.1:5432/kpisat",
                f"postgres://kpisat:{canary}@db/kpisat?schema=x",
                f"postgresql://kpisat@db/kpisat?password={canary}"):
        with pytest.raises(SourceError) as err:
            open_source(url)
        message = str(err.value)
        _one_line_without_password(message, canary)
        assert "PGPASSWORD" in message
        with pytest.raises(KpisatError) as err:
            prepare(url, QUARTER, None)
        _one_line_without_password(str(err.value), canary)


def test_url_with_password_is_refused_by_the_cli():
    canary = "canary-" + secrets.token_hex(6)
    result = kpisat("validate", "--source", f"postgresql://kpisat:{canary}@127.0.0.1:1/kpisat")
    assert result.returncode != 0
    assert canary not in result.stdout + result.stderr
    assert "PGPASSWORD" in result.stderr
    _one_line_without_password(result.stderr, canary)


def test_schema_from_url_then_environment_then_public(monkeypatch):
    monkeypatch.delenv(pg.SCHEMA_ENV, raising=False)
    assert PostgresSource("postgresql://u@h:5432/d").schema == "public"
    monkeypatch.setenv(pg.SCHEMA_ENV, "from_env")
    assert PostgresSource("postgresql://u@h:5432/d").schema == "from_env"
    src = PostgresSource("postgresql://u@h:5432/d?schema=from_url&sslmode=prefer")
    assert src.schema == "from_url"
    assert src.describe() == "postgresql://u@h:5432/d?schema=from_url"
    assert "schema" not in pg.parse_url("postgresql://u@h/d?schema=s&sslmode=prefer").conninfo


def test_password_variable_named_but_unset(monkeypatch):
    monkeypatch.setenv(pg.PASSWORD_ENV, "KPISAT_TEST_NO_SUCH_VARIABLE")
    monkeypatch.delenv("KPISAT_TEST_NO_SUCH_VARIABLE", raising=False)
    with pytest.raises(SourceError, match="KPISAT_TEST_NO_SUCH_VARIABLE, which is not set"):
        pg.connect(pg.parse_url("postgresql://u@127.0.0.1:1/d"))


def test_sanitize_removes_secrets(monkeypatch):
    monkeypatch.setenv("PGPASSWORD", "s3cr3t-value")
    text = ("connection failed: host=h password='a b' user=u\n\tmore; "
            "postgresql://u:pw@h/d s3cr3t-value")
    line = pg.sanitize(text)
    assert "a b" not in line and "\n" not in line
    assert pg.sanitize("x postgresql://u:pw@h/d s3cr3t-value") == "x postgresql://u@h/d ***"


# ---------------------------------------------------------------- with a server
@with_server
@pytest.mark.parametrize("quarter", [QUARTER, "2024Q3"])
def test_prepare_matches_the_sample_folder(schemas, sample_dir, quarter, tmp_path, monkeypatch):
    """Validated in PostgreSQL, derived there: the same tables, quarantine and counts."""
    from analysis.warehouse import SHIPPED

    monkeypatch.setenv("KPISAT_PREPARED_CACHE", str(tmp_path / "cache"))
    t0 = time.perf_counter()
    from_pg = prepare(_url(schemas["sample"]), quarter, "2025-12-31")
    pg_seconds = time.perf_counter() - t0
    from_folder = prepare(str(sample_dir), quarter, None)
    print(f"load {schemas['load_seconds']:.2f}s, prepare from PostgreSQL {pg_seconds:.2f}s")
    assert from_pg.as_of == from_folder.as_of == "2025-12-31"  # from kpisat_meta / run.json
    assert from_pg.quarter == quarter
    # the tables the models read row by row come back; deals, complaints, invoices and
    # activities stay in the database
    assert set(from_pg.tables) == set(SHIPPED) < set(from_folder.tables)
    for name in from_pg.tables:
        pd.testing.assert_frame_equal(from_pg.tables[name], from_folder.tables[name],
                                      check_exact=False, rtol=TOL, atol=TOL, obj=name)
    assert set(from_pg.derived) == set(from_folder.derived)
    for name in from_folder.derived:
        pd.testing.assert_frame_equal(from_pg.derived[name], from_folder.derived[name],
                                      check_exact=False, rtol=TOL, atol=TOL, obj=name)
    pd.testing.assert_frame_equal(from_pg.validated.quarantine, from_folder.validated.quarantine)
    assert from_pg.validated.data_quality() == from_folder.validated.data_quality()
    assert from_pg.source_description == _url(schemas["sample"])
    assert PG_PASSWORD not in from_pg.source_description
    again = prepare(_url(schemas["sample"]), quarter, None)  # found in the cache
    assert again.location == from_pg.location and again.fingerprint == from_pg.fingerprint


@with_server
def test_read_keeps_database_types(schemas):
    raw = open_source(_url(schemas["sample"])).read()
    deals, surveys = raw.tables["deals"], raw.tables["surveys"]
    assert str(deals["created_date"].dtype) == "datetime64[ns]"
    assert deals["amount"].dtype == float and deals["is_new_business"].dtype == bool
    assert str(surveys["csat"].dtype) == "Int64"
    from urllib.parse import urlsplit
    host = urlsplit(PG_URL).hostname
    assert raw.locations["deals"].startswith(f"{schemas['sample']}.deals at {host}:")


@with_server
def test_dates_python_cannot_hold_are_quarantined(schemas):
    from analysis.validate import validate
    raw = open_source(_url(schemas["odd_dates"])).read()
    validated = validate(raw, raw.as_of)
    q = validated.quarantine
    rows = q[(q["table"] == "deals") & (q["column"] == "close_date")]
    assert len(rows) == 2 and set(rows["reason"]) == {"not a date"}, rows


def _findings_equal(a, b, path="findings"):
    """Equal JSON values, numbers to TOL."""
    if isinstance(a, dict) and isinstance(b, dict):
        assert a.keys() == b.keys(), path
        for k in a:
            _findings_equal(a[k], b[k], f"{path}.{k}")
    elif isinstance(a, list) and isinstance(b, list):
        assert len(a) == len(b), path
        for i, (x, y) in enumerate(zip(a, b)):
            _findings_equal(x, y, f"{path}[{i}]")
    elif isinstance(a, float) or isinstance(b, float):
        assert a == pytest.approx(b, rel=TOL, abs=TOL), path
    else:
        assert a == b, path


@with_server
def test_full_run_matches_the_sample_folder_and_leaks_no_password(two_runs, schemas):
    # one test, so that pytest-xdist never runs the two full runs twice
    print(f"two full runs in parallel: {two_runs['seconds']:.0f}s")
    published = two_runs["pg"]["published"]
    pg_findings = json.loads((published / "findings.json").read_text())
    folder_findings = json.loads((two_runs["folder"]["published"] / "findings.json").read_text())
    assert pg_findings["effects"], "the run reported no effects"
    _findings_equal(pg_findings, folder_findings)
    manifest = json.loads((published / "manifest.json").read_text())
    assert manifest["parameters"]["source"] == _url(schemas["sample"])
    assert manifest["source_description"] == _url(schemas["sample"])

    canary = PG_PASSWORD.encode()
    assert len(canary) >= 8
    files = [p for p in two_runs["pg"]["out"].rglob("*") if p.is_file()]
    assert len(files) > 10 and any(p.suffix == ".html" for p in files)
    leaks = [str(p) for p in files if canary in p.read_bytes()]
    assert not leaks, f"password found in {leaks}"
    result = two_runs["pg"]["result"]
    assert "analysis.pg" in result.stderr  # DEBUG logging did reach the captured stderr
    assert PG_PASSWORD not in result.stdout + result.stderr


# ---------------------------------------------------------------- failures, one line each
@with_server
@pytest.mark.parametrize("case, expect", [
    ("wrong_port", "connection refused"),
    ("wrong_password", "authentication failed"),
    ("missing_database", "database 'kpisat_no_such_db' does not exist"),
])
def test_connection_failures_are_one_line(case, expect, pg_env, monkeypatch):
    url = {"wrong_port": _url(port="1"), "wrong_password": _url(),
           "missing_database": _url(dbname="kpisat_no_such_db")}[case]
    if case == "wrong_password":
        monkeypatch.setenv("PGPASSWORD", PG_PASSWORD + "-wrong")
    with pytest.raises(SourceError) as err:
        open_source(url).read()
    message = str(err.value)
    assert expect in message
    assert message.startswith("cannot connect to PostgreSQL at ")
    _one_line_without_password(message)
    _one_line_without_password(message, PG_PASSWORD + "-wrong")


@with_server
def test_password_from_a_named_variable(schemas, monkeypatch):
    monkeypatch.delenv("PGPASSWORD", raising=False)
    monkeypatch.setenv("PGPASSFILE", "/nonexistent/kpisat-test-pgpass")
    monkeypatch.setenv(pg.PASSWORD_ENV, "KPISAT_TEST_WAREHOUSE_PW")
    monkeypatch.setenv("KPISAT_TEST_WAREHOUSE_PW", PG_PASSWORD)
    raw = open_source(_url(schemas["sample"])).read()
    assert raw.as_of.isoformat() == "2025-12-31"
    monkeypatch.delenv(pg.PASSWORD_ENV)
    with pytest.raises(SourceError, match="authentication failed") as err:
        open_source(_url(schemas["sample"])).read()
    _one_line_without_password(str(err.value))


@with_server
def test_password_from_pgpass(schemas, monkeypatch, tmp_path):
    from urllib.parse import urlsplit
    parts = urlsplit(PG_URL)
    pgpass = tmp_path / "pgpass"
    pgpass.write_text(f"{parts.hostname}:{parts.port}:*:{parts.username}:{PG_PASSWORD}\n")
    pgpass.chmod(0o600)
    monkeypatch.delenv("PGPASSWORD", raising=False)
    monkeypatch.setenv("PGPASSFILE", str(pgpass))
    assert open_source(_url(schemas["sample"])).read().as_of.isoformat() == "2025-12-31"


@with_server
def test_missing_table_names_schema_and_table(schemas):
    with pytest.raises(InputError) as err:
        open_source(_url(schemas["no_table"])).read()
    message = str(err.value)
    assert f"{schemas['no_table']}.surveys" in message
    assert "required table 'surveys' is missing" in message
    _one_line_without_password(message)


@with_server
def test_missing_column_names_table_and_column(schemas):
    with pytest.raises(InputError) as err:
        prepare(_url(schemas["no_column"]), QUARTER, None)
    message = str(err.value)
    assert f"{schemas['no_column']}.deals" in message and "'amount'" in message
    _one_line_without_password(message)


@with_server
def test_missing_or_empty_schema(schemas, pg_env):
    with pytest.raises(InputError, match="schema 'kpisat_no_such_schema' does not exist") as err:
        open_source(_url("kpisat_no_such_schema")).read()
    _one_line_without_password(str(err.value))
    with pytest.raises(InputError, match="holds none of the required tables") as err:
        open_source(_url("pg_catalog")).read()
    assert "?schema=" in str(err.value)  # points at the schemas that have the tables


@with_server
def test_cli_reports_a_wrong_password_in_one_line(schemas):
    env = {"PGPASSWORD": PG_PASSWORD + "-wrong"}
    result = subprocess.run(
        [sys.executable, "-m", "analysis.cli", "validate", "--source", _url(schemas["sample"])],
        cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=120,
        env={**os.environ, "PYTHONPATH": str(PROJECT_ROOT), **env})
    assert result.returncode != 0
    assert "authentication failed" in result.stderr
    lines = [ln for ln in result.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1, result.stderr
    assert PG_PASSWORD not in result.stdout + result.stderr


@with_server
def test_load_refuses_a_bad_cell_naming_file_row_and_column(pg_env, tmp_path, sample_dir):
    folder = tmp_path / "bad"
    folder.mkdir()
    lines = (sample_dir / "deals.csv").read_text().splitlines()
    lines[3] = lines[3].replace(lines[3].split(",")[3], "n/a")  # created_date of data row 3
    (folder / "deals.csv").write_text("\n".join(lines) + "\n")
    with pytest.raises(InputError) as err:
        load_folder(folder, PG_URL, f"kpisat_bad_{secrets.token_hex(3)}")
    message = str(err.value)
    assert "deals.csv" in message and "row 3" in message and "'created_date'" in message
