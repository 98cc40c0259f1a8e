"""Per-row Efron score and Schoenfeld residuals of a Cox model on (start, stop] rows.

Counting-process data: row i is at risk on (start_i, stop_i] in stratum s_i and has
the event at stop_i when event_i = 1. At given coefficients (the library's fit, see
:mod:`analysis.models.coxph`) this computes each row's score residual — its
contribution to the Efron score, with the risk-set terms summed over the event
times inside its own interval and stratum — so delayed entry and strata are
respected and the cluster sums give the Lin–Wei robust variance for episode-split
data. Neither lifelines (``cluster_col`` ignores delayed entry) nor statsmodels
gives these for (start, stop] rows with strata.

The risk-set sums at the K event times come from one sparse (K+1)×n entry/exit
matrix (row i enters at the first event after its start, leaves after its stop,
within its stratum), so the cost is O(n·p) per column of X, with no per-event loops.

The same sums give the Efron score and information at any β
(:func:`efron_derivatives`); :mod:`analysis.models.coxph` uses them only to find
the point at which lifelines' own Newton–Raphson starts, and :func:`rows_at_risk`
names the rows that enter the partial likelihood at all.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import sparse


@dataclass
class CoxResiduals:
    """Result of :func:`efron_residuals`.

    Attributes
    ----------
    score : per-row score residuals (n, p); their column sums are the score.
    schoenfeld : Schoenfeld residuals of the event rows (n_events, p), Efron-centred.
    event_times : time of each event row (same order as ``schoenfeld``).
    loglik : Efron partial log-likelihood at the given coefficients.
    """

    score: np.ndarray
    schoenfeld: np.ndarray
    event_times: np.ndarray
    loglik: float


def rows_at_risk(start, stop, event, strata=None) -> np.ndarray:
    """Which rows are at risk at some event time of their stratum (events included).

    A row whose interval (start, stop] holds no event time of its stratum is in no
    risk set: it adds nothing to the partial likelihood, its derivatives, or any
    score or Schoenfeld residual (its score residual is exactly zero). Dropping
    such rows changes none of them.
    """
    return _RiskSets(start, stop, event, strata, bookkeeping_only=True).at_risk()


class _RiskSets:
    """β-independent bookkeeping: sort orders, event-time keys, Efron tie ranks.

    ``bookkeeping_only`` stops after the event keys and each row's risk interval
    (``lo``, ``hi``), without the sparse entry/exit matrices.
    """

    def __init__(self, start, stop, event, strata, bookkeeping_only: bool = False):
        start, stop = np.asarray(start, float), np.asarray(stop, float)
        event = np.asarray(event).astype(bool)
        if np.any(stop <= start):
            raise ValueError("every episode needs start < stop")
        tmin = min(start.min(), stop.min())
        span = float(stop.max() - tmin) + 1.0
        s = np.zeros(len(start)) if strata is None else np.asarray(strata, float)
        key_start = s * span + (start - tmin)
        key_stop = s * span + (stop - tmin)
        ev_rows = np.flatnonzero(event)
        ukey, kidx, d = np.unique(key_stop[ev_rows], return_inverse=True, return_counts=True)
        # event keys within each row's risk interval (start, stop]: indices lo..hi-1
        hi = np.searchsorted(ukey, key_stop, side="right")
        lo = np.searchsorted(ukey, key_start, side="right")
        self._index(event, ev_rows, ukey, kidx, d, lo, hi)
        if not bookkeeping_only:
            self._matrices(stop)

    def at_risk(self) -> np.ndarray:
        """Which rows are in some risk set (:func:`rows_at_risk`)."""
        return (self.hi > self.lo) | self.event

    def subset(self, rows: np.ndarray, stop) -> "_RiskSets":
        """The risk sets of the rows ``rows`` alone (with ``stop`` their stop times).

        ``rows`` must keep every event row, so the event keys stay those of this
        bookkeeping; each row keeps its risk interval. The same object as a
        ``_RiskSets`` built from those rows, without a second pass over the keys.
        """
        out = object.__new__(_RiskSets)
        event = self.event[rows]
        ev_rows = np.flatnonzero(event)
        if len(ev_rows) != len(self.ev_rows):
            raise ValueError("a risk-set subset must keep every event row")
        out._index(event, ev_rows, self.ukey, self.k_of_row[rows][ev_rows], self.d,
                   self.lo[rows], self.hi[rows])
        out._matrices(np.asarray(stop, float))
        return out

    def _index(self, event, ev_rows, ukey, kidx, d, lo, hi):
        """Events sorted by event-time key, Efron tie ranks, each row's key interval."""
        self.event, self.ev_rows, self.ukey, self.d, self.lo, self.hi = (
            event, ev_rows, ukey, d, lo, hi)
        # events sorted by event-time key; rank within tie group for Efron fractions
        o = np.argsort(kidx, kind="stable")
        self.ev_sorted = self.ev_rows[o]
        self.k_sorted = kidx[o]
        self.group_start = np.concatenate([[0], np.cumsum(self.d)[:-1]])
        rank = np.arange(len(o)) - self.group_start[self.k_sorted]
        self.frac = rank / self.d[self.k_sorted]
        self.k_of_row = np.full(len(event), -1)
        self.k_of_row[self.ev_rows] = kidx

    def _matrices(self, stop):
        """Event times and the sparse entry/exit and tied-event matrices."""
        self.event_times = stop[self.ev_sorted]
        # Row i enters the risk set at event index lo_i and leaves at hi_i: the
        # at-risk sum at event k is the cumulative sum over m <= k of (entries - exits).
        n, k = len(self.event), len(self.ukey)
        cols = np.arange(n)
        self.enter_exit = sparse.csr_matrix(
            (np.r_[np.ones(n), -np.ones(n)], (np.r_[self.lo, self.hi], np.r_[cols, cols])),
            shape=(k + 1, n))
        self.tied = sparse.csr_matrix(
            (np.ones(len(self.ev_sorted)), (self.k_sorted, self.ev_sorted)), shape=(k, n))

    def at_risk_sums(self, v, scale: np.ndarray | None = None) -> np.ndarray:
        """Σ over rows at risk at each event key of ``v`` (n,) or (n, p), each row
        times ``scale`` (n,) if given (the same products, without an n×p ``scale·v``)."""
        return np.cumsum(_scaled(self.enter_exit, scale) @ v, axis=0)[:-1]

    def tied_sums(self, v, scale: np.ndarray | None = None) -> np.ndarray:
        """Σ over the events tied at each event key of ``v`` (n,) or (n, p), each row
        times ``scale`` (n,) if given."""
        return _scaled(self.tied, scale) @ v

    def over_risk_interval(self, per_key: np.ndarray) -> np.ndarray:
        """For each row, Σ of ``per_key`` over the event keys in its (start, stop]."""
        c = np.concatenate([np.zeros((1,) + per_key.shape[1:]), np.cumsum(per_key, 0)])
        out = c[self.hi]
        for a in range(0, len(out), GRAM_BLOCK):   # by blocks: no second n×p array
            out[a:a + GRAM_BLOCK] -= c[self.lo[a:a + GRAM_BLOCK]]
        return out


