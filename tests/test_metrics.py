"""Metrics against numbers worked out by hand (arithmetic quoted next to each).

z = 1.959963984540054 (95 %, two-sided). Reference values for the Wilson and exact
Poisson intervals are the textbook ones (e.g. 8/10 -> 0.490..0.943; k = 3 ->
0.619..8.767) and are recomputed here from the closed-form formulas.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from analysis import derived, metrics
from analysis.config import SMALL_CELL
from analysis.errors import ParameterError

try:
    from tests.test_derived import tiny_tables
except ImportError:  # tests/ is not a package: pytest puts it on sys.path
    from test_derived import tiny_tables

Z = 1.959963984540054
TOL = 1e-9  # closed forms vs library: agree to rounding


def wilson(k, n, z=Z):
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return centre - half, centre + half


# --- nps ------------------------------------------------------------------------------

def test_nps_hand_computed():
    # scores: 10, 9 (promoters), 8 (passive), 3, 0 (detractors): n = 5
    # p_prom = 0.4, p_det = 0.4, NPS = 0
    # se = 100 * sqrt((0.4 + 0.4 - 0) / 5) = 100 * sqrt(0.16) = 40
    e = metrics.nps([10, 9, 8, 3, 0])
    assert (e.value, e.n) == (0.0, 5)
    assert e.std_error == pytest.approx(40.0, abs=TOL)
    assert e.conf_low == pytest.approx(-Z * 40, abs=TOL)
    assert e.conf_high == pytest.approx(Z * 40, abs=TOL)


def test_nps_unbalanced_and_missing_dropped():
    # 20 scores: 12 promoters, 5 passives, 3 detractors (+ 2 missing, dropped)
    # NPS = 100 * (0.60 - 0.15) = 45
    # se = 100 * sqrt((0.60 + 0.15 - 0.45**2) / 20) = 100 * sqrt(0.5475 / 20) = 16.5454...
    scores = [9] * 6 + [10] * 6 + [7, 8, 8, 7, 8] + [6, 2, 5] + [None, np.nan]
    e = metrics.nps(pd.Series(scores, dtype="Float64"))
    assert e.n == 20
    assert e.value == pytest.approx(45.0, abs=TOL)
    assert e.std_error == pytest.approx(100 * math.sqrt(0.5475 / 20), abs=TOL)
    assert e.std_error == pytest.approx(16.545392, abs=1e-6)
    assert e.conf_low == pytest.approx(45 - Z * e.std_error, abs=TOL)


def test_nps_interval_clipped_and_empty():
    e = metrics.nps([10] * 9 + [8])  # 90 points, se = 100 sqrt(0.09/10) = 9.4868
    assert e.value == pytest.approx(90.0)
    assert e.conf_high == 100.0
    assert e.conf_low == pytest.approx(90 - Z * 100 * math.sqrt(0.09 / 10))
    assert metrics.nps([]).n == 0 and math.isnan(metrics.nps([]).value)
    with pytest.raises(ValueError):
        metrics.nps([11])


# --- proportions ----------------------------------------------------------------------

def test_wilson_against_closed_form_and_table():
    # 8/10: centre = (0.8 + z^2/20)/(1 + z^2/10) = 0.71674, half = 0.22658
    e = metrics.proportion(8, 10)
    assert (e.value, e.n) == (0.8, 10)
    lo, hi = wilson(8, 10)
    assert (e.conf_low, e.conf_high) == (pytest.approx(lo, abs=TOL), pytest.approx(hi, abs=TOL))
    assert (round(e.conf_low, 4), round(e.conf_high, 4)) == (0.4902, 0.9433)
    assert e.std_error == pytest.approx(math.sqrt(0.8 * 0.2 / 10))


@pytest.mark.parametrize("k,n", [(0, 1), (0, 7), (3, 7), (7, 7), (1, 1000), (513, 812)])
def test_wilson_matches_closed_form(k, n):
    e = metrics.proportion(k, n)
    lo, hi = wilson(k, n)
    assert e.conf_low == pytest.approx(max(lo, 0.0), abs=TOL)
    assert e.conf_high == pytest.approx(min(hi, 1.0), abs=TOL)
    assert 0 <= e.conf_low <= e.value <= e.conf_high <= 1


def test_proportion_edge_cases():
    assert metrics.proportion(0, 0).n == 0 and math.isnan(metrics.proportion(0, 0).value)
    with pytest.raises(ValueError):
        metrics.proportion(3, 2)


def test_pct_satisfied():
    # CSAT 5, 4, 3, 1 (+ missing): 2 of 4 satisfied = 50 %
    # Wilson 2/4: centre = (0.5 + z^2/8)/(1 + z^2/4) = 0.5,
    # half = z sqrt(0.0625 + z^2/64)/(1 + z^2/4) = 0.34996 -> 15.004 % .. 84.996 %
    e = metrics.pct_satisfied(pd.Series([5, 4, 3, 1, None], dtype="Int64"))
    assert (e.value, e.n) == (50.0, 4)
    assert e.conf_low == pytest.approx(15.003898915, abs=1e-6)
    assert e.conf_high == pytest.approx(84.996101085, abs=1e-6)
    assert e.std_error == pytest.approx(25.0)  # 100 sqrt(0.25/4)


# --- mean, rate -----------------------------------------------------------------------

def test_mean_t_interval():
    # 4, 3, 5, 4: mean 4, sd = sqrt(2/3), se = sd/2 = 0.40825, t(0.975, 3) = 3.182446
    e = metrics.mean([4, 3, 5, 4])
    assert e.value == 4.0
    assert e.std_error == pytest.approx(math.sqrt(2 / 3) / 2)
    assert e.conf_high == pytest.approx(4 + 3.182446305 * math.sqrt(2 / 3) / 2, abs=1e-8)
    one = metrics.mean([3])
    assert one.value == 3.0 and math.isnan(one.conf_low)


def test_rate_exact_poisson():
    # 3 complaints over 10 customer-quarters: 30 per 100.
    # Garwood: chi2(0.025, 6)/2 = 0.61867, chi2(0.975, 8)/2 = 8.76727 -> x 10 per 100
    e = metrics.rate(3, 10.0)
    assert (e.value, e.n) == (30.0, 3)
    assert e.conf_low == pytest.approx(6.1867212, abs=1e-6)
    assert e.conf_high == pytest.approx(87.672731, abs=1e-6)
    assert e.std_error == pytest.approx(math.sqrt(3) * 10)
    # no events: low 0, high = chi2(0.975, 2)/2 = -ln(0.025) = 3.68888 per unit exposure
    z = metrics.rate(0, 2.0)
    assert (z.value, z.conf_low) == (0.0, 0.0)
    assert z.conf_high == pytest.approx(-math.log(0.025) * 50, abs=1e-9)
    assert math.isnan(metrics.rate(1, 0.0).value)


def test_estimate_is_frozen():
    with pytest.raises(Exception):
        metrics.proportion(1, 2).value = 3


# --- quarterly_metrics on the hand-built company of test_derived ------------------------

@pytest.fixture(scope="module")
def company():
    tables = tiny_tables()
    built = derived.build_all(tables, "2024Q2")
    return tables, built


def _metric(df, name, quarter, team=None):
    sel = (df.name == name) & (df.quarter == quarter)
    if team is not None:
        sel &= df.team_id == team
    (row,) = df[sel].itertuples(index=False)
    return row


def test_company_metrics(company):
    tables, built = company
    m = metrics.quarterly_metrics(tables, built["rep_quarter_panel"], "2024Q2",
                                  episodes=built["survival_episodes"])
    assert list(m.columns) == ["name", "scope", "quarter", "value", "conf_low",
                               "conf_high", "n", "suppressed"]
    assert len(m) == len(metrics.METRIC_NAMES) * 2
    assert not m.suppressed.any()
    # NPS Q1: S1 10, S3 3 -> 50 % - 50 % = 0, se = 100 sqrt(1/2) = 70.71
    r = _metric(m, "nps", "2024Q1")
    assert (r.value, r.n) == (0.0, 2)
    # NPS Q2: S4 8, S6 9 -> 50 points (S5 has no nps)
    assert _metric(m, "nps", "2024Q2").value == 50.0
    # CSAT Q2: 4, 3 -> 50 % satisfied, mean 3.5
    assert _metric(m, "pct_satisfied", "2024Q2").value == 50.0
    assert _metric(m, "csat_mean", "2024Q2").value == 3.5
    # response rate Q1: S1, S3 answered of S1..S3 -> 2/3
    r = _metric(m, "response_rate", "2024Q1")
    assert r.value == pytest.approx(2 / 3) and r.n == 3
    # complaints Q1: 3 attributed over (142 + 51 + 55)/91 customer-quarters
    # = 300 * 91 / 248 = 110.0806 per 100; n = customers at risk in Q1: C1..C4 = 4
    r = _metric(m, "complaint_rate", "2024Q1")
    assert r.value == pytest.approx(300 * 91 / 248, abs=1e-9) and r.n == 4
    hi = stats.chi2.ppf(0.975, 8) / 2 * 100 * 91 / 248
    assert r.conf_high == pytest.approx(hi, abs=1e-9)
    # churn: nobody is a customer on Jan 1; on Apr 1 C1 and C3 are at risk (C4 is in
    # its gap, C2 gone); C3 churns May 15 -> 1/2
    r = _metric(m, "churn_rate", "2024Q1")
    assert r.value is None and r.n == 0
    r = _metric(m, "churn_rate", "2024Q2")
    assert (r.value, r.n) == (0.5, 2)
    # renewals: Q1 K1 + K7 renewed of K1, K5, K7 -> 2/3; Q2 K6 of K4, K6 -> 1/2
    assert _metric(m, "renewal_rate", "2024Q1").value == pytest.approx(2 / 3)
    assert _metric(m, "renewal_rate", "2024Q2").value == 0.5
    # bookings: Q1 1000 + 500 + 400 + 2000 = 3900 from 4 won deals; no interval
    r = _metric(m, "bookings", "2024Q1")
    assert (r.value, r.n, r.conf_low) == (3900.0, 4, None)


def test_team_metrics_suppressed_below_small_cell(company):
    tables, built = company
    m = metrics.quarterly_metrics(tables, built["rep_quarter_panel"], "2024Q2", "team",
                                  episodes=built["survival_episodes"])
    assert list(m.columns) == ["name", "scope", "quarter", "team_id", "value", "conf_low",
                               "conf_high", "n", "suppressed", "suppressed_reason"]
    # teams x quarters present in the panel: T1 Q1, T1 Q2, T2 Q1
    assert len(m) == len(metrics.METRIC_NAMES) * 3
    assert SMALL_CELL == 5  # every cell of the tiny company has fewer than 5
    small = m[m.n < SMALL_CELL]
    assert small.suppressed.all() and small.value.isna().all()
    assert small.conf_low.isna().all() and small.conf_high.isna().all()
    # n is still reported: T1 Q1 response rate over S1, S2 (R1's surveys)
    assert _metric(m, "response_rate", "2024Q1", "T1").n == 2


def test_team_metrics_shown_at_small_cell(company):
    tables, built = company
    panel = built["rep_quarter_panel"].copy()
    panel.loc[(panel.rep_id == "R2") & (panel.quarter == "2024Q2"), "won_deals"] = SMALL_CELL
    m = metrics.quarterly_metrics(tables, panel, "2024Q2", "team",
                                  episodes=built["survival_episodes"])
    r = _metric(m, "bookings", "2024Q2", "T1")
    assert (r.value, r.n, r.suppressed) == (1650.0, SMALL_CELL, False)


def test_metrics_up_to_the_analysed_quarter_and_episodes_optional(company):
    tables, built = company
    m = metrics.quarterly_metrics(tables, built["rep_quarter_panel"], "2024Q1")
    assert set(m.quarter) == {"2024Q1"}
    with pytest.raises(ParameterError):
        metrics.quarterly_metrics(tables, built["rep_quarter_panel"], "2024Q2", "rep")


def test_team_metrics_get_complementary_suppression(company):
    """One small team beside a large one in a quarter: the large one is hidden too,
    or the small one's bookings would be the company total minus the large one's."""
    tables, built = company
    panel = built["rep_quarter_panel"].copy()
    t1_q1 = (panel.team_id == "T1") & (panel.quarter == "2024Q1")
    panel.loc[t1_q1, "won_deals"] = SMALL_CELL  # large enough on its own
    m = metrics.quarterly_metrics(tables, panel, "2024Q2", "team",
                                  episodes=built["survival_episodes"])
    t1 = _metric(m, "bookings", "2024Q1", "T1")
    t2 = _metric(m, "bookings", "2024Q1", "T2")
    assert t2.suppressed and t2.n < SMALL_CELL
    assert t1.n >= SMALL_CELL and t1.suppressed and t1.value is None


def test_survey_metrics_from_the_derived_counts(company):
    """Given the derived survey counts (as Prepared.derived holds them), the metrics need
    no survey rows, and equal those built from the rows."""
    tables, built = company
    panel, episodes = built["rep_quarter_panel"], built["survival_episodes"]
    without_rows = {n: df for n, df in tables.items() if n != "surveys"}
    for scope in metrics.SCOPES:
        given = metrics.quarterly_metrics(without_rows, panel, "2024Q2", scope,
                                          episodes=episodes,
                                          survey_counts=built["survey_counts"])
        from_rows = metrics.quarterly_metrics(tables, panel, "2024Q2", scope,
                                              episodes=episodes)
        pd.testing.assert_frame_equal(given, from_rows)
    company_rows = metrics.quarterly_metrics(without_rows, panel, "2024Q2", episodes=episodes,
                                             survey_counts=built["survey_counts"])
    r = _metric(company_rows, "csat_mean", "2024Q2")  # S4 4, S5 3 (S6 has no CSAT)
    assert (r.value, r.n) == (3.5, 2)
