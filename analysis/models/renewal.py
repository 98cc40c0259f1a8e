"""Renewal: logit with team and end-quarter fixed effects, plus average marginal effects.

Models ``logit_fe`` and ``logit_fe_controls`` (segment, log(1 + annual_value),
tenure in years added). The team and end-quarter fixed effects are absorbed
(pyfixest ``feglm``, logit, ``renewed ~ x | team_id + end_quarter``), not dummies:
a dense design of 1,200 team dummies does not fit in memory at company scale. The
estimates are those of the dummy-variable logit. A team or quarter whose contracts
all renewed (or all did not) carries no information about the slopes and would push
its effect to ±∞ (feglm keeps such groups, even with ``separation_check``), so they
are dropped first, repeatedly, as fixest does, and the summary says how many. Errors: CR1 cluster-robust by
team, c = G/(G−1)·(N−1)/(N−K) with K excluding the team dummies (nested in the
clusters, fixest's rule), t(G−1) intervals; the slopes' information and scores
come from the design demeaned within team and quarter with the IRLS weights
(Frisch–Waugh), which gives the dummy-variable sandwich exactly. Average marginal
effects (percentage points per 0.10 of weight) use the delta method with the same
covariance, the fixed effects' part of the gradient by weighted demeaning too.

That CR1 covariance stays in the extras (``cov_cr1``, for the analyst notebooks);
the reported errors are the leave-one-team-out jackknife (CR3,
:mod:`analysis.models.jackknife`; CR1 under-covers with few teams,
docs/models.md): the logit is refitted without each team with the same
absorbed-effects call (after dropping the groups that become uninformative, as the
full fit does), and the average
marginal effects are jackknifed alongside the log odds ratios. t(G−1) throughout.
With more than ``JACKKNIFE_MAX_CLUSTERS`` teams the CR1 covariance is reported
instead (AMEs by the delta method with it), t(G−1) too.
"""

from __future__ import annotations

import logging
import time
import warnings
from dataclasses import dataclass

import numpy as np
import pandas as pd
from pyfixest.estimation.FixestMulti_ import _ALL_SAMPLE, FixestMulti
from pyfixest.estimation.internals.demeaner_options import _resolve_demeaner
from pyfixest.estimation.models.felogit_ import Felogit
from pyfixest.utils.utils import ssc as ssc_func
from pyfixest.core.demean import demean
from pyfixest.errors import NonConvergenceError
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

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
        (``result``: the :class:`AbsorbedLogit`, ``cov_cr1``: CR1 covariance of the
        slopes named in ``columns``; ``vcov``: the reported covariance of the terms).
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
    n_quarters = int(data["end_quarter"].nunique())
    # parameters not nested in the clusters: constant, slopes, controls, quarter effects
    n_nonnested = len(keep) + ctrl.shape[1] + n_quarters
    y = data["renewed"].astype(float).to_numpy()
    result, failure = None, ""
    if keep:
        try:
            result = _fit(data, x[keep], ctrl)
        except FIT_ERRORS as exc:
            # a diverging IRLS or a singular design: report, never crash. Demeaning
            # that fails signals with ValueError ("Demeaning failed"); any other
            # ValueError is a bug and propagates
            if isinstance(exc, ValueError) and "Demeaning failed" not in str(exc):
                raise
            failure = f"not estimable: logit did not fit ({type(exc).__name__}: {exc})"
            log.warning("renewal %s: %s", model, failure)
    converged = bool(result is not None and result.converged
                     and np.all(np.isfinite(result.params)))
    rows, ame_rows, cov = [], [], None
    if converged:
        try:
            cov = cluster_sandwich(np.linalg.inv(result.information),
                                   result.xt * (y - result.p)[:, None], team,
                                   n_params=n_nonnested)
        except np.linalg.LinAlgError as exc:
            failure = f"not estimable: singular information matrix ({exc})"
            converged = False
    elif keep and not failure:
        failure = "not estimable: logit did not converge (separation?)"
    few = g < min_clusters
    jk = None
    cr1 = converged and not few and not use_jackknife(g, jackknife_max_clusters)
    ames = _ames(result, y, team, keep, n_nonnested) if cr1 else {}
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
        j = result.columns.index(term)
        if cr1:
            se, vnote = float(np.sqrt(cov[j, j])), cr1_note(g, "CR1", jackknife_max_clusters)
            ame, ame_se = ames[term]
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
    extras = {"result": result, "cov_cr1": cov,
              "columns": None if result is None else list(result.columns)}
    if jk is not None:
        terms = [t for t in keep if t in jk.vcov.index]
        extras["vcov"], extras["jackknife"] = jk.vcov.loc[terms, terms], jk
    elif cr1:
        idx = [result.columns.index(t) for t in keep]
        extras["vcov"] = pd.DataFrame(cov[np.ix_(idx, idx)], index=keep, columns=keep)
    return ModelFit(effects_frame(rows + ame_rows), summary, extras)


