"""Fixed parameters of the sample company: calendar, plans, true effects, noise.

Everything the generator treats as "nature" lives here, so that the ground truth it
writes and the process that produced the data cannot drift apart. Effects are per
0.10 of plan weight moved from ``w_revenue`` to the term (``x_k = w_k / 0.10``).
"""

from __future__ import annotations

from datetime import date

import numpy as np

from ..config import EFFECT_PER, OUTCOMES, TERMS
from ..quarters import quarter_end, quarter_range, quarter_start

#: First day of the company's history (day 0 of the generator's day index).
START = date(2023, 1, 1)
#: Extraction day written to ``run.json``; no event date lies after it.
AS_OF = date(2025, 12, 31)
QUARTERS: tuple[str, ...] = tuple(quarter_range("2023Q1", "2025Q4"))
#: Day index (days since START) of every quarter's first and last day.
Q_START = np.array([(quarter_start(q) - START).days for q in QUARTERS], dtype=np.int64)
Q_END = np.array([(quarter_end(q) - START).days for q in QUARTERS], dtype=np.int64)
Q_LEN = Q_END - Q_START + 1
N_DAYS = int((AS_OF - START).days) + 1  # days 0 .. AS_OF inclusive
AS_OF_DAY = N_DAYS - 1
N_Q = len(QUARTERS)
#: Stand-in day index for "no date" (exit_date / cancel_date null).
NEVER = 10**7

#: Teams at scale 1; the scale multiplies the number of teams.
BASE_TEAMS = 24
REGIONS = ("North", "East", "South", "West", "Central")
SEGMENTS = ("SMB", "Mid-market", "Enterprise")
SEGMENT_P = (0.60, 0.30, 0.10)
#: Median annual contract value by segment, and the lognormal spread.
SEGMENT_VALUE = (9_000.0, 32_000.0, 110_000.0)
SEGMENT_VALUE_SD = (0.40, 0.40, 0.50)
#: Relative size of a deal by segment (splitting a rep's bookings across deals).
SEGMENT_DEAL_SIZE = (1.0, 3.0, 8.0)

# Plan catalogue: id, name, (w_revenue, w_new, w_collection, w_sat, w_complaints,
# w_process), satisfaction scope. Weights are multiples of 0.05 and sum to 1.
PLANS: tuple[tuple[str, str, tuple[float, ...], str], ...] = (
    ("P01", "2023 Revenue classic", (0.70, 0.10, 0.10, 0.00, 0.00, 0.10), "individual"),
    ("P02", "2023 Hunter", (0.40, 0.40, 0.05, 0.05, 0.00, 0.10), "individual"),
    ("P03", "2023 Collector", (0.45, 0.10, 0.35, 0.05, 0.00, 0.05), "individual"),
    ("P04", "2024 Balanced", (0.40, 0.15, 0.10, 0.15, 0.10, 0.10), "team"),
    ("P05", "2024 Process focus", (0.35, 0.10, 0.05, 0.10, 0.05, 0.35), "individual"),
    ("P06", "2024 Quality", (0.30, 0.05, 0.10, 0.15, 0.35, 0.05), "team"),
    ("P07", "2025 Customer first", (0.25, 0.05, 0.10, 0.40, 0.10, 0.10), "team"),
    ("P08", "2025 Satisfaction plus", (0.20, 0.15, 0.05, 0.45, 0.05, 0.10), "individual"),
    ("P09", "2025 Growth balanced", (0.30, 0.30, 0.15, 0.10, 0.10, 0.05), "team"),
)
#: Plans a team may start with, and the pools it may switch to by calendar year.
START_POOL = (0, 1, 2)
SWITCH_POOL = {2023: (1, 2, 3, 4, 5, 8), 2024: (2, 3, 4, 5, 6, 8), 2025: (4, 5, 6, 7, 8)}
#: How strongly a good team (u_team > 0) prefers satisfaction-heavy plans.
ADOPTION_TILT = 0.6
#: Days by which a team with u_team = 1 switches earlier than an average team.
ADOPTION_LEAD = 70

#: True effects per 0.10 of weight, by outcome and term (the data-generating values).
#: Renewal is not free: it is the log odds of *renewal*, i.e. minus the churn
#: coefficient (both churn routes share one linear predictor).
_CHURN = {"w_new_customers": 0.12, "w_collection": 0.0, "w_satisfaction": -0.15,
          "w_complaints": -0.10, "w_process": -0.04}
TRUE_EFFECTS: dict[str, dict[str, float]] = {
    "churn": dict(_CHURN),
    "renewal": {k: (-v if v else 0.0) for k, v in _CHURN.items()},
    "complaints": {"w_new_customers": 0.10, "w_collection": 0.05, "w_satisfaction": -0.10,
                   "w_complaints": -0.15, "w_process": 0.0},
    "csat": {"w_new_customers": -0.05, "w_collection": 0.0, "w_satisfaction": 0.08,
             "w_complaints": 0.04, "w_process": 0.02},
    "nps": {"w_new_customers": -2.5, "w_collection": 0.0, "w_satisfaction": 4.0,
            "w_complaints": 2.0, "w_process": 1.0},
    "bookings": {"w_new_customers": 0.05, "w_collection": 0.0, "w_satisfaction": -0.04,
                 "w_complaints": -0.03, "w_process": -0.02},
}
EFFECT_SCALES = {"churn": "log_hazard_ratio", "renewal": "log_odds_ratio",
                 "complaints": "log_rate_ratio", "csat": "csat_points",
                 "nps": "nps_points", "bookings": "log_bookings"}
