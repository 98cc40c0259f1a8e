"""Uncertainty of the trade-off's bookings and churn models: coefficient draws.

Up to ``JACKKNIFE_MAX_CLUSTERS`` teams, a team cluster bootstrap
(:func:`bootstrap_params`): a draw resamples teams with replacement
(``numpy.random.default_rng(seed)``) and refits the selected form of each model the
objective needs. Linear models are refitted by Frisch–Waugh–Lovell with frequency
weights (:func:`linear_fwl`), Poisson ones by pyfixest's IWLS on the resampled rows of
model matrices pyfixest built once (:class:`~.tradeoff_models.PoissonRefits`).

With more teams no model is refitted (:func:`simulate_params`): the draws come from
the normal distribution of the coefficients with their CRV1 covariance by team
(parametric simulation, Krinsky & Robb 1986; with many clusters CRV1 is reliable,
Cameron & Miller 2015), which carries the models' covariance through the nonlinear
objective as the delta method of :mod:`.whatif` does, at no refit cost.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
import pandas as pd
from statsmodels.regression.linear_model import WLS

from analysis.config import SEED
from analysis.decision.tradeoff_inputs import ObjectiveInputs, customer_value
from analysis.decision.tradeoff_models import (FIXED_EFFECTS, LINEAR_Y, DoseFit, PoissonRefits,
                                               delta, fit_terms)

log = logging.getLogger(__name__)

_MODEL_COLUMNS = {"churn": ["events", "log_days", "stratum", "quarter"],
                  "complaints": ["complaints", "log_exposure", "rep_id", "quarter"],
                  "bookings": ["log_bookings", "rep_id", "quarter"],
                  "csat": ["csat_mean", "csat_responses", "rep_id", "quarter"],
                  "nps": ["nps", "nps_responses", "rep_id", "quarter"],
                  "renewal": ["renewed", "end_quarter"]}
_RELABEL = {"bookings": ("team_id", "rep_id"), "churn": ("team_id", "stratum"),
            "complaints": ("team_id", "rep_id"), "csat": ("team_id", "rep_id"),
            "nps": ("team_id", "rep_id"), "renewal": ("team_id",)}


def linear_fwl(data: pd.DataFrame, outcome: str, rhs: list[str],
               counts: np.ndarray | None = None) -> pd.Series:
    """Coefficients of a linear rep + quarter FE model by Frisch–Waugh–Lovell.

    pyfixest's own demeaning (``pyfixest.estimation.demean``) partials the fixed
    effects out, statsmodels WLS fits the rest: the same point estimates as
    ``feols`` without its formula parsing, which dominates a bootstrap draw.
    ``counts`` multiplies the regression weights (a team drawn k times weighs k).
    """
    from pyfixest.estimation import demean

    y, wcol = LINEAR_Y[outcome]
    w = np.ones(len(data)) if wcol is None else data[wcol].to_numpy(float)
    if counts is not None:
        w = w * counts
    keep = w > 0
    sub = data.loc[keep]
    flist = np.column_stack([pd.factorize(sub[c])[0] for c in ("rep_id", "quarter")]
                            ).astype(np.uint64)
    z = np.column_stack([sub[y].to_numpy(float), sub[rhs].to_numpy(float)])
    zd, _ = demean(z, flist, w[keep], tol=1e-10)
    res = WLS(zd[:, 0], zd[:, 1:], weights=w[keep]).fit()
    return pd.Series(np.asarray(res.params), index=rhs)


def _resample(frame: pd.DataFrame, rows: dict[Any, np.ndarray], teams: np.ndarray,
              draw: np.ndarray, relabel: tuple[str, ...]) -> pd.DataFrame:
    """The rows of the drawn teams; copy k of a team gets fixed-effect labels "+k"."""
    index, relabelled = _relabelled(frame, rows, teams, draw, relabel)
    out = frame.iloc[index].reset_index(drop=True)
    for c, values in relabelled.items():
        out[c] = values
    return out


def _relabelled(frame: pd.DataFrame, rows: dict[Any, np.ndarray], teams: np.ndarray,
                draw: np.ndarray, relabel: tuple[str, ...]
                ) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """:func:`_resample`'s row positions and relabelled columns, without the frame."""
    picked = [rows[teams[i]] for i in draw if teams[i] in rows]
    index = np.concatenate(picked)
    copy = np.repeat(np.arange(len(picked)), [len(r) for r in picked])
    return index, {c: pd.factorize(frame[c])[0][index].astype(np.int64) * len(draw) + copy
                   for c in relabel}


