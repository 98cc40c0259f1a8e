"""Churn: stratified Cox with time-varying plan weights, Kaplan–Meier by plan, PH test.

Model ``cox_stratified_tv`` (findings.md): episodes (start, stop] on the tenure
axis (days since acquisition, so delayed entry), Efron ties, strata = owning
team, calendar-quarter indicators, the five non-reference weights / 0.10 as
time-varying covariates. Coefficients from lifelines (:mod:`analysis.models.coxph`).
Errors: leave-one-team-out jackknife (CR3, :mod:`analysis.models.jackknife`) with
t(G−1) intervals and p-values, up to ``JACKKNIFE_MAX_CLUSTERS`` teams; with more,
the Lin–Wei sandwich below (t(G−1) too). The model is stratified by team and the cluster is
the team, so leaving a team out removes exactly one stratum; each refit is
lifelines' Newton–Raphson warm-started at the full-sample coefficients
(:func:`analysis.models.coxph.refit_coefficients`). The Lin–Wei cluster-robust
sandwich from per-episode score residuals that respect delayed entry and strata
(:mod:`analysis.models.cox_residuals`), times G/(G−1), stays available in the
extras (``vcov_lin_wei``, ``coef_table``) for the analyst notebooks; it
under-covers with few teams (docs/models.md), and is what the effects report
with more than ``JACKKNIFE_MAX_CLUSTERS`` teams.
"""

from __future__ import annotations

import logging
import time

import numpy as np
import pandas as pd
from lifelines.exceptions import ConvergenceError, StatError
from scipy import stats

from analysis.config import EFFECT_PER, MIN_CLUSTERS, TERMS, WEIGHTS
from analysis.memory import return_free_memory
from analysis.models import design
from analysis.models.coxph import CoxFit, _sort_order, cox_fit, refit_coefficients
from analysis.models.jackknife import (JACKKNIFE_MAX_CLUSTERS, Jackknife, RefitFailed,
                                       cr1_note, cr3_note, failed_note, identified_without,
                                       jackknife, missing_note, use_jackknife)
from analysis.models.tidy import (ModelFit, effect_row, effects_frame, empty_fit,
                                  missing_row, summary_frame)

log = logging.getLogger(__name__)

OUTCOME, MODEL, SCALE = "churn", "cox_stratified_tv", "log_hazard_ratio"
#: Days between the rows of the Kaplan–Meier table.
KM_STEP_DAYS = 90
#: Fewest churn events for a Cox fit: at least this many, and more than the number
#: of coefficients (weights + quarter indicators). Below it the partial likelihood
#: is flat or singular in some direction and lifelines fails or returns noise.
MIN_EVENTS = 10
KM_COLUMNS = ["plan_id", "day", "survival", "conf_low", "conf_high", "at_risk"]


def _complete_rows(episodes: pd.DataFrame
                   ) -> tuple[pd.DataFrame, np.ndarray, np.ndarray, np.ndarray]:
    """The complete episodes (:func:`design.complete_rows` on the model's columns), their
    team strata (:func:`design.factor_codes`) and quarters (:func:`_quarter_factor`).

    With no incomplete row (the usual case: 1.6M episodes at company scale) the
    episodes themselves, not a copy of every column; the missing teams and quarters
    are found by the factorisations the model needs anyway (a missing value's code
    is −1), not by a separate scan of the string columns.
    """
    columns = ["start", "stop", "event", "team_id", "quarter"]
    strata = pd.factorize(episodes["team_id"])[0].astype(np.int64)
    quarters, levels = _quarter_factor(episodes["quarter"])
    if (strata.min(initial=0) < 0 or quarters.min(initial=0) < 0
            or (not _all_strings(episodes["quarter"]) and episodes["quarter"].hasnans)
            or any(episodes[c].hasnans for c in list(WEIGHTS) + columns[:3])):
        data = design.complete_rows(episodes, columns)
        return (data, design.factor_codes(data["team_id"]), *_quarter_factor(data["quarter"]))
    return episodes, strata, quarters, levels


