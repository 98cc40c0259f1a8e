"""Analytic and wild-bootstrap p-values side by side, for the analyst notebooks.

Issue 3: between ``MIN_CLUSTERS`` and ``WILD_COMPARE_MAX_CLUSTERS`` teams the linear
models carry restricted wild cluster bootstrap p-values of β = 0
(``fit.extras["wild_p"]``, :func:`analysis.models.panel.wild_p_values`). When
cluster-robust inference is reliable the two agree; a gap is a reason to read that
effect with care. Light on purpose: it works on cached fits without importing the
model libraries.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pandas as pd

COLUMNS = ["outcome", "term", "estimate", "p_value", "p_value_wild", "reps", "n_clusters"]


def wild_comparison(fits: Mapping[str, Any]) -> pd.DataFrame:
    """One row per term of each fit that carries wild p-values.

    Parameters
    ----------
    fits : {outcome: fit} with ``effects`` (tidy rows) and ``extras`` (dict) — a
        ``ModelFit`` or a cached fit.

    Returns
    -------
    DataFrame
        ``outcome``, ``term``, ``estimate``, ``p_value`` (analytic, as reported),
        ``p_value_wild``, ``reps``, ``n_clusters``; empty when no fit carries them
        (fewer than 10 or more than 40 teams, or no linear model among ``fits``).
    """
    frames = []
    for fit in fits.values():
        wild = fit.extras.get("wild_p")
        if wild is None or len(wild) == 0:
            continue
        effects = fit.effects[["outcome", "term", "estimate", "p_value", "n_clusters"]]
        frames.append(effects.merge(wild, on="term", how="inner"))
    if not frames:
        return pd.DataFrame(columns=COLUMNS)
    return pd.concat(frames, ignore_index=True)[COLUMNS]
