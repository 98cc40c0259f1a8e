"""For whom does the satisfaction weight work? Subgroup effects of ``w_satisfaction``.

Each model is the findings.md model of its outcome with ``w_satisfaction`` (per 0.10)
split into one regressor per subgroup, the subgroup's own intercept added, all other
weights kept as they are:

| model | outcome | subgroups |
|---|---|---|
| ``logit_fe_by_tenure`` | renewal | first-term customers (contract ending within the first year of the customer, ``tenure_days`` < 365) vs existing customers |
| ``logit_fe_by_segment`` | renewal | customer segment |
| ``logit_fe_by_scope`` | renewal | ``satisfaction_scope`` (team / individual) of the plan on ``end_date`` |
| ``ols_fe_by_scope`` | csat, nps | scope of the plan, time-weighted: ``w_satisfaction`` under team-scope and under individual-scope plans enter separately, with the team-scope share of the quarter as a control |

Renewal: logit with team and quarter-of-``end_date`` dummies, CR1 by team, t(G−1).
Above ``JACKKNIFE_MAX_CLUSTERS`` teams the team dummies are never formed (the same
logit, Newton steps and CR1 sandwich, solved through the diagonal team block of the
information matrix, on the distinct rows of each team; see :func:`team_fe_logit`)
and the note says so; a design not clearly of full rank goes through the sparse
design, where identification is checked on the information matrix.
Panel: rep and quarter fixed effects, weighted by responses, CRV1 by team (pyfixest).
Rows per subgroup (term ``w_satisfaction:<dimension>=<group>``) and per difference
from the first group (``w_satisfaction:<dimension>=<group>-<first>``); the whole table
is one family for the multiple-testing adjustment (:mod:`.multiple_testing`).
"""

from __future__ import annotations

import logging
import warnings

import numpy as np
import pandas as pd
from scipy import sparse
from scipy.special import expit

from analysis.config import EFFECT_PER, MIN_CLUSTERS, TERMS, WEIGHTS
from analysis.decision.blas import single_threaded_blas
from analysis.decision.multiple_testing import Method, adjust_pvalues
from analysis.models import design
from analysis.models.clustered import cluster_sandwich
from analysis.models.jackknife import JACKKNIFE_MAX_CLUSTERS
from analysis.models.tidy import effect_row, effects_frame, missing_row

log = logging.getLogger(__name__)

TERM = "w_satisfaction"
#: Contracts ending before this tenure are the customer's first term.
NEW_CUSTOMER_DAYS = 365
PANEL_OUTCOMES = {"csat": ("csat_mean", "csat_responses", "csat_points"),
                  "nps": ("nps", "nps_responses", "nps_points")}


