"""Each preset end to end on its fixture export (tests/fixtures/crm, made by make_fixtures.py).

The fixtures' ``expected/`` folders hold the company's truth in that CRM's ids; the
import must reproduce it exactly, except the rows listed in ``expected/dirt.json``,
which must be in the import quarantine with that reason.
"""

from __future__ import annotations

import csv
import hashlib
import json
from datetime import date
from pathlib import Path

import openpyxl
import pytest
import yaml

from analysis.contract import TABLES
from analysis.errors import InputError
from analysis.importers import describe_mapping, import_export, list_presets, load_mapping
from analysis.importers.mapping import PRESETS_DIR

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "crm"
PRESETS = ["salesforce", "zoho", "jiandaoyun", "dingtalk"]
AS_OF = date(2025, 6, 30)  # make_fixtures.AS_OF


def _rows(path: Path) -> list[list[str]]:
    with open(path, encoding="utf-8", newline="") as fh:
        return list(csv.reader(fh))


def _digest(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir())}


@pytest.fixture(scope="module", params=PRESETS)
def imported(request, tmp_path_factory):
    preset = request.param
    export = FIXTURES / preset / "export"
    before = _digest(export)
    out = tmp_path_factory.mktemp(preset)
    report = import_export(preset, export, out, as_of=AS_OF.isoformat())
    assert _digest(export) == before, "input files must never be modified"
    return preset, report, out


def test_list_presets():
    assert list_presets() == sorted(PRESETS)


def test_template_loads_and_covers_every_table():
    mapping = load_mapping(PRESETS_DIR / "template.yaml")
    assert set(mapping.tables) == set(TABLES)


def test_counts_add_up(imported):
    _, report, _ = imported
    for name, t in report.tables.items():
        assert t.balanced(), name
        assert t.rows_read == (t.rows_mapped + t.rows_quarantined + t.footer_rows + t.blank_rows
                               + t.rows_filtered), name
        assert sum(t.quarantined_by_reason.values()) == t.rows_quarantined


def test_result_is_the_truth_except_the_dirt(imported):
    preset, report, out = imported
    expected = FIXTURES / preset / "expected"
    dirt = json.loads((expected / "dirt.json").read_text(encoding="utf-8"))
    for table in (t for t in TABLES if TABLES[t].required):
        got, want = _rows(out / f"{table}.csv"), _rows(expected / f"{table}.csv")
        assert got[0] == [c.name for c in TABLES[table].columns]  # contract order
        dirty = {d["id"] for d in dirt if d["table"] == table}
        want_clean = {tuple(r) for r in want[1:] if r[0] not in dirty}
        assert {tuple(r) for r in got[1:]} == want_clean, table


def test_dirt_is_quarantined_with_its_reason(imported):
    preset, report, out = imported
    dirt = json.loads((FIXTURES / preset / "expected" / "dirt.json").read_text(encoding="utf-8"))
    quarantine = _rows(out / "import_quarantine.csv")
    assert quarantine[0] == ["table", "source_file", "source_row", "column", "raw_value", "reason"]
    assert len(quarantine) - 1 == len(dirt) == len(report.quarantine)
    reasons = sorted((q[0], q[5]) for q in quarantine[1:])
    assert reasons == sorted((d["table"], d["reason"]) for d in dirt)
    assert all(q[1] and int(q[2]) > 1 and q[4] for q in quarantine[1:])  # file, row, raw value


def test_report_json(imported):
    preset, report, out = imported
    data = json.loads((out / "import_report.json").read_text(encoding="utf-8"))
    assert data["mapping"] == preset and data["as_of"] == "2025-06-30"
    assert data["tables"]["deals"]["rows_read"] == report.tables["deals"].rows_read
    assert json.loads((out / "run.json").read_text()) == {"as_of": "2025-06-30"}


def test_imported_fixture_validates(imported):
    validate_mod = pytest.importorskip("analysis.validate")
    sources = pytest.importorskip("analysis.sources")
    _, _, out = imported
    validated = validate_mod.validate(sources.open_source(str(out)).read(), AS_OF)
    assert validated.quarantine.empty, validated.quarantine.to_string()


def test_salesforce_footer_filter_and_id_normalisation(tmp_path):
    report = import_export("salesforce", FIXTURES / "salesforce" / "export", tmp_path, as_of="2025-06-30")
    deals, cases = report.tables["deals"], report.tables["complaints"]
    assert (deals.footer_rows, deals.blank_rows) == (3, 2)          # Grand Totals, Confidential, Copyright
    assert (cases.footer_rows, cases.rows_filtered, cases.rows_above_header) == (3, 3, 4)
    ids = [r[0] for r in _rows(tmp_path / "deals.csv")[1:]]
    assert all(len(i) == 18 for i in ids)                            # report's 15-char ids extended
    assert {"Opportunity Owner", "Won"} <= set(deals.source_columns_unused)


