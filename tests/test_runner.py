"""The runner: reproducible findings, no look-ahead, atomic publishing, loud failures.

The expensive fixture (one full run on the sample, ``sample_run``) lives in
conftest.py; tests here add at most one more run each.
"""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import nbformat
import pandas as pd
import pytest

from analysis import findings, runner
from analysis.errors import ParameterError
from conftest import SESSION_QUARTER, kpisat, tree_digest

QUARTER_END = "2025-09-30"  # last day of SESSION_QUARTER


# ---------------------------------------------------------------- full runs
def test_run_publishes_the_report(sample_run):
    pub = sample_run.published
    assert (pub / "index.html").is_file()
    assert f"report: {pub / 'index.html'}" in sample_run.result.stdout
    for nb in runner.discover_notebooks():
        assert (pub / nb.name).is_file(), f"executed {nb.name} missing"
        assert (pub / nb.with_suffix(".html").name).is_file(), f"{nb.stem}.html missing"
    assert not (sample_run.out / ".staging").exists()
    assert not (sample_run.out / ".failed").exists()


def test_findings_follow_the_schema(sample_run):
    f = sample_run.findings
    assert list(f)[:7] == ["schema_version", "quarter", "as_of", "effects", "metrics",
                           "recommendation", "data_quality"]
    assert f["schema_version"] == 1 and f["quarter"] == SESSION_QUARTER
    assert f["as_of"] == "2025-12-31"
    assert f["effects"], "no effects"
    for row in f["effects"]:
        assert "statistic" not in row
        assert list(row)[:14] == list(findings.EFFECT_COLUMNS)
        if not row["estimable"]:
            assert row["estimate"] is None and row["note"]
    outcomes = {e["outcome"] for e in f["effects"]}
    assert {"churn", "renewal", "complaints", "csat", "nps", "bookings"} <= outcomes
    assert f["data_quality"]["rows_read"]
    assert "NaN" not in sample_run.findings_bytes.decode()


def test_manifest_records_provenance(sample_run):
    m = json.loads((sample_run.published / "manifest.json").read_text())
    assert m["status"] == "ok"
    assert m["parameters"]["quarter"] == SESSION_QUARTER
    assert m["parameters"]["as_of"] == "2025-12-31"
    assert len(m["input_fingerprint"]) == 64
    assert m["git_commit"]
    assert m["started"] <= m["finished"]
    assert m["python"].startswith("3.11")
    assert {n["name"] for n in m["notebooks"]} == {nb.stem for nb in runner.discover_notebooks()}
    assert all(n["status"] == "ok" and n["seconds"] >= 0 for n in m["notebooks"])


def test_inputs_are_not_modified(sample_run):
    assert sample_run.inputs_before == sample_run.inputs_after


def test_same_inputs_give_identical_findings(sample_run, sample_dir, tmp_path):
    # an empty prepared cache: the inputs are rebuilt and the models refitted
    # (analysis.fit_cache keeps fits in the prepared folder), not reloaded
    # one notebook at a time: the published run does not depend on how many run at once
    result = kpisat("run", "--source", str(sample_dir), "--quarter", SESSION_QUARTER,
                    "--out", str(tmp_path), "-q", "--jobs", "1",
                    env={"KPISAT_PREPARED_CACHE": str(tmp_path / "cache")})
    assert result.returncode == 0, result.stderr
    again = (tmp_path / SESSION_QUARTER / "findings.json").read_bytes()
    assert again == sample_run.findings_bytes


#: Facts a row learns after it begins, as (date column, columns unknown before it, and
#: what they read as until then). Written out here, independently of analysis.asof.
LATER_FACTS = {
    "reps": [("exit_date", {"exit_date": ""})],
    "deals": [("close_date", {"close_date": "", "status": "open"})],
    "contracts": [("cancel_date", {"cancel_date": ""}), ("end_date", {"outcome": "pending"})],
    "surveys": [("responded_date", {"responded_date": "", "csat": "", "nps": ""})],
    "invoices": [("paid_date", {"paid_date": "", "paid_amount": ""})],
}
BEGINS = {"reps": "hire_date", "customers": "acquired_date", "deals": "created_date",
          "contracts": "start_date", "surveys": "sent_date", "complaints": "created_date",
          "invoices": "due_date", "activities": "activity_date",
          "plan_assignments": "valid_from"}


