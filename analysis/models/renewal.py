"""Renewal: logit with team and end-quarter fixed effects, plus average marginal effects.

Models ``logit_fe`` and ``logit_fe_controls`` (segment, log(1 + annual_value),
tenure in years added). Fixed effects enter as dummies; a team or quarter whose
contracts all renewed (or all did not) carries no information about the slopes
and would push its dummy to ±∞, so such groups are dropped first, repeatedly,
as fixest does, and the summary says how many. Errors: CR1 cluster-robust by
team, c = G/(G−1)·(N−1)/(N−K) with K excluding the team dummies (nested in the
clusters, fixest's rule), t(G−1) intervals. Average marginal effects (percentage
points per 0.10 of weight) use the delta method with the same covariance.
"""

from __future__ import annotations

import logging
import time
import warnings

import numpy as np
import pandas as pd
import statsmodels.api as sm
from statsmodels.tools.sm_exceptions import PerfectSeparationError

from analysis.config import MIN_CLUSTERS, TERMS
from analysis.models import design
from analysis.models.clustered import cluster_sandwich
from analysis.models.tidy import (ModelFit, effect_row, effects_frame, empty_fit,
                                  missing_row, summary_frame)

log = logging.getLogger(__name__)

OUTCOME, SCALE = "renewal", "log_odds_ratio"
MODEL, MODEL_CONTROLS, MODEL_AME = "logit_fe", "logit_fe_controls", "logit_fe_ame"
AME_SCALE = "percentage_points"
FE = ("team_id", "end_quarter")


def drop_uninformative(df: pd.DataFrame, y: str = "renewed", fe=FE) -> tuple[pd.DataFrame, dict]:
    """Drop fixed-effect groups whose outcome never varies, until none is left.

    Returns the kept rows and {fe: number of groups dropped}.
    """
    dropped = {f: 0 for f in fe}
    while True:
        changed = False
        for f in fe:
            share = df.groupby(f, observed=True)[y].transform("mean")
            bad = (share == 0) | (share == 1)
            if bad.any():
                dropped[f] += int(df.loc[bad, f].nunique())
                df = df.loc[~bad]
                changed = True
        if not changed or df.empty:
            return df, dropped


def _controls(df: pd.DataFrame) -> pd.DataFrame:
    seg = pd.get_dummies(df["segment"].astype(str), prefix="seg", drop_first=True, dtype=float)
    return pd.concat([seg, pd.DataFrame({"log_annual_value": np.log1p(df["annual_value"]),
                                         "tenure_years": df["tenure_days"] / 365.25},
                                        index=df.index)], axis=1)