def scope_weights(tables: dict[str, pd.DataFrame], as_of: pd.Timestamp | str) -> pd.DataFrame:
    """Per team and quarter: ``w_satisfaction`` under team- and individual-scope plans.

    Time-weighted daily means over the days with a plan (as the panel's weights), so
    ``w_sat_team + w_sat_individual`` equals the panel's ``w_satisfaction``.

    Returns
    -------
    DataFrame with ``team_id, quarter, w_sat_team, w_sat_individual, team_scope_share``.
    """
    plans = tables["kpi_plans"].set_index("plan_id")
    pa = tables["plan_assignments"]
    end = pd.Timestamp(as_of)
    last = pa["valid_to"].where(pa["valid_to"].notna() & (pa["valid_to"] < end), end)
    keep = (last >= pa["valid_from"]).to_numpy()
    if not keep.any():  # no plan in force up to as_of
        return pd.DataFrame(columns=["team_id", "quarter", "w_sat_team", "w_sat_individual",
                                     "team_scope_share"])
    pa, last = pa[keep], last[keep]
    # one row per assignment and day in force, in assignment order (as pd.date_range per row)
    start = pa["valid_from"].to_numpy()
    n_days = ((last.to_numpy() - start) // np.timedelta64(1, "D")).astype(np.int64) + 1
    first = np.repeat(np.cumsum(n_days) - n_days, n_days)
    offset = np.arange(int(n_days.sum())) - first
    days = pd.DatetimeIndex(np.repeat(start, n_days) + offset.astype("timedelta64[D]"))
    # quarter labels once per calendar day of the range; rows grouped by the codes of the
    # sorted labels
    day = days.asi8 // (86_400 * 10**9)
    calendar = pd.to_datetime(np.arange(day.min(), day.max() + 1), unit="D")
    quarters, quarter_code = np.unique(calendar.to_period("Q").astype(str).to_numpy(object),
                                       return_inverse=True)
    teams, team_code = np.unique(pa["team_id"].to_numpy(object), return_inverse=True)
    w = np.repeat(pa["plan_id"].map(plans[TERM]).to_numpy(float), n_days)
    team_scope = np.repeat((pa["plan_id"].map(plans["satisfaction_scope"]) == "team")
                           .to_numpy(bool), n_days)
    daily = pd.DataFrame({"team_id": np.repeat(team_code, n_days),
                          "quarter": quarter_code[day - day.min()], "w_sat_team": w * team_scope,
                          "w_sat_individual": w * ~team_scope, "team_scope": team_scope})
    out = (daily.groupby(["team_id", "quarter"], sort=True)
           .agg(w_sat_team=("w_sat_team", "mean"), w_sat_individual=("w_sat_individual", "mean"),
                team_scope_share=("team_scope", "mean"))
           .reset_index())
    out["team_id"] = teams[out["team_id"].to_numpy()]
    out["quarter"] = quarters[out["quarter"].to_numpy()]
    return out


def _rows_from(outcome, model, scale, dimension, groups, coef, cov, df, n_obs, g, base_note):
    """Subgroup rows and differences from the first group, from coefficients and covariance."""
    rows = []
    for i, name in enumerate(groups):
        rows.append(effect_row(outcome, f"{TERM}:{dimension}={name}", model, scale,
                               estimate=coef[i], std_error=float(np.sqrt(cov[i, i])), df=df,
                               n_obs=n_obs, n_clusters=g, note=base_note))
    for i, name in enumerate(groups[1:], start=1):
        var = cov[i, i] + cov[0, 0] - 2 * cov[i, 0]
        rows.append(effect_row(outcome, f"{TERM}:{dimension}={name}-{groups[0]}", model, scale,
                               estimate=coef[i] - coef[0], std_error=float(np.sqrt(var)),
                               df=df, n_obs=n_obs, n_clusters=g,
                               note=f"difference {name} minus {groups[0]}; {base_note}"))
    return rows


def logit_newton(x: np.ndarray, y: np.ndarray, *, tol: float = 1e-10,
                 maxiter: int = 100) -> tuple[np.ndarray, np.ndarray]:
    """Logistic regression by Newton–Raphson: coefficients and the information matrix.

    ``x`` dense or scipy sparse. Same maximum as statsmodels ``GLM(Binomial)`` (checked
    in the tests), without
    its SVD-based IRLS steps, which dominate the run time with a few hundred dummies.
    """
    beta = np.zeros(x.shape[1])
    for _ in range(maxiter):
        p = expit(x @ beta)
        info = _information(x, p * (1 - p))
        step = np.linalg.lstsq(info, x.T @ (y - p), rcond=None)[0] if not np.all(
            np.isfinite(info)) else np.linalg.solve(info + 1e-12 * np.eye(len(beta)),
                                                    x.T @ (y - p))
        beta += step
        if np.max(np.abs(step)) < tol:
            break
    else:
        log.warning("logit did not converge in %d Newton steps", maxiter)
    p = expit(x @ beta)
    return beta, _information(x, p * (1 - p))


def _information(x, w: np.ndarray) -> np.ndarray:
    """``X' diag(w) X`` as a dense array, for a dense or a scipy sparse ``x``."""
    if sparse.issparse(x):
        return (x.T @ sparse.diags(w) @ x).toarray()
    return (x.T * w) @ x


def unidentified(x, columns: list[int]) -> list[int]:
    """Which of ``columns`` of ``x`` are linear combinations of the other columns.

    A sparse ``x`` is checked on ``X'X`` (same null space, p × p instead of n × p).
    """
    if sparse.issparse(x):
        x = _information(x, np.ones(x.shape[0]))
        rank = np.linalg.matrix_rank(x, hermitian=True)
        if rank == x.shape[1]:
            return []
        return [j for j in columns if np.linalg.matrix_rank(
            np.delete(np.delete(x, j, axis=0), j, axis=1), hermitian=True) == rank]
    rank = np.linalg.matrix_rank(x)
    if rank == x.shape[1]:
        return []
    return [j for j in columns if np.linalg.matrix_rank(np.delete(x, j, axis=1)) == rank]


def sparse_design(dense: pd.DataFrame, teams: pd.Series) -> sparse.csr_matrix:
    """``dense`` columns followed by team dummies (first team dropped), sparse."""
    codes = design.factor_codes(teams.astype(str))
    rows = np.flatnonzero(codes > 0)
    dummies = sparse.csr_matrix((np.ones(len(rows)), (rows, codes[rows] - 1)),
                                shape=(len(teams), int(codes.max())))
    return sparse.hstack([sparse.csr_matrix(dense.to_numpy(float)), dummies], format="csr")


def sparse_cr1(bread_inv: np.ndarray, x: sparse.csr_matrix, resid: np.ndarray,
                clusters: np.ndarray, n_params: int) -> np.ndarray:
    """CR1 sandwich (as :func:`cluster_sandwich`) from a sparse design's scores."""
    codes = design.factor_codes(pd.Series(clusters))
    g, n = int(codes.max()) + 1, x.shape[0]
    ind = sparse.csr_matrix((np.ones(n), (codes, np.arange(n))), shape=(g, n))
    sg = (ind @ sparse.diags(resid) @ x).toarray()
    c = g / (g - 1) * (n - 1) / (n - n_params)
    return c * bread_inv @ (sg.T @ sg) @ bread_inv


def _team_blocks(xd: np.ndarray, starts: np.ndarray, w: np.ndarray
                 ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Blocks of ``X' diag(w) X`` for ``X = [xd, team dummies without team 0]``.

    Rows sorted by team, team ``t`` starting at row ``starts[t]``. ``a = xd' W xd``
    (k, k), ``b`` (G−1, k) the team sums of ``w·xd``, ``d`` (G−1,) the team sums of
    ``w`` (the dummies' block is diagonal).
    """
    xw = xd * w[:, None]
    return (xd.T @ xw, np.add.reduceat(xw, starts, axis=0)[1:],
            np.add.reduceat(w, starts)[1:])


def _clearly_full_rank(a: np.ndarray, b: np.ndarray, d: np.ndarray) -> bool:
    """Whether ``M = [[a, b'], [b, diag(d)]]`` is far from numpy's rank and pinv cut-offs.

    ``M − μI`` is positive definite iff ``d > μ`` and its Schur complement
    ``a − μI − b'(d − μ)⁻¹b`` is (Haynsworth). With ``μ`` a thousand times above
    ``matrix_rank``'s tolerance and ``pinv``'s cut-off (both below ``p·eps·trace(M)``),
    the smallest eigenvalue clears them by far more than rounding: ``M`` has full rank
    and its pseudo-inverse is its inverse. Anything closer is left to the dense check.
    """
    if not (np.isfinite(a).all() and np.isfinite(b).all() and np.isfinite(d).all()):
        return False
    p = len(a) + len(d)
    mu = 2e3 * p * np.finfo(float).eps * (np.trace(a) + d.sum())
    if d.min() <= mu:
        return False
    schur = a - mu * np.eye(len(a)) - (b.T / (d - mu)) @ b
    return bool(np.linalg.eigvalsh(schur)[0] > 0)


def team_fe_logit(xd: np.ndarray, teams: pd.Series, y: np.ndarray, idx: list[int], *,
                  tol: float = 1e-10, maxiter: int = 100
                  ) -> tuple[np.ndarray, np.ndarray] | None:
    """The sparse route's logit and CR1 by team, solved through the team block.

    The model of :func:`sparse_design` + :func:`logit_newton` + :func:`sparse_cr1`
    (``xd`` then team dummies, first team dropped; clusters are the teams): the same
    Newton steps and convergence rule, but the information matrix's team block is
    diagonal, so each step solves a k × k Schur complement instead of a (k+G) system,
    and only the covariance of ``idx`` (columns of ``xd``) is formed. Equal to the
    sparse route up to floating-point rounding.

    Returns
    -------
    ``(coefficients of xd, CR1 covariance of idx)``, or None when the design is
    not clearly of full rank (then the sparse route decides what is identified).
    """
    codes = design.factor_codes(teams.astype(str))
    n, k, g = len(y), xd.shape[1], int(codes.max()) + 1
    # identical rows of a team share p: fit on the distinct (team, row) patterns with
    # binomial counts (same likelihood, scores and cluster sums), patterns sorted by team
    keys = pd.DataFrame(xd).assign(team=codes)
    pattern = keys.groupby(["team", *range(k)], sort=True, dropna=False).ngroup().to_numpy()
    m = np.bincount(pattern).astype(float)
    s = np.bincount(pattern, weights=y)
    row = np.empty(len(m), dtype=np.int64)
    row[pattern] = np.arange(n)  # any row of a pattern: they are equal
    xd, codes = xd[row], codes[row]
    starts = np.searchsorted(codes, np.arange(g))
    if not _clearly_full_rank(*_team_blocks(xd, starts, m)):
        return None
    beta, alpha = np.zeros(k), np.zeros(g)  # alpha[0] = 0: the dropped team
    for _ in range(maxiter):
        p = expit(xd @ beta + alpha[codes])
        a, b, d = _team_blocks(xd, starts, m * p * (1 - p))
        r = s - m * p
        grad_t = np.add.reduceat(r, starts)[1:]
        a, d = a + 1e-12 * np.eye(k), d + 1e-12  # as logit_newton's ridge
        step = np.linalg.solve(a - (b.T / d) @ b, xd.T @ r - b.T @ (grad_t / d))
        step_t = (grad_t - b @ step) / d
        beta += step
        alpha[1:] += step_t
        if max(np.max(np.abs(step)), np.max(np.abs(step_t))) < tol:
            break
    else:
        log.warning("logit did not converge in %d Newton steps", maxiter)
    p = expit(xd @ beta + alpha[codes])
    a, b, d = _team_blocks(xd, starts, m * p * (1 - p))
    if not _clearly_full_rank(a, b, d):
        return None
    # columns idx of the inverse information: [S⁻¹; −d⁻¹ b S⁻¹] restricted to idx
    inv_d = np.linalg.inv(a - (b.T / d) @ b)[:, idx]
    inv_t = -(b @ inv_d) / d[:, None]
    r = s - m * p
    proj = np.add.reduceat(xd * r[:, None], starts, axis=0) @ inv_d  # cluster scores x bread
    proj[1:] += np.add.reduceat(r, starts)[1:, None] * inv_t
    c = g / (g - 1) * (n - 1) / (n - k)
    return beta, c * proj.T @ proj


def renewal_by(renewals: pd.DataFrame, dimension: str, groups: pd.Series, *,
               min_clusters: int = MIN_CLUSTERS) -> list[dict]:
    """Renewal logit (team and end-quarter dummies) with ``w_satisfaction`` by subgroup.

    Parameters
    ----------
    renewals : the ``renewal_table`` (rows with a plan).
    dimension : name used in the terms and the model (``logit_fe_by_<dimension>``).
    groups : subgroup label per row of ``renewals`` (same index).
    min_clusters : fewer teams make every row non-estimable.
    """
    model, outcome, scale = f"logit_fe_by_{dimension}", "renewal", "log_odds_ratio"
    # only the model's columns: every later step copies rows
    # imported here: pyfixest (which it imports) is not needed to load cached results
    from analysis.models.renewal import FE, drop_uninformative

    data = design.complete_rows(renewals[[*WEIGHTS, "renewed", *FE]].assign(group=groups),
                                ["renewed", "team_id", "end_quarter", "group"])
    data, _ = drop_uninformative(data)
    levels = sorted(data["group"].astype(str).unique())
    g = int(data["team_id"].nunique())
    terms = [f"{TERM}:{dimension}={lv}" for lv in levels]
    need = max(min_clusters, 2)
    if g < need or len(levels) < 2:
        why = (design.few_clusters_note(g, need) if g < need
               else f"not estimable: only one {dimension} group")
        return [missing_row(outcome, t, model, scale, n_obs=len(data), n_clusters=g, note=why)
                for t in terms]
    x = design.regressors(data)
    grp = data["group"].astype(str)
    split = pd.DataFrame({t: x[TERM] * (grp == lv) for t, lv in zip(terms, levels)})
    columns = [
        pd.Series(1.0, index=data.index, name="const"), split,
        x[[t for t in TERMS if t != TERM]],
        pd.get_dummies(grp, prefix="grp", drop_first=True, dtype=float),
        pd.get_dummies(data["end_quarter"].astype(str), prefix="q", drop_first=True, dtype=float),
    ]
    y = data["renewed"].astype(float).to_numpy()
    idx = [1 + i for i in range(len(levels))]
    many = g > JACKKNIFE_MAX_CLUSTERS
    if many:
        note = (f"CR1 by team, t(G-1) (G={g} > {JACKKNIFE_MAX_CLUSTERS}: sparse team "
                "dummies)")
        dense = pd.concat(columns, axis=1)
        fast = team_fe_logit(dense.to_numpy(float), data["team_id"], y, idx)
        if fast is not None:
            return _rows_from(outcome, model, scale, dimension, levels, fast[0][idx], fast[1],
                              g - 1, len(data), g, note)
        # not clearly of full rank: the sparse design decides what is identified
        xa = sparse_design(dense, data["team_id"])
    else:
        note = "CR1 by team, t(G-1)"
        xa = pd.concat([*columns, pd.get_dummies(data["team_id"].astype(str), prefix="t",
                                                 drop_first=True, dtype=float)],
                       axis=1).to_numpy(float)
    flat = unidentified(xa, idx)
    if flat:
        why = (f"not estimable: {TERM} does not vary within "
               + ", ".join(f"{dimension}={levels[i - 1]}" for i in flat)
               + " beyond the fixed effects")
        return [missing_row(outcome, t, model, scale, n_obs=len(data), n_clusters=g, note=why)
                for t in terms]
    params, info = logit_newton(xa, y)
    p = expit(xa @ params)
    n_params = xa.shape[1] - (g - 1)
    if many:
        cov = sparse_cr1(np.linalg.pinv(info, hermitian=True), xa, y - p,
                         data["team_id"].to_numpy(), n_params=n_params)
    else:
        cov = cluster_sandwich(np.linalg.pinv(info), xa * (y - p)[:, None],
                               data["team_id"].to_numpy(), n_params=n_params)
    return _rows_from(outcome, model, scale, dimension, levels, params[idx],
                      cov[np.ix_(idx, idx)], g - 1, len(data), g, note)


def panel_by_scope(panel: pd.DataFrame, scopes: pd.DataFrame, outcome: str, *,
                   min_clusters: int = MIN_CLUSTERS) -> list[dict]:
    """CSAT or NPS with ``w_satisfaction`` split by the plan's satisfaction scope.

    Parameters
    ----------
    panel : the ``rep_quarter_panel``.
    scopes : :func:`scope_weights` output.
    outcome : ``"csat"`` or ``"nps"``.
    """
    column, weights, scale = PANEL_OUTCOMES[outcome]
    model, levels = "ols_fe_by_scope", ["individual", "team"]
    panel = panel[list(dict.fromkeys([*WEIGHTS, column, weights, "rep_id", "quarter",
                                      "team_id"]))]
    data = design.complete_rows(panel.merge(scopes, on=["team_id", "quarter"], how="left"),
                                [column, weights, "team_scope_share"])
    data = data[data[weights] > 0]
    g = int(data["team_id"].nunique())
    terms = [f"{TERM}:scope={lv}" for lv in levels]
    if g < max(min_clusters, 2):
        return [missing_row(outcome, t, model, scale, n_obs=len(data), n_clusters=g,
                            note=design.few_clusters_note(g, max(min_clusters, 2)))
                for t in terms]
    work = design.regressors(data, [t for t in TERMS if t != TERM])
    work["sat_individual"] = data["w_sat_individual"] / EFFECT_PER
    work["sat_team"] = data["w_sat_team"] / EFFECT_PER
    for c in ("team_scope_share", "rep_id", "quarter", "team_id", weights):
        work[c] = data[c].to_numpy()
    work["y"] = data[column].astype(float)
    coef, cov, n_obs, why = _scope_fit(work, weights)
    if why:
        return [missing_row(outcome, t, model, scale, n_obs=len(data), n_clusters=g, note=why)
                for t in terms]
    return _rows_from(outcome, model, scale, "scope", levels, coef, cov, g - 1, n_obs, g,
                      "CRV1 by team, t(G-1); weighted by responses")


def _scope_fit(work: pd.DataFrame, weights: str):
    """pyfixest fit of the scope model: split coefficients, covariance, rows used, or why not."""
    split = ["sat_individual", "sat_team"]
    controls = [c for c in (*(t for t in TERMS if t != TERM), "team_scope_share")
                if work[c].nunique() > 1]
    n_fe = work["rep_id"].nunique() + work["quarter"].nunique() - 1
    flat = [c for c in split if work[c].nunique() <= 1]
    if flat:
        return None, None, 0, f"not estimable: no variation in {TERM} under {', '.join(flat)}"
    if len(work) <= n_fe + len(split) + len(controls):
        # too few rows for the fixed effects (pyfixest's demeaning can abort on it)
        return None, None, 0, f"not estimable: {len(work)} rows for {n_fe} fixed effects"
    import pyfixest as pf

    from analysis.models.fe_order import formula_fe_order

    try:
        with warnings.catch_warnings(), formula_fe_order():
            warnings.simplefilter("ignore")
            fit = pf.feols("y ~ " + " + ".join(split + controls) + " | rep_id + quarter",
                           data=work.reset_index(drop=True), vcov={"CRV1": "team_id"},
                           weights=weights)
    except Exception as exc:  # pyfixest failures on degenerate data
        return None, None, 0, f"not estimable: the fit failed ({type(exc).__name__})"
    names = list(fit.coef().index)
    if not all(c in names for c in split):
        return None, None, 0, f"not estimable: {TERM} by scope is collinear with the fixed effects"
    idx = [names.index(c) for c in split]
    coef, cov = fit.coef().to_numpy()[idx], np.asarray(fit._vcov)[np.ix_(idx, idx)]
    if not (np.isfinite(coef).all() and np.isfinite(cov).all()):
        return None, None, 0, "not estimable: the fit gave non-finite numbers"
    return coef, cov, int(fit._N), ""


#: The ``renewal_table`` columns :func:`heterogeneity` uses (the renewal fixed effects
#: ``analysis.models.renewal.FE`` among them).
RENEWAL_COLUMNS = (*WEIGHTS, "renewed", "team_id", "end_quarter", "tenure_days", "segment",
                   "plan_id")


def subgroup_effects(prepared, **kwargs) -> pd.DataFrame:
    """:func:`heterogeneity` of a prepared quarter, reading only the renewal columns used.

    ``kwargs`` are :func:`heterogeneity`'s keywords.
    """
    from analysis.columns import read_columns

    derived = {"renewal_table": read_columns(prepared, "derived", "renewal_table",
                                             RENEWAL_COLUMNS),
               "rep_quarter_panel": prepared.derived["rep_quarter_panel"]}
    return heterogeneity(derived, prepared.tables, prepared.as_of, **kwargs)


@single_threaded_blas()
def heterogeneity(derived: dict[str, pd.DataFrame], tables: dict[str, pd.DataFrame],
                  as_of, *, method: Method = "holm",
                  min_clusters: int = MIN_CLUSTERS) -> pd.DataFrame:
    """Every subgroup effect of ``w_satisfaction``, adjusted for multiple testing.

    Parameters
    ----------
    derived : derived tables (``renewal_table``, ``rep_quarter_panel``).
    tables : typed tables of the same as-of view (plans, assignments).
    as_of : the view's date (end of the last plan assignment when open).
    method : multiple-testing adjustment over the whole table (see
        :func:`~analysis.decision.multiple_testing.adjust_pvalues`).
    min_clusters : fewer teams make a model's rows non-estimable.

    Returns
    -------
    DataFrame
        Tidy effect rows plus ``p_adjusted``; ``note`` names the adjustment.
    """
    renewals = derived["renewal_table"]
    scope = tables["kpi_plans"].set_index("plan_id")["satisfaction_scope"]
    tenure = np.where(renewals["tenure_days"] < NEW_CUSTOMER_DAYS, "new", "existing")
    rows = renewal_by(renewals, "tenure", pd.Series(tenure, index=renewals.index),
                      min_clusters=min_clusters)
    rows += renewal_by(renewals, "segment", renewals["segment"], min_clusters=min_clusters)
    rows += renewal_by(renewals, "scope", renewals["plan_id"].map(scope),
                       min_clusters=min_clusters)
    scopes = scope_weights(tables, as_of)
    for outcome in PANEL_OUTCOMES:
        rows += panel_by_scope(derived["rep_quarter_panel"], scopes, outcome,
                               min_clusters=min_clusters)
    return adjust_pvalues(effects_frame(rows), method=method, family="heterogeneity")
