"""A corpus of bad inputs: each is a quarantine with a reason, or one helpful error line.

Every case starts from a private copy of ``tests/fixtures/company`` and breaks one
thing. File-level defects must stop ``kpisat validate`` with exit code 2 and exactly
one line on stderr naming the file (no traceback); row-level defects must quarantine
the row with its reason and column while every table's counts still add up
(rows_read == rows_used + rows_quarantined). Inputs are never modified, even by a
run that fails. Model-level cases live in test_model_edge_cases.py.
"""

from __future__ import annotations

import shutil
import stat
from datetime import date
from pathlib import Path

import pandas as pd
import pytest

from analysis import config
from analysis.errors import InputError, KpisatError
from analysis.sources import open_source
from analysis.validate import validate
from conftest import kpisat, tree_digest

COMPANY = Path(__file__).parent / "fixtures" / "company"
AS_OF = date(2025, 12, 31)


@pytest.fixture
def company(tmp_path) -> Path:
    return Path(shutil.copytree(COMPANY, tmp_path / "company"))


def read(folder: Path, table: str) -> pd.DataFrame:
    return pd.read_csv(folder / f"{table}.csv", dtype=str, keep_default_na=False)


def write(folder: Path, table: str, df: pd.DataFrame) -> None:
    df.to_csv(folder / f"{table}.csv", index=False)


def append(folder: Path, table: str, text: bytes) -> None:
    with open(folder / f"{table}.csv", "ab") as f:
        f.write(text)


def to_excel(folder: Path, table: str) -> None:
    read(folder, table).to_excel(folder / f"{table}.xlsx", index=False)


# ---------------------------------------------------------------- file level
def _drop_column(f: Path) -> None:
    write(f, "deals", read(f, "deals").drop(columns="amount"))


FILE_CASES = {
    # id: (break the folder, the file named in the message, words in the message)
    "empty file": (lambda f: (f / "deals.csv").write_bytes(b""), "deals.csv", "empty"),
    "blank lines only": (lambda f: (f / "deals.csv").write_bytes(b"\n \n"), "deals.csv", "empty"),
    "semicolon delimiter": (lambda f: (f / "deals.csv").write_text(
        (f / "deals.csv").read_text().replace(",", ";")), "deals.csv", "semicolons"),
    "tab delimiter": (lambda f: (f / "deals.csv").write_text(
        (f / "deals.csv").read_text().replace(",", "\t")), "deals.csv", "tabs"),
    "undecodable bytes": (lambda f: append(f, "deals", b"D9,C1,R1,2024-01-01,,open,\xff\xfe,true\n"),
                          "deals.csv", "UTF-8 (byte"),
    "latin-1 file": (lambda f: (f / "customers.csv").write_bytes(
        (f / "customers.csv").read_text().replace("North", "Nörth").encode("latin-1")),
                     "customers.csv", "UTF-8"),
    "utf-16 file": (lambda f: (f / "reps.csv").write_bytes(
        (f / "reps.csv").read_text().encode("utf-16")), "reps.csv", "UTF-8"),
    "NUL byte in a cell": (lambda f: append(f, "deals", b"D9,C1,R1,2024-01-01,,open,1\x000,true\n"),
                           "deals.csv", "NUL byte (line 10)"),
    "carriage-return line endings": (lambda f: (f / "reps.csv").write_bytes(
        (f / "reps.csv").read_bytes().replace(b"\r\n", b"\n").replace(b"\n", b"\r")),
                                     "reps.csv", "line endings"),
    "duplicate headers": (lambda f: (f / "deals.csv").write_text(
        (f / "deals.csv").read_text().replace("is_new_business", "amount", 1)),
                          "deals.csv", "duplicate column headers"),
    "missing table": (lambda f: (f / "deals.csv").unlink(), "deals.csv",
                      "required table 'deals' is missing"),
    "missing column": (_drop_column, "deals.csv", "column 'amount': required column is missing"),
    "too many fields": (lambda f: append(f, "deals", b"D9,C1,R1,2024-01-01,,open,1,true,x\n"),
                        "deals.csv", "Expected 8 fields in line 10"),
    "unclosed quote": (lambda f: append(f, "deals", b'D9,"C1,R1,2024-01-01,,open,1,true\n'),
                       "deals.csv", "cannot be parsed as CSV"),
    "unreadable xlsx": (lambda f: ((f / "surveys.csv").unlink(),
                                   (f / "surveys.xlsx").write_bytes(b"PK not really")),
                        "surveys.xlsx", "Excel workbook"),
    "unreadable parquet": (lambda f: ((f / "surveys.csv").unlink(),
                                      (f / "surveys.parquet").write_bytes(b"PAR1 nope")),
                           "surveys.parquet", "Parquet"),
    "two formats for one table": (lambda f: to_excel(f, "surveys"), "company",
                                  "'surveys' is given in 2 formats"),
    "run.json not JSON": (lambda f: (f / "run.json").write_text("{as_of: 2025}"),
                          "run.json", "not valid JSON"),
    "run.json as_of not a date": (lambda f: (f / "run.json").write_text('{"as_of": "31/12/2025"}'),
                                  "run.json", "is not a date"),
}