def _with_events(data: pd.DataFrame, codes: np.ndarray | None = None) -> pd.DataFrame:
    """Episodes of the calendar quarters that have at least one churn event.

    A quarter without events has its indicator's MLE at −∞; in that limit its
    episodes leave every risk set and the other coefficients are those of the fit
    without them. Dropping them is that limit (as the Poisson model drops reps and
    quarters without complaints and the logit its uninformative groups), and keeps
    lifelines from diverging — with few teams a leave-one-team-out refit can lose
    a quarter's only event. ``codes``: the quarters' codes if already computed.
    """
    codes = design.factor_codes(data["quarter"]) if codes is None else codes
    has = np.bincount(codes, weights=data["event"].to_numpy(float)) > 0
    return data if has.all() else data.loc[has[codes]]


def _quarter_dummies(quarters: pd.Series) -> pd.DataFrame:
    """Indicators ``q_<quarter>`` of each quarter but the first (in sorted order).

    The columns of ``pd.get_dummies(quarters.astype(str), prefix="q", drop_first=True)``,
    built from one factorisation instead of a comparison per quarter.
    """
    codes, levels = _quarter_factor(quarters)
    return pd.DataFrame(_design(np.empty((len(quarters), 0)), codes, len(levels)),
                        columns=_quarter_names(levels), index=quarters.index)


def _quarter_factor(quarters: pd.Series) -> tuple[np.ndarray, np.ndarray]:
    """Codes of the quarters (as strings) in sorted order, and the sorted quarters."""
    if _all_strings(quarters):   # already strings: factorised without the str() copy
        return pd.factorize(quarters.to_numpy(), sort=True)
    return pd.factorize(quarters.astype(str).to_numpy(), sort=True)


def _all_strings(values: pd.Series) -> bool:
    """Whether ``values`` is an object column of ``str`` only (no missing value)."""
    return (values.dtype == object
            and pd.api.types.infer_dtype(values.to_numpy(), skipna=False) == "string")


def _quarter_names(levels: np.ndarray) -> list[str]:
    """Names of the :func:`_quarter_dummies` columns for the sorted quarters ``levels``."""
    return [f"q_{q}" for q in levels[1:]]


def _design(x: np.ndarray, codes: np.ndarray, n_levels: int) -> np.ndarray:
    """``x`` with the :func:`_quarter_dummies` of the quarter ``codes`` appended (float64)."""
    out = np.zeros((len(codes), x.shape[1] + max(n_levels - 1, 0)))
    out[:, :x.shape[1]] = x
    return _with_dummies(out, x.shape[1], codes)


def _weights_design(weights: list[np.ndarray], rows: np.ndarray, codes: np.ndarray,
                    n_levels: int) -> np.ndarray:
    """:func:`_design` of the ``rows`` of the regressors whose weight columns are
    ``weights`` (each row's weight / ``EFFECT_PER``, as :func:`_regressors`), quarter
    ``codes`` of those rows: the regressors of the other rows are never built."""
    out = np.zeros((len(rows), len(weights) + max(n_levels - 1, 0)))
    for j, w in enumerate(weights):
        out[:, j] = w[rows] / EFFECT_PER
    return _with_dummies(out, len(weights), codes)


def _with_dummies(out: np.ndarray, k: int, codes: np.ndarray) -> np.ndarray:
    """``out`` with its quarter indicators (columns k.. after the ``k`` regressors) set."""
    rows = np.flatnonzero(codes >= 1)   # the first quarter is the reference: no column
    out[rows, k - 1 + codes[rows]] = 1.0
    return out


def _regressors(data: pd.DataFrame) -> pd.DataFrame:
    """:func:`design.regressors`, the same numbers, from one row-major array (the frame
    wraps it: no copy of the weight columns first)."""
    values = np.empty((len(data), len(TERMS)))
    for j, term in enumerate(TERMS):
        values[:, j] = data[term].to_numpy(float) / EFFECT_PER
    return pd.DataFrame(values, columns=list(TERMS), index=data.index, copy=False)


