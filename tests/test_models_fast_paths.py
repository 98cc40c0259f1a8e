"""The fast paths of the churn and renewal code against the plain computations they replace.

Each shortcut must give the very same numbers (bit for bit), not merely close ones:
the risk sets of a row subset, the risk-set sums with a row scale, the cluster
score sums, the Cox fit with the design built for the rows at risk only, the
lifelines gradient pass on numpy stratum slices, and the Kaplan–Meier at-risk
counts.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from lifelines import CoxTimeVaryingFitter
from lifelines.datasets import load_rossi

from analysis.models import coxph
from analysis.models.clustered import cluster_scores
from analysis.models.cox_residuals import _RiskSets
from analysis.models.survival import km_by_plan

COLS = ["fin", "age", "race", "wexp", "mar", "paro", "prio"]


@pytest.fixture(scope="module")
def episodes() -> pd.DataFrame:
    """Rossi as (start, stop] episodes in three strata, with rows in no risk set."""
    rossi = load_rossi()
    rows = []
    for i, r in enumerate(rossi.itertuples(index=False)):
        bounds = [0.0] + [c for c in (5, 13, 26, 40) if c < r.week] + [float(r.week)]
        for a, b in zip(bounds[:-1], bounds[1:]):
            rows.append({"id": i, "start": a, "stop": b, "event": int(r.arrest and b == r.week),
                         **{c: getattr(r, c) for c in COLS}})
    ep = pd.DataFrame(rows)
    ep["stratum"] = ep["id"] % 3
    # late entries after every event of their stratum: at risk nowhere
    late = ep.iloc[:5].assign(start=60.0, stop=70.0, event=0)
    return pd.concat([ep, late], ignore_index=True)


def _arrays(ep):
    return (ep["start"].to_numpy(float), ep["stop"].to_numpy(float),
            ep["event"].to_numpy(int), ep["stratum"].to_numpy())


def test_risk_set_subset_equals_risk_sets_of_the_rows(episodes):
    start, stop, event, strata = _arrays(episodes)
    full = _RiskSets(start, stop, event, strata, bookkeeping_only=True)
    rows = np.flatnonzero(full.at_risk())
    assert len(rows) < len(start)  # the late entries are dropped
    rows = rows[np.lexsort((event[rows], stop[rows], strata[rows]))]
    got = full.subset(rows, stop[rows])
    want = _RiskSets(start[rows], stop[rows], event[rows], strata[rows])
    for name in ("event", "ev_rows", "d", "lo", "hi", "ev_sorted", "k_sorted", "group_start",
                 "frac", "k_of_row", "event_times"):
        np.testing.assert_array_equal(getattr(got, name), getattr(want, name), err_msg=name)
    assert len(got.ukey) == len(want.ukey)
    for name in ("enter_exit", "tied"):
        a, b = getattr(got, name), getattr(want, name)
        assert (a != b).nnz == 0 and np.array_equal(a.indptr, b.indptr), name
    with pytest.raises(ValueError, match="every event row"):
        full.subset(np.flatnonzero(event == 0), stop[event == 0])


def test_scaled_risk_set_sums_equal_sums_of_the_scaled_rows(episodes):
    start, stop, event, strata = _arrays(episodes)
    rs = _RiskSets(start, stop, event, strata)
    x = episodes[COLS].to_numpy(float)
    r = np.exp(x @ np.linspace(-0.2, 0.2, len(COLS)))
    np.testing.assert_array_equal(rs.at_risk_sums(x, scale=r), rs.at_risk_sums(x * r[:, None]))
    np.testing.assert_array_equal(rs.tied_sums(x, scale=r), rs.tied_sums(x * r[:, None]))


@pytest.mark.parametrize("labels", ["codes", "gaps", "strings", "floats"])
def test_cluster_scores_equal_per_column_bincount(labels):
    rng = np.random.default_rng(3)
    scores = rng.standard_normal((5_000, 4))
    codes = rng.integers(0, 40, len(scores))
    clusters = {"codes": codes, "gaps": codes * 7 + 3,
                "strings": np.array([f"T{c:03d}" for c in codes], dtype=object),
                "floats": codes / 3.0}[labels]
    _, inverse = np.unique(clusters, return_inverse=True)
    want = np.column_stack([np.bincount(inverse.ravel(), weights=scores[:, j])
                            for j in range(scores.shape[1])])
    np.testing.assert_array_equal(cluster_scores(scores, clusters), want)


def test_cox_fit_with_a_design_function_equals_the_full_design(episodes):
    start, stop, event, strata = _arrays(episodes)
    x = episodes[COLS].to_numpy(float)
    built = []

    def design(rows):
        built.append(len(rows))
        return x[rows]

    want = coxph.cox_fit(start, stop, event, x, strata, names=COLS)
    got = coxph.cox_fit(start, stop, event, design, strata, names=COLS)
    # only the rows at risk were built, twice: lifelines standardises the first in place
    assert built == [len(start) - 5] * 2
    for name in ("params", "cov_naive", "score_residuals", "schoenfeld", "event_times"):
        np.testing.assert_array_equal(getattr(got, name), getattr(want, name), err_msg=name)
    assert (got.loglik, got.loglik_null, got.converged) == (want.loglik, want.loglik_null,
                                                            want.converged)
    with pytest.raises(TypeError, match="names"):
        coxph.cox_fit(start, stop, event, design, strata)


def test_lifelines_gradients_on_stratum_slices_equal_lifelines_own(episodes):
    # the fitter's pass over the strata (numpy slices) against lifelines' own
    # CoxTimeVaryingFitter._get_gradients on each stratum's rows
    start, stop, event, strata = _arrays(episodes)
    order = np.lexsort((event, stop, strata))
    x = episodes[COLS].to_numpy(float)[order]
    fitter = coxph._semiparametric_class()()
    frames = fitter.preprocess_sorted(x, COLS, start[order], stop[order], event[order],
                                      strata[order])
    beta = np.linspace(-0.1, 0.1, len(COLS))
    grad = fitter._choose_gradient_calculator(frames[1], frames[0], frames[4])
    got = list(fitter._partition_by_strata_and_apply(*frames, grad, beta))
    assert len(got) == 3
    for s, (h, g, ll) in enumerate(got):
        m = strata[order] == s
        want = CoxTimeVaryingFitter._get_gradients(x[m], event[order][m].astype(bool),
                                                   start[order][m], stop[order][m],
                                                   np.ones(m.sum()), beta)
        np.testing.assert_array_equal(h, want[0])
        np.testing.assert_array_equal(g, want[1])
        assert ll == want[2]


def test_km_at_risk_counts_episodes_open_at_each_day(episodes):
    ep = episodes.assign(plan_id=np.where(episodes["id"] % 2 == 0, "P1", "P2"))
    table = km_by_plan(ep, step_days=7)
    for plan, rows in table.groupby("plan_id"):
        grp = ep[ep["plan_id"] == plan]
        want = [int(((grp["start"] < d) & (grp["stop"] >= d)).sum()) for d in rows["day"]]
        assert rows["at_risk"].tolist() == want


@pytest.mark.parametrize("case", ["days", "fractional", "unstratified", "missing_stratum"])
def test_sort_order_equals_lexsort(case):
    rng = np.random.default_rng(5)
    n = 3_000
    stop = rng.integers(1, 400, n).astype(float)
    event = rng.integers(0, 2, n)
    codes = rng.integers(0, 30, n)
    if case == "fractional":
        stop = stop + 0.5 * rng.integers(0, 2, n)
    if case == "unstratified":
        codes = None
    if case == "missing_stratum":
        codes[:10] = -1
    want = np.lexsort((event, stop) if codes is None else (event, stop, codes))
    np.testing.assert_array_equal(coxph._sort_order(stop, event, codes), want)