def run_cli(monkeypatch, capsys, *args: str) -> tuple[int, str, str]:
    """``kpisat ARGS`` in this process (fast); logging left to pytest."""
    from analysis import cli
    monkeypatch.setattr(cli, "configure_logging", lambda **kw: None)
    code = cli.main(list(args))
    out = capsys.readouterr()
    return code, out.out, out.err


def assert_one_line_error(code: int, stderr: str, file: str, words: str) -> None:
    lines = stderr.strip().splitlines()
    assert code == 2, stderr
    assert len(lines) == 1, stderr
    assert "Traceback" not in stderr
    assert lines[0].startswith("kpisat: error: ") and file in lines[0] and words in lines[0], lines
    assert " — " in lines[0], "the message says what to do"


@pytest.mark.parametrize("case", FILE_CASES)
def test_file_level_defect_is_one_line_naming_the_file(company, monkeypatch, capsys, case):
    breaks, file, words = FILE_CASES[case]
    breaks(company)
    before = tree_digest(company)
    code, _, err = run_cli(monkeypatch, capsys, "validate", "--source", str(company), "-q")
    assert_one_line_error(code, err, file, words)
    assert tree_digest(company) == before


@pytest.mark.parametrize("case", ["empty file", "semicolon delimiter", "missing column"])
def test_file_level_defect_through_the_real_command(company, case):
    """The same in a fresh interpreter: exit code 2, one stderr line, no traceback."""
    breaks, file, words = FILE_CASES[case]
    breaks(company)
    before = tree_digest(company)
    result = kpisat("validate", "--source", str(company), "-q")
    assert_one_line_error(result.returncode, result.stderr, file, words)
    assert tree_digest(company) == before


@pytest.mark.parametrize("args, words", [
    (["--as-of", "31.12.2025"], "as_of '31.12.2025' is not a date"),
    (["--source", "/nonexistent/folder"], "does not exist"),
])
def test_bad_options_are_one_line(company, monkeypatch, capsys, args, words):
    args = args if "--source" in args else ["--source", str(company), *args]
    code, _, err = run_cli(monkeypatch, capsys, "validate", *args, "-q")
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 1 and words in lines[0], err


def test_header_only_and_crlf_files_are_fine(company):
    (company / "complaints.csv").write_text(
        (COMPANY / "complaints.csv").read_text().splitlines()[0] + "\n")
    (company / "deals.csv").write_bytes((COMPANY / "deals.csv").read_bytes().replace(b"\n", b"\r\n"))
    v = validate(open_source(company).read(), AS_OF)
    assert v.rows_read["complaints"] == 0 and v.rows_used["deals"] == 8
    assert len(v.quarantine) == 0


