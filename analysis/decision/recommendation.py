"""The weighting recommendation: the grid of plans and the range not shown worse than the best.

**Grid.** The satisfaction weight moves from ``w_revenue`` (other weights at the
company mean), over the weights observed in the data, step ``grid_step``.

**Range.** The recommended range is the hull of the grid weights w whose bootstrap
97.5th percentile of V_b(w) − V_b(ŵ) is ≥ 0, where ŵ maximises the point estimate:
the weights the bootstrap cannot show to be worse than the estimated best. Without
the data for it, the recommendation keeps ``range: null`` and says why in ``note``.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from analysis.config import WEIGHTS
from analysis.decision.tradeoff_inputs import ObjectiveInputs

TERM = "w_satisfaction"
OBJECTIVE = "expected 3-year customer value"


def objective_name(horizon: float) -> str:
    """The objective's name in findings (``OBJECTIVE`` for the default 3 years)."""
    return OBJECTIVE if horizon == 3 else f"expected {horizon:g}-year customer value"


def weight_grid(current: dict[str, float], ranges: pd.DataFrame, step: float = 0.01
                ) -> pd.DataFrame:
    """Plans moving satisfaction weight from revenue, others at ``current``.

    The satisfaction weight runs over its observed range, kept where the revenue
    weight stays ≥ 0. Returns the six weights per row (and ``weight`` = w_satisfaction);
    no rows when the observed range is empty.
    """
    r = ranges.set_index("weight")
    lo, hi = float(r.loc[TERM, "min"]), float(r.loc[TERM, "max"])
    hi = min(hi, current[TERM] + current["w_revenue"])
    if not (math.isfinite(lo) and math.isfinite(hi)) or hi < lo - 1e-9:
        ws = np.array([], dtype=float)
    else:
        n = int(math.floor((hi - lo) / step + 1e-9))
        ws = np.round(lo + step * np.arange(n + 1), 10)
        if hi - ws[-1] > 1e-9:
            ws = np.append(ws, hi)
    grid = pd.DataFrame({w: np.full(len(ws), current[w]) for w in WEIGHTS})
    grid[TERM] = ws
    grid["w_revenue"] = current["w_revenue"] + current[TERM] - ws
    grid.insert(0, "weight", ws)
    return grid


def recommend_range(weights: np.ndarray, point: np.ndarray, boot: np.ndarray,
                    level: float = 0.95) -> tuple[float, float, int]:
    """The recommended range: grid weights not shown worse than the estimated best.

    Parameters
    ----------
    weights : grid weights.
    point : objective at each weight (point estimate).
    boot : objective per bootstrap draw (draws × weights).
    level : two-sided level; a weight stays while the upper (1+level)/2 percentile
        of V_b(w) − V_b(ŵ) is ≥ 0.

    Returns
    -------
    (low, high, index of ŵ)
    """
    best = int(np.argmax(point))
    diff = boot - boot[:, [best]]
    upper = np.quantile(diff, 0.5 + level / 2, axis=0)
    keep = np.flatnonzero(upper >= 0)
    keep = np.union1d(keep, [best])
    return float(weights[keep.min()]), float(weights[keep.max()]), best


def recommendation(low: float, high: float, note: str, horizon: float) -> dict:
    """Findings' ``recommendation``: ``term``, ``range`` [low, high], ``objective``, ``note``."""
    return {"term": TERM, "range": [round(low, 4), round(high, 4)],
            "objective": objective_name(horizon), "note": note}


def no_recommendation(reason: str, horizon: float) -> dict:
    """Findings' ``recommendation`` when the data cannot support one: ``range`` null."""
    return {"term": TERM, "range": None, "objective": objective_name(horizon),
            "note": f"No recommendation: {reason}."}


def recommendation_note(inputs: ObjectiveInputs, forms: str, best: float, n_draws: int,
                        step: float, seed: int,
                        method: str = "the team cluster bootstrap") -> str:
    """How the objective and the range were computed, with this quarter's inputs.

    ``method`` names where the draws come from (the many-teams route of
    :func:`~analysis.decision.tradeoff.tradeoff_analysis` passes its own).
    """
    return (f"Objective per rep over {inputs.horizon:g} years: bookings "
            f"(4·H·{inputs.bookings:,.0f} per rep-quarter, scaled by the bookings model) plus "
            f"retained contract value ({inputs.customers:.1f} customers × "
            f"{inputs.annual_value:,.0f} a year, churn hazard {inputs.churn_hazard:.3f}/year "
            f"scaled by the churn model); satisfaction weight moved from revenue, other "
            f"weights at the company mean, grid step {step:g} over the observed weights. "
            f"Range: weights whose objective is not worse than at the estimated best "
            f"({best:.2f}) by {method} ({n_draws} draws, seed {seed}; "
            f"97.5th percentile of the difference >= 0). Models: {forms} "
            f"(curved only if the cluster-robust Wald test of curvature has p < 0.05).")
