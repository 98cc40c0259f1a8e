"""Trade-off: objective formula, FWL = feols, and recovery of the true optimum.

The acceptance test plugs the sample's ground-truth effects (linear in the weights,
docs/sample-company.md) into the same objective with the same inputs and grid, and
asks that the recommended range contain the true optimum.
"""

from __future__ import annotations

import json
import math
import warnings

import numpy as np
import pytest

from analysis import config
from analysis.decision import tradeoff as T
from analysis.decision.tradeoff_bootstrap import linear_fwl
from analysis.prepare import prepare

#: FWL and feols solve the same least-squares problem; differences are rounding.
FWL_TOL = 1e-8


@pytest.fixture(scope="module")
def prepared():
    return prepare(None, "2025Q4", "2025-12-31")


@pytest.fixture(scope="module")
def result(prepared):
    return T.tradeoff_analysis(prepared)


def test_customer_value_by_hand():
    inputs = T.ObjectiveInputs(bookings=1000.0, customers=10.0, annual_value=200.0,
                               churn_hazard=0.1, renewal_rate=0.9, complaint_rate=0.1,
                               csat=4.0, nps=30.0, horizon=3.0)
    v = T.customer_value(math.log(1.1), math.log(0.5), inputs)
    h = 0.05
    expected = 4 * 3 * 1100.0 + 10 * 200 * (1 - math.exp(-3 * h)) / h
    assert v["objective"] == pytest.approx(expected, rel=1e-12)
    assert v["retention"] == pytest.approx(math.exp(-0.15))


def test_frontier_shape(result):
    f = result.frontier
    for col in ("weight", "objective", "conf_low", "conf_high", "bookings", "retention"):
        assert col in f
    assert f["weight"].is_monotonic_increasing
    assert (f["conf_low"] <= f["conf_high"]).all()
    rec = result.recommendation
    assert rec["term"] == "w_satisfaction" and rec["objective"] == T.OBJECTIVE
    lo, hi = rec["range"]
    assert f["weight"].min() - 1e-9 <= lo <= hi <= f["weight"].max() + 1e-9
    assert set(result.selection["form"]) <= {"linear", "curved"}


def test_range_contains_true_optimum(result):
    truth = json.loads((config.SAMPLE_DIR / "ground_truth.json").read_text())["effects"]
    tf = T.true_frontier(truth, result)
    best = float(tf["weight"].iloc[int(np.argmax(tf["objective"]))])
    lo, hi = result.recommendation["range"]
    assert lo - 1e-9 <= best <= hi + 1e-9, (best, lo, hi)


def test_fwl_matches_feols(prepared, result):
    data = T.model_data(prepared, result.current["w_satisfaction"] / config.EFFECT_PER)
    fits = T.fit_dose_response(data, criterion="linear", outcomes=("bookings", "csat"))
    for outcome in ("bookings", "csat"):
        rhs = list(fits[outcome].params.index)
        fwl = linear_fwl(data[outcome], outcome, rhs)
        np.testing.assert_allclose(fwl.to_numpy(), fits[outcome].params.to_numpy(),
                                   atol=FWL_TOL)


def test_plot_frontier(result):
    import matplotlib

    matplotlib.use("Agg")
    ax = T.plot_frontier(result.frontier, current=result.current_plans,
                         recommended=result.recommendation["range"])
    assert ax.get_xlabel()


def test_sparse_renewal_logit_matches_statsmodels(prepared, result):
    """The many-teams renewal fit (sparse Newton, CR1) = the statsmodels GLM on the sample."""
    from analysis.decision import tradeoff_models as M

    data = T.model_data(prepared, result.current["w_satisfaction"] / config.EFFECT_PER)
    rhs = list(config.TERMS)
    params, vcov = M._renewal(data["renewal"], rhs)
    sparse_params, sparse_vcov = M._renewal_sparse(data["renewal"], rhs)
    assert list(sparse_params.index) == list(params.index)
    np.testing.assert_allclose(sparse_params.to_numpy(), params.to_numpy(), rtol=1e-6)
    np.testing.assert_allclose(sparse_vcov.to_numpy(), vcov.to_numpy(), rtol=1e-5)


