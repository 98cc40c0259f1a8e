"""Rep × quarter panel models: complaints (Poisson), CSAT, NPS and bookings (linear).

All with rep and quarter fixed effects and errors clustered by team: the
leave-one-team-out jackknife (CR3, :mod:`analysis.models.jackknife`) with t(G−1)
intervals. Linear models take pyfixest's CRV3 (``vcov={"CRV3": "team_id"}``,
which refits the weighted FE model without each team, centred at the full
estimate) with the library's CR1 factor switched off (``ssc(k_adj=False,
G_adj=False)``) and the textbook (G−1)/G applied; the Poisson model refits
``pf.fepois`` itself, because pyfixest's CRV3 refits drop the offset. Both run
pyfixest's estimator on each leave-one-team-out sample from model matrices built
once (:class:`_Refits`, the same numbers as the library's calls). A term that
varies within reps of one team only is not identified without it and is then
non-estimable (its refits run the generic loop without it). With more than
``JACKKNIFE_MAX_CLUSTERS`` teams there is no jackknife: the errors are pyfixest's
CRV1 by team, t(G−1). With fewer than ``MIN_CLUSTERS`` teams the linear models take their
p-value from pyfixest's restricted wild cluster bootstrap (``Feols.wildboottest``,
Webb weights, seeded) and their interval by inverting that test
(:func:`analysis.models.clustered.wild_cluster_ci`); below ``WILD_MIN_CLUSTERS``
teams, or when the inverted interval is unbounded, the effect is non-estimable.
The Poisson model has no such bootstrap and is reported non-estimable.
From ``MIN_CLUSTERS`` to ``WILD_COMPARE_MAX_CLUSTERS`` teams the linear models also
carry wild-bootstrap p-values of β = 0 in ``extras["wild_p"]``
(:func:`wild_p_values`), shown beside the analytic ones in the analyst notebooks.
"""

from __future__ import annotations

import copy
import logging
import time
import warnings
from typing import Literal

import numpy as np
import pandas as pd
import pyfixest as pf
from pyfixest.core.detect_singletons import detect_singletons
from pyfixest.errors import (EmptyDesignMatrixError, EmptyVcovError, MatrixNotFullRankError,
                             NanInClusterVarError, NonConvergenceError)
from pyfixest.estimation.formula.model_matrix import create_model_matrix

from analysis.config import MIN_CLUSTERS, SEED, TERMS
from analysis.errors import ParameterError
from analysis.models import design
from analysis.models.clustered import (WILD_COMPARE_MAX_CLUSTERS, WILD_COMPARE_REPS,
                                       WILD_MIN_CLUSTERS, WILD_REPS, WildTest,
                                       wild_cluster_ci)
from analysis.models.fe_order import formula_fe_order
from analysis.models.jackknife import (JACKKNIFE_MAX_CLUSTERS, Jackknife, RefitFailed,
                                       cr1_note, cr3_note, failed_note, identified_without,
                                       jackknife, missing_note, single_threaded_blas,
                                       use_jackknife)
from analysis.models.tidy import (ModelFit, effect_row, effects_frame, empty_fit,
                                  missing_row, summary_frame)

log = logging.getLogger(__name__)

FE_LABEL = "rep and quarter"
LINEAR = {  # outcome -> (column, weights column or None, scale)
    "csat": ("csat_mean", "csat_responses", "csat_points"),
    "nps": ("nps", "nps_responses", "nps_points"),
    "bookings": ("log_bookings", None, "log_bookings"),
}
LinearOutcome = Literal["csat", "nps", "bookings"]
POISSON_MODEL, LINEAR_MODEL = "poisson_fe", "ols_fe"
#: What pyfixest (and numpy under it) raise when a model cannot be fitted on the
#: data: caught and reported as non-estimable; anything else is a bug and propagates.
FIT_ERRORS = (NonConvergenceError, MatrixNotFullRankError, EmptyDesignMatrixError,
              EmptyVcovError, NanInClusterVarError, np.linalg.LinAlgError)


