"""Surveys: sent to owned customers, answered at random, scores with exact means.

For each employed rep × quarter the CSAT distribution on 1..5 is the base
distribution exponentially tilted so that its mean is exactly
``mu = a_rep + d_q + beta_s · x(w̄)``; the NPS distribution on 0..10 is tilted so that
``100 · (P(9–10) − P(0–6)) = mu_n = a'_rep + d'_q + beta_n · x(w̄)``. Response is a
coin with the rep's own probability, independent of the score, so the mean of the
responses in a cell is unbiased for mu whatever the number of responses.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.special import ndtr

from . import params as P
from .contracts import Contracts
from .org import Org, Panel
from .ownership import Spans, sample_days

_CSAT_VALUES = np.arange(1, 6, dtype=float)
_NPS_VALUES = 100.0 * np.where(np.arange(11) >= 9, 1.0, np.where(np.arange(11) <= 6, -1.0, 0.0))
_NPS_SCORES = np.arange(11, dtype=float)


def tilted(p0: np.ndarray, scores: np.ndarray, values: np.ndarray,
           target: np.ndarray, iters: int = 64) -> np.ndarray:
    """Distributions ``p ∝ p0 · exp(theta · scores)`` with ``E_p[values] = target``.

    ``values`` must be non-decreasing in ``scores`` so the mean is monotone in theta;
    theta is found by bisection to machine precision.

    Parameters
    ----------
    p0 : numpy.ndarray
        Base probabilities, shape (K,).
    scores : numpy.ndarray
        Tilting statistic, shape (K,).
    values : numpy.ndarray
        The quantity whose mean is fixed, shape (K,).
    target : numpy.ndarray
        Required means, shape (N,), strictly inside the range of ``values``.
    iters : int
        Bisection steps.

    Returns
    -------
    numpy.ndarray
        Shape (N, K), rows summing to 1.
    """
    lo = np.full(len(target), -60.0)
    hi = np.full(len(target), 60.0)
    logp0 = np.log(p0)

    def probs(theta: np.ndarray) -> np.ndarray:
        z = logp0[None, :] + theta[:, None] * scores[None, :]
        e = np.exp(z - z.max(axis=1, keepdims=True))
        return e / e.sum(axis=1, keepdims=True)

    for _ in range(iters):
        mid = 0.5 * (lo + hi)
        above = probs(mid) @ values > target
        hi = np.where(above, mid, hi)
        lo = np.where(above, lo, mid)
    return probs(0.5 * (lo + hi))


def score_distributions(rng: np.random.Generator, org: Org, panel: Panel
                        ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """True cell means and the tilted CSAT / NPS distributions of every panel cell.

    Returns
    -------
    tuple of numpy.ndarray
        ``(mu_csat, mu_nps, p_csat (N,5), p_nps (N,11))``.
    """
    u = org.team_u[org.rep_team]
    z = np.clip(rng.standard_normal((2, org.n_reps)), -2.5, 2.5)
    a_csat = P.CSAT_BASE + P.CSAT_U * u + P.CSAT_REP_SD * z[0]
    a_nps = P.NPS_BASE + P.NPS_U * u + P.NPS_REP_SD * z[1]
    mu_c = a_csat[panel.rep] + P.QUARTER_EFFECTS["csat"][panel.q] + panel.x @ org.beta("csat")
    mu_n = a_nps[panel.rep] + P.QUARTER_EFFECTS["nps"][panel.q] + panel.x @ org.beta("nps")
    if mu_c.min() <= P.CSAT_BOUNDS[0] or mu_c.max() >= P.CSAT_BOUNDS[1]:
        raise AssertionError("CSAT means left (1.5, 4.8); adjust params")
    if np.abs(mu_n).max() >= 95:
        raise AssertionError("NPS means too extreme; adjust params")
    p_c = tilted(P.CSAT_P0, _CSAT_VALUES, _CSAT_VALUES, mu_c)
    p_n = tilted(P.NPS_P0, _NPS_SCORES, _NPS_VALUES, mu_n)
    return mu_c, mu_n, p_c, p_n


@dataclass
class Surveys:
    """Survey rows before ids; ``responded`` NEVER and scores -1 when unanswered."""

    customer: np.ndarray
    rep: np.ndarray
    sent: np.ndarray
    responded: np.ndarray
    csat: np.ndarray
    nps: np.ndarray


def _inverse_cdf(p: np.ndarray, u: np.ndarray) -> np.ndarray:
    """Index of the category of uniform ``u`` under row distributions ``p``."""
    cdf = np.cumsum(p, axis=1)
    cdf[:, -1] = 1.0
    return (u[:, None] > cdf).sum(axis=1)


def make_surveys(rng: np.random.Generator, org: Org, panel: Panel, con: Contracts,
                 spans: Spans, expo: np.ndarray) -> Surveys:
    """Send about 0.5 surveys per owned customer-quarter and draw the answers.

    Parameters
    ----------
    rng : numpy.random.Generator
    org, panel, con, spans
        The organisation, panel cells, contracts and ownership spans.
    expo : numpy.ndarray
        Exposure per panel cell.

    Returns
    -------
    Surveys
    """
    _, _, p_c, p_n = score_distributions(rng, org, panel)
    resp_p = rng.uniform(*P.RESPONSE_RANGE, size=org.n_reps)
    n = rng.poisson(P.SURVEYS_PER_CUSTOMER_QUARTER * expo)
    piece, sent = sample_days(rng, spans, panel.key, n)
    cell = np.repeat(np.arange(len(panel.rep)), n)
    rep = panel.rep[cell]
    answered = rng.random(len(cell)) < resp_p[rep]
    lag = 1 + rng.geometric(0.35, size=len(cell))
    responded = np.where(answered, np.minimum(sent + lag, P.AS_OF_DAY), P.NEVER)
    z1 = rng.standard_normal(len(cell))
    z2 = P.CSAT_NPS_RHO * z1 + np.sqrt(1 - P.CSAT_NPS_RHO ** 2) * rng.standard_normal(len(cell))
    csat = 1 + _inverse_cdf(p_c[cell], ndtr(z1))
    nps = _inverse_cdf(p_n[cell], ndtr(z2))
    csat = np.where(answered, csat, -1)
    nps = np.where(answered, nps, -1)
    return Surveys(con.customer[spans.contract[piece]], rep, sent, responded, csat, nps)
