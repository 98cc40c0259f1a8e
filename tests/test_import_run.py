"""Each CRM preset end to end: import its fixture export, then a full ``kpisat run``.

The fixtures are small companies (a few teams), so most effects come out "not
estimable" — what matters here is that the whole chain runs on imported data, that
the report is published, and that the data-quality counts add up.
"""

from __future__ import annotations

import json
from datetime import date

import pytest

from analysis.importers import import_export, list_presets
from analysis.runner import run

from test_import_presets import AS_OF, FIXTURES

pytestmark = pytest.mark.slow


@pytest.mark.parametrize("preset", list_presets())
def test_import_then_run(preset, tmp_path, monkeypatch):
    monkeypatch.setenv("KPISAT_PREPARED_CACHE", str(tmp_path / "cache"))
    tables = tmp_path / "tables"
    import_export(preset, FIXTURES / preset / "export", tables, as_of=AS_OF.isoformat())
    index = run(source=str(tables), out=tmp_path / "reports", progress=False)

    assert index.exists() and index.stat().st_size > 10_000
    findings = json.loads((index.parent / "findings.json").read_text(encoding="utf-8"))
    assert findings["as_of"] == AS_OF.isoformat()
    assert date.fromisoformat(findings["as_of"]) >= date(2025, 6, 30)
    quality = findings["data_quality"]
    for table, n in quality["rows_read"].items():
        assert n == quality["rows_used"][table] + quality["rows_quarantined"][table], table
    # every effect is either a number backed by data or non-estimable with a reason
    for e in findings["effects"]:
        if e["estimable"]:
            assert e["estimate"] is not None and e["conf_low"] is not None
        else:
            assert e["estimate"] is None and e["note"]
