"""Descriptive customer metrics with confidence intervals, and the quarterly table.

Scales: ``nps`` in points (-100..100); ``pct_satisfied`` in percent (0..100);
``csat_mean`` on the 1..5 scale; ``proportion`` (and the ``*_rate`` metrics built on it:
response, churn, renewal) as a share in 0..1; ``rate`` per ``per`` units of exposure
(complaints per 100 customer-quarters); ``bookings`` in the data's currency.
Intervals are 95 % unless ``level`` says otherwise.
"""

from __future__ import annotations

import functools
import logging
import math
from dataclasses import dataclass
from typing import Literal

import numpy as np
import pandas as pd
from scipy import stats
from statsmodels.stats.proportion import proportion_confint

from .config import SMALL_CELL
from .errors import ParameterError
from .quarters import quarter_start

logger = logging.getLogger(__name__)

NAN = float("nan")
#: Metric names of :func:`quarterly_metrics`, in report order.
METRIC_NAMES = ("nps", "pct_satisfied", "csat_mean", "response_rate", "complaint_rate",
                "churn_rate", "renewal_rate", "bookings")
SCOPES = ("company", "team")
#: The ``survival_episodes`` columns :func:`quarterly_metrics` uses.
EPISODE_COLUMNS = ("customer_id", "quarter", "team_id", "first_day", "event")


@dataclass(frozen=True)
class Estimate:
    """A point estimate with its interval.

    Attributes
    ----------
    value, conf_low, conf_high : the estimate and its interval (NaN when n == 0).
    n : observations behind it (responses, trials or events; see each function).
    std_error : standard error on the scale of ``value``.
    """

    value: float
    conf_low: float
    conf_high: float
    n: int
    std_error: float


_EMPTY = Estimate(NAN, NAN, NAN, 0, NAN)


@functools.lru_cache(maxsize=8)
def _z(level: float) -> float:
    return float(stats.norm.ppf(0.5 + level / 2))


def _floats(values) -> np.ndarray:
    """Non-missing values as a float array (None, NaN and pd.NA dropped)."""
    if isinstance(values, np.ndarray) and values.dtype == np.float64:
        s = values  # the common case, without a Series per call
    else:
        s = pd.Series(values).astype("float64").to_numpy()
    return s[~np.isnan(s)]


def _scores(values, lo: int, hi: int, name: str) -> np.ndarray:
    """Non-missing values as floats; raise ValueError outside [lo, hi]."""
    s = _floats(values)
    if len(s) and (s.min() < lo or s.max() > hi):
        raise ValueError(f"{name} scores must lie in {lo}..{hi}; got {s.min()}..{s.max()}")
    return s


def nps(scores, *, level: float = 0.95) -> Estimate:
    """Net Promoter Score in points with its multinomial standard error.

    NPS = 100 * (p_prom - p_det), promoters scoring 9-10 and detractors 0-6;
    se = 100 * sqrt((p_prom + p_det - (p_prom - p_det)**2) / n); normal interval,
    clipped to [-100, 100].

    Parameters
    ----------
    scores : array-like of 0..10; missing values are dropped.
    level : confidence level.

    Returns
    -------
    Estimate
        ``n`` = number of scores.
    """
    s = _scores(scores, 0, 10, "NPS")
    n = len(s)
    if n == 0:
        return _EMPTY
    p_prom, p_det = float(np.mean(s >= 9)), float(np.mean(s <= 6))
    value = 100 * (p_prom - p_det)
    se = 100 * math.sqrt(max(p_prom + p_det - (p_prom - p_det) ** 2, 0.0) / n)
    z = _z(level)
    return Estimate(value, max(value - z * se, -100.0), min(value + z * se, 100.0), n, se)


def proportion(k: int, n: int, *, level: float = 0.95) -> Estimate:
    """Share ``k / n`` with the Wilson score interval.

    Parameters
    ----------
    k : successes (churned, renewed, responded).
    n : trials.
    level : confidence level.

    Returns
    -------
    Estimate
        ``std_error`` is the binomial sqrt(p (1 - p) / n); ``n`` = trials.
    """
    k, n = int(k), int(n)
    if not 0 <= k <= n:
        raise ValueError(f"proportion needs 0 <= k <= n; got k={k}, n={n}")
    if n == 0:
        return _EMPTY
    p = k / n
    low, high = proportion_confint(k, n, alpha=1 - level, method="wilson")
    # rounding can put a bound a hair beyond p at k = 0 or k = n (5.6e-17 for 0/7)
    low, high = min(float(low), p), max(float(high), p)
    return Estimate(p, low, high, n, math.sqrt(p * (1 - p) / n))


