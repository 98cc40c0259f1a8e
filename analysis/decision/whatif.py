"""What-if: the predicted change of every outcome under a proposed plan.

``whatif(plan)`` compares a proposed weighting with the current plan (of one team,
or the company-average weights in force on the analysed quarter's last day) using
the headline effects of findings.md. On each model's own scale the change is

    Δη = Σ_k β_k · Δx_k,   Δx_k = (w_k,proposed − w_k,current) / 0.10,

over the five non-reference weights (``w_revenue`` absorbs the rest), with a 95%
interval from the delta method, ``se = sqrt(Δxᵀ V Δx)``, V the model's
cluster-robust covariance of the five terms, and t(G−1) critical values (G teams),
as the effects themselves. Where a model exposes no covariance the interval uses
the effects' standard errors alone and says that it ignores covariances.

A proposal outside the weights observed in the data (per weight, the minimum and
maximum over the plans in force up to the quarter's last day) is an
extrapolation: the result carries a warning and the log says so.
"""

from __future__ import annotations

import argparse
import logging
import math
from dataclasses import dataclass, field
from datetime import date
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

from analysis.config import EFFECT_PER, OUTCOMES, TERMS, WEIGHT_SUM_TOL, WEIGHTS
from analysis.errors import KpisatError, ParameterError

log = logging.getLogger(__name__)

#: Headline model of each outcome (findings.md).
HEADLINE_MODELS = {"churn": "cox_stratified_tv", "renewal": "logit_fe",
                   "complaints": "poisson_fe", "csat": "ols_fe", "nps": "ols_fe",
                   "bookings": "ols_fe"}
#: Outcomes whose scale is a log ratio: the change is also shown in percent.
RATIO_LABELS = {"churn": "churn hazard", "renewal": "odds of renewal",
                "complaints": "complaint rate", "bookings": "bookings (1 + amount)"}
POINT_LABELS = {"csat": "CSAT points (1-5)", "nps": "NPS points"}
CONF_LEVEL = 0.95
EXTRAPOLATION = "extrapolation"
NO_COV_NOTE = "interval ignores covariances between terms (model exposes none)"
PLAN_EXAMPLE = ("w_revenue=0.5,w_new_customers=0.1,w_collection=0,w_satisfaction=0.25,"
                "w_complaints=0.05,w_process=0.1")


# ---------------------------------------------------------------- plans
def parse_plan(plan: str | dict[str, Any]) -> dict[str, float]:
    """A proposed plan as the six weights, checked.

    Parameters
    ----------
    plan : ``"w_revenue=0.5,w_new_customers=0.1,..."`` (the CLI format) or a dict
        with the six weight names.

    Returns
    -------
    dict of the six weights, in contract order.

    Raises
    ------
    ParameterError : a weight missing, unknown, not a number, negative, or weights
        not summing to 1 (one line, saying what to do).
    """
    if isinstance(plan, str):
        pairs: dict[str, Any] = {}
        for part in (p.strip() for p in plan.split(",")):
            if not part:
                continue
            name, sep, value = part.partition("=")
            if not sep:
                raise ParameterError(f"plan part {part!r} must be written NAME=VALUE, "
                                     f"e.g. {PLAN_EXAMPLE}")
            if name.strip() in pairs:
                raise ParameterError(f"plan names {name.strip()!r} twice")
            pairs[name.strip()] = value.strip()
    elif isinstance(plan, dict):
        pairs = dict(plan)
    else:
        raise ParameterError(f"a plan is a string like {PLAN_EXAMPLE!r} or a dict of weights")
    unknown = sorted(set(pairs) - set(WEIGHTS))
    if unknown:
        raise ParameterError(f"unknown plan weight(s) {', '.join(unknown)}; allowed: "
                             f"{', '.join(WEIGHTS)}")
    missing = [w for w in WEIGHTS if w not in pairs]
    if missing:
        raise ParameterError(f"plan weight(s) missing: {', '.join(missing)}; give all six "
                             f"(0 where unused), e.g. {PLAN_EXAMPLE}")
    weights: dict[str, float] = {}
    for w in WEIGHTS:
        try:
            value = float(pairs[w])
        except (TypeError, ValueError):
            raise ParameterError(f"plan weight {w}={pairs[w]!r} is not a number") from None
        if not math.isfinite(value) or value < 0:
            raise ParameterError(f"plan weight {w}={pairs[w]} must be a number >= 0")
        weights[w] = value
    total = sum(weights.values())
    if abs(total - 1.0) > WEIGHT_SUM_TOL:
        raise ParameterError(f"plan weights sum to {total:.6g}, not 1; adjust them so the six "
                             "weights add up to 1")
    return weights


