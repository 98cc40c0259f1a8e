"""Trade-off: outcomes and expected customer value across satisfaction weights.

**Dose–response models** (:func:`fit_dose_response`). Each outcome's headline model
of findings.md, refitted with an extra curvature term ``q = (x_sat − x̄)²``
(x = weight / 0.10, x̄ the company-average current satisfaction weight):

* bookings, CSAT, NPS: pyfixest ``feols`` with rep and quarter fixed effects;
* complaints: pyfixest ``fepois``, rep and quarter FE, offset log(exposure);
* renewal: statsmodels binomial GLM with team and end-quarter dummies
  (uninformative groups dropped as in :mod:`analysis.models.renewal`);
* churn: a piecewise-exponential Poisson model (pyfixest ``fepois``) on episodes
  aggregated by team × 91-day tenure band × quarter × plan, with team × band and
  quarter fixed effects and log(days at risk) as offset — the standard
  Poisson form of a stratified Cox model with a piecewise-constant baseline,
  cheap enough to bootstrap.

All errors CRV1 by team. **Selection:** an outcome keeps the curvature term when its
cluster-robust Wald test rejects γ = 0 at ``alpha`` (default 0.05); otherwise the
linear model is used.

**Objective** (:func:`customer_value`), per rep, over a horizon of H years (default 3):

    V(w) = 4·H·B₀·exp(Δη_b(w)) + N₀·A₀·(1 − exp(−h(w)·H)) / h(w),   h(w) = h₀·exp(Δη_c(w))

B₀ bookings per rep-quarter, N₀ customers owned per rep, A₀ mean annual contract
value (contracts active on the quarter's last day), h₀ the annual churn hazard
(churns per customer-year at risk), all measured over the last four quarters under
the current plans; Δη_b, Δη_c the bookings and churn models' predicted change (log
scale) from the company-average current plan. The first part is bookings over the
horizon, the second the contract value the current book keeps paying while it
stays (expected years retained × value). Using exp(Δη_b) for the bookings ratio
treats log(1 + B) ≈ log B (bookings are thousands) and keeps the residual
distribution fixed, so its retransformation factor cancels.

**Grid.** The satisfaction weight moves from ``w_revenue`` (other weights at the
company mean), over the weights observed in the data, step ``grid_step``.

**Uncertainty and the recommendation.** A cluster bootstrap resamples teams with
replacement (``B`` draws, ``numpy.random.default_rng(SEED)``), refitting only the
two models the objective needs (bookings and churn) in their selected form. The
recommended range is the hull of the grid weights w whose bootstrap 97.5th
percentile of V_b(w) − V_b(ŵ) is ≥ 0, where ŵ maximises the point estimate: the
weights the bootstrap cannot show to be worse than the estimated best.
"""

from __future__ import annotations

import logging
import math
import time
import warnings
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import pandas as pd
import pyfixest as pf
import statsmodels.api as sm

from analysis.config import EFFECT_PER, SEED, TERMS, WEIGHTS
from analysis.decision.whatif import current_weights, observed_ranges, plans_in_force
from analysis.errors import ParameterError
from analysis.models.renewal import drop_uninformative
from analysis.quarters import shift_quarter

log = logging.getLogger(__name__)

TERM = "w_satisfaction"
CURVE = "sat_curve"
OBJECTIVE = "expected 3-year customer value"
DOSE_OUTCOMES = ("churn", "renewal", "complaints", "csat", "nps", "bookings")
#: Tenure band (days) of the piecewise-exponential churn model.
BAND_DAYS = 91
#: Quarters (ending with the analysed one) over which the objective's inputs are measured.
WINDOW_QUARTERS = 4
Criterion = Literal["wald", "linear", "curved"]


# ---------------------------------------------------------------- inputs
@dataclass(frozen=True)
class ObjectiveInputs:
    """The measured inputs of the objective (per rep, current plans).

    Attributes
    ----------
    bookings : B₀, mean won amount per rep-quarter.
    customers : N₀, mean customers owned per rep (customer-quarters per rep-quarter).
    annual_value : A₀, mean annual value of contracts active on the quarter's last day.
    churn_hazard : h₀, churns per customer-year at risk.
    renewal_rate, complaint_rate (per customer-quarter), csat, nps : current levels,
        for the frontier's outcome columns.
    horizon : H in years.
    """

    bookings: float
    customers: float
    annual_value: float
    churn_hazard: float
    renewal_rate: float
    complaint_rate: float
    csat: float
    nps: float
    horizon: float = 3.0


