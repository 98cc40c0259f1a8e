"""Restricted wild cluster bootstrap (WCR, Webb weights) for the event study.

Everything the estimators compute is linear in the outcome, so a bootstrap draw
with cluster weights ``v`` is a ``v``-weighted sum of the estimator applied to
each cluster's residuals (:func:`_basis`): G evaluations instead of ``reps``.
Intervals come from test inversion (MacKinnon 2015; Roodman et al. 2019).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from analysis.config import SEED
from analysis.models.jackknife import JACKKNIFE_MAX_CLUSTERS
from analysis.models.tidy import CONF_LEVEL, effect_row, missing_row

#: Wild cluster bootstrap replications (Webb weights, seeded with config.SEED).
WILD_REPS = 999
BOOT_NOTE = (f"interval and p-value: restricted wild cluster bootstrap by team (WCR, Webb, "
             f"{WILD_REPS} draws, test inversion); std_error: cluster sandwich x G/(G-1)")


def wild_bootstrap(g: int) -> bool:
    """Whether ``g`` teams get the wild bootstrap (few clusters) or the analytic sandwich.

    Up to ``JACKKNIFE_MAX_CLUSTERS`` teams, as the headline models' few-cluster rule;
    above it the cluster sandwich × G/(G−1) with t(G−1) is reliable (Cameron & Miller
    2015; MacKinnon, Nielsen & Webb 2023), and the bootstrap's G-column basis is
    n × G dense per coefficient (minutes and gigabytes at company scale).
    """
    return g <= JACKKNIFE_MAX_CLUSTERS


def analytic_note(g: int) -> str:
    """How the rows of ``g`` > ``JACKKNIFE_MAX_CLUSTERS`` teams are inferred."""
    return (f"interval and p-value: cluster sandwich by team x G/(G-1), t(G-1) "
            f"(G={g} > {JACKKNIFE_MAX_CLUSTERS}: no wild bootstrap)")


def webb_weights(rng: np.random.Generator, size: tuple[int, ...]) -> np.ndarray:
    """Webb's six-point weights (±√½, ±1, ±√1.5), each with probability 1/6."""
    points = np.array([-np.sqrt(1.5), -1.0, -np.sqrt(0.5), np.sqrt(0.5), 1.0, np.sqrt(1.5)])
    return points[rng.integers(0, 6, size=size)]


