"""Annual contract chains with exact two-route churn.

Every customer's first contract starts on its acquisition day; each contract runs
exactly 365 days (``end = start + 364``) and a renewal starts the next day, so every
renewal decision falls on the same tenures for everyone. Both churn routes share one
linear predictor ``eta(team, day) = d_q(day) + beta_c · x(team, day)``:

* early cancellation on days ``start+1 .. end-1`` from the hazard
  ``h_team · exp(eta)``, constant within a day and simulated exactly by inverting the
  cumulative hazard (so plan and quarter changes inside a contract are honoured);
* at ``end`` (if not cancelled) non-renewal with probability
  ``expit(c_team + eta(team, end))``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.special import expit, logit

from . import params as P
from .customers import Customers
from .org import Org

RENEWED, CHURNED, PENDING = 0, 1, 2
OUTCOME_NAMES = ("renewed", "churned", "pending")


@dataclass
class Contracts:
    """Contracts in generation order (all first contracts, then all second, …)."""

    customer: np.ndarray
    rep: np.ndarray
    start: np.ndarray
    end: np.ndarray
    value: np.ndarray    # annual value in cents (int)
    outcome: np.ndarray  # RENEWED / CHURNED / PENDING
    cancel: np.ndarray   # day index or NEVER

    @property
    def last_active(self) -> np.ndarray:
        """Last day the contract is active (before a cancellation, never after AS_OF)."""
        return np.minimum(np.minimum(self.end, self.cancel - 1), P.AS_OF_DAY)

    def __len__(self) -> int:
        return len(self.customer)


def churn_predictor(org: Org) -> np.ndarray:
    """``eta(team, day) = d_q + beta_c · x`` for every team and day, shape (T, N_DAYS)."""
    q_of_day = np.searchsorted(P.Q_START, np.arange(P.N_DAYS), side="right") - 1
    return P.QUARTER_EFFECTS["churn"][q_of_day][None, :] + org.team_day_x() @ org.beta("churn")


def team_churn_effects(rng: np.random.Generator, org: Org) -> tuple[np.ndarray, np.ndarray]:
    """Per-team log cancellation rate and non-renewal log odds (good teams churn less).

    Returns
    -------
    tuple of numpy.ndarray
        ``(log_h, c)``, each shape (T,).
    """
    n = org.n_teams
    log_h = np.log(P.CANCEL_RATE) + P.CANCEL_U * org.team_u + P.CANCEL_TEAM_SD * rng.standard_normal(n)
    c = logit(P.NONRENEW_P) + P.NONRENEW_U * org.team_u + P.NONRENEW_TEAM_SD * rng.standard_normal(n)
    return log_h, c


def _pick_owner(rng: np.random.Generator, org: Org, team: np.ndarray, day: np.ndarray) -> np.ndarray:
    """A uniformly chosen rep of ``team`` employed on ``day`` (hire <= day < exit)."""
    first = np.searchsorted(org.rep_team, np.arange(org.n_teams), side="left")
    count = np.bincount(org.rep_team, minlength=org.n_teams)
    out = np.full(len(team), -1, dtype=np.int64)
    todo = np.arange(len(team))
    for _ in range(200):
        if not len(todo):
            return out
        cand = first[team[todo]] + rng.integers(0, count[team[todo]])
        ok = (org.rep_hire[cand] <= day[todo]) & (day[todo] < org.rep_exit[cand])
        out[todo[ok]] = cand[ok]
        todo = todo[~ok]
    raise RuntimeError("no employed rep found for some contracts")  # pragma: no cover


def make_contracts(rng: np.random.Generator, org: Org, cust: Customers) -> Contracts:
    """Simulate every customer's contract chain up to AS_OF.

    Parameters
    ----------
    rng : numpy.random.Generator
    org : Org
    cust : Customers

    Returns
    -------
    Contracts
    """
    eta = churn_predictor(org)
    log_h, c_team = team_churn_effects(rng, org)
    rate = np.exp(log_h[:, None] + eta)
    cum = np.cumsum(rate, axis=1)
    offset = (np.arange(org.n_teams) * (cum[:, -1].max() + 50.0))[:, None]
    flat = (cum + offset).ravel()

    seg = cust.segment
    med = np.log(np.array(P.SEGMENT_VALUE))[seg]
    sd = np.array(P.SEGMENT_VALUE_SD)[seg]
    value = np.exp(med + sd * rng.standard_normal(len(cust)))

    idx = np.arange(len(cust))
    start = cust.acq.copy()
    owner = cust.rep.copy()
    out: list[tuple[np.ndarray, ...]] = []
    while len(idx):
        team = cust.team[idx]
        end = start + 364
        # route (a): first day d in start+1 .. with cum[d] - cum[start] >= Exp(1)
        target = flat[team * P.N_DAYS + start] + rng.exponential(size=len(idx))
        cday = np.searchsorted(flat, target, side="left") - team * P.N_DAYS
        cancelled = cday <= np.minimum(end - 1, P.AS_OF_DAY)
        cancel = np.where(cancelled, cday, P.NEVER)
        # route (b): non-renewal at end with the same eta on the end day
        decided = ~cancelled & (end <= P.AS_OF_DAY)
        p = expit(c_team[team] + eta[team, np.minimum(end, P.AS_OF_DAY)])
        lost = decided & (rng.random(len(idx)) < p)
        outcome = np.where(end > P.AS_OF_DAY, PENDING,
                           np.where(cancelled | lost, CHURNED, RENEWED))
        cents = np.round(value[idx] * 100).astype(np.int64)
        out.append((idx, owner, start, end, cents, outcome, cancel))
        go = (outcome == RENEWED) & (end + 1 <= P.AS_OF_DAY)
        idx, start, prev = idx[go], end[go] + 1, owner[go]
        value[idx] *= np.exp(0.03 + 0.05 * rng.standard_normal(len(idx)))
        stays = ((org.rep_exit[prev] > start) & (org.rep_hire[prev] <= start)
                 & (rng.random(len(idx)) >= P.REASSIGN_P))
        owner = prev.copy()
        move = ~stays
        owner[move] = _pick_owner(rng, org, cust.team[idx[move]], start[move])
    cols = [np.concatenate(c) for c in zip(*out)]
    return Contracts(*cols)
