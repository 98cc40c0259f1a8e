"""Parsers and readers of the CRM importer, one test per kind of real-export dirt."""

from __future__ import annotations

from datetime import date, datetime

import openpyxl
import pytest

from analysis.errors import InputError
from analysis.importers.parsers import (AmbiguousDateError, ParseError, parse_amount, parse_bool,
                                        parse_date, parse_id, parse_int, salesforce_id18)
from analysis.importers.readers import Formula, read_table


# ------------------------------------------------------------------------- amounts

@pytest.mark.parametrize("raw, expected", [
    ("¥1,234.50", 1234.5),
    ("￥1,234.50", 1234.5),           # full-width yen sign
    ("$1,234", 1234.0),
    ("USD 1,234.00", 1234.0),          # Salesforce multi-currency report
    ("1.2万", 12000.0),
    ("3亿", 300000000.0),
    ("(1,000)", -1000.0),              # accounting negative
    ("-¥50", -50.0),
    ("１２３", 123.0),                  # full-width digits
    ("￥１２，３４５．００", 12345.0),
    ("1 234 元", 1234.0),
    (1234.5, 1234.5),                  # a spreadsheet number
    ("", None), ("  ", None), (None, None), ("-", None),
])
def test_amounts(raw, expected):
    assert parse_amount(raw) == expected


def test_amount_with_decimal_comma():
    assert parse_amount("1.234,50 €", decimal=",") == 1234.5


@pytest.mark.parametrize("raw", ["面议", "$1,2O0.00", "12.3.4", "1,234.5.0", True])
def test_amount_rejects_text(raw):
    with pytest.raises(ParseError, match="not an amount"):
        parse_amount(raw)


def test_whole_numbers():
    assert parse_int("４") == 4 and parse_int("9.0") == 9 and parse_int(7) == 7 and parse_int("") is None
    with pytest.raises(ParseError, match="whole number"):
        parse_int("4.5")


# --------------------------------------------------------------------------- dates

@pytest.mark.parametrize("raw, expected", [
    ("2024/3/5", date(2024, 3, 5)),
    ("2024年3月5日", date(2024, 3, 5)),
    ("2024.03.05", date(2024, 3, 5)),
    ("2024-03-05", date(2024, 3, 5)),
    ("2024-03-05T10:00:00.000+0000", date(2024, 3, 5)),
    ("2024-03-05 23:10:00", date(2024, 3, 5)),
    ("20240305", date(2024, 3, 5)),
    ("２０２４/３/５", date(2024, 3, 5)),
    ("13/05/2024", date(2024, 5, 13)),     # unambiguous: day first
    ("05/13/2024", date(2024, 5, 13)),     # unambiguous: month first
    (45356, date(2024, 3, 5)),             # Excel serial (45292 = 2024-01-01, + 64 days)
    ("45356", date(2024, 3, 5)),
    (datetime(2024, 3, 5, 10, 0), date(2024, 3, 5)),
    ("", None), (None, None),
])
def test_dates_without_declared_format(raw, expected):
    assert parse_date(raw) == expected


def test_ambiguous_slash_date_needs_a_declared_format():
    with pytest.raises(AmbiguousDateError):
        parse_date("03/05/2024")
    assert parse_date("03/05/2024", formats=("%m/%d/%Y",)) == date(2024, 3, 5)
    assert parse_date("03/05/2024", formats=("%d/%m/%Y",)) == date(2024, 5, 3)


def test_declared_format_applies_to_the_date_part_of_a_timestamp():
    assert parse_date("03/05/2024 10:15 AM", formats=("%m/%d/%Y",)) == date(2024, 3, 5)
    with pytest.raises(ParseError, match="declared format"):
        parse_date("13/05/2024", formats=("%m/%d/%Y",))
    with pytest.raises(ParseError, match="declared format"):
        parse_date("TBD", formats=("%m/%d/%Y",))


def test_timestamp_offset_converted_to_declared_time_zone():
    # 20:00 UTC on 5 March is 04:00 on 6 March in Shanghai (UTC+8)
    assert parse_date("2024-03-05T20:00:00.000+0000") == date(2024, 3, 5)
    assert parse_date("2024-03-05T20:00:00.000+0000", tz="Asia/Shanghai") == date(2024, 3, 6)
    assert parse_date("2024-03-05T20:00:00Z", tz="Asia/Shanghai") == date(2024, 3, 6)


@pytest.mark.parametrize("raw", ["2024年2月30日", "2024/13/5", "2024-02-30"])
def test_impossible_calendar_dates(raw):
    with pytest.raises(ParseError, match="valid calendar date"):
        parse_date(raw)


def test_text_is_not_a_date():
    with pytest.raises(ParseError, match="not a date"):
        parse_date("next week")


# ----------------------------------------------------------------- booleans and ids