def test_many_teams_draw_from_the_models_covariance(prepared, result):
    """Above the threshold no team is resampled: normal draws, named in the note, and an
    interval of the same order as the bootstrap's around the point objective."""
    many = T.tradeoff_analysis(prepared, bootstrap_max_clusters=10)
    assert "normal draws from the models' CRV1-by-team covariance" in many.recommendation["note"]
    assert "team cluster bootstrap" not in many.recommendation["note"]
    assert "team cluster bootstrap" in result.recommendation["note"]
    f, b = many.frontier, result.frontier
    np.testing.assert_array_equal(f["objective"], b["objective"])  # same fits, same point
    assert ((f["conf_low"] <= f["objective"]) & (f["objective"] <= f["conf_high"])).all()
    ratio = (f["conf_high"] - f["conf_low"]) / (b["conf_high"] - b["conf_low"])
    assert ratio.between(0.25, 4).all(), ratio.describe()
    assert many.recommendation["range"] is not None


def _pyfixest_default(outcome, data, rhs):
    """The Poisson fit with pyfixest's own separation check (what ``_pyfixest`` replaces)."""
    import pyfixest as pf

    from analysis.decision import tradeoff_models as M

    y, offset = ("events", "log_days") if outcome == "churn" else ("complaints", "log_exposure")
    fe = " + ".join(M.FIXED_EFFECTS[outcome])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return pf.fepois(f"{y} ~ " + " + ".join(rhs) + f" | {fe}", data=data, offset=offset,
                         vcov={"CRV1": "team_id"})


@pytest.mark.parametrize("case", ["as is", "separated reps", "new singletons"])
def test_separation_found_without_pyfixest_check(prepared, result, case):
    """Rows dropped up front for separation give pyfixest's own fit bit for bit; when
    dropping them would leave new singletons pyfixest's check is used instead."""
    from analysis.decision import tradeoff_models as M

    data = T.model_data(prepared, result.current["w_satisfaction"] / config.EFFECT_PER)
    comp = data["complaints"].copy()
    reps = comp["rep_id"].drop_duplicates()
    if case != "as is":  # reps without any complaint are separated
        comp.loc[comp["rep_id"].isin(reps.iloc[:5]), "complaints"] = 0
    if case == "new singletons":  # a quarter without complaints: its rows go, and with
        # them all but one row of a rep
        q = comp["quarter"].iloc[0]
        comp.loc[comp["quarter"] == q, "complaints"] = 0
        rep = comp.loc[comp["rep_id"].isin(reps.iloc[5:]), "rep_id"].iloc[0]
        keep = comp.index[(comp["rep_id"] == rep) & (comp["quarter"] != q)][:1]
        comp = comp.drop(index=comp.index[(comp["rep_id"] == rep) & (comp["quarter"] != q)
                                          & ~comp.index.isin(keep)])
    drop = M._separated(comp, "complaints", [*config.TERMS, "log_exposure"],
                        M.FIXED_EFFECTS["complaints"])
    assert (drop is None) == (case == "new singletons")
    assert case != "separated reps" or len(drop) > 0
    rhs = list(config.TERMS)
    ours, theirs = M._pyfixest("complaints", comp, rhs), _pyfixest_default("complaints",
                                                                          comp, rhs)
    np.testing.assert_array_equal(np.asarray(ours.coef()), np.asarray(theirs.coef()))
    np.testing.assert_array_equal(np.asarray(ours._vcov), np.asarray(theirs._vcov))
    assert ours._N == theirs._N