def _prepare(panel: pd.DataFrame, y: str, extra: list[str]) -> pd.DataFrame:
    data = design.complete_rows(panel, [y, "rep_id", "quarter", "team_id", *extra])
    work = design.regressors(data)
    work["y"] = data[y].astype(float).to_numpy()
    for c in ("rep_id", "quarter", "team_id", *extra):
        work[c] = data[c].to_numpy()
    return work.reset_index(drop=True)


def _drop_zero_groups(work: pd.DataFrame) -> tuple[pd.DataFrame, int]:
    """Poisson: a rep or quarter with no complaints at all has an MLE at −∞; drop it."""
    keep = _nonzero_groups(work["y"].to_numpy(float),
                           [pd.factorize(work[f])[0] for f in ("rep_id", "quarter")],
                           np.arange(len(work)))
    return work.iloc[keep].reset_index(drop=True), len(work) - len(keep)


def _nonzero_groups(y: np.ndarray, groups: list[np.ndarray], rows: np.ndarray) -> np.ndarray:
    """``rows`` left once reps and quarters whose rows sum to zero are dropped, repeatedly.

    ``y`` is non-negative (counts), so a zero sum means no complaint at all.
    """
    while True:
        bad = np.zeros(len(rows), bool)
        for codes in groups:
            c = codes[rows]
            bad |= np.bincount(c, weights=y[rows])[c] == 0
        if not bad.any():
            return rows
        rows = rows[~bad]


def _fml(keep: list[str]) -> str:
    return "y ~ " + " + ".join(keep) + " | rep_id + quarter"


def _coded(used: pd.DataFrame, columns: list[str]) -> pd.DataFrame:
    """``columns`` of ``used`` with rep, quarter and team as integer codes, for the refits.

    pyfixest evaluates its formula once per leave-one-team-out refit, and integer
    labels cost it less than strings. The numbers are the same: it factorizes fixed
    effects by first appearance, and the codes keep the teams' sorted order (CRV3
    sums over teams in that order).
    """
    return used[columns].assign(**{c: pd.factorize(used[c], sort=True)[0]
                                   for c in ("rep_id", "quarter", "team_id")})


def _used(fit, work: pd.DataFrame) -> pd.DataFrame:
    na = sorted(getattr(fit, "_na_index", ()) or ())
    return work.drop(index=na) if na else work


def _reasons(work: pd.DataFrame, weights: str | None) -> dict[str, str]:
    factors = [design.factor_codes(work["rep_id"]), design.factor_codes(work["quarter"])]
    w = None if weights is None else work[weights].to_numpy(float)
    return design.identifiability(work[list(TERMS)], factors, FE_LABEL, weights=w)


