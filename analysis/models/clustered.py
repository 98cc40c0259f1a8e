"""Cluster-robust sandwich, and the wild cluster bootstrap through pyfixest.

``cluster_sandwich`` is the CR1 estimator used by the logit and (without the
finite-sample factor, i.e. Lin–Wei) the Cox model. ``wild_cluster_ci`` wraps
pyfixest's ``Feols.wildboottest`` (the ``wildboottest`` package: restricted
wild cluster bootstrap, WCR-11, Webb six-point weights, seeded) for few clusters.
The library tests only H0: β = 0 and returns no interval, so the interval is
found the documented way of ``boottest``/fwildclusterboot: invert the test —
the nulls β = b0 the bootstrap does not reject at 1 − level — bracketing each
crossing and bisecting on the library's p-value. H0: β = b0 is
tested as H0: β = 0 on the outcome y − b0·x, the same regression shifted, with
the same seeded weights at every b0.
"""

from __future__ import annotations

import logging
import warnings
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import stats

from analysis.config import SEED

log = logging.getLogger(__name__)

#: Bootstrap replications of the wild cluster bootstrap.
WILD_REPS = 9_999
#: Webb six-point weights: with few clusters Rademacher has only 2^G distinct draws.
WILD_WEIGHTS = "webb"
#: Bisection stops when the bracket is narrower than this share of the CRV1 std. error.
BISECT_TOL = 1e-2


def cluster_scores(scores: np.ndarray, clusters: np.ndarray) -> np.ndarray:
    """Sum per-row score contributions (n, p) within clusters -> (G, p)."""
    codes, inverse = np.unique(clusters, return_inverse=True)
    return np.column_stack([np.bincount(inverse, weights=scores[:, j], minlength=len(codes))
                            for j in range(scores.shape[1])])


def cluster_sandwich(bread_inv: np.ndarray, scores: np.ndarray, clusters: np.ndarray, *,
                     n_params: int | None = None, small_sample: bool = True) -> np.ndarray:
    """Cluster-robust covariance ``c · B⁻¹ (Σ_g s_g s_gᵀ) B⁻¹``.

    Parameters
    ----------
    bread_inv : inverse of the information (negative Hessian), (p, p).
    scores : per-row score contributions, (n, p).
    clusters : cluster label per row.
    n_params : parameters counted in the (N-1)/(N-K) factor; None omits that factor.
    small_sample : apply c = G/(G-1) [· (N-1)/(N-K)] (CR1); False gives the raw
        sandwich (Lin–Wei for Cox, as R ``coxph(cluster=)`` and lifelines ``robust``).
    """
    sg = cluster_scores(scores, clusters)
    meat = sg.T @ sg
    g, n = sg.shape[0], scores.shape[0]
    c = 1.0
    if small_sample:
        c = g / (g - 1) if g > 1 else np.nan
        if n_params is not None:
            c *= (n - 1) / (n - n_params)
    return c * bread_inv @ meat @ bread_inv


@dataclass
class WildResult:
    """Wild cluster bootstrap result for one coefficient."""

    estimate: float
    conf_low: float
    conf_high: float
    p_value: float
    reps: int
    n_clusters: int


