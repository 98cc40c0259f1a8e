"""Reference tests: the model code against published results.

Cox: the lifelines fit (``analysis.models.coxph``) against R ``survival`` on the
Rossi recidivism data (Fox & Weisberg appendix); our Lin–Wei sandwich on top of it
against lifelines/statsmodels robust errors where they agree (tie-free data);
the split-episode identity for delayed entry. Linear FE / clustered errors:
Stata on the Grunfeld data (see tests/reference/README.md for provenance).
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pyfixest as pf
import pytest
import statsmodels.api as sm
from lifelines import CoxPHFitter
from lifelines.datasets import load_rossi
from lifelines.statistics import multivariate_logrank_test, proportional_hazard_test

from analysis.models.clustered import cluster_sandwich
from analysis.models.coxph import cox_fit
from analysis.models.survival import logrank_by_plan, ph_test

# Published values are printed to 5 decimals (R, digits = 5): agree to within
# rounding of the last printed digit.
R_PRINTED_TOL = 1e-5
# Stata prints 7 significant digits; agree to within its rounding.
STATA_PRINTED_RTOL = 1e-6
# Two implementations of the same estimator on the same data: floating-point level.
SAME_ESTIMATOR_TOL = 1e-6
# The split-episode identity is exact algebra; only lifelines' convergence separates them.
SPLIT_TOL = 1e-6

COLS = ["fin", "age", "race", "wexp", "mar", "paro", "prio"]
# R: coxph(Surv(week, arrest) ~ fin + age + race + wexp + mar + paro + prio, data = Rossi)
#                    coef exp(coef) se(coef)      z       p
# finyes         -0.37942   0.68426  0.19138 -1.983 0.04742
# age            -0.05744   0.94418  0.02200 -2.611 0.00903
# raceother      -0.31390   0.73059  0.30799 -1.019 0.30812
# wexpyes        -0.14980   0.86088  0.21222 -0.706 0.48029
# marnot married  0.43370   1.54296  0.38187  1.136 0.25606
# paroyes        -0.08487   0.91863  0.19576 -0.434 0.66461
# prio            0.09150   1.09581  0.02865  3.194 0.00140
R_COEF = np.array([-0.37942, -0.05744, -0.31390, -0.14980, 0.43370, -0.08487, 0.09150])
R_SE = np.array([0.19138, 0.02200, 0.30799, 0.21222, 0.38187, 0.19576, 0.02865])
# lifelines codes race (1 = black) and mar (1 = married) opposite to R's factor levels.
LIFELINES_SIGN = np.array([1, 1, -1, 1, -1, 1, 1])


@pytest.fixture(scope="module")
def rossi() -> pd.DataFrame:
    return load_rossi()


def _untied(rossi: pd.DataFrame) -> pd.DataFrame:
    out = rossi.copy()
    out["week"] = out["week"] + np.random.default_rng(0).uniform(0, 0.5, len(out))
    return out


def _robust_se(fit, clusters) -> np.ndarray:
    v = cluster_sandwich(fit.cov_naive, fit.score_residuals, np.asarray(clusters),
                         small_sample=False)
    return np.sqrt(np.diag(v))


def test_cox_matches_published_r_on_rossi(rossi):
    fit = cox_fit(np.zeros(len(rossi)), rossi["week"], rossi["arrest"], rossi[COLS].to_numpy())
    assert fit.converged
    np.testing.assert_allclose(fit.params * LIFELINES_SIGN, R_COEF, atol=R_PRINTED_TOL)
    np.testing.assert_allclose(np.sqrt(np.diag(fit.cov_naive)), R_SE, atol=R_PRINTED_TOL)
    # our score residuals sum to the score at lifelines' solution: the Newton step
    # it leaves (information⁻¹ · score) is far below any printed digit
    np.testing.assert_allclose(fit.cov_naive @ fit.score_residuals.sum(0), 0, atol=1e-8)


def test_robust_sandwich_matches_lifelines_and_statsmodels_without_ties(rossi):
    # With tied times lifelines, statsmodels and R each weight tied events
    # differently in the score residuals; without ties the robust variance is unique.
    data = _untied(rossi)
    fit = cox_fit(np.zeros(len(data)), data["week"], data["arrest"], data[COLS].to_numpy())
    ours = _robust_se(fit, np.arange(len(data)))
    ll = CoxPHFitter().fit(data[COLS + ["week", "arrest"]], "week", "arrest", robust=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        smr = sm.PHReg(data["week"], data[COLS], status=data["arrest"], ties="efron").fit(
            groups=np.arange(len(data)))
    np.testing.assert_allclose(fit.params, ll.params_.to_numpy(), atol=SAME_ESTIMATOR_TOL)
    np.testing.assert_allclose(ours, ll.standard_errors_.to_numpy(), atol=SAME_ESTIMATOR_TOL)
    np.testing.assert_allclose(ours, smr.bse, atol=SAME_ESTIMATOR_TOL)
    # clustered (Lin–Wei) on top of lifelines' fit = lifelines' own cluster_col sandwich
    data = data.assign(cl=np.arange(len(data)) % 40)
    llc = CoxPHFitter().fit(data[COLS + ["week", "arrest", "cl"]], "week", "arrest",
                            cluster_col="cl")
    np.testing.assert_allclose(_robust_se(fit, data["cl"]), llc.standard_errors_.to_numpy(),
                               atol=SAME_ESTIMATOR_TOL)


def _split(data: pd.DataFrame, cuts=(5, 13, 26, 40)) -> pd.DataFrame:
    """Each subject as several (start, stop] episodes; the event only on the last."""
    rows = []
    for i, r in enumerate(data.itertuples(index=False)):
        bounds = [0.0] + [c for c in cuts if c < r.week] + [r.week]
        for a, b in zip(bounds[:-1], bounds[1:]):
            rows.append({"id": i, "start": a, "stop": b,
                         "event": int(r.arrest and b == r.week),
                         **{c: getattr(r, c) for c in COLS}})
    return pd.DataFrame(rows)


@pytest.mark.parametrize("tied", [True, False])
def test_split_episodes_equal_unsplit_fit(rossi, tied):
    data = rossi if tied else _untied(rossi)
    whole = cox_fit(np.zeros(len(data)), data["week"], data["arrest"], data[COLS].to_numpy())
    ep = _split(data)
    assert len(ep) > 2 * len(data)
    split = cox_fit(ep["start"], ep["stop"], ep["event"], ep[COLS].to_numpy())
    np.testing.assert_allclose(split.params, whole.params, atol=SPLIT_TOL)
    np.testing.assert_allclose(_robust_se(split, ep["id"]),
                               _robust_se(whole, np.arange(len(data))), atol=SPLIT_TOL)
    np.testing.assert_allclose(split.loglik, whole.loglik, atol=1e-8)


def test_strata_match_lifelines(rossi):
    data = _untied(rossi)
    cols = [c for c in COLS if c != "wexp"]
    fit = cox_fit(np.zeros(len(data)), data["week"], data["arrest"], data[cols].to_numpy(),
                  strata=data["wexp"].to_numpy())
    ll = CoxPHFitter().fit(data[cols + ["week", "arrest", "wexp"]], "week", "arrest",
                           strata=["wexp"], robust=True)
    np.testing.assert_allclose(fit.params, ll.params_.to_numpy(), atol=SAME_ESTIMATOR_TOL)
    np.testing.assert_allclose(_robust_se(fit, np.arange(len(data))),
                               ll.standard_errors_.to_numpy(), atol=SAME_ESTIMATOR_TOL)
    # tied data, model-based errors: lifelines uses Efron too
    fit_t = cox_fit(np.zeros(len(rossi)), rossi["week"], rossi["arrest"], rossi[cols].to_numpy(),
                    strata=rossi["wexp"].to_numpy())
    ll_t = CoxPHFitter().fit(rossi[cols + ["week", "arrest", "wexp"]], "week", "arrest",
                             strata=["wexp"])
    np.testing.assert_allclose(fit_t.params, ll_t.params_.to_numpy(), atol=SAME_ESTIMATOR_TOL)
    np.testing.assert_allclose(np.sqrt(np.diag(fit_t.cov_naive)),
                               ll_t.standard_errors_.to_numpy(), atol=SAME_ESTIMATOR_TOL)


def test_strata_and_delayed_entry_match_lifelines(rossi):
    ep = _split(rossi).assign(stratum=lambda d: d["id"] % 3)
    fit = cox_fit(ep["start"], ep["stop"], ep["event"], ep[COLS].to_numpy(),
                  strata=ep["stratum"].to_numpy())
    ll = CoxPHFitter().fit(ep[COLS + ["start", "stop", "event", "stratum"]], "stop", "event",
                           entry_col="start", strata=["stratum"])
    np.testing.assert_allclose(fit.params, ll.params_.to_numpy(), atol=SAME_ESTIMATOR_TOL)
    np.testing.assert_allclose(np.sqrt(np.diag(fit.cov_naive)),
                               ll.standard_errors_.to_numpy(), atol=SAME_ESTIMATOR_TOL)


def test_ph_test_matches_lifelines(rossi):
    # Tie-free: with ties lifelines' Schoenfeld residuals centre on a different
    # (non-Efron) risk-set mean, which moves the statistics by a few percent.
    data = _untied(rossi)
    fit = cox_fit(np.zeros(len(data)), data["week"], data["arrest"], data[COLS].to_numpy())
    ours = ph_test(fit, COLS, COLS).set_index("term")
    ll = CoxPHFitter().fit(data[COLS + ["week", "arrest"]], "week", "arrest")
    ref = proportional_hazard_test(ll, data[COLS + ["week", "arrest"]],
                                   time_transform="rank").summary
    np.testing.assert_allclose(ours["statistic"], ref.loc[COLS, "test_statistic"], rtol=1e-5)
    assert ours.loc["age", "p_value"] < 0.05 and "change" in ours.loc["age", "reading"]


def test_logrank_matches_lifelines_without_delayed_entry(rossi):
    ep = pd.DataFrame({"start": 0.0, "stop": rossi["week"], "event": rossi["arrest"],
                       "plan_id": rossi["prio"].clip(upper=3).astype(str)})
    ours = logrank_by_plan(ep).iloc[0]
    ref = multivariate_logrank_test(ep["stop"], ep["plan_id"], ep["event"])
    assert ours["statistic"] == pytest.approx(ref.test_statistic, rel=1e-8)
    assert ours["df"] == 3


# ----------------------------------------------------------------- Grunfeld, Stata
@pytest.fixture(scope="module")
def grunfeld() -> pd.DataFrame:
    # webuse grunfeld = the first 200 rows (10 firms) of statsmodels' 11-firm copy
    return sm.datasets.grunfeld.load_pandas().data.iloc[:200].copy()


# Stata: regress invest mvalue kstock, vce(cluster company)   (shipped in statsmodels,
# regression/tests/results/results_grunfeld_ols_robust_cluster.py, results_cluster)
STATA_POOLED = {  # b, se, t, p, ll, ul; df = 9
    "value": (.11556215606596, .01589433647768, 7.2706499090564, .00004710548549,
              .07960666895505, .15151764317688),
    "capital": (.23067848754982, .08496711097464, 2.7149150406994, .02380515903536,
                .03846952885627, .42288744624337),
    "Intercept": (-42.714369016733, 20.425202580078, -2.0912580352272, .06604843284516,
                  -88.919387334862, 3.4906493013959),
}
# Stata: xtreg invest mvalue kstock, fe                       b, se (iid)
# Stata: xtreg invest mvalue kstock, fe vce(cluster company)  se (clustered)
STATA_WITHIN = {"value": (.1101238, .0118567, .0151945),
                "capital": (.3100653, .0173545, .0527518)}


def test_pyfixest_crv1_matches_stata_pooled(grunfeld):
    fit = pf.feols("invest ~ value + capital", data=grunfeld, vcov={"CRV1": "firm"})
    tidy = fit.tidy()
    assert fit._df_t == 9  # t(G-1): pyfixest's CRV1 default, as Stata
    for term, ref in STATA_POOLED.items():
        got = tidy.loc[term, ["Estimate", "Std. Error", "t value", "Pr(>|t|)", "2.5%", "97.5%"]]
        np.testing.assert_allclose(got.to_numpy(float), ref, rtol=SAME_ESTIMATOR_TOL)


def test_own_sandwich_matches_stata_pooled(grunfeld):
    x = np.column_stack([grunfeld[["value", "capital"]].to_numpy(), np.ones(len(grunfeld))])
    y = grunfeld["invest"].to_numpy()
    xtx_inv = np.linalg.inv(x.T @ x)
    beta = xtx_inv @ x.T @ y
    v = cluster_sandwich(xtx_inv, x * (y - x @ beta)[:, None], grunfeld["firm"].to_numpy(),
                         n_params=3)
    np.testing.assert_allclose(np.sqrt(np.diag(v)),
                               [STATA_POOLED[k][1] for k in ("value", "capital", "Intercept")],
                               rtol=SAME_ESTIMATOR_TOL)


def test_pyfixest_within_matches_stata_xtreg_fe(grunfeld):
    iid = pf.feols("invest ~ value + capital | firm", data=grunfeld, vcov="iid").tidy()
    crv = pf.feols("invest ~ value + capital | firm", data=grunfeld,
                   vcov={"CRV1": "firm"}).tidy()
    for term, (b, se_iid, se_cl) in STATA_WITHIN.items():
        assert iid.loc[term, "Estimate"] == pytest.approx(b, rel=STATA_PRINTED_RTOL)
        assert iid.loc[term, "Std. Error"] == pytest.approx(se_iid, rel=STATA_PRINTED_RTOL * 5)
        assert crv.loc[term, "Std. Error"] == pytest.approx(se_cl, rel=STATA_PRINTED_RTOL * 5)


def test_efron_derivatives_match_lifelines_gradients(rossi):
    # the vectorised Efron score and information that find lifelines' starting point
    # (coxph._starting_point) against lifelines' own per-stratum computation, with
    # delayed entry, ties and strata, away from the optimum
    from lifelines import CoxTimeVaryingFitter

    from analysis.models.cox_residuals import _RiskSets, efron_derivatives

    ep = _split(rossi).assign(stratum=lambda d: d["id"] % 3)
    x = ep[COLS].to_numpy(float)
    beta = np.linspace(-0.1, 0.1, len(COLS))
    strata = ep["stratum"].to_numpy()
    loglik, score, info = efron_derivatives(
        _RiskSets(ep["start"], ep["stop"], ep["event"], strata), x, beta)
    hess, grad, ll = np.zeros((len(COLS), len(COLS))), np.zeros(len(COLS)), 0.0
    for s in range(3):
        m = strata == s
        h, g, lls = CoxTimeVaryingFitter._get_gradients(
            x[m], ep["event"].to_numpy(bool)[m], ep["start"].to_numpy(float)[m],
            ep["stop"].to_numpy(float)[m], np.ones(m.sum()), beta)
        hess, grad, ll = hess + h, grad + g, ll + lls
    np.testing.assert_allclose(loglik, ll, rtol=1e-12)
    np.testing.assert_allclose(score, grad, rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(info, -hess, rtol=1e-9)