def fit_complaints(panel: pd.DataFrame, *, min_clusters: int = MIN_CLUSTERS,
                   jackknife_max_clusters: int = JACKKNIFE_MAX_CLUSTERS) -> ModelFit:
    """``poisson_fe``: complaints ~ weights | rep + quarter, offset log(exposure).

    Parameters
    ----------
    panel : the ``rep_quarter_panel`` derived table; rows with exposure > 0 are used.
    min_clusters : fewer teams than this make every effect non-estimable.
    jackknife_max_clusters : up to this many teams the errors are the CR3 jackknife,
        with more pyfixest's CRV1; t(G−1) either way.

    Returns
    -------
    ModelFit
        Log rate ratios; the summary carries ``pearson_dispersion`` (Pearson χ²/df:
        well above 1 means overdispersion — the clustered errors stay valid, the
        model-based ones would not).
    """
    t0 = time.perf_counter()
    outcome, scale = "complaints", "log_rate_ratio"
    work = _prepare(panel.loc[panel["exposure"] > 0], "complaints", ["exposure"])
    work["log_exposure"] = np.log(work["exposure"].astype(float))
    work, n_zero = _drop_zero_groups(work)
    g = int(work["team_id"].nunique()) if len(work) else 0
    if work.empty:
        return empty_fit(outcome, POISSON_MODEL, scale, TERMS,
                         "not estimable: no complaints in the data")
    reasons = _reasons(work, None)
    keep = [t for t in TERMS if not reasons[t]]
    fit, failure = None, ""
    if keep:
        try:
            with warnings.catch_warnings(), formula_fe_order():
                warnings.simplefilter("ignore")
                fit = pf.fepois(_fml(keep), data=work, offset="log_exposure",
                                vcov={"CRV1": "team_id"})
        except FIT_ERRORS as exc:
            failure = f"not estimable: Poisson fit failed ({type(exc).__name__}: {exc})"
            log.warning("complaints: %s", failure)
    used = _used(fit, work) if fit is not None else work
    n_obs, g = len(used), int(used["team_id"].nunique())
    jk = None
    if fit is not None and g >= min_clusters and use_jackknife(g, jackknife_max_clusters):
        try:
            jk = _jackknife(fit, used, keep, _poisson_refit(used))
        except RefitFailed as exc:
            failure = failed_note(exc)
            log.warning("complaints: %s", failure)
    rows = _rows(outcome, POISSON_MODEL, scale, fit, reasons, failure, n_obs, g,
                 min_clusters, wild=None, jk=jk, max_jk=jackknife_max_clusters)
    dispersion = None
    if fit is not None:
        mu = np.asarray(fit._Y_hat_response, float).ravel()
        y = used["y"].to_numpy(float)
        levels = used["rep_id"].nunique() + used["quarter"].nunique() - 1
        dof = n_obs - len(keep) - levels
        dispersion = float(((y - mu) ** 2 / mu).sum() / dof) if dof > 0 else None
    summary = summary_frame(
        outcome=outcome, model=POISSON_MODEL, n_obs=n_obs, n_clusters=g,
        n_events=int(used["y"].sum()), dof=None if fit is None else float(dof),
        loglik=None, aic=None, converged=bool(fit is not None and fit.convergence),
        seconds=time.perf_counter() - t0, pearson_dispersion=dispersion,
        n_dropped_zero_groups=n_zero, jackknife_seconds=None if jk is None else jk.seconds,
        note=f"dropped {n_zero} rows in reps/quarters with no complaints; "
             f"{_vnote(jk, g, jackknife_max_clusters)}")
    return ModelFit(effects_frame(rows), summary, _extras(fit, jk, g, jackknife_max_clusters))


def fit_linear(panel: pd.DataFrame, outcome: LinearOutcome, *,
               min_clusters: int = MIN_CLUSTERS, wild_reps: int = WILD_REPS,
               jackknife_max_clusters: int = JACKKNIFE_MAX_CLUSTERS) -> ModelFit:
    """``ols_fe`` for csat (weighted by csat_responses), nps (nps_responses) or bookings.

    Parameters
    ----------
    panel : the ``rep_quarter_panel`` derived table.
    outcome : "csat", "nps" or "bookings".
    min_clusters : below this many teams the interval comes from the wild cluster bootstrap.
    wild_reps : bootstrap replications.
    jackknife_max_clusters : up to this many teams the errors are the CR3 jackknife,
        with more pyfixest's CRV1; t(G−1) either way.

    Returns
    -------
    ModelFit
    """
    if outcome not in LINEAR:
        raise ParameterError(f"unknown linear outcome {outcome!r}; allowed: {', '.join(LINEAR)}")
    t0 = time.perf_counter()
    ycol, wcol, scale = LINEAR[outcome]
    base = panel if wcol is None else panel.loc[panel[wcol] > 0]
    work = _prepare(base, ycol, [wcol] if wcol else [])
    if work.empty:
        return empty_fit(outcome, LINEAR_MODEL, scale, TERMS, "not estimable: no usable rows")
    reasons = _reasons(work, wcol)
    keep = [t for t in TERMS if not reasons[t]]
    fit, failure = None, ""
    if keep:
        try:
            with warnings.catch_warnings(), formula_fe_order():
                warnings.simplefilter("ignore")
                fit = pf.feols(_fml(keep), data=work, weights=wcol, vcov={"CRV1": "team_id"})
        except FIT_ERRORS as exc:
            failure = f"not estimable: fit failed ({type(exc).__name__}: {exc})"
            log.warning("%s: %s", outcome, failure)
    used = _used(fit, work) if fit is not None else work
    n_obs, g = len(used), int(used["team_id"].nunique())
    wild, jk, wild_p = None, None, None
    if fit is not None and min_clusters <= g <= WILD_COMPARE_MAX_CLUSTERS:
        wild_p = wild_p_values(used, keep, wcol)
    if fit is not None and WILD_MIN_CLUSTERS <= g < min_clusters:
        wild = _wild(used, keep, wcol, wild_reps)
    elif fit is not None and g >= min_clusters and use_jackknife(g, jackknife_max_clusters):
        try:
            jk = _linear_cr3(fit, used, keep, wcol)
        except RefitFailed as exc:
            failure = failed_note(exc)
            log.warning("%s: %s", outcome, failure)
    rows = _rows(outcome, LINEAR_MODEL, scale, fit, reasons, failure, n_obs, g, min_clusters,
                 wild=wild, jk=jk, max_jk=jackknife_max_clusters)
    summary = summary_frame(
        outcome=outcome, model=LINEAR_MODEL, n_obs=n_obs, n_clusters=g,
        dof=None if fit is None else float(fit._df_t), loglik=None, aic=None,
        converged=fit is not None, seconds=time.perf_counter() - t0,
        r2_within=None if fit is None else float(getattr(fit, "_r2_within", np.nan)),
        jackknife_seconds=None if jk is None else jk.seconds,
        note=("weighted by " + wcol + "; " if wcol else "")
        + _vnote(jk, g, jackknife_max_clusters))
    return ModelFit(effects_frame(rows), summary,
                    {**_extras(fit, jk, g, jackknife_max_clusters), "wild": wild,
                     "wild_p": wild_p})


