"""Reading only the columns an analysis uses from a prepared quarter's tables."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Literal

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from analysis.memory import return_free_memory


def _cached_file(prepared, kind: str, name: str) -> Path | None:
    """The Parquet file ``prepared.<kind>[name]`` is read from on use, else None (the
    table is in memory: a quarter prepared in PostgreSQL)."""
    from analysis.prepare import LazyFrames

    frames, folder = getattr(prepared, kind), getattr(prepared, "location", None)
    if not isinstance(frames, LazyFrames) or name not in frames or folder is None:
        return None
    path = Path(folder) / kind / f"{name}.parquet"
    return path if path.exists() else None


def read_columns(prepared, kind: Literal["tables", "derived"], name: str,
                 columns: Iterable[str], *, categories: bool = False) -> pd.DataFrame:
    """Columns ``columns`` of ``prepared.<kind>[name]``, without reading the others.

    A prepared quarter loaded from the cache reads a table whole on first use and keeps
    it (:class:`analysis.prepare.LazyFrames`); at company scale ``survival_episodes``
    alone is about 500 MiB resident, of which an analysis needs a few columns. When the
    table comes from the cache, only ``columns`` are read from its Parquet file (and
    nothing is kept); when it is in memory, they are selected. Either way the values
    are the same.

    Parameters
    ----------
    prepared : an ``analysis.prepare.Prepared``.
    kind : ``"tables"`` or ``"derived"``.
    name : the table's name, e.g. ``"survival_episodes"``.
    columns : the columns wanted, in this order.
    categories : read the string columns from the cache as categoricals with sorted
        categories (a quarter of the memory of object strings at scale). Only for
        consumers that treat a categorical as its strings, as the churn models do.

    Returns
    -------
    DataFrame with a RangeIndex.

    Raises
    ------
    KeyError : a column the table does not have.
    """
    columns = list(columns)
    path = _cached_file(prepared, kind, name)
    if path is None:
        return getattr(prepared, kind)[name][columns]
    schema = pq.read_schema(path)
    missing = [c for c in columns if c not in schema.names]
    if missing:
        raise KeyError(f"{name} has no column(s) {', '.join(missing)}")
    strings = [c for c in columns if categories and (
        pa.types.is_string(schema.field(c).type) or pa.types.is_large_string(schema.field(c).type))]
    table = pq.read_table(path, columns=columns, use_pandas_metadata=True,
                          read_dictionary=strings or None)
    # one block per column, each Arrow column freed once converted
    frame = table.to_pandas(split_blocks=True, self_destruct=True)
    del table
    return_free_memory()  # Arrow's pool keeps the freed buffers otherwise
    for c in strings:
        frame[c] = frame[c].cat.reorder_categories(sorted(frame[c].cat.categories))
    return frame


def read_batches(prepared, kind: Literal["tables", "derived"], name: str,
                 columns: Iterable[str], rows: int = 1 << 18) -> Iterator[pd.DataFrame]:
    """:func:`read_columns` in consecutive parts of at most ``rows`` rows, in row order.

    For sums over a large table (the parts are read one at a time, so only one is in
    memory). An integer column with missing values is float in the parts that have
    some and int in the others; use it where that does not matter.

    Yields
    ------
    DataFrame of ``columns`` (at least one, empty when the table is).
    """
    columns = list(columns)
    path = _cached_file(prepared, kind, name)
    if path is None:
        frame = getattr(prepared, kind)[name]
        for start in range(0, max(len(frame), 1), rows):
            yield frame.iloc[start:start + rows][columns]
        return
    empty = True
    for batch in pq.ParquetFile(path).iter_batches(batch_size=rows, columns=columns,
                                                   use_pandas_metadata=True):
        empty = False
        yield batch.to_pandas()
    if empty:
        yield read_columns(prepared, kind, name, columns)
    return_free_memory()
