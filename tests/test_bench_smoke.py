"""The scale benchmark (``make bench``) at a tiny scale, so that it cannot rot.

Runs ``python -m benchmarks.run_bench`` at scale 0.05 (two teams, a few hundred
customers) without the full ``kpisat run`` stage (the session's run is tested
elsewhere; here the report stage renders the fixture run), every stage in one
process (``--in-process``: one interpreter start-up instead of ten), and checks that
``bench.json`` reports seconds and a peak RSS for every stage.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
#: Small enough for CI, large enough that every model has rows to fit.
SCALE = "0.05"


def test_benchmark_runs_every_stage_and_reports_time_and_memory(tmp_path: Path, monkeypatch):
    monkeypatch.syspath_prepend(str(ROOT))  # benchmarks/ is not part of the installed package
    from benchmarks.stages import STAGES

    done = subprocess.run(
        [sys.executable, "-m", "benchmarks.run_bench", "--scale", SCALE, "--out", str(tmp_path),
         "--skip", "kpisat_run", "--in-process"], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads((tmp_path / "bench.json").read_text())
    expected = [s for s in STAGES if s != "kpisat_run"]
    assert list(report["stages"]) == expected
    for name, rec in report["stages"].items():
        assert rec["ok"], (name, rec.get("error"))
        assert rec["seconds"] > 0, name
        assert rec["peak_rss_mb"] > 0, name
        assert all(v >= 0 for v in rec["steps"].values()), name
    assert report["stages"]["baseline_panel"]["equal"], report["stages"]["baseline_panel"]
    assert report["stages"]["baseline_panel"]["ratio_baseline_over_product"] > 0
    assert len(report["loadavg_start"]) == 3
    assert "model_fit_seconds" in report["targets"]
    assert report["company_size"]["quarters"]["have"] == 12
    assert "stage" in done.stdout and "baseline_panel" in done.stdout
    # the generated company is cached by (seed, scale)
    assert report["generation"]["cached"] is False
    assert (tmp_path / "data" / f"seed7-scale{SCALE}" / "generated.json").exists()
