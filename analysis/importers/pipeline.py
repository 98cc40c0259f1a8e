"""``import_export``: a CRM export folder in, canonical tables and an import report out."""

from __future__ import annotations

import csv
import fnmatch
import json
import logging
from datetime import date
from pathlib import Path

from ..contract import TABLES
from ..errors import InputError
from .apply import Record, Rejected, apply_file, resolve_columns, unused_columns
from .derive import combine_subform, derive_acquisition, derive_new_business, derive_outcome
from .mapping import Mapping, TableMapping, load_mapping
from .readers import RawTable, read_table
from .report import ImportReport, TableReport

log = logging.getLogger(__name__)


def match_files(source_dir: Path, patterns: tuple[str, ...]) -> list[Path]:
    """Files of ``source_dir`` matching any pattern (case-insensitive), sorted by name."""
    files = [p for p in sorted(source_dir.iterdir()) if p.is_file() and not p.name.startswith(("~$", "."))]
    return [p for p in files if any(fnmatch.fnmatch(p.name.casefold(), pat.casefold()) for pat in patterns)]


def _is_mapped(tm: TableMapping, column: str, used: dict[str, str | None]) -> bool:
    spec = tm.columns.get(column)
    return spec is not None and (used.get(column) is not None or spec.constant is not None
                                 or spec.derive is not None)


def _how_to_map(table: str, column: str, raw: RawTable) -> str:
    headers = ", ".join(raw.headers[:15])
    return (f"{table}.{column} (file {raw.file.name}): add `{column}: [\"<header>\"]` under "
            f"tables.{table}.columns; headers there: {headers}")


def _read_table(tm: TableMapping, mapping: Mapping, files: list[Path], report: TableReport,
                missing: list[str]) -> tuple[list[Record], list[Rejected]]:
    records: list[Record] = []
    rejected: list[Rejected] = []
    for path in files:
        raw = read_table(path, expected=tm.expected_headers(), encoding=tm.encoding,
                         sheet=tm.sheet, search_rows=tm.search_rows)
        used = resolve_columns(tm, raw)
        for col in TABLES[tm.table].columns:
            if _is_mapped(tm, col.name, used):
                report.column_sources.setdefault(col.name, used.get(col.name) or "(constant/derived)")
            elif not col.optional and not col.nullable:
                missing.append(_how_to_map(tm.table, col.name, raw))
            elif col.name not in report.canonical_columns_unmapped:
                report.canonical_columns_unmapped.append(col.name)
        report.files.append(path.name)
        report.rows_above_header += raw.rows_above_header
        report.source_columns_unused += [c for c in unused_columns(tm, raw, used)
                                         if c not in report.source_columns_unused]
        if missing:
            continue
        got, bad = apply_file(raw, tm, mapping, report)
        records += got
        rejected += bad
    if tm.combine and not missing:
        records, rejected = combine_subform(tm, records, rejected)
    return records, rejected


def _derive(mapping: Mapping, results: dict, as_of: date) -> None:
    deals = results.get("deals", ([], []))[0]
    if "deals" in results and mapping.tables["deals"].columns.get("is_new_business", None) \
            and mapping.tables["deals"].columns["is_new_business"].derive:
        derive_new_business(deals)
    cust = mapping.tables.get("customers")
    if cust and any(cust.columns.get(c) and cust.columns[c].derive for c in ("acquired_date", "acquiring_rep_id")):
        if "deals" not in mapping.tables:
            raise InputError("customers derive their acquisition from deals, but the mapping has no deals table")
        kept, bad = derive_acquisition(results["customers"][0], deals)
        results["customers"] = (kept, results["customers"][1] + bad)
    con = mapping.tables.get("contracts")
    spec = con.columns.get("outcome") if con else None
    if spec is not None and spec.derive and "contracts" in results:
        derive_outcome(results["contracts"][0], as_of, spec.grace_days)


def _cell(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, float):
        return format(value, ".15g")
    return str(value)