@pytest.mark.parametrize("raw", ["TRUE", "1", "是", "Y", "yes", True])
def test_true_values(raw):
    assert parse_bool(raw) is True


@pytest.mark.parametrize("raw", ["FALSE", "0", "否", "N", "no", False])
def test_false_values(raw):
    assert parse_bool(raw) is False


def test_bool_rejects_other_text():
    assert parse_bool("") is None
    with pytest.raises(ParseError):
        parse_bool("maybe")


def test_salesforce_id_checksum():
    # Hand-computed: chunks 001A0 (A at position 3 -> 8 -> "I"), 00000 (0 -> "A"),
    # LCRpE (L,C,R,E at 0,1,2,4 -> 1+2+4+16 = 23 -> "X").
    assert salesforce_id18("001A000000LCRpE") == "001A000000LCRpEIAX"
    assert parse_id("001A000000LCRpE", kind="salesforce") == "001A000000LCRpEIAX"
    assert parse_id("001A000000LCRpEIAX", kind="salesforce") == "001A000000LCRpEIAX"
    assert parse_id("001a000000lcrpe", kind="salesforce") != parse_id("001A000000LCRpE", kind="salesforce")
    with pytest.raises(ParseError, match="Salesforce id"):
        parse_id("Alice Chen", kind="salesforce")


def test_ids_stay_strings_with_leading_zeros():
    assert parse_id("000123") == "000123"
    assert parse_id(" 000123 ") == "000123"
    assert parse_id(123.0) == "123"           # a spreadsheet number cell: no ".0"
    assert parse_id("") is None


# ------------------------------------------------------------------------- readers

def test_gb18030_csv_is_autodetected(tmp_path):
    text = "编号,名称\n001,𠮷祥\n"
    path = tmp_path / "x.csv"
    path.write_bytes(text.encode("gb18030"))
    with pytest.raises(UnicodeEncodeError):
        text.encode("gbk")  # the fixture really needs GB18030
    raw = read_table(path, expected=["编号", "名称"])
    assert raw.encoding == "gb18030" and raw.rows == [["001", "𠮷祥"]]


def test_gbk_and_utf8_bom_csv(tmp_path):
    (tmp_path / "gbk.csv").write_bytes("客户编号,负责人\n0007,张伟\n".encode("gbk"))
    (tmp_path / "bom.csv").write_bytes("客户编号,负责人\n0007,张伟\n".encode("utf-8-sig"))
    for name in ("gbk.csv", "bom.csv"):
        raw = read_table(tmp_path / name, expected=["客户编号", "负责人"])
        assert raw.headers == ["客户编号", "负责人"] and raw.rows == [["0007", "张伟"]]


def test_undecodable_bytes_name_file_offset_and_line(tmp_path):
    path = tmp_path / "bad.csv"
    path.write_bytes(b"a,b\n1,2\n3,\xff\xfe\n")
    with pytest.raises(InputError) as err:
        read_table(path, expected=["a", "b"])
    message = str(err.value)
    assert "bad.csv" in message and "byte offset 10" in message and "line 3" in message


def test_declared_encoding_is_strict_never_latin1(tmp_path):
    path = tmp_path / "gbk.csv"
    path.write_bytes("客户编号,负责人\n1,张伟\n".encode("gbk"))
    with pytest.raises(InputError, match="utf-8"):
        read_table(path, expected=["客户编号", "负责人"], encoding="utf-8")


def test_xlsx_header_found_below_title_and_filter_rows(tmp_path):
    wb = openpyxl.Workbook()
    ws = wb.active
    for row in (["Opportunity Report"], ["Filtered By:"], ["  Stage equals Closed Won"], [],
                ["Opportunity ID", "Amount", "Close Date"], ["006A", 10, datetime(2024, 3, 5)]):
        ws.append(row)
    wb.save(tmp_path / "r.xlsx")
    raw = read_table(tmp_path / "r.xlsx", expected=["Opportunity ID", "Amount", "Close Date", "Stage"])
    assert raw.header_row == 5 and raw.rows_above_header == 4
    assert raw.rows == [["006A", 10, datetime(2024, 3, 5)]] and raw.row_numbers == [6]


def test_xlsx_formula_without_cached_value_is_marked(tmp_path):
    wb = openpyxl.Workbook()
    ws = wb.active
    ws.append(["id", "amount"])
    ws.append(["A1", "=1+1"])  # openpyxl stores no cached value for formulas
    wb.save(tmp_path / "f.xlsx")
    raw = read_table(tmp_path / "f.xlsx", expected=["id", "amount"])
    assert raw.rows[0][1] == Formula("B2", "=1+1")


def test_no_header_row_is_an_error(tmp_path):
    (tmp_path / "x.csv").write_text("foo,bar\n1,2\n", encoding="utf-8")
    with pytest.raises(InputError, match="no header row"):
        read_table(tmp_path / "x.csv", expected=["Opportunity ID", "Amount"])