def _distinct_designs(x: pd.DataFrame, strata: np.ndarray, quarters: np.ndarray
                      ) -> tuple[pd.DataFrame, np.ndarray, np.ndarray, np.ndarray]:
    """The distinct (stratum, quarter, regressors) rows of the design and their counts.

    :func:`design.identifiability` partials the strata and quarters out by weighted
    means and compares weighted sums of squares; with the counts as weights the
    distinct rows give the same within-stratum variation and collinearity as every
    episode (1.6M episodes are ~30k distinct rows at company scale).
    """
    values = x.to_numpy(float)
    # one 64-bit hash of each row, factorised: the groups of pandas' groupby(sort=False),
    # in order of first appearance, when no two distinct rows share a hash (checked)
    with np.errstate(over="ignore"):
        h = strata.astype(np.uint64) * np.uint64(1 << 32) + quarters.astype(np.uint64)
        for j in range(values.shape[1]):
            h = (h ^ (values[:, j] + 0.0).view(np.uint64)) * _HASH_MULTIPLIER  # + 0.0: -0 is 0
            h ^= h >> np.uint64(29)
    group = pd.factorize(h)[0]
    seen = np.maximum.accumulate(group)
    first = np.flatnonzero(np.r_[True, seen[1:] > seen[:-1]])
    if not (np.array_equal(values, values[first][group])
            and np.array_equal(strata, strata[first][group])
            and np.array_equal(quarters, quarters[first][group])):
        key = pd.DataFrame(values, columns=x.columns)   # a hash collision: group the rows
        key["_s"], key["_q"] = strata, quarters
        counts = key.groupby(list(key.columns), sort=False).size()
        rows = counts.index.to_frame(index=False)
        return (rows[list(x.columns)], rows["_s"].to_numpy(np.int64),
                rows["_q"].to_numpy(np.int64), counts.to_numpy(float))
    return (pd.DataFrame(values[first], columns=x.columns), strata[first].astype(np.int64),
            quarters[first].astype(np.int64), np.bincount(group).astype(float))


_HASH_MULTIPLIER = np.uint64(0x9E3779B97F4A7C15)


#: How the Lin–Wei sandwich is named in an effect's ``note`` (G > JACKKNIFE_MAX_CLUSTERS).
LIN_WEI = "Lin-Wei sandwich x G/(G-1)"


