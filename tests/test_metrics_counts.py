"""The array-based churn and at-risk counts of quarterly_metrics against plain pandas."""

import numpy as np
import pandas as pd
import pytest

from analysis import metrics
from analysis.quarters import quarter_start

QUARTERS = ["2024Q1", "2024Q2", "2024Q3"]


def _episodes(seed: int) -> pd.DataFrame:
    """Random episodes, with missing teams, quarters outside the range and repeated events."""
    rng = np.random.default_rng(seed)
    n = 400
    quarter = rng.choice([*QUARTERS, "2023Q4"], n)
    starts = pd.to_datetime([quarter_start(q) for q in quarter])
    offset = pd.to_timedelta(rng.choice([0, 0, 5, 40], n), unit="D")
    return pd.DataFrame({
        "customer_id": rng.choice([f"C{i}" for i in range(40)], n).astype(object),
        "quarter": quarter.astype(object),
        "team_id": pd.Series(rng.choice(["T1", "T2", None], n), dtype=object),
        "first_day": (starts + offset).astype("datetime64[ns]"),
        "event": rng.choice([0, 0, 0, 1], n),
    })


def _plain(ep: pd.DataFrame, by: list[str]) -> tuple[dict, dict]:
    """The same counts as the merge and groupby they replace."""
    ep = ep[ep.quarter.isin(QUARTERS)]
    customers = {(k if isinstance(k, tuple) else (k,)): g.customer_id.nunique()
                 for k, g in ep.groupby(by, sort=True)}
    starts = pd.to_datetime(ep.quarter.map({q: quarter_start(q) for q in QUARTERS}))
    at_start = ep.loc[ep.first_day == starts, ["customer_id", "quarter", "team_id"]]
    churned = ep.loc[ep.event == 1, ["customer_id", "quarter"]].assign(churned=1)
    out = at_start.merge(churned, on=["customer_id", "quarter"], how="left")
    out["churned"] = out.churned.fillna(0).astype(int)
    churn = {(k if isinstance(k, tuple) else (k,)): (int(g.churned.sum()), len(g))
             for k, g in out.groupby(by, sort=True)}
    return customers, churn


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("by", [["quarter"], ["quarter", "team_id"]])
def test_episode_counts_match_pandas(seed, by):
    ep = _episodes(seed)
    customers, churn = metrics._episode_counts(ep, QUARTERS, by)
    want_customers, want_churn = _plain(ep, by)
    assert customers == want_customers
    assert churn == want_churn
    # repeated events of one customer and quarter count as the left join counts them
    assert any(k < n for k, n in churn.values()) and any(k > 0 for k, n in churn.values())
