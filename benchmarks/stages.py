"""One benchmark stage per process: ``python -m benchmarks.stages STAGE --data D --work W``.

Each stage loads what the previous stages left in the work folder (untimed), times its
own work with ``time.perf_counter`` and reports the process's peak RSS (``VmHWM``),
so per-stage peaks are not inflated by earlier stages. The result is written as JSON to
``W/results/<stage>.json``. Stages call the product's public functions only; the one
exception is ``baseline_panel``, which times ``benchmarks.baseline_panel`` (pandas,
not part of the product) against ``analysis.derived.rep_quarter_panel``.
"""

from __future__ import annotations

import argparse
import contextlib
import cProfile
import io
import json
import os
import pstats
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

#: Stages in run order (the report stage renders the full run's folder).
STAGES = ("load_validate", "asof_derived", "baseline_panel", "model_churn", "model_renewal",
          "model_complaints", "model_csat", "model_nps", "model_bookings", "kpisat_run",
          "report")
MODEL_STAGES = tuple(s for s in STAGES if s.startswith("model_"))
ROOT = Path(__file__).resolve().parent.parent
FIXTURE_RUN = ROOT / "tests" / "fixtures" / "report"


def rss_mb() -> tuple[float, float]:
    """(current RSS, peak RSS) of this process in MiB, from /proc/self/status."""
    values = {}
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(("VmRSS:", "VmHWM:")):
                key, kb = line.split()[:2]
                values[key[:-1]] = int(kb) / 1024
    return values.get("VmRSS", 0.0), values.get("VmHWM", 0.0)


class Clock:
    """Times named steps of a stage; ``seconds`` is their sum."""

    def __init__(self) -> None:
        self.steps: dict[str, float] = {}

    @contextlib.contextmanager
    def step(self, name: str):
        t0 = time.perf_counter()
        try:
            yield
        finally:
            self.steps[name] = self.steps.get(name, 0.0) + time.perf_counter() - t0

    @property
    def seconds(self) -> float:
        return sum(self.steps.values())


# ---------------------------------------------------------------- frames on disk
def load_frames(folder: Path, names: list[str] | None = None) -> dict:
    import pandas as pd

    paths = sorted(folder.glob("*.parquet"))
    return {p.stem: pd.read_parquet(p) for p in paths if names is None or p.stem in names}


def meta(work: Path) -> dict:
    return json.loads((work / "meta.json").read_text())


# ---------------------------------------------------------------- stages
def stage_load_validate(data: Path, work: Path, clock: Clock) -> dict:
    """Read the folder source (CSV parse + fingerprint) and validate against the contract,
    each table written to Parquet and dropped as soon as it is checked (as ``prepare``
    does, so the peak is the product's)."""
    from analysis.prepare import resolve_quarter
    from analysis.sources import open_source
    from analysis.validate import validate

    with clock.step("read"):
        raw = open_source(str(data)).read()
    quarter = resolve_quarter(None, raw.as_of)
    reps = raw.tables["reps"]
    (work / "meta.json").write_text(json.dumps({
        "quarter": quarter, "as_of": raw.as_of.isoformat(),
        "rows_read": {k: len(v) for k, v in raw.tables.items()},
        "teams": int(reps["team_id"].nunique()), "reps": int(reps["rep_id"].nunique())}))
    del reps
    folder = work / "validated"
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)

    def keep(name, clean, frame, quarantined) -> None:
        raw.tables.pop(name, None)
        clean.to_parquet(folder / f"{name}.parquet", index=False)

    with clock.step("validate"):
        validated = validate(raw, raw.as_of, on_table=keep)
    quarantined = int(sum(validated.rows_quarantined.values()))
    return {"quarter": quarter, "rows_quarantined": quarantined}


def stage_asof_derived(data: Path, work: Path, clock: Clock) -> dict:
    """Cut the as-of view of the quarter's last day table by table, then build the
    derived tables one at a time in DuckDB from the view's Parquet files (as ``prepare``
    does)."""
    import pandas as pd

    from analysis.asof import as_of_view
    from analysis.derived import build_each
    from analysis.quarters import quarter_end

    m = meta(work)
    for sub in ("view", "derived"):
        shutil.rmtree(work / sub, ignore_errors=True)
        (work / sub).mkdir(parents=True)
    files: dict[str, Path] = {}
    with clock.step("as_of_view"):
        for path in sorted((work / "validated").glob("*.parquet")):
            view = as_of_view({path.stem: pd.read_parquet(path)}, quarter_end(m["quarter"]))
            files[path.stem] = work / "view" / path.name
            view[path.stem].to_parquet(files[path.stem], index=False)
            del view
    rows, quarters = {}, 0
    with clock.step("build_all"):
        for name, table in build_each(files, m["quarter"]):
            table.to_parquet(work / "derived" / f"{name}.parquet", index=False)
            rows[name] = len(table)
            if name == "rep_quarter_panel":
                quarters = int(table["quarter"].nunique())
            del table
    return {"rows": rows, "panel_quarters": quarters}


