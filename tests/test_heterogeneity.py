"""Subgroup effects of the satisfaction weight and the multiple-testing adjustment.

Truth: the sample company's effects are the same for every customer, segment and
plan scope (docs/sample-company.md), so every subgroup interval must cover the
common true effect (exact for CSAT and NPS, the true model for renewal) and every
difference interval must cover 0.
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import statsmodels.api as sm
from statsmodels.stats.multitest import multipletests

from analysis.config import SAMPLE_DIR
from analysis.decision import heterogeneity as het
from analysis.decision.multiple_testing import adjust_pvalues
from analysis.errors import ParameterError
from analysis.models.tidy import EFFECT_COLUMNS


@pytest.fixture(scope="module")
def prepared():
    from analysis.prepare import prepare

    return prepare("", "2025Q4", "")


@pytest.fixture(scope="module")
def table(prepared):
    return het.heterogeneity(prepared.derived, prepared.tables, prepared.as_of)


def test_holm_matches_statsmodels_and_skips_missing_rows():
    rows = pd.DataFrame({"p_value": [0.01, 0.04, np.nan, 0.03], "note": ["a", "", "x", ""]})
    out = adjust_pvalues(rows, family="test")
    expected = multipletests([0.01, 0.04, 0.03], method="holm")[1]
    np.testing.assert_allclose(out["p_adjusted"].dropna(), expected)
    assert np.isnan(out["p_adjusted"].iloc[2]) and out["note"].iloc[2] == "x"
    assert "Holm" in out["note"].iloc[0] and "3 tests" in out["note"].iloc[0]
    assert rows.columns.tolist() == ["p_value", "note"]  # input not modified
    with pytest.raises(ParameterError, match="holm"):
        adjust_pvalues(rows, method="sidak")


def test_newton_logit_matches_statsmodels():
    rng = np.random.default_rng(3)
    x = np.column_stack([np.ones(400), rng.normal(size=(400, 3))])
    y = (rng.random(400) < 1 / (1 + np.exp(-x @ [0.2, 1.0, -0.5, 0.0]))).astype(float)
    beta, info = het.logit_newton(x, y)
    ref = sm.GLM(y, x, family=sm.families.Binomial()).fit(tol=1e-12)
    np.testing.assert_allclose(beta, ref.params, rtol=1e-8)
    np.testing.assert_allclose(np.linalg.inv(info), ref.cov_params(), rtol=1e-6)


def test_scope_split_adds_up_to_the_panel_weight(prepared):
    scopes = het.scope_weights(prepared.tables, prepared.as_of)
    panel = prepared.derived["rep_quarter_panel"].merge(scopes, on=["team_id", "quarter"])
    total = panel["w_sat_team"] + panel["w_sat_individual"]
    np.testing.assert_allclose(total, panel["w_satisfaction"], atol=1e-12)


def test_table_shape_and_adjustment(table):
    assert set(EFFECT_COLUMNS) | {"p_adjusted"} == set(table.columns)
    assert set(table["model"]) == {"logit_fe_by_tenure", "logit_fe_by_segment",
                                   "logit_fe_by_scope", "ols_fe_by_scope"}
    ok = table["estimable"]
    assert ok.all()
    assert (table["p_adjusted"] >= table["p_value"] - 1e-15).all()
    assert table["note"].str.contains(f"Holm step-down .* over the {len(table)} tests",
                                      regex=True).all()


def test_subgroups_cover_the_common_truth(table):
    truth = json.loads((SAMPLE_DIR / "ground_truth.json").read_text())
    beta = {e["outcome"]: e["estimate"] for e in truth["effects"]
            if e["term"] == "w_satisfaction"}
    for row in table.itertuples(index=False):
        target = 0.0 if row.note.startswith("difference") else beta[row.outcome]
        assert row.conf_low <= target <= row.conf_high, (row.outcome, row.term)


def _many_team_renewals(n_teams: int, seed: int = 5) -> pd.DataFrame:
    """Synthetic renewal decisions: 40 per team over 4 quarters, plan weights per team-quarter."""
    from analysis.config import WEIGHTS

    rng = np.random.default_rng(seed)
    n = 40 * n_teams
    team = np.repeat(np.arange(n_teams), 40)
    quarter = rng.integers(0, 4, n)
    weights = rng.dirichlet(np.ones(len(WEIGHTS)), (n_teams, 4))[team, quarter]
    frame = pd.DataFrame(weights, columns=list(WEIGHTS))
    eta = 0.5 + 3 * frame["w_satisfaction"] + rng.normal(0, 0.5, n_teams)[team]
    frame["renewed"] = rng.random(n) < 1 / (1 + np.exp(-eta))
    frame["team_id"] = [f"T{t}" for t in team]
    frame["end_quarter"] = [f"2025Q{q + 1}" for q in quarter]
    frame["tenure_days"] = rng.integers(30, 1000, n)
    return frame


def test_many_teams_renewal_by_uses_the_sparse_design_with_the_same_numbers():
    from analysis.decision import heterogeneity as H
    from analysis.models.jackknife import JACKKNIFE_MAX_CLUSTERS

    data = _many_team_renewals(JACKKNIFE_MAX_CLUSTERS + 10)
    groups = pd.Series(np.where(data["tenure_days"] < 365, "new", "existing"), index=data.index)
    rows = pd.DataFrame(H.renewal_by(data, "tenure", groups))
    assert rows["estimable"].all() and rows["note"].str.contains("sparse team dummies").all()
    assert ((rows["conf_low"] < rows["estimate"]) & (rows["estimate"] < rows["conf_high"])).all()
    # the sparse route is the dense one's numbers: Newton maximum and CR1 sandwich
    x = pd.concat([pd.Series(1.0, index=data.index), data[["w_satisfaction"]],
                   pd.get_dummies(data["team_id"], drop_first=True, dtype=float)], axis=1)
    y = data["renewed"].to_numpy(float)
    xs = H.sparse_design(x.iloc[:, :2], data["team_id"])
    dense, info = H.logit_newton(x.to_numpy(float), y)
    sparse_beta, sparse_info = H.logit_newton(xs, y)
    # team dummies come in another order: compare the intercept and the slope
    np.testing.assert_allclose(sparse_beta[:2], dense[:2], rtol=1e-8, atol=1e-10)
    resid = y - 1 / (1 + np.exp(-(x.to_numpy(float) @ dense)))
    from analysis.models.clustered import cluster_sandwich

    expected = cluster_sandwich(np.linalg.pinv(info), x.to_numpy(float) * resid[:, None],
                                data["team_id"].to_numpy(), n_params=2)
    got = H.sparse_cr1(np.linalg.pinv(sparse_info), xs, resid, data["team_id"].to_numpy(),
                       n_params=2)
    np.testing.assert_allclose(got[:2, :2], expected[:2, :2], rtol=1e-6)


def test_team_block_logit_is_the_sparse_route():
    """The Schur-complement Newton and CR1 give the sparse route's numbers (rounding only)."""
    from analysis.models.jackknife import JACKKNIFE_MAX_CLUSTERS

    data = _many_team_renewals(JACKKNIFE_MAX_CLUSTERS + 30)
    new = (data["tenure_days"] < 365).to_numpy(float)
    dense = pd.DataFrame({"const": 1.0, "sat_new": data["w_satisfaction"] * new,
                          "sat_existing": data["w_satisfaction"] * (1 - new), "new": new,
                          "w_process": data["w_process"]})
    y = data["renewed"].to_numpy(float)
    beta, cov = het.team_fe_logit(dense.to_numpy(float), data["team_id"], y, [1, 2])
    xs = het.sparse_design(dense, data["team_id"])
    sparse_beta, info = het.logit_newton(xs, y)
    resid = y - 1 / (1 + np.exp(-(xs @ sparse_beta)))
    expected = het.sparse_cr1(np.linalg.pinv(info, hermitian=True), xs, resid,
                              data["team_id"].to_numpy(), n_params=dense.shape[1])
    np.testing.assert_allclose(beta, sparse_beta[:dense.shape[1]], rtol=1e-9)
    np.testing.assert_allclose(cov, expected[1:3, 1:3], rtol=1e-9)


def test_team_block_logit_leaves_a_flat_design_to_the_sparse_route():
    from analysis.models.jackknife import JACKKNIFE_MAX_CLUSTERS

    data = _many_team_renewals(JACKKNIFE_MAX_CLUSTERS + 10)
    team_constant = data.groupby("team_id")["w_process"].transform("first")
    dense = pd.DataFrame({"const": 1.0, "w_satisfaction": data["w_satisfaction"],
                          "team_level": team_constant})  # collinear with the team dummies
    assert het.team_fe_logit(dense.to_numpy(float), data["team_id"],
                             data["renewed"].to_numpy(float), [1]) is None
    groups = pd.Series("all", index=data.index)
    groups[data["w_process"] > team_constant] = "above"
    flat = data.assign(w_satisfaction=team_constant)  # no variation within a team
    rows = pd.DataFrame(het.renewal_by(flat, "level", groups))
    assert not rows["estimable"].any() and rows["note"].str.contains("does not vary").all()
