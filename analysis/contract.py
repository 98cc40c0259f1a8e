"""The canonical input tables of ``shared/spec/data-contract.md``, as data.

Every other stage reads the contract from here: sources know which tables to look
for, validation knows each column's type, range and foreign key, the as-of view knows
which dates are event dates. Kinds:

``id``    non-empty string, unique in its table
``str``   string
``date``  calendar date (no time zone)
``float`` / ``int`` number, with optional ``lo``/``hi`` bounds
``bool``  true/false
``enum``  one of ``choices``
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Column:
    """One column of a canonical table."""

    name: str
    kind: str
    nullable: bool = False
    optional: bool = False  # the column itself may be absent from a source
    lo: float | None = None
    hi: float | None = None
    choices: tuple[str, ...] = ()
    references: str | None = None  # "table.column" foreign key
    event: bool = False  # an event date: after as_of means future-dated


@dataclass(frozen=True)
class Table:
    """One canonical table: its columns and whether a source must provide it."""

    name: str
    columns: tuple[Column, ...]
    required: bool = True

    @property
    def id_column(self) -> str:
        """The table's unique identifier column."""
        return self.columns[0].name

    def column(self, name: str) -> Column:
        """The column called ``name``."""
        return next(c for c in self.columns if c.name == name)


_W = dict(kind="float", lo=0.0, hi=1.0)

TABLES: dict[str, Table] = {t.name: t for t in (
    Table("reps", (
        Column("rep_id", "id"),
        Column("team_id", "str"),
        Column("region", "str", nullable=True, optional=True),
        Column("hire_date", "date", event=True),
        Column("exit_date", "date", nullable=True),
    )),
    Table("kpi_plans", (
        Column("plan_id", "id"),
        Column("name", "str"),
        Column("w_revenue", **_W),
        Column("w_new_customers", **_W),
        Column("w_collection", **_W),
        Column("w_satisfaction", **_W),
        Column("w_complaints", **_W),
        Column("w_process", **_W),
        Column("satisfaction_scope", "enum", choices=("individual", "team")),
    )),
    Table("plan_assignments", (
        Column("team_id", "str"),
        Column("plan_id", "str", references="kpi_plans.plan_id"),
        Column("valid_from", "date"),
        Column("valid_to", "date", nullable=True),
    )),
    Table("customers", (
        Column("customer_id", "id"),
        Column("segment", "str"),
        Column("region", "str", nullable=True, optional=True),
        Column("acquired_date", "date", event=True),
        Column("acquiring_rep_id", "str", references="reps.rep_id"),
    )),
    Table("deals", (
        Column("deal_id", "id"),
        Column("customer_id", "str"),  # FK only for won deals (prospects allowed)
        Column("rep_id", "str", references="reps.rep_id"),
        Column("created_date", "date", event=True),
        Column("close_date", "date", nullable=True, event=True),
        Column("status", "enum", choices=("won", "lost", "open")),
        Column("amount", "float", lo=0.0),
        Column("is_new_business", "bool"),
    )),
    Table("contracts", (
        Column("contract_id", "id"),
        Column("customer_id", "str", references="customers.customer_id"),
        Column("rep_id", "str", references="reps.rep_id"),
        Column("start_date", "date", event=True),
        Column("end_date", "date"),
        Column("annual_value", "float", lo=0.0),
        Column("outcome", "enum", choices=("renewed", "churned", "pending")),
        Column("cancel_date", "date", nullable=True, event=True),
    )),
    Table("surveys", (
        Column("survey_id", "id"),
        Column("customer_id", "str", references="customers.customer_id"),
        Column("rep_id", "str", references="reps.rep_id"),
        Column("sent_date", "date", event=True),
        Column("responded_date", "date", nullable=True, event=True),
        Column("csat", "int", nullable=True, lo=1, hi=5),
        Column("nps", "int", nullable=True, lo=0, hi=10),
    )),
    Table("complaints", (
        Column("complaint_id", "id"),
        Column("customer_id", "str", references="customers.customer_id"),
        Column("rep_id", "str", nullable=True, references="reps.rep_id"),
        Column("created_date", "date", event=True),
        Column("category", "str"),
        Column("severity", "int", lo=1, hi=3),
    )),
    Table("invoices", (
        Column("invoice_id", "id"),
        Column("customer_id", "str", references="customers.customer_id"),
        Column("rep_id", "str", references="reps.rep_id"),
        Column("due_date", "date"),
        Column("amount", "float", lo=0.0),
        Column("paid_date", "date", nullable=True, event=True),
        Column("paid_amount", "float", nullable=True, lo=0.0),
    ), required=False),
    Table("activities", (
        Column("activity_id", "id"),
        Column("rep_id", "str", references="reps.rep_id"),
        Column("customer_id", "str", nullable=True, references="customers.customer_id"),
        Column("activity_date", "date", event=True),
        Column("type", "enum", choices=("visit", "call", "email", "demo", "other")),
    ), required=False),
)}

REQUIRED_TABLES = tuple(n for n, t in TABLES.items() if t.required)
OPTIONAL_TABLES = tuple(n for n, t in TABLES.items() if not t.required)
