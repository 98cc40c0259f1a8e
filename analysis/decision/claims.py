"""Claims ledger: common rules of thumb about incentive plans, checked on this company.

Each claim gets a verdict — ``supported``, ``contradicted`` or ``not testable here`` —
and one evidence sentence, from the quarter's headline effects (findings.md), the
weighting recommendation and the weights observed in the data. How each claim is
read is stated in its evidence sentence. An interval that includes both the claim
and its negation makes the claim "not testable here": these data cannot tell.
Written to findings as key ``claims`` (list of {claim, verdict, evidence}).
"""

from __future__ import annotations

import logging
import math
from pathlib import Path

import numpy as np
import pandas as pd

from analysis.config import EFFECT_PER

log = logging.getLogger(__name__)

SUPPORTED, CONTRADICTED, NOT_TESTABLE = "supported", "contradicted", "not testable here"
CHURN_MODEL = "cox_stratified_tv"
#: The claimed churn cut of "satisfaction in the plan cuts churn by 15%".
CLAIMED_CUT = 0.15
PLAN_60_20_20 = {"w_revenue": 0.6, "w_new_customers": 0.0, "w_collection": 0.0,
                 "w_satisfaction": 0.2, "w_complaints": 0.0, "w_process": 0.2}


def headline_effects(run_dir: str | Path | None, prepared) -> pd.DataFrame:
    """The run's headline effects: from ``run_dir/findings.json`` when the earlier
    notebooks of the run wrote them, else fitted here (``analysis.models.fit_effects``)."""
    from analysis import findings

    if run_dir is not None:
        try:
            eff = findings.effects_frame(findings.read_findings(run_dir))
        except FileNotFoundError:
            eff = pd.DataFrame()
        if len(eff) and (eff["model"] == CHURN_MODEL).any():
            return eff
    from analysis.models import fit_effects

    log.info("no effects in the run's findings yet: fitting the models")
    return fit_effects(prepared.derived).effects


def _effect(effects: pd.DataFrame, outcome: str, term: str, model: str) -> dict | None:
    sel = effects[(effects["outcome"] == outcome) & (effects["term"] == term)
                  & (effects["model"] == model)]
    if sel.empty or not bool(sel["estimable"].iloc[0]):
        return None
    row = sel.iloc[0]
    return {k: float(row[k]) for k in ("estimate", "conf_low", "conf_high")}


def _in(x: float, lo: float, hi: float) -> bool:
    return lo - 1e-9 <= x <= hi + 1e-9


def claim_min_30(rec: dict | None, ranges: pd.DataFrame | None) -> dict:
    """"Give satisfaction at least 30% weight" against the recommended range."""
    claim = "Give satisfaction at least 30% of the plan weight."
    if not rec or not rec.get("range"):
        return {"claim": claim, "verdict": NOT_TESTABLE,
                "evidence": "No weighting recommendation could be made this quarter."}
    lo, hi = rec["range"]
    top = float(ranges.set_index("weight").loc["w_satisfaction", "max"]) if ranges is not None \
        else hi
    span = f"{100 * lo:.0f}–{100 * hi:.0f}%"
    if not math.isfinite(top):
        return {"claim": claim, "verdict": NOT_TESTABLE,
                "evidence": "No plan in the data to compare with."}
    if top < 0.30:
        return {"claim": claim, "verdict": NOT_TESTABLE,
                "evidence": f"No plan in the data gave satisfaction 30% or more (highest "
                            f"{100 * top:.0f}%)."}
    if lo >= 0.30 - 1e-9:
        verdict, why = SUPPORTED, "lies entirely at or above 30%"
    elif hi < 0.30 - 1e-9:
        verdict, why = CONTRADICTED, "lies entirely below 30%"
    else:
        verdict, why = NOT_TESTABLE, "includes weights both below and above 30%: the data " \
                                     "cannot tell whether 30% or more is better"
    return {"claim": claim, "verdict": verdict,
            "evidence": f"The satisfaction weights that maximise the {rec.get('objective')} "
                        f"within the bootstrap uncertainty ({span}) {why}."}


