"""Regressors (plan weight / 0.10, ``w_revenue`` the reference) and identifiability checks.

A term is reported as a number only if the data can identify it: it must vary
within the fixed effects (or strata) of its model and must not be collinear with
the other terms once those fixed effects are removed. Both are checked here,
before any fit, on the regressors with the fixed effects partialled out.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import numpy as np
import pandas as pd

from analysis.config import EFFECT_PER, TERMS, WEIGHTS

log = logging.getLogger(__name__)

#: A regressor whose within-fixed-effect sum of squares is below this share of its
#: raw (centred) sum of squares, or below ``ABS_TOL`` per row, has no usable variation.
REL_TOL = 1e-8
ABS_TOL = 1e-12
#: Alternating projections stop when the largest change is below this.
DEMEAN_TOL = 1e-10
DEMEAN_MAXITER = 2_000

NO_VARIATION = "not estimable: no variation within {fe}"
COLLINEAR = "not estimable: collinear with {others} after {fe}"


def complete_rows(df: pd.DataFrame, columns: Sequence[str] = ()) -> pd.DataFrame:
    """Rows with every plan weight (a plan in force) and every column in ``columns`` present."""
    needed = list(WEIGHTS) + [c for c in columns if c not in WEIGHTS]
    keep = df[needed].notna().all(axis=1)
    dropped = int((~keep).sum())
    if dropped:
        log.info("excluded %d of %d rows with a missing plan weight or %s",
                 dropped, len(df), ", ".join(c for c in columns if c not in WEIGHTS) or "-")
    return df.loc[keep]


def regressors(df: pd.DataFrame, terms: Sequence[str] = TERMS) -> pd.DataFrame:
    """The model regressors: each non-reference weight divided by ``EFFECT_PER`` (0.10)."""
    return df[list(terms)].astype(float) / EFFECT_PER


def factor_codes(values: pd.Series | np.ndarray) -> np.ndarray:
    """Integer codes 0..k-1 of a factor (missing values get their own code)."""
    codes, _ = pd.factorize(pd.Series(values), use_na_sentinel=False)
    return codes.astype(np.int64)


def demean(z: np.ndarray, factors: Sequence[np.ndarray], weights: np.ndarray | None = None
           ) -> np.ndarray:
    """Partial (weighted) fixed effects out of the columns of ``z`` by alternating projections.

    Parameters
    ----------
    z : (n, k) array.
    factors : integer code arrays, one per fixed effect.
    weights : optional (n,) non-negative weights.

    Returns
    -------
    ndarray
        ``z`` minus its projection on the fixed-effect dummies.
    """
    out = np.array(z, dtype=float, copy=True)
    if out.ndim == 1:
        out = out[:, None]
    w = np.ones(out.shape[0]) if weights is None else np.asarray(weights, float)
    sums = [np.bincount(f, weights=w) for f in factors]
    for _ in range(DEMEAN_MAXITER if len(factors) > 1 else 1):
        biggest = 0.0
        for f, s in zip(factors, sums):
            for j in range(out.shape[1]):
                mean = np.bincount(f, weights=w * out[:, j], minlength=len(s))
                mean = np.divide(mean, s, out=np.zeros_like(mean), where=s > 0)
                step = mean[f]
                out[:, j] -= step
                biggest = max(biggest, float(np.max(np.abs(step))) if len(step) else 0.0)
        if biggest < DEMEAN_TOL:
            break
    return out


def identifiability(x: pd.DataFrame, factors: Sequence[np.ndarray], fe_label: str,
                    weights: np.ndarray | None = None,
                    controls: np.ndarray | None = None) -> dict[str, str]:
    """Why each column of ``x`` cannot be identified ("" when it can).

    Parameters
    ----------
    x : regressors of interest (one column per term), in report order.
    factors : fixed-effect (or strata) codes partialled out first.
    fe_label : how the fixed effects are named in the reason, e.g. "rep and quarter".
    weights : regression weights, if any.
    controls : further regressors (already numeric) that stay in the model.

    Returns
    -------
    dict
        term -> "" if identifiable, otherwise the reason (for the ``note`` column).
    """
    n = len(x)
    w = np.ones(n) if weights is None else np.asarray(weights, float)
    sw = np.sqrt(w)
    raw = x.to_numpy(float)
    within = demean(raw, factors, w) if factors else raw - np.average(raw, axis=0, weights=w)
    centred = raw - np.average(raw, axis=0, weights=w)
    reasons: dict[str, str] = {}
    basis: list[np.ndarray] = []
    kept: list[str] = []
    if controls is not None and controls.size:
        cw = (demean(controls, factors, w) if factors else controls) * sw[:, None]
        q, r = np.linalg.qr(cw)
        good = np.abs(np.diag(r)) > 1e-10 * max(1.0, float(np.abs(np.diag(r)).max()))
        basis.extend(q[:, good].T)
    for j, term in enumerate(x.columns):
        v = within[:, j] * sw
        ss_within, ss_raw = float(v @ v), float((centred[:, j] * sw) @ (centred[:, j] * sw))
        if ss_within <= max(REL_TOL * ss_raw, ABS_TOL * n):
            reasons[term] = NO_VARIATION.format(fe=fe_label)
            continue
        resid = v.copy()
        for b in basis:
            resid -= (b @ resid) * b
        if float(resid @ resid) <= REL_TOL * ss_within:
            others = ", ".join(kept) if kept else "the controls"
            reasons[term] = COLLINEAR.format(others=others, fe=fe_label)
            continue
        basis.append(resid / np.sqrt(resid @ resid))
        kept.append(term)
        reasons[term] = ""
    for term, why in reasons.items():
        if why:
            log.warning("%s: %s", term, why)
    return reasons


def few_clusters_note(n_clusters: int, min_clusters: int) -> str:
    """Reason an effect is withheld when there are too few clusters."""
    return (f"not estimable: {n_clusters} teams (< {min_clusters}); cluster-robust errors "
            "are unreliable with so few clusters")