def plans_in_force(tables: dict[str, pd.DataFrame], day: date) -> pd.DataFrame:
    """Each team's plan in force on ``day``: team_id, plan_id, name and the six weights.

    The latest ``valid_from`` wins where assignments overlap (derived.py's rule).
    """
    d = pd.Timestamp(day)
    pa = tables["plan_assignments"]
    live = pa[(pa["valid_from"] <= d) & (pa["valid_to"].isna() | (pa["valid_to"] >= d))]
    live = (live.sort_values(["team_id", "valid_from", "plan_id"], ascending=[True, False, True])
            .drop_duplicates("team_id"))
    plans = tables["kpi_plans"][["plan_id", "name", *WEIGHTS]]
    return live[["team_id", "plan_id"]].merge(plans, on="plan_id", how="left").sort_values(
        "team_id").reset_index(drop=True)


def current_weights(tables: dict[str, pd.DataFrame], day: date,
                    team: str | None = None) -> dict[str, float]:
    """The current weights: the team's plan on ``day``, or the mean over teams.

    Raises
    ------
    ParameterError : an unknown team, or a team without a plan on ``day``.
    """
    live = plans_in_force(tables, day)
    if team is None:
        if live.empty:
            raise ParameterError(f"no team has a plan in force on {day}")
        return {w: float(live[w].mean()) for w in WEIGHTS}
    if team not in set(tables["reps"]["team_id"]) | set(tables["plan_assignments"]["team_id"]):
        raise ParameterError(f"unknown team {team!r}; teams: "
                             f"{', '.join(sorted(map(str, live['team_id'])))}")
    row = live[live["team_id"] == team]
    if row.empty:
        raise ParameterError(f"team {team!r} has no plan in force on {day}")
    return {w: float(row.iloc[0][w]) for w in WEIGHTS}


def observed_ranges(tables: dict[str, pd.DataFrame], day: date) -> pd.DataFrame:
    """Per weight, min and max over the plans in force on any day up to ``day``.

    Returns columns ``weight, min, max`` (one row per weight, contract order).
    """
    pa = tables["plan_assignments"]
    used = pa.loc[pa["valid_from"] <= pd.Timestamp(day), "plan_id"].unique()
    plans = tables["kpi_plans"]
    plans = plans[plans["plan_id"].isin(used)]
    return pd.DataFrame({"weight": list(WEIGHTS),
                         "min": [float(plans[w].min()) for w in WEIGHTS],
                         "max": [float(plans[w].max()) for w in WEIGHTS]})


def extrapolation_warnings(plan: dict[str, float], ranges: pd.DataFrame) -> list[str]:
    """One warning per weight of ``plan`` outside the observed range (empty if none)."""
    out = []
    for row in ranges.itertuples(index=False):
        v = plan[row.weight]
        if v < row.min - 1e-9 or v > row.max + 1e-9:
            out.append(f"{EXTRAPOLATION}: {row.weight}={v:g} lies outside the weights observed "
                       f"in the data ({row.min:g} to {row.max:g}); the prediction assumes the "
                       "effects continue linearly beyond them")
    return out


