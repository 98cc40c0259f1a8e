"""The reports index: ``OUT/index.html`` listing every published quarter, newest first.

A published quarter is a folder ``OUT/<YYYYQn>/`` with a ``findings.json``; staging
and failed runs (``.staging``, ``.failed``) are never listed. Each row shows the
quarter's headline numbers and links to its report. Self-contained HTML, autoescaped.
"""

from __future__ import annotations

import json
import logging
import re
from pathlib import Path
from typing import Any

import jinja2

from .i18n import Catalogue, check_lang
from .report_text import (format_metric, headline_effects, headline_names, is_clear,
                          recommendation_sentence)

log = logging.getLogger(__name__)

TEMPLATE_DIR = Path(__file__).resolve().parent / "templates"
_QUARTER_DIR = re.compile(r"^\d{4}Q[1-4]$")
#: Company metrics shown per quarter in the index.
HEADLINE_METRICS = 3


def published_quarters(out_dir: Path) -> list[tuple[str, Path]]:
    """``(quarter, folder)`` of every published quarter under ``out_dir``, newest first."""
    found = [(p.name, p) for p in Path(out_dir).iterdir()
             if p.is_dir() and _QUARTER_DIR.match(p.name) and (p / "findings.json").is_file()]
    return sorted(found, key=lambda qp: qp[0], reverse=True)


def _entry(quarter: str, folder: Path, cat: Catalogue) -> dict[str, Any] | None:
    try:
        findings = json.loads((folder / "findings.json").read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        log.warning("skipping %s in the archive: findings.json unreadable (%s)", folder, exc)
        return None
    company = {m.get("name"): m for m in findings.get("metrics") or []
               if m.get("scope") == "company" and m.get("quarter") == quarter}
    headline = [f"{cat.label('metrics', name)} {format_metric(name, company[name].get('value'), cat)}"
                for name in headline_names(findings)[:HEADLINE_METRICS]]
    effects = headline_effects(findings.get("effects"))
    rec = findings.get("recommendation")
    return dict(
        quarter=cat.quarter(quarter), as_of=cat.date(findings.get("as_of")),
        headline=cat.raw("fmt.list_sep").join(headline) or cat.t("fmt.missing"),
        effects=(cat.t("archive.effects_value", n_clear=sum(map(is_clear, effects)),
                       n_total=len(effects)) if effects else cat.t("fmt.missing")),
        recommendation=recommendation_sentence(rec, cat) if rec else cat.t("fmt.missing"),
        href=f"{quarter}/index.html", has_report=(folder / "index.html").is_file())


def render_archive(out_dir: Path, lang: str = "en") -> str:
    """The reports index of ``out_dir`` as an HTML string."""
    cat = Catalogue(check_lang(lang))
    entries = [e for q, p in published_quarters(out_dir) if (e := _entry(q, p, cat))]
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(TEMPLATE_DIR), autoescape=True,
                             undefined=jinja2.StrictUndefined, trim_blocks=True,
                             lstrip_blocks=True, keep_trailing_newline=True)
    return env.get_template("archive.html.j2").render(t=cat.data, lang=lang, entries=entries)


def update_archive(out_dir: Path, *, lang: str = "en") -> Path:
    """Write ``out_dir/index.html`` listing every published quarter, newest first.

    Parameters
    ----------
    out_dir : the reports folder (``OUT``) holding ``<YYYYQn>/findings.json`` folders.
    lang : "en" (default) or "zh".

    Returns
    -------
    Path
        The written index.
    """
    out_dir = Path(out_dir)
    out = out_dir / "index.html"
    tmp = out.with_suffix(".html.tmp")
    tmp.write_text(render_archive(out_dir, lang), encoding="utf-8")
    tmp.replace(out)
    log.info("wrote %s", out)
    return out