def _scaled(m: sparse.csr_matrix, scale: np.ndarray | None) -> sparse.csr_matrix:
    """``m`` with column i times ``scale[i]``: its ±1 entries become ±scale[i] exactly,
    so ``_scaled(m, r) @ x`` adds the same products r_i·x_i in the same order as
    ``m @ (x * r[:, None])``."""
    if scale is None:
        return m
    return sparse.csr_matrix((m.data * scale[m.indices], m.indices, m.indptr), shape=m.shape)


def _efron_terms(rs: _RiskSets, x, beta: np.ndarray) -> dict:
    """Risk-set sums and Efron weights at ``beta`` (the pieces of the residuals)."""
    eta = x @ beta
    shift = float(eta.max())            # exp(η − shift): no overflow; loglik corrected below
    r = np.exp(eta - shift)
    s0, s1 = rs.at_risk_sums(r), rs.at_risk_sums(x, scale=r)
    sd0, sd1 = rs.tied_sums(r), rs.tied_sums(x, scale=r)
    k, f = rs.k_sorted, rs.frac
    dd = s0[k] - f * sd0[k]
    gs = rs.group_start
    terms = {name: np.add.reduceat(v, gs) for name, v in
             (("a1", 1 / dd), ("a2", f / dd), ("b1", 1 / dd**2), ("b2", f / dd**2),
              ("b3", f**2 / dd**2))}
    loglik = float(eta[rs.ev_rows].sum() - np.log(dd).sum() - len(dd) * shift)
    return dict(r=r, s1=s1, sd1=sd1, loglik=loglik, **terms)