#: Prefix of the average-marginal-effect entries jackknifed with the coefficients.
AME = "ame:"
#: Errors of a logit that cannot be fitted (ValueError: only "Demeaning failed").
FIT_ERRORS = (NonConvergenceError, np.linalg.LinAlgError, ValueError)
#: IRLS (relative deviance change) and feglm's fixed-effect demeaning tolerances. feglm
#: (``accelerate``, its default) warm-starts each IRLS step's demeaning from the last
#: and divides the tolerance by 10 once the deviance change falls below 10× it; 1e-8
#: instead of 1e-12 moved estimates and errors < 1e-11 relative at company scale and
#: < 1e-8 on the sample (jackknife included), with fewer demeaning sweeps.
IRLS_TOL, FIXEF_TOL = 1e-12, 1e-8
#: Tolerance of our own weighted demeaning (CR1 scores, AME delta method).
DEMEAN_TOL = 1e-12


@dataclass
class AbsorbedLogit:
    """A logit whose team and quarter effects are absorbed (pyfixest ``feglm``).

    ``params`` are the slopes named in ``columns`` (regressors, then controls); ``p``
    the fitted probabilities; ``xt`` the slope columns demeaned within team and
    quarter with the IRLS weights p(1 − p), so ``information`` = X̃ᵀWX̃ is the slope
    block of the inverse information of the dummy-variable logit (Frisch–Waugh)
    and X̃ᵢ(yᵢ − pᵢ) its score after partialling out the fixed effects.
    """

    params: np.ndarray
    columns: list[str]
    p: np.ndarray
    xt: np.ndarray
    information: np.ndarray
    fe: np.ndarray
    llf: float
    df_resid: float
    aic: float
    converged: bool


def _fit(data: pd.DataFrame, x: pd.DataFrame, ctrl: pd.DataFrame) -> AbsorbedLogit:
    """``renewed ~ x + ctrl | team_id + end_quarter`` by pyfixest's logit (:func:`_feglm_logit`).

    ``data`` has been through :func:`drop_uninformative`: no team or quarter is left
    whose contracts all lapsed, the only groups feglm's "fe" separation check drops,
    so that check (a cross-tabulation per fixed effect) is not run.
    """
    names = list(x.columns) + list(ctrl.columns)
    xa = np.column_stack([x.to_numpy(float), ctrl.to_numpy(float)]) if names else \
        np.empty((len(data), 0))
    fe = np.column_stack([design.factor_codes(data[f]) for f in FE]).astype(np.uint64)
    m = _feglm_logit(xa, data["renewed"].to_numpy(float), fe)
    kept = [int(c[1:]) for c in m._coefnames]  # feglm drops collinear slopes
    params = np.asarray(m._beta_hat, float).ravel()
    p = np.asarray(m._Y_hat_response, float).ravel()
    del m
    xa = xa[:, kept]
    w = p * (1 - p)
    xt = _demean(xa, fe, w)
    y = data["renewed"].to_numpy(float)
    with np.errstate(divide="ignore", invalid="ignore"):
        llf = float(np.sum(np.where(y > 0, np.log(p), np.log1p(-p))))
    levels = [int(fe[:, k].max()) + 1 for k in range(fe.shape[1])]
    n_nodes = sum(levels)  # bipartite graph: teams, then quarters
    graph = coo_matrix((np.ones(len(fe)), (fe[:, 0].astype(np.int64),
                                           fe[:, 1].astype(np.int64) + levels[0])),
                       shape=(n_nodes, n_nodes))
    n_comp = connected_components(graph.tocsr(), directed=False)[0]
    # rank of the dummy design: slopes + team + quarter levels − connected components
    # (bipartite graph of teams and quarters; isolated nodes never occur)
    rank = len(kept) + sum(levels) - n_comp
    return AbsorbedLogit(params=params, columns=[names[k] for k in kept], p=p, xt=xt,
                         information=(xt.T * w) @ xt, fe=fe, llf=llf,
                         df_resid=float(len(y) - rank), aic=float(-2 * llf + 2 * rank),
                         converged=bool(np.all(np.isfinite(params))))


