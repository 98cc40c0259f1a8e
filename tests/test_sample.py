"""The sample company generator: reproducible, contract-clean, and confounded by design."""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from analysis.config import OUTCOMES, SAMPLE_DIR, TERMS, WEIGHTS
from analysis.contract import TABLES
from analysis.sample import generate
from analysis.sample.__main__ import main as sample_main

AS_OF = "2025-12-31"
CSV_TABLES = ("reps", "kpi_plans", "plan_assignments", "customers", "deals", "contracts",
              "surveys", "complaints", "invoices", "activities")


def _read(folder: Path, name: str) -> pd.DataFrame:
    return pd.read_csv(folder / f"{name}.csv", dtype=str, keep_default_na=False)


@pytest.fixture(scope="module")
def sample() -> dict[str, pd.DataFrame]:
    return {n: _read(SAMPLE_DIR, n) for n in CSV_TABLES}


def test_generator_reproduces_committed_sample_byte_for_byte(tmp_path):
    summary = generate(tmp_path, seed=7, scale=1.0)
    committed = sorted(p.name for p in SAMPLE_DIR.iterdir() if p.is_file())
    produced = sorted(p.name for p in tmp_path.iterdir() if p.is_file())
    assert produced == committed
    for name in committed:
        assert (tmp_path / name).read_bytes() == (SAMPLE_DIR / name).read_bytes(), name
    assert summary["rows"]["deals"] == len(_read(tmp_path, "deals"))


def test_columns_follow_the_contract(sample):
    for name, frame in sample.items():
        assert list(frame.columns) == [c.name for c in TABLES[name].columns], name
        for col in TABLES[name].columns:
            values = frame[col.name]
            if not col.nullable:
                assert (values != "").all(), (name, col.name)
            if col.kind == "id":
                assert values.is_unique, (name, col.name)
            if col.kind == "enum":
                assert set(values) <= set(col.choices), (name, col.name)
            if col.kind == "bool":
                assert set(values) <= {"true", "false"}
            if col.kind == "date":
                nonnull = values[values != ""]
                assert nonnull.str.fullmatch(r"\d{4}-\d{2}-\d{2}").all(), (name, col.name)
                if col.event:
                    assert (nonnull <= AS_OF).all(), (name, col.name)
            if col.kind in ("float", "int"):
                num = pd.to_numeric(values[values != ""])
                if col.lo is not None:
                    assert (num >= col.lo).all(), (name, col.name)
                if col.hi is not None:
                    assert (num <= col.hi).all(), (name, col.name)


def test_plans_and_assignments(sample):
    plans = sample["kpi_plans"]
    w = plans[list(WEIGHTS)].astype(float)
    assert np.allclose(w.sum(axis=1), 1.0, atol=1e-9)
    assert len(plans) == 9 and set(plans.satisfaction_scope) == {"individual", "team"}
    pa = sample["plan_assignments"]
    assert set(pa.plan_id) <= set(plans.plan_id)
    for team, g in pa.groupby("team_id"):
        assert 2 <= len(g) <= 4, team
        assert g.valid_from.iloc[0] == "2023-01-01"
        assert (g.valid_to.iloc[:-1] != "").all() and g.valid_to.iloc[-1] == ""
        nxt = pd.to_datetime(g.valid_from.iloc[1:]).to_numpy()
        end = pd.to_datetime(g.valid_to.iloc[:-1]).to_numpy()
        assert (nxt == end + np.timedelta64(1, "D")).all(), team  # no gap, no overlap
        assert (pd.to_datetime(g.valid_to.iloc[:-1]) >= pd.to_datetime(g.valid_from.iloc[:-1])).all()
    assert set(pa.team_id) == set(sample["reps"].team_id)