def _extract_as_of(src: Path, dst: Path, day: str) -> int:
    """Copy the sample as an extraction made on ``day`` would have looked.

    Rows beginning after ``day`` are dropped; facts of the remaining rows dated after
    it are not known yet (a later close reads as open, a later cancellation as none,
    a contract ending later as pending, a later answer as no answer).
    """
    shutil.copytree(src, dst)
    cut = pd.Timestamp(day)
    dropped = 0
    for table, column in BEGINS.items():
        path = dst / f"{table}.csv"
        if not path.exists():
            continue
        df = pd.read_csv(path, dtype=str, keep_default_na=False)
        late = pd.to_datetime(df[column], errors="coerce") > cut
        dropped += int(late.sum())
        df = df[~late].copy()
        for date_column, unknown in LATER_FACTS.get(table, []):
            later = pd.to_datetime(df[date_column], errors="coerce") > cut
            for col, value in unknown.items():
                if col in df:
                    df.loc[later, col] = value
        df.to_csv(path, index=False)
    return dropped


def test_later_data_changes_nothing_in_a_quarter(sample_run, sample_dir, tmp_path):
    truncated = tmp_path / "until-q3"
    assert _extract_as_of(sample_dir, truncated, QUARTER_END) > 0
    result = kpisat("run", "--source", str(truncated), "--quarter", SESSION_QUARTER,
                    "--as-of", "2025-12-31", "--out", str(tmp_path / "reports"), "-q")
    assert result.returncode == 0, result.stderr
    without_later = tmp_path / "reports" / SESSION_QUARTER
    assert (without_later / "findings.json").read_bytes() == sample_run.findings_bytes
    fp = [json.loads((d / "manifest.json").read_text())["input_fingerprint"]
          for d in (without_later, sample_run.published)]
    assert fp[0] != fp[1], "the fingerprint must tell the two inputs apart"


def test_failing_notebook_keeps_previous_report(sample_run, sample_dir, tmp_path):
    out = tmp_path / "reports"
    shutil.copytree(sample_run.published, out / SESSION_QUARTER)
    before = tree_digest(out / SESSION_QUARTER)
    nbdir = tmp_path / "notebooks"
    nbdir.mkdir()
    shutil.copy(runner.discover_notebooks()[0], nbdir)
    target = next(p for p in runner.discover_notebooks() if p.name.startswith("10_"))
    nb = nbformat.read(target, as_version=4)
    params = next(i for i, c in enumerate(nb.cells) if "parameters" in c.metadata.get("tags", []))
    nb.cells.insert(params + 1, nbformat.v4.new_code_cell(
        'raise RuntimeError("injected failure for the test")'))
    nbformat.write(nb, nbdir / target.name)

    result = kpisat("run", "--source", str(sample_dir), "--quarter", SESSION_QUARTER,
                    "--out", str(out), "--notebooks-dir", str(nbdir))
    assert result.returncode == 1
    error = [ln for ln in result.stderr.splitlines() if ln.startswith("kpisat: error:")]
    assert len(error) == 1 and "Traceback" not in result.stderr
    assert target.stem in error[0]
    assert "raise RuntimeError" in error[0] and "injected failure for the test" in error[0]
    assert "cell " in error[0]
    assert tree_digest(out / SESSION_QUARTER) == before
    failed = list((out / ".failed").iterdir())
    assert len(failed) == 1 and failed[0].name.startswith(SESSION_QUARTER)
    assert (failed[0] / target.name).is_file()
    assert json.loads((failed[0] / "manifest.json").read_text())["status"] == "failed"
    assert not (out / ".staging").exists() or not any((out / ".staging").iterdir())


# ---------------------------------------------------------------- parameters
def _notebook(cells: list) -> nbformat.NotebookNode:
    nb = nbformat.v4.new_notebook(cells=cells)
    nb.metadata["kernelspec"] = {"name": "python3", "language": "python",
                                 "display_name": "Python 3"}
    return nb


def test_unknown_parameter_is_rejected_before_any_kernel(tmp_path):
    with pytest.raises(ParameterError) as e:
        runner.run(quarter=SESSION_QUARTER, out=tmp_path, params={"quater": "2025Q3"})
    assert "'quater'" in str(e.value)
    for name in runner.STANDARD_PARAMETERS:
        assert name in str(e.value)
    assert not any(tmp_path.iterdir())


