"""The charts of the leadership report: data from findings/artifacts, text from i18n.

Each ``*_chart`` function returns a :class:`Chart` (title, alt text, caption and the
PNG as a ``data:`` URI) or None when its data is missing from the run. Drawing is
done by :mod:`analysis.plots` under its theme; titles state the finding.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import matplotlib.pyplot as plt
import pandas as pd

from . import plots
from .config import OUTCOMES, TERMS, WEIGHTS
from .i18n import Catalogue
from .report_text import display, headline_effects, is_clear, objective_text, outcome_text

log = logging.getLogger(__name__)

#: Tenure (days) at which survival curves are compared in the chart title.
SURVIVAL_HORIZON = 365


@dataclass(frozen=True)
class Chart:
    """One rendered chart."""

    key: str
    title: str
    alt: str
    caption: str
    uri: str
    font_file: Path


def _finish(key: str, fig: plt.Figure, title: str, alt: str, caption: str) -> Chart:
    font_file = plots.used_font_file(fig.axes[0])
    return Chart(key, title, alt, caption, plots.to_png_data_uri(fig), font_file)


def _effect_frame(effects: list[dict], outcome: str, cat: Catalogue) -> pd.DataFrame:
    rows = [e for e in effects if e.get("outcome") == outcome]
    terms = [t for t in TERMS if any(e.get("term") == t for e in rows)]
    terms += sorted({str(e.get("term")) for e in rows} - set(terms))
    out = []
    for term in terms:
        e = next(r for r in rows if r.get("term") == term)
        d = display(e)
        out.append(dict(label=cat.label("terms", term), estimable=d is not None,
                        estimate=d.estimate if d else float("nan"),
                        conf_low=d.low if d else float("nan"),
                        conf_high=d.high if d else float("nan")))
    return pd.DataFrame(out)


def effects_chart(effects: list[dict], cat: Catalogue) -> Chart | None:
    """Small multiples: every effect with its interval, one panel per outcome."""
    if not effects:
        return None
    outcomes = [o for o in OUTCOMES if any(e.get("outcome") == o for e in effects)]
    outcomes += sorted({str(e.get("outcome")) for e in effects} - set(outcomes))
    ncols = 2 if len(outcomes) > 1 else 1
    nrows = -(-len(outcomes) // ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(plots.FULL_WIDTH, 2.35 * nrows + 0.7),
                             layout="constrained", squeeze=False)
    for ax, outcome in zip(axes.flat, outcomes):
        plots.plot_effects(_effect_frame(effects, outcome, cat), ax=ax,
                           title=outcome_text(cat, outcome, "label"),
                           xlabel=outcome_text(cat, outcome, "axis"),
                           insufficient_label=cat.t("charts.insufficient"))
    for ax in list(axes.flat)[len(outcomes):]:
        ax.set_visible(False)
    clear = [e for e in effects if is_clear(e)]
    if clear:
        top = max(clear, key=lambda e: abs(e["estimate"] / e["std_error"])
                  if e.get("std_error") else 0.0)
        title = cat.t("charts.effects_title", n_clear=len(clear), n_total=len(effects),
                      term=cat.label("terms", str(top["term"])),
                      outcome=outcome_text(cat, str(top["outcome"]), "measure"))
    else:
        title = cat.t("charts.effects_title_none")
    fig.suptitle(title, x=0.0, ha="left", fontweight="bold", fontsize=12.5)
    return _finish("effects", fig, title, cat.t("charts.effects_alt"),
                   cat.t("charts.effects_caption"))


def _survival_at(curve: pd.DataFrame, day: float) -> float:
    before = curve[curve["timeline"] <= day].sort_values("timeline")
    return float(before["survival"].iloc[-1]) if len(before) else 1.0


def survival_chart(km: pd.DataFrame | None, cat: Catalogue) -> Chart | None:
    """Kaplan–Meier curves by plan; the title compares plans at one year."""
    if km is None or km.empty or not {"plan_name", "timeline", "survival"} <= set(km.columns):
        return None
    km = km.assign(plan_name=km["plan_name"].astype(str))
    at = {name: 100 * _survival_at(c, SURVIVAL_HORIZON)
          for name, c in km.groupby("plan_name", sort=True)}
    best = max(at, key=lambda k: (at[k], k))
    worst = min(at, key=lambda k: (at[k], k))
    if len(at) > 1:
        title = cat.t("charts.survival_title", best=best, worst=worst, days=SURVIVAL_HORIZON,
                      best_pct=f"{at[best]:.0f}", worst_pct=f"{at[worst]:.0f}")
    else:
        title = cat.t("charts.survival_title_one", best=best, days=SURVIVAL_HORIZON,
                      best_pct=f"{at[best]:.0f}")
    ax = plots.plot_survival(km, title=_wrap(title), xlabel=cat.t("charts.survival_x"),
                             ylabel=cat.t("charts.survival_y"))
    return _finish("survival", ax.figure, title, cat.t("charts.survival_alt"),
                   cat.t("charts.survival_caption"))


def frontier_chart(frontier: pd.DataFrame | None, rec: dict | None,
                   cat: Catalogue) -> Chart | None:
    """The objective against the recommended term's weight (only with a recommendation)."""
    if (not rec or not rec.get("range") or frontier is None or frontier.empty
            or not {"weight", "objective"} <= set(frontier.columns)):
        return None
    term = cat.label("terms", str(rec.get("term")))
    objective = objective_text(rec, cat)
    lo, hi = (100 * float(x) for x in rec["range"])
    title = cat.t("charts.frontier_title", objective=objective[:1].upper() + objective[1:],
                  term=term, range=cat.pct_range(lo, hi))
    ax = plots.plot_frontier(frontier, recommended=rec["range"], title=_wrap(title),
                             xlabel=cat.t("charts.frontier_x", term=term[:1].upper() + term[1:]),
                             ylabel=cat.t("charts.frontier_y",
                                          objective=objective[:1].upper() + objective[1:]),
                             band_label=cat.t("charts.frontier_band"))
    return _finish("frontier", ax.figure, title, cat.t("charts.frontier_alt"),
                   cat.t("charts.frontier_caption", objective=objective, term=term))