def _feglm_logit(xa: np.ndarray, y: np.ndarray, fe: np.ndarray):
    """pyfixest's ``feglm(y ~ v0 + ... | fe0 + fe1, family="logit")``, fitted from arrays.

    ``feglm`` builds its model matrix with formulaic (most of a refit's cost on the
    sample); the matrix of numeric columns and two fixed effects is known here: the
    columns as given, the fixed effects factorised in order of appearance as int32
    (pyfixest's ``_factorize``), in a fixed order (:class:`_ArrayLogit`). The formula is parsed and the model object built
    with the arguments ``feglm`` passes; then the same ``get_fit`` (IRLS) runs. Its
    inference (``vcov``, ``get_inference``) is not computed: only the coefficients,
    their names and the fitted probabilities are used (identical to ``feglm``'s,
    tested).
    """
    names = [f"v{k}" for k in range(xa.shape[1])]
    fml = "y ~ " + " + ".join(names) + " | fe0 + fe1"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fixest = FixestMulti(data=pd.DataFrame(columns=["y", *names, "fe0", "fe1"]),
                             copy_data=False, store_data=False, lean=False,
                             weights_type="aweights", use_compression=False, reps=None,
                             seed=None, split=None, fsplit=None, context={})
        fixest._prepare_estimation(estimation="feglm-logit", fml=fml, vcov="iid",
                                   vcov_kwargs=None, weights=None, ssc=ssc_func(),
                                   fixef_rm="none", drop_intercept=False)
        (formula,), = fixest.FixestFormulaDict.values()
        m = _ArrayLogit(
            FixestFormula=formula, data=fixest._data, ssc_dict=fixest._ssc_dict,
            drop_singletons=fixest._drop_singletons, drop_intercept=fixest._drop_intercept,
            weights=None, weights_type="aweights", solver="scipy.linalg.solve",
            collin_tol=1e-09, store_data=False, copy_data=False, lean=False,
            context=fixest._context, sample_split_value=_ALL_SAMPLE,
            sample_split_var=None, lookup_demeaned_data={},
            demeaner=_resolve_demeaner(demeaner=None, fixef_tol=FIXEF_TOL,
                                       fixef_maxiter=100_000),
            separation_check=[], tol=IRLS_TOL, maxiter=100, accelerate=True)
        m.arrays = (y, xa, fe, names)
        m.prepare_model_matrix()
        m._check_dependent_variable()
        m.get_fit()
    return m


class _ArrayLogit(Felogit):
    """pyfixest's logit whose model matrix is given as arrays (``arrays``: y, X, fe, names)."""

    arrays = None

    def prepare_model_matrix(self):
        """What ``Feols.prepare_model_matrix`` sets from formulaic's matrices, from arrays."""
        y, xa, fe, names = self.arrays
        self.arrays = None
        self._Y = pd.DataFrame({"y": y})
        self._Y_untransformed = self._Y.copy()
        self._X = pd.DataFrame(xa, columns=names)
        # feglm's column order of the fixed effects comes from formulaic's set of
        # terms, so it follows the string hash seed (the demeaning sweeps them in
        # that order: last digits move). Fixed here, quarter then team: feglm's order
        # under PYTHONHASHSEED=0, the seed the pinned results were produced with.
        self._fe = pd.DataFrame({f"fe{k}": pd.factorize(fe[:, k].astype(np.int64))[0]
                                 .astype("int32") for k in reversed(range(fe.shape[1]))})
        self._endogvar = self._Z = self._weights_df = self._offset_df = None
        self._na_index = frozenset()
        self._icovars, self._model_spec, self._coefnames_z = None, None, None
        self._X_is_empty = not len(y) > 0
        self._coefnames = list(names)
        self._depvar = "y"
        self._has_fixef = True
        self._fixef = self.FixestFormula.fixed_effects
        self._k_fe = self._fe.nunique(axis=0)
        self._n_fe = len(self._k_fe)
        self._weights = self._set_weights()
        self._N, self._N_rows = self._set_nobs()


def _demean(a: np.ndarray, fe: np.ndarray, w: np.ndarray) -> np.ndarray:
    """``a`` minus its weighted projection on the team and quarter dummies."""
    if a.shape[1] == 0:
        return a
    out, ok = demean(np.ascontiguousarray(a, dtype=float), fe, w, tol=DEMEAN_TOL,
                     maxiter=100_000)
    if not ok:
        raise ValueError("Demeaning failed (weighted team and quarter means)")
    return out


def _estimates(params: np.ndarray, columns: list[str], p: np.ndarray, terms: list[str]
               ) -> pd.Series:
    """Log odds ratios and average marginal effects (pp) of ``terms`` (slopes ``params``
    named ``columns``, fitted probabilities ``p``)."""
    dens = (p * (1 - p)).mean()
    out = {t: float(params[columns.index(t)]) for t in terms}
    out.update({AME + t: float(100 * params[columns.index(t)] * dens) for t in terms})
    return pd.Series(out)


