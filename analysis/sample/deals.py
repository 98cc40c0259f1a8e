"""Deals: bookings drawn from the true model, split across won deals; lost and open deals.

For every employed rep × quarter, ``log(1 + B) = a_rep + d_q + beta_b · x(w̄) + eps``;
B (in cents) is split over the cell's won deals — one new-business deal per customer
the rep acquired in the quarter (closing on the acquisition day) plus expansion deals
to customers the rep owned then — so the cell's won amount by close date is B.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from . import params as P
from .contracts import Contracts
from .customers import Customers, uniform_days
from .org import Org, Panel
from .ownership import Spans, sample_days

WON, LOST, OPEN = 0, 1, 2
STATUS_NAMES = ("won", "lost", "open")


@dataclass
class Deals:
    """Deals before ids are assigned; ``customer`` -1 means the prospect in ``prospect``."""

    customer: np.ndarray
    prospect: np.ndarray
    rep: np.ndarray
    created: np.ndarray
    close: np.ndarray   # NEVER while open
    status: np.ndarray
    cents: np.ndarray
    new_business: np.ndarray


def bookings_cents(rng: np.random.Generator, org: Org, panel: Panel) -> np.ndarray:
    """Total won amount of every panel cell, in cents, from the true log-bookings model.

    Parameters
    ----------
    rng : numpy.random.Generator
    org : Org
    panel : Panel

    Returns
    -------
    numpy.ndarray
        int64 cents per cell.
    """
    a_rep = (P.BOOKINGS_BASE + P.BOOKINGS_U * org.team_u[org.rep_team]
             + P.BOOKINGS_REP_SD * rng.standard_normal(org.n_reps))
    y = (a_rep[panel.rep] + P.QUARTER_EFFECTS["bookings"][panel.q] + panel.x @ org.beta("bookings")
         + P.BOOKINGS_EPS_SD * rng.standard_normal(len(panel.rep)))
    return np.round(np.expm1(y) * 100).astype(np.int64)


def expansion_spans(spans: Spans, panel: Panel, con: Contracts, cust: Customers,
                    cell_of_key: np.ndarray) -> tuple[Spans, np.ndarray]:
    """Owned customer-days on which the owner was employed and could close a deal.

    Returns
    -------
    tuple
        ``(spans, cell)`` — pieces of employed cells only, and their panel cell.
    """
    cell = cell_of_key[spans.key]
    keep = cell >= 0
    sp = Spans(spans.contract[keep], spans.key[keep], spans.lo[keep], spans.days[keep])
    cell = cell[keep]
    acq = cust.acq[con.customer[sp.contract]]
    out = sp.restrict(np.maximum(panel.deal_lo[cell], acq + 1), panel.hi[cell])
    return out, cell_of_key[out.key]


def _split(rng: np.random.Generator, cell: np.ndarray, weight: np.ndarray,
           total: np.ndarray) -> np.ndarray:
    """Split ``total[cell]`` cents over deals in proportion to ``weight``, exactly."""
    wsum = np.bincount(cell, weights=weight, minlength=len(total))
    cents = np.floor(weight / wsum[cell] * total[cell]).astype(np.int64)
    rest = total - np.bincount(cell, weights=cents, minlength=len(total)).astype(np.int64)
    order = np.argsort(cell, kind="stable")
    first = order[np.searchsorted(cell[order], np.unique(cell))]
    cents[first] += rest[cell[first]]
    return cents


def make_deals(rng: np.random.Generator, org: Org, panel: Panel, cust: Customers,
               con: Contracts, spans: Spans) -> tuple[Deals, int]:
    """Won, lost and open deals of the whole history.

    Parameters
    ----------
    rng : numpy.random.Generator
    org, panel, cust, con, spans
        The organisation, panel cells, customers, contracts and ownership spans.

    Returns
    -------
    tuple
        ``(Deals, n_prospects)``.
    """
    n_cells = len(panel.rep)
    total = bookings_cents(rng, org, panel)
    cell_of_key = np.full(org.n_reps * P.N_Q, -1, dtype=np.int64)
    cell_of_key[panel.key] = np.arange(n_cells)
    xsp, xcell = expansion_spans(spans, panel, con, cust, cell_of_key)
    has_x = np.bincount(xcell, weights=xsp.days, minlength=n_cells) > 0
    keys = panel.key

    # won: new business (one per customer) and expansions
    n_exp = np.where(has_x, rng.poisson(P.EXPANSION_PER_REP_QUARTER, n_cells), 0)
    piece, eday = sample_days(rng, xsp, keys, n_exp)
    ecust = con.customer[xsp.contract[piece]]
    ecell = np.repeat(np.arange(n_cells), n_exp)
    size = np.array(P.SEGMENT_DEAL_SIZE)
    w_new = rng.gamma(2.0, size=len(cust)) * size[cust.segment]
    w_exp = 0.5 * rng.gamma(2.0, size=len(ecust)) * size[cust.segment[ecust]]
    cents = _split(rng, np.concatenate([cust.cell, ecell]), np.concatenate([w_new, w_exp]), total)
    hire0 = np.maximum(org.rep_hire, 0)
    new_created = np.maximum(cust.acq - rng.integers(3, 90, len(cust)), hire0[cust.rep])
    exp_rep = panel.rep[ecell]
    exp_created = np.maximum(np.maximum(eday - rng.integers(3, 60, len(ecust)), hire0[exp_rep]),
                             cust.acq[ecust])

    # lost: prospects, and a few lost expansions
    n_lost = rng.poisson(P.LOST_PER_REP_QUARTER, n_cells)
    lcell = np.repeat(np.arange(n_cells), n_lost)
    lclose = uniform_days(rng, panel.deal_lo[lcell], panel.hi[lcell])
    lrep = panel.rep[lcell]
    lcreated = np.maximum(lclose - rng.integers(7, 150, len(lcell)), hire0[lrep])
    n_lx = np.where(has_x, rng.poisson(P.LOST_EXPANSION_PER_REP_QUARTER, n_cells), 0)
    piece, lxday = sample_days(rng, xsp, keys, n_lx)
    lxcust = con.customer[xsp.contract[piece]]
    lxrep = panel.rep[np.repeat(np.arange(n_cells), n_lx)]
    lxcreated = np.maximum(np.maximum(lxday - rng.integers(3, 60, len(lxcust)), hire0[lxrep]),
                           cust.acq[lxcust])

    # open: prospects of reps still employed, created in the last five months
    active = np.nonzero(org.rep_exit == P.NEVER)[0]
    orep = np.repeat(active, rng.poisson(P.OPEN_PER_ACTIVE_REP, len(active)))
    ocreated = uniform_days(rng, np.maximum(P.AS_OF_DAY - 150, hire0[orep]),
                            np.full(len(orep), P.AS_OF_DAY))

    n_pros = len(lcell) + len(orep)
    n_prospects = max(1, int(0.75 * n_pros))
    pros = rng.integers(0, n_prospects, n_pros)
    seg = rng.choice(len(P.SEGMENTS), size=n_pros + len(lxcust), p=P.SEGMENT_P)
    med = 0.8 * np.array(P.SEGMENT_VALUE)[seg]
    other_cents = np.round(med * np.exp(0.6 * rng.standard_normal(len(seg))) * 100).astype(np.int64)

    n_w, n_e, n_l, n_lx_, n_o = len(cust), len(ecust), len(lcell), len(lxcust), len(orep)
    d = Deals(
        customer=np.concatenate([np.arange(n_w), ecust, np.full(n_l, -1), lxcust, np.full(n_o, -1)]),
        prospect=np.concatenate([np.full(n_w + n_e, -1), pros[:n_l], np.full(n_lx_, -1), pros[n_l:]]),
        rep=np.concatenate([cust.rep, exp_rep, lrep, lxrep, orep]),
        created=np.concatenate([new_created, exp_created, lcreated, lxcreated, ocreated]),
        close=np.concatenate([cust.acq, eday, lclose, lxday, np.full(n_o, P.NEVER)]),
        status=np.concatenate([np.full(n_w + n_e, WON), np.full(n_l + n_lx_, LOST), np.full(n_o, OPEN)]),
        cents=np.concatenate([cents, other_cents[:n_l], other_cents[n_pros:], other_cents[n_l:n_pros]]),
        new_business=np.concatenate([np.ones(n_w, bool), np.zeros(n_e, bool), np.ones(n_l, bool),
                                     np.zeros(n_lx_, bool), np.ones(n_o, bool)]),
    )
    order = np.lexsort((d.rep, d.close, d.created))
    d = Deals(*(getattr(d, f)[order] for f in Deals.__dataclass_fields__))
    return d, n_prospects
