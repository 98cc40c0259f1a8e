"""Load and check a CRM mapping: YAML that says how an export becomes canonical tables.

A mapping is data, never code. It names, for each canonical table of
``analysis.contract``, the export file(s) and how each canonical column is made:
from a source header (alternatives allowed), through a value map, a declared date
format, a constant, a test (``equals``) or a derivation from other tables. Unknown
keys, tables and columns are rejected with the allowed names, so a misspelling
never silently maps nothing. See ``analysis/presets/template.yaml`` and
``docs/importing.md``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import yaml

from ..contract import TABLES
from ..errors import InputError
from .parsers import value_key
from .readers import normal_header

PRESETS_DIR = Path(__file__).resolve().parent.parent / "presets"

#: Derivations a column may declare, by (table, column).
DERIVATIONS = {
    ("customers", "acquired_date"): "first_won_deal",
    ("customers", "acquiring_rep_id"): "first_won_deal",
    ("deals", "is_new_business"): "first_won_deal",
    ("contracts", "outcome"): "successor_contract",
}
_TOP_KEYS = {"name", "description", "encoding", "timezone", "footer_patterns", "tables", "notes"}
_TABLE_KEYS = {"files", "canonical", "encoding", "sheet", "header_search_rows", "keep_if",
               "fill_down", "combine", "columns", "constants"}
_COLUMN_KEYS = {"from", "format", "values", "default", "constant", "equals", "derive", "id",
                "decimal", "grace_days", "only_when"}


@dataclass(frozen=True)
class ColumnSpec:
    """How one canonical column is made."""

    name: str
    kind: str
    sources: tuple[str, ...] = ()
    formats: tuple[str, ...] = ()
    values: dict = field(default_factory=dict)  # value_key(raw) -> canonical value
    default: object = None
    constant: object = None
    equals: frozenset = frozenset()
    derive: str | None = None
    id_kind: str | None = None
    decimal: str = "."
    grace_days: int = 31
    only_when: tuple[str, frozenset] | None = None  # (other canonical column, allowed values)


@dataclass(frozen=True)
class TableMapping:
    """How one canonical table is read from export files."""

    table: str
    files: tuple[str, ...]
    columns: dict[str, ColumnSpec]
    canonical: bool = False
    encoding: str = "auto"
    sheet: str | None = None
    search_rows: int = 20
    keep_if: tuple[tuple[str, ...], frozenset] | None = None  # (source headers, value keys)
    fill_key: tuple[str, ...] = ()
    fill_columns: tuple[str, ...] = ()
    combine_sum: tuple[str, ...] = ()
    combine: bool = False

    def expected_headers(self) -> set[str]:
        """Every source header this table's mapping can use (for header detection)."""
        names = {s for c in self.columns.values() for s in c.sources}
        names |= set(self.fill_key) | set(self.fill_columns)
        if self.keep_if:
            names |= set(self.keep_if[0])
        return names


@dataclass(frozen=True)
class Mapping:
    """A whole mapping: one :class:`TableMapping` per canonical table it provides."""

    name: str
    description: str
    source: str
    tables: dict[str, TableMapping]
    footer_patterns: tuple[str, ...] = ()
    timezone: str | None = None
    notes: str = ""


def list_presets() -> list[str]:
    """Names of the bundled presets (``template`` is the documented starting point, not a preset)."""
    return sorted(p.stem for p in PRESETS_DIR.glob("*.yaml") if p.stem != "template")


def _locate(mapping: str | Path) -> Path:
    path = Path(mapping)
    if isinstance(mapping, str) and path.suffix == "" and len(path.parts) == 1:
        preset = PRESETS_DIR / f"{mapping}.yaml"
        if preset.exists():
            return preset
        raise InputError(f"no preset called {mapping!r}",
                         hint=f"use one of {', '.join(list_presets())} or a path to a mapping YAML")
    if not path.exists():
        raise InputError("mapping file not found", file=str(path),
                         hint=f"give a preset name ({', '.join(list_presets())}) or an existing YAML path")
    return path


def _as_tuple(value: object) -> tuple:
    if value is None:
        return ()
    return tuple(value) if isinstance(value, (list, tuple)) else (value,)


def _check_keys(given: dict, allowed: set[str], where: str, file: str) -> None:
    unknown = sorted(set(given) - allowed)
    if unknown:
        raise InputError(f"unknown key(s) {', '.join(unknown)} in {where}", file=file,
                         hint=f"allowed: {', '.join(sorted(allowed))}")