assert tuple(TRUE_EFFECTS) == OUTCOMES and all(tuple(v) == TERMS for v in TRUE_EFFECTS.values())


#: The same table with every effect zero (``generate(..., null_effects=True)``): a company
#: in which plans change nothing the models estimate, to check false-positive rates.
NULL_EFFECTS: dict[str, dict[str, float]] = {o: {t: 0.0 for t in TERMS} for o in OUTCOMES}


def true_effects(null_effects: bool = False) -> dict[str, dict[str, float]]:
    """The true effects the generator uses: ``TRUE_EFFECTS``, or all zero."""
    return NULL_EFFECTS if null_effects else TRUE_EFFECTS


def beta(outcome: str, effects: dict[str, dict[str, float]] | None = None) -> np.ndarray:
    """True coefficients of ``outcome`` on ``x = w / 0.10`` in TERMS order.

    Parameters
    ----------
    outcome : str
        One of ``config.OUTCOMES``.
    effects : dict, optional
        Effects table to read (default ``TRUE_EFFECTS``).

    Returns
    -------
    numpy.ndarray
        Shape ``(5,)``.
    """
    table = TRUE_EFFECTS if effects is None else effects
    return np.array([table[outcome][t] for t in TERMS], dtype=float)


_QI = np.arange(N_Q, dtype=float)
_SEASON = np.tile([0.0, 0.3, -0.2, 0.6], N_Q // 4)
#: Quarter effects d_q (a common trend plus a little seasonality) by outcome.
#: Churn's d_q is shared by the cancellation hazard and the non-renewal odds.
QUARTER_EFFECTS: dict[str, np.ndarray] = {
    "bookings": 0.025 * _QI + 0.05 * _SEASON,
    "churn": -0.045 * _QI + 0.05 * _SEASON,
    "complaints": -0.035 * _QI + 0.04 * _SEASON,
    "csat": 0.02 * _QI - 0.01 * _SEASON,
    "nps": 0.8 * _QI - 0.5 * _SEASON,
}

# Baselines and the favourable effect of team quality u_team (clipped N(0,1)).
U_CLIP = 2.5
BOOKINGS_BASE, BOOKINGS_U, BOOKINGS_REP_SD, BOOKINGS_EPS_SD = 11.0, 0.20, 0.25, 0.25
CANCEL_RATE = 0.08 / 365.0  # per day, early cancellation hazard at eta = 0
CANCEL_U, CANCEL_TEAM_SD = -0.30, 0.10
NONRENEW_P = 0.12  # probability of non-renewal at eta = 0 for an average team
NONRENEW_U, NONRENEW_TEAM_SD = -0.35, 0.10
COMPLAINT_RATE, COMPLAINT_U, COMPLAINT_REP_SD = 0.15, -0.30, 0.20  # per customer-quarter
CSAT_BASE, CSAT_U, CSAT_REP_SD = 3.55, 0.12, 0.08
CSAT_BOUNDS = (1.5, 4.8)
NPS_BASE, NPS_U, NPS_REP_SD = 25.0, 6.0, 4.0
#: Base distributions that are exponentially tilted to hit the target means.
CSAT_P0 = np.array([0.05, 0.08, 0.17, 0.40, 0.30])
NPS_P0 = np.array([0.02, 0.01, 0.02, 0.03, 0.04, 0.06, 0.07, 0.15, 0.20, 0.20, 0.20])
#: Gaussian-copula correlation between a respondent's CSAT and NPS draws.
CSAT_NPS_RHO = 0.6
RESPONSE_RANGE = (0.35, 0.55)  # per-rep response probability, uniform
SURVEYS_PER_CUSTOMER_QUARTER = 0.8
NEW_CUSTOMERS_EXTRA = 1.4  # new customers per rep-quarter = 1 + Poisson(this, tilted)

#: Per-contract probability that the account moves to another rep at renewal.
REASSIGN_P = 0.08
#: Per-rep probability of leaving during the history (replaced in the same team).
EXIT_P = 0.12

COMPLAINT_CATEGORIES = ("over-promising", "after-sales", "billing", "delivery")
COMPLAINT_CATEGORY_P = (0.25, 0.35, 0.25, 0.15)
COMPLAINT_SEVERITY_P = (0.55, 0.33, 0.12)
COMPLAINT_NULL_REP_P = 0.15

LOST_PER_REP_QUARTER = 7.0
LOST_EXPANSION_PER_REP_QUARTER = 0.3
EXPANSION_PER_REP_QUARTER = 0.9
OPEN_PER_ACTIVE_REP = 6.0
ACTIVITIES_PER_REP_QUARTER = 6.0
ACTIVITY_TYPES = ("visit", "call", "email", "demo", "other")
ACTIVITY_TYPE_P = (0.20, 0.35, 0.30, 0.10, 0.05)

assert abs(EFFECT_PER - 0.10) < 1e-12