def fit_churn(episodes: pd.DataFrame, *, min_clusters: int = MIN_CLUSTERS,
              jackknife_max_clusters: int = JACKKNIFE_MAX_CLUSTERS) -> ModelFit:
    """Fit ``cox_stratified_tv`` on survival episodes.

    Parameters
    ----------
    episodes : the ``survival_episodes`` derived table (start, stop, event, team_id,
        quarter, plan_id and the six weights).
    min_clusters : fewer teams than this make every effect non-estimable.
    jackknife_max_clusters : up to this many teams the errors are the CR3 jackknife,
        with more the Lin–Wei sandwich × G/(G−1); t(G−1) either way.

    Returns
    -------
    ModelFit
        Five effect rows (log hazard ratio per 0.10 of weight moved from revenue),
        a one-row summary, and extras ``cox`` (CoxFit), ``coef_table`` (all
        coefficients incl. quarters) and ``ph_test``. Kaplan–Meier curves and the
        log-rank test are separate (:func:`km_by_plan`, :func:`logrank_by_plan`).
    """
    t0 = time.perf_counter()
    data, strata, quarters, levels = _complete_rows(episodes)
    n_obs = len(data)
    g = int(strata.max()) + 1 if n_obs else 0     # teams (no missing team_id here)
    if n_obs == 0 or int(data["event"].sum()) == 0:
        return empty_fit(OUTCOME, MODEL, SCALE, TERMS, "not estimable: no churn events",
                         n_obs=n_obs, n_clusters=g)
    x = _regressors(data)
    xd, sd, qd_codes, counts = _distinct_designs(x, strata, quarters)
    reasons = design.identifiability(xd, [sd, qd_codes], "team strata and quarter",
                                     weights=counts)
    keep = [t for t in TERMS if not reasons[t]]
    names = keep + _quarter_names(levels)
    if not keep:
        return _finish(data, reasons, None, None, names, g, t0, extras={})
    n_events = int(data["event"].sum())
    needed = max(MIN_EVENTS, len(names) + 1)
    if n_events < needed:
        note = (f"not estimable: insufficient data: {n_events} churn events "
                f"(a Cox fit with {len(names)} coefficients needs at least {needed})")
        log.warning("churn: %s", note)
        return _finish(data, {t: reasons[t] or note for t in TERMS}, None, None, names, g,
                       t0, extras={}, note=note)
    # quarters without an event: their indicator's MLE is at -inf; drop them (that limit)
    if len(with_events := _with_events(data, quarters)) < len(data):
        data = with_events
        strata, x = design.factor_codes(data["team_id"]), _regressors(data)
        g = int(strata.max()) + 1
        quarters, levels = _quarter_factor(data["quarter"])
    del with_events
    names = keep + _quarter_names(levels)
    run_jackknife = g >= min_clusters and use_jackknife(g, jackknife_max_clusters)
    if not run_jackknife:
        x = None   # only the jackknife reads the regressors again
    weights = [data[t].to_numpy(float) for t in keep]
    return_free_memory()   # the checks' temporaries, before the fit's large arrays
    try:
        # the design of the rows cox_fit uses (those at risk) only
        fit = cox_fit(data["start"].to_numpy(float), data["stop"].to_numpy(float),
                      data["event"].to_numpy(int),
                      lambda rows: _weights_design(weights, rows, quarters[rows],
                                                   len(levels)),
                      strata, names=names)
        cov = fit.cov_robust(strata, small_sample=True)   # strata = teams
    except (ConvergenceError, np.linalg.LinAlgError) as exc:
        note = f"not estimable: Cox fit failed ({type(exc).__name__}: {_short(exc)})"
        log.warning("churn: %s", note)
        return _finish(data, {t: reasons[t] or note for t in TERMS}, None, None, names, g,
                       t0, extras={}, note=note)
    if not (fit.converged and np.all(np.isfinite(fit.params))
            and np.all(np.isfinite(np.diag(cov)))):
        note = "not estimable: Cox fit did not converge"
        log.warning("churn: %s", note)
        return _finish(data, {t: reasons[t] or note for t in TERMS}, None, None, names, g,
                       t0, extras={"cox": fit}, note=note)
    extras = {"cox": fit, "ph_test": ph_test(fit, names, keep)}
    jk, failure = None, ""
    if run_jackknife:
        try:
            jk = _jackknife(data, x, keep, fit, names)
        except RefitFailed as exc:
            failure = failed_note(exc)
            log.warning("churn: %s", failure)
    return _finish(data, reasons, fit, cov, names, g, t0, extras, min_clusters, jk=jk,
                   failure=failure, max_jk=jackknife_max_clusters)


