"""Cluster-robust sandwich and the wild cluster bootstrap (for few clusters).

``cluster_sandwich`` is the CR1 estimator used by the logit and (without the
finite-sample factor, i.e. Lin–Wei) the Cox model. ``wild_cluster_ci`` is the
restricted wild cluster bootstrap (WCR, Webb six-point weights) with its
confidence interval found by test inversion, computed at the cluster level
(O(B·G²) per evaluated null) for a linear model whose fixed effects have already
been partialled out.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
from analysis.config import SEED

log = logging.getLogger(__name__)

WEBB = np.array([-np.sqrt(1.5), -1.0, -np.sqrt(0.5), np.sqrt(0.5), 1.0, np.sqrt(1.5)])
#: Bootstrap replications of the wild cluster bootstrap.
WILD_REPS = 9_999


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


class _WildProblem:
    """Cluster-level pieces of a WCR bootstrap for coefficient ``k``."""

    def __init__(self, x: np.ndarray, y: np.ndarray, clusters: np.ndarray, k: int,
                 weights: np.ndarray | None, reps: int, seed: int):
        sw = np.ones(len(y)) if weights is None else np.sqrt(np.asarray(weights, float))
        xs, ys = x * sw[:, None], y * sw
        self.q = np.linalg.inv(xs.T @ xs)
        self.beta = self.q @ xs.T @ ys
        self.k = k
        others = np.delete(xs, k, axis=1)
        if others.shape[1]:
            proj = others @ np.linalg.lstsq(others, np.column_stack([ys, xs[:, k]]),
                                            rcond=None)[0]
            resid = np.column_stack([ys, xs[:, k]]) - proj
        else:
            resid = np.column_stack([ys, xs[:, k]])
        _, inv = np.unique(clusters, return_inverse=True)
        g = inv.max() + 1
        self.g = g
        # c_g(β0) = X_gᵀ u_r,g = cy_g − β0 · cx_g
        self.cy = np.zeros((g, xs.shape[1]))
        self.cx = np.zeros((g, xs.shape[1]))
        np.add.at(self.cy, inv, xs * resid[:, [0]])
        np.add.at(self.cx, inv, xs * resid[:, [1]])
        ek_q = self.q[k]
        xtx_g = np.zeros((g, xs.shape[1], xs.shape[1]))
        np.add.at(xtx_g, inv, xs[:, :, None] * xs[:, None, :])
        self.a = np.einsum("j,gjl,lm->gm", ek_q, xtx_g, self.q)  # (G, p)
        self.ek_q = ek_q
        # original CR1 standard error (unrestricted residuals)
        u = ys - xs @ self.beta
        sg = np.zeros((g, xs.shape[1]))
        np.add.at(sg, inv, xs * u[:, None])
        n, p = xs.shape
        self.scale = g / (g - 1) * (n - 1) / (n - p)
        v = self.q @ (sg.T @ sg) @ self.q * self.scale
        self.se = float(np.sqrt(v[k, k]))
        rng = np.random.default_rng(seed)
        self.v = WEBB[rng.integers(0, 6, size=(reps, g))]

    def p_value(self, beta0: float) -> float:
        """Bootstrap p-value of H0: β_k = beta0 (symmetric, WCR)."""
        c = self.cy - beta0 * self.cx                       # (G, p)
        d = c @ self.ek_q                                   # (G,)
        m = np.diag(d) - self.a @ c.T                       # (G, G): s*_g = Σ_h v_h M_gh
        num = self.v @ d
        s = self.v @ m.T
        se = np.sqrt(self.scale * np.einsum("bg,bg->b", s, s))
        t_star = np.divide(num, se, out=np.zeros_like(num), where=se > 0)
        t0 = (self.beta[self.k] - beta0) / self.se
        return float(np.mean(np.abs(t_star) >= abs(t0)))


def wild_cluster_ci(x: np.ndarray, y: np.ndarray, clusters: np.ndarray, k: int, *,
                    weights: np.ndarray | None = None, reps: int = WILD_REPS,
                    seed: int = SEED, level: float = 0.95) -> WildResult:
    """Restricted wild cluster bootstrap interval for coefficient ``k`` of ``y ~ x``.

    Parameters
    ----------
    x, y : regressors (n, p) and outcome (n,) with fixed effects already partialled out.
    clusters : cluster label per row.
    k : column of ``x`` whose interval is wanted.
    weights : regression weights (WLS), if any.
    reps : bootstrap replications; the Webb six-point weights are drawn once
        (seeded) and reused for every null value, so the inversion is deterministic.
    level : confidence level.

    Returns
    -------
    WildResult
        Estimate, interval (the nulls not rejected at 1 − level), p-value of β_k = 0.
    """
    prob = _WildProblem(np.asarray(x, float), np.asarray(y, float), np.asarray(clusters),
                        k, weights, reps, seed)
    alpha = 1 - level
    est, se = float(prob.beta[k]), prob.se

    def excess(b0: float) -> float:
        return prob.p_value(b0) - alpha

    bounds = []
    for sign in (-1.0, 1.0):
        step = 2.0 * se if se > 0 else 1.0
        far = est + sign * step
        for _ in range(60):
            if excess(far) <= 0:
                break
            step *= 2
            far = est + sign * step
        else:
            bounds.append(np.inf * sign)
            continue
        lo, hi = (far, est) if sign < 0 else (est, far)
        # the rejection boundary: p crosses alpha between est (p = 1) and far (p <= alpha)
        for _ in range(60):
            mid = 0.5 * (lo + hi)
            inside = excess(mid) > 0
            if sign < 0:
                lo, hi = (lo, mid) if inside else (mid, hi)
            else:
                lo, hi = (mid, hi) if inside else (lo, mid)
            if hi - lo < 1e-7 * max(se, 1e-12):
                break
        bounds.append(0.5 * (lo + hi))
    return WildResult(estimate=est, conf_low=float(bounds[0]), conf_high=float(bounds[1]),
                      p_value=prob.p_value(0.0), reps=reps, n_clusters=prob.g)
