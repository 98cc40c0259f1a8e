"""The panel and renewal jackknife refits from stored model matrices give the library's
numbers bit for bit.

Panel: :class:`analysis.models.panel._Refits` against ``pf.feols`` / ``pf.fepois`` on
the same rows (weighted, unweighted, with an offset, with singletons left by the
selection, and a selection where fepois's separation check drops rows, which goes
through ``pf.fepois`` itself); the linear CR3 against pyfixest's own
``vcov={"CRV3": ...}``; the Poisson jackknife against ``pf.fepois`` refits of each
leave-one-team-out sample. Renewal: the jackknife against :func:`renewal._fit` on
:func:`renewal.drop_uninformative` of each leave-one-team-out sample.
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pyfixest as pf
import pytest
from test_models_recovery import make_panel, make_renewals

from analysis.config import TERMS
from analysis.models import design, panel, renewal


def _data(outcome: str) -> tuple[pd.DataFrame, str | None, str | None]:
    """Coded model data of one panel outcome as the jackknife sees it: frame, weights, offset."""
    raw = make_panel(3, n_teams=12)
    if outcome == "complaints":
        work = panel._prepare(raw, "complaints", ["exposure"])
        work["log_exposure"] = np.log(work["exposure"])
        work, _ = panel._drop_zero_groups(work)
        cols = ["y", *TERMS, "rep_id", "quarter", "team_id", "log_exposure"]
        return panel._coded(work, cols), None, "log_exposure"
    ycol, wcol, _ = panel.LINEAR[outcome]
    base = raw if wcol is None else raw.loc[raw[wcol] > 0]
    work = panel._prepare(base, ycol, [wcol] if wcol else [])
    cols = ["y", *TERMS, "rep_id", "quarter", "team_id", *([wcol] if wcol else [])]
    return panel._coded(work, cols), wcol, None


def _direct(fml: str, data: pd.DataFrame, wcol, offset) -> pd.Series:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if offset:
            return pf.fepois(fml, data=data, offset=offset, vcov="iid").coef()
        return pf.feols(fml, data=data, weights=wcol, vcov="iid").coef()


def _selections(data: pd.DataFrame) -> list[np.ndarray]:
    """Leave-one-team-out row positions, and one that leaves a rep with a single row."""
    teams = data["team_id"].to_numpy()
    out = [np.flatnonzero(teams != t) for t in np.unique(teams)[:4]]
    rep = data["rep_id"].to_numpy()
    first = np.flatnonzero(rep == rep[0])
    out.append(np.setdiff1d(np.arange(len(data)), first[1:]))  # rep[0] keeps one row
    return out


@pytest.mark.parametrize("outcome", ["csat", "bookings", "complaints"])
def test_refits_match_the_library_call(outcome):
    data, wcol, offset = _data(outcome)
    fml = panel._fml(list(TERMS))
    refits = panel._Refits(fml, data, weights=wcol, offset=offset)
    assert refits.arrays is not None
    for rows in _selections(data):
        assert refits._fit(rows) is not None  # the stored-matrix path, not the call
        got = refits.coef(rows)
        want = _direct(fml, data.iloc[rows], wcol, offset)
        pd.testing.assert_series_equal(got, want, check_exact=True, check_names=False)


def test_poisson_selection_with_separation_goes_through_fepois():
    data, _, offset = _data("complaints")
    y, rep = data["y"].to_numpy(), data["rep_id"].to_numpy()
    zeros = pd.Series(y == 0).groupby(rep).sum()
    target = zeros.index[(zeros >= 2) & (pd.Series(y > 0).groupby(rep).sum() >= 1)][0]
    rows = np.flatnonzero(~((rep == target) & (y > 0)))  # target rep: only zero counts left
    fml = panel._fml(list(TERMS))
    refits = panel._Refits(fml, data, offset=offset)
    assert refits._fit(rows) is None
    pd.testing.assert_series_equal(refits.coef(rows), _direct(fml, data.iloc[rows], None, offset),
                                   check_exact=True, check_names=False)


@pytest.mark.parametrize("outcome", ["csat", "nps", "bookings"])
def test_linear_cr3_is_pyfixest_crv3(outcome):
    data, wcol, _ = _data(outcome)
    keep = list(TERMS)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fit = pf.feols(panel._fml(keep), data=data, weights=wcol, vcov={"CRV1": "team_id"})
        crv3 = pf.feols(panel._fml(keep), data=data, weights=wcol, vcov={"CRV3": "team_id"},
                        ssc=pf.ssc(k_adj=False, G_adj=False))
    jk = panel._linear_cr3(fit, data, keep, wcol)
    g = data["team_id"].nunique()
    names = list(crv3._coefnames)
    want = pd.DataFrame((g - 1) / g * np.asarray(crv3._vcov), index=names,
                        columns=names).loc[keep, keep]
    pd.testing.assert_frame_equal(jk.vcov, want, check_exact=True)


def test_poisson_jackknife_matches_fepois_refits():
    fit = panel.fit_complaints(make_panel(3, n_teams=12))
    jk = fit.extras["jackknife"]
    data, _, offset = _data("complaints")
    labels = sorted(jk.estimates.index)  # the coded frame numbers teams in sorted order
    for team in jk.estimates.index[:5]:
        sub, _ = panel._drop_zero_groups(data.loc[data["team_id"] != labels.index(team)])
        want = _direct(panel._fml(list(TERMS)), sub, None, offset).reindex(list(TERMS))
        np.testing.assert_array_equal(jk.estimates.loc[team, list(TERMS)].to_numpy(float),
                                      want.to_numpy(float))


@pytest.mark.parametrize("controls", [False, True])
def test_renewal_jackknife_matches_frame_refits(controls):
    raw = make_renewals(5, n=2500, n_teams=12)
    fit = renewal.fit_renewal(raw, controls=controls)
    jk = fit.extras["jackknife"]
    cols = ["renewed", *renewal.FE] + (["segment", "annual_value", "tenure_days"]
                                       if controls else [])
    data, _ = renewal.drop_uninformative(design.complete_rows(raw, cols))
    x = design.regressors(data)[list(TERMS)]
    ctrl = renewal._controls(data) if controls else pd.DataFrame(index=data.index)
    for team in jk.estimates.index[:5]:
        sub, _ = renewal.drop_uninformative(data.loc[data["team_id"] != team])
        res = renewal._fit(sub, x.loc[sub.index], ctrl.loc[sub.index])
        want = renewal._estimates(res.params, res.columns, res.p, list(TERMS))
        np.testing.assert_array_equal(jk.estimates.loc[team, want.index].to_numpy(float),
                                      want.to_numpy(float))


def test_informative_rows_match_drop_uninformative():
    raw = make_renewals(7, n=600, n_teams=15)
    data = design.complete_rows(raw, ["renewed", *renewal.FE]).reset_index(drop=True)
    # a team that always renewed, one that never did, a quarter that always renewed
    data.loc[data["team_id"] == "t0", "renewed"] = 1
    data.loc[data["team_id"] == "t1", "renewed"] = 0
    data.loc[data["end_quarter"] == "Q7", "renewed"] = 1
    kept, _ = renewal.drop_uninformative(data)
    fe = np.column_stack([design.factor_codes(data[f]) for f in renewal.FE])
    rows = renewal._informative(data["renewed"].to_numpy(float), fe, np.arange(len(data)))
    assert len(kept) < len(data)  # the check drops something here
    np.testing.assert_array_equal(rows, kept.index.to_numpy())