def _jackknife(data: pd.DataFrame, x: pd.DataFrame, ctrl: pd.DataFrame,
               result: AbsorbedLogit) -> Jackknife:
    """CR3 of the log odds ratios and AMEs: the logit refitted without each team.

    A refit is :func:`fit_renewal`'s procedure on the remaining rows — drop the teams
    and quarters left uninformative (:func:`_informative`, as :func:`drop_uninformative`),
    then the same :func:`_feglm_logit` — from arrays built once; only its slopes and
    fitted probabilities are needed (no CR1 scores).
    """
    keep = list(x.columns)
    full = _estimates(result.params, result.columns, result.p, keep)
    teams = data["team_id"].to_numpy()
    identified = identified_without(x, design.factor_codes(teams), teams)
    xa, ca = x.to_numpy(float), ctrl.to_numpy(float)
    y = data["renewed"].to_numpy(float)
    fe = np.column_stack([design.factor_codes(data[f]) for f in FE])

    def refit(rows: np.ndarray, team) -> pd.Series:
        pos = _informative(y, fe, np.flatnonzero(rows))
        terms = [t for t in identified[team] if t in keep]
        cols = terms + list(ctrl.columns)
        sub = np.column_stack([xa[pos][:, [keep.index(t) for t in terms]], ca[pos]]) \
            if cols else np.empty((len(pos), 0))
        try:
            m = _feglm_logit(sub, y[pos], fe[pos].astype(np.uint64))
        except (NonConvergenceError, ValueError) as exc:
            if isinstance(exc, ValueError) and "Demeaning failed" not in str(exc):
                raise
            raise RefitDiverged(str(exc)) from exc
        columns = [cols[int(c[1:])] for c in m._coefnames]  # feglm drops collinear slopes
        params = np.asarray(m._beta_hat, float).ravel()
        if not np.all(np.isfinite(params)):
            raise RefitDiverged("IRLS did not converge")
        return _estimates(params, columns, np.asarray(m._Y_hat_response, float).ravel(),
                          [t for t in terms if t in columns])

    return jackknife(full, teams, refit, errors=(np.linalg.LinAlgError, RefitDiverged))


def _informative(y: np.ndarray, fe: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """:func:`drop_uninformative` on arrays: the ``rows`` kept (``fe``: team, quarter codes)."""
    while True:
        changed = False
        for k in range(fe.shape[1]):
            c = fe[rows, k]
            n, s = np.bincount(c), np.bincount(c, weights=y[rows])
            bad = ((s == 0) | (s == n))[c]  # all lapsed or all renewed
            if bad.any():
                rows, changed = rows[~bad], True
        if not changed or not len(rows):
            return rows


class RefitDiverged(Exception):
    """A leave-one-team-out logit whose IRLS diverged or did not converge."""


def _ames(fit: AbsorbedLogit, y: np.ndarray, clusters: np.ndarray, terms: list[str],
          n_params: int) -> dict[str, tuple[float, float]]:
    """Average marginal effect of each slope in ``terms`` (pp) and its CR1 delta-method SE.

    The gradient g of the AME of slope j with respect to all parameters of the
    dummy-variable logit (fixed effects included) enters the sandwich as gᵀA⁻¹zᵢ(yᵢ − pᵢ);
    with g = Zᵀv + 100·mean(p(1−p))·e_j and vᵢ = 100·β_j·pᵢ(1−pᵢ)(1−2pᵢ)/n, gᵀA⁻¹zᵢ is the
    weighted (W = p(1−p)) least-squares fit of v/W on Z at row i plus
    100·mean(p(1−p))·x̃ᵢᵀ(X̃ᵀWX̃)⁻¹e_j — computed by demeaning, without the dummies.
    v/W is β_j times one vector for every slope, so that vector is demeaned once.
    """
    p = fit.p
    w = p * (1 - p)
    minv = np.linalg.inv(fit.information)
    r1 = 100 * (1 - 2 * p) / len(p)              # v / W per unit of β_j
    rt1 = _demean(r1[:, None], fit.fe, w)[:, 0]
    fitted1 = r1 - (rt1 - fit.xt @ (minv @ (fit.xt.T @ (w * rt1))))
    out = {}
    for term in terms:
        j = fit.columns.index(term)
        b = fit.params[j]
        a = b * fitted1 + 100 * w.mean() * (fit.xt @ minv[:, j])
        var = cluster_sandwich(np.eye(1), (a * (y - p))[:, None], clusters, n_params=n_params)
        out[term] = (float(100 * b * w.mean()), float(np.sqrt(var[0, 0])))
    return out
