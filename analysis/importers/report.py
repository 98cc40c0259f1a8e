"""The import report: what was read, mapped, removed and quarantined, per table.

For every table the counts add up over source data rows (rows below the header)::

    rows_read = rows_mapped + rows_quarantined + footer_rows + blank_rows + rows_filtered

``records_written`` can be lower than ``rows_mapped`` where sub-form rows of one
record are combined. ``import_report.json`` is :meth:`ImportReport.to_dict`;
``import_quarantine.csv`` has one line per rejected cell.
"""

from __future__ import annotations

import csv
import json
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path

QUARANTINE_COLUMNS = ("table", "source_file", "source_row", "column", "raw_value", "reason")


@dataclass
class QuarantineRow:
    """One rejected cell (or row, when ``column`` names the record's id)."""

    table: str
    source_file: str
    source_row: int
    column: str
    raw_value: str
    reason: str


@dataclass
class TableReport:
    """Counts and column usage for one canonical table."""

    table: str
    files: list[str] = field(default_factory=list)
    rows_read: int = 0
    rows_mapped: int = 0
    rows_quarantined: int = 0
    footer_rows: int = 0
    blank_rows: int = 0
    rows_filtered: int = 0
    rows_above_header: int = 0
    records_written: int = 0
    quarantined_by_reason: Counter = field(default_factory=Counter)
    column_sources: dict[str, str] = field(default_factory=dict)
    source_columns_unused: list[str] = field(default_factory=list)
    canonical_columns_unmapped: list[str] = field(default_factory=list)

    def balanced(self) -> bool:
        """Whether every source row is accounted for."""
        return self.rows_read == (self.rows_mapped + self.rows_quarantined + self.footer_rows
                                  + self.blank_rows + self.rows_filtered)


@dataclass
class ImportReport:
    """Everything one :func:`~analysis.importers.import_export` call did.

    Attributes
    ----------
    mapping : preset name or mapping path.
    source_dir, out_dir : where the export was read and the canonical tables written.
    as_of : the as-of date used by derivations (ISO), or ``None``.
    tables : one :class:`TableReport` per canonical table written.
    tables_not_found : optional tables whose export files were absent.
    quarantine : every rejected cell.
    """

    mapping: str
    source_dir: str
    out_dir: str
    as_of: str | None
    tables: dict[str, TableReport] = field(default_factory=dict)
    tables_not_found: list[str] = field(default_factory=list)
    quarantine: list[QuarantineRow] = field(default_factory=list)

    def to_dict(self) -> dict:
        """JSON-ready form (without the quarantine rows, which go to CSV)."""
        tables = {}
        for name, t in self.tables.items():
            d = asdict(t)
            d["quarantined_by_reason"] = dict(sorted(t.quarantined_by_reason.items()))
            tables[name] = d
        return {"mapping": self.mapping, "source_dir": self.source_dir, "out_dir": self.out_dir,
                "as_of": self.as_of, "tables": tables, "tables_not_found": self.tables_not_found,
                "quarantined_cells": len(self.quarantine)}

    def write(self, out_dir: Path) -> None:
        """Write ``import_report.json`` and ``import_quarantine.csv`` to ``out_dir``."""
        (out_dir / "import_report.json").write_text(
            json.dumps(self.to_dict(), indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
        with open(out_dir / "import_quarantine.csv", "w", newline="", encoding="utf-8") as fh:
            writer = csv.writer(fh)
            writer.writerow(QUARANTINE_COLUMNS)
            for q in self.quarantine:
                writer.writerow([q.table, q.source_file, q.source_row, q.column, q.raw_value, q.reason])

    def summary(self) -> str:
        """A few lines per table for a terminal."""
        lines = [f"Import with {self.mapping} from {self.source_dir}"]
        for name, t in self.tables.items():
            reasons = ", ".join(f"{r}: {n}" for r, n in sorted(t.quarantined_by_reason.items()))
            lines.append(f"  {name:<17} read {t.rows_read:>6}  mapped {t.rows_mapped:>6}  "
                         f"quarantined {t.rows_quarantined:>5}  footer {t.footer_rows}  blank {t.blank_rows}"
                         + (f"  filtered {t.rows_filtered}" if t.rows_filtered else "")
                         + (f"  ({reasons})" if reasons else ""))
            if t.canonical_columns_unmapped:
                lines.append(f"    unmapped (written empty): {', '.join(t.canonical_columns_unmapped)}")
            if t.source_columns_unused:
                lines.append(f"    source columns not used: {', '.join(t.source_columns_unused)}")
        if self.tables_not_found:
            lines.append(f"  optional tables not found: {', '.join(self.tables_not_found)}")
        return "\n".join(lines)
