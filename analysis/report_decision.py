"""The decision-support sections of the leadership report, from findings.

- "Did plan switches work?": event-study rows (models ``event_study_did2s`` and
  ``event_study_pretrend``) and the pre-trend tests (``event_study_pretrends``);
- "How much satisfaction weight?": ``recommendation`` (+ the frontier chart);
- "Rules of thumb vs our data": ``claims``;
- "For whom?": the subgroup rows (models ``*_by_<dimension>``) with ``p_adjusted``;
- "Survey-gaming check": ``survey_gaming`` — counts only, never a rep id.

Each function returns display strings / :class:`~analysis.report_tables.Table` or None
when its key is absent ("not available in this run"). Sentences state no more than
the intervals support. Text from the data stays text: the template escapes it.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from .config import OUTCOMES
from .i18n import Catalogue
from .report_tables import Table, _cell
from .report_text import _num, display, format_p, objective_text, outcome_text, p_text

ES_MODEL, PRETREND_MODEL = "event_study_did2s", "event_study_pretrend"
#: Event-study scales that are rates per customer-quarter: shown per 100.
ES_PER_100 = ("churned_per_customer_quarter", "complaints_per_customer_quarter")
#: Pre-trend p-values below this are "some sign" of different trends (below 0.05: reject).
PRETREND_WEAK = 0.10
SUBGROUP_MODEL = re.compile(r"_by_[a-z_]+$")
VERDICTS = ("supported", "contradicted", "not testable here")


def _ordered_outcomes(names: set[str]) -> list[str]:
    return [o for o in OUTCOMES if o in names] + sorted(names - set(OUTCOMES))


# -- event studies -------------------------------------------------------------------

def event_time(term: str) -> int | None:
    """``event_time_+2`` -> 2; None for other terms."""
    m = re.fullmatch(r"event_time_([+-]?\d+)", str(term))
    return int(m.group(1)) if m else None


def es_kind(scale: str) -> str:
    """How an event-study scale is shown: ``ratio`` (% change), ``pp`` (percentage
    points of a per-customer-quarter share), ``per100`` (per 100 customer-quarters) or
    ``points``."""
    if scale.startswith("log_"):
        return "ratio"
    if scale in ES_PER_100:
        return "pp" if scale.startswith("churned") else "per100"
    return "points"


def _es_value(x: float, kind: str) -> float:
    if kind == "ratio":
        return 100.0 * math.expm1(x)
    return 100.0 * x if kind in ("pp", "per100") else x


def event_study_frames(effects: list[dict] | None) -> dict[str, pd.DataFrame]:
    """Per outcome: event time, display-scale estimate and interval, estimable, lead."""
    rows: dict[str, list[dict]] = {}
    for e in effects or []:
        if e.get("model") not in (ES_MODEL, PRETREND_MODEL):
            continue
        t = event_time(e.get("term", ""))
        if t is None:
            continue
        kind = es_kind(str(e.get("scale", "")))
        d = display(e)  # None when not estimable
        vals = ({k: _es_value(float(e[k]), kind) for k in ("estimate", "conf_low", "conf_high")}
                if d is not None else dict(estimate=math.nan, conf_low=math.nan,
                                           conf_high=math.nan))
        rows.setdefault(str(e["outcome"]), []).append(
            dict(event_time=t, estimable=d is not None, lead=e["model"] == PRETREND_MODEL,
                 kind=kind, **vals))
    return {o: pd.DataFrame(rows[o]).sort_values("event_time").reset_index(drop=True)
            for o in _ordered_outcomes(set(rows))}


def _fmt_es(values: list[float], kind: str, cat: Catalogue) -> str:
    """``+0.22 to +0.33 points`` (or one value) on an event-study display scale."""
    biggest = max(abs(v) for v in values)
    digits = (2 if biggest < 1 else 1) if kind != "ratio" else (1 if biggest < 10 else 0)
    lo, hi = (cat.signed(v, digits) for v in (min(values, key=abs), max(values, key=abs)))
    if lo == hi:
        return cat.t(f"switches.unit_{kind}_one", x=lo)
    return cat.t(f"switches.unit_{kind}", lo=lo, hi=hi)


def _pre_clause(test: dict | None, frame: pd.DataFrame, cat: Catalogue) -> str:
    leads = frame[frame["lead"] & frame["estimable"]]
    n_clear = int(((leads["conf_low"] > 0) | (leads["conf_high"] < 0)).sum())
    p = _num((test or {}).get("p_value"))
    if p is None:
        note = str((test or {}).get("note") or cat.t("magnitude.insufficient"))
        return cat.t("switches.pre_untested", note=note)
    args = dict(p=format_p(p, cat), k=n_clear, n=len(leads))
    if p < 0.05:
        return cat.t("switches.pre_rejected", **args)
    if p < PRETREND_WEAK or n_clear:
        return cat.t("switches.pre_some" if n_clear else "switches.pre_weak", **args)
    return cat.t("switches.pre_ok", **args)


def _post_clause(frame: pd.DataFrame, outcome: str, cat: Catalogue) -> str:
    lags = frame[~frame["lead"] & frame["estimable"]]
    if lags.empty:
        return cat.t("switches.post_none_estimable")
    up = lags[lags["conf_low"] > 0]
    down = lags[lags["conf_high"] < 0]
    measure = outcome_text(cat, outcome, "measure")
    if up.empty and down.empty:
        return cat.t("switches.post_no_clear", n=len(lags))
    if not up.empty and not down.empty:
        return cat.t("switches.post_mixed", up=len(up), down=len(down), n=len(lags))
    part, direction = (up, "up") if not up.empty else (down, "down")
    kind = str(lags["kind"].iloc[0])
    measure = cat.raw(f"switches.measures.{outcome}", measure)
    return cat.t(f"switches.post_{direction}", measure=measure, k=len(part), n=len(lags),
                 range=_fmt_es([float(x) for x in part["estimate"]], kind, cat))


@dataclass
class SwitchFinding:
    """One outcome of the event studies: its sentence and whether the pre-test failed."""

    outcome: str
    label: str
    sentence: str
    caution: bool


def switch_sentences(findings: dict, cat: Catalogue) -> list[SwitchFinding]:
    """One sentence per event-study outcome: pre-trend test, then after the switch."""
    frames = event_study_frames(findings.get("effects"))
    tests = {str(t.get("outcome")): t for t in findings.get("event_study_pretrends") or []}
    out = []
    for outcome, frame in frames.items():
        test = tests.get(outcome)
        p = _num((test or {}).get("p_value"))
        pre = _pre_clause(test, frame, cat)
        post = _post_clause(frame, outcome, cat)
        out.append(SwitchFinding(outcome, outcome_text(cat, outcome, "label"),
                                 cat.t("switches.sentence", pre=pre, post=post),
                                 caution=p is None or p < PRETREND_WEAK))
    return out


# -- recommendation ------------------------------------------------------------------

@dataclass
class Recommendation:
    """The satisfaction-weight recommendation as display text."""

    sentence: str
    detail: str
    note: str


def recommendation_block(rec: dict | None, frontier: pd.DataFrame | None,
                         cat: Catalogue) -> Recommendation | None:
    """The recommendation (range, objective, best weight on the frontier, note)."""
    if not rec or not rec.get("range"):
        return None
    lo, hi = (100 * float(x) for x in rec["range"])
    term = cat.label("terms", str(rec.get("term")))
    objective = objective_text(rec, cat)
    sentence = cat.t("decision.recommendation", term=term, range=cat.pct_range(lo, hi),
                     objective=objective)
    detail = ""
    if (frontier is not None and not frontier.empty
            and {"weight", "objective"} <= set(frontier.columns)):
        f = frontier.sort_values("weight")
        best = f.loc[f["objective"].idxmax()]
        span = 100 * (float(f["weight"].max()) - float(f["weight"].min()))
        detail = cat.t("decision.best", term=term, best=cat.pct(100 * float(best["weight"])),
                       objective=objective)
        if span > 0 and (hi - lo) >= 0.5 * span:
            detail += " " + cat.t("decision.wide", range=cat.pct_range(lo, hi))
    return Recommendation(sentence, detail, str(rec.get("note") or ""))


# -- claims --------------------------------------------------------------------------

def claims_table(claims: list[dict] | None, cat: Catalogue) -> Table | None:
    """Claim, verdict (a badge with a symbol, not colour alone) and evidence."""
    if not claims:
        return None
    known = cat.data.get("claims", {})
    rows = []
    for c in claims:
        verdict = str(c.get("verdict", ""))
        slug = {"supported": "supported", "contradicted": "contradicted"}.get(verdict, "untested")
        text = str(c.get("claim", ""))
        rows.append([_cell(known.get(text, text)),
                     _cell(cat.raw(f"claims_table.verdict_{slug}"), f"badge badge-{slug}"),
                     _cell(str(c.get("evidence", "")), "evidence")])
    return Table([cat.t("claims_table.claim"), cat.t("claims_table.verdict"),
                  cat.t("claims_table.evidence")], rows, [cat.t("claims_table.legend")])


# -- heterogeneity -------------------------------------------------------------------

def is_subgroup(effect: dict) -> bool:
    """A heterogeneity row (``logit_fe_by_tenure``, ``ols_fe_by_scope``, ...)."""
    return bool(SUBGROUP_MODEL.search(str(effect.get("model", ""))))


def _subgroup_label(effect: dict, cat: Catalogue) -> str:
    term = str(effect.get("term", ""))
    dim, _, level = term.partition(":")[2].partition("=")
    names = cat.data.get("subgroups", {}).get(dim, {})
    dim_label = names.get("label", dim) if isinstance(names, dict) else dim

    def lvl(x: str) -> str:
        return str(names.get(x, x)) if isinstance(names, dict) else x

    m = re.match(r"difference (.+?) minus (.+?)(;|$)", str(effect.get("note", "")))
    if m:
        return cat.t("heterogeneity.difference", dim=dim_label, a=lvl(m.group(1)),
                     b=lvl(m.group(2)))
    return cat.t("heterogeneity.level", dim=dim_label, level=lvl(level))


def correction_text(effects: list[dict], cat: Catalogue) -> str:
    """The multiple-testing correction named in the rows' notes, in words."""
    notes = " ".join(str(e.get("note", "")) for e in effects)
    method = next((k for k in ("holm", "bonferroni", "benjamini") if k in notes.lower()), None)
    m = re.search(r"over the (\d+) tests", notes)
    n = int(m.group(1)) if m else sum(_num(e.get("p_adjusted")) is not None for e in effects)
    name = cat.t(f"heterogeneity.method_{method}") if method else cat.t("heterogeneity.method_unknown")
    return cat.t("heterogeneity.correction", method=name, n=n)