def efron_derivatives(rs: _RiskSets, x: np.ndarray, beta: np.ndarray
                      ) -> tuple[float, np.ndarray, np.ndarray]:
    """Efron partial log-likelihood, score and information (minus the Hessian) at ``beta``.

    With D_j = S0 − f_j·SD0 for the j-th of the d events tied at a key (f_j = rank/d)
    and N1, N2 the same combinations of Σ r·x and Σ r·x·xᵀ, the information is
    Σ_j N2_j/D_j − N1_j N1_jᵀ/D_j². The Σ r·x·xᵀ over a risk set is never formed:
    Σ_k a1_k·S2_k = Xᵀ diag(r·A1) X with A1_i the sum of a1 over row i's risk
    interval, and the tied part runs over the event rows only.
    """
    t = _efron_terms(rs, x, np.asarray(beta, float))
    s1, sd1, r = t["s1"], t["sd1"], t["r"]
    ev, kr = rs.ev_rows, rs.k_of_row[rs.ev_rows]
    x_ev = x[ev]
    score = x_ev.sum(0) - (s1.T @ t["a1"] - sd1.T @ t["a2"])
    w_all = r * rs.over_risk_interval(t["a1"])
    n2 = _weighted_gram(x, w_all) - x_ev.T @ (x_ev * (r[ev] * t["a2"][kr])[:, None])
    cross = (s1.T * t["b2"]) @ sd1
    n1n1 = (s1.T * t["b1"]) @ s1 - cross - cross.T + (sd1.T * t["b3"]) @ sd1
    return t["loglik"], score, n2 - n1n1


#: Rows per block of :func:`_weighted_gram` (its temporaries stay ~16 MB).
GRAM_BLOCK = 65_536


def _weighted_gram(x: np.ndarray, w: np.ndarray) -> np.ndarray:
    """Xᵀ diag(w) X, by row blocks (no n×p temporary)."""
    out = np.zeros((x.shape[1], x.shape[1]))
    for a in range(0, len(x), GRAM_BLOCK):
        xb = x[a:a + GRAM_BLOCK]
        out += xb.T @ (xb * w[a:a + GRAM_BLOCK, None])
    return out


def efron_residuals(start, stop, event, x, beta, strata=None, *,
                    risk_sets: _RiskSets | None = None,
                    overwrite_x: bool = False) -> CoxResiduals:
    """Score and Schoenfeld residuals of an Efron Cox model at coefficients ``beta``.

    Parameters
    ----------
    start, stop : (n,) risk interval (start, stop] of each row; start < stop.
    event : (n,) 1 if the event happens at ``stop``.
    x : (n, p) covariates (constant within a row's interval).
    beta : (p,) coefficients, normally a library's maximum partial likelihood estimate.
    strata : (n,) integer stratum codes, or None.
    risk_sets : the :class:`_RiskSets` of these rows if already built (saves the work).
    overwrite_x : the score residuals may overwrite ``x`` (a float array), so that no
        second n×p array is allocated.

    Returns
    -------
    CoxResiduals
    """
    x = np.asarray(x, dtype=float)
    rs = _RiskSets(start, stop, event, strata) if risk_sets is None else risk_sets
    t = _efron_terms(rs, x, np.asarray(beta, float))
    s1, sd1 = t["s1"], t["sd1"]
    d = rs.d[:, None]
    xbarbar = (s1 * t["a1"][:, None] - sd1 * t["a2"][:, None]) / d
    g = s1 * t["b1"][:, None] - sd1 * t["b2"][:, None]
    own = s1 * t["b2"][:, None] - sd1 * t["b3"][:, None]   # g - h at own event time
    a1_row = rs.over_risk_interval(t["a1"])
    ev, kr = rs.ev_rows, rs.k_of_row[rs.ev_rows]
    a1_row[ev] -= t["a2"][kr]
    # score = -r·(x·a1_row − g_row), g_row = Σ of g over each row's risk interval,
    # by row blocks (no n×p temporaries: 150 MB each at company scale)
    cg = np.concatenate([np.zeros((1, g.shape[1])), np.cumsum(g, 0)])
    r = t["r"]
    schoen = x[rs.ev_sorted] - xbarbar[rs.k_sorted]
    x_ev = x[ev]
    score = x if overwrite_x else np.empty_like(x)
    for a in range(0, len(score), GRAM_BLOCK):   # each block read before it is written
        b = slice(a, a + GRAM_BLOCK)
        block = np.multiply(x[b], a1_row[b, None])
        block -= cg[rs.hi[b]]
        block += cg[rs.lo[b]]
        block *= -r[b, None]
        score[b] = block
    score[ev] += x_ev - xbarbar[kr] - r[ev, None] * own[kr]
    return CoxResiduals(score=score, schoenfeld=schoen, event_times=rs.event_times,
                        loglik=t["loglik"])