def write_table(out_dir: Path, table: str, records: list[Record], report: TableReport) -> None:
    """Write ``<table>.csv``: contract column order, ISO dates, empty = null, UTF-8."""
    columns = [c.name for c in TABLES[table].columns
               if not (c.optional and c.name in report.canonical_columns_unmapped)]
    with open(out_dir / f"{table}.csv", "w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(columns)
        for rec in records:
            writer.writerow([_cell(rec.values.get(c)) for c in columns])


def _as_of(as_of: object) -> date:
    if as_of is None or as_of == "":
        return date.today()
    if isinstance(as_of, date):
        return as_of
    try:
        return date.fromisoformat(str(as_of))
    except ValueError:
        raise InputError(f"as_of {as_of!r} is not an ISO date", hint="write it like 2025-06-30") from None


def _check_dirs(mapping: Mapping, source_dir: Path, out_dir: Path) -> None:
    if not source_dir.is_dir():
        raise InputError("export folder not found", file=str(source_dir))
    if out_dir.resolve() == source_dir.resolve():
        raise InputError("the output folder is the export folder", file=str(out_dir),
                         hint="write the canonical tables to another folder; input files are never modified")
    absent = [t for t in TABLES if TABLES[t].required and t not in mapping.tables]
    if absent:
        raise InputError(f"the mapping provides no table for {', '.join(absent)}", file=mapping.source,
                         hint="a CRM cannot export reps, kpi_plans or plan_assignments: keep them as "
                              "CSVs and add e.g. `reps: {files: [reps.csv], canonical: true}`")


def import_export(mapping: str | Path, source_dir: Path, out_dir: Path, *, as_of=None) -> ImportReport:
    """Import a CRM export folder into canonical tables.

    Parameters
    ----------
    mapping : a preset name (see :func:`list_presets`) or the path of a mapping YAML.
    source_dir : folder with the export files (and user-maintained canonical CSVs);
        never modified.
    out_dir : folder for ``<table>.csv``, ``import_report.json``,
        ``import_quarantine.csv`` and, when ``as_of`` is given, ``run.json``.
    as_of : extraction date (ISO string or date) used by derivations; default today.

    Returns
    -------
    ImportReport

    Raises
    ------
    InputError : bad mapping, missing required file or column, undecodable file,
        formula without saved value, ambiguous dates without a declared format.
    """
    m = mapping if isinstance(mapping, Mapping) else load_mapping(mapping)
    source_dir, out_dir = Path(source_dir), Path(out_dir)
    _check_dirs(m, source_dir, out_dir)
    day = _as_of(as_of)
    report = ImportReport(m.name, str(source_dir), str(out_dir), day.isoformat() if as_of else None)
    results, reports, missing, claimed = {}, {}, [], {}
    for table in (t for t in TABLES if t in m.tables):
        tm = m.tables[table]
        files = match_files(source_dir, tm.files)
        if not files:
            if TABLES[table].required:
                raise InputError(f"no export file for table {table} (looked for {', '.join(tm.files)})",
                                 file=str(source_dir), hint="export it, or fix `files:` in the mapping")
            report.tables_not_found.append(table)
            continue
        for f in files:
            if f.name in claimed:
                log.warning("%s is read both as %s and as %s: check the `files:` patterns",
                            f.name, claimed[f.name], table)
            claimed.setdefault(f.name, table)
        reports[table] = TableReport(table)
        results[table] = _read_table(tm, m, files, reports[table], missing)
    if missing:
        raise InputError("required canonical columns are not mapped:\n  " + "\n  ".join(missing),
                         file=m.source, hint="add the headers to the mapping (see docs/importing.md)")
    _derive(m, results, day)
    out_dir.mkdir(parents=True, exist_ok=True)
    for table, (records, rejected) in results.items():
        tr = reports[table]
        tr.rows_mapped = sum(r.n_rows for r in records)
        tr.rows_quarantined = len(rejected)
        tr.records_written = len(records)
        for r in rejected:
            tr.quarantined_by_reason[r.cells[0].reason] += 1
            report.quarantine += r.cells
        if not tr.balanced():
            log.error("import counts do not add up for %s: %s", table, tr)
        write_table(out_dir, table, records, tr)
        report.tables[table] = tr
    if as_of:
        (out_dir / "run.json").write_text(json.dumps({"as_of": day.isoformat()}) + "\n", encoding="utf-8")
    report.write(out_dir)
    log.info("%s", report.summary())
    return report
