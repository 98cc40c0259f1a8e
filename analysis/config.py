"""Project paths and constants shared by every stage."""

from __future__ import annotations

from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parent.parent
SAMPLE_DIR = PROJECT_ROOT / "data" / "sample"
NOTEBOOKS_DIR = PROJECT_ROOT / "notebooks"
REPORTS_DIR = PROJECT_ROOT / "reports"
CACHE_DIR = PROJECT_ROOT / ".cache"

#: The six plan weights, in contract order. ``w_revenue`` is the reference.
WEIGHTS = ("w_revenue", "w_new_customers", "w_collection", "w_satisfaction",
           "w_complaints", "w_process")
REFERENCE_WEIGHT = "w_revenue"
#: Non-reference weights: the terms every model reports.
TERMS = tuple(w for w in WEIGHTS if w != REFERENCE_WEIGHT)
#: Columns of ``survival_episodes`` the churn models (Cox, Kaplan–Meier, log-rank) read.
CHURN_EPISODE_COLUMNS = ("customer_id", "team_id", "plan_id", "quarter", "start", "stop",
                         "event", *WEIGHTS)
#: An effect is per this much weight moved from the reference to the term.
EFFECT_PER = 0.10
#: Outcomes of findings.md, in report order.
OUTCOMES = ("churn", "renewal", "complaints", "csat", "nps", "bookings")
#: Cells with fewer responses or customers than this are never shown by rep or team.
SMALL_CELL = 5
#: Fewer clusters than this: cluster-robust errors are not trusted on their own.
MIN_CLUSTERS = 10
#: Weights of a plan must sum to 1 within this tolerance.
WEIGHT_SUM_TOL = 1e-6
#: Seed for everything random in the analyses (bootstraps); the generator takes its own.
SEED = 20251231
