"""Multiple-testing adjustment of a family of tidy effect rows.

A family is every row the caller passes (e.g. all heterogeneity effects of one
run); non-estimable rows (null p-value) are left out of the family and keep a null
``p_adjusted``. The method and the family size are appended to each row's ``note``.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
import pandas as pd
from statsmodels.stats.multitest import multipletests

from analysis.errors import ParameterError

Method = Literal["holm", "bonferroni", "fdr_bh"]
METHODS: dict[str, str] = {
    "holm": "Holm step-down (family-wise error rate)",
    "bonferroni": "Bonferroni (family-wise error rate)",
    "fdr_bh": "Benjamini-Hochberg (false discovery rate)",
}


def adjust_pvalues(effects: pd.DataFrame, *, method: Method = "holm",
                   family: str = "") -> pd.DataFrame:
    """Add ``p_adjusted`` over the family of rows and name the method in ``note``.

    Parameters
    ----------
    effects : tidy effect rows with ``p_value`` (NaN for non-estimable rows).
    method : ``"holm"`` (default), ``"bonferroni"`` or ``"fdr_bh"``
        (statsmodels ``multipletests``).
    family : words naming the family in the note (e.g. "heterogeneity").

    Returns
    -------
    DataFrame
        A copy of ``effects`` with ``p_adjusted`` and the note extended.
    """
    if method not in METHODS:
        raise ParameterError(f"method must be one of {sorted(METHODS)}, got {method!r}")
    out = effects.copy()
    p = pd.to_numeric(out["p_value"], errors="coerce").to_numpy(float)
    ok = np.isfinite(p)
    adjusted = np.full(len(out), np.nan)
    if ok.any():
        adjusted[ok] = multipletests(p[ok], method=method)[1]
    out["p_adjusted"] = adjusted
    text = (f"p_adjusted: {METHODS[method]} over the {int(ok.sum())} tests of the "
            f"{family + ' ' if family else ''}family")
    notes = out["note"].fillna("").astype(str)
    out["note"] = [f"{n}; {text}" if n and k else (text if k else n)
                   for n, k in zip(notes, ok)]
    return out