def test_notebook_must_declare_the_standard_parameters(tmp_path):
    nb = _notebook([nbformat.v4.new_code_cell('quarter: str = ""  # quarter', metadata={
        "tags": ["parameters"]})])
    nbformat.write(nb, tmp_path / "00_partial.ipynb")
    with pytest.raises(ParameterError, match="does not declare.*source"):
        runner.check_parameters(runner.discover_notebooks(tmp_path), {})


def test_notebook_declaring_an_unset_parameter_is_rejected(tmp_path):
    lines = [f'{p}: str = ""  # {p}' for p in runner.STANDARD_PARAMETERS] + [
        'threshold: float = 0.5  # extra']
    nb = _notebook([nbformat.v4.new_code_cell("\n".join(lines), metadata={
        "tags": ["parameters"]})])
    nbformat.write(nb, tmp_path / "00_extra.ipynb")
    notebooks = runner.discover_notebooks(tmp_path)
    with pytest.raises(ParameterError, match="threshold"):
        runner.check_parameters(notebooks, {})
    takes = runner.check_parameters(notebooks, {"threshold": 0.7})
    assert takes[notebooks[0]] == {"threshold": 0.7}


def test_password_in_source_url_is_refused():
    with pytest.raises(ParameterError, match="PGPASSWORD"):
        runner.source_parameter("postgresql://kpi:secret@db/crm")
    assert runner.source_parameter("postgresql://kpi@db/crm") == "postgresql://kpi@db/crm"


def test_quarter_after_as_of_is_a_parameter_error(sample_dir, tmp_path):
    with pytest.raises(ParameterError, match="after the data's as-of date"):
        runner.run(source=str(sample_dir), quarter="2026Q1", out=tmp_path)


# ---------------------------------------------------------------- publishing
def test_publish_replaces_previous_only_after_success(tmp_path):
    final, staging = tmp_path / "2025Q3", tmp_path / ".staging" / "2025Q3-x"
    final.mkdir()
    (final / "old.txt").write_text("old")
    staging.mkdir(parents=True)
    (staging / "new.txt").write_text("new")
    runner.publish(staging, final)
    assert (final / "new.txt").exists() and not (final / "old.txt").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["2025Q3"]


def test_publish_restores_previous_when_rename_fails(tmp_path):
    final = tmp_path / "2025Q3"
    final.mkdir()
    (final / "old.txt").write_text("old")
    with pytest.raises(OSError):
        runner.publish(tmp_path / "missing-staging", final)
    assert (final / "old.txt").read_text() == "old"


# ---------------------------------------------------------------- findings
def test_fragments_merge_deterministically(tmp_path):
    eff = pd.DataFrame({"outcome": ["csat"], "term": ["w_satisfaction"], "model": ["ols_fe"],
                        "scale": ["csat_points"], "per": [0.1], "estimate": [math.nan],
                        "std_error": [0.1], "statistic": [1.0], "p_value": [0.5],
                        "conf_low": [-0.1], "conf_high": [0.3], "n_obs": [10.0],
                        "n_clusters": [3], "estimable": [False], "note": ["few clusters"]})
    findings.write_fragment(tmp_path, "effects", eff, writer="20_b")
    findings.write_fragment(tmp_path, "effects", eff.assign(outcome="nps"), writer="10_a")
    findings.write_fragment(tmp_path, "effects", eff.assign(outcome="nps"), writer="10_a")
    findings.write_fragment(tmp_path, "data_quality", {"rows_read": {"deals": 3}}, writer="00")
    merged = findings.merge_fragments(tmp_path, quarter="2025Q3", as_of="2025-12-31")
    first = (tmp_path / "findings.json").read_bytes()
    findings.merge_fragments(tmp_path, quarter="2025Q3", as_of="2025-12-31")
    assert (tmp_path / "findings.json").read_bytes() == first
    assert [e["outcome"] for e in merged["effects"]] == ["nps", "csat"]  # writer order, no dupes
    row = merged["effects"][0]
    assert "statistic" not in row and row["estimate"] is None and row["n_obs"] == 10
    assert merged["recommendation"] is None
    assert merged["data_quality"] == {"rows_read": {"deals": 3}}


def test_redact_source_strips_passwords():
    assert (findings.redact_source("postgresql://u:pw@h:5432/db?sslmode=require&password=x")
            == "postgresql://u@h:5432/db?sslmode=require")
    assert findings.redact_source(None) == ""
    assert findings.redact_source("/data/crm") == "/data/crm"


def test_manifest_never_holds_credentials():
    m = findings.new_manifest(parameters={"source": "postgresql://u:hunter2@h/db"},
                              fingerprint="f", started=findings.utc_now())
    assert "hunter2" not in findings.dumps(m)



