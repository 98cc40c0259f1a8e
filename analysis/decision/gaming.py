"""Survey-gaming diagnostics: do some reps' survey numbers look managed?

Per rep, over the last ``quarters`` quarters up to the analysed one (surveys by
``sent_date``, attributed to the survey's rep):

* ``response_rate`` (responses / surveys sent) against ``csat_mean``;
* ``perfect_share``: share of CSAT answers that are 5;
* selection: do the customers who answered differ from all customers the rep
  owned in the window? ``tenure_std_diff`` is (mean tenure of respondents − mean
  tenure of all owned) / SD of all owned; ``segment_std_diff`` the largest
  |p_resp − p_all| / sqrt(p_all·(1 − p_all)) over segments.

**Flag rule.** Among reps with at least ``small_cell`` CSAT answers, a rep is
flagged when the robust z-score of response_rate × perfect_share (median and
1.4826·MAD over those reps) exceeds ``z_threshold`` (default 3): many answers *and*
many perfect scores at once is the pattern of hand-picked or coached respondents.
A flag is a reason to look, not a finding of misconduct. Reps below the small-cell
threshold are never named.
"""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd
from scipy import stats

from analysis.config import SMALL_CELL
from analysis.quarters import quarter_end, quarter_range, quarter_start, shift_quarter

log = logging.getLogger(__name__)

Z_THRESHOLD = 3.0
MAD_SCALE = 1.4826
#: The columns of ``Prepared.tables`` :func:`survey_gaming` uses (given its ``surveys``).
TABLE_COLUMNS = {"reps": ("rep_id", "team_id"),
                 "contracts": ("rep_id", "customer_id", "start_date", "end_date", "cancel_date"),
                 "customers": ("customer_id", "acquired_date", "segment")}


def gaming_tables(prepared) -> dict[str, pd.DataFrame]:
    """The tables :func:`survey_gaming` reads, with only the columns it uses."""
    from analysis.columns import read_columns

    return {name: read_columns(prepared, "tables", name, columns)
            for name, columns in TABLE_COLUMNS.items()}


def survey_gaming(tables: dict[str, pd.DataFrame], quarter: str, *, quarters: int = 4,
                  small_cell: int = SMALL_CELL, z_threshold: float = Z_THRESHOLD,
                  surveys: dict[str, pd.DataFrame] | None = None) -> pd.DataFrame:
    """Per-rep survey diagnostics and flags.

    Parameters
    ----------
    tables : typed tables as of the quarter's last day (``Prepared.tables``: reps,
        customers, contracts; surveys when ``surveys`` is omitted).
    quarter : the analysed quarter; the window is it and the ``quarters − 1`` before.
    small_cell : reps with fewer CSAT answers are not scored (``eligible`` False).
    z_threshold : flag when the robust z of response_rate × perfect_share exceeds it.
    surveys : ``survey_counts`` and ``survey_respondents`` of the same view
        (``Prepared.derived``, :func:`analysis.derived.survey_tables`); built from
        ``tables`` when omitted.

    Returns
    -------
    DataFrame
        ``rep_id, team_id, surveys_sent, responses, csat_responses, response_rate,
        csat_mean, perfect_share, tenure_std_diff, segment_std_diff, score,
        robust_z, eligible, flagged``, sorted by rep_id.
    """
    from analysis.derived import CSAT_SCORES, survey_tables

    first_quarter = shift_quarter(quarter, -(quarters - 1))
    first = pd.Timestamp(quarter_start(first_quarter))
    last = pd.Timestamp(quarter_end(quarter))
    window = quarter_range(first_quarter, quarter)
    if surveys is None:
        surveys = survey_tables(tables, quarter)
    counts = surveys["survey_counts"]
    counts = counts[counts["quarter"].isin(window) & counts["rep_id"].notna()]
    csat = [f"csat_{k}" for k in CSAT_SCORES]
    per = counts.groupby("rep_id")[["surveys_sent", "responses", *csat]].sum()
    per["csat_responses"] = per[csat].sum(axis=1)
    answers = per["csat_responses"].where(per["csat_responses"] > 0)
    per["csat_mean"] = (per[csat] * np.array(CSAT_SCORES, dtype="float64")).sum(axis=1) / answers
    per["perfect_share"] = per["csat_5"] / answers
    per["response_rate"] = per["responses"] / per["surveys_sent"]
    respondents = surveys["survey_respondents"]
    answered = respondents[respondents["quarter"].isin(window)]
    per = per.drop(columns=csat).join(_selection(tables, answered, first, last))
    per["eligible"] = per["csat_responses"] >= small_cell
    per["score"] = per["response_rate"] * per["perfect_share"]
    el = per.loc[per["eligible"], "score"]
    med = float(el.median()) if len(el) else np.nan
    mad = float(MAD_SCALE * (el - med).abs().median()) if len(el) else np.nan
    per["robust_z"] = np.where(per["eligible"] & (mad > 0), (per["score"] - med) / mad, np.nan)
    per["flagged"] = per["eligible"] & (per["robust_z"] > z_threshold)
    teams = tables["reps"].set_index("rep_id")["team_id"]
    per.insert(0, "team_id", per.index.map(teams))
    per = per.rename_axis("rep_id").reset_index().sort_values("rep_id", ignore_index=True)
    cols = ["rep_id", "team_id", "surveys_sent", "responses", "csat_responses",
            "response_rate", "csat_mean", "perfect_share", "tenure_std_diff",
            "segment_std_diff", "score", "robust_z", "eligible", "flagged"]
    return per[cols]