# ---------------------------------------------------------------- covariances
def effect_covariances(extras: dict[str, dict[str, Any]]) -> dict[str, pd.DataFrame]:
    """The covariance of the five terms for each headline model that exposes one.

    Looks, per outcome, for ``vcov`` (a DataFrame indexed by term), then ``cov`` with
    ``columns`` (statsmodels renewal), then a pyfixest ``fit`` (``_vcov``,
    ``_coefnames``). Outcomes without any are left out (their intervals then
    ignore covariances).
    """
    out = {}
    for outcome in OUTCOMES:
        ex = extras.get(outcome) or {}
        cov = None
        if isinstance(ex.get("vcov"), pd.DataFrame):
            cov = ex["vcov"]
        elif ex.get("cov") is not None and ex.get("columns") is not None:
            cov = pd.DataFrame(np.asarray(ex["cov"]), index=list(ex["columns"]),
                               columns=list(ex["columns"]))
        elif ex.get("fit") is not None and hasattr(ex["fit"], "_vcov"):
            names = [str(n) for n in ex["fit"]._coefnames]
            cov = pd.DataFrame(np.asarray(ex["fit"]._vcov), index=names, columns=names)
        if cov is not None:
            terms = [t for t in TERMS if t in cov.index]
            out[outcome] = cov.loc[terms, terms].astype(float)
    return out


# ---------------------------------------------------------------- prediction
def predict_changes(effects: pd.DataFrame, plan: dict[str, float], baseline: dict[str, float],
                    covariances: dict[str, pd.DataFrame] | None = None) -> pd.DataFrame:
    """Predicted change of each outcome from ``baseline`` to ``plan`` (model scales).

    Parameters
    ----------
    effects : tidy effect rows (findings.md); the headline model of each outcome is used.
    plan, baseline : the six weights each.
    covariances : {outcome: term × term covariance}; missing outcomes use the
        effects' standard errors only (noted).

    Returns
    -------
    DataFrame
        ``outcome, scale, estimate, std_error, conf_low, conf_high, percent,
        percent_low, percent_high, note``; ``percent`` is 100·(exp(Δ) − 1) on log
        ratio scales, NaN on point scales.
    """
    covariances = covariances or {}
    dx = pd.Series({t: (plan[t] - baseline[t]) / EFFECT_PER for t in TERMS})
    rows = []
    for outcome in OUTCOMES:
        sel = effects[(effects["outcome"] == outcome)
                      & (effects["model"] == HEADLINE_MODELS[outcome])].set_index("term")
        row = {"outcome": outcome, "scale": sel["scale"].iloc[0] if len(sel) else None,
               "estimate": np.nan, "std_error": np.nan, "conf_low": np.nan,
               "conf_high": np.nan, "note": ""}
        moved = [t for t in TERMS if abs(dx[t]) > 1e-12]
        unusable = [t for t in moved if t not in sel.index or not bool(sel.loc[t, "estimable"])]
        if sel.empty or unusable:
            row["note"] = ("no estimate: " + ", ".join(unusable) + " not estimable"
                           if unusable else "no estimate: model not fitted")
            rows.append(row)
            continue
        beta = sel.loc[moved, "estimate"].astype(float)
        d = dx[moved]
        est = float((beta * d).sum())
        cov = covariances.get(outcome)
        if cov is not None and all(t in cov.index for t in moved):
            var = float(d.to_numpy() @ cov.loc[moved, moved].to_numpy() @ d.to_numpy())
        else:
            var = float(((sel.loc[moved, "std_error"].astype(float) * d) ** 2).sum())
            row["note"] = NO_COV_NOTE if len(moved) > 1 else ""
        se = math.sqrt(max(var, 0.0))
        g = int(sel["n_clusters"].max()) if "n_clusters" in sel else 0
        crit = float(stats.t.ppf(0.5 + CONF_LEVEL / 2, g - 1) if g > 1 else
                     stats.norm.ppf(0.5 + CONF_LEVEL / 2))
        row.update(estimate=est, std_error=se, conf_low=est - crit * se, conf_high=est + crit * se)
        rows.append(row)
    out = pd.DataFrame(rows)
    ratio = out["outcome"].isin(list(RATIO_LABELS))
    for col, src in (("percent", "estimate"), ("percent_low", "conf_low"),
                     ("percent_high", "conf_high")):
        out[col] = np.where(ratio, 100 * np.expm1(out[src].astype(float)), np.nan)
    return out[["outcome", "scale", "estimate", "std_error", "conf_low", "conf_high",
                "percent", "percent_low", "percent_high", "note"]]


