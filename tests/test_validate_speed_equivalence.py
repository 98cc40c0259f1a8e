"""The fast paths of parsing and validation give what the general paths give.

Arrow text is parsed once per distinct cell, ids in increasing order skip hashing, and
pandera checks one representative row per distinct value; each must agree cell for
cell with the row-by-row path on messy input.
"""

from __future__ import annotations

from collections import Counter

import numpy as np
import pandas as pd
import pytest
from pandas.testing import assert_series_equal

from analysis.contract import TABLES
from analysis.parse import parse_column
from analysis.quarantine import RowVerdicts
from analysis.validate import _check_columns, _check_table, contract_schema

MESSY = ["", "  ", "abc", "2023-13-45", "2023-02-30", "3000-01-01", "1985-05-05", "2024-03-31",
         " 2024-03-31 ", "-5", "7", "3.5", "1e3", " 4 ", "NaN", "inf", "TRUE", " won ", "won",
         "lost", "x\u00a0", "0", "1", "R1", "R1 ", None]


def _messy(n: int, seed: int) -> pd.Series:
    values = np.random.default_rng(seed).choice(np.array(MESSY, dtype=object), size=n)
    return pd.Series(values, dtype=object)


@pytest.mark.parametrize("table", ["deals", "surveys", "invoices"])
def test_arrow_text_parses_like_object_text(table):
    for i, col in enumerate(TABLES[table].columns):
        obj = _messy(500, seed=i)
        fast = parse_column(obj.astype("string[pyarrow]"), col)
        slow = parse_column(obj, col)
        assert_series_equal(fast.values, slow.values, check_exact=True)
        for mask in ("null", "bad", "out_of_range"):
            np.testing.assert_array_equal(getattr(fast, mask), getattr(slow, mask), err_msg=mask)


def _deals(ids: list[str]) -> pd.DataFrame:
    n = len(ids)
    frame = pd.DataFrame({
        "deal_id": ids, "customer_id": ["C1"] * n, "rep_id": ["R1"] * n,
        "created_date": ["2024-01-0" + str(1 + i % 9) for i in range(n)],
        "close_date": [""] * n, "status": ["open", "lost", "won ", "open"] * (n // 4),
        "amount": [str(i % 7 - 1) for i in range(n)], "is_new_business": ["true"] * n})
    return frame.astype("string[pyarrow]")


def test_duplicate_ids_found_in_any_order():
    ids = [f"D{i:04d}" for i in range(40)]
    ids[7], ids[30], ids[31] = "", "D0003", "D0005"  # a missing id and two repeats
    shuffled = np.random.default_rng(1).permutation(40)
    frame = _deals(ids)
    frame.iloc[31] = frame.iloc[5]  # an identical copy
    results = []
    for order in (np.arange(40), shuffled):  # increasing ids, then hashed ones
        rows = frame.iloc[order].reset_index(drop=True)
        _, verdicts, _ = _check_table(TABLES["deals"], rows, pd.Timestamp("2025-12-31"), {})
        # which of two identical copies is kept follows row order: compare by id
        results.append(Counter(zip(rows["deal_id"], verdicts.reason)))
    assert results[0] == results[1]
    assert {r for _, r in results[0]} >= {"missing id", "conflicting duplicate id",
                                          "duplicate row"}


def test_pandera_on_representatives_marks_what_pandera_on_all_rows_marks():
    table = TABLES["surveys"]
    frame = pd.DataFrame({c.name: _messy(400, seed=10 + i) for i, c in enumerate(table.columns)})
    frame = frame.astype("string[pyarrow]")
    as_of = pd.Timestamp("2025-06-30")
    parsed = {c.name: parse_column(frame[c.name], c) for c in table.columns}
    typed = pd.DataFrame({n: p.values for n, p in parsed.items()})
    verdicts = RowVerdicts(len(typed))
    _check_columns(table, list(table.columns), typed, as_of, verdicts, parsed)

    schema = contract_schema(table, list(typed.columns), as_of)
    with pytest.raises(Exception) as failed:
        schema.validate(typed, lazy=True)
    fc = failed.value.failure_cases
    expected = set()
    for col, check, number, row in zip(fc["column"], fc["check"], fc["check_number"], fc["index"]):
        reason = ("missing value" if check == "not_nullable"
                  else schema.columns[col].checks[int(number)].name)
        expected.add((int(row), reason))
    marked = {(int(i), verdicts.reason[i]) for i in np.flatnonzero(~verdicts.alive)}
    assert marked, "the messy table fails some checks"
    assert marked <= expected  # every mark is a failure pandera reports on the whole table
    assert {row for row, _ in expected} == {row for row, _ in marked}  # and every failing row