def _vnote(jk: Jackknife | None, g: int, max_jk: int = JACKKNIFE_MAX_CLUSTERS) -> str:
    if jk is not None:
        return cr3_note(g)
    return "CRV1 by team, t(G-1)" if use_jackknife(g, max_jk) else cr1_note(g, "CRV1", max_jk)


def _extras(fit, jk: Jackknife | None, g: int, max_jk: int = JACKKNIFE_MAX_CLUSTERS) -> dict:
    """``fit`` (pyfixest, CRV1), ``vcov`` (the covariance of the terms the effects' errors
    come from, for the what-if: CR3, or CRV1 with more than ``max_jk`` teams), ``jackknife``."""
    out = {"fit": fit}
    if fit is not None:
        names = [n for n in fit._coefnames if n in TERMS]
        idx = [list(fit._coefnames).index(n) for n in names]
        out["vcov_crv1"] = pd.DataFrame(np.asarray(fit._vcov)[np.ix_(idx, idx)], index=names,
                                        columns=names)
        if not use_jackknife(g, max_jk):
            out["vcov"] = out["vcov_crv1"]
    if jk is not None:
        out["vcov"], out["jackknife"] = jk.vcov, jk
    return out


def _jackknife(fit, used: pd.DataFrame, keep: list[str], refit) -> Jackknife:
    """CR3 of ``keep`` by refitting ``refit(rows, terms)`` without each team."""
    full = fit.coef()[keep].astype(float)
    teams = used["team_id"].to_numpy()
    identified = identified_without(used[keep], design.factor_codes(used["rep_id"]), teams)
    return jackknife(full, teams, lambda rows, team: refit(rows, identified[team]),
                     errors=FIT_ERRORS)


def _poisson_refit(used: pd.DataFrame):
    coded = _coded(used, ["y", *TERMS, "rep_id", "quarter", "team_id", "log_exposure"])
    groups = [coded[f].to_numpy() for f in ("rep_id", "quarter")]
    y = coded["y"].to_numpy(float)
    refits: dict[tuple[str, ...], _Refits] = {}

    def refit(rows: np.ndarray, terms: list[str]) -> pd.Series:
        # the model's own procedure on the remaining teams: drop reps/quarters left
        # without complaints, same formula, offset and library
        kept = _nonzero_groups(y, groups, np.flatnonzero(rows))
        if tuple(terms) not in refits:
            refits[tuple(terms)] = _Refits(_fml(terms), coded, offset="log_exposure")
        return refits[tuple(terms)].coef(kept).reindex(terms)
    return refit