def stage_baseline_panel(data: Path, work: Path, clock: Clock) -> dict:
    """BASELINE: the panel by plain pandas, against the product's SQL panel, same process."""
    from analysis.derived import rep_quarter_panel
    from benchmarks.baseline_panel import compare, rep_quarter_panel_pandas

    m = meta(work)
    view = load_frames(work / "view")
    with clock.step("product_panel_sql"):
        product = rep_quarter_panel(view, m["quarter"])
    with clock.step("baseline_panel_pandas"):
        baseline = rep_quarter_panel_pandas(view, m["quarter"])
    s = clock.steps
    return {"ratio_baseline_over_product": s["baseline_panel_pandas"] / s["product_panel_sql"],
            **compare(baseline, product)}


def _derived(work: Path, name: str):
    return load_frames(work / "derived", [name])[name]


def _fit_note(fit) -> dict:
    est = fit.effects["estimable"] if "estimable" in fit.effects else []
    return {"n_obs": int(fit.summary["n_obs"].iloc[0]) if len(fit.summary) else 0,
            "estimable_terms": int(sum(bool(x) for x in est)), "terms": len(est)}


def stage_model_churn(data: Path, work: Path, clock: Clock) -> dict:
    """Stratified Cox model with time-varying plans (+ the KM curves and log-rank test),
    on the episode columns notebook 20 reads."""
    from types import SimpleNamespace

    from analysis import config
    from analysis.columns import read_columns
    from analysis.models import fit_churn, km_by_plan, logrank_by_plan  # imports untimed
    from analysis.prepare import LazyFrames

    cached = SimpleNamespace(location=work,
                             derived=LazyFrames(["survival_episodes"], work / "derived"))
    episodes = read_columns(cached, "derived", "survival_episodes",
                            config.CHURN_EPISODE_COLUMNS, categories=True)
    with clock.step("fit_churn"):
        fit = fit_churn(episodes)
    with clock.step("km_by_plan"):
        km_by_plan(episodes)
    with clock.step("logrank_by_plan"):
        logrank_by_plan(episodes)
    return {"fits": ["fit_churn"], **_fit_note(fit)}


def stage_model_renewal(data: Path, work: Path, clock: Clock) -> dict:
    """Fixed-effects logit of renewal, headline and with controls."""
    from analysis.models import fit_renewal  # imports untimed

    renewals = _derived(work, "renewal_table")
    with clock.step("fit_renewal"):
        fit = fit_renewal(renewals)
    with clock.step("fit_renewal_controls"):
        fit_renewal(renewals, controls=True)
    return {"fits": ["fit_renewal", "fit_renewal_controls"], **_fit_note(fit)}


def stage_model_complaints(data: Path, work: Path, clock: Clock) -> dict:
    """Poisson fixed-effects model of complaints with exposure."""
    from analysis.models import fit_complaints  # imports untimed

    panel = _derived(work, "rep_quarter_panel")
    with clock.step("fit_complaints"):
        fit = fit_complaints(panel)
    return {"fits": ["fit_complaints"], **_fit_note(fit)}


def _linear(work: Path, clock: Clock, outcome: str) -> dict:
    from analysis.models import fit_linear  # imports untimed

    panel = _derived(work, "rep_quarter_panel")
    with clock.step(f"fit_linear_{outcome}"):
        fit = fit_linear(panel, outcome)
    return {"fits": [f"fit_linear_{outcome}"], **_fit_note(fit)}


def stage_model_csat(data: Path, work: Path, clock: Clock) -> dict:
    """OLS fixed effects, CSAT."""
    return _linear(work, clock, "csat")


def stage_model_nps(data: Path, work: Path, clock: Clock) -> dict:
    """OLS fixed effects, NPS."""
    return _linear(work, clock, "nps")


def stage_model_bookings(data: Path, work: Path, clock: Clock) -> dict:
    """OLS fixed effects, log bookings."""
    return _linear(work, clock, "bookings")