def heterogeneity_table(effects: list[dict] | None, cat: Catalogue) -> Table | None:
    """Subgroup effects of the satisfaction weight with raw and adjusted p-values."""
    rows_in = [e for e in effects or [] if is_subgroup(e)]
    if not rows_in:
        return None
    order = {o: i for i, o in enumerate(OUTCOMES)}
    rows_in.sort(key=lambda e: (order.get(e.get("outcome"), 99), str(e.get("model"))))
    rows = []
    for e in rows_in:
        d = display(e)
        if d is None:
            effect = _cell(cat.t("magnitude.insufficient"), "num muted")
        else:
            unit = cat.t(f"heterogeneity.unit_{d.kind}")
            effect = _cell(cat.t("heterogeneity.effect", est=cat.signed(d.estimate, d.digits),
                                 lo=cat.signed(d.low, d.digits), hi=cat.signed(d.high, d.digits),
                                 unit=unit), "num")
        p_adj = _num(e.get("p_adjusted"))
        rows.append([_cell(outcome_text(cat, str(e.get("outcome")), "label")),
                     _cell(_subgroup_label(e, cat)), effect,
                     _cell(p_text(e.get("p_value")) or cat.t("fmt.missing"), "num"),
                     _cell(p_text(p_adj) or cat.t("fmt.missing"),
                           "num" + (" clear" if p_adj is not None and p_adj < 0.05 else ""))])
    notes = [correction_text(rows_in, cat), cat.t("heterogeneity.caption")]
    return Table([cat.t("heterogeneity.outcome"), cat.t("heterogeneity.subgroup"),
                  cat.t("heterogeneity.effect_header"), cat.t("heterogeneity.p"),
                  cat.t("heterogeneity.p_adjusted")], rows, notes)


