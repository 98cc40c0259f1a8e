"""Domain exceptions: every error a user can meet says what, where and what to do."""

from __future__ import annotations


class KpisatError(Exception):
    """Base class of every error kpisat reports to a user (shown without traceback)."""


class InputError(KpisatError):
    """A fatal problem with the input data (missing table, column, unreadable file).

    Parameters
    ----------
    problem : what is wrong.
    file : the file (or table location) concerned.
    column, row : where, when known (row is the 1-based data row, header excluded).
    hint : what the user should do about it.
    """

    def __init__(self, problem: str, *, file: str | None = None, column: str | None = None,
                 row: int | None = None, hint: str | None = None):
        self.problem, self.file, self.column, self.row, self.hint = problem, file, column, row, hint
        where = ", ".join(p for p in (
            f"file {file}" if file else "",
            f"column {column!r}" if column else "",
            f"row {row}" if row is not None else "",
        ) if p)
        msg = f"{where}: {problem}" if where else problem
        if hint:
            msg += f" — {hint}"
        super().__init__(msg)


class ParameterError(KpisatError):
    """A bad parameter or option (unknown name, bad quarter label, bad plan)."""


class SourceError(KpisatError):
    """A data source cannot be opened or read (never includes credentials)."""


class NotebookError(KpisatError):
    """A notebook failed during a run; names the notebook and the failing cell."""