def test_input_error_carries_file_column_and_hint(company):
    _drop_column(company)
    with pytest.raises(InputError) as e:
        open_source(company).read()
    assert e.value.file.endswith("deals.csv") and e.value.column == "amount" and e.value.hint


# ---------------------------------------------------------------- row level
def setv(row: int, **values):
    """Set cells of 0-based data row ``row``."""
    def f(df):
        for k, v in values.items():
            df.loc[row, k] = v
        return df
    return f


def dup(row: int, **values):
    """Append a copy of row ``row`` (changed by ``values``)."""
    def f(df):
        extra = df.loc[[row]].copy()
        for k, v in values.items():
            extra[k] = v
        return pd.concat([df, extra], ignore_index=True)
    return f


#: id: (table, change, quarantined (table, 1-based row, id, column, reason))
ROW_CASES = {
    "amount not a number": ("deals", setv(1, amount="twelve"), ("deals", 2, "D2", "amount", "not a number")),
    "amount NaN": ("deals", setv(1, amount="NaN"), ("deals", 2, "D2", "amount", "not a number")),
    "amount inf": ("deals", setv(1, amount="inf"), ("deals", 2, "D2", "amount", "not a number")),
    "thousands separator": ("deals", setv(1, amount="50,000"), ("deals", 2, "D2", "amount", "not a number")),
    "date not ISO": ("deals", setv(1, created_date="31/12/2022"),
                     ("deals", 2, "D2", "created_date", "not a date")),
    "date with time": ("deals", setv(1, created_date="2022-12-01T10:00:00"),
                       ("deals", 2, "D2", "created_date", "not a date")),
    "Excel serial date": ("deals", setv(1, created_date="44927"),
                          ("deals", 2, "D2", "created_date", "not a date")),
    "impossible date": ("contracts", setv(0, end_date="2023-02-30"),
                        ("contracts", 1, "K1", "end_date", "not a date")),
    "date beyond datetime64": ("reps", setv(1, exit_date="9999-12-31"),
                               ("reps", 2, "R2", "exit_date", "date out of range")),
    "bool not true/false": ("deals", setv(1, is_new_business="yes"),
                            ("deals", 2, "D2", "is_new_business", "not a boolean")),
    "csat out of range": ("surveys", setv(0, csat="7"), ("surveys", 1, "S1", "csat", "out of range")),
    "csat not an integer": ("surveys", setv(0, csat="4.5"), ("surveys", 1, "S1", "csat", "not an integer")),
    "nps out of range": ("surveys", setv(0, nps="11"), ("surveys", 1, "S1", "nps", "out of range")),
    "severity out of range": ("complaints", setv(0, severity="0"),
                              ("complaints", 1, "M1", "severity", "out of range")),
    "weight out of range": ("kpi_plans", setv(0, w_revenue="1.2", w_new_customers="-0.4"),
                            ("kpi_plans", 1, "P1", "w_revenue", "out of range")),
    "negative amount": ("deals", setv(1, amount="-5"), ("deals", 2, "D2", "amount", "out of range")),
    "negative annual value": ("contracts", setv(1, annual_value="-5"),
                              ("contracts", 2, "K2", "annual_value", "out of range")),
    "negative paid amount": ("invoices", setv(0, paid_amount="-1"),
                             ("invoices", 1, "I1", "paid_amount", "out of range")),
    "event date after as_of": ("complaints", setv(0, created_date="2026-03-01"),
                               ("complaints", 1, "M1", "created_date", "future-dated")),
    "close date after as_of": ("deals", setv(1, close_date="2026-01-05"),
                               ("deals", 2, "D2", "close_date", "future-dated")),
    "date before 1990": ("surveys", setv(1, sent_date="1989-12-31"),
                         ("surveys", 2, "S2", "sent_date", "date before 1990-01-01")),
    "close before create": ("deals", setv(1, close_date="2022-11-01"),
                            ("deals", 2, "D2", "close_date", "close_date before created_date")),
    "end before start": ("contracts", setv(0, end_date="2022-05-01"),
                         ("contracts", 1, "K1", "end_date", "end_date before start_date")),
    "response before send": ("surveys", setv(0, responded_date="2023-05-01"),
                             ("surveys", 1, "S1", "responded_date", "responded_date before sent_date")),
    "won deal without close": ("deals", setv(1, close_date=""),
                               ("deals", 2, "D2", "close_date", "won deal without close_date")),
    "answer without response date": ("surveys", setv(0, responded_date=""),
                                     ("surveys", 1, "S1", "responded_date",
                                      "csat/nps without responded_date")),
    "missing id": ("deals", setv(1, deal_id=" "), ("deals", 2, None, "deal_id", "missing id")),
    "missing required value": ("customers", setv(0, segment=""),
                               ("customers", 1, "C1", "segment", "missing value")),
    "short row": ("deals", lambda df: df, None),  # handled below (needs raw bytes)
    "duplicate id identical": ("deals", dup(2), ("deals", 9, "D3", "deal_id", "duplicate row")),
    "duplicate id conflicting": ("deals", dup(2, amount="1"),
                                 ("deals", 3, "D3", "deal_id", "conflicting duplicate id")),
    "duplicate assignment row": ("plan_assignments", dup(1),
                                 ("plan_assignments", 5, "T1/P2/2024-07-01", None, "duplicate row")),
    "orphan customer in contract": ("contracts", setv(3, customer_id="C99"),
                                    ("contracts", 4, "K4", "customer_id", "unknown customer")),
    "orphan rep in survey": ("surveys", setv(0, rep_id="R99"),
                             ("surveys", 1, "S1", "rep_id", "unknown rep")),
    "orphan plan in assignment": ("plan_assignments", setv(0, plan_id="P9"),
                                  ("plan_assignments", 1, "T1/P9/2022-01-01", "plan_id", "unknown plan")),
    "unknown team in assignment": ("plan_assignments", setv(3, team_id="T9"),
                                   ("plan_assignments", 4, "T9/P2/2025-01-01", "team_id", "unknown team")),
    "unknown status": ("deals", setv(1, status="Won"), ("deals", 2, "D2", "status", "not an allowed value")),
    "unknown contract outcome": ("contracts", setv(0, outcome="lapsed"),
                                 ("contracts", 1, "K1", "outcome", "not an allowed value")),
    "unknown activity type": ("activities", setv(0, type="lunch"),
                              ("activities", 1, "A1", "type", "not an allowed value")),
    "unknown satisfaction scope": ("kpi_plans", setv(1, satisfaction_scope="company"),
                                   ("kpi_plans", 2, "P2", "satisfaction_scope", "not an allowed value")),
    "weights not summing to 1": ("kpi_plans", setv(0, w_revenue="0.7"),
                                 ("kpi_plans", 1, "P1", "w_revenue", "weights do not sum to 1")),
    "overlapping plan assignments": ("plan_assignments", setv(0, valid_to="2024-12-31"),
                                     ("plan_assignments", 2, "T1/P2/2024-07-01", "valid_from",
                                      "overlapping plan assignment")),
    "won deal with unknown customer": ("deals", setv(1, customer_id="C77"),
                                       ("deals", 2, "D2", "customer_id", "unknown customer")),
    "quarantined parent cascades": ("reps", setv(3, hire_date="bad"),
                                    ("customers", 4, "C4", "acquiring_rep_id", "rep quarantined")),
}
del ROW_CASES["short row"]