def _draw(slim, where, team_codes, teams, draw, fits, outcomes, poisson
          ) -> dict[str, pd.Series]:
    """One bootstrap draw's coefficients of every model (raises when a refit fails)."""
    fitted = {}
    for o in outcomes:
        rhs = list(fits[o].params.index)
        if o in LINEAR_Y:  # frequency weights = how often each team was drawn
            counts = np.bincount(draw, minlength=len(teams))[team_codes[o]]
            fitted[o] = linear_fwl(slim[o], o, rhs, counts.astype(float))
        elif o in poisson:
            index, fe = _relabelled(slim[o], where[o], teams, draw, _RELABEL[o])
            fitted[o] = poisson[o].fit(index, fe, rhs)
        else:
            fitted[o] = fit_terms(o, _resample(slim[o], where[o], teams, draw, _RELABEL[o]),
                                  rhs, fast=True)[0]
        if list(fitted[o].index) != rhs or not np.isfinite(fitted[o].to_numpy(float)).all():
            raise ValueError(f"{o}: a term is not identified in this draw")
    return fitted


def bootstrap_params(data: dict[str, pd.DataFrame], fits: dict[str, DoseFit], *,
                     reps: int = 99, seed: int = SEED,
                     outcomes=("bookings", "churn")) -> dict[str, pd.DataFrame]:
    """Cluster (team) bootstrap of the selected models of ``outcomes``.

    Every draw resamples teams with replacement (a team drawn twice enters as two
    teams, its reps as distinct reps) and refits each model; a draw whose fit fails
    or leaves a term unidentified is dropped (logged).

    Returns
    -------
    {outcome: DataFrame of coefficients, one row per successful draw}
    """
    rng = np.random.default_rng(seed)
    teams = np.array(sorted(set().union(*(data[o]["team_id"] for o in outcomes))))
    slim = {o: data[o][["team_id", *_MODEL_COLUMNS[o], *fits[o].params.index]]
            .reset_index(drop=True) for o in outcomes}
    team_codes = {o: np.searchsorted(teams, slim[o]["team_id"].to_numpy()) for o in outcomes}
    where = {o: {k: np.asarray(v) for k, v in slim[o].groupby("team_id", sort=False).indices
                 .items()} for o in outcomes}
    # fepois models refit from model matrices built once (relabelled FE ids never missing)
    poisson = {o: PoissonRefits(o, slim[o]) for o in outcomes
               if o in FIXED_EFFECTS and o not in LINEAR_Y
               and slim[o][list(_RELABEL[o])].notna().all().all()}
    rows: dict[str, list] = {o: [] for o in outcomes}
    failed = 0
    for _ in range(reps):
        draw = rng.integers(0, len(teams), len(teams))
        try:
            fitted = _draw(slim, where, team_codes, teams, draw, fits, outcomes, poisson)
        except Exception as exc:  # a degenerate resample: drop the draw, say so
            failed += 1
            log.debug("bootstrap draw failed: %s", exc)
            continue
        for o in outcomes:
            rows[o].append(fitted[o])
    if failed:
        log.warning("cluster bootstrap: %d of %d draws failed and were dropped", failed, reps)
    return {o: pd.DataFrame(rows[o], columns=list(fits[o].params.index)).reset_index(drop=True)
            for o in outcomes}


def simulate_params(fits: dict[str, DoseFit], *, reps: int = 99, seed: int = SEED,
                    outcomes=("bookings", "churn")) -> dict[str, pd.DataFrame]:
    """Coefficient draws from N(β̂, V), V each selected model's CRV1 covariance by team.

    The many-teams replacement of :func:`bootstrap_params` (same output: one row per
    draw, ``reps`` rows, ``numpy.random.default_rng(seed)``).
    """
    rng = np.random.default_rng(seed)
    out = {}
    for o in outcomes:
        names = list(fits[o].params.index)
        cov = fits[o].vcov.loc[names, names].to_numpy(float)
        values = rng.multivariate_normal(fits[o].params.to_numpy(float), cov, size=reps,
                                         method="eigh")
        out[o] = pd.DataFrame(values, columns=names)
    return out


def boot_values(draws: dict[str, pd.DataFrame], x: pd.DataFrame, x0: dict[str, float],
                inputs: ObjectiveInputs) -> dict[str, np.ndarray]:
    """Objective parts per bootstrap draw (draws × rows)."""
    n = min(len(draws["bookings"]), len(draws["churn"]))
    db = np.array([delta(draws["bookings"].iloc[i], x, x0) for i in range(n)], dtype=float)
    dc = np.array([delta(draws["churn"].iloc[i], x, x0) for i in range(n)], dtype=float)
    return customer_value(db.reshape(n, len(x)), dc.reshape(n, len(x)), inputs)
