"""Recovery and property tests of the model package on small seeded simulations."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyfixest as pf
import pytest

from analysis.config import SEED, TERMS, WEIGHTS
from analysis.models import fit_effects
from analysis.models.clustered import (BISECT_TOL, WILD_MIN_CLUSTERS, WildResult, WildTest,
                                       wild_cluster_ci)
from analysis.models.panel import fit_complaints, fit_linear
from analysis.models.renewal import fit_renewal
from analysis.models.survival import fit_churn
from analysis.models.tidy import EFFECT_COLUMNS

BETA = dict(zip(TERMS, [0.10, -0.05, 0.20, 0.0, -0.10]))


def _plans(rng, n_plans):
    return pd.DataFrame(rng.dirichlet(np.ones(6), size=n_plans), columns=list(WEIGHTS))


def make_panel(seed, n_teams=20, reps=4, n_q=10, n_plans=8):
    rng = np.random.default_rng(seed)
    plans = _plans(rng, n_plans)
    team_plan = rng.integers(0, n_plans, size=(n_teams, n_q))
    t, r, q = np.meshgrid(np.arange(n_teams), np.arange(reps), np.arange(n_q), indexing="ij")
    t, r, q = t.ravel(), r.ravel(), q.ravel()
    w = plans.iloc[team_plan[t, q]].reset_index(drop=True)
    xb = sum(BETA[k] * w[k] / 0.1 for k in TERMS)
    alpha = rng.normal(size=n_teams * reps)[t * reps + r]
    qeff = rng.normal(size=n_q)[q]
    shock = rng.normal(scale=0.3, size=(n_teams, n_q))[t, q]   # team-quarter: needs clustering
    n = len(t)
    df = w.assign(rep_id=[f"r{a}_{b}" for a, b in zip(t, r)], team_id=[f"t{a}" for a in t],
                  quarter=[f"Q{a:02d}" for a in q])
    df["log_bookings"] = alpha + qeff + xb + shock + rng.normal(size=n)
    df["csat_responses"] = rng.integers(0, 15, n)
    df["csat_mean"] = 4 + 0.2 * alpha + xb + shock + rng.normal(size=n)
    df["nps_responses"] = df["csat_responses"]
    df["nps"] = 30 + 10 * (alpha + xb + shock) + 20 * rng.normal(size=n)
    df["exposure"] = rng.uniform(0.2, 8, n)
    df["complaints"] = rng.poisson(df["exposure"] * np.exp(-1.5 + 0.3 * alpha + xb + 0.2 * qeff))
    return df


def make_renewals(seed, n=3000, n_teams=20, n_q=8, n_plans=8):
    rng = np.random.default_rng(seed)
    plans = _plans(rng, n_plans)
    team, q = rng.integers(0, n_teams, n), rng.integers(0, n_q, n)
    w = plans.iloc[rng.integers(0, n_plans, size=(n_teams, n_q))[team, q]].reset_index(drop=True)
    eta = 0.8 + rng.normal(size=n_teams)[team] + sum(BETA[k] * w[k] / 0.1 for k in TERMS)
    return w.assign(team_id=[f"t{a}" for a in team], end_quarter=[f"Q{a}" for a in q],
                    renewed=(rng.uniform(size=n) < 1 / (1 + np.exp(-eta))).astype(int),
                    segment=rng.choice(["SMB", "Mid-market", "Enterprise"], n),
                    annual_value=rng.gamma(2, 1000, n), tenure_days=rng.integers(90, 2000, n))


def make_episodes(seed, n_customers=1500, n_teams=20, n_q=8, n_plans=8, q_days=91):
    rng = np.random.default_rng(seed)
    plans = _plans(rng, n_plans).assign(plan_id=[f"p{i}" for i in range(n_plans)])
    team_plan = rng.integers(0, n_plans, size=(n_teams, n_q))
    team_eff = rng.normal(scale=0.5, size=n_teams)
    rows = []
    for i in range(n_customers):
        team, acq = rng.integers(n_teams), rng.integers(0, n_q * q_days - 30)
        cal = acq
        while cal < n_q * q_days:
            q = cal // q_days
            qend = (q + 1) * q_days
            p = plans.iloc[team_plan[team, q]]
            h = np.exp(team_eff[team] + sum(BETA[k] * p[k] / 0.1 for k in TERMS)) / 700
            dt = rng.exponential(1 / h)
            ev = int(cal + dt < qend)
            stop = (cal - acq) + (max(1, int(np.ceil(dt))) if ev else qend - cal)
            rows.append({"customer_id": f"c{i}", "team_id": f"t{team}", "start": cal - acq,
                         "stop": stop, "event": ev, "quarter": f"Q{q}", "plan_id": p["plan_id"],
                         **{k: p[k] for k in WEIGHTS}})
            if ev:
                break
            cal = qend
    return pd.DataFrame(rows)


def _estimable(fit):
    return fit.effects.set_index("term")


def test_linear_fe_recovers_betas_with_nominal_coverage():
    hits, n = 0, 0
    for seed in range(40):
        eff = _estimable(fit_linear(make_panel(seed), "bookings"))
        assert eff["estimable"].all()
        for term in TERMS:
            n += 1
            hits += eff.loc[term, "conf_low"] <= BETA[term] <= eff.loc[term, "conf_high"]
    assert 0.88 <= hits / n <= 0.995, hits / n


def test_every_model_recovers_signs_and_shape():
    res = fit_effects({"rep_quarter_panel": make_panel(1), "renewal_table": make_renewals(1),
                       "survival_episodes": make_episodes(1)})
    assert list(res.effects.columns) == list(EFFECT_COLUMNS)
    assert set(res.summaries["model"]) == {"cox_stratified_tv", "logit_fe", "logit_fe_controls",
                                           "poisson_fe", "ols_fe"}
    head = res.effects[res.effects["model"].isin(["cox_stratified_tv", "logit_fe", "poisson_fe",
                                                  "ols_fe"])]
    assert len(head) == 6 * 5 and head["estimable"].all()
    assert (head["per"] == 0.10).all()
    sat = head[head["term"] == "w_satisfaction"].set_index("outcome")["conf_low"]
    for outcome in ("renewal", "complaints", "csat", "nps", "bookings", "churn"):
        assert sat[outcome] > 0, outcome  # true effect 0.2 (x10 for nps) everywhere
    assert res.extras["churn"]["ph_test"]["p_value"].between(0, 1).all()
    assert not res.extras["churn"]["km"].empty


def test_no_variation_term_is_not_estimable_with_reason():
    panel = make_panel(2)
    panel["w_revenue"] += panel["w_process"] - 0.1
    panel["w_process"] = 0.1
    eff = _estimable(fit_linear(panel, "csat"))
    assert not eff.loc["w_process", "estimable"]
    assert "no variation" in eff.loc["w_process", "note"]
    assert eff.loc[["w_process"], ["estimate", "std_error", "conf_low"]].isna().all(axis=None)
    assert eff.drop("w_process")["estimable"].all()


def test_collinear_term_is_not_estimable_with_reason():
    panel = make_panel(3)
    total = panel["w_collection"] + panel["w_complaints"]
    panel["w_collection"] = panel["w_complaints"] = total / 2
    eff = _estimable(fit_complaints(panel))
    assert not eff.loc["w_complaints", "estimable"]
    assert "collinear with w_new_customers, w_collection" in eff.loc["w_complaints", "note"]
    assert np.isnan(eff.loc["w_complaints", "estimate"])


@pytest.fixture(scope="module")
def few_teams_panel():
    return make_panel(4, n_teams=6, reps=6)


@pytest.fixture(scope="module")
def few_teams_bookings(few_teams_panel):
    return fit_linear(few_teams_panel, "bookings", wild_reps=1999)


def test_few_clusters_use_wild_bootstrap_or_are_withheld(few_teams_panel, few_teams_bookings):
    panel = few_teams_panel
    lin = _estimable(few_teams_bookings)
    assert lin["estimable"].all()
    assert lin["note"].str.contains("wild cluster bootstrap").all()
    assert (lin["conf_low"] < lin["estimate"]).all() and (lin["estimate"] < lin["conf_high"]).all()
    pois = _estimable(fit_complaints(panel))
    assert (~pois["estimable"]).all() and pois["note"].str.contains("6 teams").all()
    ren = fit_renewal(make_renewals(4, n_teams=6)).effects
    assert (~ren["estimable"]).all()
    churn = fit_churn(make_episodes(4, n_customers=400, n_teams=6)).effects
    assert (~churn["estimable"]).all() and churn["estimate"].isna().all()


def test_wild_p_value_is_pyfixests_own(few_teams_panel, few_teams_bookings):
    # fit_linear's p-value is pyfixest's Feols.wildboottest on the same model, seed and draws
    data = few_teams_panel.assign(y=few_teams_panel["log_bookings"] / 1.0,
                                  team=pd.factorize(few_teams_panel["team_id"])[0])
    data[list(TERMS)] = data[list(TERMS)] / 0.1
    fit = pf.feols("y ~ " + " + ".join(TERMS) + " | rep_id + quarter", data=data,
                   vcov={"CRV1": "team"})
    lin = _estimable(few_teams_bookings)
    for term in ("w_satisfaction", "w_process"):
        own = fit.wildboottest(param=term, reps=1999, seed=SEED, weights_type="webb")
        assert lin.loc[term, "p_value"] == float(own["Pr(>|t|)"])
        assert lin.loc[term, "estimate"] == pytest.approx(float(fit.coef()[term]), abs=1e-10)


def test_wild_interval_inverts_the_library_test(few_teams_panel):
    data = few_teams_panel.assign(y=few_teams_panel["log_bookings"], one=1.0)
    test = WildTest(data, "y", list(TERMS), ["rep_id", "quarter"], "team_id", reps=999)
    res = wild_cluster_ci(test, "w_satisfaction")
    step = 0.6 * BISECT_TOL * float(test.fit().se()["w_satisfaction"])
    assert test.p_value("w_satisfaction", res.conf_high - step) > 0.05
    assert test.p_value("w_satisfaction", res.conf_high + step) <= 0.05
    # a weighted model is bootstrapped as the OLS it equals: with unit weights the
    # sqrt(w)-scaled route gives the library's unweighted p-value exactly
    scaled = WildTest(data, "y", list(TERMS), ["rep_id", "quarter"], "team_id",
                      weights="one", reps=999)
    assert scaled.p_value("w_satisfaction", 0.3) == test.p_value("w_satisfaction", 0.3)


def test_weighted_wild_route_fits_the_weighted_model(few_teams_panel):
    data = few_teams_panel.loc[few_teams_panel["csat_responses"] > 0]
    scaled = WildTest(data, "csat_mean", list(TERMS), ["rep_id", "quarter"], "team_id",
                      weights="csat_responses").fit()
    wls = pf.feols("csat_mean ~ " + " + ".join(TERMS) + " | rep_id + quarter", data=data,
                   weights="csat_responses", vcov={"CRV1": "team_id"})
    np.testing.assert_allclose(scaled.coef()[list(TERMS)], wls.coef()[list(TERMS)], atol=1e-9)


def test_perfect_separation_does_not_crash():
    ren = make_renewals(6)
    ren.loc[ren["team_id"] == "t0", "renewed"] = 1          # a team that always renews
    ren.loc[ren["end_quarter"] == "Q3", "renewed"] = 0      # a quarter nobody renewed
    fit = fit_renewal(ren)
    assert fit.effects.loc[fit.effects["model"] == "logit_fe", "estimable"].all()
    note = fit.summary.loc[0, "note"]
    assert "1 teams and 1 quarters" in note
    assert fit.summary.loc[0, "n_obs"] < len(ren)
    everyone = fit_renewal(ren.assign(renewed=1))
    assert (~everyone.effects["estimable"]).all()


def test_rows_without_a_plan_are_excluded_and_counted():
    panel = make_panel(7)
    panel.loc[:9, list(WEIGHTS)] = np.nan
    fit = fit_linear(panel, "bookings")
    assert (fit.effects["n_obs"] == len(panel) - 10).all()


def test_inputs_are_not_mutated():
    panel = make_panel(8)
    before = panel.copy()
    fit_complaints(panel)
    fit_linear(panel, "nps")
    pd.testing.assert_frame_equal(panel, before)


def test_wild_shifted_null_equals_refitting_pyfixest(few_teams_panel):
    # H0: beta = b0 on the design built once == pyfixest's wildboottest on y - b0*x refitted
    data = few_teams_panel.assign(y=few_teams_panel["log_bookings"])
    test = WildTest(data, "y", list(TERMS), ["rep_id", "quarter"], "team_id", reps=999)
    own = test.fit("w_process", 0.25).wildboottest(param="w_process", reps=999, seed=SEED,
                                                    weights_type="webb")
    assert test.p_value("w_process", 0.25) == pytest.approx(float(own["Pr(>|t|)"]), abs=1e-12)


def test_wild_interval_is_cheap_and_bounded_in_library_calls(few_teams_panel):
    data = few_teams_panel.assign(y=few_teams_panel["log_bookings"])
    test = WildTest(data, "y", list(TERMS), ["rep_id", "quarter"], "team_id", reps=999)
    res = wild_cluster_ci(test, "w_new_customers")
    assert res.finite and res.calls <= 20


@pytest.mark.parametrize("n_teams", [2, 3, 4])
def test_too_few_teams_for_any_interval(n_teams):
    assert n_teams < WILD_MIN_CLUSTERS
    panel = make_panel(5, n_teams=n_teams, reps=5, n_q=5)
    eff = fit_linear(panel, "bookings").effects
    assert not eff["estimable"].any()
    assert eff["conf_low"].isna().all() and eff["estimate"].isna().all()
    few = eff["note"].str.contains(f"too few teams \\({n_teams}\\) for any cluster-robust "
                                   "interval")
    assert few.any() and (few | eff["note"].str.contains("collinear|variation")).all()


def test_unbounded_wild_interval_is_not_estimable(few_teams_panel, monkeypatch):
    import analysis.models.panel as panel_mod

    monkeypatch.setattr(panel_mod, "wild_cluster_ci", lambda test, term: WildResult(
        0.1, -np.inf, 0.3, 0.4, 99, 6, 3, "lower bound not reached"))
    eff = fit_linear(few_teams_panel, "bookings", wild_reps=99).effects
    assert not eff["estimable"].any()
    assert eff["note"].str.contains("unbounded").all()
    assert eff[["estimate", "conf_low", "conf_high", "p_value"]].isna().all(axis=None)


def test_non_finite_numbers_never_leave_a_model():
    from analysis.models.tidy import effect_row, effects_frame

    row = effect_row("csat", "w_process", "ols_fe", "csat_points", estimate=0.1,
                     std_error=0.05, df=5, n_obs=10, n_clusters=6)
    row["conf_low"] = -np.inf
    out = effects_frame([row]).iloc[0]
    assert not out["estimable"] and np.isnan(out["conf_low"]) and "non-finite" in out["note"]


def test_cox_fit_failure_is_reported_not_raised(monkeypatch):
    from lifelines.exceptions import ConvergenceError

    import analysis.models.survival as surv

    def boom(*a, **k):
        raise ConvergenceError("Convergence halted due to matrix inversion problems.")

    monkeypatch.setattr(surv, "cox_fit", boom)
    eff = fit_churn(make_episodes(6, n_customers=400)).effects
    assert not eff["estimable"].any()
    assert eff["note"].str.contains("ConvergenceError").all()


def test_too_few_churn_events_are_not_fitted():
    ep = make_episodes(7, n_customers=300)
    keep = ep.index[ep["event"] == 1][:5]
    ep.loc[~ep.index.isin(keep), "event"] = 0
    eff = fit_churn(ep).effects
    assert not eff["estimable"].any()
    assert eff["note"].str.contains("insufficient data: 5 churn events").all()


def test_km_statistical_failure_gives_an_empty_table(monkeypatch):
    from lifelines import KaplanMeierFitter
    from lifelines.exceptions import StatError

    from analysis.models.survival import km_by_plan

    def boom(self, *a, **k):
        raise StatError("too few early truncation times and too many events")

    monkeypatch.setattr(KaplanMeierFitter, "fit", boom)
    km = km_by_plan(make_episodes(8, n_customers=100))
    assert km.empty and "Kaplan-Meier not estimable" in km.attrs["note"]


def test_fast_cox_fit_equals_a_cold_lifelines_fit():
    # cox_fit passes lifelines only the rows at risk at some event time, presorted,
    # and starts its Newton-Raphson at the vectorised Efron maximum; lifelines'
    # CoxPHFitter on every row from zero must give the same fit
    import warnings

    from lifelines import CoxPHFitter

    from analysis.models.cox_residuals import rows_at_risk
    from analysis.models.coxph import FIT_OPTIONS, cox_fit

    ep = make_episodes(9, n_customers=600, n_teams=8)
    ep = ep.assign(start=ep["start"] + 10 * (ep["start"] > 0))   # gaps: rows in no risk set
    ep = ep[ep["stop"] > ep["start"]].reset_index(drop=True)
    strata = pd.factorize(ep["team_id"])[0]
    qd = pd.get_dummies(ep["quarter"].astype(str), prefix="q", drop_first=True, dtype=float)
    x = pd.concat([ep[list(TERMS)].astype(float).reset_index(drop=True), qd], axis=1)
    used = rows_at_risk(ep["start"], ep["stop"], ep["event"], strata)
    assert 0 < (~used).sum() < len(ep)
    fit = cox_fit(ep["start"], ep["stop"], ep["event"], x, strata)
    frame = x.assign(_start=ep["start"].to_numpy(float), _stop=ep["stop"].to_numpy(float),
                     _event=ep["event"].to_numpy(int), _stratum=strata)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref = CoxPHFitter().fit(frame, duration_col="_stop", event_col="_event",
                                entry_col="_start", strata=["_stratum"],
                                fit_options=dict(FIT_OPTIONS))
    assert fit.converged
    # lifelines stops from zero once its Newton decrement is below 1e-12 (or the
    # log-likelihood moves < 1e-9 relative) and returns that point without the last
    # step: its coefficients are within ~1e-8 of the maximum (seen: 8e-9 on a
    # quarter indicator); cox_fit's start is closer, lifelines accepts it unchanged
    np.testing.assert_allclose(fit.params, ref.params_.to_numpy(), rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(fit.cov_naive, ref.variance_matrix_.to_numpy(), rtol=1e-7)
    np.testing.assert_allclose(fit.loglik, ref.log_likelihood_, rtol=1e-12)
    np.testing.assert_allclose(fit.loglik_null, ref._ll_null_, rtol=1e-12)
    # rows in no risk set have zero score residuals; the others sum to the score (0)
    assert np.all(fit.score_residuals[~used] == 0)
    np.testing.assert_allclose(fit.score_residuals.sum(0), 0, atol=1e-6)


def test_presorted_arrays_give_what_lifelines_preprocessing_gives():
    from analysis.models.coxph import _semiparametric_class

    ep = make_episodes(11, n_customers=300, n_teams=5)
    strata = pd.factorize(ep["team_id"])[0]
    order = np.lexsort((ep["event"], ep["stop"], strata))
    ep, strata = ep.iloc[order].reset_index(drop=True), strata[order]
    x = ep[list(TERMS)].to_numpy(float)
    start, stop = ep["start"].to_numpy(float), ep["stop"].to_numpy(float)
    event = ep["event"].to_numpy(int)
    frame = pd.DataFrame(x, columns=list(TERMS)).assign(_start=start, _stop=stop,
                                                         _event=event, _stratum=strata)
    fitter = _semiparametric_class()()
    fitter._setup(len(frame), True)
    ref = fitter._preprocess_dataframe(frame)[:5]
    ours = fitter.preprocess_sorted(x, list(TERMS), start, stop, event, strata)
    pd.testing.assert_frame_equal(ours[0], ref[0])
    for a, b in zip(ours[1:], ref[1:]):
        pd.testing.assert_series_equal(a, b)


def test_quarter_dummies_and_distinct_designs_match_the_plain_computation():
    from analysis.models import design
    from analysis.models.survival import _distinct_designs, _quarter_dummies

    ep = make_episodes(10, n_customers=400, n_teams=6)
    ref = pd.get_dummies(ep["quarter"].astype(str), prefix="q", drop_first=True, dtype=float)
    pd.testing.assert_frame_equal(_quarter_dummies(ep["quarter"]), ref)
    strata, quarters = design.factor_codes(ep["team_id"]), design.factor_codes(ep["quarter"])
    x = design.regressors(ep).assign(w_process=1.0)            # one term without variation
    xd, sd, qd, counts = _distinct_designs(x, strata, quarters)
    assert len(xd) < len(x) and counts.sum() == len(x)
    full = design.identifiability(x, [strata, quarters], "team strata and quarter")
    distinct = design.identifiability(xd, [sd, qd], "team strata and quarter", weights=counts)
    assert distinct == full and full["w_process"] and not full["w_new_customers"]
    within = design.demean(x.to_numpy(float), [strata, quarters])
    within_d = design.demean(xd.to_numpy(float), [sd, qd], counts)
    np.testing.assert_allclose((within ** 2).sum(0), counts @ within_d ** 2, rtol=1e-8,
                               atol=1e-10)