def _selection(tables, answered: pd.DataFrame, first, last) -> pd.DataFrame:
    """Standardized differences between respondents and all owned customers, per rep.

    ``answered`` holds (at least) a ``rep_id, customer_id`` row per respondent. Reps
    without respondents get no row. The arithmetic is pandas' ``Series.mean``/``std``
    (two-pass, NaN skipped) and ``value_counts(normalize=True)`` on each rep's
    customers, done on sorted numpy arrays instead of one pandas call per rep.
    """
    c = tables["contracts"]
    owned = c[(c["start_date"] <= last) & (c["end_date"] >= first)
              & (c["cancel_date"].isna() | (c["cancel_date"] > first))]
    cust = tables["customers"].set_index("customer_id")
    base = owned[["rep_id", "customer_id"]].drop_duplicates()
    resp = answered[["rep_id", "customer_id"]].drop_duplicates()
    tenure = ((last - cust["acquired_date"]).dt.days / 365.25).to_numpy(float)
    segment = pd.factorize(cust["segment"])[0]  # -1: no segment
    b_rep, reps = pd.factorize(base["rep_id"], sort=True)  # -1: no rep
    r_rep = reps.get_indexer(resp["rep_id"])  # -1: no rep, or a rep owning no customer
    b_tenure, b_segment = _lookup(cust.index, base["customer_id"], tenure, segment)
    r_tenure, r_segment = _lookup(cust.index, resp["customer_id"], tenure, segment)
    n_reps = len(reps)
    scored = np.bincount(r_rep[r_rep >= 0], minlength=n_reps) > 0
    if not scored.any():
        return pd.DataFrame.from_dict({}, orient="index",
                                      columns=["tenure_std_diff", "segment_std_diff"])
    seg = _segment_diffs(b_rep, b_segment, r_rep, r_segment, n_reps,
                         int(segment.max(initial=-1)) + 1)
    b_sorted, b_bounds = _by_rep(b_rep, b_tenure, n_reps)
    r_sorted, r_bounds = _by_rep(r_rep, r_tenure, n_reps)
    chosen = np.flatnonzero(scored)
    tdiff = np.empty(len(chosen))
    for k, i in enumerate(chosen):
        t_all = b_sorted[b_bounds[i]:b_bounds[i + 1]]
        mean_all, sd = _mean_std(t_all)
        mean_resp, _ = _mean_std(r_sorted[r_bounds[i]:r_bounds[i + 1]], std=False)
        tdiff[k] = (mean_resp - mean_all) / sd if sd > 0 else np.nan
    return pd.DataFrame({"tenure_std_diff": tdiff, "segment_std_diff": seg[chosen]},
                        index=reps[chosen])


def _lookup(index: pd.Index, ids: pd.Series, tenure: np.ndarray, segment: np.ndarray
            ) -> tuple[np.ndarray, np.ndarray]:
    """Tenure (NaN) and segment code (-1) of each id; an unknown customer has neither."""
    pos = index.get_indexer(ids)
    known = pos >= 0
    t, s = np.full(len(pos), np.nan), np.full(len(pos), -1, dtype=np.int64)
    t[known], s[known] = tenure[pos[known]], segment[pos[known]]
    return t, s


