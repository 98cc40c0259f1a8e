"""The renewal logit absorbs team and quarter effects (pyfixest feglm) instead of dummies.

Reference: the dense dummy-variable statsmodels logit the model used before, with
its CR1 sandwich (pinv of the full information, scores of every column) and the
delta-method AME errors over all parameters. The absorbed fit must give the same
coefficients, CR1 errors, AMEs and AME errors.
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest
import statsmodels.api as sm
from test_models_recovery import make_renewals

from analysis.config import TERMS
from analysis.models import design
from analysis.models.clustered import cluster_sandwich
from analysis.models.renewal import FE, _controls, drop_uninformative, fit_renewal


def _dense_reference(ren: pd.DataFrame, controls: bool):
    cols = ["renewed", *FE] + (["segment", "annual_value", "tenure_days"] if controls else [])
    data, _ = drop_uninformative(design.complete_rows(ren, cols))
    ctrl = _controls(data) if controls else pd.DataFrame(index=data.index)
    fe_q = pd.get_dummies(data["end_quarter"].astype(str), drop_first=True, dtype=float)
    fe_t = pd.get_dummies(data["team_id"].astype(str), drop_first=True, dtype=float)
    xmat = pd.concat([pd.Series(1.0, index=data.index, name="const"),
                      design.regressors(data)[list(TERMS)], ctrl, fe_q, fe_t], axis=1)
    xa, y = xmat.to_numpy(float), data["renewed"].to_numpy(float)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = sm.GLM(y, xa, family=sm.families.Binomial()).fit(maxiter=100, tol=1e-12)
    p = res.fittedvalues
    binv = np.linalg.pinv((xa.T * (p * (1 - p))) @ xa)
    cov = cluster_sandwich(binv, xa * (y - p)[:, None], data["team_id"].to_numpy(),
                           n_params=xa.shape[1] - fe_t.shape[1])
    out = {}
    for t in TERMS:
        j = list(xmat.columns).index(t)
        dens = p * (1 - p)
        grad = 100 * res.params[j] * (xa * (dens * (1 - 2 * p))[:, None]).mean(0)
        grad[j] += 100 * dens.mean()
        out[t] = (res.params[j], np.sqrt(cov[j, j]), 100 * res.params[j] * dens.mean(),
                  np.sqrt(grad @ cov @ grad))
    return out, res


@pytest.mark.parametrize("controls", [False, True])
def test_absorbed_logit_equals_the_dummy_logit_with_cr1_and_delta_method(controls):
    ren = make_renewals(23, n_teams=14)
    ref, res = _dense_reference(ren, controls)
    fit = fit_renewal(ren, controls=controls, jackknife_max_clusters=0)
    model = "logit_fe_controls" if controls else "logit_fe"
    eff = fit.effects.set_index(["model", "term"])
    assert eff["estimable"].all() and np.isfinite(eff["std_error"]).all()
    for t, (b, se, ame, ame_se) in ref.items():
        np.testing.assert_allclose(eff.loc[(model, t), ["estimate", "std_error"]].to_numpy(float),
                                   [b, se], rtol=1e-7, atol=1e-9)
        np.testing.assert_allclose(
            eff.loc[(f"{model}_ame", t), ["estimate", "std_error"]].to_numpy(float),
            [ame, ame_se], rtol=1e-7, atol=1e-9)
    s = fit.summary.iloc[0]
    np.testing.assert_allclose([s["loglik"], s["dof"], s["aic"]],
                               [res.llf, res.df_resid, res.aic], rtol=1e-9)
    assert fit.extras["cov_cr1"].shape == (len(fit.extras["columns"]),) * 2
    assert "CR1" in eff.loc[(model, TERMS[0]), "note"]