def test_foreign_keys_and_business_rules(sample):
    reps, cust, deals = sample["reps"], sample["customers"], sample["deals"]
    con, sv, cp = sample["contracts"], sample["surveys"], sample["complaints"]
    rep_ids, cust_ids = set(reps.rep_id), set(cust.customer_id)
    assert reps.groupby("rep_id").team_id.nunique().max() == 1
    assert 4500 <= len(cust) <= 5500
    won = deals[deals.status == "won"]
    assert set(won.customer_id) <= cust_ids
    assert not set(deals[deals.status != "won"].customer_id) <= cust_ids  # prospects exist
    assert set(deals.rep_id) <= rep_ids and set(cust.acquiring_rep_id) <= rep_ids
    for t in ("contracts", "surveys", "invoices", "activities"):
        frame = sample[t]
        assert set(frame.rep_id) <= rep_ids, t
        assert set(frame.customer_id[frame.customer_id != ""]) <= cust_ids, t
    assert set(cp.customer_id) <= cust_ids and set(cp.rep_id[cp.rep_id != ""]) <= rep_ids
    assert 0.10 <= (cp.rep_id == "").mean() <= 0.20
    assert set(cp.category) == {"over-promising", "after-sales", "billing", "delivery"}
    # deals: created before close; first won deal = acquisition
    closed = deals[deals.close_date != ""]
    assert (closed.created_date < closed.close_date).all()
    assert (deals[deals.status == "open"].close_date == "").all()
    first = won[won.is_new_business == "true"].set_index("customer_id")
    assert first.index.is_unique and set(first.index) == cust_ids
    c = cust.set_index("customer_id")
    assert (first.close_date == c.acquired_date[first.index]).all()
    assert (first.rep_id == c.acquiring_rep_id[first.index]).all()
    exp = won[won.is_new_business == "false"]
    assert (exp.close_date > c.acquired_date[exp.customer_id].to_numpy()).all()
    # contracts: 365-day chains from the acquisition day
    start = pd.to_datetime(con.start_date)
    assert ((pd.to_datetime(con.end_date) - start).dt.days == 364).all()
    firsts = con.groupby("customer_id").start_date.min()
    assert (firsts == c.acquired_date[firsts.index]).all()
    assert ((con.end_date > AS_OF) == (con.outcome == "pending")).all()
    cancelled = con[con.cancel_date != ""]
    assert (cancelled.cancel_date > cancelled.start_date).all()
    assert (cancelled.cancel_date < cancelled.end_date).all()
    assert (cancelled[cancelled.end_date <= AS_OF].outcome == "churned").all()
    # surveys: response between 35% and 55% overall, answered after sending
    answered = sv[sv.responded_date != ""]
    assert 0.35 <= len(answered) / len(sv) <= 0.55
    assert (answered.responded_date >= answered.sent_date).all()
    assert (answered.csat != "").all() and (sv[sv.responded_date == ""].csat == "").all()


def test_owners_are_employed_at_contract_start(sample):
    reps = sample["reps"].set_index("rep_id")
    con = sample["contracts"]
    hire = reps.hire_date[con.rep_id].to_numpy()
    exit_ = reps.exit_date[con.rep_id].replace("", "9999-12-31").to_numpy()
    assert (hire <= con.start_date.to_numpy()).all()
    assert (con.start_date.to_numpy() <= exit_).all()


def _rep_quarter_csat(sample) -> pd.DataFrame:
    """Rep × quarter mean CSAT with the team's time-weighted mean weights (test-local)."""
    days = pd.date_range("2023-01-01", AS_OF)
    plans = sample["kpi_plans"].set_index("plan_id")[list(WEIGHTS)].astype(float)
    pa = sample["plan_assignments"]
    rows = []
    for team, g in pa.groupby("team_id"):
        w = np.zeros((len(days), len(WEIGHTS)))
        for _, r in g.iterrows():
            to = r.valid_to or AS_OF
            w[(days >= r.valid_from) & (days <= to)] = plans.loc[r.plan_id].to_numpy()
        frame = pd.DataFrame(w, columns=list(WEIGHTS))
        frame["quarter"] = days.to_period("Q").astype(str)
        rows.append(frame.groupby("quarter").mean().assign(team_id=team).reset_index())
    wq = pd.concat(rows)
    sv = sample["surveys"]
    sv = sv[sv.csat != ""].assign(csat=lambda d: d.csat.astype(int),
                                  quarter=lambda d: pd.to_datetime(d.sent_date).dt.to_period("Q").astype(str))
    cell = sv.groupby(["rep_id", "quarter"]).csat.agg(["mean", "size"]).reset_index()
    cell = cell.merge(sample["reps"][["rep_id", "team_id"]], on="rep_id")
    return cell.merge(wq, on=["team_id", "quarter"])