def objective_inputs(prepared, *, horizon: float = 3.0,
                     window: int = WINDOW_QUARTERS) -> ObjectiveInputs:
    """Measure B₀, N₀, A₀, h₀ (and current outcome levels) over the last ``window`` quarters."""
    q = prepared.quarter
    quarters = {shift_quarter(q, -k) for k in range(window)}
    panel = prepared.derived["rep_quarter_panel"]
    pw = panel[panel["quarter"].isin(quarters)]
    ep = prepared.derived["survival_episodes"]
    ew = ep[ep["quarter"].isin(quarters)]
    rn = prepared.derived["renewal_table"]
    rw = rn[rn["end_quarter"].isin(quarters)]
    day = pd.Timestamp(prepared.quarter_end)
    c = prepared.tables["contracts"]
    active = c[(c["start_date"] <= day) & (c["end_date"] >= day)
               & (c["cancel_date"].isna() | (c["cancel_date"] > day))]
    years = float((ew["stop"] - ew["start"]).sum()) / 365.25
    csat_w = pw["csat_responses"].to_numpy(float)
    nps_w = pw["nps_responses"].to_numpy(float)
    return ObjectiveInputs(
        bookings=float(pw["bookings"].mean()),
        customers=float(pw["exposure"].mean()),
        annual_value=float(active["annual_value"].mean()),
        churn_hazard=float(ew["event"].sum()) / years if years > 0 else math.nan,
        renewal_rate=float(rw["renewed"].mean()) if len(rw) else math.nan,
        complaint_rate=float(pw["complaints"].sum() / pw["exposure"].sum()),
        csat=float(np.nansum(pw["csat_mean"].fillna(0) * csat_w) / csat_w.sum()),
        nps=float(np.nansum(pw["nps"].fillna(0) * nps_w) / nps_w.sum()),
        horizon=float(horizon))


def customer_value(d_log_bookings, d_log_hazard, inputs: ObjectiveInputs) -> dict[str, Any]:
    """Expected customer value per rep over the horizon (see the module docstring).

    Parameters
    ----------
    d_log_bookings, d_log_hazard : predicted changes (arrays or floats) from the current plan.
    inputs : :class:`ObjectiveInputs`.

    Returns
    -------
    dict with ``objective``, ``bookings`` (per rep-quarter), ``retention`` (share of
    the current book still customers after H years), ``churn`` (annual churn
    probability).
    """
    h_years = inputs.horizon
    bq = inputs.bookings * np.exp(d_log_bookings)
    h = inputs.churn_hazard * np.exp(d_log_hazard)
    retained_years = -np.expm1(-h * h_years) / h
    value = 4 * h_years * bq + inputs.customers * inputs.annual_value * retained_years
    return {"objective": value, "bookings": bq, "retention": np.exp(-h * h_years),
            "churn": -np.expm1(-h)}


# ---------------------------------------------------------------- model data
def _regressors(df: pd.DataFrame, x0: float) -> pd.DataFrame:
    out = df[list(TERMS)].astype(float) / EFFECT_PER
    out[CURVE] = (out[TERM] - x0) ** 2
    return out


def panel_data(panel: pd.DataFrame, x0: float) -> pd.DataFrame:
    """Rep × quarter rows with a plan, regressors (x = w / 0.10) and the curvature term."""
    data = panel.dropna(subset=list(WEIGHTS)).reset_index(drop=True)
    return pd.concat([data.drop(columns=list(TERMS)), _regressors(data, x0)], axis=1)


