"""``describe_mapping``: what a mapping reads, and what it leaves unmapped."""

from __future__ import annotations

from pathlib import Path

from ..contract import TABLES
from .apply import resolve_columns, unused_columns
from .mapping import Mapping, TableMapping, load_mapping
from .pipeline import match_files
from .readers import read_table


def _column_line(tm: TableMapping, name: str) -> str:
    spec = tm.columns.get(name)
    if spec is None:
        return "(not mapped)"
    if spec.constant is not None:
        return f"constant {spec.constant!r}"
    parts = [" | ".join(spec.sources)] if spec.sources else []
    if spec.formats:
        parts.append(f"format {' or '.join(spec.formats)}")
    if spec.values:
        parts.append(f"{len(spec.values)} mapped values")
    if spec.equals:
        parts.append("true when " + " or ".join(sorted(spec.equals)))
    if spec.derive:
        parts.append(f"derived: {spec.derive}")
    return "; ".join(parts) or "(not mapped)"


def _with_files(tm: TableMapping, source_dir: Path) -> list[str]:
    files = match_files(source_dir, tm.files)
    if not files:
        return [f"    no file matches {', '.join(tm.files)}"]
    lines = []
    for path in files:
        raw = read_table(path, expected=tm.expected_headers(), encoding=tm.encoding, sheet=tm.sheet,
                         search_rows=tm.search_rows)
        used = resolve_columns(tm, raw)
        missing = [c.name for c in TABLES[tm.table].columns
                   if used.get(c.name) is None and not (tm.columns.get(c.name) and (
                       tm.columns[c.name].constant is not None or tm.columns[c.name].derive))]
        required = [c for c in missing if not TABLES[tm.table].column(c).nullable
                    and not TABLES[tm.table].column(c).optional]
        lines.append(f"    {path.name}: header on row {raw.header_row}, {len(raw.rows)} rows below it")
        if required:
            lines.append(f"      REQUIRED columns unmapped: {', '.join(required)}")
        others = [c for c in missing if c not in required]
        if others:
            lines.append(f"      optional/nullable columns unmapped (written empty): {', '.join(others)}")
        unused = unused_columns(tm, raw, used)
        if unused:
            lines.append(f"      source columns unused: {', '.join(unused)}")
    return lines


def describe_mapping(mapping: str | Path | Mapping, source_dir: Path | None = None) -> str:
    """Describe a mapping in plain text, as ``kpisat import --describe`` prints it.

    Parameters
    ----------
    mapping : preset name, mapping YAML path, or a loaded mapping.
    source_dir : an export folder; when given, each table's files are opened and the
        text lists required columns left unmapped and source columns left unused.
    """
    m = mapping if isinstance(mapping, Mapping) else load_mapping(mapping)
    lines = [f"Mapping {m.name} ({m.source})"]
    if m.description:
        lines.append(f"  {m.description}")
    for table, spec in TABLES.items():
        tm = m.tables.get(table)
        if tm is None:
            lines.append(f"  {table}: not provided" + (" (REQUIRED)" if spec.required else " (optional)"))
            continue
        lines.append(f"  {table}: files {', '.join(tm.files)}" + (" (canonical as-is)" if tm.canonical else ""))
        if not tm.canonical:
            for col in spec.columns:
                lines.append(f"    {col.name:<20} <- {_column_line(tm, col.name)}")
        if source_dir is not None:
            lines += _with_files(tm, Path(source_dir))
    return "\n".join(lines)