def fit_renewal(renewals: pd.DataFrame, *, controls: bool = False,
                min_clusters: int = MIN_CLUSTERS) -> ModelFit:
    """Fit ``logit_fe`` (or ``logit_fe_controls``) on the renewal table.

    Parameters
    ----------
    renewals : the ``renewal_table`` derived table.
    controls : add segment, log(1 + annual_value) and tenure (model ``logit_fe_controls``).
    min_clusters : fewer teams than this make every effect non-estimable.

    Returns
    -------
    ModelFit
        Log-odds rows and average-marginal-effect rows (model ``logit_fe_ame``, or
        ``logit_fe_controls_ame``; percentage points per 0.10), a summary and extras
        (``result``: the statsmodels GLM results, ``cov``: clustered covariance).
    """
    t0 = time.perf_counter()
    model = MODEL_CONTROLS if controls else MODEL
    ame_model = f"{model}_ame" if controls else MODEL_AME
    extra_cols = ["renewed", *FE] + (["segment", "annual_value", "tenure_days"] if controls else [])
    data = design.complete_rows(renewals, extra_cols)
    n_all = len(data)
    data, dropped = drop_uninformative(data)
    n_obs, g = len(data), int(data["team_id"].nunique())
    drop_note = (f"dropped {n_all - n_obs} contracts in {dropped['team_id']} teams and "
                 f"{dropped['end_quarter']} quarters whose contracts all renewed or all lapsed")
    if n_all == 0:
        return empty_fit(OUTCOME, model, SCALE, TERMS,
                         "not estimable: no renewal decisions in the data", n_obs=0)
    if n_obs == 0:
        return empty_fit(OUTCOME, model, SCALE, TERMS,
                         "not estimable: every team or quarter renewed all or none", n_obs=0)
    x = design.regressors(data)
    ctrl = _controls(data) if controls else pd.DataFrame(index=data.index)
    team, quarter = design.factor_codes(data["team_id"]), design.factor_codes(data["end_quarter"])
    reasons = design.identifiability(x, [team, quarter], "team and quarter",
                                     controls=ctrl.to_numpy(float) if controls else None)
    keep = [t for t in TERMS if not reasons[t]]
    fe_q = pd.get_dummies(data["end_quarter"].astype(str), prefix="q", drop_first=True, dtype=float)
    fe_t = pd.get_dummies(data["team_id"].astype(str), prefix="t", drop_first=True, dtype=float)
    xmat = pd.concat([pd.Series(1.0, index=data.index, name="const"), x[keep], ctrl, fe_q, fe_t],
                     axis=1)
    n_nonnested = xmat.shape[1] - fe_t.shape[1]
    y = data["renewed"].astype(float).to_numpy()
    result, failure = None, ""
    if keep:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                result = sm.GLM(y, xmat.to_numpy(float), family=sm.families.Binomial()).fit(
                    maxiter=100, tol=1e-10)
        except (PerfectSeparationError, np.linalg.LinAlgError, ValueError) as exc:
            # separation or a singular design: report, never crash. statsmodels signals
            # a diverging IRLS ("estimation infeasible") with ValueError; any other
            # ValueError is a bug and propagates
            if isinstance(exc, ValueError) and "infeasible" not in str(exc):
                raise
            failure = f"not estimable: logit did not fit ({type(exc).__name__}: {exc})"
            log.warning("renewal %s: %s", model, failure)
    converged = bool(result is not None and result.converged
                     and np.all(np.isfinite(result.params)))
    rows, ame_rows, cov = [], [], None
    if converged:
        xa = xmat.to_numpy(float)
        p = result.fittedvalues
        info = (xa.T * (p * (1 - p))) @ xa
        try:
            cov = cluster_sandwich(np.linalg.pinv(info), xa * (y - p)[:, None],
                                   data["team_id"].to_numpy(), n_params=n_nonnested)
        except np.linalg.LinAlgError as exc:
            failure = f"not estimable: singular information matrix ({exc})"
            converged = False
    elif keep and not failure:
        failure = "not estimable: logit did not converge (separation?)"
    few = g < min_clusters
    for term in TERMS:
        why = reasons[term] or failure or (design.few_clusters_note(g, min_clusters) if few else "")
        if why:
            rows.append(missing_row(OUTCOME, term, model, SCALE, n_obs=n_obs, n_clusters=g, note=why))
            ame_rows.append(missing_row(OUTCOME, term, ame_model, AME_SCALE, n_obs=n_obs,
                                        n_clusters=g, note=why))
            continue
        j = list(xmat.columns).index(term)
        rows.append(effect_row(OUTCOME, term, model, SCALE, estimate=result.params[j],
                               std_error=float(np.sqrt(cov[j, j])), df=g - 1, n_obs=n_obs,
                               n_clusters=g))
        est, se = _ame(result.params, cov, xmat.to_numpy(float), j)
        ame_rows.append(effect_row(OUTCOME, term, ame_model, AME_SCALE, estimate=est,
                                   std_error=se, df=g - 1, n_obs=n_obs, n_clusters=g,
                                   note="average marginal effect, percentage points"))
    summary = summary_frame(
        outcome=OUTCOME, model=model, n_obs=n_obs, n_clusters=g,
        n_events=int(y.sum()), dof=None if result is None else float(result.df_resid),
        loglik=None if result is None else float(result.llf),
        aic=None if result is None else float(result.aic), converged=converged,
        seconds=time.perf_counter() - t0, n_dropped=n_all - n_obs,
        note=drop_note + "; CR1 by team, t(G-1)")
    return ModelFit(effects_frame(rows + ame_rows), summary,
                    {"result": result, "cov": cov, "columns": list(xmat.columns)})


def _ame(params: np.ndarray, cov: np.ndarray, x: np.ndarray, j: int) -> tuple[float, float]:
    """Average marginal effect of column ``j`` in percentage points, delta-method SE."""
    p = 1 / (1 + np.exp(-(x @ params)))
    dens = p * (1 - p)
    ame = 100 * params[j] * dens.mean()
    grad = 100 * params[j] * (x * (dens * (1 - 2 * p))[:, None]).mean(0)
    grad[j] += 100 * dens.mean()
    return float(ame), float(np.sqrt(grad @ cov @ grad))