def _jackknife(data: pd.DataFrame, x: pd.DataFrame, keep: list[str], fit: CoxFit,
               names: list[str]) -> Jackknife:
    """CR3 of the ``keep`` coefficients: the Cox model refitted without each team (stratum).

    Each refit is the full fit's procedure on the remaining teams: episodes of
    quarters left without an event are dropped (:func:`_with_events`), the quarter
    indicators are rebuilt, and the terms still varying within the remaining strata
    are kept; lifelines' Newton–Raphson is warm-started at the maximum found from
    the full-sample coefficients (:func:`analysis.models.coxph.refit_coefficients`).

    The episodes are put once in lifelines' order (stratum, stop, event; ties in row
    order). A team is one stratum, hence one block of that order, and the rows of a
    refit keep their relative order: they are that order minus the team's block (and
    minus quarters left without an event), the arrays ``cox_coefficients`` would
    build from a frame of the same rows, without pandas selections per refit.
    """
    full = pd.Series(fit.params, index=names)
    teams = data["team_id"].to_numpy()
    strata = design.factor_codes(teams)
    identified = identified_without(x[keep], strata, teams)
    quarters, levels = _quarter_factor(data["quarter"])
    start, stop = data["start"].to_numpy(float), data["stop"].to_numpy(float)
    event = data["event"].to_numpy(int)
    order = _sort_order(stop, event, strata)
    start, stop, event, strata, quarters = (v[order] for v in (start, stop, event, strata,
                                                                quarters))
    xk = x[keep].to_numpy(float)[order]
    bounds = np.r_[0, np.flatnonzero(np.diff(strata)) + 1, len(strata)]
    code_of = dict(zip(teams[order][bounds[:-1]], range(len(bounds) - 1)))
    q_events = np.bincount(quarters, weights=event, minlength=len(levels))

    def refit(_rows: np.ndarray, team) -> pd.Series:
        terms = identified[team]
        cols = [keep.index(t) for t in terms]
        a, b = bounds[code_of[team]], bounds[code_of[team] + 1]
        has = q_events - np.bincount(quarters[a:b], weights=event[a:b],
                                     minlength=len(levels)) > 0
        rows = np.r_[np.arange(a), np.arange(b, len(strata))]
        if not has.all():  # quarters left without an event (_with_events)
            rows = rows[has[quarters[rows]]]
        present = np.flatnonzero(np.bincount(quarters[rows], minlength=len(levels)))
        sub_names = terms + _quarter_names(levels[present])
        q = np.full(len(levels), -1)
        q[present] = np.arange(len(present))

        def columns(at: np.ndarray) -> np.ndarray:
            r = rows[at]
            return _design(xk[np.ix_(r, cols)], q[quarters[r]], len(present))

        params, converged = refit_coefficients(
            start[rows], stop[rows], event[rows], columns, strata[rows], sub_names,
            full.reindex(sub_names).fillna(0.0).to_numpy())
        if not (converged and np.all(np.isfinite(params))):
            raise ConvergenceError("Newton-Raphson did not converge")
        return pd.Series(params[:len(terms)], index=terms)

    return jackknife(full[keep], teams, refit,
                     errors=(ConvergenceError, np.linalg.LinAlgError))


def _short(exc: BaseException, limit: int = 120) -> str:
    """First sentence of a library message, for a ``note``."""
    text = str(exc).split("Please see")[0].strip()
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _finish(data, reasons, fit: CoxFit | None, cov, names, g, t0, extras,
            min_clusters: int = MIN_CLUSTERS, note: str = "", jk: Jackknife | None = None,
            failure: str = "", max_jk: int = JACKKNIFE_MAX_CLUSTERS) -> ModelFit:
    n_obs = len(data)
    rows, few = [], g < min_clusters
    # many teams: the Lin-Wei sandwich is reported (no jackknife was run)
    cr1 = fit is not None and not few and not use_jackknife(g, max_jk)
    for term in TERMS:
        why = (reasons.get(term, "") or (design.few_clusters_note(g, min_clusters) if few
                                         else "") or failure)
        if not why and jk is not None and term in jk.dropped:
            why = missing_note(term, jk.dropped[term])
        if why or fit is None or (jk is None and not cr1):
            rows.append(missing_row(OUTCOME, term, MODEL, SCALE, n_obs=n_obs, n_clusters=g,
                                    note=why or "not estimable"))
            continue
        j = names.index(term)
        if jk is not None:
            se, vnote = jk.std_error(term), cr3_note(g)
        else:
            se, vnote = float(np.sqrt(cov[j, j])), cr1_note(g, LIN_WEI, max_jk)
        rows.append(effect_row(OUTCOME, term, MODEL, SCALE, estimate=fit.params[j],
                               std_error=se, df=g - 1, n_obs=n_obs, n_clusters=g,
                               note=vnote))
    if fit is not None:
        extras["coef_table"] = pd.DataFrame({
            "term": names, "estimate": fit.params,
            "std_error_cr3": [jk.std_error(n) if jk is not None else np.nan for n in names],
            "std_error_lin_wei": np.sqrt(np.diag(cov)),
            "std_error_model": np.sqrt(np.diag(fit.cov_naive))})
        terms = [t for t in names if t in TERMS]
        idx = [names.index(t) for t in terms]
        extras["vcov_lin_wei"] = pd.DataFrame(cov[np.ix_(idx, idx)], index=terms, columns=terms)
        if jk is not None:
            extras["vcov"] = jk.vcov
            extras["jackknife"] = jk
        elif cr1:
            extras["vcov"] = extras["vcov_lin_wei"]
    summary = summary_frame(
        outcome=OUTCOME, model=MODEL, n_obs=n_obs, n_clusters=g,
        n_events=None if fit is None else fit.n_events,
        loglik=None if fit is None else fit.loglik,
        aic=None if fit is None else -2 * fit.loglik + 2 * len(names),
        converged=bool(fit is not None and fit.converged),
        seconds=time.perf_counter() - t0, n_customers=int(data["customer_id"].nunique())
        if "customer_id" in data else None,
        jackknife_seconds=None if jk is None else jk.seconds,
        note=note or failure or ("lifelines CoxPHFitter (Efron ties, strata, delayed entry); "
                                 + (cr1_note(g, LIN_WEI, max_jk) if cr1 else
                                    cr3_note(g) + " (Lin-Wei sandwich x G/(G-1) in extras)")))
    return ModelFit(effects_frame(rows), summary, extras)


