"""The churn model's memory-saving paths give the numbers of the plain computations, bit for bit.

Cluster sums over the residual rows at risk (in lifelines' order) against
``cluster_sandwich`` on the full per-row matrix; the blockwise column standard
deviation against numpy's; the distinct-design hash against pandas' groupby; and the
narrow categorical read of the episodes against the whole table.
"""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

from analysis import config
from analysis.columns import read_columns
from analysis.models import coxph, design
from analysis.models.clustered import cluster_sandwich
from analysis.prepare import LazyFrames
from analysis.models.survival import (_distinct_designs, _quarter_factor, fit_churn,
                                      km_by_plan, logrank_by_plan)
from tests.test_models_recovery import make_episodes

COLUMNS = list(config.CHURN_EPISODE_COLUMNS)


@pytest.fixture(scope="module")
def episodes() -> pd.DataFrame:
    return make_episodes(3, n_customers=600, n_teams=8)


@pytest.mark.parametrize("labels", ["codes", "strings"])
def test_cov_robust_equals_the_sandwich_of_the_full_residual_matrix(episodes, labels):
    strata = design.factor_codes(episodes["team_id"])
    x = design.regressors(episodes).to_numpy()
    fit = coxph.cox_fit(episodes["start"].to_numpy(float), episodes["stop"].to_numpy(float),
                        episodes["event"].to_numpy(int), x, strata, names=list(config.TERMS))
    assert len(fit.score_rows) < fit.n_rows        # some rows are in no risk set
    assert not np.all(np.diff(fit.score_rows) > 0)   # stored in lifelines' order
    clusters = strata if labels == "codes" else episodes["team_id"].to_numpy()
    for small in (False, True):
        want = cluster_sandwich(fit.cov_naive, fit.score_residuals, clusters,
                                small_sample=small)
        np.testing.assert_array_equal(fit.cov_robust(clusters, small_sample=small), want)


def test_column_std_equals_numpy_std():
    rng = np.random.default_rng(5)
    for n in (3, coxph.STD_BLOCK + 17, 3 * coxph.STD_BLOCK):
        values = rng.normal(size=(n, 6)) * rng.uniform(0.01, 50, 6) + rng.normal(size=6)
        np.testing.assert_array_equal(coxph._column_std(values - values.mean(0)),
                                      values.std(0, ddof=1))


def test_distinct_designs_equal_the_groupby_of_the_rows(episodes):
    strata = design.factor_codes(episodes["team_id"])
    quarters, _ = _quarter_factor(episodes["quarter"])
    x = design.regressors(episodes)
    xd, sd, qd, counts = _distinct_designs(x, strata, quarters)
    key = x.assign(_s=strata, _q=quarters)
    groups = key.groupby(list(key.columns), sort=False).size()
    rows = groups.index.to_frame(index=False)
    pd.testing.assert_frame_equal(xd, rows[list(x.columns)], check_exact=True)
    np.testing.assert_array_equal(sd, rows["_s"].to_numpy(np.int64))
    np.testing.assert_array_equal(qd, rows["_q"].to_numpy(np.int64))
    np.testing.assert_array_equal(counts, groups.to_numpy(float))


def test_narrow_categorical_read_gives_the_same_churn_results(episodes, tmp_path):
    (tmp_path / "derived").mkdir()
    episodes.to_parquet(tmp_path / "derived" / "survival_episodes.parquet", index=False)
    cached = SimpleNamespace(location=tmp_path,
                             derived=LazyFrames(["survival_episodes"], tmp_path / "derived"))
    narrow = read_columns(cached, "derived", "survival_episodes", COLUMNS, categories=True)
    assert list(narrow.columns) == COLUMNS
    assert all(isinstance(narrow[c].dtype, pd.CategoricalDtype)
               for c in ("customer_id", "team_id", "plan_id", "quarter"))
    want, got = fit_churn(episodes), fit_churn(narrow)
    pd.testing.assert_frame_equal(got.effects, want.effects, check_exact=True)
    drop = ["seconds", "jackknife_seconds"]
    pd.testing.assert_frame_equal(got.summary.drop(columns=drop, errors="ignore"),
                                  want.summary.drop(columns=drop, errors="ignore"),
                                  check_exact=True)
    pd.testing.assert_frame_equal(got.extras["ph_test"], want.extras["ph_test"],
                                  check_exact=True)
    pd.testing.assert_frame_equal(km_by_plan(narrow), km_by_plan(episodes), check_exact=True)
    pd.testing.assert_frame_equal(logrank_by_plan(narrow), logrank_by_plan(episodes),
                                  check_exact=True)
    with pytest.raises(KeyError, match="no column"):
        read_columns(cached, "derived", "survival_episodes", ["not_a_column"])
