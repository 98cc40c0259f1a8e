"""Plain-language sentences of the leadership report, generated from findings.

Every sentence states no more than its interval supports: an effect whose 95%
interval includes zero is "no clear effect", whatever its point estimate; a
non-estimable effect is "insufficient data" with the reason, never a number.
Effects on a log scale are restated as % changes (``100 * (exp(x) - 1)``); effects
on a points scale stay in points.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from .config import OUTCOMES, TERMS
from .i18n import Catalogue
from .quarters import shift_quarter

#: |estimate / std_error| at or above this (two-sided p < 0.001) is "strong evidence".
STRONG_Z = 3.29
#: Most effect sentences in the executive summary (the rest are summarised in one).
MAX_EFFECT_SENTENCES = 3
MAX_SENTENCES = 6
MIN_SENTENCES = 3
Z95 = 1.959964
#: The headline model names of findings.md (churn, renewal, complaints, csat/nps/bookings).
#: Only rows of these models reach the effects chart and the executive summary; event
#: studies, subgroup models, AMEs and control variants have their own sections.
HEADLINE_MODELS: tuple[str, ...] = ("cox_stratified_tv", "logit_fe", "poisson_fe", "ols_fe")


@dataclass(frozen=True)
class Display:
    """An effect on its display scale: % change ("ratio") or points."""

    kind: str
    estimate: float
    low: float
    high: float

    @property
    def clear(self) -> bool:
        """The interval excludes zero."""
        return self.low > 0 or self.high < 0

    @property
    def digits(self) -> int:
        """Decimals that keep small numbers readable."""
        biggest = max(abs(self.estimate), abs(self.low), abs(self.high))
        if self.kind == "points":
            return 2 if biggest < 1 else 1
        return 1 if biggest < 10 else 0


def _num(x: Any) -> float | None:
    if x is None:
        return None
    try:
        x = float(x)
    except (TypeError, ValueError):
        return None
    return None if math.isnan(x) else x


def headline_effects(effects: list[dict] | None) -> list[dict]:
    """The rows of ``effects`` whose model is one of :data:`HEADLINE_MODELS`."""
    return [e for e in effects or [] if e.get("model") in HEADLINE_MODELS]


def p_text(p: Any) -> str | None:
    """A p-value's digits: ``0.68``, ``0.004``, ``<0.001`` (None when missing)."""
    x = _num(p)
    if x is None:
        return None
    if x < 0.001:
        return "<0.001"
    return f"{x:.3f}" if x < 0.01 else f"{x:.2f}"


def format_p(p: Any, cat: Catalogue) -> str:
    """A p-value as ``p = 0.68`` / ``p < 0.001`` ("—" when missing)."""
    text = p_text(p)
    if text is None:
        return cat.t("fmt.missing")
    if text.startswith("<"):
        return cat.t("fmt.p_below", x=text[1:])
    return cat.t("fmt.p", x=text)


def is_estimable(effect: dict) -> bool:
    """The effect carries an estimate and a complete interval."""
    return bool(effect.get("estimable", True)) and all(
        _num(effect.get(k)) is not None for k in ("estimate", "conf_low", "conf_high"))


def display(effect: dict) -> Display | None:
    """The effect restated on its business scale, or None if not estimable."""
    if not is_estimable(effect):
        return None
    est, lo, hi = (float(effect[k]) for k in ("estimate", "conf_low", "conf_high"))
    scale = str(effect.get("scale", ""))
    if scale.startswith("log_"):
        def conv(x: float) -> float:
            return 100.0 * math.expm1(x)
        return Display("ratio", conv(est), conv(lo), conv(hi))
    return Display("points", est, lo, hi)


def is_clear(effect: dict) -> bool:
    """Estimable and its 95% interval excludes zero."""
    d = display(effect)
    return d is not None and d.clear


def _strength(effect: dict) -> float:
    se = _num(effect.get("std_error"))
    est = _num(effect.get("estimate")) or 0.0
    return abs(est / se) if se else 0.0


def outcome_text(cat: Catalogue, outcome: str, field: str) -> str:
    """A catalogue field (label/measure/axis) of an outcome; the name if unknown."""
    entry = cat.data.get("outcomes", {}).get(outcome)
    return str(entry[field]) if isinstance(entry, dict) and field in entry else outcome


def _move(effect: dict, cat: Catalogue) -> str:
    per = _num(effect.get("per")) or 0.10
    return cat.t("summary.move", pts=f"{100 * per:.0f}",
                 term=cat.label("terms", str(effect.get("term"))))