def pct_satisfied(csat, *, level: float = 0.95) -> Estimate:
    """Percent of CSAT responses scoring 4 or 5, with the Wilson interval.

    Parameters
    ----------
    csat : array-like of 1..5; missing values are dropped.
    level : confidence level.

    Returns
    -------
    Estimate
        In percent; ``n`` = responses.
    """
    s = _scores(csat, 1, 5, "CSAT")
    e = proportion(int(np.sum(s >= 4)), len(s), level=level)
    return Estimate(100 * e.value, 100 * e.conf_low, 100 * e.conf_high, e.n,
                    100 * e.std_error)


def mean(values, *, level: float = 0.95) -> Estimate:
    """Mean with a t interval (sample standard deviation, n - 1 degrees of freedom).

    Parameters
    ----------
    values : array-like; missing values are dropped.
    level : confidence level.

    Returns
    -------
    Estimate
        Interval NaN when n < 2; ``n`` = values.
    """
    s = _floats(values)
    n = len(s)
    if n == 0:
        return _EMPTY
    m = float(s.mean())
    if n < 2:
        return Estimate(m, NAN, NAN, n, NAN)
    se = float(s.std(ddof=1)) / math.sqrt(n)
    half = float(stats.t.ppf(0.5 + level / 2, n - 1)) * se
    return Estimate(m, m - half, m + half, n, se)


def rate(events: int, exposure: float, per: float = 100, *, level: float = 0.95) -> Estimate:
    """Event rate per ``per`` units of exposure, with the exact (Garwood) Poisson interval.

    low = chi2.ppf(a/2, 2k) / 2, high = chi2.ppf(1 - a/2, 2k + 2) / 2 (low = 0 when
    k = 0), both scaled by per / exposure; se = sqrt(k) * per / exposure.

    Parameters
    ----------
    events : event count k (complaints).
    exposure : exposure (customer-quarters); > 0 for an estimate.
    per : the rate is per this much exposure.
    level : confidence level.

    Returns
    -------
    Estimate
        ``n`` = events.
    """
    k = int(events)
    if k < 0:
        raise ValueError(f"events must be >= 0; got {events}")
    if not exposure > 0:
        return Estimate(NAN, NAN, NAN, k, NAN)
    alpha = 1 - level
    scale = per / exposure
    low = float(stats.chi2.ppf(alpha / 2, 2 * k)) / 2 if k > 0 else 0.0
    high = float(stats.chi2.ppf(1 - alpha / 2, 2 * k + 2)) / 2
    return Estimate(k * scale, low * scale, high * scale, k, math.sqrt(k) * scale)


# --- the quarterly table --------------------------------------------------------------

def _survey_frame(tables: dict[str, pd.DataFrame], counts: pd.DataFrame,
                  quarters: list[str]) -> pd.DataFrame:
    """Survey counts of ``quarters`` with the team of their rep."""
    c = counts[counts.quarter.isin(quarters)]
    teams = tables["reps"].set_index("rep_id").team_id
    return c.assign(team_id=c.rep_id.map(teams))


def _answers(counts: np.ndarray, scores: tuple[int, ...]) -> np.ndarray:
    """The answers counted per score in ``counts``, as one array of scores."""
    return np.repeat(np.array(scores, dtype="float64"), [int(k) for k in counts])


def _codes(columns: list[np.ndarray]) -> tuple[np.ndarray, list[tuple]]:
    """Group number of each row by ``columns`` (-1 where a key is missing), and the keys."""
    parts = [pd.factorize(c) for c in columns]
    code = np.zeros(len(columns[0]), dtype="int64")
    missing = np.zeros(len(code), dtype=bool)
    for c, labels in parts:
        code = code * max(len(labels), 1) + c
        missing |= c < 0
    present, inverse = np.unique(code[~missing], return_inverse=True)
    code[missing] = -1
    code[~missing] = inverse
    keys = []
    for k in present.tolist():
        key = []
        for _, labels in reversed(parts):
            k, i = divmod(k, max(len(labels), 1))
            key.append(labels[i])
        keys.append(tuple(reversed(key)))
    return code, keys