class _Refits:
    """pyfixest refits of one formula on row subsets of ``data``, the formula parsed once.

    Most of a small refit's cost is pyfixest building its model matrices with
    formulaic (and, for fepois, its separation check). Here the same call on every
    row (``template``) supplies the model object's setup, and formulaic builds the
    matrices once, singletons kept; a refit takes its rows of them, the fixed effects
    re-encoded as pyfixest encodes a subset (``pd.factorize`` by first appearance,
    int32), pyfixest's singleton removal, and runs the estimator's own ``get_fit``:
    the same numbers as ``feols`` / ``fepois`` on ``data.iloc[rows]``
    (tests/test_panel_fast_paths.py). Where that call could differ (fepois's
    separation check would drop rows, a term dropped as collinear, an error, a
    non-finite or non-converged estimate) the subset is refitted by the call itself.
    """

    def __init__(self, fml: str, data: pd.DataFrame, *, weights: str | None = None,
                 offset: str | None = None):
        self.fml, self.data, self.weights, self.offset = fml, data, weights, offset
        self.template, self.arrays = None, None
        try:
            self.template = self.call(data)
            with warnings.catch_warnings(), formula_fe_order():
                warnings.simplefilter("ignore")
                mm = create_model_matrix(formula=self.template.FixestFormula,
                                         data=data.copy(), weights=weights, offset=offset)
        except FIT_ERRORS:
            return  # every refit goes through the call (and fails or not as it does)
        frames = {"_Y": mm.dependent, "_X": mm.independent, "_fe": mm.fixed_effects,
                  "_weights_df": mm.weights, "_offset_df": mm.offset}
        if len(mm.dependent) == len(data):  # no row dropped for missing values
            self.arrays = {k: None if v is None else (v.to_numpy(), list(v.columns))
                           for k, v in frames.items()}

    def call(self, data: pd.DataFrame):
        """The library call itself on ``data`` (errors propagate)."""
        with warnings.catch_warnings(), formula_fe_order():
            warnings.simplefilter("ignore")
            if self.offset is not None:
                return pf.fepois(self.fml, data=data, offset=self.offset, vcov="iid")
            return pf.feols(self.fml, data=data, weights=self.weights, vcov="iid")

    def coef(self, rows: np.ndarray) -> pd.Series:
        """Coefficients of the model fitted on ``data.iloc[rows]`` (as ``call(...).coef()``)."""
        fit = self._fit(rows) if self.arrays is not None else None
        if fit is None:
            fit = self.call(self.data.iloc[rows])
        return pd.Series(np.asarray(fit._beta_hat, float).ravel(), index=fit._coefnames)

    def _fit(self, rows: np.ndarray):
        """The refit from the stored matrices, or None where the call must run instead."""
        (fe_all, fe_names), poisson = self.arrays["_fe"], self.offset is not None
        fe = np.column_stack([pd.factorize(fe_all[rows, k])[0] for k in range(fe_all.shape[1])]
                             ).astype("int32")
        if self.template._drop_singletons:
            single = detect_singletons(fe)
            if single.any():
                rows, fe = rows[~single], fe[~single]
        n = len(rows)
        if poisson:  # fepois's "fe" separation check: a level without any y > 0
            positive = self.arrays["_Y"][0][rows, 0] > 0
            if any((np.bincount(c, weights=positive)[np.unique(c)] == 0).any() for c in fe.T):
                return None
        fit = copy.copy(self.template)
        for name, arr in self.arrays.items():
            if name != "_fe":
                setattr(fit, name, None if arr is None else
                        pd.DataFrame(arr[0][rows], columns=arr[1]))
        fit._fe = pd.DataFrame(fe, columns=fe_names)
        fit._Y_untransformed = fit._Y.copy()
        fit._weights = (np.ones(n) if fit._weights_df is None
                        else fit._weights_df.to_numpy()).reshape((n, 1))
        fit._N = fit._N_rows = n
        fit._coefnames = list(self.arrays["_X"][1])
        fit._X_is_empty = n == 0
        fit._lookup_demeaned_data, fit._preconditioner, fit.convergence = {}, None, False
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                fit.get_fit()
        except FIT_ERRORS + (ValueError,):
            return None
        beta = np.asarray(fit._beta_hat, float)
        if (list(fit._coefnames) != self.arrays["_X"][1] or not np.isfinite(beta).all()
                or (poisson and not fit.convergence)):
            return None
        return fit