def refuse_without_effects(effects: pd.DataFrame) -> None:
    """Raise (one line) when no headline effect of any outcome is estimable.

    Raises
    ------
    KpisatError : every headline effect is missing or ``estimable`` false.
    """
    head = effects
    if "model" in effects:
        head = effects[effects["model"].isin(list(HEADLINE_MODELS.values()))]
    ok = head["estimable"].astype(bool) if "estimable" in head else pd.Series(dtype=bool)
    if ok.any():
        return
    why = ""
    if "note" in head and head["note"].notna().any():
        why = f" (e.g. {str(head['note'].dropna().iloc[0]).splitlines()[0]})"
    raise KpisatError(f"what-if refused: the effects are not estimable on these data{why}; "
                      "run it on a quarter with more teams, plan changes and outcomes")


@dataclass
class WhatIfResult:
    """A proposal's predicted changes against the current plan.

    Attributes
    ----------
    plan, baseline : the proposed and the current six weights.
    baseline_label : what the baseline is ("company average on 2025-12-31", "team T03 ...").
    changes : :func:`predict_changes` rows, one per outcome.
    warnings : extrapolation warnings (empty when the plan lies in the observed range).
    ranges : observed min/max per weight.
    quarter : the analysed quarter.
    """

    plan: dict[str, float]
    baseline: dict[str, float]
    baseline_label: str
    changes: pd.DataFrame
    warnings: list[str] = field(default_factory=list)
    ranges: pd.DataFrame | None = None
    quarter: str = ""

    def to_text(self) -> str:
        """Plain-text summary, the same in a terminal and a notebook."""
        lines = [f"What-if ({self.quarter}): proposed plan vs {self.baseline_label}",
                 f"{'weight':<17}{'current':>9}{'proposed':>10}"]
        lines += [f"{w:<17}{self.baseline[w]:>9.3f}{self.plan[w]:>10.3f}" for w in WEIGHTS]
        lines += ["", f"{'outcome':<11}{'change (95% interval)':<36}{'reads as'}"]
        for r in self.changes.itertuples(index=False):
            if not np.isfinite(r.estimate):
                lines.append(f"{r.outcome:<11}{'-':<36}{r.note}")
                continue
            interval = f"{r.estimate:+.3f} ({r.conf_low:+.3f} to {r.conf_high:+.3f})"
            if r.outcome in RATIO_LABELS:
                reads = (f"{RATIO_LABELS[r.outcome]} {r.percent:+.1f}% "
                         f"({r.percent_low:+.1f}% to {r.percent_high:+.1f}%)")
            else:
                reads = POINT_LABELS.get(r.outcome, "")
            lines.append(f"{r.outcome:<11}{interval:<36}{reads}")
            if r.note:
                lines.append(f"{'':<11}note: {r.note}")
        lines.append("")
        lines.append("Scales: churn log hazard ratio, renewal log odds ratio, complaints log rate "
                     "ratio, bookings log(1 + bookings), CSAT and NPS points.")
        lines += [f"WARNING {w}" for w in self.warnings]
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.to_text()