def assert_counts_add_up(v, folder: Path) -> None:
    for table, n in v.rows_read.items():
        assert n == v.rows_used[table] + v.rows_quarantined[table], table
        assert n == len(read(folder, table)), table  # every row read is accounted for
        assert v.rows_quarantined[table] == int((v.quarantine["table"] == table).sum())
        assert v.rows_used[table] == len(v.tables[table])
    dq = v.data_quality()
    assert sum(sum(by.values()) for by in dq["by_reason"].values()) == len(v.quarantine)


@pytest.mark.parametrize("case", ROW_CASES)
def test_row_level_defect_is_quarantined_with_its_reason(company, case):
    table, change, (q_table, row, row_id, column, reason) = ROW_CASES[case]
    write(company, table, change(read(company, table)))
    before = tree_digest(company)
    v = validate(open_source(company).read(), AS_OF)
    hit = v.quarantine[(v.quarantine["table"] == q_table) & (v.quarantine["row"] == row)]
    assert len(hit) == 1, v.quarantine
    got = hit.iloc[0]
    assert got["reason"] == reason and (column is None or got["column"] == column), got.to_dict()
    assert (got["id"] if pd.notna(got["id"]) else None) == row_id
    assert_counts_add_up(v, company)
    assert tree_digest(company) == before


