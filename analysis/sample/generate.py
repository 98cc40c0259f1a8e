"""Orchestration: draw every part of the company in a fixed order and write the tables."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from . import params as P
from .complaints import make_complaints
from .contracts import OUTCOME_NAMES, make_contracts
from .customers import make_customers
from .deals import STATUS_NAMES, expansion_spans, make_deals
from .extras import make_activities, make_invoices
from .org import make_org, make_panel
from .ownership import exposure, ownership_spans
from .surveys import make_surveys
from .writer import bools, ground_truth, ids, iso, ints, money, write_csv, write_json

#: Independent random streams, one per part, all spawned from default_rng(seed).
STREAMS = ("org", "customers", "contracts", "deals", "surveys", "complaints", "invoices",
           "activities")


def generate(out_dir: Path, *, seed: int = 7, scale: float = 1.0,
             null_effects: bool = False) -> dict:
    """Generate the sample company and write every contract table to ``out_dir``.

    Writes ``reps``, ``kpi_plans``, ``plan_assignments``, ``customers``, ``deals``,
    ``contracts``, ``surveys``, ``complaints``, ``invoices`` and ``activities`` as CSV,
    plus ``run.json`` and ``ground_truth.json``. The output is a pure function of
    ``seed`` and ``scale``: byte for byte the same on every run.

    Parameters
    ----------
    out_dir : pathlib.Path
        Folder to write (created if missing; existing files are overwritten).
    seed : int
        Seed of ``numpy.random.default_rng``.
    scale : float
        Size multiplier; scale 1 has 24 teams and about 5,000 customers.
    null_effects : bool
        Make every true plan effect zero (``ground_truth.json`` then lists zeros). The
        random draws are those of the same seed; only the effects differ. For checking
        how often the models report an effect that is not there.

    Returns
    -------
    dict
        ``{"out_dir", "seed", "scale", "as_of", "rows": {table: row count}}``.
    """
    if not scale > 0:
        raise ValueError("scale must be positive")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    rng = dict(zip(STREAMS, np.random.default_rng(seed).spawn(len(STREAMS))))

    org = make_org(rng["org"], scale, null_effects=null_effects)
    panel = make_panel(org)
    cust = make_customers(rng["customers"], org, panel)
    con = make_contracts(rng["contracts"], org, cust)
    spans = ownership_spans(con)
    expo = exposure(spans, panel)
    deals, n_pros = make_deals(rng["deals"], org, panel, cust, con, spans)
    surveys = make_surveys(rng["surveys"], org, panel, con, spans, expo)
    comp = make_complaints(rng["complaints"], org, panel, con, spans, expo)
    inv = make_invoices(rng["invoices"], org, con, cust.team)
    xsp, xcell = expansion_spans(spans, panel, con, cust, _cell_of_key(org, panel))
    act = make_activities(rng["activities"], panel, con, xsp, xcell)

    nt, nr, nc = org.n_teams, org.n_reps, len(cust)
    team = lambda i: ids("T", i, nt)  # noqa: E731
    rep = lambda i: ids("R", i, nr)  # noqa: E731
    customer = lambda i: ids("C", i, nc)  # noqa: E731
    regions = np.array(P.REGIONS, dtype=object)
    rows = {}
    rows["reps"] = write_csv(out / "reps.csv", {
        "rep_id": rep(np.arange(nr)), "team_id": team(org.rep_team),
        "region": regions[org.team_region[org.rep_team]],
        "hire_date": iso(org.rep_hire), "exit_date": iso(org.rep_exit)})
    pw = org.plan_weights
    rows["kpi_plans"] = write_csv(out / "kpi_plans.csv", {
        "plan_id": [p[0] for p in P.PLANS], "name": [p[1] for p in P.PLANS],
        **{w: [f"{v:.2f}" for v in pw[:, j]] for j, w in enumerate(
            ("w_revenue", "w_new_customers", "w_collection", "w_satisfaction", "w_complaints",
             "w_process"))},
        "satisfaction_scope": [p[3] for p in P.PLANS]})
    plan_ids = np.array([p[0] for p in P.PLANS], dtype=object)
    rows["plan_assignments"] = write_csv(out / "plan_assignments.csv", {
        "team_id": team(org.assign_team), "plan_id": plan_ids[org.assign_plan],
        "valid_from": iso(org.assign_from), "valid_to": iso(org.assign_to)})
    rows["customers"] = write_csv(out / "customers.csv", {
        "customer_id": customer(np.arange(nc)),
        "segment": np.array(P.SEGMENTS, dtype=object)[cust.segment],
        "region": regions[cust.region], "acquired_date": iso(cust.acq),
        "acquiring_rep_id": rep(cust.rep)})
    dcust = np.where(deals.customer >= 0, customer(deals.customer), ids("PR", deals.prospect, n_pros))
    rows["deals"] = write_csv(out / "deals.csv", {
        "deal_id": ids("D", np.arange(len(deals.rep)), len(deals.rep)), "customer_id": dcust,
        "rep_id": rep(deals.rep), "created_date": iso(deals.created), "close_date": iso(deals.close),
        "status": np.array(STATUS_NAMES, dtype=object)[deals.status], "amount": money(deals.cents),
        "is_new_business": bools(deals.new_business)})
    rows["contracts"] = write_csv(out / "contracts.csv", {
        "contract_id": ids("K", np.arange(len(con)), len(con)), "customer_id": customer(con.customer),
        "rep_id": rep(con.rep), "start_date": iso(con.start), "end_date": iso(con.end),
        "annual_value": money(con.value),
        "outcome": np.array(OUTCOME_NAMES, dtype=object)[con.outcome],
        "cancel_date": iso(con.cancel)})
    so = np.lexsort((surveys.rep, surveys.customer, surveys.sent))
    rows["surveys"] = write_csv(out / "surveys.csv", {
        "survey_id": ids("S", np.arange(len(so)), len(so)), "customer_id": customer(surveys.customer[so]),
        "rep_id": rep(surveys.rep[so]), "sent_date": iso(surveys.sent[so]),
        "responded_date": iso(surveys.responded[so]), "csat": ints(surveys.csat[so]),
        "nps": ints(surveys.nps[so])})
    co = np.lexsort((comp.customer, comp.created))
    rows["complaints"] = write_csv(out / "complaints.csv", {
        "complaint_id": ids("Q", np.arange(len(co)), len(co)), "customer_id": customer(comp.customer[co]),
        "rep_id": rep(comp.rep[co]), "created_date": iso(comp.created[co]),
        "category": np.array(P.COMPLAINT_CATEGORIES, dtype=object)[comp.category[co]],
        "severity": ints(comp.severity[co])})
    rows["invoices"] = write_csv(out / "invoices.csv", {
        "invoice_id": ids("INV", np.arange(len(inv.rep)), len(inv.rep)),
        "customer_id": customer(inv.customer), "rep_id": rep(inv.rep), "due_date": iso(inv.due),
        "amount": money(inv.cents), "paid_date": iso(inv.paid), "paid_amount": money(inv.paid_cents)})
    rows["activities"] = write_csv(out / "activities.csv", {
        "activity_id": ids("A", np.arange(len(act.rep)), len(act.rep)), "rep_id": rep(act.rep),
        "customer_id": customer(act.customer), "activity_date": iso(act.day),
        "type": np.array(P.ACTIVITY_TYPES, dtype=object)[act.kind]})
    write_json(out / "run.json", {"as_of": P.AS_OF.isoformat()})
    write_json(out / "ground_truth.json", ground_truth(seed, scale, null_effects=null_effects))
    return {"out_dir": str(out), "seed": seed, "scale": scale, "as_of": P.AS_OF.isoformat(),
            "rows": rows}


def _cell_of_key(org, panel) -> np.ndarray:
    """Map ``rep * N_Q + q`` to the panel cell index (-1 when not employed)."""
    m = np.full(org.n_reps * P.N_Q, -1, dtype=np.int64)
    m[panel.key] = np.arange(len(panel.rep))
    return m
