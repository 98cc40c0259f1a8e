"""One tidy result shape for every model: effect rows and one-row fit summaries.

Columns follow broom (snake_case) plus what findings.json needs; see
docs/architecture.md ("Tidy effect rows").
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

from analysis.config import EFFECT_PER

EFFECT_COLUMNS = ("outcome", "term", "model", "scale", "per", "estimate", "std_error",
                  "statistic", "p_value", "conf_low", "conf_high", "n_obs", "n_clusters",
                  "estimable", "note")
SUMMARY_COLUMNS = ("outcome", "model", "n_obs", "n_clusters", "n_events", "dof", "loglik",
                   "aic", "converged", "seconds", "note")
#: Two-sided level of every interval.
CONF_LEVEL = 0.95


@dataclass
class ModelFit:
    """What one model family returns.

    Attributes
    ----------
    effects : tidy effect rows (``EFFECT_COLUMNS``).
    summary : one-row fit summary (``SUMMARY_COLUMNS`` plus model-specific columns).
    extras : anything a notebook may want (tables, curves, library result objects).
    """

    effects: pd.DataFrame
    summary: pd.DataFrame
    extras: dict[str, Any] = field(default_factory=dict)


@dataclass
class ModelResults:
    """All models of findings.md: ``effects`` and ``summaries`` stacked, extras by model."""

    effects: pd.DataFrame
    summaries: pd.DataFrame
    extras: dict[str, dict[str, Any]] = field(default_factory=dict)


def effect_row(outcome: str, term: str, model: str, scale: str, *, estimate: float,
               std_error: float, df: float | None, n_obs: int, n_clusters: int,
               note: str = "") -> dict[str, Any]:
    """An estimable row: statistic, p-value and 95% interval from t(df), or normal if df is None."""
    statistic = estimate / std_error if std_error > 0 else math.nan
    dist = stats.norm if df is None else stats.t(df)
    crit = float(dist.ppf(0.5 + CONF_LEVEL / 2))
    p_value = float(2 * dist.sf(abs(statistic))) if np.isfinite(statistic) else math.nan
    return {"outcome": outcome, "term": term, "model": model, "scale": scale,
            "per": EFFECT_PER, "estimate": float(estimate), "std_error": float(std_error),
            "statistic": float(statistic), "p_value": p_value,
            "conf_low": float(estimate - crit * std_error),
            "conf_high": float(estimate + crit * std_error),
            "n_obs": int(n_obs), "n_clusters": int(n_clusters), "estimable": True,
            "note": note}


def missing_row(outcome: str, term: str, model: str, scale: str, *, n_obs: int,
                n_clusters: int, note: str) -> dict[str, Any]:
    """A non-estimable row: null numbers and the reason in ``note``."""
    row = {c: None for c in EFFECT_COLUMNS}
    row.update(outcome=outcome, term=term, model=model, scale=scale, per=EFFECT_PER,
               n_obs=int(n_obs), n_clusters=int(n_clusters), estimable=False, note=note)
    return row


#: Numbers an estimable row must have, all finite.
NUMBERS = ("estimate", "std_error", "p_value", "conf_low", "conf_high")


def finite_or_missing(row: dict[str, Any]) -> dict[str, Any]:
    """An estimable row with a non-finite number becomes non-estimable (never ±inf/NaN out)."""
    if not row.get("estimable"):
        return row
    bad = [c for c in NUMBERS
           if row.get(c) is None or not math.isfinite(float(row[c]))]
    if not bad:
        return row
    note = f"not estimable: non-finite {', '.join(bad)}"
    if row.get("note"):
        note += f" ({row['note']})"
    return missing_row(row["outcome"], row["term"], row["model"], row["scale"],
                       n_obs=row["n_obs"], n_clusters=row["n_clusters"], note=note)


def effects_frame(rows: list[dict[str, Any]]) -> pd.DataFrame:
    """Rows as a DataFrame with the canonical columns and dtypes (floats NaN when null).

    Every estimable row must carry finite numbers; one that does not is turned into
    a non-estimable row naming the non-finite columns (:func:`finite_or_missing`).
    """
    rows = [finite_or_missing(r) for r in rows]
    frame = pd.DataFrame(rows, columns=list(EFFECT_COLUMNS))
    for col in ("per", "estimate", "std_error", "statistic", "p_value", "conf_low", "conf_high"):
        frame[col] = pd.to_numeric(frame[col], errors="coerce").astype(float)
    for col in ("n_obs", "n_clusters"):
        frame[col] = frame[col].astype("int64")
    frame["estimable"] = frame["estimable"].astype(bool)
    frame["note"] = frame["note"].fillna("").astype(object)
    return frame


def summary_frame(**values: Any) -> pd.DataFrame:
    """A one-row summary; missing canonical columns are null, extra keys are kept."""
    row = {c: values.pop(c, None) for c in SUMMARY_COLUMNS}
    row.update(values)
    if row["note"] is None:
        row["note"] = ""
    return pd.DataFrame([row])


def empty_fit(outcome: str, model: str, scale: str, terms: tuple[str, ...], note: str, *,
              n_obs: int = 0, n_clusters: int = 0) -> ModelFit:
    """A fit that could not run at all: every term non-estimable with ``note``."""
    rows = [missing_row(outcome, t, model, scale, n_obs=n_obs, n_clusters=n_clusters,
                        note=note) for t in terms]
    return ModelFit(effects_frame(rows),
                    summary_frame(outcome=outcome, model=model, n_obs=n_obs,
                                  n_clusters=n_clusters, converged=False, seconds=0.0,
                                  note=note))