class WildTest:
    """pyfixest's wild cluster bootstrap p-value of H0: β_term = b0 in a linear FE model.

    Parameters
    ----------
    data : rows of the regression (no missing values).
    y, terms, fe : outcome column, regressor columns, fixed-effect columns.
    cluster : cluster column.
    weights : regression-weight column, or None. pyfixest's bootstrap refuses WLS,
        so a weighted model is bootstrapped as the OLS it equals: every column,
        the fixed-effect dummies included, times √w (same coefficients, same
        CRV1 scores, same wild bootstrap draws).
    reps, seed : bootstrap replications and seed (the same draws at every b0).
    """

    def __init__(self, data: pd.DataFrame, y: str, terms: list[str], fe: list[str],
                 cluster: str, *, weights: str | None = None, reps: int = WILD_REPS,
                 seed: int = SEED):
        self.terms, self.cluster, self.reps, self.seed = list(terms), cluster, reps, seed
        # the bootstrap (numba) needs numeric cluster labels
        base = data.reset_index(drop=True).assign(
            **{cluster: pd.factorize(data[cluster])[0].astype(np.int64)})
        if weights is None:
            self.frame = base[[*terms, *fe, cluster]].copy()
            self.y = base[y].to_numpy(float)
            self.rhs = " + ".join(terms) + " | " + " + ".join(fe)
        else:
            sw = np.sqrt(base[weights].to_numpy(float))
            dummies = pd.get_dummies(base[fe].astype(str), drop_first=False, dtype=float)
            dummies = dummies.iloc[:, _independent(dummies.to_numpy())]
            dummies.columns = [f"fe_{j}" for j in range(dummies.shape[1])]
            self.frame = pd.concat([base[terms].astype(float).mul(sw, axis=0),
                                    dummies.mul(sw, axis=0), base[[cluster]]], axis=1)
            self.y = base[y].to_numpy(float) * sw
            self.rhs = " + ".join([*terms, *dummies.columns]) + " - 1"

    def fit(self, term: str | None = None, b0: float = 0.0):
        """pyfixest OLS of (y − b0·term) on the regressors, CRV1 by cluster."""
        frame = self.frame.assign(_y=self.y - (b0 * self.frame[term] if term else 0.0))
        import pyfixest as pf

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return pf.feols("_y ~ " + self.rhs, data=frame, vcov={"CRV1": self.cluster})

    def p_value(self, term: str, b0: float = 0.0) -> float:
        """Bootstrap p-value of H0: β_term = b0 (two-tailed, WCR-11, Webb weights)."""
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            res = self.fit(term, b0).wildboottest(param=term, reps=self.reps, seed=self.seed,
                                                  weights_type=WILD_WEIGHTS)
        return float(res["Pr(>|t|)"])


def _independent(z: np.ndarray) -> list[int]:
    """Columns of ``z`` kept, left to right, when each must add rank (drops redundant dummies)."""
    kept: list[int] = []
    for j in range(z.shape[1]):
        if np.linalg.matrix_rank(z[:, kept + [j]]) == len(kept) + 1:
            kept.append(j)
    return kept


def wild_cluster_ci(test: WildTest, term: str, *, level: float = 0.95) -> WildResult:
    """Wild cluster bootstrap p-value (β = 0) and interval (test inversion) for ``term``.

    The interval holds the nulls b0 whose bootstrap p-value exceeds 1 − level.
    Each bound is bracketed between the estimate (p = 1) and estimate ± 2·t(G−1)·se
    (se = CRV1; doubled while not rejected) and found by bisection to
    ``BISECT_TOL``·se, below the Monte Carlo error of a bootstrap bound. Every
    p-value is one pyfixest ``wildboottest`` call (about 0.3 s: the library
    recompiles its numba kernel per call), so an interval costs about 20 calls.
    """
    fit = test.fit()
    est, se = float(fit.coef()[term]), float(fit.se()[term])
    g = int(test.frame[test.cluster].nunique())
    alpha = 1 - level
    half = 2 * float(stats.t.ppf(0.5 + level / 2, max(g - 1, 1))) * se
    bounds = []
    for sign in (-1.0, 1.0):
        in_b, out_b = est, est + sign * half
        for _ in range(10):
            if test.p_value(term, out_b) <= alpha:
                break
            in_b, out_b = out_b, est + 2 * (out_b - est)
        else:
            log.warning("%s: wild bootstrap bound beyond %g", term, out_b)
            bounds.append(sign * np.inf)
            continue
        while abs(out_b - in_b) > BISECT_TOL * se:
            mid = 0.5 * (in_b + out_b)
            if test.p_value(term, mid) > alpha:
                in_b = mid
            else:
                out_b = mid
        bounds.append(0.5 * (in_b + out_b))
    return WildResult(estimate=est, conf_low=float(bounds[0]), conf_high=float(bounds[1]),
                      p_value=test.p_value(term, 0.0), reps=test.reps, n_clusters=g)
