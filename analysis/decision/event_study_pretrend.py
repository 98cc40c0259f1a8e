"""Pre-trend test of the event study (Borusyak, Jaravel and Spiess 2024).

On the untreated rep-quarters only, the outcome is regressed on rep and quarter
fixed effects and indicators of the ``pre_window`` quarters before the switch
(reference: earlier untreated quarters and never-treated teams; by default as many
leads as leave ``MIN_CLUSTERS`` teams in the reference, a rule that looks at no
outcome, :func:`default_pre_window`). Joint Wald test, p-value from the restricted
wild cluster bootstrap. Leads are rows of model ``event_study_pretrend``.
"""

from __future__ import annotations

import logging
import math
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

from analysis.config import MIN_CLUSTERS
from analysis.decision.event_study_bootstrap import (BOOT_NOTE, WILD_REPS, bootstrap_weights,
                                                     inference_rows, wcr_wald_p, wild_bootstrap)
from analysis.models.jackknife import JACKKNIFE_MAX_CLUSTERS
from analysis.decision.event_study_estimators import lead_regression
from analysis.decision.plan_switches import event_term
from analysis.models import design

log = logging.getLogger(__name__)

PRETREND_MODEL = "event_study_pretrend"
PRETREND_COLUMNS = ("outcome", "model", "n_leads", "statistic", "df_num", "df_den",
                    "p_value", "p_value_crv1", "n_obs", "n_clusters", "rejected_5pct", "note")
_NO_TEST = {"q": 0, "f": math.nan, "p_crv": math.nan, "p": math.nan}


def default_pre_window(events: pd.DataFrame, min_clusters: int = MIN_CLUSTERS,
                       longest: int = 8) -> int:
    """Most leads that leave at least ``min_clusters`` treated teams in the reference.

    The leads are measured against the untreated quarters before them; with no
    never-treated teams those come only from teams observed more than ``pre_window``
    quarters before their switch. The rule does not look at any outcome.
    """
    pre = events[events["event_time"] < 0]
    for k in range(longest, 0, -1):
        if pre.loc[pre["event_time"] < -k, "team_id"].nunique() >= min_clusters:
            return k
    return 1


def wald_tests(fit: dict[str, Any], g: int) -> dict[str, float]:
    """Joint test that every lead is 0: CRV1 F(q, G−1) and restricted wild bootstrap.

    Above ``JACKKNIFE_MAX_CLUSTERS`` teams ``p`` is the CRV1 F test's p-value (no
    bootstrap; see :func:`~.event_study_bootstrap.wild_bootstrap`).
    """
    b, v = fit["coef"], fit["vcov"]
    q = len(b)
    wald = float(b @ np.linalg.pinv(v) @ b)
    f = wald / q / (g / (g - 1))
    if not (math.isfinite(f) and f > 0):
        return dict(_NO_TEST, q=q)
    p_crv = float(stats.f.sf(f, q, g - 1))
    return {"q": q, "f": f, "p_crv": p_crv,
            "p": wcr_wald_p(fit, wald, bootstrap_weights(g)) if wild_bootstrap(g) else p_crv}


def _test_note(g: int) -> str:
    """The joint test's note: which p-value ``p_value`` is."""
    if wild_bootstrap(g):
        return ("Wald test that every lead is 0: p_value from the restricted wild "
                f"cluster bootstrap (WCR, Webb, {WILD_REPS} draws); p_value_crv1 "
                "from F(q, G-1) with CRV1 by team (over-rejects with few clusters)")
    return ("Wald test that every lead is 0: p_value = p_value_crv1, F(q, G-1) with CRV1 by "
            f"team (G={g} > {JACKKNIFE_MAX_CLUSTERS}: no wild bootstrap)")


def pretrend(data: pd.DataFrame, outcome: str, scale: str, pre_window: int,
             min_clusters: int) -> tuple[list[dict], pd.DataFrame, dict | None]:
    """Lead rows, the one-row joint test (``PRETREND_COLUMNS``) and the lead regression."""
    pre = data[~data["treated"]].reset_index(drop=True)
    g = int(pre["team_id"].nunique())
    leads = [-k for k in range(pre_window, 0, -1)]
    usable = [e for e in leads if (pre["event_time"] == e).any()]
    need = max(min_clusters, 2)
    note = design.few_clusters_note(g, need) if g < need else ""
    if not note and not usable:
        note = "not estimable: no rep-quarter before a switch"
    fit, test = None, _NO_TEST
    if not note:
        try:
            fit = lead_regression(pre, usable)
            test = wald_tests(fit, g)
        except (np.linalg.LinAlgError, ValueError, FloatingPointError) as exc:
            log.info("%s: lead regression failed: %s", outcome, exc)
            note, fit, test = f"not estimable: the lead regression failed ({exc})", None, _NO_TEST
    rows = inference_rows(
        outcome, PRETREND_MODEL, scale, [(e, event_term(e)) for e in leads], fit, g, len(pre),
        note=note, why_missing="not estimable: no rep-quarter at this event time",
        row_note=lambda e: f"lead on untreated rep-quarters (Borusyak et al.); {BOOT_NOTE}")
    if not note and not np.isfinite(test["p"]):
        note = "not estimable: the leads do not vary enough for a joint test"
    table = pd.DataFrame([{
        "outcome": outcome, "model": PRETREND_MODEL, "n_leads": test["q"],
        "statistic": test["f"], "df_num": test["q"], "df_den": max(g - 1, 0),
        "p_value": test["p"], "p_value_crv1": test["p_crv"], "n_obs": len(pre),
        "n_clusters": g,
        "rejected_5pct": bool(test["p"] < 0.05) if np.isfinite(test["p"]) else None,
        "note": note or _test_note(g),
    }], columns=list(PRETREND_COLUMNS))
    return rows, table, fit