def _basis(draws, r: np.ndarray, clusters: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The estimator applied to ``r`` restricted to each cluster in turn.

    Everything is linear in the outcome, so a bootstrap draw with cluster weights
    ``v`` is ``v``-weighted sums of these: G columns to compute instead of ``reps``.
    Returns deviations (G, k) and bread-multiplied cluster scores (G, k, G).
    """
    z = np.zeros((len(r), clusters.max() + 1))
    z[np.arange(len(r)), clusters] = r
    return draws(z)


def bootstrap_weights(n_clusters: int, reps: int = WILD_REPS, seed: int = SEED) -> np.ndarray:
    """(G, reps) Webb weights from ``numpy.random.default_rng(seed)``."""
    return webb_weights(np.random.default_rng(seed), (n_clusters, reps))


def wcr_wald_p(fit: dict[str, Any], wald: float, v: np.ndarray) -> float:
    """Restricted wild cluster bootstrap p-value of the joint Wald test (all coefficients 0).

    ``fit["resid"]`` must be the residuals with every tested coefficient set to 0.
    """
    dev_g, sc_g = _basis(fit["draws"], fit["resid"], fit["clusters"])
    dev = v.T @ dev_g
    sc = np.tensordot(sc_g, v, axes=(2, 0))
    vcovs = np.einsum("gjb,gkb->bjk", sc, sc)
    walds = np.einsum("bj,bj->b", dev, np.linalg.solve(vcovs, dev[:, :, None])[:, :, 0])
    return float((walds >= wald).mean())


def wcr_intervals(fit: dict[str, Any], v: np.ndarray, level: float = CONF_LEVEL
                  ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Restricted wild cluster bootstrap intervals by test inversion, and p-values at 0.

    For coefficient j and a value b0 the residuals with β_j fixed at b0 are
    ``a_j + b0 · b_j`` (``fit["restricted"](j)``); the bootstrap t statistics are
    linear in b0 through them, so p(b0) is cheap and the interval is the set of b0
    with p(b0) > 1 − level, found by bisection (MacKinnon 2015; Roodman et al. 2019).
    """
    coef, se = fit["coef"], np.sqrt(np.diag(fit["vcov"]))
    lows, highs, ps = (np.full(len(coef), np.nan) for _ in range(3))
    alpha = 1 - level
    for j in range(len(coef)):
        a, b = fit["restricted"](j)
        da, sa = _basis(fit["draws"], a, fit["clusters"])
        db, sb = _basis(fit["draws"], b, fit["clusters"])
        dev_a, dev_b = v.T @ da[:, j], v.T @ db[:, j]
        sc_a, sc_b = sa[:, j, :] @ v, sb[:, j, :] @ v

        def p_at(b0: float, j: int = j) -> float:
            t_b = np.abs(dev_a + b0 * dev_b) / np.sqrt(((sc_a + b0 * sc_b) ** 2).sum(0))
            return float((t_b >= abs(coef[j] - b0) / se[j]).mean())

        ps[j] = p_at(0.0)
        for sign, out in ((-1, lows), (1, highs)):
            inside, step = coef[j], se[j]
            outside = coef[j] + sign * step
            while p_at(outside) > alpha and step < 1e3 * se[j]:
                inside, step = outside, 2 * step
                outside = coef[j] + sign * step
            for _ in range(40):
                mid = (inside + outside) / 2
                inside, outside = (mid, outside) if p_at(mid) > alpha else (inside, mid)
            out[j] = (inside + outside) / 2
    return lows, highs, ps



def inference_rows(outcome: str, model: str, scale: str, terms: list[tuple[int, str]],
                   fit: dict[str, Any] | None, g: int, n_obs: int, *, note: str,
                   why_missing: str, row_note) -> list[dict]:
    """Tidy rows of ``terms`` (event time, term) from ``fit`` and its WCR intervals.

    ``fit["times"]`` lists the event times the fit estimated; every other term, a
    failed fit (``fit`` None, ``note`` says why) or a row with a non-finite number is
    a non-estimable row. ``row_note(e)`` is the note of an estimable row. Above
    ``JACKKNIFE_MAX_CLUSTERS`` teams (:func:`wild_bootstrap`) there is no bootstrap:
    the interval and p-value come from the sandwich with t(G−1), and
    :func:`analytic_note` replaces ``row_note``'s bootstrap clause.
    """
    ci = None
    if fit is not None and not note and wild_bootstrap(g):
        try:
            with np.errstate(divide="ignore", invalid="ignore"):  # zero-variance terms:
                ci = wcr_intervals(fit, bootstrap_weights(g))  # caught as non-finite below
        except (np.linalg.LinAlgError, ValueError, FloatingPointError) as exc:
            note = f"not estimable: the wild bootstrap failed ({type(exc).__name__})"
    rows = []
    for e, term in terms:
        if note or e not in fit["times"]:
            rows.append(missing_row(outcome, term, model, scale, n_obs=n_obs, n_clusters=g,
                                    note=note or why_missing))
            continue
        j = fit["times"].index(e)
        se = float(np.sqrt(fit["vcov"][j, j] * g / (g - 1)))
        numbers = (fit["coef"][j], se) + ((ci[0][j], ci[1][j], ci[2][j]) if ci else ())
        if not np.isfinite(numbers).all() or se <= 0:
            rows.append(missing_row(outcome, term, model, scale, n_obs=n_obs, n_clusters=g,
                                    note="not estimable: no variation to estimate it from"))
            continue
        row = effect_row(outcome, term, model, scale, estimate=float(numbers[0]), std_error=se,
                         df=g - 1, n_obs=n_obs, n_clusters=g, note=row_note(e))
        if ci is None:  # many teams: effect_row's t(G-1) interval and p-value stand
            row["note"] = row["note"].replace(BOOT_NOTE, analytic_note(g))
        else:
            row.update(conf_low=float(numbers[2]), conf_high=float(numbers[3]),
                       p_value=float(numbers[4]))
        rows.append(row)
    return rows
