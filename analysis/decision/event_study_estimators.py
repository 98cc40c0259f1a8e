"""Estimators of the event study: Gardner's two-stage DiD and the lead regression.

Both are linear in the outcome; besides the estimates and their cluster sandwich
they return what the wild cluster bootstrap (:mod:`.event_study_bootstrap`) needs:
residuals, cluster codes, the estimator as a linear map of the outcome (``draws``)
and the restricted residuals of each coefficient (``restricted``).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from scipy import sparse
from scipy.sparse.linalg import splu

from analysis.models import design

#: Unit of the fixed effects of the imputation.
UNIT = "rep_id"


def _fe_design(data: pd.DataFrame, sw: np.ndarray) -> sparse.csr_matrix:
    """Weighted rep dummies and quarter dummies (first quarter dropped), sparse (n, p)."""
    rep = design.factor_codes(data[UNIT])
    qtr = design.factor_codes(data["quarter"])
    n, n_rep = len(data), rep.max() + 1
    rows = np.concatenate([np.arange(n), np.flatnonzero(qtr > 0)])
    cols = np.concatenate([rep, n_rep + qtr[qtr > 0] - 1])
    vals = np.concatenate([sw, sw[qtr > 0]])
    return sparse.csr_matrix((vals, (rows, cols)), shape=(n, n_rep + qtr.max()))


def _normal_solver(x: sparse.csr_matrix):
    """Solve ``(X'X) b = r`` for the fixed-effect design (sparse LU; pinv if singular)."""
    xtx = (x.T @ x).tocsc()
    try:
        with np.errstate(all="raise"):
            return splu(xtx).solve
    except (RuntimeError, FloatingPointError):  # disconnected fixed effects: rank-deficient
        pinv = np.linalg.pinv(xtx.toarray(), hermitian=True)
        return lambda r: pinv @ r


def _indicator(clusters: np.ndarray) -> sparse.csr_matrix:
    """Sparse (G, n) matrix summing rows within each cluster code."""
    n = len(clusters)
    return sparse.csr_matrix((np.ones(n), (clusters, np.arange(n))),
                             shape=(clusters.max() + 1, n))


def did2s(data: pd.DataFrame, times: list[int]) -> dict[str, Any]:
    """Gardner's two-stage estimator and its GMM covariance, clustered by team.

    Same numbers as :func:`pyfixest.did2s` (and R ``did2s``) with first stage
    ``~ 0 | rep_id + quarter`` and second stage one indicator per event time in
    ``times``, except that reps with a single untreated quarter are kept (pyfixest
    drops fixed-effect singletons, which breaks its imputation step).

    Parameters
    ----------
    data : rows with ``y``, ``w`` (weights), ``rep_id``, ``quarter``, ``team_id``,
        ``treated``, ``event_time``; every rep and every treated quarter must have
        an untreated row (:func:`estimation_sample`).
    times : event times to estimate.

    Returns
    -------
    dict with ``times``, ``coef`` (per event time), ``vcov`` (no small-sample factor),
    ``first_residual`` (y minus the imputed untreated outcome), and for
    the bootstrap: ``resid`` (weighted residuals), ``clusters``, ``draws`` (the
    estimator as a linear map of the outcome), ``restricted`` (residuals with one
    coefficient fixed, as a + b0·b).
    """
    sw = np.sqrt(data["w"].to_numpy(float))
    untreated = ~data["treated"].to_numpy(bool)
    x1w = _fe_design(data, sw)
    x10w = sparse.diags(untreated.astype(float)) @ x1w
    inv = _normal_solver(x10w)
    x2w = np.column_stack([(data["event_time"] == e).to_numpy(float) for e in times])
    x2w *= sw[:, None]
    yw = data["y"].to_numpy(float) * sw

    def first_stage_resid(z: np.ndarray) -> np.ndarray:
        return z - x1w @ inv(x10w.T @ z)

    bread = np.linalg.inv(x2w.T @ x2w)
    first_u = first_stage_resid(yw)
    coef = bread @ (x2w.T @ first_u)
    second_u = first_u - x2w @ coef
    # influence of the first stage on the second: V = X2'X1 (X10'X10)^-1
    x10v = x10w @ inv(x1w.T @ x2w)
    teams = design.factor_codes(data["team_id"])
    ind = _indicator(teams)
    scores = (ind @ (x2w * second_u[:, None] - x10v * first_u[:, None])) @ bread

    def draws(z: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        fu = first_stage_resid(z)
        dev = bread @ (x2w.T @ fu)
        su = fu - x2w @ dev
        sc = np.stack([ind @ (x2w[:, [j]] * su - x10v[:, [j]] * fu)
                       for j in range(len(times))], axis=1)
        return dev.T, np.einsum("jk,gkb->gjb", bread, sc)

    resid = np.where(untreated, first_u, second_u)

    def restricted(j: int) -> tuple[np.ndarray, np.ndarray]:
        # event-time indicators are disjoint: fixing τ_j moves only its own residuals
        return resid + coef[j] * x2w[:, j], -x2w[:, j]

    return {"times": list(times), "coef": coef, "vcov": scores.T @ scores,
            "first_residual": first_u / sw,
            "resid": resid, "clusters": teams, "draws": draws, "restricted": restricted}



def lead_regression(pre: pd.DataFrame, leads: list[int]) -> dict[str, Any]:
    """Weighted OLS of ``y`` on lead indicators with rep and quarter fixed effects.

    Fixed effects are partialled out (Frisch–Waugh–Lovell) with sparse dummies;
    ``vcov`` is the CRV1 sandwich by team without small-sample factor. For
    the bootstrap: ``resid`` are the restricted (leads = 0) weighted
    residuals, ``resid_full`` the unrestricted ones, ``draws`` the estimator's map.
    """
    sw = np.sqrt(pre["w"].to_numpy(float))
    fe = _fe_design(pre, sw)
    inv = _normal_solver(fe)

    def partial(z: np.ndarray) -> np.ndarray:
        return z - fe @ inv(fe.T @ z)

    xt = partial(np.column_stack([(pre["event_time"] == e).to_numpy(float)
                                  for e in leads]) * sw[:, None])
    u = partial(pre["y"].to_numpy(float) * sw)
    bread = np.linalg.pinv(xt.T @ xt)
    coef = bread @ xt.T @ u
    e = u - xt @ coef
    teams = design.factor_codes(pre["team_id"])
    ind = _indicator(teams)
    scores = (ind @ (xt * e[:, None])) @ bread

    def draws(z: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        dev = bread @ (xt.T @ z)
        res = partial(z) - xt @ dev
        sc = np.stack([ind @ (xt[:, [j]] * res) for j in range(len(leads))], axis=1)
        return dev.T, np.einsum("jk,gkb->gjb", bread, sc)

    def restricted(j: int) -> tuple[np.ndarray, np.ndarray]:
        # residuals of u − b0·x_j on the other leads: a + b0·b
        others = np.delete(xt, j, axis=1)
        if others.shape[1] == 0:
            return u, -xt[:, j]
        hat = others @ np.linalg.pinv(others)
        return u - hat @ u, -(xt[:, j] - hat @ xt[:, j])

    return {"times": list(leads), "coef": coef, "vcov": scores.T @ scores, "resid": u,
            "resid_full": e,
            "clusters": teams, "draws": draws, "restricted": restricted}

