"""Trade-off: outcomes and expected customer value across satisfaction weights.

:func:`tradeoff_analysis` puts the pieces together for one quarter:

* the objective and its measured inputs (:mod:`.tradeoff_inputs`);
* dose–response models of every outcome, linear or curved by a Wald test
  (:mod:`.tradeoff_models`);
* a team cluster bootstrap of the bookings and churn models (:mod:`.tradeoff_bootstrap`);
  above ``JACKKNIFE_MAX_CLUSTERS`` teams, draws from their CRV1 covariance instead
  (no refits; the recommendation's note names the method);
* the weight grid and the recommended range (:mod:`.recommendation`).

**Degraded data.** With fewer than ``min_clusters`` teams (default
``analysis.config.MIN_CLUSTERS``), no plan in force, no variation of the
satisfaction weight, an objective input without data, a bookings or churn model the
data cannot identify, or fewer than half the bootstrap draws succeeding, the result
is not estimable: ``reason`` says why, the frontier has no rows, the recommendation
has ``range: null`` and a note, and no projection is computed.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from analysis.config import EFFECT_PER, MIN_CLUSTERS, SEED, TERMS
from analysis.decision.blas import single_threaded_blas
from analysis.decision.recommendation import (OBJECTIVE, TERM, no_recommendation,  # noqa: F401
                                              recommend_range, recommendation,
                                              recommendation_note, weight_grid)
from analysis.decision.tradeoff_bootstrap import boot_values, bootstrap_params, simulate_params
from analysis.decision.tradeoff_inputs import (ObjectiveInputs, customer_value,  # noqa: F401
                                               objective_inputs)
from analysis.decision.tradeoff_models import (Criterion, DoseFit, delta,  # noqa: F401
                                               fit_dose_response, model_data, not_estimable,
                                               selection_table)
from analysis.decision.whatif import current_weights, observed_ranges, plans_in_force
from analysis.errors import ParameterError
from analysis.models.jackknife import JACKKNIFE_MAX_CLUSTERS

log = logging.getLogger(__name__)

FRONTIER_COLUMNS = ("weight", "objective", "conf_low", "conf_high", "bookings", "bookings_low",
                    "bookings_high", "retention", "retention_low", "retention_high", "churn",
                    "renewal", "complaints", "csat", "nps")
#: The models the objective needs (bootstrapped).
OBJECTIVE_OUTCOMES = ("bookings", "churn")


def _x(plans: pd.DataFrame) -> pd.DataFrame:
    return plans[list(TERMS)].astype(float) / EFFECT_PER


@dataclass
class Tradeoff:
    """The trade-off analysis of one quarter.

    Attributes
    ----------
    frontier : one row per grid weight: ``FRONTIER_COLUMNS`` (complaints per 100
        customer-quarters, CSAT and NPS as levels); no rows when not estimable.
    recommendation : findings' ``recommendation`` dict (``range`` null when not estimable).
    selection : :func:`~analysis.decision.tradeoff_models.selection_table`.
    inputs : :class:`ObjectiveInputs`.
    current : company-average current weights (empty without a plan in force).
    current_plans : each team's plan in force on the quarter's last day, with its
        predicted bookings, retention and objective.
    fits, draws : the dose–response fits and coefficient draws (bootstrap, or from the
        CRV1 covariance above ``JACKKNIFE_MAX_CLUSTERS`` teams).
    ranges : observed weight ranges.
    reason : why the analysis is not estimable ("" when it is).
    """

    frontier: pd.DataFrame
    recommendation: dict
    selection: pd.DataFrame
    inputs: ObjectiveInputs
    current: dict[str, float]
    current_plans: pd.DataFrame
    fits: dict[str, DoseFit] = field(default_factory=dict)
    draws: dict[str, pd.DataFrame] = field(default_factory=dict)
    ranges: pd.DataFrame | None = None
    reason: str = ""

    @property
    def estimable(self) -> bool:
        """Whether the data support a frontier and a recommendation."""
        return not self.reason

    def evaluate(self, plans: pd.DataFrame) -> pd.DataFrame:
        """Objective of arbitrary plans (six weight columns): point and bootstrap draws.

        Returns columns ``objective``, ``bookings``, ``retention`` and ``draws`` (an
        array of the objective in each bootstrap draw, per row); NaN and empty draws
        when the analysis is not estimable.
        """
        if not self.estimable:
            nan = np.full(len(plans), np.nan)
            return pd.DataFrame({"objective": nan, "bookings": nan, "retention": nan,
                                 "draws": [np.array([])] * len(plans)}, index=plans.index)
        x0 = {t: self.current[t] / EFFECT_PER for t in TERMS}
        x = _x(plans)
        point = customer_value(self.fits["bookings"].delta(x, x0),
                               self.fits["churn"].delta(x, x0), self.inputs)
        boot = boot_values(self.draws, x, x0, self.inputs)["objective"]
        return pd.DataFrame({"objective": point["objective"], "bookings": point["bookings"],
                             "retention": point["retention"], "draws": list(boot.T)},
                            index=plans.index)

    def summary_markdown(self) -> str:
        """The inputs and the current satisfaction weight, in one Markdown paragraph."""
        i = self.inputs
        text = (f"Inputs over the last four quarters: bookings {i.bookings:,.0f} per "
                f"rep-quarter; {i.customers:.1f} customers per rep at {i.annual_value:,.0f} a "
                f"year; churn hazard {i.churn_hazard:.3f} a year.")
        if self.current:
            text += (" Company-average satisfaction weight now: "
                     f"{100 * self.current[TERM]:.0f}%.")
        if not self.estimable:
            text += f" **Insufficient data for the trade-off analysis:** {self.reason}."
        return text.replace("nan", "n/a")

    def recommendation_markdown(self) -> str:
        """The recommendation (or why there is none) in one Markdown paragraph."""
        rec = self.recommendation
        if not rec.get("range"):
            return f"**No recommended satisfaction weight.** {rec['note']}"
        lo, hi = rec["range"]
        return (f"**Recommended satisfaction weight: {100 * lo:.0f}–{100 * hi:.0f}%.** "
                f"{rec['note']}")


def _levels(fits, x, x0, inputs: ObjectiveInputs) -> pd.DataFrame:
    """Renewal probability, complaints per 100 customer-quarters, CSAT and NPS along the grid."""
    r = inputs.renewal_rate
    logit = math.log(r / (1 - r)) if 0 < r < 1 else math.nan
    return pd.DataFrame({
        "renewal": 1 / (1 + np.exp(-(logit + fits["renewal"].delta(x, x0)))),
        "complaints": 100 * inputs.complaint_rate * np.exp(fits["complaints"].delta(x, x0)),
        "csat": inputs.csat + fits["csat"].delta(x, x0),
        "nps": inputs.nps + fits["nps"].delta(x, x0)}, index=x.index)


def _frontier(grid: pd.DataFrame, point: dict, boot: dict, levels: pd.DataFrame
              ) -> pd.DataFrame:
    """Point estimates and 95% bootstrap intervals along the grid."""
    frontier = pd.DataFrame({"weight": grid["weight"], "objective": point["objective"]})
    frontier["conf_low"] = np.quantile(boot["objective"], 0.025, axis=0)
    frontier["conf_high"] = np.quantile(boot["objective"], 0.975, axis=0)
    for col in ("bookings", "retention"):
        frontier[col] = point[col]
        frontier[f"{col}_low"] = np.quantile(boot[col], 0.025, axis=0)
        frontier[f"{col}_high"] = np.quantile(boot[col], 0.975, axis=0)
    frontier["churn"] = point["churn"]
    return frontier.join(levels)[list(FRONTIER_COLUMNS)]


def _data_problem(prepared, current: dict, inputs: ObjectiveInputs, grid: pd.DataFrame | None,
                  min_clusters: int) -> str:
    """Why the data cannot support the analysis before any model is fitted ("" if they can)."""
    if not current:
        return f"no team has a plan in force on {prepared.quarter_end}"
    panel = prepared.derived["rep_quarter_panel"]
    g = int(panel.loc[panel["w_satisfaction"].notna(), "team_id"].nunique())
    if g < max(min_clusters, 2):
        return (f"{g} teams with a plan (< {max(min_clusters, 2)}); the team cluster "
                "bootstrap needs more teams")
    missing = inputs.missing()
    if missing:
        return "no data for the objective's input(s) " + ", ".join(missing)
    if grid is None or len(grid) < 2:
        return "the satisfaction weight does not vary across the plans observed"
    return ""


def _model_problem(fits: dict[str, DoseFit], draws: dict[str, pd.DataFrame] | None,
                   reps: int) -> str:
    """Why the bookings/churn models cannot support the analysis ("" if they can)."""
    bad = [f"{o}: {fits[o].note}" for o in OBJECTIVE_OUTCOMES if not fits[o].estimable]
    if bad:
        return "; ".join(bad)
    if draws is not None:
        n = min(len(draws[o]) for o in OBJECTIVE_OUTCOMES)
        if n < max(reps / 2, 1):
            return f"only {n} of {reps} cluster bootstrap draws could be fitted"
    return ""


def _not_estimable(reason: str, prepared, inputs, current, ranges, fits, horizon: float,
                   alpha: float) -> Tradeoff:
    log.warning("trade-off not estimable: %s", reason)
    fits = fits or {o: not_estimable(o, f"not estimable: {reason}") for o in
                    ("churn", "renewal", "complaints", "csat", "nps", "bookings")}
    plans = plans_in_force(prepared.tables, prepared.quarter_end)
    plans = plans.assign(bookings=np.nan, retention=np.nan, objective=np.nan)
    return Tradeoff(pd.DataFrame(columns=list(FRONTIER_COLUMNS), dtype=float),
                    no_recommendation(reason, horizon), selection_table(fits, alpha), inputs,
                    current, plans, fits, {}, ranges, reason)


@single_threaded_blas()
def tradeoff_analysis(prepared, *, horizon: float = 3.0, grid_step: float = 0.01, reps: int = 99,
                      seed: int = SEED, criterion: Criterion = "wald", alpha: float = 0.05,
                      min_clusters: int = MIN_CLUSTERS,
                      bootstrap_max_clusters: int = JACKKNIFE_MAX_CLUSTERS) -> Tradeoff:
    """Frontier, recommendation and model selection for one prepared quarter.

    Parameters
    ----------
    prepared : ``analysis.prepare.prepare(...)`` result.
    horizon : objective horizon in years (default 3).
    grid_step : step of the satisfaction-weight grid.
    reps, seed : draws (bootstrap or simulated) and seed (default ``analysis.config.SEED``).
    criterion, alpha : model selection (:func:`fit_dose_response`).
    min_clusters : with fewer teams the analysis is not estimable.
    bootstrap_max_clusters : with more teams the draws come from the models' CRV1
        covariance (:func:`~.tradeoff_bootstrap.simulate_params`), not the team bootstrap.

    Returns
    -------
    Tradeoff (``reason`` non-empty when the data cannot support it; never raises on data)
    """
    t0 = time.perf_counter()
    day = prepared.quarter_end
    try:
        current = current_weights(prepared.tables, day)
    except ParameterError:
        current = {}
    ranges = observed_ranges(prepared.tables, day)
    inputs = objective_inputs(prepared, horizon=horizon)
    grid = weight_grid(current, ranges, grid_step) if current else None
    why = _data_problem(prepared, current, inputs, grid, min_clusters)
    if why:
        return _not_estimable(why, prepared, inputs, current, ranges, None, horizon, alpha)
    x0 = {t: current[t] / EFFECT_PER for t in TERMS}
    data = model_data(prepared, x0[TERM])
    fits = fit_dose_response(data, criterion=criterion, alpha=alpha)
    why = _model_problem(fits, None, reps)
    g = len(set().union(*(data[o]["team_id"] for o in OBJECTIVE_OUTCOMES)))
    many = g > bootstrap_max_clusters
    method = (f"normal draws from the models' CRV1-by-team covariance (G={g} > "
              f"{bootstrap_max_clusters}: no team bootstrap)" if many
              else "the team cluster bootstrap")
    draws = None
    if not why:
        draws = (simulate_params(fits, reps=reps, seed=seed) if many
                 else bootstrap_params(data, fits, reps=reps, seed=seed))
    why = why or _model_problem(fits, draws, reps)
    x = _x(grid)
    point = customer_value(fits["bookings"].delta(x, x0), fits["churn"].delta(x, x0), inputs)
    if not why and not np.isfinite(point["objective"]).all():
        why = "the projected objective is not finite on the grid"
    if why:
        return _not_estimable(why, prepared, inputs, current, ranges, fits, horizon, alpha)
    boot = boot_values(draws, x, x0, inputs)
    lo, hi, best = recommend_range(grid["weight"].to_numpy(), point["objective"],
                                   boot["objective"])
    frontier = _frontier(grid, point, boot, _levels(fits, x, x0, inputs))
    forms = ", ".join(f"{o} {f.form}" for o, f in fits.items() if o in OBJECTIVE_OUTCOMES)
    note = recommendation_note(inputs, forms, grid["weight"].iloc[best], len(boot["objective"]),
                               grid_step, seed, method)
    plans = plans_in_force(prepared.tables, day)
    result = Tradeoff(frontier, recommendation(lo, hi, note, horizon),
                      selection_table(fits, alpha), inputs, current, plans, fits, draws, ranges)
    ev = result.evaluate(plans)
    result.current_plans = plans.assign(bookings=ev["bookings"], retention=ev["retention"],
                                        objective=ev["objective"])
    log.info("trade-off: range %.2f-%.2f (best %.2f), %d draws, %.1fs", lo, hi,
             grid["weight"].iloc[best], len(boot["objective"]), time.perf_counter() - t0)
    return result


def true_frontier(effects: list[dict], result: Tradeoff) -> pd.DataFrame:
    """The objective on ``result``'s grid with given (e.g. true) linear effects.

    Parameters
    ----------
    effects : rows with ``outcome``, ``term``, ``estimate`` (per 0.10), e.g. the
        sample's ``ground_truth.json`` effects.
    result : supplies the inputs, current weights and grid.

    Returns
    -------
    DataFrame ``weight, objective, bookings, retention`` (no rows when ``result`` is
    not estimable).
    """
    if not result.estimable:
        return pd.DataFrame(columns=["weight", "objective", "bookings", "retention"], dtype=float)
    x0 = {t: result.current[t] / EFFECT_PER for t in TERMS}
    grid = weight_grid(result.current, result.ranges, float(np.diff(result.frontier["weight"])
                                                            .min()))
    x = _x(grid)
    beta = {o: pd.Series({e["term"]: float(e["estimate"]) for e in effects
                          if e["outcome"] == o}) for o in ("bookings", "churn")}
    value = customer_value(delta(beta["bookings"], x, x0), delta(beta["churn"], x, x0),
                           result.inputs)
    return pd.DataFrame({"weight": grid["weight"], "objective": value["objective"],
                         "bookings": value["bookings"], "retention": value["retention"]})


# ---------------------------------------------------------------- plot
def plot_frontier(frontier: pd.DataFrame, *, current: pd.DataFrame | None = None,
                  recommended=None, ax=None):
    """Bookings against retention along the satisfaction-weight grid.

    Parameters
    ----------
    frontier : :attr:`Tradeoff.frontier` (``weight, bookings, retention``).
    current : plans to mark (``bookings``, ``retention``, optional ``name``), e.g.
        :attr:`Tradeoff.current_plans`.
    recommended : (low, high) weights: that stretch of the frontier is highlighted.
        An empty frontier draws an "insufficient data" note instead.
    ax : matplotlib Axes to draw on (a new figure if None).

    Returns
    -------
    matplotlib.axes.Axes
    """
    import matplotlib.pyplot as plt

    from analysis.plots import OKABE_ITO

    if ax is None:
        _, ax = plt.subplots(figsize=(7.5, 4.2), layout="constrained")
    if frontier.empty:
        ax.text(0.5, 0.5, "insufficient data: no trade-off frontier", ha="center",
                va="center", transform=ax.transAxes)
        ax.set_axis_off()
        return ax
    f = frontier.sort_values("weight")
    ax.plot(100 * f["retention"], f["bookings"], color=OKABE_ITO[0], linewidth=2,
            label="satisfaction weight grid")
    for i in (0, len(f) - 1):
        ax.annotate(f"{100 * f['weight'].iloc[i]:.0f}%", (100 * f["retention"].iloc[i],
                    f["bookings"].iloc[i]), textcoords="offset points", xytext=(4, 4),
                    fontsize=8)
    if recommended is not None:
        r = f[(f["weight"] >= recommended[0] - 1e-9) & (f["weight"] <= recommended[1] + 1e-9)]
        ax.plot(100 * r["retention"], r["bookings"], color=OKABE_ITO[2], linewidth=6,
                alpha=0.5, label=f"recommended {100 * recommended[0]:.0f}–"
                                 f"{100 * recommended[1]:.0f}%")
    if current is not None and len(current):
        cur = current.drop_duplicates("plan_id") if "plan_id" in current else current
        ax.scatter(100 * cur["retention"], cur["bookings"], color=OKABE_ITO[1], zorder=3,
                   label="current plans")
        for row in cur.itertuples(index=False):
            ax.annotate(str(getattr(row, "name", "")), (100 * row.retention, row.bookings),
                        textcoords="offset points", xytext=(4, -10), fontsize=7)
    ax.set_xlabel("customers retained after the horizon (%)")
    ax.set_ylabel("bookings per rep-quarter")
    ax.grid(True, alpha=0.3)
    ax.legend(loc="best", fontsize=8)
    return ax