def _linear_cr3(fit, used: pd.DataFrame, keep: list[str], wcol: str | None) -> Jackknife:
    """CR3 of a linear model: pyfixest's CRV3 (no CR1 factor) × (G−1)/G.

    pyfixest's CRV3 (``Feols._vcov_crv3_slow``) refits ``feols`` without each team
    (its clusters in order of first appearance) and sums the outer products of the
    deviations from the full estimate; the same is done here with the refits of
    :class:`_Refits`. When a term is not identified without some team, pyfixest's
    refit would fail; the generic loop then refits ``pf.feols`` with the terms each
    sample identifies.
    """
    teams = used["team_id"].to_numpy()
    identified = identified_without(used[keep], design.factor_codes(used["rep_id"]), teams)
    if any(len(v) < len(keep) for v in identified.values()):
        def refit(rows, terms):
            with warnings.catch_warnings(), formula_fe_order():
                warnings.simplefilter("ignore")
                m = pf.feols(_fml(terms), data=used.loc[rows], weights=wcol, vcov="iid")
            return m.coef().reindex(terms)
        return _jackknife(fit, used, keep, refit)
    t0 = time.perf_counter()
    data = _coded(used, ["y", *keep, "rep_id", "quarter", "team_id", *([wcol] if wcol else [])])
    try:
        with warnings.catch_warnings(), single_threaded_blas():
            warnings.simplefilter("ignore")
            refits = _Refits(_fml(keep), data, weights=wcol)
            if refits.template is None:
                refits.call(data)  # raises the library's error
            cr3 = _crv3(refits)
    except FIT_ERRORS as exc:
        raise RefitFailed("(one of them, in pyfixest's CRV3)", exc) from exc
    g = int(pd.unique(teams).size)
    names = list(refits.template._coefnames)
    vcov = pd.DataFrame((g - 1) / g * cr3, index=names, columns=names).loc[keep, keep]
    full = fit.coef()[keep].astype(float)
    return Jackknife(full=full, estimates=pd.DataFrame(columns=keep), vcov=vcov, n_clusters=g,
                     seconds=time.perf_counter() - t0)


def _crv3(refits: _Refits) -> np.ndarray:
    """pyfixest's ``Feols._vcov_crv3_slow`` with ``ssc(k_adj=False, G_adj=False)`` (factor 1)."""
    template = refits.template
    kept = template._data.index.to_numpy()  # positions of the rows the full fit used
    cluster_col = pd.factorize(template._data["team_id"])[0]
    clustid = np.unique(cluster_col)
    beta_jack = np.zeros((len(clustid), template._k))
    for ixg, g in enumerate(clustid):
        beta_jack[ixg, :] = refits.coef(kept[~np.equal(g, cluster_col)]).to_numpy()
    beta_center = template._beta_hat
    vcov_mat = np.zeros((template._k, template._k))
    for ixg, _ in enumerate(clustid):
        beta_centered = beta_jack[ixg, :] - beta_center
        vcov_mat += np.outer(beta_centered, beta_centered)
    vcov = np.zeros((template._k, template._k))
    vcov += np.array([1.0]) * vcov_mat
    return vcov


def _wild(used: pd.DataFrame, keep: list[str], wcol: str | None, reps: int) -> dict:
    out = {}
    with single_threaded_blas():
        test = WildTest(used, "y", keep, ["rep_id", "quarter"], "team_id", weights=wcol,
                        reps=reps, seed=SEED)
        for t in keep:
            try:
                out[t] = wild_cluster_ci(test, t)
            except np.linalg.LinAlgError as exc:  # singular X'X in the bootstrap
                log.warning("%s: wild bootstrap failed (%s)", t, exc)
                out[t] = None
    return out


