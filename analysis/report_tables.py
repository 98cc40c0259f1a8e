"""The tables of the leadership report as plain rows of display strings.

Each function takes findings (or an artifact) and a catalogue and returns a small
dataclass or list of dicts the template prints as is; None means "not available in
this run". Values from the data (team and plan names) are left as text: the template
escapes them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from .config import WEIGHTS
from .i18n import Catalogue
from .quarters import shift_quarter
from .report_text import (_num, change, format_change, format_interval, format_metric,
                          headline_names)


@dataclass
class Table:
    """Header cells and body rows (lists of cell dicts: ``text`` and optional ``cls``)."""

    header: list[str]
    rows: list[list[dict[str, str]]]
    notes: list[str] = field(default_factory=list)


def _cell(text: Any, cls: str = "") -> dict[str, str]:
    return {"text": str(text), "cls": cls}


def headline_metrics(findings: dict, cat: Catalogue) -> Table | None:
    """Company metrics of the quarter with their change on the previous quarter."""
    quarter = str(findings.get("quarter", ""))
    prev = shift_quarter(quarter, -1)
    company = {(m.get("name"), m.get("quarter")): m for m in findings.get("metrics") or []
               if m.get("scope") == "company"}
    names = headline_names(findings)
    if not names:
        return None
    rows = []
    for name in names:
        cur = company[(name, quarter)]
        ch = change(cur, company.get((name, prev)))
        if ch is None:
            change_cell = _cell(cat.t("fmt.missing"), "num")
        elif ch.clear:
            cue = cat.t("metrics_table.cue_up" if ch.diff > 0 else "metrics_table.cue_down")
            change_cell = _cell(f"{format_change(name, ch.diff, cat)} {cue}",
                                f"num change clear {'up' if ch.diff > 0 else 'down'}")
        else:
            change_cell = _cell(format_change(name, ch.diff, cat), "num change")
        n = _num(cur.get("n"))
        rows.append([_cell(cat.label("metrics", name)),
                     _cell(format_metric(name, cur.get("value"), cat), "num value"),
                     _cell(format_interval(name, cur.get("conf_low"), cur.get("conf_high"), cat),
                           "num"),
                     change_cell,
                     _cell(cat.number(n) if n is not None else cat.t("fmt.missing"), "num")])
    header = [cat.t("metrics_table.metric"), cat.t("metrics_table.value", quarter=cat.quarter(quarter)),
              cat.t("metrics_table.interval"),
              cat.t("metrics_table.change", prev=cat.quarter(prev)), cat.t("metrics_table.n")]
    return Table(header, rows, [cat.t("metrics_table.legend")])


def plans_in_force(plans_df: pd.DataFrame | None, cat: Catalogue) -> Table | None:
    """One row per plan in force: name, teams under it, weights in %."""
    if plans_df is None or plans_df.empty or "plan_name" not in plans_df.columns:
        return None
    weights = [w for w in WEIGHTS if w in plans_df.columns]
    key = "plan_id" if "plan_id" in plans_df.columns else "plan_name"
    rows = []
    for _, group in sorted(plans_df.groupby(key, sort=True),
                           key=lambda kv: str(kv[1]["plan_name"].iloc[0])):
        first = group.iloc[0]
        teams = sorted(str(t) for t in group["team_id"]) if "team_id" in group else []
        row = [_cell(first["plan_name"]), _cell(cat.raw("fmt.list_sep").join(teams))]
        row += [_cell(f"{100 * float(first[w]):.0f}", "num") for w in weights]
        if "satisfaction_scope" in group:
            scope = str(first["satisfaction_scope"])
            row.append(_cell(cat.raw(f"plans_table.scope_{scope}", scope)))
        rows.append(row)
    header = [cat.t("plans_table.plan"), cat.t("plans_table.teams")]
    header += [cat.label("terms", w).capitalize() for w in weights]
    if "satisfaction_scope" in plans_df.columns:
        header.append(cat.t("plans_table.scope"))
    return Table(header, rows, [cat.t("plans_table.caption")])


def team_table(findings: dict, plans_df: pd.DataFrame | None, cat: Catalogue,
               small_cell: int) -> Table | None:
    """Team metrics of the quarter; suppressed or missing cells show "—" with a note."""
    quarter = str(findings.get("quarter", ""))
    rows_in = [m for m in findings.get("metrics") or []
               if m.get("scope") == "team" and m.get("quarter") == quarter and m.get("team_id")]
    if not rows_in:
        return None
    names = [n for n in ("nps", "csat_mean", "pct_satisfied", "churn_rate", "renewal_rate")
             if any(m.get("name") == n for m in rows_in)]
    names += sorted({str(m.get("name")) for m in rows_in} - set(names))
    teams = sorted({str(m["team_id"]) for m in rows_in})
    cells = {(str(m["team_id"]), m.get("name")): m for m in rows_in}
    plan_of = {}
    if plans_df is not None and {"team_id", "plan_name"} <= set(plans_df.columns):
        plan_of = {str(t): str(p) for t, p in zip(plans_df["team_id"], plans_df["plan_name"])}
    suppressed_any = False
    rows = []
    for team in teams:
        row = [_cell(team)] + ([_cell(plan_of.get(team, cat.t("fmt.missing")))] if plan_of else [])
        for name in names:
            m = cells.get((team, name))
            if m is None or m.get("suppressed") or _num(m.get("value")) is None:
                suppressed_any = True
                row.append(_cell(cat.t("fmt.missing") + "*", "num suppressed"))
            else:
                row.append(_cell(format_metric(name, m.get("value"), cat), "num"))
        rows.append(row)
    header = [cat.t("teams_table.team")] + ([cat.t("teams_table.plan")] if plan_of else [])
    header += [cat.label("metrics", n) for n in names]
    notes = [cat.t("teams_table.caption", quarter=cat.quarter(quarter))]
    if suppressed_any:
        notes.append("* " + cat.t("teams_table.footnote", k=small_cell))
    return Table(header, rows, notes)


def _reasons(dq: dict) -> dict[str, int]:
    """Quarantined rows by reason, whether given flat, per table, or as a list."""
    raw = dq.get("quarantined_by_reason") or dq.get("by_reason") or {}
    out: dict[str, int] = {}
    if isinstance(raw, list):
        for r in raw:
            out[str(r.get("reason"))] = out.get(str(r.get("reason")), 0) + int(r.get("rows", r.get("n", 0)))
    elif isinstance(raw, dict):
        for key, value in raw.items():
            if isinstance(value, dict):
                for reason, n in value.items():
                    out[str(reason)] = out.get(str(reason), 0) + int(n)
            else:
                out[str(key)] = out.get(str(key), 0) + int(value)
    return dict(sorted(out.items(), key=lambda kv: (-kv[1], kv[0])))


@dataclass
class DataQuality:
    """The data-quality box."""

    summary: str
    table: Table
    reasons: Table | None


def data_quality(findings: dict, cat: Catalogue) -> DataQuality | None:
    """Rows read, used and quarantined per table, and quarantined rows by reason."""
    dq = findings.get("data_quality") or {}
    read = dq.get("rows_read") or {}
    if not read:
        return None
    quarantined = dq.get("rows_quarantined") or {}
    used = dq.get("rows_used") or {t: n - quarantined.get(t, 0) for t, n in read.items()}
    rows = [[_cell(cat.label("tables", t)), _cell(cat.number(n), "num"),
             _cell(cat.number(used.get(t)), "num"),
             _cell(cat.number(quarantined.get(t, 0)), "num" + (" flag" if quarantined.get(t) else ""))]
            for t, n in read.items()]
    table = Table([cat.t("data_quality.table"), cat.t("data_quality.rows_read"),
                   cat.t("data_quality.rows_used"), cat.t("data_quality.rows_quarantined")], rows)
    total_read, total_q = sum(read.values()), sum(quarantined.values())
    total_used = sum(v for v in used.values() if v is not None)
    share = 100 * total_q / total_read if total_read else 0.0
    summary = cat.t("data_quality.summary", used=cat.number(total_used), read=cat.number(total_read),
                    pct=cat.pct(share, 2 if share < 1 else 1))
    reasons = _reasons(dq)
    reason_table = Table([cat.t("data_quality.reason"), cat.t("data_quality.rows")],
                         [[_cell(r), _cell(cat.number(n), "num")] for r, n in reasons.items()]
                         ) if reasons else None
    if not reasons and not total_q:
        summary += " " + cat.t("data_quality.none_quarantined")
    return DataQuality(summary, table, reason_table)