def whatif(plan: str | dict[str, Any], *, source: str | None = None, quarter: str | None = None,
           team: str | None = None, as_of: str | None = None, prepared=None,
           effects: pd.DataFrame | None = None,
           covariances: dict[str, pd.DataFrame] | None = None) -> WhatIfResult:
    """Predicted change of each outcome if ``plan`` replaced the current plan.

    Parameters
    ----------
    plan : the proposed weights, ``"w_revenue=0.5,...,w_process=0.1"`` or a dict.
    source, quarter, as_of : as ``kpisat run`` (defaults: the sample company, the
        latest complete quarter, the source's as-of date), via ``analysis.prepare``.
    team : compare with this team's plan on the quarter's last day; default the
        company-average weights of the plans in force that day.
    prepared : an already prepared quarter (skips ``prepare``).
    effects, covariances : headline effects (tidy) and their covariances; default:
        fitted here with ``analysis.models.fit_effects``.

    Returns
    -------
    WhatIfResult

    Raises
    ------
    ParameterError : a bad plan (missing, unknown, negative weights, sum not 1) or team.
    KpisatError : no headline effect is estimable (one line; nothing to predict from).
    """
    proposal = parse_plan(plan)
    if prepared is None:
        from analysis.prepare import prepare

        prepared = prepare(source, quarter, as_of)
    day = prepared.quarter_end
    baseline = current_weights(prepared.tables, day, team)
    ranges = observed_ranges(prepared.tables, day)
    warnings = extrapolation_warnings(proposal, ranges)
    for w in warnings:
        log.warning(w)
    if effects is None:
        from analysis.models import fit_effects

        results = fit_effects(prepared.derived)
        effects, covariances = results.effects, effect_covariances(results.extras)
    refuse_without_effects(effects)
    changes = predict_changes(effects, proposal, baseline, covariances)
    label = (f"team {team}'s plan on {day}" if team else
             f"the company-average weights of the plans in force on {day}")
    return WhatIfResult(plan=proposal, baseline=baseline, baseline_label=label,
                        changes=changes, warnings=warnings, ranges=ranges,
                        quarter=prepared.quarter)


# ---------------------------------------------------------------- CLI
def add_whatif_parser(subparsers) -> argparse.ArgumentParser:
    """Register ``kpisat whatif`` on the CLI's subparsers (sets ``func``)."""
    p = subparsers.add_parser(
        "whatif", help="predict the outcomes of a proposed plan",
        description="Predict the change of churn, renewal, complaints, CSAT, NPS and bookings "
                    "if a proposed plan replaced the current one (the team's, or the company "
                    "average), from the quarter's estimated effects, with 95% intervals.")
    p.add_argument("--plan", metavar="WEIGHTS", required=True,
                   help=f"the six weights, summing to 1, e.g. {PLAN_EXAMPLE}")
    p.add_argument("--source", metavar="SOURCE", default=None,
                   help="folder, .duckdb file or postgresql:// URL; default: the sample company")
    p.add_argument("--quarter", metavar="QUARTER", default=None,
                   help="quarter whose data and plans are used, like 2025Q4; default: the "
                        "latest complete quarter")
    p.add_argument("--as-of", metavar="DATE", default=None,
                   help="the day the data was extracted (YYYY-MM-DD); default: the source's")
    p.add_argument("--team", metavar="TEAM", default=None,
                   help="compare with this team's current plan; default: company average")
    g = p.add_argument_group("output")
    g.add_argument("-q", "--quiet", action="store_true", help="show warnings and errors only")
    g.add_argument("-v", "--verbose", action="store_true", help="show debug messages as well")
    g.add_argument("--debug", action="store_true", help="show the full traceback of any error")
    p.set_defaults(func=run_whatif_command)
    return p


def run_whatif_command(args: argparse.Namespace) -> int:
    """``kpisat whatif``: print the predicted changes; 0 on success."""
    result = whatif(args.plan, source=args.source, quarter=args.quarter, team=args.team,
                    as_of=getattr(args, "as_of", None))
    print(result.to_text())
    return 0
