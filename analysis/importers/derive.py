"""Steps after row mapping: combine sub-form rows, and derive columns across tables.

Derivations fill only values the export left empty, so a column the CRM does carry
always wins:

``first_won_deal``
    ``customers.acquired_date`` / ``acquiring_rep_id``: close date and owner of the
    customer's earliest won deal. ``deals.is_new_business``: a won deal is new
    business when it is the customer's first win; a lost or open deal when it was
    created before that first win (or the customer never won one).
``successor_contract``
    ``contracts.outcome``: ``pending`` when the contract ends after as-of (the
    contract's rule, even when cancelled); else ``churned`` when cancelled; ``renewed`` when a later contract of the same
    customer starts no more than ``grace_days`` after its end; else ``churned``.
"""

from __future__ import annotations

from datetime import date, timedelta

from ..contract import TABLES
from .apply import Record, Rejected
from .mapping import TableMapping
from .report import QuarantineRow

_LATE = date.max


def combine_subform(tm: TableMapping, records: list[Record], rejected: list[Rejected]
                    ) -> tuple[list[Record], list[Rejected]]:
    """Combine rows sharing an id (a sub-form export) into one record.

    Columns named in ``combine.sum`` are summed; every other column must agree across
    the rows. A record any of whose rows was rejected, or whose rows disagree, is
    rejected as a whole, so a partial sum never reaches the output.
    """
    id_col = TABLES[tm.table].id_column
    bad_ids = {r.id for r in rejected if r.id is not None}
    groups: dict[object, list[Record]] = {}
    for rec in records:
        groups.setdefault(rec.values[id_col], []).append(rec)
    kept = []
    for key, rows in groups.items():
        reason, column = None, id_col
        if key in bad_ids:
            reason = "another row of the same record was quarantined"
        else:
            for col in tm.columns:
                if col not in tm.combine_sum and len({repr(r.values[col]) for r in rows}) > 1:
                    reason, column = f"sub-form rows disagree on {col}", col
                    break
        if reason:
            rejected.extend(Rejected(key, r.file, r.row, [QuarantineRow(
                tm.table, r.file, r.row, column, str(r.values[column] or ""), reason)]) for r in rows)
            continue
        merged = dict(rows[0].values)
        for col in tm.combine_sum:
            parts = [r.values[col] for r in rows if r.values[col] is not None]
            merged[col] = round(sum(parts), 6) if parts else None
        kept.append(Record(merged, rows[0].file, rows[0].row, sum(r.n_rows for r in rows)))
    return kept, rejected


def _first_wins(deals: list[Record]) -> dict[str, Record]:
    first: dict[str, Record] = {}
    for d in deals:
        v = d.values
        if v.get("status") != "won" or v.get("close_date") is None or v.get("customer_id") is None:
            continue
        order = (v["close_date"], v.get("created_date") or _LATE, str(v["deal_id"]))
        best = first.get(v["customer_id"])
        if best is None or order < (best.values["close_date"], best.values.get("created_date") or _LATE,
                                    str(best.values["deal_id"])):
            first[v["customer_id"]] = d
    return first


def derive_new_business(deals: list[Record]) -> None:
    """Fill ``is_new_business`` where the export has no value (``first_won_deal``)."""
    first = _first_wins(deals)
    for d in deals:
        v = d.values
        if v.get("is_new_business") is not None:
            continue
        win = first.get(v.get("customer_id"))
        if v.get("status") == "won":
            v["is_new_business"] = win is d
        else:
            created = v.get("created_date")
            v["is_new_business"] = win is None or created is None or created < win.values["close_date"]


def derive_acquisition(customers: list[Record], deals: list[Record], table: str = "customers"
                       ) -> tuple[list[Record], list[Rejected]]:
    """Fill ``acquired_date`` / ``acquiring_rep_id`` from the first won deal.

    A customer with neither its own acquisition date nor a won deal is a prospect,
    not a customer: it is quarantined with that reason.
    """
    first = _first_wins(deals)
    kept, rejected = [], []
    for c in customers:
        v = c.values
        win = first.get(v.get("customer_id"))
        if v.get("acquired_date") is None and win is not None:
            v["acquired_date"] = win.values["close_date"]
        if v.get("acquiring_rep_id") is None and win is not None:
            v["acquiring_rep_id"] = win.values["rep_id"]
        if v.get("acquired_date") is None:
            rejected.append(Rejected(v.get("customer_id"), c.file, c.row, [QuarantineRow(
                table, c.file, c.row, "customer_id", str(v.get("customer_id") or ""),
                "no won deal (a prospect, not a customer)")]))
        else:
            kept.append(c)
    return kept, rejected


def derive_outcome(contracts: list[Record], as_of: date, grace_days: int) -> None:
    """Fill ``outcome`` where the export has no value (``successor_contract``)."""
    starts: dict[str, list[date]] = {}
    for c in contracts:
        if c.values.get("customer_id") and c.values.get("start_date"):
            starts.setdefault(c.values["customer_id"], []).append(c.values["start_date"])
    grace = timedelta(days=grace_days)
    for c in contracts:
        v = c.values
        end = v.get("end_date")
        if v.get("outcome") is not None or end is None:
            continue
        if end > as_of:
            v["outcome"] = "pending"
        elif v.get("cancel_date") is not None:
            v["outcome"] = "churned"
        else:
            later = [s for s in starts.get(v.get("customer_id"), [])
                     if v.get("start_date") and s > v["start_date"] and s <= end + grace]
            v["outcome"] = "renewed" if later else "churned"