# ---------------------------------------------------------------- prepare
def test_prepare_resolves_defaults_and_caches(sample_dir):
    from analysis.prepare import prepare

    first = prepare(str(sample_dir), None, None)
    assert (first.quarter, first.as_of) == ("2025Q4", "2025-12-31")  # run.json, latest complete
    assert first.location is not None and (first.location / "meta.json").is_file()
    again = prepare(str(sample_dir), "2025Q4", "2025-12-31")
    assert again.location == first.location
    for name in first.derived:
        pd.testing.assert_frame_equal(first.derived[name], again.derived[name])
    for name in first.tables:
        pd.testing.assert_frame_equal(first.tables[name], again.tables[name])
    assert first.validated.data_quality() == again.validated.data_quality()


def test_a_cached_quarter_reads_each_table_on_first_use(sample_dir, tmp_path, monkeypatch):
    # a kernel that reads two tables must not pay (in time or memory) for the rest
    from analysis import prepare as prep

    monkeypatch.setenv(prep.CACHE_ENV, str(tmp_path / "cache"))
    built = prep.prepare(str(sample_dir), "2025Q4", "2025-12-31")
    built_reps, built_panel = built.tables["reps"], built.derived["rep_quarter_panel"]
    reads = []
    real = pd.read_parquet
    monkeypatch.setattr(pd, "read_parquet", lambda path, *a, **k: reads.append(Path(path).stem)
                        or real(path, *a, **k))
    cached = prep.prepare(str(sample_dir), "2025Q4", "2025-12-31")
    names = set(built.tables) | set(built.derived)
    assert not names & set(reads)
    assert "deals" in cached.tables and len(cached.tables) == len(built.tables)
    pd.testing.assert_frame_equal(cached.tables["reps"], built_reps)
    pd.testing.assert_frame_equal(cached.derived["rep_quarter_panel"], built_panel)
    cached.tables["reps"]
    assert [r for r in reads if r in names] == ["reps", "rep_quarter_panel"]  # each once
    with pytest.raises(KeyError):
        cached.tables["no_such_table"]


def test_a_shared_cache_entry_keeps_each_sources_own_name(sample_dir, tmp_path):
    # equal data under two names share one cache entry; each run names its own source
    from analysis.prepare import prepare

    copy = tmp_path / "copy_of_sample"
    shutil.copytree(sample_dir, copy)
    first = prepare(str(sample_dir), "2025Q4", "2025-12-31")
    for _ in range(2):  # a cache hit, then the quick index
        other = prepare(str(copy), "2025Q4", "2025-12-31")
        assert other.location == first.location
        assert other.source_description == f"folder {copy}"
    assert prepare(str(sample_dir), "2025Q4", "2025-12-31").source_description == \
        f"folder {sample_dir}"


def test_prepare_sees_the_quarter_end(sample_dir):
    from analysis.prepare import prepare

    p = prepare(str(sample_dir), SESSION_QUARTER, "2025-12-31")
    last = pd.Timestamp(QUARTER_END)
    assert (p.tables["deals"]["created_date"] <= last).all()
    assert not (p.tables["contracts"]["cancel_date"] > last).any()
    assert p.derived["rep_quarter_panel"]["quarter"].max() == SESSION_QUARTER


def test_kernels_get_the_runners_prepared_inputs(sample_dir, monkeypatch):
    from analysis import prepare as prep

    p = prep.prepare(str(sample_dir), SESSION_QUARTER, "2025-12-31")
    for key, value in prep.run_environment(p, str(sample_dir)).items():
        monkeypatch.setenv(key, value)
    monkeypatch.setattr(prep, "code_version", lambda: "changed while the run goes on")
    assert prep.prepare(str(sample_dir), SESSION_QUARTER, "2025-12-31").location == p.location
    with pytest.raises(ParameterError):
        prep.prepare(str(sample_dir), "2025Q5", "")


@pytest.mark.parametrize("quarter, as_of", [("2026Q1", "2025-12-31"), ("2025Q4", "2025-12-30")])
def test_quarter_must_end_by_as_of(sample_dir, quarter, as_of):
    from analysis.prepare import prepare

    with pytest.raises(ParameterError, match="after the data's as-of date"):
        prepare(str(sample_dir), quarter, as_of)