def churn_cells(episodes: pd.DataFrame, x0: float, band_days: int = BAND_DAYS) -> pd.DataFrame:
    """Episodes aggregated to team × tenure band × quarter × plan cells (events, days at risk)."""
    data = episodes.dropna(subset=list(WEIGHTS))
    data = data.assign(band=(data["start"] // band_days).astype(int),
                       days=(data["stop"] - data["start"]).astype(float))
    cells = (data.groupby(["team_id", "band", "quarter", *TERMS], as_index=False, sort=True)
             .agg(events=("event", "sum"), days=("days", "sum")))
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
    data = renewals.dropna(subset=list(WEIGHTS)).reset_index(drop=True)
    data, _ = drop_uninformative(data)
    data = data.reset_index(drop=True)
    return pd.concat([data.drop(columns=list(TERMS)), _regressors(data, x0)], axis=1)


# ---------------------------------------------------------------- fits
@dataclass
class DoseFit:
    """One outcome's dose–response fit in the selected form.

    Attributes
    ----------
    outcome, form : outcome name; "linear" or "curved" (selected).
    params : coefficients of the selected model (terms, plus ``sat_curve`` if curved).
    vcov : their cluster-robust covariance.
    curvature : γ, its std. error and Wald p-value in the curved model.
    """

    outcome: str
    form: str
    params: pd.Series
    vcov: pd.DataFrame
    curvature: dict[str, float]

    def delta(self, plan_x: pd.DataFrame, x0: dict[str, float]) -> np.ndarray:
        """Predicted change (model scale) from the weights ``x0`` to each row of ``plan_x``."""
        return _delta(self.params, plan_x, x0)


def _delta(params: pd.Series, plan_x: pd.DataFrame, x0: dict[str, float]) -> np.ndarray:
    d = np.zeros(len(plan_x))
    for t in TERMS:
        if t in params.index:
            d += params[t] * (plan_x[t].to_numpy(float) - x0[t])
    if CURVE in params.index:
        d += params[CURVE] * (plan_x[TERM].to_numpy(float) - x0[TERM]) ** 2
    return d


def _pyfixest(outcome: str, data: pd.DataFrame, rhs: list[str], *, fast: bool = False):
    """pyfixest fit of one outcome; ``fast`` (bootstrap draws) skips what only SEs need."""
    opts: dict[str, Any] = {"vcov": {"CRV1": "team_id"}}
    if fast:
        opts = {"vcov": "iid", "copy_data": False, "store_data": False, "lean": True}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if outcome == "churn":
            if fast:  # strata without events were dropped in churn_cells
                opts["separation_check"] = []
            return pf.fepois("events ~ " + " + ".join(rhs) + " | stratum + quarter", data=data,
                             offset="log_days", **opts)
        if outcome == "complaints":
            return pf.fepois("complaints ~ " + " + ".join(rhs) + " | rep_id + quarter",
                             data=data, offset="log_exposure", **opts)
        y, w = {"bookings": ("log_bookings", None), "csat": ("csat_mean", "csat_responses"),
                "nps": ("nps", "nps_responses")}[outcome]
        return pf.feols(f"{y} ~ " + " + ".join(rhs) + " | rep_id + quarter", data=data,
                        weights=w, **opts)


def _renewal(data: pd.DataFrame, rhs: list[str]) -> tuple[pd.Series, pd.DataFrame]:
    fe = pd.get_dummies(data[["team_id", "end_quarter"]].astype(str), drop_first=True,
                        dtype=float)
    x = pd.concat([pd.Series(1.0, index=data.index, name="const"), data[rhs], fe], axis=1)
    groups = pd.factorize(data["team_id"])[0]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = sm.GLM(data["renewed"].astype(float), x, family=sm.families.Binomial()).fit(
            cov_type="cluster", cov_kwds={"groups": groups})
    return res.params[rhs], res.cov_params().loc[rhs, rhs]


def _fit(outcome: str, data: pd.DataFrame, rhs: list[str], *, fast: bool = False
         ) -> tuple[pd.Series, pd.DataFrame | None]:
    """Coefficients of ``rhs`` and their CRV1 covariance (None when ``fast``)."""
    if outcome == "renewal":
        return _renewal(data, rhs)
    fit = _pyfixest(outcome, data, rhs, fast=fast)
    names = [str(n) for n in fit._coefnames]
    params = pd.Series(np.asarray(fit.coef(), float), index=names)
    if fast:
        return params[rhs], None
    vcov = pd.DataFrame(np.asarray(fit._vcov, float), index=names, columns=names)
    return params[rhs], vcov.loc[rhs, rhs]


_LINEAR_Y = {"bookings": ("log_bookings", None), "csat": ("csat_mean", "csat_responses"),
             "nps": ("nps", "nps_responses")}


def linear_fwl(data: pd.DataFrame, outcome: str, rhs: list[str],
               counts: np.ndarray | None = None) -> pd.Series:
    """Coefficients of a linear rep + quarter FE model by Frisch–Waugh–Lovell.

    pyfixest's own demeaning (``pyfixest.estimation.demean``) partials the fixed
    effects out, statsmodels WLS fits the rest: the same point estimates as
    ``feols`` without its formula parsing, which dominates a bootstrap draw.
    ``counts`` multiplies the regression weights (a team drawn k times weighs k).
    """
    from pyfixest.estimation import demean

    y, wcol = _LINEAR_Y[outcome]
    w = np.ones(len(data)) if wcol is None else data[wcol].to_numpy(float)
    if counts is not None:
        w = w * counts
    keep = w > 0
    sub = data.loc[keep]
    flist = np.column_stack([pd.factorize(sub[c])[0] for c in ("rep_id", "quarter")]
                            ).astype(np.uint64)
    z = np.column_stack([sub[y].to_numpy(float), sub[rhs].to_numpy(float)])
    zd, _ = demean(z, flist, w[keep], tol=1e-10)
    res = sm.WLS(zd[:, 0], zd[:, 1:], weights=w[keep]).fit()
    return pd.Series(np.asarray(res.params), index=rhs)


def model_data(prepared, x0: float) -> dict[str, pd.DataFrame]:
    """The rows each dose–response model is fitted on."""
    panel = panel_data(prepared.derived["rep_quarter_panel"], x0)
    comp = panel[panel["exposure"] > 0].copy()
    comp["log_exposure"] = np.log(comp["exposure"])
    return {"bookings": panel, "csat": panel[panel["csat_responses"] > 0],
            "nps": panel[panel["nps_responses"] > 0], "complaints": comp,
            "churn": churn_cells(prepared.derived["survival_episodes"], x0),
            "renewal": renewal_data(prepared.derived["renewal_table"], x0)}


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
    {outcome: DoseFit}
    """
    if criterion not in ("wald", "linear", "curved"):
        raise ParameterError(f"criterion {criterion!r}; allowed: wald, linear, curved")
    out = {}
    for outcome in outcomes:
        rhs = [*TERMS, CURVE]
        params_c, vcov_c = _fit(outcome, data[outcome], rhs)
        gamma, se = float(params_c[CURVE]), float(math.sqrt(vcov_c.loc[CURVE, CURVE]))
        from scipy import stats

        p = float(2 * stats.norm.sf(abs(gamma / se))) if se > 0 else math.nan
        curved = criterion == "curved" or (criterion == "wald" and p < alpha)
        if curved:
            params, vcov = params_c, vcov_c
        else:
            params, vcov = _fit(outcome, data[outcome], list(TERMS))
        out[outcome] = DoseFit(outcome, "curved" if curved else "linear", params, vcov,
                               {"gamma": gamma, "std_error": se, "p_value": p})
        log.info("%s: curvature gamma=%.4f (se %.4f, Wald p=%.3f) -> %s", outcome, gamma, se,
                 p, out[outcome].form)
    return out


def selection_table(fits: dict[str, DoseFit], alpha: float = 0.05) -> pd.DataFrame:
    """One row per outcome: curvature estimate, its Wald p-value and the form kept."""
    return pd.DataFrame([{"outcome": o, "curvature": f.curvature["gamma"],
                          "std_error": f.curvature["std_error"],
                          "wald_p_value": f.curvature["p_value"], "form": f.form,
                          "rule": f"curved if cluster-robust Wald p < {alpha:g}"}
                         for o, f in fits.items()])


# ---------------------------------------------------------------- bootstrap
_MODEL_COLUMNS = {"churn": ["events", "log_days", "stratum", "quarter"],
                  "complaints": ["complaints", "log_exposure", "rep_id", "quarter"],
                  "bookings": ["log_bookings", "rep_id", "quarter"],
                  "csat": ["csat_mean", "csat_responses", "rep_id", "quarter"],
                  "nps": ["nps", "nps_responses", "rep_id", "quarter"],
                  "renewal": ["renewed", "end_quarter"]}


def _columns(outcome: str, rhs: list[str]) -> list[str]:
    return ["team_id", *_MODEL_COLUMNS[outcome], *rhs]


def _resample(frame: pd.DataFrame, rows: dict[Any, np.ndarray], teams: np.ndarray,
              draw: np.ndarray, relabel: tuple[str, ...]) -> pd.DataFrame:
    """The rows of the drawn teams; copy k of a team gets fixed-effect labels "+k"."""
    picked = [rows[teams[i]] for i in draw if teams[i] in rows]
    index = np.concatenate(picked)
    copy = np.repeat(np.arange(len(picked)), [len(r) for r in picked])
    out = frame.iloc[index].reset_index(drop=True)
    for c in relabel:
        codes = pd.factorize(frame[c])[0][index]
        out[c] = codes.astype(np.int64) * len(draw) + copy
    return out


def bootstrap_params(data: dict[str, pd.DataFrame], fits: dict[str, DoseFit], *,
                     reps: int = 99, seed: int = SEED,
                     outcomes=("bookings", "churn")) -> dict[str, pd.DataFrame]:
    """Cluster (team) bootstrap of the selected models of ``outcomes``.

    Every draw resamples teams with replacement (a team drawn twice enters as two
    teams, its reps as distinct reps) and refits each model; a draw whose fit fails
    is dropped (logged).

    Returns
    -------
    {outcome: DataFrame of coefficients, one row per successful draw}
    """
    rng = np.random.default_rng(seed)
    teams = np.array(sorted(set(data["bookings"]["team_id"]) | set(data["churn"]["team_id"])))
    relabel = {"bookings": ("team_id", "rep_id"), "churn": ("team_id", "stratum"),
               "complaints": ("team_id", "rep_id"), "csat": ("team_id", "rep_id"),
               "nps": ("team_id", "rep_id"), "renewal": ("team_id",)}
    slim = {o: data[o][_columns(o, list(fits[o].params.index))].reset_index(drop=True)
            for o in outcomes}
    team_codes = {o: np.searchsorted(teams, slim[o]["team_id"].to_numpy()) for o in outcomes}
    where = {o: {k: np.asarray(v) for k, v in slim[o].groupby("team_id", sort=False).indices
                 .items()} for o in outcomes}
    rows: dict[str, list] = {o: [] for o in outcomes}
    failed = 0
    for _ in range(reps):
        draw = rng.integers(0, len(teams), len(teams))
        try:
            fitted = {}
            for o in outcomes:
                rhs = list(fits[o].params.index)
                if o in _LINEAR_Y:  # frequency weights = how often each team was drawn
                    counts = np.bincount(draw, minlength=len(teams))[team_codes[o]]
                    fitted[o] = linear_fwl(slim[o], o, rhs, counts.astype(float))
                    continue
                sample = _resample(slim[o], where[o], teams, draw, relabel[o])
                fitted[o] = _fit(o, sample, rhs, fast=True)[0]
        except Exception as exc:  # a degenerate resample: drop the draw, say so
            failed += 1
            log.debug("bootstrap draw failed: %s", exc)
            continue
        for o in outcomes:
            rows[o].append(fitted[o])
    if failed:
        log.warning("cluster bootstrap: %d of %d draws failed and were dropped", failed, reps)
    return {o: pd.DataFrame(rows[o]).reset_index(drop=True) for o in outcomes}


# ---------------------------------------------------------------- frontier
def weight_grid(current: dict[str, float], ranges: pd.DataFrame, step: float = 0.01
                ) -> pd.DataFrame:
    """Plans moving satisfaction weight from revenue, others at ``current``.

    The satisfaction weight runs over its observed range, kept where the revenue
    weight stays ≥ 0. Returns the six weights per row (and ``weight`` = w_satisfaction).
    """
    r = ranges.set_index("weight")
    lo, hi = float(r.loc[TERM, "min"]), float(r.loc[TERM, "max"])
    hi = min(hi, current[TERM] + current["w_revenue"])
    n = int(math.floor((hi - lo) / step + 1e-9))
    ws = np.round(lo + step * np.arange(n + 1), 10)
    if hi - ws[-1] > 1e-9:
        ws = np.append(ws, hi)
    grid = pd.DataFrame({w: np.full(len(ws), current[w]) for w in WEIGHTS})
    grid[TERM] = ws
    grid["w_revenue"] = current["w_revenue"] + current[TERM] - ws
    grid.insert(0, "weight", ws)
    return grid


def _x(plans: pd.DataFrame) -> pd.DataFrame:
    return plans[list(TERMS)].astype(float) / EFFECT_PER


@dataclass
class Tradeoff:
    """The trade-off analysis of one quarter.

    Attributes
    ----------
    frontier : one row per grid weight: ``weight, objective, conf_low, conf_high,
        bookings, bookings_low, bookings_high, retention, retention_low,
        retention_high, churn, renewal, complaints, csat, nps`` (complaints per 100
        customer-quarters, CSAT and NPS as levels).
    recommendation : findings' ``recommendation`` dict.
    selection : :func:`selection_table`.
    inputs : :class:`ObjectiveInputs`.
    current : company-average current weights.
    current_plans : each team's plan in force on the quarter's last day, with its
        predicted bookings, retention and objective.
    fits, draws : the dose–response fits and bootstrap coefficient draws.
    """

    frontier: pd.DataFrame
    recommendation: dict
    selection: pd.DataFrame
    inputs: ObjectiveInputs
    current: dict[str, float]
    current_plans: pd.DataFrame
    fits: dict[str, DoseFit] = field(default_factory=dict)
    draws: dict[str, pd.DataFrame] = field(default_factory=dict)
    ranges: pd.DataFrame | None = None

    def evaluate(self, plans: pd.DataFrame) -> pd.DataFrame:
        """Objective of arbitrary plans (six weight columns): point and bootstrap draws.

        Returns columns ``objective``, ``bookings``, ``retention`` and ``draws`` (an
        array of the objective in each bootstrap draw, per row).
        """
        x0 = {t: self.current[t] / EFFECT_PER for t in TERMS}
        x = _x(plans)
        point = customer_value(self.fits["bookings"].delta(x, x0),
                               self.fits["churn"].delta(x, x0), self.inputs)
        boot = _boot_values(self.draws, x, x0, self.inputs)["objective"]
        return pd.DataFrame({"objective": point["objective"], "bookings": point["bookings"],
                             "retention": point["retention"], "draws": list(boot.T)},
                            index=plans.index)


def _boot_values(draws: dict[str, pd.DataFrame], x: pd.DataFrame, x0: dict[str, float],
                 inputs: ObjectiveInputs) -> dict[str, np.ndarray]:
    """Objective parts per bootstrap draw (draws × rows)."""
    n = min(len(draws["bookings"]), len(draws["churn"]))
    db = np.vstack([_delta(draws["bookings"].iloc[i], x, x0) for i in range(n)])
    dc = np.vstack([_delta(draws["churn"].iloc[i], x, x0) for i in range(n)])
    return customer_value(db, dc, inputs)


def recommend_range(weights: np.ndarray, point: np.ndarray, boot: np.ndarray,
                    level: float = 0.95) -> tuple[float, float, int]:
    """The recommended range: grid weights not shown worse than the estimated best.

    Parameters
    ----------
    weights : grid weights.
    point : objective at each weight (point estimate).
    boot : objective per bootstrap draw (draws × weights).
    level : two-sided level; a weight stays while the upper (1+level)/2 percentile
        of V_b(w) − V_b(ŵ) is ≥ 0.

    Returns
    -------
    (low, high, index of ŵ)
    """
    best = int(np.argmax(point))
    diff = boot - boot[:, [best]]
    upper = np.quantile(diff, 0.5 + level / 2, axis=0)
    keep = np.flatnonzero(upper >= 0)
    keep = np.union1d(keep, [best])
    return float(weights[keep.min()]), float(weights[keep.max()]), best


def tradeoff_analysis(prepared, *, horizon: float = 3.0, grid_step: float = 0.01, reps: int = 99,
             seed: int = SEED, criterion: Criterion = "wald", alpha: float = 0.05) -> Tradeoff:
    """Frontier, recommendation and model selection for one prepared quarter.

    Parameters
    ----------
    prepared : ``analysis.prepare.prepare(...)`` result.
    horizon : objective horizon in years (default 3).
    grid_step : step of the satisfaction-weight grid.
    reps, seed : cluster bootstrap draws and seed (default ``analysis.config.SEED``).
    criterion, alpha : model selection (:func:`fit_dose_response`).

    Returns
    -------
    Tradeoff
    """
    t0 = time.perf_counter()
    day = prepared.quarter_end
    current = current_weights(prepared.tables, day)
    ranges = observed_ranges(prepared.tables, day)
    x0 = {t: current[t] / EFFECT_PER for t in TERMS}
    inputs = objective_inputs(prepared, horizon=horizon)
    data = model_data(prepared, x0[TERM])
    fits = fit_dose_response(data, criterion=criterion, alpha=alpha)
    draws = bootstrap_params(data, fits, reps=reps, seed=seed)
    grid = weight_grid(current, ranges, grid_step)
    x = _x(grid)
    point = customer_value(fits["bookings"].delta(x, x0), fits["churn"].delta(x, x0), inputs)
    boot = _boot_values(draws, x, x0, inputs)
    lo, hi, best = recommend_range(grid["weight"].to_numpy(), point["objective"],
                                   boot["objective"])
    frontier = pd.DataFrame({"weight": grid["weight"], "objective": point["objective"]})
    frontier["conf_low"] = np.quantile(boot["objective"], 0.025, axis=0)
    frontier["conf_high"] = np.quantile(boot["objective"], 0.975, axis=0)
    for col in ("bookings", "retention"):
        frontier[col] = point[col]
        frontier[f"{col}_low"] = np.quantile(boot[col], 0.025, axis=0)
        frontier[f"{col}_high"] = np.quantile(boot[col], 0.975, axis=0)
    frontier["churn"] = point["churn"]
    frontier = frontier.join(_levels(fits, x, x0, inputs))
    n_draws = len(boot["objective"])
    rec = {"term": TERM, "range": [round(lo, 4), round(hi, 4)],
           "objective": OBJECTIVE if horizon == 3 else
           f"expected {horizon:g}-year customer value",
           "note": _note(inputs, fits, grid["weight"].iloc[best], n_draws, grid_step, seed)}
    plans = plans_in_force(prepared.tables, day)
    result = Tradeoff(frontier, rec, selection_table(fits, alpha), inputs, current, plans,
                      fits, draws, ranges)
    ev = result.evaluate(plans)
    result.current_plans = plans.assign(bookings=ev["bookings"], retention=ev["retention"],
                                        objective=ev["objective"])
    log.info("trade-off: range %.2f-%.2f (best %.2f), %d draws, %.1fs", lo, hi,
             grid["weight"].iloc[best], n_draws, time.perf_counter() - t0)
    return result


def _levels(fits, x, x0, inputs: ObjectiveInputs) -> pd.DataFrame:
    """Renewal probability, complaints per 100 customer-quarters, CSAT and NPS along the grid."""
    logit = math.log(inputs.renewal_rate / (1 - inputs.renewal_rate))
    return pd.DataFrame({
        "renewal": 1 / (1 + np.exp(-(logit + fits["renewal"].delta(x, x0)))),
        "complaints": 100 * inputs.complaint_rate * np.exp(fits["complaints"].delta(x, x0)),
        "csat": inputs.csat + fits["csat"].delta(x, x0),
        "nps": inputs.nps + fits["nps"].delta(x, x0)}, index=x.index)


def _note(inputs: ObjectiveInputs, fits, best: float, n_draws: int, step: float,
          seed: int) -> str:
    forms = ", ".join(f"{o} {f.form}" for o, f in fits.items() if o in ("bookings", "churn"))
    return (f"Objective per rep over {inputs.horizon:g} years: bookings "
            f"(4·H·{inputs.bookings:,.0f} per rep-quarter, scaled by the bookings model) plus "
            f"retained contract value ({inputs.customers:.1f} customers × "
            f"{inputs.annual_value:,.0f} a year, churn hazard {inputs.churn_hazard:.3f}/year "
            f"scaled by the churn model); satisfaction weight moved from revenue, other "
            f"weights at the company mean, grid step {step:g} over the observed weights. "
            f"Range: weights whose objective is not worse than at the estimated best "
            f"({best:.2f}) by the team cluster bootstrap ({n_draws} draws, seed {seed}; "
            f"97.5th percentile of the difference >= 0). Models: {forms} "
            f"(curved only if the cluster-robust Wald test of curvature has p < 0.05).")


def true_frontier(effects: list[dict], result: Tradeoff) -> pd.DataFrame:
    """The objective on ``result``'s grid with given (e.g. true) linear effects.

    Parameters
    ----------
    effects : rows with ``outcome``, ``term``, ``estimate`` (per 0.10), e.g. the
        sample's ``ground_truth.json`` effects.
    result : supplies the inputs, current weights and grid.

    Returns
    -------
    DataFrame ``weight, objective, bookings, retention``.
    """
    x0 = {t: result.current[t] / EFFECT_PER for t in TERMS}
    grid = weight_grid(result.current, result.ranges, float(np.diff(result.frontier["weight"])
                                                            .min()))
    x = _x(grid)
    beta = {o: pd.Series({e["term"]: float(e["estimate"]) for e in effects
                          if e["outcome"] == o}) for o in ("bookings", "churn")}
    value = customer_value(_delta(beta["bookings"], x, x0), _delta(beta["churn"], x, x0),
                           result.inputs)
    return pd.DataFrame({"weight": grid["weight"], "objective": value["objective"],
                         "bookings": value["bookings"], "retention": value["retention"]})


# ---------------------------------------------------------------- plot
def plot_frontier(frontier: pd.DataFrame, *, current: pd.DataFrame | None = None,
                  recommended=None, ax=None):
    """Bookings against retention along the satisfaction-weight grid.

    Parameters
    ----------
    frontier : :attr:`Tradeoff.frontier` (``weight, bookings, retention``).
    current : plans to mark (``bookings``, ``retention``, optional ``name``), e.g.
        :attr:`Tradeoff.current_plans`.
    recommended : (low, high) weights: that stretch of the frontier is highlighted.
    ax : matplotlib Axes to draw on (a new figure if None).

    Returns
    -------
    matplotlib.axes.Axes
    """
    import matplotlib.pyplot as plt

    from analysis.plots import OKABE_ITO

    if ax is None:
        _, ax = plt.subplots(figsize=(7.5, 4.2), layout="constrained")
    f = frontier.sort_values("weight")
    ax.plot(100 * f["retention"], f["bookings"], color=OKABE_ITO[0], linewidth=2,
            label="satisfaction weight grid")
    for i in (0, len(f) - 1):
        ax.annotate(f"{100 * f['weight'].iloc[i]:.0f}%", (100 * f["retention"].iloc[i],
                    f["bookings"].iloc[i]), textcoords="offset points", xytext=(4, 4),
                    fontsize=8)
    if recommended is not None:
        r = f[(f["weight"] >= recommended[0] - 1e-9) & (f["weight"] <= recommended[1] + 1e-9)]
        ax.plot(100 * r["retention"], r["bookings"], color=OKABE_ITO[2], linewidth=6,
                alpha=0.5, label=f"recommended {100 * recommended[0]:.0f}–"
                                 f"{100 * recommended[1]:.0f}%")
    if current is not None and len(current):
        cur = current.drop_duplicates("plan_id") if "plan_id" in current else current
        ax.scatter(100 * cur["retention"], cur["bookings"], color=OKABE_ITO[1], zorder=3,
                   label="current plans")
        for row in cur.itertuples(index=False):
            ax.annotate(str(getattr(row, "name", "")), (100 * row.retention, row.bookings),
                        textcoords="offset points", xytext=(4, -10), fontsize=7)
    ax.set_xlabel("customers retained after the horizon (%)")
    ax.set_ylabel("bookings per rep-quarter")
    ax.grid(True, alpha=0.3)
    ax.legend(loc="best", fontsize=8)
    return ax
