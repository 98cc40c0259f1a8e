"""Who owns which customer on which day, exposure, and uniform customer-day draws.

A contract is active on day d when ``start <= d <= end`` and ``d < cancel``; its rep
owns the customer on those days. Exposure of a rep in a quarter is the number of
owned customer-days divided by the days in the quarter — exactly the derived table's
definition, so the complaint model's offset is the one the generator used.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from . import params as P
from .contracts import Contracts
from .org import Panel


@dataclass
class Spans:
    """Contract × quarter pieces of ownership, each a run of consecutive owned days."""

    contract: np.ndarray
    key: np.ndarray  # rep * N_Q + quarter of the owning rep
    lo: np.ndarray   # first owned day of the piece
    days: np.ndarray # number of owned days (>= 1)

    def restrict(self, lo: np.ndarray, hi: np.ndarray) -> "Spans":
        """Pieces clipped to per-piece windows ``[lo, hi]``; empty pieces dropped."""
        new_lo = np.maximum(self.lo, lo)
        new_hi = np.minimum(self.lo + self.days - 1, hi)
        keep = new_hi >= new_lo
        return Spans(self.contract[keep], self.key[keep], new_lo[keep],
                     (new_hi - new_lo + 1)[keep])


def ownership_spans(con: Contracts) -> Spans:
    """Split every contract's active days at quarter boundaries.

    Parameters
    ----------
    con : Contracts

    Returns
    -------
    Spans
        Sorted by key, then contract.
    """
    last = con.last_active
    parts = []
    for q in range(P.N_Q):
        lo = np.maximum(con.start, P.Q_START[q])
        hi = np.minimum(last, P.Q_END[q])
        ok = np.nonzero(hi >= lo)[0]
        parts.append((ok, con.rep[ok] * P.N_Q + q, lo[ok], hi[ok] - lo[ok] + 1))
    c, k, lo, d = (np.concatenate(x) for x in zip(*parts))
    order = np.lexsort((c, k))
    return Spans(c[order], k[order], lo[order], d[order])


def exposure(spans: Spans, panel: Panel) -> np.ndarray:
    """Customer-quarters owned in every panel cell (owned days / days in quarter).

    Parameters
    ----------
    spans : Spans
    panel : Panel

    Returns
    -------
    numpy.ndarray
        Shape (len(panel.rep),).
    """
    days = np.bincount(spans.key, weights=spans.days, minlength=int(panel.key.max()) + 1)
    return days[panel.key] / P.Q_LEN[panel.q]


def sample_days(rng: np.random.Generator, spans: Spans, keys: np.ndarray,
                n: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Draw ``n[i]`` customer-days uniformly from the pieces of cell ``keys[i]``.

    Parameters
    ----------
    rng : numpy.random.Generator
    spans : Spans
        Sorted by key.
    keys : numpy.ndarray
        Cell keys; a key without pieces must have ``n == 0``.
    n : numpy.ndarray
        Draws per key.

    Returns
    -------
    tuple of numpy.ndarray
        ``(piece index into spans, day)`` per draw, grouped by ``keys`` order.
    """
    cum = np.cumsum(spans.days)
    first = np.searchsorted(spans.key, keys, side="left")
    last = np.searchsorted(spans.key, keys, side="right")
    base = np.where(first > 0, cum[np.maximum(first - 1, 0)], 0)
    total = np.where(last > first, cum[np.maximum(last - 1, 0)], 0) - base
    if np.any((total == 0) & (n > 0)):
        raise ValueError("draws requested from a cell with no owned days")
    draw_key = np.repeat(np.arange(len(keys)), n)
    pos = base[draw_key] + rng.integers(0, np.maximum(total[draw_key], 1))
    piece = np.searchsorted(cum, pos, side="right")
    before = np.where(piece > 0, cum[np.maximum(piece - 1, 0)], 0)
    return piece, spans.lo[piece] + (pos - before)