# ---------------------------------------------------------------- scheduling
def _plan(*independent: bool) -> list:
    return [runner._Job(i, Path(f"{i}0_nb.ipynb"), {}, {}, ind, position="")
            for i, ind in enumerate(independent)]


def test_independent_notebooks_wait_only_for_the_dependent_ones_before_them():
    # 00, 10, 20 independent; 30 reads their findings; 40 independent again
    plan = _plan(True, True, True, False, True)
    assert [runner._ready(j, plan, set()) for j in plan] == [True, True, True, False, False]
    assert not runner._ready(plan[3], plan, {0, 1})
    assert runner._ready(plan[3], plan, {0, 1, 2})
    assert not runner._ready(plan[4], plan, {0, 1, 2})
    assert runner._ready(plan[4], plan, {3})


def test_a_notebook_naming_what_it_reads_waits_for_those_only():
    # 00, 10 independent; 20 reads 00's findings only; 30 reads everything before it
    plan = _plan(True, True, False, False)
    plan[2].reads = [0]
    assert [runner._ready(j, plan, {0}) for j in plan] == [True, True, True, False]
    assert not runner._ready(plan[2], plan, {1})
    assert not runner._ready(plan[3], plan, {0, 1})
    assert runner._ready(plan[3], plan, {0, 1, 2})


def test_notebooks_that_others_wait_for_start_first():
    # the sample's shape: 00..40 independent; 50 reads 10, 20, 30; 60 waits for all
    plan = _plan(True, True, True, True, True, False, False)
    plan[5].reads = [1, 2, 3]
    order = [j.index for j in runner._run_order(plan)]
    assert order == [1, 2, 3, 0, 4, 5, 6]
    for pos, i in enumerate(order):  # each comes after everything it depends on
        assert set(runner._depends_on(plan[i], plan)) <= set(order[:pos])


def test_the_run_order_keeps_prefix_order_without_readers():
    plan = _plan(True, True, False, True)
    assert [j.index for j in runner._run_order(plan)] == [0, 1, 2, 3]


def test_preload_looks_up_the_attributes_the_notebook_reads(tmp_path):
    nb = _notebook([nbformat.v4.new_code_cell(
        "import math\nfrom analysis import decision, config as c\n"
        "x = decision.tradeoff_analysis\ny = c.REPORTS_DIR\nz = math.pi")])
    nbformat.write(nb, tmp_path / "10_a.ipynb")
    (arg,) = runner.preload_lines(tmp_path / "10_a.ipynb")
    code = json.loads(arg.split("=", 1)[1])[0]
    assert "('analysis.decision', 'tradeoff_analysis')" in code
    assert "('analysis.config', 'REPORTS_DIR')" in code
    assert "'pi'" not in code  # only this project's modules
    namespace: dict = {}
    exec(code, namespace)  # noqa: S102 - the kernel runs exactly this
    assert set(namespace) == {"__builtins__"}  # binds nothing in the notebook


def test_the_html_exporter_is_reused_with_the_same_output(tmp_path):
    nb = _notebook([nbformat.v4.new_markdown_cell("# Title"),
                    nbformat.v4.new_code_cell("1 + 1")])
    for name in ("10_a", "20_b"):
        nbformat.write(nb, tmp_path / f"{name}.ipynb")
    again = runner.export_html(tmp_path / "10_a.ipynb").read_text(encoding="utf-8")
    runner._html_exporter.cache_clear()
    fresh = runner.export_html(tmp_path / "20_b.ipynb").read_text(encoding="utf-8")
    assert again.replace("10_a", "20_b") == fresh


