"""Renewal: logit with team and end-quarter fixed effects, plus average marginal effects.

Models ``logit_fe`` and ``logit_fe_controls`` (segment, log(1 + annual_value),
tenure in years added). Fixed effects enter as dummies; a team or quarter whose
contracts all renewed (or all did not) carries no information about the slopes
and would push its dummy to ±∞, so such groups are dropped first, repeatedly,
as fixest does, and the summary says how many. Errors: CR1 cluster-robust by
team, c = G/(G−1)·(N−1)/(N−K) with K excluding the team dummies (nested in the
clusters, fixest's rule), t(G−1) intervals. Average marginal effects (percentage
points per 0.10 of weight) use the delta method with the same covariance.

That CR1 covariance stays in the extras (``cov_cr1``, for the analyst notebooks);
the reported errors are the leave-one-team-out jackknife (CR3,
:mod:`analysis.models.jackknife`; CR1 under-covers with few teams,
docs/models.md): the logit is refitted without each team with the same
statsmodels call (after dropping the groups that become uninformative, as the
full fit does), warm-started from the full-sample coefficients, and the average
marginal effects are jackknifed alongside the log odds ratios. t(G−1) throughout.
With more than ``JACKKNIFE_MAX_CLUSTERS`` teams the CR1 covariance is reported
instead (AMEs by the delta method with it), t(G−1) too.
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
from analysis.models.jackknife import (JACKKNIFE_MAX_CLUSTERS, Jackknife, RefitFailed,
                                       cr1_note, cr3_note, failed_note, identified_without,
                                       jackknife, missing_note, use_jackknife)
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
                min_clusters: int = MIN_CLUSTERS,
                jackknife_max_clusters: int = JACKKNIFE_MAX_CLUSTERS) -> ModelFit:
    """Fit ``logit_fe`` (or ``logit_fe_controls``) on the renewal table.

    Parameters
    ----------
    renewals : the ``renewal_table`` derived table.
    controls : add segment, log(1 + annual_value) and tenure (model ``logit_fe_controls``).
    min_clusters : fewer teams than this make every effect non-estimable.
    jackknife_max_clusters : up to this many teams the errors are the CR3 jackknife,
        with more the CR1 sandwich; t(G−1) either way.

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
    xmat, n_team_dummies = _design(data, x[keep], ctrl)
    n_nonnested = xmat.shape[1] - n_team_dummies
    y = data["renewed"].astype(float).to_numpy()
    result, failure = None, ""
    if keep:
        try:
            result = _glm(y, xmat)
        except FIT_ERRORS as exc:
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
    jk = None
    cr1 = converged and not few and not use_jackknife(g, jackknife_max_clusters)
    if converged and not few and not cr1:
        try:
            jk = _jackknife(data, x[keep], ctrl, result)
        except RefitFailed as exc:
            failure = failed_note(exc)
            log.warning("renewal %s: %s", model, failure)
    for term in TERMS:
        why = reasons[term] or failure or (design.few_clusters_note(g, min_clusters) if few else "")
        if not why and jk is not None and term in jk.dropped:
            why = missing_note(term, jk.dropped[term])
        if why:
            rows.append(missing_row(OUTCOME, term, model, SCALE, n_obs=n_obs, n_clusters=g, note=why))
            ame_rows.append(missing_row(OUTCOME, term, ame_model, AME_SCALE, n_obs=n_obs,
                                        n_clusters=g, note=why))
            continue
        j = list(xmat.columns).index(term)
        if cr1:
            se, vnote = float(np.sqrt(cov[j, j])), cr1_note(g, "CR1", jackknife_max_clusters)
            ame, ame_se = _ame(result.params, cov, xmat.to_numpy(float), j)
            ame_vnote = "delta method, " + vnote
        else:
            se, vnote = jk.std_error(term), cr3_note(g)
            ame, ame_se, ame_vnote = jk.full[AME + term], jk.std_error(AME + term), vnote
        rows.append(effect_row(OUTCOME, term, model, SCALE, estimate=result.params[j],
                               std_error=se, df=g - 1, n_obs=n_obs, n_clusters=g,
                               note=vnote))
        ame_rows.append(effect_row(OUTCOME, term, ame_model, AME_SCALE, estimate=ame,
                                   std_error=ame_se, df=g - 1, n_obs=n_obs,
                                   n_clusters=g, note="average marginal effect, percentage "
                                   "points; " + ame_vnote))
    summary = summary_frame(
        outcome=OUTCOME, model=model, n_obs=n_obs, n_clusters=g,
        n_events=int(y.sum()), dof=None if result is None else float(result.df_resid),
        loglik=None if result is None else float(result.llf),
        aic=None if result is None else float(result.aic), converged=converged,
        seconds=time.perf_counter() - t0, n_dropped=n_all - n_obs,
        jackknife_seconds=None if jk is None else jk.seconds,
        note=drop_note + "; " + (cr3_note(g) if jk is not None else
                                 cr1_note(g, "CR1", jackknife_max_clusters) if cr1 else
                                 "CR1 by team, t(G-1)"))
    extras = {"result": result, "cov_cr1": cov, "columns": list(xmat.columns)}
    if jk is not None:
        terms = [t for t in keep if t in jk.vcov.index]
        extras["vcov"], extras["jackknife"] = jk.vcov.loc[terms, terms], jk
    elif cr1:
        cols = list(xmat.columns)
        idx = [cols.index(t) for t in keep]
        extras["vcov"] = pd.DataFrame(cov[np.ix_(idx, idx)], index=keep, columns=keep)
    return ModelFit(effects_frame(rows + ame_rows), summary, extras)


