"""CR3 (leave-one-team-out jackknife) errors of every headline model.

Each model's CR3 covariance is checked against the jackknife done by hand with the
same library (cold-started refits), the linear one also against pyfixest's own
CRV3; notes, t(G−1), the CR3 covariance in ``extras["vcov"]`` (what the what-if
uses) and the kept CR1 / Lin–Wei sandwiches are checked too. Above
``JACKKNIFE_MAX_CLUSTERS`` teams every model reports its CR1 / Lin–Wei sandwich
instead (no refits), with t(G−1), a note saying so and that covariance in
``extras["vcov"]``.
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pyfixest as pf
import pytest
import statsmodels.api as sm
from scipy import stats
from test_models_recovery import make_episodes, make_panel, make_renewals

from analysis.config import TERMS
from analysis.decision.whatif import effect_covariances
from analysis.models import fit_effects
from analysis.models.coxph import cox_coefficients, cox_fit
from analysis.models.jackknife import (JACKKNIFE_MAX_CLUSTERS, cr3_covariance, jackknife,
                                       use_jackknife)
from analysis.models.panel import fit_complaints, fit_linear
from analysis.models.renewal import drop_uninformative, fit_renewal
from analysis.models.survival import fit_churn

#: Same estimator, same data, refits warm- vs cold-started: optimiser tolerance.
REFIT_TOL = 1e-6
FML = "y ~ " + " + ".join(TERMS) + " | rep_id + quarter"


def _cr3(full: np.ndarray, loo: list[np.ndarray]) -> np.ndarray:
    loo = np.asarray(loo)
    g = len(loo)
    return (g - 1) / g * (loo - full).T @ (loo - full)


def _x(df: pd.DataFrame) -> pd.DataFrame:
    out = df.copy()
    out[list(TERMS)] = out[list(TERMS)] / 0.1
    return out


def test_cr3_formula_and_generic_loop():
    full = pd.Series({"a": 1.0, "b": 2.0})
    est = pd.DataFrame({"a": [1.1, 0.8, 1.0], "b": [2.0, 2.3, 1.9]})
    v = cr3_covariance(full, est)
    dev = est.to_numpy() - full.to_numpy()
    np.testing.assert_allclose(v.to_numpy(), 2 / 3 * dev.T @ dev)
    clusters = np.array(["x", "x", "y", "z", "z"])
    values = np.array([1.0, 2.0, 3.0, 4.0, 5.0])
    jk = jackknife(pd.Series({"mean": values.mean()}), clusters,
                   lambda keep, g: pd.Series({"mean": values[keep].mean()}))
    loo = np.array([values[clusters != g].mean() for g in ("x", "y", "z")])
    assert jk.n_clusters == 3
    assert jk.std_error("mean") == pytest.approx(
        np.sqrt(2 / 3 * ((loo - values.mean()) ** 2).sum()))


def test_linear_cr3_is_pyfixests_crv3_without_its_cr1_factor():
    panel = make_panel(11)
    data = _x(panel.loc[panel["csat_responses"] > 0]).assign(y=lambda d: d["csat_mean"])
    eff = fit_linear(panel, "csat").effects.set_index("term")
    g = data["team_id"].nunique()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        lib = pf.feols(FML, data=data, weights="csat_responses", vcov={"CRV3": "team_id"},
                       ssc=pf.ssc(k_adj=False, G_adj=False))
        full = lib.coef()[list(TERMS)].to_numpy()
        loo = [pf.feols(FML, data=data[data["team_id"] != t], weights="csat_responses",
                        vcov="iid").coef()[list(TERMS)].to_numpy()
               for t in sorted(data["team_id"].unique())]
    ours = eff.loc[list(TERMS), "std_error"].to_numpy()
    np.testing.assert_allclose(ours, np.sqrt((g - 1) / g) * lib.se()[list(TERMS)], rtol=1e-9)
    np.testing.assert_allclose(ours, np.sqrt(np.diag(_cr3(full, loo))), rtol=1e-9)
    assert (eff["note"] == f"CR3 jackknife by team (G={g}), t({g - 1})").all()
    crit = stats.t.ppf(0.975, g - 1)
    np.testing.assert_allclose(eff["conf_high"] - eff["estimate"], crit * eff["std_error"])


def test_poisson_cr3_refits_with_the_offset():
    panel = make_panel(12)
    data = _x(panel.loc[panel["exposure"] > 0]).assign(
        y=lambda d: d["complaints"], log_exposure=lambda d: np.log(d["exposure"]))
    fit = fit_complaints(panel)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        full = pf.fepois(FML, data=data, offset="log_exposure").coef()[list(TERMS)].to_numpy()
        loo = [pf.fepois(FML, data=data[data["team_id"] != t], offset="log_exposure")
               .coef()[list(TERMS)].to_numpy() for t in sorted(data["team_id"].unique())]
    ours = fit.effects.set_index("term").loc[list(TERMS), "std_error"].to_numpy()
    np.testing.assert_allclose(ours, np.sqrt(np.diag(_cr3(full, loo))), rtol=1e-6)
    np.testing.assert_allclose(fit.extras["vcov"].to_numpy(), _cr3(full, loo), rtol=1e-5,
                               atol=1e-12)


def test_cox_warm_started_coefficients_equal_a_full_fit():
    ep = make_episodes(13, n_customers=800, n_teams=12)
    ep = ep[ep["team_id"] != "t3"].reset_index(drop=True)
    x = _x(ep)[list(TERMS)]
    strata = pd.factorize(ep["team_id"])[0]
    ref = cox_fit(ep["start"], ep["stop"], ep["event"], x, strata, names=list(TERMS))
    frame = x.assign(_start=ep["start"].astype(float), _stop=ep["stop"].astype(float),
                     _event=ep["event"].astype(int), _stratum=strata)
    warm, ok = cox_coefficients(frame, list(TERMS), start=ref.params + 0.05)
    assert ok
    np.testing.assert_allclose(warm, ref.params, atol=REFIT_TOL)


def test_cox_cr3_equals_refits_without_each_stratum_and_keeps_lin_wei():
    ep = make_episodes(14, n_customers=1000, n_teams=12)
    fit = fit_churn(ep)
    eff = fit.effects.set_index("term")
    assert eff["estimable"].all()
    full, loo = None, []
    for t in [None] + sorted(ep["team_id"].unique()):
        sub = ep if t is None else ep[ep["team_id"] != t]
        qd = pd.get_dummies(sub["quarter"].astype(str), prefix="q", drop_first=True, dtype=float)
        x = pd.concat([_x(sub)[list(TERMS)], qd], axis=1)
        res = cox_fit(sub["start"], sub["stop"], sub["event"], x,
                      pd.factorize(sub["team_id"])[0])
        if t is None:
            full = res.params[:5]
        else:
            loo.append(res.params[:5])
    v = _cr3(full, loo)
    np.testing.assert_allclose(eff.loc[list(TERMS), "std_error"], np.sqrt(np.diag(v)),
                               rtol=1e-4)
    assert eff["note"].str.fullmatch(r"CR3 jackknife by team \(G=12\), t\(11\)").all()
    # the Lin-Wei sandwich (x G/(G-1)) stays available for the notebooks
    cox = fit.extras["cox"]
    lw = cox.cov_robust(ep["team_id"].to_numpy(), small_sample=True)[:5, :5]
    np.testing.assert_allclose(fit.extras["vcov_lin_wei"].to_numpy(), lw)
    np.testing.assert_allclose(fit.extras["coef_table"]["std_error_cr3"][:5],
                               eff.loc[list(TERMS), "std_error"])


def test_renewal_cr3_equals_cold_refits_and_jackknifes_the_ames():
    ren = make_renewals(15, n_teams=12)
    fit = fit_renewal(ren)
    eff = fit.effects.set_index(["model", "term"])
    full, loo = None, []
    for t in [None] + sorted(ren["team_id"].unique()):
        sub, _ = drop_uninformative(ren if t is None else ren[ren["team_id"] != t])
        x = pd.concat([pd.Series(1.0, index=sub.index, name="const"), _x(sub)[list(TERMS)],
                       pd.get_dummies(sub["end_quarter"], drop_first=True, dtype=float),
                       pd.get_dummies(sub["team_id"], drop_first=True, dtype=float)], axis=1)
        res = sm.GLM(sub["renewed"].to_numpy(float), x.to_numpy(float),
                     family=sm.families.Binomial()).fit(tol=1e-12)
        if t is None:
            full = res.params[1:6]
        else:
            loo.append(res.params[1:6])
    v = _cr3(full, loo)
    se = eff.loc["logit_fe"].loc[list(TERMS), "std_error"].to_numpy()
    np.testing.assert_allclose(se, np.sqrt(np.diag(v)), rtol=1e-5)
    ame = eff.loc["logit_fe_ame"]
    assert ame["estimable"].all() and ame["note"].str.contains("CR3 jackknife").all()
    # the CR1 sandwich stays in the extras
    assert fit.extras["cov_cr1"].shape[0] == len(fit.extras["columns"])


def test_a_term_identified_by_one_team_only_has_no_cr3():
    panel = make_panel(16)
    others = panel["team_id"] != "t0"
    panel.loc[others, "w_revenue"] += panel.loc[others, "w_process"] - 0.1
    panel.loc[others, "w_process"] = 0.1      # w_process varies within reps of t0 only
    eff = fit_linear(panel, "bookings").effects.set_index("term")
    assert not eff.loc["w_process", "estimable"]
    assert "not identified without team t0" in eff.loc["w_process", "note"]
    assert np.isnan(eff.loc["w_process", "std_error"])
    assert eff.drop("w_process")["estimable"].all()


def test_every_headline_model_exposes_its_cr3_covariance_to_the_whatif():
    res = fit_effects({"rep_quarter_panel": make_panel(17), "renewal_table": make_renewals(17),
                       "survival_episodes": make_episodes(17)})
    cov = effect_covariances(res.extras)
    assert set(cov) == {"churn", "renewal", "complaints", "csat", "nps", "bookings"}
    head = res.effects[res.effects["model"].isin(["cox_stratified_tv", "logit_fe",
                                                  "poisson_fe", "ols_fe"])]
    for outcome, v in cov.items():
        assert list(v.index) == list(TERMS) == list(v.columns)
        se = head[head["outcome"] == outcome].set_index("term")["std_error"]
        np.testing.assert_allclose(np.sqrt(np.diag(v)), se.loc[list(TERMS)], rtol=1e-12)
        assert res.extras[outcome]["jackknife"].n_clusters == 20


# ---------------------------------------------------------------- many teams: CR1, no jackknife
HEADLINE = ["cox_stratified_tv", "logit_fe", "poisson_fe", "ols_fe"]


def _cr1_note(g: int, name: str) -> str:
    return f"{name} by team (G={g} > {JACKKNIFE_MAX_CLUSTERS}: no jackknife), t({g - 1})"


def test_threshold_is_inclusive():
    assert use_jackknife(JACKKNIFE_MAX_CLUSTERS)
    assert not use_jackknife(JACKKNIFE_MAX_CLUSTERS + 1)
    assert use_jackknife(24)  # the sample company: CR3, numbers unchanged


def test_more_teams_than_the_threshold_use_cr1_in_every_model():
    g = JACKKNIFE_MAX_CLUSTERS + 5
    res = fit_effects({
        "rep_quarter_panel": make_panel(18, n_teams=g, reps=2, n_q=8),
        "renewal_table": make_renewals(18, n=6000, n_teams=g),
        "survival_episodes": make_episodes(18, n_customers=1500, n_teams=g)})
    eff, crit = res.effects, stats.t.ppf(0.975, g - 1)
    assert eff["estimable"].all(), eff.loc[~eff["estimable"], ["outcome", "term", "note"]]
    assert (eff["n_clusters"] == g).all()
    # t(G-1) intervals and p-values
    np.testing.assert_allclose(eff["conf_high"] - eff["estimate"], crit * eff["std_error"])
    np.testing.assert_allclose(eff["p_value"],
                               2 * stats.t.sf(np.abs(eff["statistic"]), g - 1), rtol=1e-9)
    sandwich = {"churn": ("Lin-Wei sandwich x G/(G-1)", "vcov_lin_wei"),
                "renewal": ("CR1", None), "complaints": ("CRV1", "vcov_crv1"),
                "csat": ("CRV1", "vcov_crv1"), "nps": ("CRV1", "vcov_crv1"),
                "bookings": ("CRV1", "vcov_crv1")}
    cov = effect_covariances(res.extras)
    for outcome, (name, key) in sandwich.items():
        ex = res.extras[outcome]
        rows = eff[(eff["outcome"] == outcome) & eff["model"].isin(HEADLINE)].set_index("term")
        assert (rows["note"] == _cr1_note(g, name)).all(), rows["note"].tolist()
        assert "jackknife" not in ex
        if key is not None:
            used = ex[key]
        else:  # renewal: the CR1 sandwich of the full design, restricted to the terms
            cols = ex["columns"]
            idx = [cols.index(t) for t in TERMS]
            used = pd.DataFrame(ex["cov_cr1"][np.ix_(idx, idx)], index=list(TERMS),
                                columns=list(TERMS))
        pd.testing.assert_frame_equal(ex["vcov"], used)
        np.testing.assert_allclose(rows.loc[list(TERMS), "std_error"],
                                   np.sqrt(np.diag(used.loc[list(TERMS), list(TERMS)])),
                                   rtol=1e-12)
        np.testing.assert_allclose(np.sqrt(np.diag(cov[outcome])),
                                   rows.loc[list(TERMS), "std_error"], rtol=1e-12)
    # the pyfixest rows are pyfixest's own CRV1 errors and t(G-1)
    fit = res.extras["bookings"]["fit"]
    assert float(fit._df_t) == g - 1
    rows = eff[eff["outcome"] == "bookings"].set_index("term")
    np.testing.assert_allclose(rows.loc[list(TERMS), "std_error"], fit.se()[list(TERMS)])
    # AMEs: delta method with the CR1 covariance, named so
    ame = eff[eff["model"] == "logit_fe_ame"]
    assert ame["note"].str.fullmatch(r"average marginal effect, percentage points; delta "
                                     r"method, CR1 by team \(G=55 > 50: no jackknife\), "
                                     r"t\(54\)").all()
    summ = res.summaries.set_index("model")
    assert summ["jackknife_seconds"].isna().all()
    assert summ["note"].str.contains("no jackknife").all()


@pytest.mark.parametrize("outcome", ["churn", "renewal", "complaints", "bookings"])
def test_threshold_switches_each_model_between_cr3_and_cr1(outcome):
    """12 teams: CR3 with a threshold of 12 (G ≤ max), CR1 with 11 (G > max)."""
    fitters = {
        "churn": lambda m: fit_churn(make_episodes(19, n_customers=800, n_teams=12),
                                     jackknife_max_clusters=m),
        "renewal": lambda m: fit_renewal(make_renewals(19, n_teams=12),
                                         jackknife_max_clusters=m),
        "complaints": lambda m: fit_complaints(make_panel(19, n_teams=12),
                                               jackknife_max_clusters=m),
        "bookings": lambda m: fit_linear(make_panel(19, n_teams=12), "bookings",
                                         jackknife_max_clusters=m)}
    cr3, cr1 = fitters[outcome](12), fitters[outcome](11)
    for fit in (cr3, cr1):
        assert fit.effects["estimable"].all()
    head3 = cr3.effects[cr3.effects["model"].isin(HEADLINE)]
    head1 = cr1.effects[cr1.effects["model"].isin(HEADLINE)]
    assert (head3["note"] == "CR3 jackknife by team (G=12), t(11)").all()
    assert head1["note"].str.fullmatch(r".* by team \(G=12 > 11: no jackknife\), t\(11\)").all()
    assert "jackknife" in cr3.extras and "jackknife" not in cr1.extras
    # same point estimates, different errors, each from its own extras["vcov"]
    np.testing.assert_array_equal(head3["estimate"], head1["estimate"])
    assert not np.allclose(head3["std_error"], head1["std_error"])
    for fit, head in ((cr3, head3), (cr1, head1)):
        v = fit.extras["vcov"].loc[list(TERMS), list(TERMS)]
        np.testing.assert_allclose(head.set_index("term").loc[list(TERMS), "std_error"],
                                   np.sqrt(np.diag(v)), rtol=1e-12)


def test_linear_model_at_exactly_the_threshold_keeps_the_jackknife():
    g = JACKKNIFE_MAX_CLUSTERS
    at = fit_linear(make_panel(20, n_teams=g, reps=2, n_q=6), "csat").effects
    above = fit_linear(make_panel(20, n_teams=g + 1, reps=2, n_q=6), "csat").effects
    assert (at["note"] == f"CR3 jackknife by team (G={g}), t({g - 1})").all()
    assert (above["note"] == _cr1_note(g + 1, "CRV1")).all()