def test_short_row_is_quarantined_not_shifted(company):
    append(company, "deals", b"D9,C1,R1,2024-01-01\n")
    v = validate(open_source(company).read(), AS_OF)
    q = v.quarantine[v.quarantine["id"] == "D9"]
    assert q["reason"].tolist() == ["missing value"] and q["column"].tolist() == ["status"]
    assert_counts_add_up(v, company)


def test_lost_deal_may_name_a_prospect(company):
    write(company, "deals", setv(4, customer_id="PROSPECT-1")(read(company, "deals")))
    v = validate(open_source(company).read(), AS_OF)
    assert len(v.quarantine) == 0


def test_quarantine_is_reported_by_the_cli_with_exit_0(company, tmp_path, monkeypatch, capsys):
    write(company, "deals", setv(1, amount="-5")(read(company, "deals")))
    out = tmp_path / "q.csv"
    code, stdout, err = run_cli(monkeypatch, capsys, "validate", "--source", str(company),
                                "--quarantine", str(out), "-q")
    assert code == 0, err
    assert "deals: out of range: 1" in stdout
    q = pd.read_csv(out, dtype=str)
    assert q[["table", "row", "id", "column", "raw_value", "reason"]].values.tolist() == [
        ["deals", "2", "D2", "amount", "-5", "out of range"]]


# ---------------------------------------------------------------- inputs are read-only
@pytest.mark.parametrize("case", ["clean", "row defect", "file defect"])
def test_inputs_are_never_modified_by_validate_or_prepare(company, tmp_path, monkeypatch, case):
    """Hash every input file before and after; also with the folder made read-only."""
    monkeypatch.setattr(config, "CACHE_DIR", tmp_path / "cache")
    if case == "row defect":
        write(company, "deals", setv(1, amount="-5", status="Won")(read(company, "deals")))
    if case == "file defect":
        (company / "surveys.csv").write_bytes(b"survey_id;customer_id\n")
    before = tree_digest(company)
    modes = {p: p.stat().st_mode for p in [company, *company.iterdir()]}
    for p in company.iterdir():
        p.chmod(stat.S_IRUSR | stat.S_IRGRP)
    company.chmod(stat.S_IRUSR | stat.S_IXUSR)
    try:
        from analysis.prepare import prepare
        if case == "file defect":
            with pytest.raises(KpisatError):
                validate(open_source(company).read(), AS_OF)
            with pytest.raises(KpisatError):
                prepare(str(company), "2025Q4", "2025-12-31", fresh=True)
        else:
            validate(open_source(company).read(), AS_OF)
            p = prepare(str(company), "2025Q4", "2025-12-31", fresh=True)
            assert p.validated.quality["rows_read"]["deals"] == 8
    finally:
        for p, m in modes.items():
            p.chmod(m)
    assert tree_digest(company) == before
    assert sorted(x.name for x in company.iterdir()) == sorted(before)