def magnitude(effect: dict, cat: Catalogue) -> tuple[str, str]:
    """``("11% lower churn hazard", "6–16%")`` for a clear effect."""
    d = display(effect)
    assert d is not None and d.clear
    measure = outcome_text(cat, str(effect.get("outcome")), "measure")
    direction = "down" if d.estimate < 0 else "up"
    near, far = sorted((abs(d.low), abs(d.high)))
    fmt = f"{{:,.{d.digits}f}}"
    text = cat.t(f"magnitude.{d.kind}_{direction}", x=fmt.format(abs(d.estimate)),
                 measure=measure)
    interval = cat.t(f"magnitude.{d.kind}_interval", lo=fmt.format(near), hi=fmt.format(far))
    return text, interval


def signed_interval(effect: dict, cat: Catalogue) -> str:
    """The interval with explicit signs: ``−5% to +8%``."""
    d = display(effect)
    assert d is not None
    return cat.t(f"magnitude.{d.kind}_interval_signed", lo=cat.signed(d.low, d.digits),
                 hi=cat.signed(d.high, d.digits))


def effect_sentence(effect: dict, cat: Catalogue) -> str:
    """One sentence stating an effect as strongly as its interval allows."""
    outcome = str(effect.get("outcome"))
    if display(effect) is None:
        return cat.t("summary.not_estimable_one",
                     term=cat.label("terms", str(effect.get("term"))),
                     outcome=outcome_text(cat, outcome, "measure"),
                     note=effect.get("note") or cat.t("magnitude.insufficient"))
    if not is_clear(effect):
        return cat.t("summary.no_clear", move=_move(effect, cat),
                     measure=outcome_text(cat, outcome, "measure"),
                     interval=signed_interval(effect, cat))
    text, interval = magnitude(effect, cat)
    evidence = "strong" if _strength(effect) >= STRONG_Z else "moderate"
    return cat.t("summary.clear", move=_move(effect, cat), magnitude=text, interval=interval,
                 evidence=cat.t(f"summary.evidence_{evidence}"))


def _order(effect: dict) -> tuple[int, int]:
    o, t = effect.get("outcome"), effect.get("term")
    return (OUTCOMES.index(o) if o in OUTCOMES else len(OUTCOMES),
            TERMS.index(t) if t in TERMS else len(TERMS))


def effect_sentences(effects: list[dict], cat: Catalogue) -> list[str]:
    """Sentences about the effects: the clearest few, then one line for the rest."""
    if not effects:
        return [cat.t("summary.no_effects")]
    clear = sorted((e for e in effects if is_clear(e)), key=lambda e: -_strength(e))
    unclear = sorted((e for e in effects if is_estimable(e) and not is_clear(e)),
                     key=_order)
    missing = sorted((e for e in effects if not is_estimable(e)), key=_order)
    out = [effect_sentence(e, cat) for e in clear[:MAX_EFFECT_SENTENCES]]
    # Clear effects beyond the first few are in the chart, not the summary.
    if unclear:
        out.append(cat.t("summary.others_no_clear", n=len(unclear)) if len(unclear) > 1
                   else effect_sentence(unclear[0], cat))
    if len(missing) == 1:
        out.append(effect_sentence(missing[0], cat))
    elif missing:
        first = missing[0]
        out.append(cat.t("summary.not_estimable", n=len(missing), total=len(effects),
                         term=cat.label("terms", str(first.get("term"))),
                         outcome=outcome_text(cat, str(first.get("outcome")), "measure"),
                         note=first.get("note") or cat.t("magnitude.insufficient")))
    return out


def recommendation_sentence(rec: dict | None, cat: Catalogue) -> str:
    """The weighting recommendation, or the line saying there is none."""
    if not rec or not rec.get("range"):
        return cat.t("summary.no_recommendation")
    lo, hi = (100 * float(x) for x in rec["range"])
    return cat.t("summary.recommendation", term=cat.label("terms", str(rec.get("term"))),
                 range=cat.pct_range(lo, hi), objective=objective_text(rec, cat))


def objective_text(rec: dict, cat: Catalogue) -> str:
    """The recommendation's objective in the report language (data text if unknown)."""
    objective = str(rec.get("objective", ""))
    return str(cat.data.get("objectives", {}).get(objective, objective))


# -- metrics -------------------------------------------------------------------------

def metric_unit(name: str, cat: Catalogue) -> str:
    """Unit kind of a metric: share (0–1, shown in %), percent (0–100), points, score,
    rate, money, count."""
    entry = cat.data.get("metrics", {}).get(name)
    if isinstance(entry, dict):
        return str(entry.get("unit", "rate"))
    return "share" if name.startswith("pct_") or name.endswith("_rate") else "rate"


def format_metric(name: str, value: Any, cat: Catalogue) -> str:
    """A metric value in its unit ("—" when missing)."""
    x = _num(value)
    if x is None:
        return cat.t("fmt.missing")
    unit = metric_unit(name, cat)
    if unit in ("share", "percent"):
        return cat.pct(100 * x if unit == "share" else x, 1)
    digits = {"score": 2, "money": 0, "count": 0}.get(unit, 1)
    return cat.number(x, digits)