def ph_test(fit: CoxFit, names: list[str], terms: list[str]) -> pd.DataFrame:
    """Scaled-Schoenfeld test of proportional hazards (rank time transform).

    Same statistic as lifelines ``proportional_hazard_test(..., time_transform="rank")``:
    for each covariate, the squared covariance of rank(time) with the scaled
    Schoenfeld residual, chi-square on 1 df. A small p-value says the covariate's
    effect drifts with tenure.
    """
    if fit.n_events < 3:
        return pd.DataFrame(columns=["term", "statistic", "p_value", "reading"])
    var = fit.cov_naive
    scaled = fit.n_events * fit.schoenfeld @ var
    ranks = stats.rankdata(fit.event_times)
    tt = ranks - ranks.mean()
    stat = (tt @ scaled) ** 2 / fit.n_events / np.diag(var) / (tt @ tt)
    rows = []
    for term in terms:
        j = names.index(term)
        p = float(stats.chi2.sf(stat[j], 1))
        reading = ("effect looks constant over tenure" if p >= 0.05 else
                   "effect appears to change with tenure: read the hazard ratio as an average")
        rows.append({"term": term, "statistic": float(stat[j]), "p_value": p, "reading": reading})
    return pd.DataFrame(rows)


def km_by_plan(episodes: pd.DataFrame, *, step_days: int = KM_STEP_DAYS) -> pd.DataFrame:
    """Kaplan–Meier survival by plan (delayed entry) on a grid of tenure days.

    Returns columns plan_id, day, survival, conf_low, conf_high, at_risk (episodes
    at risk at that day) — lifelines ``KaplanMeierFitter`` with ``entry=start``.
    A plan whose curve lifelines cannot estimate (``StatError``: too few early
    entries for the events, typical of small or single-team data) is left out and
    named in ``attrs["note"]``; with none left the table is empty. A descriptive
    extra never stops the models.
    """
    from lifelines import KaplanMeierFitter

    data = _plan_columns(episodes)
    if data.empty:
        return _empty_km("no episodes under a plan")
    grid = np.arange(0, float(data["stop"].max()) + step_days, step_days)
    out, skipped = [], []
    codes, plans = pd.factorize(data["plan_id"], sort=True)
    order = np.argsort(codes, kind="stable")   # each plan's rows, in table order
    bounds = np.searchsorted(codes[order], np.arange(len(plans) + 1))
    columns = {c: data[c].to_numpy() for c in ("start", "stop", "event")}
    for j, plan in enumerate(plans):
        rows = order[bounds[j]:bounds[j + 1]]
        grp = {c: v[rows] for c, v in columns.items()}
        try:
            km = KaplanMeierFitter().fit(grp["stop"], grp["event"], entry=grp["start"])
        except StatError as exc:
            log.warning("Kaplan-Meier for plan %s not estimable: %s", plan, _short(exc))
            skipped.append(str(plan))
            continue
        surv = km.survival_function_at_times(grid).to_numpy()
        ci = km.confidence_interval_survival_function_
        lo = np.interp(grid, ci.index.to_numpy(float), ci.iloc[:, 0].to_numpy(), left=1.0)
        hi = np.interp(grid, ci.index.to_numpy(float), ci.iloc[:, 1].to_numpy(), left=1.0)
        # episodes with start < d <= stop: those started before d minus those with
        # start and stop both before d
        at_risk = (np.searchsorted(np.sort(grp["start"]), grid, side="left")
                   - np.searchsorted(np.sort(np.maximum(grp["start"], grp["stop"])), grid,
                                     side="left")).tolist()
        out.append(pd.DataFrame({"plan_id": plan, "day": grid, "survival": surv,
                                 "conf_low": lo, "conf_high": hi, "at_risk": at_risk}))
    note = ("" if not skipped else "Kaplan-Meier not estimable (too few early entries for "
            "the events) for plan(s) " + ", ".join(skipped))
    if not out:
        return _empty_km(note)
    table = pd.concat(out, ignore_index=True)
    table.attrs["note"] = note
    return table


