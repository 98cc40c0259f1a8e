"""Dose–response models of the trade-off: each outcome against the satisfaction weight.

Each outcome's headline model of findings.md, refitted with an extra curvature term
``q = (x_sat − x̄)²`` (x = weight / 0.10, x̄ the company-average current
satisfaction weight):

* bookings, CSAT, NPS: pyfixest ``feols`` with rep and quarter fixed effects;
* complaints: pyfixest ``fepois``, rep and quarter FE, offset log(exposure);
* renewal: statsmodels binomial GLM with team and end-quarter dummies
  (uninformative groups dropped as in :mod:`analysis.models.renewal`); above
  ``JACKKNIFE_MAX_CLUSTERS`` teams the same logit and CR1 covariance by Newton steps
  on a sparse design (:func:`~analysis.decision.heterogeneity.logit_newton`), as a
  dense n × G dummy matrix and its SVDs take minutes at company scale;
* churn: a piecewise-exponential Poisson model (pyfixest ``fepois``) on episodes
  aggregated by team × 91-day tenure band × quarter × plan, with team × band and
  quarter fixed effects and log(days at risk) as offset — the standard
  Poisson form of a stratified Cox model with a piecewise-constant baseline,
  cheap enough to bootstrap.

All errors CRV1 by team. **Selection:** an outcome keeps the curvature term when its
cluster-robust Wald test rejects γ = 0 at ``alpha`` (default 0.05); otherwise the
linear model is used. An outcome whose fit fails, or whose data cannot identify the
satisfaction weight, is kept as a non-estimable :class:`DoseFit` with the reason.
"""

from __future__ import annotations

import copy
import logging
import math
import warnings
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import pandas as pd
from scipy import stats
from scipy.special import expit
from statsmodels.genmod import families
from statsmodels.genmod.generalized_linear_model import GLM

from analysis.config import EFFECT_PER, TERMS, WEIGHTS
from analysis.columns import read_batches, read_columns
from analysis.decision.heterogeneity import (logit_newton, sparse_cr1, sparse_design,
                                             team_fe_logit, unidentified)
from analysis.errors import ParameterError
from analysis.models.jackknife import JACKKNIFE_MAX_CLUSTERS

log = logging.getLogger(__name__)

TERM = "w_satisfaction"
CURVE = "sat_curve"
DOSE_OUTCOMES = ("churn", "renewal", "complaints", "csat", "nps", "bookings")
#: Tenure band (days) of the piecewise-exponential churn model.
BAND_DAYS = 91
#: Outcome -> (response column, weights column) of the linear models.
LINEAR_Y = {"bookings": ("log_bookings", None), "csat": ("csat_mean", "csat_responses"),
            "nps": ("nps", "nps_responses")}
#: Fixed effects of the pyfixest models.
FIXED_EFFECTS = {"churn": ("stratum", "quarter"), "complaints": ("rep_id", "quarter"),
                 "bookings": ("rep_id", "quarter"), "csat": ("rep_id", "quarter"),
                 "nps": ("rep_id", "quarter")}
#: Outcome -> (response, offset, weights) of the pyfixest models.
PYFIXEST_COLUMNS = {"churn": ("events", "log_days", None),
                    "complaints": ("complaints", "log_exposure", None),
                    **{o: (y, None, w) for o, (y, w) in LINEAR_Y.items()}}
NOT_ESTIMABLE = "not estimable"
Criterion = Literal["wald", "linear", "curved"]


# ---------------------------------------------------------------- model data
def _regressors(df: pd.DataFrame, x0: float) -> pd.DataFrame:
    out = df[list(TERMS)].astype(float) / EFFECT_PER
    out[CURVE] = (out[TERM] - x0) ** 2
    return out


