"""Customers: who was acquired, by whom, when, in which segment."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from . import params as P
from .org import Org, Panel


@dataclass
class Customers:
    """Customers sorted by acquisition day; ``cell`` indexes the acquiring panel cell."""

    acq: np.ndarray      # acquired day (= close day of the first won deal)
    rep: np.ndarray      # acquiring rep
    team: np.ndarray     # owning team, for life
    segment: np.ndarray  # index into SEGMENTS
    region: np.ndarray   # index into REGIONS
    cell: np.ndarray     # index into the Panel arrays

    def __len__(self) -> int:
        return len(self.acq)


def uniform_days(rng: np.random.Generator, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """One uniform integer day in ``[lo, hi]`` per element.

    Parameters
    ----------
    rng : numpy.random.Generator
    lo, hi : numpy.ndarray
        Inclusive bounds, ``lo <= hi``.

    Returns
    -------
    numpy.ndarray
    """
    return lo + rng.integers(0, hi - lo + 1)


def make_customers(rng: np.random.Generator, org: Org, panel: Panel) -> Customers:
    """Acquire ``1 + Poisson(~1.4)`` customers in every employed rep-quarter.

    Every cell gets at least one new customer, so every cell has at least one won
    deal to carry its bookings. The count leans slightly on ``w_new_customers``.

    Parameters
    ----------
    rng : numpy.random.Generator
    org : Org
    panel : Panel

    Returns
    -------
    Customers
    """
    lam = P.NEW_CUSTOMERS_EXTRA * np.exp(0.08 * (panel.x[:, 0] - 1.5))
    n_new = 1 + rng.poisson(lam)
    cell = np.repeat(np.arange(len(panel.rep)), n_new)
    acq = uniform_days(rng, panel.deal_lo[cell], panel.hi[cell])
    rep = panel.rep[cell]
    team = panel.team[cell]
    segment = rng.choice(len(P.SEGMENTS), size=len(cell), p=P.SEGMENT_P)
    other = rng.integers(0, len(P.REGIONS), size=len(cell))
    region = np.where(rng.random(len(cell)) < 0.9, org.team_region[team], other)
    order = np.lexsort((rep, acq))
    return Customers(acq[order], rep[order], team[order], segment[order], region[order],
                     cell[order])