def test_renewal_team_block_matches_sparse_design(prepared, result, monkeypatch):
    """The renewal logit through the diagonal team block equals the sparse-design route
    (coefficients and CR1 with every column counted) up to rounding."""
    from analysis.decision import tradeoff_models as M

    data = T.model_data(prepared, result.current["w_satisfaction"] / config.EFFECT_PER)
    rhs = [*config.TERMS, M.CURVE]
    params, vcov = M._renewal_sparse(data["renewal"], rhs)
    monkeypatch.setattr(M, "team_fe_logit", lambda *args, **kwargs: None)
    sparse_params, sparse_vcov = M._renewal_sparse(data["renewal"], rhs)
    assert list(params.index) == list(sparse_params.index) == rhs
    np.testing.assert_allclose(params.to_numpy(), sparse_params.to_numpy(), rtol=1e-9)
    np.testing.assert_allclose(vcov.to_numpy(), sparse_vcov.to_numpy(), rtol=1e-9)


def test_churn_cells_match_a_plain_groupby(prepared):
    """The cells equal the plain pandas aggregation of the episodes (with a plan)."""
    from analysis.decision import tradeoff_models as M

    episodes = prepared.derived["survival_episodes"].copy()
    episodes.loc[episodes.index[::9], "w_process"] = np.nan  # rows without a plan
    x0 = 2.0
    data = episodes.dropna(subset=list(config.WEIGHTS))
    data = data.assign(band=(data["start"] // M.BAND_DAYS).astype(int),
                       days=(data["stop"] - data["start"]).astype(float))
    want = (data.groupby(["team_id", "band", "quarter", *config.TERMS], as_index=False)
            .agg(events=("event", "sum"), days=("days", "sum")))
    got = M.churn_cells(episodes, x0)
    assert len(got) <= len(want)  # strata/quarters without events are dropped after
    want[list(config.TERMS)] = want[list(config.TERMS)] / config.EFFECT_PER
    merged = got.merge(want, on=["team_id", "band", "quarter", *config.TERMS],
                       suffixes=("", "_want"))
    assert len(merged) == len(got)
    np.testing.assert_array_equal(merged["events"], merged["events_want"])
    np.testing.assert_array_equal(merged["days"], merged["days_want"])


def _outcome_of(fit):
    """A fit's coefficients, or the type of the error it raised."""
    try:
        return fit()
    except Exception as exc:  # both routes must fail alike
        return type(exc)


@pytest.mark.parametrize("outcome", ["churn", "complaints"])
def test_poisson_refits_equal_fepois_on_the_resampled_frame(prepared, result, outcome):
    """A bootstrap draw refitted from the model matrices built once = ``fit_terms`` (pyfixest
    ``fepois``) on the resampled frame, bit for bit, or failing alike (one-team draws)."""
    from analysis.decision import tradeoff_bootstrap as B
    from analysis.decision import tradeoff_models as M

    data = T.model_data(prepared, result.current["w_satisfaction"] / config.EFFECT_PER)
    frame = data[outcome][["team_id", *B._MODEL_COLUMNS[outcome], *config.TERMS]
                          ].reset_index(drop=True)
    rhs = list(config.TERMS)
    refits = M.PoissonRefits(outcome, frame)
    where = {k: np.asarray(v) for k, v in frame.groupby("team_id", sort=False).indices.items()}
    teams = np.array(sorted(where))
    rng = np.random.default_rng(0)
    draws = [rng.integers(0, len(teams), len(teams)) for _ in range(3)]
    assert all(len(np.unique(d)) < len(d) for d in draws)  # some team drawn twice
    fitted = 0
    for draw in [*draws, np.zeros(1, dtype=int), np.array([1, 1])]:
        rows, fe = B._relabelled(frame, where, teams, draw, B._RELABEL[outcome])
        frame_draw = B._resample(frame, where, teams, draw, B._RELABEL[outcome])
        expected = _outcome_of(lambda: M.fit_terms(outcome, frame_draw, rhs, fast=True)[0])
        got = _outcome_of(lambda: refits.fit(rows, fe, rhs))
        if isinstance(expected, type):
            assert got is expected
            continue
        assert list(got.index) == list(expected.index)
        np.testing.assert_array_equal(got.to_numpy(), expected.to_numpy())
        fitted += 1
    assert fitted >= len(draws)