def _episode_counts(episodes: pd.DataFrame, quarters: list[str],
                    by: list[str]) -> tuple[dict, dict]:
    """Customers at risk per group, and (churned, at risk on the first day) per group.

    Customers at risk = distinct customers with an episode in the quarter. Churn:
    customers at risk on the quarter's first day (an episode covers it: episodes split
    at quarter starts, so its first_day is that day; the team is the owner's team on
    that day), and those of them who churned in the quarter (an episode with an event),
    counted as a left join of the two counts them. Works on codes, not on a copy of the
    (1.6M-row) episodes frame.
    """
    q_code, q_labels = pd.factorize(episodes["quarter"].to_numpy())
    wanted = np.array([q in quarters for q in q_labels], dtype=bool)
    rows = np.flatnonzero(wanted[q_code]) if len(q_code) else np.zeros(0, dtype="int64")
    group, keys = _codes([episodes[c].to_numpy()[rows] for c in by])
    customer, _ = pd.factorize(episodes["customer_id"].to_numpy()[rows])
    customer = customer.astype("int64")
    q_code = q_code[rows].astype("int64")
    n_groups, n_customers, n_q = len(keys), int(customer.max(initial=0)) + 1, len(q_labels)
    ok = group >= 0
    pairs = pd.unique(group[ok] * n_customers + customer[ok])  # numpy's hash unique is slow here
    at_risk = np.bincount(pairs // n_customers, minlength=n_groups)
    starts = pd.to_datetime(pd.Series([quarter_start(q) for q in q_labels], dtype=object))
    first_day = episodes["first_day"].to_numpy()[rows]
    at_start = np.flatnonzero(first_day == starts.to_numpy()[q_code])
    pair = customer * max(n_q, 1) + q_code
    event_pairs, event_count = np.unique(pair[episodes["event"].to_numpy()[rows] == 1],
                                         return_counts=True)
    churned = np.zeros(len(at_start), dtype="int64")
    if len(event_pairs):
        pos = np.minimum(np.searchsorted(event_pairs, pair[at_start]), len(event_pairs) - 1)
        hit = event_pairs[pos] == pair[at_start]
        churned[hit] = event_count[pos[hit]]
    g = group[at_start]
    ok = g >= 0
    # a left join repeats an at-start row once per matching event
    n = np.bincount(g[ok], weights=np.maximum(churned[ok], 1), minlength=n_groups)
    k = np.bincount(g[ok], weights=churned[ok], minlength=n_groups)
    customers = {key: int(at_risk[i]) for i, key in enumerate(keys)}
    churn = {key: (int(k[i]), int(n[i])) for i, key in enumerate(keys) if n[i] > 0}
    return customers, churn


def _estimates(name: str, groups, keys) -> list[tuple]:
    """Apply one estimator per group; ``groups`` maps key -> Estimate."""
    return [(name, key, groups.get(key, _EMPTY)) for key in keys]


def _groups(frame: pd.DataFrame, by: list[str]) -> dict[tuple, np.ndarray]:
    """Row positions of each group of ``frame`` by ``by`` (rows with a missing key dropped)."""
    return {(k if isinstance(k, tuple) else (k,)): idx
            for k, idx in frame.groupby(by, sort=True).indices.items()}


def _sum(values: np.ndarray, idx: np.ndarray) -> float:
    """``values[idx]`` summed as pandas sums a group's column: NaN as 0, numpy's sum."""
    v = values[idx].astype("float64")
    v[np.isnan(v)] = 0.0
    return v.sum()


def quarterly_metrics(tables: dict[str, pd.DataFrame], panel: pd.DataFrame, quarter: str,
                      scope: Literal["company", "team"] = "company", *,
                      episodes: pd.DataFrame | None = None,
                      survey_counts: pd.DataFrame | None = None) -> pd.DataFrame:
    """Customer metrics per quarter (and team), shaped like findings.json ``metrics``.

    Parameters
    ----------
    tables : typed tables of the as-of view of ``quarter``'s last day (reps; surveys
        when ``survey_counts`` is omitted).
    panel : :func:`analysis.derived.rep_quarter_panel` of the same view.
    quarter : the analysed quarter; rows cover every panel quarter up to it.
    scope : ``"company"`` or ``"team"``.
    episodes : :func:`analysis.derived.survival_episodes` of the same view (at least
        ``EPISODE_COLUMNS``); built from ``tables`` when omitted.
    survey_counts : :func:`analysis.derived.survey_tables` ``survey_counts`` of the
        same view (``Prepared.derived``); built from ``tables`` when omitted.

    Returns
    -------
    DataFrame
        Columns ``name, scope, quarter, [team_id,] value, conf_low, conf_high, n,
        suppressed``; value and interval are Python floats or None (object dtype).
        Metrics: nps (points), pct_satisfied (%), csat_mean (1..5), response_rate
        (share of surveys sent that were answered), complaint_rate (attributed
        complaints per 100 customer-quarters of exposure; n = distinct customers at
        risk in the quarter, from the episodes),
        churn_rate (customers at risk on the quarter's first day who churned in the
        quarter / those at risk), renewal_rate (renewed / renewal decisions due),
        bookings (won amount; no interval; n = won deals). Surveys count in the
        quarter sent, by the team of their rep. Team rows with n < SMALL_CELL carry
        None and ``suppressed=True``.
    """
    if scope not in SCOPES:
        raise ParameterError(f"scope {scope!r} is not one of {', '.join(SCOPES)}")
    quarters = sorted(q for q in panel.quarter.unique() if q <= quarter)
    by = ["quarter"] if scope == "company" else ["quarter", "team_id"]
    keys = sorted(panel.loc[panel.quarter.isin(quarters), by].drop_duplicates()
                  .itertuples(index=False, name=None))
    if episodes is None:
        from .derived import survival_episodes
        episodes = survival_episodes(tables, quarter)
    if survey_counts is None:
        from .derived import survey_tables
        survey_counts = survey_tables(tables, quarter)["survey_counts"]

    from .derived import CSAT_SCORES, NPS_SCORES

    # Integer counts are summed per group in one array operation; float columns
    # (exposure, bookings) group by group in row order, as pandas sums a group, so
    # every value is the same to the last bit.
    surveys = _survey_frame(tables, survey_counts, quarters)
    nps_cols = [f"nps_{k}" for k in NPS_SCORES]
    csat_cols = [f"csat_{k}" for k in CSAT_SCORES]
    counts = surveys[[*nps_cols, *csat_cols, "responses", "surveys_sent"]].to_numpy("int64")
    rows = []
    survey_sums = {k: counts[idx].sum(axis=0) for k, idx in _groups(surveys, by).items()}
    n_nps = len(nps_cols)
    n_csat = n_nps + len(csat_cols)
    rows += _estimates("nps", {k: nps(_answers(c[:n_nps], NPS_SCORES))
                               for k, c in survey_sums.items()}, keys)
    csat = {k: _answers(c[n_nps:n_csat], CSAT_SCORES) for k, c in survey_sums.items()}
    rows += _estimates("pct_satisfied", {k: pct_satisfied(a) for k, a in csat.items()}, keys)
    rows += _estimates("csat_mean", {k: mean(a) for k, a in csat.items()}, keys)
    rows += _estimates("response_rate", {k: proportion(c[n_csat], c[n_csat + 1])
                                         for k, c in survey_sums.items()}, keys)

    p = panel[panel.quarter.isin(quarters)]
    p_groups = _groups(p, by)
    customers, churn = _episode_counts(episodes, quarters, by)
    complaints, exposure = p["complaints"].to_numpy(), p["exposure"].to_numpy()
    rows += _estimates("complaint_rate", {k: _with_n(
        rate(complaints[idx].sum(), _sum(exposure, idx)), customers.get(k, 0))
        for k, idx in p_groups.items()}, keys)
    rows += _estimates("churn_rate", {k: proportion(*kn) for k, kn in churn.items()}, keys)
    renewed, due = p["renewals_renewed"].to_numpy(), p["renewals_due"].to_numpy()
    rows += _estimates("renewal_rate", {k: proportion(renewed[idx].sum(), due[idx].sum())
                                        for k, idx in p_groups.items()}, keys)
    bookings, won = p["bookings"].to_numpy(), p["won_deals"].to_numpy()
    rows += _estimates("bookings", {k: Estimate(
        float(_sum(bookings, idx)), NAN, NAN, int(won[idx].sum()), NAN)
        for k, idx in p_groups.items()}, keys)
    return _tidy(rows, by, scope)


def _with_n(e: Estimate, n: int) -> Estimate:
    return Estimate(e.value, e.conf_low, e.conf_high, int(n), e.std_error)


def _none_if_nan(x: float):
    return None if x is None or (isinstance(x, float) and math.isnan(x)) else float(x)


def _tidy(rows: list[tuple], by: list[str], scope: str) -> pd.DataFrame:
    records = []
    for name, key, e in rows:
        suppressed = scope == "team" and e.n < SMALL_CELL
        value = (None, None, None) if suppressed else tuple(
            _none_if_nan(x) for x in (e.value, e.conf_low, e.conf_high))
        records.append({"name": name, "scope": scope, **dict(zip(by, key)),
                        "value": value[0], "conf_low": value[1], "conf_high": value[2],
                        "n": int(e.n), "suppressed": suppressed})
    columns = ["name", "scope", *by, "value", "conf_low", "conf_high", "n", "suppressed"]
    out = pd.DataFrame({c: pd.Series([r[c] for r in records], dtype=object)
                        for c in columns})
    out["n"] = out.n.astype("int64")
    out["suppressed"] = out.suppressed.astype(bool)
    if scope == "team" and len(out):
        # The company row of each metric and quarter is published beside the teams:
        # hide a second cell wherever one alone would be recoverable by subtraction.
        from .privacy import suppress_small_cells

        out = suppress_small_cells(out, "n", ["value", "conf_low", "conf_high"],
                                   group_cols=["name", "quarter"])
    n_suppressed = int(out.suppressed.sum())
    if n_suppressed:
        logger.info("quarterly metrics: %d team cells below %d suppressed",
                    n_suppressed, SMALL_CELL)
    return out
