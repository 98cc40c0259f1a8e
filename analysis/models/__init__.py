"""Models of findings.md, one module per family, all returning the tidy shape.

Public entry: :func:`fit_effects` takes the derived tables
(``survival_episodes``, ``renewal_table``, ``rep_quarter_panel``) and returns
:class:`ModelResults` (effects, summaries, extras per model). One function per
model for notebooks: :func:`fit_churn`, :func:`fit_renewal`,
:func:`fit_complaints`, :func:`fit_linear`.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

import pandas as pd

from analysis.lazy import lazy_attributes

if TYPE_CHECKING:
    from analysis.models.tidy import EFFECT_COLUMNS, SUMMARY_COLUMNS, ModelFit, ModelResults
    from analysis.models.panel import fit_complaints, fit_linear
    from analysis.models.renewal import fit_renewal
    from analysis.models.survival import fit_churn, km_by_plan, logrank_by_plan

log = logging.getLogger(__name__)

__all__ = ["fit_effects", "fit_churn", "fit_renewal", "fit_complaints", "fit_linear",
           "km_by_plan", "logrank_by_plan", "ModelResults", "ModelFit", "EFFECT_COLUMNS",
           "SUMMARY_COLUMNS"]

#: Names imported on first use (PEP 562): each family's module imports its own libraries
#: (lifelines, pyfixest, scipy.stats: seconds of a kernel's start), which a notebook
#: importing only ``design``, or loading its fits from the cache, never needs.
_LAZY = {"fit_churn": "survival", "km_by_plan": "survival", "logrank_by_plan": "survival",
         "fit_renewal": "renewal", "fit_complaints": "panel", "fit_linear": "panel",
         "ModelResults": "tidy", "ModelFit": "tidy", "EFFECT_COLUMNS": "tidy",
         "SUMMARY_COLUMNS": "tidy"}

TABLES = {"churn": "survival_episodes", "renewal": "renewal_table",
          "panel": "rep_quarter_panel"}


__getattr__, __dir__ = lazy_attributes(__name__, _LAZY)


def fit_effects(derived: dict[str, pd.DataFrame]) -> ModelResults:
    """Fit every model of findings.md on the derived tables.

    Parameters
    ----------
    derived : {"survival_episodes": ..., "renewal_table": ..., "rep_quarter_panel": ...};
        a missing table skips its models (logged).

    Returns
    -------
    ModelResults
        ``effects``: tidy rows of every model (headline models first, in the
        order of config.OUTCOMES, then the variants); ``summaries``: one row per
        model; ``extras``: {model key: dict} with library objects, coefficient
        tables, the PH test, Kaplan–Meier table and log-rank test, and ``vcov``:
        the term × term covariance (DataFrame) the effects' errors come from — CR3,
        or the CR1 / Lin–Wei sandwich above ``JACKKNIFE_MAX_CLUSTERS`` teams
        (docs/models.md).

    BLAS runs on one thread while the models are fitted
    (:func:`analysis.models.jackknife.single_threaded_blas`).
    """
    from analysis.models.jackknife import single_threaded_blas
    from analysis.models.tidy import SUMMARY_COLUMNS, ModelResults, effects_frame

    with single_threaded_blas():
        fits = _fit_all(derived)
    effects = [f.effects for f in fits.values()]
    headline = pd.concat(effects, ignore_index=True) if effects else effects_frame([])
    records = [r for f in fits.values() for r in f.summary.to_dict("records")]
    summaries = pd.DataFrame(records) if records else pd.DataFrame(columns=list(SUMMARY_COLUMNS))
    for _, row in summaries.iterrows():
        log.info("%s %s: n=%s clusters=%s converged=%s %.2fs", row["outcome"], row["model"],
                 row["n_obs"], row["n_clusters"], row["converged"], row["seconds"])
    return ModelResults(effects=_ordered(headline), summaries=summaries,
                        extras={k: f.extras for k, f in fits.items()})


def _fit_all(derived: dict[str, pd.DataFrame]) -> dict[str, ModelFit]:
    import numpy as np
    from lifelines.exceptions import StatError

    from analysis.models.panel import fit_complaints, fit_linear
    from analysis.models.renewal import fit_renewal
    from analysis.models.survival import fit_churn, km_by_plan, logrank_by_plan

    fits: dict[str, ModelFit] = {}
    if TABLES["churn"] in derived:
        episodes = derived[TABLES["churn"]]
        fits["churn"] = fit_churn(episodes)
        # descriptive extras never stop the models
        try:
            fits["churn"].extras["km"] = km_by_plan(episodes)
        except (StatError, np.linalg.LinAlgError) as exc:
            log.warning("Kaplan-Meier by plan not computed: %s", exc)
            fits["churn"].extras["km"] = pd.DataFrame()
        try:
            fits["churn"].extras["logrank"] = logrank_by_plan(episodes)
        except np.linalg.LinAlgError as exc:
            log.warning("log-rank test not computed: %s", exc)
            fits["churn"].extras["logrank"] = pd.DataFrame()
    else:
        log.warning("no %s table: churn not modelled", TABLES["churn"])
    if TABLES["renewal"] in derived:
        fits["renewal"] = fit_renewal(derived[TABLES["renewal"]])
        fits["renewal_controls"] = fit_renewal(derived[TABLES["renewal"]], controls=True)
    else:
        log.warning("no %s table: renewal not modelled", TABLES["renewal"])
    if TABLES["panel"] in derived:
        panel = derived[TABLES["panel"]]
        fits["complaints"] = fit_complaints(panel)
        for outcome in ("csat", "nps", "bookings"):
            fits[outcome] = fit_linear(panel, outcome)
    else:
        log.warning("no %s table: panel outcomes not modelled", TABLES["panel"])
    return fits


def _ordered(effects: pd.DataFrame) -> pd.DataFrame:
    """Headline models first (order of config.OUTCOMES, then TERMS), variants after."""
    from analysis.config import OUTCOMES, TERMS

    headline = {"cox_stratified_tv", "logit_fe", "poisson_fe", "ols_fe"}
    key = pd.DataFrame({
        "variant": (~effects["model"].isin(headline)).astype(int),
        "outcome": effects["outcome"].map({o: i for i, o in enumerate(OUTCOMES)}),
        "model": effects["model"],
        "term": effects["term"].map({t: i for i, t in enumerate(TERMS)}),
    })
    idx = key.sort_values(["variant", "outcome", "model", "term"], kind="stable").index
    return effects.loc[idx].reset_index(drop=True)