def _by_rep(codes: np.ndarray, values: np.ndarray, n_reps: int
            ) -> tuple[np.ndarray, np.ndarray]:
    """``values`` grouped by rep code (original order within a rep) and each rep's bounds."""
    order = np.argsort(codes, kind="stable")
    bounds = np.searchsorted(codes[order], np.arange(n_reps + 1))
    return values[order], bounds


def _mean_std(values: np.ndarray, std: bool = True) -> tuple[float, float]:
    """pandas' ``Series.mean()`` and ``Series.std()`` (ddof 1, NaN skipped), same rounding."""
    nan = np.isnan(values)
    count = float(len(values) - nan.sum())
    filled = np.where(nan, 0.0, values)
    total = filled.sum()
    mean = total / count if count > 0 else np.nan
    if not std or count <= 1:
        return mean, np.nan
    sqr = (mean - filled) ** 2
    sqr[nan] = 0.0
    return mean, float(np.sqrt(sqr.sum() / (count - 1)))


def _segment_diffs(b_rep, b_segment, r_rep, r_segment, n_reps: int, n_segments: int
                   ) -> np.ndarray:
    """Per rep, the largest |p_resp − p_all| / sqrt(p_all·(1 − p_all)) over its segments."""
    def shares(rep, seg):
        ok = (rep >= 0) & (seg >= 0)
        counts = np.bincount(rep[ok] * n_segments + seg[ok], minlength=n_reps * n_segments
                             ).reshape(n_reps, n_segments)
        total = counts.sum(axis=1, keepdims=True)
        with np.errstate(invalid="ignore", divide="ignore"):
            return counts, counts / total, total

    counts_all, p_all, _ = shares(b_rep, b_segment)
    _, p_resp, total_resp = shares(r_rep, r_segment)
    p_resp = np.where(total_resp > 0, p_resp, 0.0)  # no respondent with a segment: shares 0
    with np.errstate(invalid="ignore", divide="ignore"):
        denom = np.sqrt(p_all * (1 - p_all))
        diffs = np.abs(p_resp - p_all) / denom
    use = (counts_all > 0) & (denom > 0)
    best = np.where(use, diffs, -np.inf).max(axis=1, initial=-np.inf)
    return np.where(use.any(axis=1), best, np.nan)


def gaming_summary(per_rep: pd.DataFrame, *, small_cell: int = SMALL_CELL,
                   z_threshold: float = Z_THRESHOLD) -> dict:
    """A findings-ready summary that names no rep below the small-cell threshold.

    Returns
    -------
    dict with the rule, counts, medians, the Spearman correlation of response rate
    with mean CSAT across eligible reps, and the flagged reps (eligible only).
    """
    el = per_rep[per_rep["eligible"]]
    rho = (float(stats.spearmanr(el["response_rate"], el["csat_mean"]).statistic)
           if len(el) >= 3 else None)
    flagged = el[el["flagged"]].sort_values("robust_z", ascending=False)
    return {
        "rule": (f"flag a rep when the robust z-score (median, 1.4826*MAD) of response rate x "
                 f"share of perfect (5) CSAT scores exceeds {z_threshold:g}, among reps with "
                 f">= {small_cell} CSAT answers"),
        "reps_scored": int(len(el)),
        "reps_below_small_cell": int((~per_rep["eligible"]).sum()),
        "median_response_rate": _num(el["response_rate"].median()),
        "median_perfect_share": _num(el["perfect_share"].median()),
        "spearman_response_rate_csat": rho if rho is not None and np.isfinite(rho) else None,
        "median_abs_tenure_std_diff": _num(el["tenure_std_diff"].abs().median()),
        "median_segment_std_diff": _num(el["segment_std_diff"].median()),
        "n_flagged": int(len(flagged)),
        "flagged": [{"rep_id": r.rep_id, "csat_responses": int(r.csat_responses),
                     "response_rate": round(float(r.response_rate), 4),
                     "perfect_share": round(float(r.perfect_share), 4),
                     "robust_z": round(float(r.robust_z), 2)}
                    for r in flagged.itertuples(index=False)],
    }


def _num(x) -> float | None:
    return None if x is None or not np.isfinite(x) else round(float(x), 4)
