"""Import CRM exports (Salesforce, Zoho CRM, Jiandaoyun, DingTalk, or your own mapping).

Public API::

    import_export(mapping, source_dir, out_dir, *, as_of=None) -> ImportReport
    list_presets() -> list[str]
    describe_mapping(mapping, source_dir=None) -> str

See ``docs/importing.md``.
"""

from .describe import describe_mapping
from .mapping import list_presets, load_mapping
from .pipeline import import_export
from .report import ImportReport, TableReport

__all__ = ["import_export", "list_presets", "describe_mapping", "load_mapping", "ImportReport",
           "TableReport"]