def claim_60_20_20(tradeoff, ranges: pd.DataFrame | None) -> dict:
    """"60/20/20 revenue/satisfaction/process" against the best plan on the frontier."""
    claim = "A 60/20/20 revenue/satisfaction/process plan is a good default."
    if ranges is not None:
        r = ranges.set_index("weight")
        outside = [w for w, v in PLAN_60_20_20.items()
                   if not _in(v, r.loc[w, "min"], r.loc[w, "max"])]
        if outside:
            return {"claim": claim, "verdict": NOT_TESTABLE,
                    "evidence": "The plan lies outside the weights observed in the data ("
                                + ", ".join(f"{w}={PLAN_60_20_20[w]:g} vs observed "
                                            f"{r.loc[w, 'min']:g}–{r.loc[w, 'max']:g}"
                                            for w in outside)
                                + "), so judging it would be an extrapolation."}
    if tradeoff is None:
        return {"claim": claim, "verdict": NOT_TESTABLE, "evidence": "No trade-off analysis."}
    if not getattr(tradeoff, "estimable", True):
        return {"claim": claim, "verdict": NOT_TESTABLE,
                "evidence": f"The trade-off analysis is not estimable here: {tradeoff.reason}."}
    plans = pd.DataFrame([PLAN_60_20_20])
    mine = tradeoff.evaluate(plans).iloc[0]
    f = tradeoff.frontier
    best = int(np.argmax(f["objective"].to_numpy()))
    best_plan = tradeoff.evaluate(_grid_row(tradeoff, float(f["weight"].iloc[best]))).iloc[0]
    diff = np.asarray(mine["draws"]) - np.asarray(best_plan["draws"])
    lo, hi = np.quantile(diff, [0.025, 0.975])
    verdict = SUPPORTED if hi >= 0 else CONTRADICTED
    return {"claim": claim, "verdict": verdict,
            "evidence": f"Its projected {tradeoff.recommendation['objective']} differs from the "
                        f"best satisfaction weight's by {mine['objective'] - best_plan['objective']:+,.0f} "
                        f"per rep (95% bootstrap interval {lo:+,.0f} to {hi:+,.0f})."}


def _grid_row(tradeoff, weight: float) -> pd.DataFrame:
    row = dict(tradeoff.current)
    row["w_revenue"] = row["w_revenue"] + row["w_satisfaction"] - weight
    row["w_satisfaction"] = weight
    return pd.DataFrame([row])


def claim_churn_15(effects: pd.DataFrame) -> dict:
    """"Satisfaction in the plan cuts churn by 15%", read per 10 points of weight."""
    claim = "Putting satisfaction in the plan cuts churn by 15%."
    e = _effect(effects, "churn", "w_satisfaction", CHURN_MODEL)
    if e is None:
        return {"claim": claim, "verdict": NOT_TESTABLE,
                "evidence": "The churn effect of the satisfaction weight is not estimable here."}
    cut = [100 * -math.expm1(e[k]) for k in ("estimate", "conf_high", "conf_low")]
    verdict = SUPPORTED if _in(100 * CLAIMED_CUT, cut[1], cut[2]) else CONTRADICTED
    return {"claim": claim, "verdict": verdict,
            "evidence": f"Read as 10 points of weight moved from revenue to satisfaction: the "
                        f"churn hazard changes by {-cut[0]:+.0f}% (95% interval {-cut[2]:+.0f}% "
                        f"to {-cut[1]:+.0f}%), which "
                        + ("includes" if verdict == SUPPORTED else "excludes")
                        + " a 15% cut."}


def claim_sign(effects: pd.DataFrame, claim: str, outcome: str, term: str, model: str,
               sign: int, what: str) -> dict:
    """A directional claim: the effect of ``term`` on ``outcome`` has sign ``sign``."""
    e = _effect(effects, outcome, term, model)
    if e is None:
        return {"claim": claim, "verdict": NOT_TESTABLE,
                "evidence": f"The effect of {term} on {outcome} is not estimable here."}
    per = f"{100 * EFFECT_PER:.0f} points of weight"
    pct = [100 * math.expm1(e[k]) for k in ("estimate", "conf_low", "conf_high")]
    text = (f"{what} changes by {pct[0]:+.0f}% per {per} moved from revenue (95% interval "
            f"{pct[1]:+.0f}% to {pct[2]:+.0f}%)")
    clear_right = (e["conf_low"] > 0) if sign > 0 else (e["conf_high"] < 0)
    clear_wrong = (e["conf_high"] < 0) if sign > 0 else (e["conf_low"] > 0)
    if clear_right:
        return {"claim": claim, "verdict": SUPPORTED, "evidence": text + "."}
    if clear_wrong:
        return {"claim": claim, "verdict": CONTRADICTED,
                "evidence": text + ": the opposite direction."}
    return {"claim": claim, "verdict": NOT_TESTABLE,
            "evidence": text + ": the interval includes no effect, so these data cannot tell."}


def claims_ledger(effects: pd.DataFrame, *, recommendation: dict | None = None,
                  tradeoff=None, ranges: pd.DataFrame | None = None) -> list[dict]:
    """Verdicts on the common rules of thumb.

    Parameters
    ----------
    effects : headline tidy effects (findings.md shape).
    recommendation : findings' recommendation (``range`` of w_satisfaction).
    tradeoff : :class:`analysis.decision.tradeoff.Tradeoff` (for plan comparisons).
    ranges : observed weight ranges (:func:`analysis.decision.whatif.observed_ranges`).

    Returns
    -------
    list of {"claim", "verdict", "evidence"}
    """
    if ranges is None and tradeoff is not None:
        ranges = tradeoff.ranges
    return [
        claim_min_30(recommendation, ranges),
        claim_60_20_20(tradeoff, ranges),
        claim_churn_15(effects),
        claim_sign(effects, "Paying for new logos raises churn.", "churn", "w_new_customers",
                   CHURN_MODEL, +1, "The churn hazard"),
        claim_sign(effects, "Rewarding a low complaint rate reduces complaints.", "complaints",
                   "w_complaints", "poisson_fe", -1, "The complaint rate"),
    ]
