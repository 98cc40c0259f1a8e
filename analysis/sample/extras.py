"""Optional tables: invoices (collection) and activities (process). No truth attached."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from . import params as P
from .contracts import Contracts
from .customers import uniform_days
from .org import Org, Panel
from .ownership import Spans, sample_days


@dataclass
class Invoices:
    """Invoice rows before ids; ``paid`` NEVER and ``paid_cents`` -1 when unpaid."""

    customer: np.ndarray
    rep: np.ndarray
    due: np.ndarray
    cents: np.ndarray
    paid: np.ndarray
    paid_cents: np.ndarray


@dataclass
class Activities:
    """Activity rows before ids; ``customer`` -1 when not about a customer."""

    rep: np.ndarray
    customer: np.ndarray
    day: np.ndarray
    kind: np.ndarray  # index into ACTIVITY_TYPES


def make_invoices(rng: np.random.Generator, org: Org, con: Contracts, team_of_customer: np.ndarray
                  ) -> Invoices:
    """Two invoices per contract year (issued on the start day and 182 days later).

    Parameters
    ----------
    rng : numpy.random.Generator
    org : Org
    con : Contracts
    team_of_customer : numpy.ndarray
        Team index per customer (good teams collect a little better).

    Returns
    -------
    Invoices
    """
    last = con.last_active
    c = np.concatenate([np.arange(len(con))] * 2)
    issue = np.concatenate([con.start, con.start + 182])
    keep = issue <= last[c]
    c, issue = c[keep], issue[keep]
    order = np.lexsort((c, issue))
    c, issue = c[order], issue[order]
    due = issue + 30
    cents = con.value[c] // 2
    u = org.team_u[team_of_customer[con.customer[c]]]
    default = rng.random(len(c)) < 0.03 * np.exp(-0.3 * u)
    paid = np.maximum(due + np.round(rng.normal(-4, 10, len(c))).astype(np.int64), issue + 1)
    unpaid = default | (paid > P.AS_OF_DAY)
    partial = rng.random(len(c)) < 0.05
    paid_cents = np.where(partial, np.round(cents * rng.uniform(0.5, 0.95, len(c))), cents)
    return Invoices(con.customer[c], con.rep[c], due, cents,
                    np.where(unpaid, P.NEVER, paid), np.where(unpaid, -1, paid_cents).astype(np.int64))


def make_activities(rng: np.random.Generator, panel: Panel, con: Contracts, xsp: Spans,
                    xcell: np.ndarray) -> Activities:
    """Visits, calls, e-mails and demos; more of them under process-heavy plans.

    Parameters
    ----------
    rng : numpy.random.Generator
    panel : Panel
    con : Contracts
    xsp : Spans
        Owned customer-days on which the owner was employed (see ``deals``).
    xcell : numpy.ndarray
        Panel cell of each piece of ``xsp``.

    Returns
    -------
    Activities
    """
    n_cells = len(panel.rep)
    lam = P.ACTIVITIES_PER_REP_QUARTER * np.exp(0.1 * (panel.x[:, 4] - 1.0))
    n = rng.poisson(lam)
    has = np.bincount(xcell, weights=xsp.days, minlength=n_cells) > 0
    n_c = np.where(has, rng.binomial(n, 0.65), 0)
    n_p = n - n_c
    piece, cday = sample_days(rng, xsp, panel.key, n_c)
    ccust = con.customer[xsp.contract[piece]]
    pcell = np.repeat(np.arange(n_cells), n_p)
    pday = uniform_days(rng, panel.lo[pcell], panel.hi[pcell])
    rep = np.concatenate([panel.rep[np.repeat(np.arange(n_cells), n_c)], panel.rep[pcell]])
    cust = np.concatenate([ccust, np.full(len(pcell), -1)])
    day = np.concatenate([cday, pday])
    kind = rng.choice(len(P.ACTIVITY_TYPES), size=len(day), p=P.ACTIVITY_TYPE_P)
    order = np.lexsort((rep, day))
    return Activities(rep[order], cust[order], day[order], kind[order])