def _plan_columns(episodes: pd.DataFrame) -> pd.DataFrame:
    """plan_id, start, stop and event of the episodes under a plan (only those columns
    are copied)."""
    return episodes[["plan_id", "start", "stop", "event"]].dropna(subset=["plan_id"])


def _empty_km(note: str) -> pd.DataFrame:
    table = pd.DataFrame(columns=KM_COLUMNS)
    table.attrs["note"] = note
    return table


def logrank_by_plan(episodes: pd.DataFrame) -> pd.DataFrame:
    """Log-rank test of equal survival across plans, with delayed entry.

    The k-sample statistic (observed − expected events per plan, hypergeometric
    variance) with risk sets built from (start, stop]; equals lifelines
    ``multivariate_logrank_test`` when every start is 0.
    """
    data = _plan_columns(episodes)
    plans = sorted(data["plan_id"].unique())
    if len(plans) < 2 or data["event"].sum() == 0:
        return pd.DataFrame([{"test": "logrank", "statistic": np.nan, "df": len(plans) - 1,
                              "p_value": np.nan, "n_plans": len(plans)}])
    gi = pd.Categorical(data["plan_id"], categories=plans).codes
    start, stop = data["start"].to_numpy(float), data["stop"].to_numpy(float)
    ev = data["event"].to_numpy(int).astype(bool)
    times = np.unique(stop[ev])
    k = len(plans)
    n_at = np.zeros((len(times), k))
    d_at = np.zeros((len(times), k))
    for j in range(k):
        m = gi == j
        n_at[:, j] = (np.searchsorted(np.sort(start[m]), times, side="left")
                      - np.searchsorted(np.sort(stop[m]), times, side="left"))
        d_at[:, j] = np.bincount(np.searchsorted(times, stop[m & ev]), minlength=len(times))
    n, d = n_at.sum(1), d_at.sum(1)
    ok = n > 0
    n_at, d_at, n, d = n_at[ok], d_at[ok], n[ok], d[ok]
    expected = (d / n)[:, None] * n_at
    diff = (d_at - expected).sum(0)
    factor = d * (n - d) / np.where(n > 1, n - 1, 1)
    p = n_at / n[:, None]
    v = np.diag((factor[:, None] * p).sum(0)) - np.einsum("t,tj,tk->jk", factor, p, p)
    try:
        stat = float(diff[:-1] @ np.linalg.pinv(v[:-1, :-1]) @ diff[:-1])
    except np.linalg.LinAlgError:  # SVD did not converge: no test, never a crash
        stat = np.nan
    if not np.isfinite(stat):
        return pd.DataFrame([{"test": "logrank", "statistic": np.nan, "df": k - 1,
                              "p_value": np.nan, "n_plans": k}])
    return pd.DataFrame([{"test": "logrank", "statistic": stat, "df": k - 1,
                          "p_value": float(stats.chi2.sf(stat, k - 1)), "n_plans": k}])
