"""Reading only the columns an analysis uses from a prepared quarter's tables."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Literal

import pandas as pd
import pyarrow.parquet as pq

from analysis.memory import return_free_memory


def read_columns(prepared, kind: Literal["tables", "derived"], name: str,
                 columns: Iterable[str]) -> pd.DataFrame:
    """Columns ``columns`` of ``prepared.<kind>[name]``, without reading the others.

    A prepared quarter loaded from the cache reads a table whole on first use and keeps
    it (:class:`analysis.prepare.LazyFrames`); at company scale ``survival_episodes``
    alone is about 500 MiB resident, of which an analysis needs a few columns. When the
    table comes from the cache, only ``columns`` are read from its Parquet file (and
    nothing is kept); when it is in memory (a quarter just built), they are selected.
    Either way the values are the same.

    Parameters
    ----------
    prepared : an ``analysis.prepare.Prepared``.
    kind : ``"tables"`` or ``"derived"``.
    name : the table's name, e.g. ``"survival_episodes"``.
    columns : the columns wanted, in this order.

    Returns
    -------
    DataFrame with a RangeIndex.
    """
    from analysis.prepare import LazyFrames

    columns = list(columns)
    frames = getattr(prepared, kind)
    folder = getattr(prepared, "location", None)
    path = Path(folder) / kind / f"{name}.parquet" if folder is not None else None
    if isinstance(frames, LazyFrames) and name in frames and path is not None and path.exists():
        # pd.read_parquet's own steps, with each Arrow column freed once converted
        table = pq.read_table(path, columns=columns, use_pandas_metadata=True)
        frame = table.to_pandas(split_blocks=True, self_destruct=True)
        del table
        return_free_memory()  # Arrow's pool keeps the freed buffers otherwise
        return frame
    return frames[name][columns]


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
    from analysis.prepare import LazyFrames

    columns = list(columns)
    frames = getattr(prepared, kind)
    folder = getattr(prepared, "location", None)
    path = Path(folder) / kind / f"{name}.parquet" if folder is not None else None
    if isinstance(frames, LazyFrames) and name in frames and path is not None and path.exists():
        empty = True
        for batch in pq.ParquetFile(path).iter_batches(batch_size=rows, columns=columns,
                                                       use_pandas_metadata=True):
            empty = False
            yield batch.to_pandas()
        if empty:
            yield read_columns(prepared, kind, name, columns)
        return_free_memory()
        return
    frame = frames[name]
    for start in range(0, max(len(frame), 1), rows):
        yield frame.iloc[start:start + rows][columns]