def format_interval(name: str, low: Any, high: Any, cat: Catalogue) -> str:
    """A metric's interval, ``27.9–34.5`` ("—" when missing)."""
    lo, hi = _num(low), _num(high)
    if lo is None or hi is None:
        return cat.t("fmt.missing")
    return f"{format_metric(name, lo, cat)}–{format_metric(name, hi, cat)}"


def format_change(name: str, diff: float, cat: Catalogue) -> str:
    """A change of a metric with sign and unit (shares in percentage points)."""
    unit = metric_unit(name, cat)
    digits = {"score": 2, "money": 0, "count": 0}.get(unit, 1)
    value = 100 * diff if unit == "share" else diff
    suffix = cat.raw(f"units.{unit}", "")
    sep = " " if cat.lang == "en" and suffix else ""
    return f"{cat.signed(value, digits)}{sep}{suffix}"


@dataclass(frozen=True)
class Change:
    """Quarter-over-quarter change of a metric and whether it exceeds its uncertainty."""

    diff: float
    clear: bool | None  # None: no intervals to judge by


def _se(row: dict) -> float | None:
    lo, hi = _num(row.get("conf_low")), _num(row.get("conf_high"))
    return None if lo is None or hi is None else (hi - lo) / (2 * Z95)


def change(current: dict, previous: dict | None) -> Change | None:
    """Change from ``previous`` to ``current``; clear if its 95% interval excludes zero.

    The two quarters' estimates are treated as independent (different respondents).
    """
    if previous is None:
        return None
    a, b = _num(current.get("value")), _num(previous.get("value"))
    if a is None or b is None:
        return None
    se_a, se_b = _se(current), _se(previous)
    if se_a is None or se_b is None:
        return Change(a - b, None)
    se = math.hypot(se_a, se_b)
    return Change(a - b, abs(a - b) > Z95 * se if se > 0 else a != b)


def metric_sentence(current: dict, previous: dict | None, cat: Catalogue) -> str:
    """The headline sentence of one company metric and its change on the last quarter."""
    name = str(current.get("name"))
    quarter = str(current.get("quarter"))
    args = dict(metric=cat.label("metrics", name), value=format_metric(name, current.get("value"), cat),
                quarter=cat.quarter(quarter),
                interval=format_interval(name, current.get("conf_low"), current.get("conf_high"), cat))
    ch = change(current, previous)
    if ch is None:
        return cat.t("summary.metric_only", **args)
    args["prev"] = cat.quarter(shift_quarter(quarter, -1))
    if format_change(name, ch.diff, cat).lstrip("+\u2212") == format_change(name, 0.0, cat):
        return cat.t("summary.metric_flat", **args)
    cue = "" if ch.clear is None else cat.t(f"summary.cue_{'clear' if ch.clear else 'noise'}")
    return cat.t(f"summary.metric_{'up' if ch.diff > 0 else 'down'}",
                 change=format_change(name, abs(ch.diff), cat).lstrip("+"), cue=cue, **args)


def summary_sentences(findings: dict, cat: Catalogue) -> list[str]:
    """The executive summary: 3–6 plain sentences from findings."""
    effects = headline_effects(findings.get("effects"))
    out = effect_sentences(effects, cat)
    out.insert(min(len(out), MAX_EFFECT_SENTENCES),
               recommendation_sentence(findings.get("recommendation"), cat))
    quarter = str(findings.get("quarter", ""))
    company = {(m.get("name"), m.get("quarter")): m for m in findings.get("metrics") or []
               if m.get("scope") == "company"}
    for name in headline_names(findings):
        if len(out) >= MAX_SENTENCES:
            break
        current = company.get((name, quarter))
        if current is not None and _num(current.get("value")) is not None:
            previous = company.get((name, shift_quarter(quarter, -1)))
            out.append(metric_sentence(current, previous, cat))
    if len(out) < MIN_SENTENCES:
        # Few effects: state the remaining ones one by one.
        for effect in sorted(effects, key=_order):
            sentence = effect_sentence(effect, cat)
            if sentence not in out and len(out) < MIN_SENTENCES:
                out.append(sentence)
    return out[:MAX_SENTENCES]


def headline_names(findings: dict) -> list[str]:
    """Names of the company metrics of the quarter, in a stable order: NPS first, then by name."""
    names = {m.get("name") for m in findings.get("metrics") or []
             if m.get("scope") == "company" and m.get("quarter") == findings.get("quarter")}
    preferred = ("nps", "churn_rate", "csat_mean", "renewal_rate", "pct_satisfied",
                 "complaint_rate", "response_rate", "bookings")
    return [n for n in preferred if n in names] + sorted(n for n in names
                                                          if n not in preferred)
