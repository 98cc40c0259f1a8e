"""The fast CR3 refit paths give the numbers of the straightforward ones, bit for bit.

Cox: the presorted refits of :func:`analysis.models.survival._jackknife` against
refits built as pandas frames of the rows kept and fitted by
:func:`analysis.models.coxph.cox_coefficients` (the path they replace), including a
refit that loses a quarter's only event. Renewal: the array-fed pyfixest logit of
:func:`analysis.models.renewal._feglm_logit` against ``pyfixest.feglm`` on the same
data and formula.
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest
from pyfixest import feglm
from pyfixest.estimation.models.feglm_ import Feglm
from test_models_recovery import make_episodes, make_renewals

from analysis.config import TERMS
from analysis.models import design, renewal
from analysis.models.coxph import cox_coefficients
from analysis.models.jackknife import identified_without
from analysis.models.survival import _quarter_dummies, _with_events, fit_churn


def _frame_refits(episodes: pd.DataFrame, fit) -> pd.DataFrame:
    """Leave-one-team-out Cox estimates by pandas selections and ``cox_coefficients``."""
    data = _with_events(episodes)
    x = design.regressors(data)
    keep = [t for t in TERMS if t in fit.extras["jackknife"].full.index]
    cox = fit.extras["cox"]
    names = list(fit.extras["coef_table"]["term"])
    full = pd.Series(cox.params, index=names)
    teams = data["team_id"].to_numpy()
    identified = identified_without(x[keep], design.factor_codes(teams), teams)
    base = pd.DataFrame({"_start": data["start"].to_numpy(float),
                         "_stop": data["stop"].to_numpy(float),
                         "_event": data["event"].to_numpy(int),
                         "_stratum": design.factor_codes(teams)})
    xs, quarters = x[keep].reset_index(drop=True), data["quarter"].reset_index(drop=True)
    rows = []
    for team in sorted(pd.unique(teams), key=str):
        kept = np.flatnonzero(teams != team)
        ev = base["_event"][kept].groupby(quarters[kept].to_numpy()).transform("sum").to_numpy()
        mask = np.zeros(len(teams), bool)
        mask[kept[ev > 0]] = True
        qd = _quarter_dummies(quarters[mask])
        terms = identified[team]
        frame = pd.concat([xs.loc[mask, terms], qd, base.loc[mask]], axis=1)
        sub = terms + list(qd.columns)
        params, ok = cox_coefficients(frame, sub, start=full.reindex(sub).fillna(0.0).to_numpy())
        assert ok
        rows.append(pd.Series(params[:len(terms)], index=terms).reindex(keep))
    return pd.DataFrame(rows, index=pd.Index(sorted(pd.unique(teams), key=str), name="left_out"))


@pytest.mark.parametrize("lonely_event", [False, True])
def test_cox_presorted_refits_equal_frame_refits(lonely_event):
    ep = make_episodes(21, n_customers=700, n_teams=12)
    if lonely_event:
        # the last quarter keeps a single event: the refit without its team drops the
        # quarter (its indicator and episodes), the others keep it
        last = ep["quarter"] == sorted(ep["quarter"].unique())[-1]
        events = np.flatnonzero((last & (ep["event"] == 1)).to_numpy())
        assert len(events) > 1
        ep.loc[ep.index[events[1:]], "event"] = 0
    fit = fit_churn(ep)
    got = fit.extras["jackknife"].estimates
    want = _frame_refits(ep, fit)
    assert got.notna().to_numpy().any()
    pd.testing.assert_frame_equal(got, want.reindex(columns=got.columns), check_exact=True)


def _feglm_with_fe_order(data: pd.DataFrame, xa: np.ndarray, fe: np.ndarray):
    """``pyfixest.feglm`` as ``_fit`` called it, and the order of its fixed-effect columns."""
    frame = pd.DataFrame(xa, columns=[f"v{k}" for k in range(xa.shape[1])])
    frame["y"] = data["renewed"].to_numpy(float)
    frame["fe0"], frame["fe1"] = fe[:, 0].astype(np.int64), fe[:, 1].astype(np.int64)
    fml = "y ~ " + " + ".join(frame.columns[:xa.shape[1]]) + " | fe0 + fe1"
    order, fit = [], Feglm.get_fit

    def spy(self):
        order.append(list(self._fe.columns))
        return fit(self)

    with warnings.catch_warnings(), pytest.MonkeyPatch.context() as mp:
        warnings.simplefilter("ignore")
        mp.setattr(Feglm, "get_fit", spy)
        m = feglm(fml, frame, family="logit", vcov="iid", fixef_rm="none",
                  separation_check=[], iwls_tol=renewal.IRLS_TOL, iwls_maxiter=100,
                  fixef_tol=renewal.FIXEF_TOL, fixef_maxiter=100_000, copy_data=False,
                  store_data=False)
    return m, order[0]


@pytest.mark.parametrize("collinear", [False, True])
def test_array_logit_equals_feglm(collinear):
    data, _ = renewal.drop_uninformative(make_renewals(22, n=1500, n_teams=10))
    xa = design.regressors(data)[list(TERMS)].to_numpy(float)
    if collinear:   # feglm drops a slope collinear with the others
        xa = np.column_stack([xa, xa[:, 0] + xa[:, 1]])
    fe = np.column_stack([design.factor_codes(data[f]) for f in renewal.FE]).astype(np.uint64)
    ref, order = _feglm_with_fe_order(data, xa, fe)
    got = renewal._feglm_logit(xa, data["renewed"].to_numpy(float), fe)
    assert list(got._coefnames) == list(ref._coefnames)
    assert len(got._coefnames) == xa.shape[1] - collinear
    if order == ["__fixed_effect__(fe1)", "__fixed_effect__(fe0)"]:   # our fixed order
        np.testing.assert_array_equal(got._beta_hat, ref._beta_hat)
        np.testing.assert_array_equal(got._Y_hat_response, ref._Y_hat_response)
    else:   # feglm swept the fixed effects the other way (another hash seed)
        np.testing.assert_allclose(got._beta_hat, ref._beta_hat, rtol=1e-9)
        np.testing.assert_allclose(got._Y_hat_response, ref._Y_hat_response, rtol=1e-9)