def panel_data(panel: pd.DataFrame, x0: float) -> pd.DataFrame:
    """Rep × quarter rows with a plan, regressors (x = w / 0.10) and the curvature term."""
    data = panel.dropna(subset=list(WEIGHTS)).reset_index(drop=True)
    return pd.concat([data.drop(columns=list(TERMS)), _regressors(data, x0)], axis=1)


#: The ``survival_episodes`` columns :func:`churn_cells` uses.
EPISODE_COLUMNS = ("team_id", "quarter", "start", "stop", "event", *WEIGHTS)
#: The ``renewal_table`` columns :func:`renewal_data` uses.
RENEWAL_COLUMNS = ("team_id", "end_quarter", "renewed", *WEIGHTS)


def _cell_sums(episodes: pd.DataFrame, band_days: int) -> pd.DataFrame:
    """Events and days at risk of ``episodes`` by cell (rows without a plan left out)."""
    keep = episodes[list(WEIGHTS)].notna().all(axis=1).to_numpy()

    def col(name: str) -> np.ndarray:  # rows with a plan, without copying the whole frame
        values = episodes[name].to_numpy()
        return values if keep.all() else values[keep]

    start = col("start")
    # grouped by arrays: a frame of 1.6M episodes would be consolidated (copied) first
    keys = [pd.Series(v, name=n) for n, v in (
        ("team_id", col("team_id")), ("band", (start // band_days).astype(int)),
        ("quarter", col("quarter")), *((t, col(t)) for t in TERMS))]
    sums = pd.DataFrame({"events": col("event"), "days": (col("stop") - start).astype(float)})
    return sums.groupby(keys, sort=True).sum()


def churn_cells(episodes: pd.DataFrame | Iterable[pd.DataFrame], x0: float,
                band_days: int = BAND_DAYS) -> pd.DataFrame:
    """Episodes aggregated to team × tenure band × quarter × plan cells (events, days at risk).

    ``episodes`` is the frame or its rows in consecutive parts (:func:`model_data` reads
    them part by part): a cell's events and days are whole numbers, summed exactly in
    any order, so the parts give the same cells as the whole.
    """
    parts = [_cell_sums(part, band_days) for part in (
        [episodes] if isinstance(episodes, pd.DataFrame) else episodes)]
    filled = [p for p in parts if len(p)]
    sums = (pd.concat(filled).groupby(level=list(range(filled[0].index.nlevels)), sort=True).sum()
            if len(filled) > 1 else (filled or parts)[0])
    cells = sums.reset_index()
    cells = pd.concat([cells.drop(columns=list(TERMS)), _regressors(cells, x0)], axis=1)
    cells["stratum"] = cells["team_id"].astype(str) + "|" + cells["band"].astype(str)
    cells["log_days"] = np.log(cells["days"])
    # a stratum or quarter without events has its fixed effect at -inf and says
    # nothing about the slopes: drop it (as fepois's separation check would)
    while True:
        bad = pd.Series(False, index=cells.index)
        for f in ("stratum", "quarter"):
            bad |= cells.groupby(f)["events"].transform("sum") == 0
        if not bad.any():
            return cells.reset_index(drop=True)
        cells = cells.loc[~bad]


def renewal_data(renewals: pd.DataFrame, x0: float) -> pd.DataFrame:
    """Renewal decisions with a plan, uninformative teams/quarters dropped, regressors added."""
    from analysis.models.renewal import drop_uninformative  # imports pyfixest

    data = renewals.dropna(subset=list(WEIGHTS)).reset_index(drop=True)
    data, _ = drop_uninformative(data)
    data = data.reset_index(drop=True)
    return pd.concat([data.drop(columns=list(TERMS)), _regressors(data, x0)], axis=1)


def model_data(prepared, x0: float) -> dict[str, pd.DataFrame]:
    """The rows each dose–response model is fitted on."""
    panel = panel_data(prepared.derived["rep_quarter_panel"], x0)
    comp = panel[panel["exposure"] > 0].copy()
    comp["log_exposure"] = np.log(comp["exposure"])
    return {"bookings": panel, "csat": panel[panel["csat_responses"] > 0],
            "nps": panel[panel["nps_responses"] > 0], "complaints": comp,
            "churn": churn_cells(read_batches(prepared, "derived", "survival_episodes",
                                              EPISODE_COLUMNS), x0),
            "renewal": renewal_data(read_columns(prepared, "derived", "renewal_table",
                                                 RENEWAL_COLUMNS), x0)}


# ---------------------------------------------------------------- fits
@dataclass
class DoseFit:
    """One outcome's dose–response fit in the selected form.

    Attributes
    ----------
    outcome, form : outcome name; "linear", "curved" (selected) or "not estimable".
    params : coefficients of the selected model (identified terms, plus ``sat_curve``
        if curved); empty when not estimable.
    vcov : their cluster-robust covariance.
    curvature : γ, its std. error and Wald p-value in the curved model (NaN if unknown).
    dropped : terms the data cannot identify (no variation or collinear).
    note : why the outcome is not estimable, or which terms were dropped.
    """

    outcome: str
    form: str
    params: pd.Series
    vcov: pd.DataFrame
    curvature: dict[str, float]
    dropped: tuple[str, ...] = ()
    note: str = ""

    @property
    def estimable(self) -> bool:
        return self.form != NOT_ESTIMABLE

    def delta(self, plan_x: pd.DataFrame, x0: dict[str, float]) -> np.ndarray:
        """Predicted change (model scale) from the weights ``x0`` to each row of ``plan_x``.

        NaN where the fit is not estimable or a row moves a term the data cannot identify.
        """
        if not self.estimable:
            return np.full(len(plan_x), np.nan)
        d = delta(self.params, plan_x, x0)
        for t in self.dropped:
            d[np.abs(plan_x[t].to_numpy(float) - x0[t]) > 1e-9] = np.nan
        return d


def delta(params: pd.Series, plan_x: pd.DataFrame, x0: dict[str, float]) -> np.ndarray:
    """Σ β_t·(x_t − x0_t) (+ γ·(x_sat − x0_sat)² when ``params`` has the curvature term)."""
    d = np.zeros(len(plan_x))
    for t in TERMS:
        if t in params.index:
            d += params[t] * (plan_x[t].to_numpy(float) - x0[t])
    if CURVE in params.index:
        d += params[CURVE] * (plan_x[TERM].to_numpy(float) - x0[TERM]) ** 2
    return d


def _separated(data: pd.DataFrame, y: str, columns: list[str], fixed: tuple[str, ...]
               ) -> np.ndarray | None:
    """Rows pyfixest's "fe" separation check would drop, found without its crosstabs.

    pyfixest drops rows with missing values, then singletons, then every row of a
    fixed-effect level whose outcome is 0 throughout. Dropping those rows beforehand
    gives it the same rows as long as no new singleton appears; returns their
    positions (possibly none), or None when new singletons would appear (then
    pyfixest's own check must run).
    """
    from pyfixest.core.detect_singletons import detect_singletons

    complete = (np.isfinite(data[[y, *columns]].to_numpy(float)).all(axis=1)
                & data[list(fixed)].notna().all(axis=1).to_numpy())

    def singletons(rows: np.ndarray) -> np.ndarray:
        ids = np.column_stack([pd.factorize(data[f].to_numpy()[rows])[0] for f in fixed])
        return detect_singletons(np.asfortranarray(ids.astype(np.int64)))

    rows = np.flatnonzero(complete)
    rows = rows[~singletons(rows)]
    positive = data[y].to_numpy(float)[rows] > 0
    drop = np.zeros(len(rows), bool)
    for f in fixed:
        codes = pd.factorize(data[f].to_numpy()[rows])[0]
        drop |= (np.bincount(codes, weights=positive) == 0)[codes]
    if not drop.any():
        return drop.nonzero()[0]
    if singletons(rows[~drop]).any():
        return None
    return rows[drop]


def _pyfixest(outcome: str, data: pd.DataFrame, rhs: list[str], *, fast: bool = False):
    """pyfixest fit of one outcome; ``fast`` (bootstrap draws) skips what only SEs need."""
    y, offset, weights = PYFIXEST_COLUMNS[outcome]
    fixed = FIXED_EFFECTS[outcome]
    opts: dict[str, Any] = {"vcov": "iid" if fast else {"CRV1": "team_id"},
                            "copy_data": False, "store_data": False, "lean": True}
    if offset is not None:
        # pyfixest's separation check tabulates every level in Python (seconds at scale);
        # churn_cells already dropped strata and quarters without events for the draws
        drop = None if fast else _separated(data, y, [*rhs, offset], fixed)
        if fast or drop is not None:
            opts["separation_check"] = []
        if drop is not None and len(drop):
            data = data.drop(index=data.index[drop])
    # a frame of the model's columns only: pyfixest's own copy of the rest is wasted
    columns = [y, *rhs, *(c for c in (offset, weights) if c), *fixed, "team_id"]
    data = data[[c for c in dict.fromkeys(columns) if c in data.columns]]
    formula = f"{y} ~ " + " + ".join(rhs) + " | " + " + ".join(fixed)
    import pyfixest as pf  # here: loading a cached trade-off needs no model library

    from analysis.models.fe_order import formula_fe_order

    with warnings.catch_warnings(), formula_fe_order():
        warnings.simplefilter("ignore")
        if offset is not None:
            return pf.fepois(formula, data=data, offset=offset, **opts)
        return pf.feols(formula, data=data, weights=weights, **opts)


class PoissonRefits:
    """fepois refits of one outcome on row selections of ``data`` (bootstrap draws).

    Most of a small refit is pyfixest parsing the formula and building the model
    matrices (formulaic). Here pyfixest builds them once for the whole frame
    (``create_model_matrix``) and a selection takes its rows, its fixed-effect ids
    encoded as pyfixest encodes them (``pd.factorize`` of the selected column) and
    pyfixest's singleton removal; pyfixest's own ``Fepois`` IWLS then fits them, set
    up as ``fepois`` set up the whole-frame fit. The same rows, codes and estimator
    as ``fit_terms(outcome, selected_rows, rhs, fast=True)``, whose checks it repeats.
    Fixed-effect columns the selection relabels must have no missing values.
    """

    _FE_PREFIX = "__fixed_effect__("

    def __init__(self, outcome: str, data: pd.DataFrame):
        self.outcome, self.data = outcome, data.reset_index(drop=True)
        self._models: dict[tuple[str, ...], tuple[Any, dict, np.ndarray, dict[str, str]]] = {}

    def _model(self, rhs: list[str]):
        """Whole-frame model matrices, row positions in them (-1: dropped), FE order, and
        a fitted ``Fepois`` whose setup each refit copies."""
        key = tuple(rhs)
        if key not in self._models:
            from pyfixest.estimation.formula.model_matrix import create_model_matrix

            from analysis.models.fe_order import formula_fe_order

            y, offset, _ = PYFIXEST_COLUMNS[self.outcome]
            template = _pyfixest(self.outcome, self.data, rhs, fast=True)
            columns = dict.fromkeys([y, *rhs, offset, *FIXED_EFFECTS[self.outcome]])
            with warnings.catch_warnings(), formula_fe_order():
                warnings.simplefilter("ignore")
                mm = create_model_matrix(formula=template.FixestFormula,
                                         data=self.data[list(columns)].copy(), offset=offset)
            position = np.full(len(self.data), -1)
            position[mm.dependent.index.to_numpy()] = np.arange(len(mm.dependent))
            fe = {c: c[len(self._FE_PREFIX):-1] for c in mm.fixed_effects.columns}
            frames = {"_Y": mm.dependent, "_X": mm.independent, "_offset_df": mm.offset}
            self._models[key] = (template, {k: (v.to_numpy(), v.columns) for k, v in
                                            frames.items()}, position, fe)
        return self._models[key]

    def fit(self, rows: np.ndarray, fe_values: dict[str, np.ndarray], rhs: list[str]
            ) -> pd.Series:
        """Coefficients of the identified terms of ``rhs`` fitted on ``data.iloc[rows]``.

        ``fe_values`` replaces fixed-effect columns by the selection's values (one per
        selected row; e.g. copy k of a team drawn twice gets its own ids).
        """
        from pyfixest.core.detect_singletons import detect_singletons

        fixed = FIXED_EFFECTS[self.outcome]
        codes = {f: pd.factorize(fe_values[f] if f in fe_values
                                 else self.data[f].to_numpy()[rows])[0] for f in fixed}
        distinct = np.unique(rows)
        rhs = [t for t in rhs if _varies(self.data[t].to_numpy()[distinct])]
        n_fe = sum(int(c.max(initial=-1)) + 1 for c in codes.values()) - 1
        if not rhs or len(rows) <= n_fe + len(rhs):
            raise ValueError(f"{len(rows)} rows for {n_fe} fixed effects and {len(rhs)} terms")
        template, frames, position, fe_columns = self._model(rhs)
        pos = position[rows]
        keep = (pos >= 0) & np.all([codes[f] >= 0 for f in fixed], axis=0)
        fe = pd.DataFrame({c: codes[f][keep].astype("int32") for c, f in fe_columns.items()})
        single = detect_singletons(fe.to_numpy())
        if single.any():
            fe = fe.loc[~single].reset_index(drop=True)
        take = pos[keep][~single]
        fit = copy.copy(template)
        for name, (values, columns) in frames.items():  # as pyfixest's model matrix frames
            setattr(fit, name, pd.DataFrame(values[take], columns=columns))
        if (frames["_Y"][0][take] < 0).any():
            raise ValueError("The dependent variable must be a weakly positive number.")
        fit._fe = fe
        fit._N = fit._N_rows = len(take)
        fit._weights = np.ones((len(take), 1))
        fit._coefnames = fit._X.columns.tolist()
        fit._preconditioner = None
        fit.convergence = False
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            fit.get_fit()
        beta = dict(zip((str(n) for n in fit._coefnames), np.asarray(fit._beta_hat, float)))
        kept = [t for t in rhs if t in beta]
        return pd.Series([beta[t] for t in kept], index=kept, dtype=float)


def _varies(values: np.ndarray) -> bool:
    """``pd.Series(values).nunique() > 1`` without the hash table."""
    values = values[~pd.isna(values)]
    return bool(len(values)) and bool((values != values[0]).any())


def _renewal(data: pd.DataFrame, rhs: list[str]) -> tuple[pd.Series, pd.DataFrame]:
    if data["team_id"].nunique() > JACKKNIFE_MAX_CLUSTERS:
        return _renewal_sparse(data, rhs)
    fe = pd.get_dummies(data[["team_id", "end_quarter"]].astype(str), drop_first=True,
                        dtype=float)
    x = pd.concat([pd.Series(1.0, index=data.index, name="const"), data[rhs], fe], axis=1)
    rank = np.linalg.matrix_rank(x.to_numpy(float))
    kept = [t for t in rhs if rank == np.linalg.matrix_rank(x.drop(columns=t).to_numpy(float))
            + 1] if rank < x.shape[1] else list(rhs)
    if kept != list(rhs):  # a term collinear with the rest is not identified: drop it
        x = x.drop(columns=[t for t in rhs if t not in kept])
    groups = pd.factorize(data["team_id"])[0]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = GLM(data["renewed"].astype(float), x, family=families.Binomial()).fit(
            cov_type="cluster", cov_kwds={"groups": groups})
    return res.params[kept], res.cov_params().loc[kept, kept]


def _renewal_sparse(data: pd.DataFrame, rhs: list[str]) -> tuple[pd.Series, pd.DataFrame]:
    """:func:`_renewal` with sparse team dummies: same logit, CR1 as statsmodels' cluster
    covariance (G/(G−1)·(N−1)/(N−K), K every column), unidentified terms dropped.

    A design clearly of full rank is solved through its diagonal team block
    (:func:`~analysis.decision.heterogeneity.team_fe_logit`, equal up to rounding);
    otherwise the sparse design decides what is identified."""
    dense = pd.concat([pd.Series(1.0, index=data.index, name="const"), data[rhs],
                       pd.get_dummies(data["end_quarter"].astype(str), drop_first=True,
                                      dtype=float)], axis=1)
    y = data["renewed"].astype(float).to_numpy()
    idx = [1 + i for i in range(len(rhs))]
    fast = team_fe_logit(dense.to_numpy(float), data["team_id"], y, idx)
    if fast is not None:  # clearly of full rank: the same fit through the team block
        n, k = dense.shape
        # its CR1 counts the columns of ``dense``; this model's, every column
        cov = fast[1] * ((n - k) / (n - (k + data["team_id"].astype(str).nunique() - 1)))
        return (pd.Series(fast[0][idx], index=rhs),
                pd.DataFrame(cov, index=rhs, columns=rhs))
    x = sparse_design(dense, data["team_id"])
    flat = unidentified(x, [1 + i for i in range(len(rhs))])
    kept = [t for i, t in enumerate(rhs) if 1 + i not in flat]
    x = x[:, [j for j in range(x.shape[1]) if j not in flat]]
    params, info = logit_newton(x, y)
    cov = sparse_cr1(np.linalg.pinv(info, hermitian=True), x, y - expit(x @ params),
                     data["team_id"].to_numpy(), n_params=x.shape[1])
    idx = slice(1, 1 + len(kept))
    return (pd.Series(params[idx], index=kept),
            pd.DataFrame(cov[idx, idx], index=kept, columns=kept))


def fit_terms(outcome: str, data: pd.DataFrame, rhs: list[str], *, fast: bool = False
              ) -> tuple[pd.Series, pd.DataFrame | None]:
    """Coefficients of the identified terms of ``rhs`` and their CRV1 covariance.

    Terms the fit drops (no variation, collinear) are left out; the covariance is
    None when ``fast``.
    """
    rhs = [t for t in rhs if data[t].nunique() > 1]  # a constant term is not identified
    if outcome == "renewal":
        return _renewal(data, rhs)
    fixed = FIXED_EFFECTS[outcome]
    n_fe = sum(int(data[f].nunique()) for f in fixed) - 1
    if not rhs or len(data) <= n_fe + len(rhs):
        # nothing left to estimate (pyfixest's demeaning can abort the process on it)
        raise ValueError(f"{len(data)} rows for {n_fe} fixed effects and {len(rhs)} terms")
    fit = _pyfixest(outcome, data, rhs, fast=fast)
    names = [str(n) for n in fit._coefnames]
    kept = [t for t in rhs if t in names]
    params = pd.Series(np.asarray(fit.coef(), float), index=names)
    if fast:
        return params[kept], None
    vcov = pd.DataFrame(np.asarray(fit._vcov, float), index=names, columns=names)
    return params[kept], vcov.loc[kept, kept]


def not_estimable(outcome: str, note: str) -> DoseFit:
    """A :class:`DoseFit` that says why the outcome cannot be fitted."""
    nan = {"gamma": math.nan, "std_error": math.nan, "p_value": math.nan}
    return DoseFit(outcome, NOT_ESTIMABLE, pd.Series(dtype=float), pd.DataFrame(), nan,
                   tuple(TERMS), note)


def _finite(params: pd.Series, vcov: pd.DataFrame) -> bool:
    return bool(np.isfinite(params.to_numpy(float)).all()
                and np.isfinite(vcov.to_numpy(float)).all())


def fit_outcome(outcome: str, data: pd.DataFrame, *, criterion: Criterion = "wald",
                alpha: float = 0.05) -> DoseFit:
    """One outcome's linear and curved fits; the selected one, or why there is none."""
    if data.empty:
        return not_estimable(outcome, "not estimable: no rows to fit")
    gamma = se = p = math.nan
    try:
        params_c, vcov_c = fit_terms(outcome, data, [*TERMS, CURVE])
    except Exception as exc:  # pyfixest/statsmodels/linalg failures on degenerate data
        log.info("%s: curved dose-response fit failed: %s", outcome, exc)
    else:
        if {CURVE, TERM} <= set(params_c.index) and _finite(params_c, vcov_c):
            gamma = float(params_c[CURVE])
            se = float(math.sqrt(max(vcov_c.loc[CURVE, CURVE], 0.0)))
            p = float(2 * stats.norm.sf(abs(gamma / se))) if se > 0 else math.nan
    curved = math.isfinite(gamma) and (criterion == "curved"
                                       or (criterion == "wald" and p < alpha))
    if curved:
        params, vcov = params_c, vcov_c
    else:
        try:
            params, vcov = fit_terms(outcome, data, list(TERMS))
        except Exception as exc:
            log.info("%s: dose-response fit failed: %s", outcome, exc)
            return not_estimable(outcome, "not estimable: the fit failed ("
                                 + str(exc).splitlines()[0][:120] + ")" if str(exc) else
                                 f"not estimable: the fit failed ({type(exc).__name__})")
    if TERM not in params.index or not _finite(params, vcov):
        return not_estimable(outcome, f"not estimable: the data do not identify {TERM}")
    dropped = tuple(t for t in TERMS if t not in params.index)
    note = f"not identified by the data: {', '.join(dropped)}" if dropped else ""
    log.info("%s: curvature gamma=%.4f (se %.4f, Wald p=%.3f) -> %s", outcome, gamma, se, p,
             "curved" if curved else "linear")
    return DoseFit(outcome, "curved" if curved else "linear", params, vcov,
                   {"gamma": gamma, "std_error": se, "p_value": p}, dropped, note)


def fit_dose_response(data: dict[str, pd.DataFrame], *, criterion: Criterion = "wald",
                      alpha: float = 0.05, outcomes=DOSE_OUTCOMES) -> dict[str, DoseFit]:
    """Fit linear and curved models per outcome and keep the selected one.

    Parameters
    ----------
    data : :func:`model_data` output.
    criterion : "wald" (curved when the cluster-robust Wald test of γ = 0 has
        p < ``alpha``), or force "linear" / "curved".
    alpha : level of the Wald test.
    outcomes : which outcomes to fit.

    Returns
    -------
    {outcome: DoseFit} (non-estimable fits say why in ``note``)
    """
    if criterion not in ("wald", "linear", "curved"):
        raise ParameterError(f"criterion {criterion!r}; allowed: wald, linear, curved")
    return {o: fit_outcome(o, data[o], criterion=criterion, alpha=alpha) for o in outcomes}


def selection_table(fits: dict[str, DoseFit], alpha: float = 0.05) -> pd.DataFrame:
    """One row per outcome: curvature estimate, its Wald p-value, the form kept and notes."""
    return pd.DataFrame([{"outcome": o, "curvature": f.curvature["gamma"],
                          "std_error": f.curvature["std_error"],
                          "wald_p_value": f.curvature["p_value"], "form": f.form,
                          "rule": f"curved if cluster-robust Wald p < {alpha:g}",
                          "note": f.note}
                         for o, f in fits.items()],
                        columns=["outcome", "curvature", "std_error", "wald_p_value", "form",
                                 "rule", "note"])