# -- survey gaming -------------------------------------------------------------------

def gaming_sentences(summary: dict | None, cat: Catalogue, small_cell: int) -> list[str] | None:
    """Counts of reps scored / flagged / below the small-cell threshold; no rep ids."""
    if not summary:
        return None
    rule = str(summary.get("rule", ""))
    z = re.search(r"exceeds ([0-9.]+)", rule)
    k = re.search(r">= ?(\d+)", rule)
    rule_text = (cat.t("gaming.rule", z=z.group(1), k=k.group(1)) if z and k
                 else (rule or cat.t("fmt.missing")))
    scored = int(summary.get("reps_scored") or 0)
    flagged = int(summary.get("n_flagged", len(summary.get("flagged") or [])) or 0)
    out = [cat.t("gaming.flagged_none" if flagged == 0 else "gaming.flagged", n=flagged,
                 scored=scored, rule=rule_text)]
    below = int(summary.get("reps_below_small_cell") or 0)
    if below:
        out.append(cat.t("gaming.below", n=below, k=k.group(1) if k else small_cell))
    rr, ps = _num(summary.get("median_response_rate")), _num(summary.get("median_perfect_share"))
    rho = _num(summary.get("spearman_response_rate_csat"))
    if rr is not None and ps is not None:
        out.append(cat.t("gaming.medians", rr=cat.pct(100 * rr), perfect=cat.pct(100 * ps)))
    if rho is not None:
        strength = "weak" if abs(rho) < 0.3 else ("moderate" if abs(rho) < 0.5 else "strong")
        out.append(cat.t("gaming.correlation", rho=f"{rho:.2f}".replace("-", "\u2212"),
                         strength=cat.t(f"gaming.strength_{strength}")))
    out.append(cat.t("gaming.no_names"))
    return out


@dataclass
class DecisionSections:
    """Everything the four decision sections print (None: not available in this run)."""

    switches: list[SwitchFinding] = field(default_factory=list)
    recommendation: Recommendation | None = None
    claims: Table | None = None
    heterogeneity: Table | None = None
    gaming: list[str] | None = None


def decision_sections(findings: dict, artifacts: dict[str, pd.DataFrame], cat: Catalogue,
                      small_cell: int) -> DecisionSections:
    """The text and tables of the decision-support sections."""
    effects: list[dict[str, Any]] = list(findings.get("effects") or [])
    return DecisionSections(
        switches=switch_sentences(findings, cat),
        recommendation=recommendation_block(findings.get("recommendation"),
                                            artifacts.get("frontier"), cat),
        claims=claims_table(findings.get("claims"), cat),
        heterogeneity=heterogeneity_table(effects, cat),
        gaming=gaming_sentences(findings.get("survey_gaming"), cat, small_cell))