def wild_p_values(used: pd.DataFrame, keep: list[str], wcol: str | None,
                  reps: int = WILD_COMPARE_REPS) -> pd.DataFrame:
    """Restricted wild cluster bootstrap p-values of β = 0, one per term, for comparison.

    Parameters
    ----------
    used : the rows the linear model used (columns ``y``, the terms, ``rep_id``,
        ``quarter``, ``team_id`` and the weight column).
    keep : the estimable terms.
    wcol : regression-weight column, or None.
    reps : bootstrap replications (seeded with ``config.SEED``).

    Returns
    -------
    DataFrame
        ``term``, ``p_value_wild`` (NaN where the bootstrap's design is singular),
        ``reps``; the analytic p-values are in the model's effects.
    """
    rows = []
    # small dense systems (X'X of ~200 columns): a second BLAS thread only spin-waits
    with single_threaded_blas():
        test = WildTest(used, "y", keep, ["rep_id", "quarter"], "team_id", weights=wcol,
                        reps=reps, seed=SEED)
        for t in keep:
            try:
                p = test.p_value(t)
            except np.linalg.LinAlgError as exc:
                log.warning("%s: wild bootstrap p-value failed (%s)", t, exc)
                p = np.nan
            rows.append({"term": t, "p_value_wild": p, "reps": reps})
    return pd.DataFrame(rows, columns=["term", "p_value_wild", "reps"])


def _few_note(g: int, min_clusters: int) -> str:
    if g < WILD_MIN_CLUSTERS:
        return (f"not estimable: too few teams ({g}) for any cluster-robust interval "
                f"(the wild cluster bootstrap needs at least {WILD_MIN_CLUSTERS})")
    return design.few_clusters_note(g, min_clusters)


def _rows(outcome, model, scale, fit, reasons, failure, n_obs, g, min_clusters, wild,
          jk: Jackknife | None = None, max_jk: int = JACKKNIFE_MAX_CLUSTERS):
    rows = []
    tidy = fit.tidy() if fit is not None else None
    for term in TERMS:
        why = reasons[term] or failure
        if not why and jk is not None and term in jk.dropped:
            why = missing_note(term, jk.dropped[term])
        wr = (wild or {}).get(term)
        if not why and g < min_clusters and wild is not None:
            if wr is None:
                why = "not estimable: the wild cluster bootstrap failed (singular design)"
            elif not wr.finite:
                why = ("not estimable: the wild cluster bootstrap interval is unbounded "
                       f"with {g} teams ({wr.note or 'non-finite bound'})")
        elif not why and g < min_clusters:
            why = _few_note(g, min_clusters) if model == LINEAR_MODEL else \
                design.few_clusters_note(g, min_clusters)
        if why or tidy is None:
            rows.append(missing_row(outcome, term, model, scale, n_obs=n_obs, n_clusters=g,
                                    note=why or "not estimable"))
            continue
        est, se = float(tidy.loc[term, "Estimate"]), float(tidy.loc[term, "Std. Error"])
        note = ""
        if jk is not None:
            se, note = jk.std_error(term), cr3_note(g)
        elif not use_jackknife(g, max_jk):   # many teams: pyfixest's CRV1 (tidy), t(G-1)
            note = cr1_note(g, "CRV1", max_jk)
        row = effect_row(outcome, term, model, scale, estimate=est, std_error=se,
                         df=float(fit._df_t), n_obs=n_obs, n_clusters=g, note=note)
        if wr is not None:
            row.update(conf_low=wr.conf_low, conf_high=wr.conf_high, p_value=wr.p_value,
                       note=(f"{g} teams (< {min_clusters}): p-value from the restricted "
                             f"wild cluster bootstrap (pyfixest wildboottest, WCR-11, Webb "
                             f"weights, {wr.reps} draws, seed {SEED}), interval by inverting "
                             "it; std_error is CRV1"))
        rows.append(row)
    return rows