#: Prefix of the average-marginal-effect entries jackknifed with the coefficients.
AME = "ame:"
#: statsmodels' errors for a logit that cannot be fitted (ValueError: only "infeasible").
FIT_ERRORS = (PerfectSeparationError, np.linalg.LinAlgError, ValueError)


def _design(data: pd.DataFrame, x: pd.DataFrame, ctrl: pd.DataFrame) -> tuple[pd.DataFrame, int]:
    """Constant, regressors, controls, quarter and team dummies; and the number of team dummies."""
    fe_q = pd.get_dummies(data["end_quarter"].astype(str), prefix="q", drop_first=True, dtype=float)
    fe_t = pd.get_dummies(data["team_id"].astype(str), prefix="t", drop_first=True, dtype=float)
    xmat = pd.concat([pd.Series(1.0, index=data.index, name="const"), x, ctrl, fe_q, fe_t],
                     axis=1)
    return xmat, fe_t.shape[1]


def _glm(y: np.ndarray, xmat: pd.DataFrame, start: np.ndarray | None = None):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return sm.GLM(y, xmat.to_numpy(float), family=sm.families.Binomial()).fit(
            start_params=start, maxiter=100, tol=1e-10)


def _estimates(params: np.ndarray, xmat: pd.DataFrame, terms: list[str]) -> pd.Series:
    """Log odds ratios and average marginal effects (pp) of ``terms``."""
    cols = list(xmat.columns)
    xa = xmat.to_numpy(float)
    out = {t: float(params[cols.index(t)]) for t in terms}
    out.update({AME + t: _ame(params, None, xa, cols.index(t))[0] for t in terms})
    return pd.Series(out)


def _jackknife(data: pd.DataFrame, x: pd.DataFrame, ctrl: pd.DataFrame, result) -> Jackknife:
    """CR3 of the log odds ratios and AMEs: the logit refitted without each team."""
    keep = list(x.columns)
    xfull, _ = _design(data, x, ctrl)
    full = _estimates(result.params, xfull, keep)
    teams = data["team_id"].to_numpy()
    identified = identified_without(x, design.factor_codes(teams), teams)

    eta = xfull.to_numpy(float) @ result.params

    def refit(rows: np.ndarray, team) -> pd.Series:
        sub, _ = drop_uninformative(data.loc[rows])
        terms = [t for t in identified[team] if t in keep]
        xmat, _ = _design(sub, x.loc[sub.index, terms], ctrl.loc[sub.index])
        y = sub["renewed"].astype(float).to_numpy()
        # warm start: the full fit's linear predictor on these rows in the refit's own
        # parametrisation (its reference team or quarter may differ)
        start = np.linalg.lstsq(xmat.to_numpy(float), eta[data.index.get_indexer(sub.index)],
                                rcond=None)[0]
        try:
            res = _glm(y, xmat, start)
        except ValueError as exc:
            if "infeasible" not in str(exc):
                raise
            raise RefitDiverged(str(exc)) from exc
        if not (res.converged and np.all(np.isfinite(res.params))):
            raise RefitDiverged("IRLS did not converge")
        return _estimates(res.params, xmat, terms)

    return jackknife(full, teams, refit,
                     errors=(PerfectSeparationError, np.linalg.LinAlgError, RefitDiverged))


class RefitDiverged(Exception):
    """A leave-one-team-out logit whose IRLS diverged or did not converge."""


def _ame(params: np.ndarray, cov: np.ndarray | None, x: np.ndarray, j: int
         ) -> tuple[float, float]:
    """Average marginal effect of column ``j`` in percentage points, delta-method SE (NaN without cov)."""
    p = 1 / (1 + np.exp(-(x @ params)))
    dens = p * (1 - p)
    ame = 100 * params[j] * dens.mean()
    grad = 100 * params[j] * (x * (dens * (1 - 2 * p))[:, None]).mean(0)
    grad[j] += 100 * dens.mean()
    return float(ame), float(np.sqrt(grad @ cov @ grad)) if cov is not None else float("nan")