def test_naive_pooled_comparison_is_biased(sample):
    truth = json.loads((SAMPLE_DIR / "ground_truth.json").read_text())
    beta = next(e["estimate"] for e in truth["effects"]
                if e["outcome"] == "csat" and e["term"] == "w_satisfaction")
    cell = _rep_quarter_csat(sample)
    x = cell.w_satisfaction.to_numpy() / 0.10
    X = np.column_stack([np.ones_like(x), x])
    sw = np.sqrt(cell["size"].to_numpy())
    naive = np.linalg.lstsq(X * sw[:, None], cell["mean"].to_numpy() * sw, rcond=None)[0][1]
    assert naive - beta > 0.04, (naive, beta)  # team quality and the trend load onto the plan


def test_weights_vary_within_teams_and_are_not_collinear(sample):
    cell = _rep_quarter_csat(sample).drop_duplicates(["team_id", "quarter"])
    x = cell[list(TERMS)].to_numpy() / 0.10
    dummies = pd.get_dummies(cell[["team_id", "quarter"]], drop_first=True).to_numpy(float)
    Z = np.column_stack([np.ones(len(cell)), dummies])
    resid = x - Z @ np.linalg.lstsq(Z, x, rcond=None)[0]
    sv = np.linalg.svd(resid / np.sqrt(len(cell)), compute_uv=False)
    assert (resid.std(axis=0) > 0.2).all()
    assert sv.min() > 0.1 * sv.max()


def test_ground_truth_document():
    doc = json.loads((SAMPLE_DIR / "ground_truth.json").read_text())
    assert doc["schema_version"] == 1 and doc["seed"] == 7 and doc["as_of"] == AS_OF
    assert json.loads((SAMPLE_DIR / "run.json").read_text()) == {"as_of": AS_OF}
    eff = doc["effects"]
    assert len(eff) == 30 and {(e["outcome"], e["term"]) for e in eff} == {
        (o, t) for o in OUTCOMES for t in TERMS}
    scales = {"churn": "log_hazard_ratio", "renewal": "log_odds_ratio",
              "complaints": "log_rate_ratio", "csat": "csat_points", "nps": "nps_points",
              "bookings": "log_bookings"}
    assert all(e["scale"] == scales[e["outcome"]] and e["per"] == 0.1 for e in eff)
    by = {(e["outcome"], e["term"]): e["estimate"] for e in eff}
    for o in OUTCOMES:
        assert any(by[(o, t)] == 0 for t in TERMS), o
    for t in TERMS:
        assert by[("renewal", t)] == -by[("churn", t)]
    assert by[("churn", "w_satisfaction")] < 0 < by[("churn", "w_new_customers")]
    assert doc["notes"]


def test_small_scale_is_quick_and_clean(tmp_path):
    t0 = time.perf_counter()
    assert sample_main(["--out", str(tmp_path), "--scale", "0.05", "--seed", "3"]) == 0
    assert time.perf_counter() - t0 < 10
    tables = {n: _read(tmp_path, n) for n in CSV_TABLES}
    assert tables["reps"].team_id.nunique() == 2
    assert len(tables["customers"]) > 100 and len(tables["deals"]) > 500
    won = tables["deals"][tables["deals"].status == "won"]
    assert set(won.customer_id) <= set(tables["customers"].customer_id)
    assert json.loads((tmp_path / "ground_truth.json").read_text())["scale"] == 0.05


def test_other_seed_differs(tmp_path):
    generate(tmp_path, seed=8, scale=0.05)
    a = (tmp_path / "deals.csv").read_bytes()
    generate(tmp_path / "again", seed=8, scale=0.05)
    assert (tmp_path / "again" / "deals.csv").read_bytes() == a
    generate(tmp_path / "other", seed=9, scale=0.05)
    assert (tmp_path / "other" / "deals.csv").read_bytes() != a


def test_null_effects_company_has_zero_truth_and_same_draws(tmp_path):
    generate(tmp_path / "null", seed=3, scale=0.1, null_effects=True)
    generate(tmp_path / "real", seed=3, scale=0.1)
    truth = json.loads((tmp_path / "null" / "ground_truth.json").read_text())
    assert truth["null_effects"] is True
    assert len(truth["effects"]) == len(OUTCOMES) * len(TERMS)
    assert all(e["estimate"] == 0.0 for e in truth["effects"])
    assert "null_effects" not in json.loads((tmp_path / "real" / "ground_truth.json").read_text())
    for name in ("reps.csv", "kpi_plans.csv", "plan_assignments.csv", "customers.csv"):
        assert (tmp_path / "null" / name).read_bytes() == (tmp_path / "real" / name).read_bytes()
