"""The organisation: teams, reps (with turnover), plans and plan assignments.

Produces the day-indexed weight of every team's plan and the rep × quarter skeleton
(employment, time-weighted mean weights) that every outcome model is built on.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from . import params as P


@dataclass
class Org:
    """Teams, reps and plans as arrays (day indices count from ``params.START``)."""

    team_u: np.ndarray          # (T,) team quality, favourable for every outcome
    team_region: np.ndarray     # (T,) index into REGIONS
    rep_team: np.ndarray        # (R,) team index
    rep_hire: np.ndarray        # (R,) day index (negative = before START)
    rep_exit: np.ndarray        # (R,) day index, NEVER if still employed
    assign_team: np.ndarray     # plan assignment rows: team, plan, from, to (NEVER = open)
    assign_plan: np.ndarray
    assign_from: np.ndarray
    assign_to: np.ndarray
    plan_weights: np.ndarray    # (n_plans, 6)
    team_day_plan: np.ndarray   # (T, N_DAYS) plan index in force
    team_quarter_w: np.ndarray  # (T, N_Q, 6) time-weighted mean weights
    effects: dict = field(default_factory=lambda: P.TRUE_EFFECTS)  # true effects in force

    @property
    def n_teams(self) -> int:
        """Number of teams."""
        return len(self.team_u)

    @property
    def n_reps(self) -> int:
        """Number of reps."""
        return len(self.rep_team)

    def beta(self, outcome: str) -> np.ndarray:
        """True coefficients of ``outcome`` in this company (TERMS order, shape (5,))."""
        return P.beta(outcome, self.effects)

    def team_day_x(self, term_slice: slice = slice(1, None)) -> np.ndarray:
        """Daily regressors ``x = w / 0.10`` of the non-reference weights, (T, N_DAYS, 5)."""
        return self.plan_weights[self.team_day_plan][..., term_slice] / 0.10


def n_teams_for(scale: float) -> int:
    """Number of teams at ``scale`` (24 at scale 1, at least 2)."""
    return max(2, int(round(P.BASE_TEAMS * scale)))


def make_reps(rng: np.random.Generator, n_teams: int) -> tuple[np.ndarray, ...]:
    """Draw reps: 6–8 per team hired before START, a few exits with replacements.

    Exit dates never fall on a quarter's first day and replacement hires never on a
    quarter's last day, so "employed in the quarter" does not depend on whether the
    exit day counts as employed.

    Returns
    -------
    tuple of numpy.ndarray
        ``(team, hire, exit)`` per rep, sorted by team then hire day.
    """
    size = rng.integers(6, 9, size=n_teams)
    team = np.repeat(np.arange(n_teams), size)
    n = len(team)
    hire = -rng.integers(30, 2500, size=n)
    leaves = rng.random(n) < P.EXIT_P
    exit_ = np.where(leaves, rng.integers(150, P.AS_OF_DAY - 60, size=n), P.NEVER)
    exit_ = np.where(np.isin(exit_, P.Q_START), exit_ + 1, exit_)
    gap = rng.integers(10, 60, size=n)
    new_hire = exit_ + gap
    new_hire = np.where(np.isin(new_hire, P.Q_END), new_hire + 1, new_hire)
    replaced = leaves & (new_hire <= P.AS_OF_DAY - 10)
    team = np.concatenate([team, team[replaced]])
    hire = np.concatenate([hire, new_hire[replaced]])
    exit_ = np.concatenate([exit_, np.full(int(replaced.sum()), P.NEVER)])
    order = np.lexsort((hire, team))
    return team[order], hire[order], exit_[order]


def make_assignments(rng: np.random.Generator, u: np.ndarray) -> tuple[np.ndarray, ...]:
    """Give each team 2–4 plans with staggered switches, good teams adopting earlier.

    Parameters
    ----------
    rng : numpy.random.Generator
    u : numpy.ndarray
        Team quality; higher ``u`` means earlier switches and a stronger preference
        for satisfaction-heavy plans.

    Returns
    -------
    tuple of numpy.ndarray
        ``(team, plan, valid_from, valid_to)`` rows; the first plan starts on day 0,
        the last has ``valid_to = NEVER``.
    """
    w = np.array([p[2] for p in P.PLANS])
    x_sat = w[:, 3] / 0.10
    rows: list[tuple[int, int, int, int]] = []
    for t, ut in enumerate(u):
        n_plans = int(rng.choice([2, 3, 4], p=[0.2, 0.4, 0.4]))
        raw = np.sort(rng.uniform(60, 1040, size=n_plans - 1)) - P.ADOPTION_LEAD * ut
        snap = rng.random(n_plans - 1) < 0.4
        days: list[int] = []
        for d, s in zip(raw, snap):
            d = int(np.clip(round(d), 45, 1060))
            if s:  # some switches on a quarter's first day, most mid-quarter
                d = int(P.Q_START[1:][np.argmin(np.abs(P.Q_START[1:] - d))])
            if days:
                d = max(d, days[-1] + 75)
            if d <= 1060:
                days.append(d)
        if not days:
            days = [int(np.clip(round(raw[0]), 45, 1060))]
        start_p = np.exp(P.ADOPTION_TILT * ut * x_sat[list(P.START_POOL)])
        cur = int(rng.choice(P.START_POOL, p=start_p / start_p.sum()))
        seq = [cur]
        for d in days:
            year = P.START.year + min(2, d // 365)
            pool = [p for p in P.SWITCH_POOL[year] if p != cur]
            pr = np.exp(P.ADOPTION_TILT * ut * x_sat[pool])
            cur = int(rng.choice(pool, p=pr / pr.sum()))
            seq.append(cur)
        froms = [0] + days
        tos = [d - 1 for d in days] + [P.NEVER]
        rows += [(t, p, f, e) for p, f, e in zip(seq, froms, tos)]
    arr = np.array(rows, dtype=np.int64)
    return arr[:, 0], arr[:, 1], arr[:, 2], arr[:, 3]


def make_org(rng: np.random.Generator, scale: float, *, null_effects: bool = False) -> Org:
    """Draw the whole organisation at ``scale``.

    Parameters
    ----------
    rng : numpy.random.Generator
    scale : float
        Multiplies the number of teams (24 at scale 1).
    null_effects : bool
        Every true plan effect zero (the draws are the same; only the truth differs).

    Returns
    -------
    Org
    """
    n_teams = n_teams_for(scale)
    u = np.clip(rng.standard_normal(n_teams), -P.U_CLIP, P.U_CLIP)
    region = rng.integers(0, len(P.REGIONS), size=n_teams)
    rep_team, hire, exit_ = make_reps(rng, n_teams)
    a_team, a_plan, a_from, a_to = make_assignments(rng, u)
    plan_w = np.array([p[2] for p in P.PLANS])
    day_plan = np.empty((n_teams, P.N_DAYS), dtype=np.int64)
    for t, p, f, e in zip(a_team, a_plan, a_from, a_to):
        day_plan[t, f:min(e, P.AS_OF_DAY) + 1] = p
    w_day = plan_w[day_plan]  # (T, D, 6)
    tq = np.stack([w_day[:, s:e + 1].mean(axis=1) for s, e in zip(P.Q_START, P.Q_END)], axis=1)
    return Org(u, region, rep_team, hire, exit_, a_team, a_plan, a_from, a_to, plan_w,
               day_plan, tq, P.true_effects(null_effects))


@dataclass
class Panel:
    """Employed rep × quarter cells (the unit of the rep-quarter models)."""

    rep: np.ndarray    # (N,) rep index
    q: np.ndarray      # (N,) quarter index
    team: np.ndarray   # (N,) team index
    lo: np.ndarray     # first employed day in the quarter
    hi: np.ndarray     # last employed day in the quarter
    x: np.ndarray      # (N, 5) time-weighted mean weight / 0.10
    hire: np.ndarray   # (N,) the rep's hire day

    @property
    def key(self) -> np.ndarray:
        """Cell key ``rep * N_Q + q``."""
        return self.rep * P.N_Q + self.q

    @property
    def deal_lo(self) -> np.ndarray:
        """First day a deal can close in the cell (a day after hire, never day 0)."""
        return np.maximum(np.maximum(self.lo, self.hire + 1), 1)


def make_panel(org: Org) -> Panel:
    """Rep × quarter cells in which the rep was employed on at least one day.

    Parameters
    ----------
    org : Org

    Returns
    -------
    Panel
    """
    r = np.repeat(np.arange(org.n_reps), P.N_Q)
    q = np.tile(np.arange(P.N_Q), org.n_reps)
    lo = np.maximum(P.Q_START[q], org.rep_hire[r])
    hi = np.minimum(P.Q_END[q], org.rep_exit[r])
    keep = lo <= hi
    r, q, lo, hi = r[keep], q[keep], lo[keep], hi[keep]
    team = org.rep_team[r]
    x = org.team_quarter_w[team, q, 1:] / 0.10
    return Panel(r, q, team, lo, hi, x, org.rep_hire[r])
