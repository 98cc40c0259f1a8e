"""Complaints: Poisson counts per rep × quarter with the exact exposure offset.

``count ~ Poisson(E · exp(a_rep + d_q + beta_p · x(w̄)))`` where E is the cell's
customer-quarters owned (see ``ownership``). Each complaint lands on a customer-day
drawn uniformly from the rep's owned customer-days in the quarter, so its owner on
``created_date`` is the rep — also for the ~15% written without a rep_id.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from . import params as P
from .contracts import Contracts
from .org import Org, Panel
from .ownership import Spans, sample_days


@dataclass
class Complaints:
    """Complaint rows before ids; ``rep`` -1 where the rep is not recorded."""

    customer: np.ndarray
    rep: np.ndarray
    created: np.ndarray
    category: np.ndarray  # index into COMPLAINT_CATEGORIES
    severity: np.ndarray  # 1..3


def complaint_rates(rng: np.random.Generator, org: Org, panel: Panel) -> np.ndarray:
    """Complaints per customer-quarter in every panel cell under the true model."""
    a_rep = (np.log(P.COMPLAINT_RATE) + P.COMPLAINT_U * org.team_u[org.rep_team]
             + P.COMPLAINT_REP_SD * rng.standard_normal(org.n_reps))
    return np.exp(a_rep[panel.rep] + P.QUARTER_EFFECTS["complaints"][panel.q]
                  + panel.x @ org.beta("complaints"))


def make_complaints(rng: np.random.Generator, org: Org, panel: Panel, con: Contracts,
                    spans: Spans, expo: np.ndarray) -> Complaints:
    """Draw every employed cell's complaints and place them on owned customer-days.

    Parameters
    ----------
    rng : numpy.random.Generator
    org, panel, con, spans
        The organisation, panel cells, contracts and ownership spans.
    expo : numpy.ndarray
        Exposure per panel cell.

    Returns
    -------
    Complaints
    """
    n = rng.poisson(expo * complaint_rates(rng, org, panel))
    piece, day = sample_days(rng, spans, panel.key, n)
    cell = np.repeat(np.arange(len(panel.rep)), n)
    rep = np.where(rng.random(len(cell)) < P.COMPLAINT_NULL_REP_P, -1, panel.rep[cell])
    # over-promising is likelier under plans that push new customers (not part of the truth)
    base = np.log(np.array(P.COMPLAINT_CATEGORY_P))[None, :].repeat(len(cell), axis=0)
    base[:, 0] += 0.15 * (panel.x[cell, 0] - 1.5)
    g = base + rng.gumbel(size=base.shape)
    category = g.argmax(axis=1)
    severity = 1 + rng.choice(3, size=len(cell), p=P.COMPLAINT_SEVERITY_P)
    return Complaints(con.customer[spans.contract[piece]], rep, day, category, severity)