def test_jiandaoyun_subform_rows_are_combined(tmp_path):
    report = import_export("jiandaoyun", FIXTURES / "jiandaoyun" / "export", tmp_path, as_of="2025-06-30")
    contracts = report.tables["contracts"]
    assert contracts.rows_mapped > contracts.records_written == 72
    ids = [r[1] for r in _rows(tmp_path / "customers.csv")[1:]]
    assert all(i.startswith("000") for i in [r[0] for r in _rows(tmp_path / "customers.csv")[1:]]), ids


def _user_mapping(tmp_path: Path, preset: str, edit) -> Path:
    raw = yaml.safe_load((PRESETS_DIR / f"{preset}.yaml").read_text(encoding="utf-8"))
    edit(raw)
    path = tmp_path / "mine.yaml"
    path.write_text(yaml.safe_dump(raw, allow_unicode=True), encoding="utf-8")
    return path


def test_ambiguous_dates_without_declared_format_are_rejected(tmp_path):
    def drop_format(raw):
        raw["tables"]["deals"]["columns"]["close_date"].pop("format")
    mapping = _user_mapping(tmp_path, "zoho", drop_format)
    with pytest.raises(InputError) as err:
        import_export(mapping, FIXTURES / "zoho" / "export", tmp_path / "out")
    e = err.value
    assert e.file == "Deals_2025_07_01.csv" and e.column == "Closing Date" and e.row is not None
    assert "format" in e.hint and not (tmp_path / "out").exists()


def test_required_unmapped_columns_are_listed_with_how_to_map(tmp_path):
    def drop_amount(raw):
        del raw["tables"]["deals"]["columns"]["amount"]
        raw["tables"]["surveys"]["columns"]["sent_date"] = ["Not There"]
    mapping = _user_mapping(tmp_path, "zoho", drop_amount)
    with pytest.raises(InputError) as err:
        import_export(mapping, FIXTURES / "zoho" / "export", tmp_path / "out")
    assert "deals.amount" in str(err.value) and "surveys.sent_date" in str(err.value)
    assert "Amount" in str(err.value)  # the available headers are shown


def test_formula_without_saved_value_names_the_cell(tmp_path):
    export = tmp_path / "export"
    export.mkdir()
    for name in ("reps.csv", "kpi_plans.csv", "plan_assignments.csv", "客户信息.xlsx", "商机.csv",
                 "合同.xlsx", "投诉记录.csv"):
        (export / name).write_bytes((FIXTURES / "jiandaoyun" / "export" / name).read_bytes())
    wb = openpyxl.Workbook()
    ws = wb.active
    ws.append(["回访编号", "客户编号", "负责人", "发送日期", "回复日期", "满意度", "推荐意愿"])
    ws.append(["HF1", "000101", "张伟", "2024-03-05", None, None, "=3+4"])
    wb.save(export / "满意度回访.xlsx")
    with pytest.raises(InputError) as err:
        import_export("jiandaoyun", export, tmp_path / "out")
    assert "G2" in str(err.value) and err.value.file == "满意度回访.xlsx" and err.value.column == "推荐意愿"


def test_unknown_mapping_keys_and_presets_are_rejected(tmp_path):
    with pytest.raises(InputError, match="no preset"):
        load_mapping("sugarcrm")
    mapping = _user_mapping(tmp_path, "zoho", lambda raw: raw["tables"]["deals"].update(colums={}))
    with pytest.raises(InputError, match="colums"):
        load_mapping(mapping)
    mapping = _user_mapping(tmp_path, "zoho", lambda raw: raw["tables"]["deals"]["columns"].update(amout="x"))
    with pytest.raises(InputError, match="amout"):
        load_mapping(mapping)


def test_output_folder_cannot_be_the_export_folder():
    export = FIXTURES / "zoho" / "export"
    with pytest.raises(InputError, match="output folder"):
        import_export("zoho", export, export)


def test_describe_mapping():
    text = describe_mapping("dingtalk")
    assert "derived: first_won_deal" in text and "商机金额" in text
    with_files = describe_mapping("salesforce", FIXTURES / "salesforce" / "export")
    assert "source columns unused: Opportunity Name, Opportunity Owner, Won" in with_files
    assert "REQUIRED" not in with_files