def stage_kpisat_run(data: Path, work: Path, clock: Clock, *, sample: bool = False) -> dict:
    """``kpisat run`` end to end (prepare, every notebook, HTML), cold prepared cache.

    ``sample``: run on the sample company exactly as CI does (no ``--source``).
    """
    import resource

    out = work / "reports"
    shutil.rmtree(out, ignore_errors=True)
    cache = Path(tempfile.mkdtemp(prefix="prepared-", dir=work))
    env = {**os.environ, "KPISAT_PREPARED_CACHE": str(cache)}
    cmd = [str(Path(sys.executable).parent / "kpisat"), "run", "--out", str(out), "-q"]
    if not sample:
        cmd += ["--source", str(data)]
    try:
        with clock.step("kpisat_run"):
            done = subprocess.run(cmd, env=env, cwd=ROOT, capture_output=True, text=True)
    finally:
        shutil.rmtree(cache, ignore_errors=True)
    if done.returncode:
        raise RuntimeError(f"kpisat run failed ({done.returncode}): {done.stderr[-2000:]}")
    # largest single descendant (the kpisat process or one notebook kernel)
    child_peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    runs = sorted(p for p in out.glob("20*Q*") if (p / "manifest.json").exists())
    notebooks = {}
    if runs:
        manifest = json.loads((runs[-1] / "manifest.json").read_text())
        notebooks = {nb.get("name", nb.get("notebook", str(i))): nb.get("seconds")
                     for i, nb in enumerate(manifest.get("notebooks", []))}
        (work / "run_folder.txt").write_text(str(runs[-1]))
    return {"command": " ".join(cmd[1:]), "max_process_rss_mb": round(child_peak, 1),
            "notebook_seconds": notebooks, "source": "sample company" if sample else str(data)}


def stage_report(data: Path, work: Path, clock: Clock) -> dict:
    """Render the leadership report (``analysis.report.render_report``) of a run folder:
    the full run's when it ran, else the handmade fixture run."""
    from analysis.report import render_report

    marker = work / "run_folder.txt"
    source = Path(marker.read_text()) if marker.exists() else FIXTURE_RUN
    target = work / "report_run"
    shutil.rmtree(target, ignore_errors=True)
    shutil.copytree(source, target, ignore=shutil.ignore_patterns("*.ipynb", "index.html"))
    with clock.step("render_report"):
        path = render_report(target, lang="en")
    return {"run_folder": str(source), "html_kb": round(path.stat().st_size / 1024, 1)}


# ---------------------------------------------------------------- entry point
def run_stage(name: str, data: Path, work: Path, *, profile: bool = False,
              sample: bool = False) -> dict:
    """Run one stage in this process; return its result record."""
    fn = globals()[f"stage_{name}"]
    clock = Clock()
    kwargs = {"sample": sample} if name == "kpisat_run" else {}
    prof = cProfile.Profile() if profile else None
    t0 = time.perf_counter()
    if prof:
        prof.enable()
    info = fn(data, work, clock, **kwargs)
    if prof:
        prof.disable()
        _write_profile(prof, work / "profiles" / name)
    current, peak = rss_mb()
    return {"stage": name, "seconds": round(clock.seconds, 3),
            "steps": {k: round(v, 3) for k, v in clock.steps.items()},
            "peak_rss_mb": round(peak, 1), "rss_end_mb": round(current, 1),
            "wall_in_process": round(time.perf_counter() - t0, 3), **info}


def _write_profile(prof: cProfile.Profile, base: Path) -> None:
    base.parent.mkdir(parents=True, exist_ok=True)
    prof.dump_stats(str(base.with_suffix(".prof")))
    text = io.StringIO()
    stats = pstats.Stats(prof, stream=text)
    stats.sort_stats("cumulative").print_stats(30)
    stats.sort_stats("tottime").print_stats(25)
    base.with_suffix(".txt").write_text(text.getvalue())


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("stage", choices=STAGES)
    p.add_argument("--data", required=True, type=Path, help="generated company folder")
    p.add_argument("--work", required=True, type=Path, help="work folder of this benchmark")
    p.add_argument("--profile", action="store_true", help="run under cProfile")
    p.add_argument("--sample", action="store_true", help="kpisat_run on the sample company")
    a = p.parse_args(argv)
    import logging

    logging.basicConfig(level=logging.ERROR)
    rss_start, _ = rss_mb()
    a.work.mkdir(parents=True, exist_ok=True)
    result = run_stage(a.stage, a.data.resolve(), a.work.resolve(), profile=a.profile,
                       sample=a.sample)
    result["rss_start_mb"] = round(rss_start, 1)
    out = a.work / "results" / f"{a.stage}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