def test_the_packages_import_their_modules_on_first_use():
    import subprocess
    import sys

    code = ("import sys, analysis.models, analysis.decision, analysis.cli\n"
            "analysis.cli.build_parser('run')\n"
            "heavy = [m for m in ('lifelines', 'pyfixest', 'statsmodels', 'scipy.stats')"
            " if m in sys.modules]\n"
            "from analysis.models import fit_churn, ModelResults\n"
            "from analysis.decision import tradeoff_analysis\n"
            "print(heavy, fit_churn.__module__, ModelResults.__module__,"
            " tradeoff_analysis.__module__)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout.split()
    assert out == ["[]", "analysis.models.survival", "analysis.models.tidy",
                   "analysis.decision.tradeoff"]
    with pytest.raises(AttributeError, match="no attribute 'nothing'"):
        import analysis.decision

        analysis.decision.nothing  # noqa: B018


def test_reads_must_name_notebooks_that_run_before(tmp_path):
    nbs = []
    for name, reads in (("10_a", None), ("20_b", ["10_a"]), ("30_c", ["40_d"]), ("40_d", None)):
        nb = _notebook([nbformat.v4.new_code_cell("x = 1")])
        if reads is not None:
            nb.metadata["kpisat"] = {"reads": reads}
        nbformat.write(nb, tmp_path / f"{name}.ipynb")
        nbs.append(tmp_path / f"{name}.ipynb")
    assert runner.reads_findings_of(nbs[0], nbs) is None
    assert runner.reads_findings_of(nbs[1], nbs) == [0]
    with pytest.raises(ParameterError, match=r"30_c.ipynb reads the findings of 40_d.*"
                                              r"notebooks before it: 10_a, 20_b"):
        runner.reads_findings_of(nbs[2], nbs)


def test_only_declared_notebooks_are_independent(tmp_path):
    notebooks = runner.discover_notebooks()
    assert [runner.is_independent(nb) for nb in notebooks] == [
        not nb.stem.startswith(("60_", "90_")) for nb in notebooks], (
        "60 and 90 read the findings of the notebooks before them")
    reads = {nb.stem: runner.reads_findings_of(nb, notebooks) for nb in notebooks}
    assert [notebooks[i].stem[:2] for i in reads["60_tradeoffs"]] == ["10", "20", "30"], (
        "the trade-offs read the headline effects (10-30), not the plan changes (50)")
    assert reads["90_quarterly_report"] is None  # the report reads everything
    nb = _notebook([nbformat.v4.new_code_cell("x = 1")])
    nbformat.write(nb, tmp_path / "10_plain.ipynb")
    assert not runner.is_independent(tmp_path / "10_plain.ipynb")


# ---------------------------------------------------------------- fit cache
class _LibraryResult:
    """Stands for a library's result object (holds closures, may not pickle)."""

    def __reduce__(self):
        raise TypeError("a library object that does not pickle")


def _fit(calls: list, value: float):
    from analysis.models.tidy import ModelFit

    calls.append(value)
    return ModelFit(effects=pd.DataFrame({"estimate": [value / 3]}),
                    summary=pd.DataFrame({"n_obs": [7]}),
                    extras={"table": pd.DataFrame({"x": [1.0]}), "library": _LibraryResult()})


def test_fit_cache_fits_once_and_returns_the_same_bits(tmp_path):
    from types import SimpleNamespace

    from analysis import fit_cache

    prepared, calls = SimpleNamespace(location=tmp_path), []
    first = fit_cache.cached(prepared, "model", _fit, calls, 1.0)
    again = fit_cache.cached(prepared, "model", _fit, calls, 1.0)
    assert calls == [1.0], "the second call loads the cached fit"
    pd.testing.assert_frame_equal(first.effects, again.effects, check_exact=True)
    assert again.effects["estimate"].iloc[0] == 1.0 / 3
    # library objects are dropped on a miss as on a hit: both calls see the same fit
    assert sorted(first.extras) == sorted(again.extras) == ["table"]
    assert isinstance(again, fit_cache.Fit)
    assert [p.name.split("-")[0] for p in (tmp_path / fit_cache.FOLDER).iterdir()] == ["model"]


def test_fit_cache_is_skipped_without_a_prepared_folder_or_when_disabled(tmp_path, monkeypatch):
    from types import SimpleNamespace

    from analysis import fit_cache

    calls = []
    fit_cache.cached(SimpleNamespace(location=None), "model", _fit, calls, 1.0)
    monkeypatch.setenv(fit_cache.ENV, "0")
    fit_cache.cached(SimpleNamespace(location=tmp_path), "model", _fit, calls, 2.0)
    fit_cache.cached(SimpleNamespace(location=tmp_path), "model", _fit, calls, 2.0)
    assert calls == [1.0, 2.0, 2.0]
    assert not (tmp_path / fit_cache.FOLDER).exists()


def test_fit_cache_refits_a_damaged_entry(tmp_path):
    from types import SimpleNamespace

    from analysis import fit_cache

    prepared, calls = SimpleNamespace(location=tmp_path), []
    fit_cache.cached(prepared, "model", _fit, calls, 1.0)
    entry = next((tmp_path / fit_cache.FOLDER).iterdir())
    entry.write_bytes(b"not a pickle")
    assert fit_cache.cached(prepared, "model", _fit, calls, 1.0).effects["estimate"].iloc[0] == 1 / 3
    assert calls == [1.0, 1.0]
