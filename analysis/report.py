"""The leadership report of one run: ``run_dir/index.html`` from findings.

:func:`render_report` reads ``findings.json``, ``manifest.json`` and the optional
``artifacts/*.parquet`` of a run folder (docs/architecture.md) and writes one
self-contained HTML file: inline CSS, charts as inline PNG, no scripts, no network.
Every number comes from findings; every string from the i18n catalogue; every value
from the data is escaped by Jinja2's autoescape. Missing optional pieces render as
"not available in this run".

Same inputs give byte-identical HTML except the ``data-rendered-at`` stamp.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import jinja2
import pandas as pd

from . import __version__, plots
from .config import MIN_CLUSTERS, SMALL_CELL
from .errors import InputError
from .i18n import Catalogue, check_lang
from .quarters import quarter_end
from .report_charts import all_charts, decision_charts, plans_chart
from .report_decision import decision_sections
from .report_tables import data_quality, headline_metrics, plans_in_force, team_table
from .report_text import headline_effects, summary_sentences

log = logging.getLogger(__name__)

TEMPLATE_DIR = Path(__file__).resolve().parent / "templates"


@dataclass
class Run:
    """What a run folder holds for the report."""

    findings: dict[str, Any]
    manifest: dict[str, Any] = field(default_factory=dict)
    artifacts: dict[str, pd.DataFrame] = field(default_factory=dict)


def _read_json(path: Path, *, required: bool) -> dict[str, Any]:
    if not path.exists():
        if required:
            raise InputError("the run folder has no findings.json", file=str(path),
                             hint="run the analysis notebooks before the report")
        log.warning("%s is missing; provenance will show dashes", path)
        return {}
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise InputError(f"not valid JSON ({exc.msg} at line {exc.lineno})", file=str(path),
                         hint="re-run the run that wrote it") from exc


def load_run(run_dir: Path) -> Run:
    """Read findings (required), manifest and artifacts (optional) of a run folder."""
    run_dir = Path(run_dir)
    findings = _read_json(run_dir / "findings.json", required=True)
    manifest = _read_json(run_dir / "manifest.json", required=False)
    artifacts = {}
    for path in sorted((run_dir / "artifacts").glob("*.parquet")):
        try:
            artifacts[path.stem] = pd.read_parquet(path)
        except Exception as exc:  # noqa: BLE001 — a broken chart input must not sink the report
            log.warning("artifact %s unreadable, its chart is skipped: %s", path, exc)
    return Run(findings, manifest, artifacts)


def chart_font_file(lang: str = "en") -> Path:
    """The font file charts in ``lang`` are drawn with (raises MissingFontError for zh)."""
    return plots.chart_font(check_lang(lang)).path


def _environment() -> jinja2.Environment:
    return jinja2.Environment(loader=jinja2.FileSystemLoader(TEMPLATE_DIR), autoescape=True,
                              undefined=jinja2.StrictUndefined, trim_blocks=True,
                              lstrip_blocks=True, keep_trailing_newline=True)


def _first(*values: Any) -> Any:
    return next((v for v in values if v not in (None, "", {}, [])), None)


def _title_context(run: Run, cat: Catalogue) -> dict[str, Any]:
    f, man = run.findings, run.manifest
    quarter = str(f.get("quarter") or man.get("parameters", {}).get("quarter", ""))
    as_of = _first(f.get("as_of"), man.get("parameters", {}).get("as_of"),
                   quarter_end(quarter).isoformat() if quarter else None)
    period = _first(f.get("data_period"), man.get("data_period")) or {}
    period_label = (cat.t("meta.period_value", start=cat.date(period.get("start")),
                          end=cat.date(period.get("end"))) if period else cat.t("fmt.missing"))
    source = _first(f.get("source_description"), man.get("source_description"),
                    man.get("parameters", {}).get("source")) or cat.t("fmt.missing")
    return dict(quarter=quarter, quarter_label=cat.quarter(quarter),
                subtitle=cat.t("subtitle", quarter=cat.quarter(quarter)),
                summary_intro=cat.t("summary.intro", quarter=cat.quarter(quarter)),
                as_of_label=cat.date(as_of), period_label=period_label,
                source_description=str(source))


def _provenance(run: Run, cat: Catalogue, rendered_at: datetime) -> dict[str, Any]:
    man = run.manifest
    start = _first(man.get("started_at"), man.get("start_time"))
    end = _first(man.get("finished_at"), man.get("end_time"))
    params = man.get("parameters") or {}
    missing = cat.t("fmt.missing")
    return dict(
        version=_first(man.get("version"), man.get("package_version")) or __version__,
        commit=_first(man.get("git_commit"), man.get("commit")) or missing,
        fingerprint=_first(man.get("fingerprint"), man.get("input_fingerprint")) or missing,
        run_label=(cat.t("provenance.run_value", start=cat.datetime(start), end=cat.datetime(end))
                   if start else missing),
        parameters=", ".join(f"{k}={v!s}" for k, v in sorted(params.items())) or missing,
        rendered_at=cat.datetime(rendered_at))


def _methods(run: Run, cat: Catalogue) -> list[dict[str, str]]:
    effects = headline_effects(run.findings.get("effects"))
    clusters = [int(e["n_clusters"]) for e in effects if e.get("n_clusters") is not None]
    args = dict(n_clusters=max(clusters) if clusters else cat.t("fmt.missing"),
                min_clusters=MIN_CLUSTERS, small_cell=SMALL_CELL,
                n_effects=len(effects) or cat.t("fmt.missing"))
    return [dict(title=item["title"], text=item["text"].format(**args))
            for item in cat.raw("methods")]


def build_context(run: Run, lang: str, *, rendered_at: datetime) -> dict[str, Any]:
    """Everything the template prints, as display strings and rendered charts."""
    cat = Catalogue(lang)
    font = plots.chart_font(lang)
    charts = all_charts(run.findings, run.artifacts, lang, cat)
    extra = decision_charts(run.findings, run.artifacts, lang, cat)
    fonts = {c.font_file for c in [*charts, *extra.values()] if c is not None}
    if fonts - {font.path}:
        log.warning("charts resolved fonts %s, expected %s", sorted(map(str, fonts)), font.path)
    plans_df = run.artifacts.get("plans")
    return dict(
        t=cat.data, lang=lang, chart_font=str(font.path), chart_font_name=font.family,
        summary=summary_sentences(run.findings, cat),
        metrics=headline_metrics(run.findings, cat),
        charts=charts,
        charts_missing=[cat.t(f"charts.{key}_missing") for key in ("effects", "survival")
                        if all(c.key != key for c in charts)],
        plans_chart=plans_chart(run.artifacts, lang, cat),
        decision=decision_sections(run.findings, run.artifacts, cat, SMALL_CELL),
        event_chart=extra["event_study"], frontier_chart=extra["frontier"],
        plans=plans_in_force(plans_df, cat),
        teams=team_table(run.findings, plans_df, cat, SMALL_CELL),
        dq=data_quality(run.findings, cat),
        methods=_methods(run, cat),
        **_title_context(run, cat),
        **_provenance(run, cat, rendered_at),
    )


def render_html(run: Run, lang: str = "en", *, rendered_at: datetime | None = None) -> str:
    """The report of ``run`` as an HTML string."""
    lang = check_lang(lang)
    rendered_at = rendered_at or datetime.now(timezone.utc).replace(microsecond=0)
    context = build_context(run, lang, rendered_at=rendered_at)
    return _environment().get_template("report.html.j2").render(**context)


def render_report(run_dir: Path, *, lang: str = "en") -> Path:
    """Write the leadership report of a run folder to ``run_dir/index.html``.

    Parameters
    ----------
    run_dir : a run folder with ``findings.json`` and, optionally, ``manifest.json``
        and ``artifacts/*.parquet`` (``km_by_plan``, ``plans``, ``frontier``).
    lang : "en" (default) or "zh" (Simplified Chinese; needs a CJK font).

    Returns
    -------
    Path
        The written ``index.html``.

    Raises
    ------
    InputError
        ``findings.json`` is missing or not JSON.
    MissingFontError
        ``lang="zh"`` and no CJK font is installed.
    ParameterError
        ``lang`` is not supported.
    """
    t0 = time.perf_counter()
    run_dir = Path(run_dir)
    html = render_html(load_run(run_dir), lang)
    out = run_dir / "index.html"
    tmp = out.with_suffix(".html.tmp")
    tmp.write_text(html, encoding="utf-8")
    tmp.replace(out)
    log.info("wrote %s (%s, %.0f KB) in %.1f s", out, lang, out.stat().st_size / 1024,
             time.perf_counter() - t0)
    return out