def plan_weights_chart(plans_df: pd.DataFrame | None, cat: Catalogue) -> Chart | None:
    """Stacked bars of the weights of each plan in force."""
    if plans_df is None or plans_df.empty or "plan_name" not in plans_df.columns:
        return None
    weights = [w for w in WEIGHTS if w in plans_df.columns]
    if not weights:
        return None
    key = "plan_id" if "plan_id" in plans_df.columns else "plan_name"
    per_plan = (plans_df.drop_duplicates(key).sort_values("plan_name")
                .assign(plan_name=lambda d: d["plan_name"].astype(str)))
    rev = 100 * per_plan["w_revenue"] if "w_revenue" in per_plan else pd.Series([0.0])
    title = cat.t("charts.plans_title", lo=f"{rev.min():.0f}", hi=f"{rev.max():.0f}")
    labels = {w: cat.label("terms", w) for w in weights}
    ax = plots.plot_plan_weights(per_plan, labels=labels, title=_wrap(title),
                                 xlabel=cat.t("charts.plans_x"))
    return _finish("plans", ax.figure, title, cat.t("charts.plans_alt"),
                   cat.t("charts.plans_caption"))


def event_study_chart(effects: list[dict], cat: Catalogue) -> Chart | None:
    """Small multiples of the plan-switch event studies, one panel per outcome."""
    from .report_decision import event_study_frames

    frames = {o: f for o, f in event_study_frames(effects).items() if f["estimable"].any()}
    if not frames:
        return None
    ncols = min(3, len(frames))
    nrows = -(-len(frames) // ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(plots.FULL_WIDTH, 2.5 * nrows + 0.8),
                             layout="constrained", squeeze=False)
    for ax, (outcome, frame) in zip(axes.flat, frames.items()):
        kind = str(frame["kind"].iloc[0])
        plots.plot_event_study(frame, ax=ax, title=outcome_text(cat, outcome, "label"),
                               ylabel=cat.t(f"charts.event_y_{kind}"),
                               pre_label=cat.t("charts.event_pre"),
                               post_label=cat.t("charts.event_post"))
    handles, labels = axes.flat[0].get_legend_handles_labels()
    unique = dict(zip(labels, handles))
    for ax in list(axes.flat)[len(frames):]:
        ax.set_visible(False)
    fig.supxlabel(cat.t("charts.event_x"), fontsize=9.5)
    fig.legend(unique.values(), unique.keys(), loc="outside lower right", ncol=2, fontsize=9)
    title = cat.t("charts.event_title")
    fig.suptitle(title, x=0.0, ha="left", fontweight="bold", fontsize=12.5)
    return _finish("event_study", fig, title, cat.t("charts.event_alt"),
                   cat.t("charts.event_caption"))


def _wrap(title: str, width: int = 95) -> str:
    """Break a long title once, at a space near the middle (CJK titles are short)."""
    if len(title) <= width or " " not in title:
        return title
    mid = len(title) // 2
    cut = min((i for i, ch in enumerate(title) if ch == " "), key=lambda i: abs(i - mid))
    return title[:cut] + "\n" + title[cut + 1:]


def all_charts(findings: dict, artifacts: dict[str, pd.DataFrame], lang: str,
               cat: Catalogue) -> list[Chart]:
    """Every chart the run's data supports, in report order, drawn in the theme."""
    with plots.theme(lang):
        charts = [
            effects_chart(headline_effects(findings.get("effects")), cat),
            survival_chart(artifacts.get("km_by_plan"), cat),
        ]
    return [c for c in charts if c is not None]


def decision_charts(findings: dict, artifacts: dict[str, pd.DataFrame], lang: str,
                    cat: Catalogue) -> dict[str, Chart | None]:
    """The charts of the decision sections: event studies and the frontier."""
    with plots.theme(lang):
        return {"event_study": event_study_chart(list(findings.get("effects") or []), cat),
                "frontier": frontier_chart(artifacts.get("frontier"),
                                           findings.get("recommendation"), cat)}


def plans_chart(artifacts: dict[str, pd.DataFrame], lang: str, cat: Catalogue) -> Chart | None:
    """The plan-weights chart of the "plans in force" section, drawn in the theme."""
    with plots.theme(lang):
        return plan_weights_chart(artifacts.get("plans"), cat)
