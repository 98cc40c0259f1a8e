"""Wild-bootstrap p-values beside the analytic ones (10 to 40 teams), and their design.

Issue 3, item 7: between ``MIN_CLUSTERS`` and ~40 teams the analyst notebooks show
wild cluster bootstrap p-values beside the analytic ones. They must be pyfixest's own
(``Feols.wildboottest``, same draws and seed), appear only in that range of teams, and
the weighted route's design must keep exactly the dummy columns that add rank.
"""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pandas as pd
import pyfixest as pf
import pytest
from test_models_recovery import make_panel

from analysis.config import MIN_CLUSTERS, SEED, TERMS
from analysis.models import fit_linear
from analysis.models.clustered import (WILD_COMPARE_MAX_CLUSTERS, WILD_COMPARE_REPS,
                                       WildTest, _independent)
from analysis.wild_compare import wild_comparison


def _greedy_rank(z: np.ndarray) -> list[int]:
    """The definition: keep column j when it raises the rank of the columns kept so far."""
    kept: list[int] = []
    for j in range(z.shape[1]):
        if np.linalg.matrix_rank(z[:, kept + [j]]) == len(kept) + 1:
            kept.append(j)
    return kept


def test_independent_columns_match_the_rank_definition():
    rng = np.random.default_rng(3)
    codes = pd.DataFrame({"rep": rng.integers(0, 25, 400).astype(str),
                          "quarter": rng.integers(0, 6, 400).astype(str)})
    dummies = pd.get_dummies(codes, dtype=float).to_numpy()
    z = np.column_stack([dummies, dummies[:, 3] + dummies[:, 7], np.zeros(400)])
    z = z * np.sqrt(rng.uniform(1, 9, 400))[:, None]   # the √w scaling of the weighted route
    kept = _independent(z)
    assert kept == _greedy_rank(z)
    # rep and quarter dummies share one redundancy; plus the sum column and the zero column
    assert len(kept) == z.shape[1] - 3


@pytest.fixture(scope="module")
def panel_24():
    return make_panel(11, n_teams=24, reps=4)


@pytest.fixture(scope="module")
def bookings_24(panel_24):
    return fit_linear(panel_24, "bookings")


def test_wild_p_values_are_pyfixests_own(panel_24, bookings_24):
    wild = bookings_24.extras["wild_p"].set_index("term")
    assert list(wild.index) == list(TERMS)
    assert (wild["reps"] == WILD_COMPARE_REPS).all()
    data = panel_24.assign(team=pd.factorize(panel_24["team_id"])[0])
    data[list(TERMS)] = data[list(TERMS)] / 0.1
    fit = pf.feols("log_bookings ~ " + " + ".join(TERMS) + " | rep_id + quarter", data=data,
                   vcov={"CRV1": "team"})
    for term in ("w_new_customers", "w_complaints"):
        own = fit.wildboottest(param=term, reps=WILD_COMPARE_REPS, seed=SEED,
                               weights_type="webb")
        assert wild.loc[term, "p_value_wild"] == float(own["Pr(>|t|)"])


def test_comparison_puts_both_p_values_side_by_side(bookings_24):
    without = SimpleNamespace(effects=bookings_24.effects, extras={"wild_p": None})
    table = wild_comparison({"bookings": bookings_24, "complaints": without})
    assert list(table["term"]) == list(TERMS)
    assert (table["n_clusters"] == 24).all()
    analytic = bookings_24.effects.set_index("term")["p_value"]
    assert np.allclose(table.set_index("term")["p_value"], analytic[table["term"]])
    assert table["p_value_wild"].between(0, 1).all()
    # the two tests answer the same question: on a 24-team panel they agree on which
    # effects are clearly non-zero and which clearly are not
    clear = (table["p_value"] < 0.001) | (table["p_value"] > 0.5)
    agree = (table["p_value_wild"] < 0.05) == (table["p_value"] < 0.05)
    assert clear.any() and agree[clear].all()


@pytest.mark.parametrize("n_teams", [MIN_CLUSTERS - 2, WILD_COMPARE_MAX_CLUSTERS + 2])
def test_no_side_by_side_outside_its_range(n_teams):
    fit = fit_linear(make_panel(5, n_teams=n_teams, reps=2), "csat", wild_reps=199)
    assert fit.extras["wild_p"] is None


def test_weighted_design_is_pyfixests_one_hot_design(panel_24):
    # the weighted route takes its bootstrap design from the √w-scaled frame instead of
    # fitting it; it must be exactly what pyfixest's wildboottest would build
    data = panel_24.loc[panel_24["csat_responses"] > 0]
    test = WildTest(data, "csat_mean", list(TERMS), ["rep_id", "quarter"], "team_id",
                    weights="csat_responses", reps=99)
    y, x, names, clusters = test.design()
    fit = test.fit()
    y_pf, x_pf, names_pf = fit._model_matrix_one_hot()
    assert names == list(names_pf)
    assert np.array_equal(x, np.asarray(x_pf, float))
    assert np.array_equal(y, np.asarray(y_pf, float).ravel())
    assert np.array_equal(clusters, fit._data["team_id"].to_numpy().ravel())