def _column(table: str, name: str, raw: object, file: str) -> ColumnSpec:
    if name not in {c.name for c in TABLES[table].columns}:
        allowed = ", ".join(c.name for c in TABLES[table].columns)
        raise InputError(f"table {table} has no column {name!r}", file=file, hint=f"columns: {allowed}")
    kind = TABLES[table].column(name).kind
    if raw is None or isinstance(raw, (str, list)):
        raw = {"from": raw}
    if not isinstance(raw, dict):
        raise InputError(f"{table}.{name}: expected a header, a list of headers or a mapping", file=file)
    _check_keys(raw, _COLUMN_KEYS, f"{table}.{name}", file)
    where = f"{table}.{name}"
    if "format" in raw and kind != "date":
        raise InputError(f"{where}: `format` applies to date columns only", file=file)
    if "equals" in raw and kind != "bool":
        raise InputError(f"{where}: `equals` applies to true/false columns only", file=file)
    if raw.get("id") not in (None, "salesforce"):
        raise InputError(f"{where}: unknown id kind {raw['id']!r}", file=file, hint="allowed: salesforce")
    if raw.get("decimal", ".") not in (".", ","):
        raise InputError(f"{where}: decimal must be '.' or ','", file=file)
    derive = raw.get("derive")
    if derive is not None and DERIVATIONS.get((table, name)) != derive:
        options = [f"{t}.{c}: {d}" for (t, c), d in DERIVATIONS.items()]
        raise InputError(f"{where}: cannot derive {derive!r}", file=file, hint="derivations: " + "; ".join(options))
    values = {value_key(k): v for k, v in (raw.get("values") or {}).items()}
    only = raw.get("only_when")
    if only is not None:
        if not isinstance(only, dict) or len(only) != 1:
            raise InputError(f"{where}: only_when takes one column, e.g. only_when: {{status: [won, lost]}}",
                             file=file)
        (other, allowed), = only.items()
        only = (other, frozenset(_as_tuple(allowed)))
    return ColumnSpec(
        name, kind, tuple(str(s) for s in _as_tuple(raw.get("from"))), tuple(_as_tuple(raw.get("format"))),
        values, raw.get("default"), raw.get("constant"),
        frozenset(value_key(v) for v in _as_tuple(raw.get("equals"))), derive, raw.get("id"),
        raw.get("decimal", "."), int(raw.get("grace_days", 31)), only)


def _table(name: str, raw: dict, defaults: dict, file: str) -> TableMapping:
    if name not in TABLES:
        raise InputError(f"unknown table {name!r}", file=file, hint=f"tables: {', '.join(TABLES)}")
    if not isinstance(raw, dict):
        raise InputError(f"table {name}: expected a mapping of keys", file=file)
    _check_keys(raw, _TABLE_KEYS, f"table {name}", file)
    files = tuple(str(f) for f in _as_tuple(raw.get("files")))
    if not files:
        raise InputError(f"table {name}: `files` is missing", file=file,
                         hint="list the export file name pattern(s), e.g. files: [\"Opportunit*.csv\"]")
    canonical = bool(raw.get("canonical", False))
    cols = dict(raw.get("columns") or {})
    if canonical:
        for c in TABLES[name].columns:
            cols.setdefault(c.name, c.name)
    for col, const in (raw.get("constants") or {}).items():
        cols[col] = {"constant": const}
    columns = {c: _column(name, c, spec, file) for c, spec in cols.items()}
    keep = raw.get("keep_if")
    keep_if = None
    if keep:
        keep_if = (tuple(_as_tuple(keep.get("column"))), frozenset(value_key(v) for v in _as_tuple(keep.get("values"))))
    fill = raw.get("fill_down") or {}
    combine = raw.get("combine") or {}
    sums = tuple(_as_tuple(combine.get("sum")))
    for s in sums:
        if s not in columns:
            raise InputError(f"table {name}: combine.sum names unmapped column {s!r}", file=file)
    return TableMapping(
        name, files, columns, canonical, raw.get("encoding", defaults.get("encoding", "auto")),
        raw.get("sheet"), int(raw.get("header_search_rows", 20)), keep_if,
        tuple(_as_tuple(fill.get("key"))), tuple(_as_tuple(fill.get("columns"))), sums, bool(combine))


def load_mapping(mapping: str | Path) -> Mapping:
    """Load a preset by name, or a user mapping YAML by path, and check it.

    Raises
    ------
    InputError : unknown preset, unreadable YAML, unknown keys/tables/columns.
    """
    path = _locate(mapping)
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        raise InputError(f"is not valid UTF-8 YAML ({exc})", file=str(path)) from None
    if not isinstance(raw, dict) or not isinstance(raw.get("tables"), dict):
        raise InputError("a mapping needs a `tables:` section", file=str(path),
                         hint="start from analysis/presets/template.yaml")
    _check_keys(raw, _TOP_KEYS, "the mapping", str(path))
    tables = {n: _table(n, t, raw, str(path)) for n, t in raw["tables"].items()}
    return Mapping(str(raw.get("name", path.stem)), str(raw.get("description", "")).strip(), str(path),
                   tables, tuple(raw.get("footer_patterns") or ()), raw.get("timezone"),
                   str(raw.get("notes", "")).strip())


def resolve_sources(spec: ColumnSpec, headers: list[str]) -> str | None:
    """The first of the column's source headers present in ``headers`` (as written there)."""
    by_norm = {normal_header(h): h for h in headers}
    return next((by_norm[normal_header(s)] for s in spec.sources if normal_header(s) in by_norm), None)
