"""Run the quarterly notebooks with papermill and publish the run folder atomically.

``run()`` prepares the inputs once in this process (so a bad input or parameter is
reported before any kernel starts, and the notebooks load the prepared cache),
checks every notebook's parameters cell against what it will inject, executes the
notebooks in a private staging folder ``OUT/.staging/<quarter>-<run id>/`` in order
of their two-digit prefix, merges the findings fragments after each one, exports the
executed notebooks to HTML, writes ``manifest.json`` and finally renames the staging
folder to ``OUT/<quarter>/``. A failed run is moved to ``OUT/.failed/`` for
debugging and the previously published quarter is left as it was.

Faults and how they are reported (one line each, naming the notebook and the cell;
the executed notebook, as far as it got, is kept in the failed run with the failing
cell marked): an exception in a cell, a kernel that dies (killed, out of memory), a
cell running longer than ``timeout`` (each a :class:`NotebookError`), and Ctrl-C
(:class:`RunInterrupted`, a ``KeyboardInterrupt``). Papermill runs in a worker
thread so that Ctrl-C always reaches the runner, which then kills the kernel, waits
for the worker to save the notebook, and moves the staging folder aside.

Only this module touches papermill.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import signal
import threading
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterator

from . import config
from .errors import NotebookError, ParameterError
from .findings import WRITER_ENV, merge_fragments, new_manifest, utc_now, write_manifest

log = logging.getLogger(__name__)

#: Parameters every notebook declares and every run injects.
STANDARD_PARAMETERS = ("source", "quarter", "as_of", "run_dir", "lang")
LANGS = ("en", "zh")
NOTEBOOK_GLOB = "[0-9][0-9]_*.ipynb"
#: Folder of the run holding each kernel's own output (for debugging).
LOG_DIR = "logs"
#: Environment of every kernel: what can move a digit is pinned. Matplotlib renders
#: with Agg through the inline backend: no GUI, and figures land in the notebook's
#: outputs (plain ``Agg`` would silently drop every chart from the analyst reports).
KERNEL_ENV = {"PYTHONHASHSEED": "0", "MPLBACKEND": "module://matplotlib_inline.backend_inline"}
#: Seconds to wait, after Ctrl-C, for the killed kernel's notebook to be saved.
INTERRUPT_GRACE = 30.0


class RunInterrupted(KeyboardInterrupt):
    """Ctrl-C (SIGINT) during a run: names the notebook and cell and where the run is kept.

    A ``KeyboardInterrupt``, so callers that stop on Ctrl-C keep doing so; the CLI
    prints its message and exits with 130.
    """


# ---------------------------------------------------------------- discovery & checks
def discover_notebooks(notebooks_dir: str | Path | None = None) -> list[Path]:
    """The run's notebooks: ``NN_*.ipynb`` in ``notebooks_dir``, sorted by name.

    Raises
    ------
    ParameterError : when the folder holds no such notebook.
    """
    folder = Path(notebooks_dir or config.NOTEBOOKS_DIR)
    found = sorted(folder.glob(NOTEBOOK_GLOB))
    if not found:
        raise ParameterError(f"no notebooks matching {NOTEBOOK_GLOB} in {folder}; "
                             "run `kpisat notebooks --sync` to generate them")
    return found


def declared_parameters(notebook: Path) -> dict[str, dict]:
    """The parameters a notebook's ``parameters`` cell declares (papermill's view).

    Raises
    ------
    ParameterError : when the notebook has no cell tagged ``parameters``.
    """
    import papermill

    try:
        declared = papermill.inspect_notebook(str(notebook))
    except ValueError as e:  # papermill: no kernelspec in the notebook's metadata
        raise ParameterError(f"notebook {notebook.name} cannot be inspected ({e}); "
                             "regenerate it with `kpisat notebooks --sync`") from None
    if not declared:
        raise ParameterError(f"notebook {notebook.name} has no cell tagged 'parameters'; "
                             "tag the cell holding its defaults")
    return declared


def check_parameters(notebooks: list[Path], extra: dict[str, Any]) -> dict[Path, dict]:
    """Check what a run injects against what each notebook declares.

    Every notebook must declare every standard parameter (``source``, ``quarter``,
    ``as_of``, ``run_dir``, ``lang``) and nothing the run does not inject; an extra
    parameter must be declared by at least one notebook. Misspelt names therefore
    fail here instead of being ignored with a warning.

    Parameters
    ----------
    notebooks : the notebooks of the run.
    extra : extra parameters given with ``--param``.

    Returns
    -------
    dict of notebook to the names of the extra parameters it takes.

    Raises
    ------
    ParameterError : listing the allowed names.
    """
    declared = {nb: declared_parameters(nb) for nb in notebooks}
    allowed = sorted(set().union(*declared.values()))
    unknown = sorted(set(extra) - set(allowed))
    if unknown:
        raise ParameterError(f"unknown parameter {', '.join(map(repr, unknown))}; "
                             f"the notebooks take: {', '.join(allowed)}")
    clash = sorted(set(extra) & set(STANDARD_PARAMETERS))
    if clash:
        raise ParameterError(f"parameter {', '.join(map(repr, clash))} is set by its own "
                             "option (--source, --quarter, --as-of, --lang), not --param")
    takes = {}
    for nb, names in declared.items():
        missing = [p for p in STANDARD_PARAMETERS if p not in names]
        if missing:
            raise ParameterError(f"notebook {nb.name} does not declare parameter(s) "
                                 f"{', '.join(missing)}; every notebook declares "
                                 f"{', '.join(STANDARD_PARAMETERS)}")
        stray = sorted(set(names) - set(STANDARD_PARAMETERS) - set(extra))
        if stray:
            raise ParameterError(f"notebook {nb.name} declares parameter(s) "
                                 f"{', '.join(stray)} that this run does not set; pass "
                                 f"--param NAME=VALUE or remove them (the run sets "
                                 f"{', '.join(STANDARD_PARAMETERS)})")
        takes[nb] = {k: v for k, v in extra.items() if k in names}
    return takes


def source_parameter(source: str | None) -> str:
    """The ``source`` value injected into notebooks: "" (sample), an absolute path or a URL.

    Raises
    ------
    ParameterError : for a URL carrying a password (it would be written into the
        executed notebooks); the password belongs in PGPASSWORD or ~/.pgpass.
    """
    if not source:
        return ""
    if "://" in source:
        if _has_secret(source):
            raise ParameterError("the source URL contains a password; remove it and set "
                                 "PGPASSWORD or use ~/.pgpass instead")
        return source
    return str(Path(source).expanduser().resolve())


def _has_secret(url: str) -> bool:
    from urllib.parse import parse_qsl, urlsplit

    parts = urlsplit(url)
    keys = {k.lower() for k, _ in parse_qsl(parts.query)}
    return bool(parts.password) or bool(keys & {"password", "passwd", "pwd", "token", "secret"})


# ---------------------------------------------------------------- the run
def run(source: str | None = None, quarter: str | None = None, as_of: str | None = None,
        out: str | Path | None = None, lang: str = "en", timeout: float = 600,
        progress: bool = True, *, notebooks_dir: str | Path | None = None,
        params: dict[str, Any] | None = None, pseudonymise: bool = False) -> Path:
    """Execute the quarterly notebooks and publish ``OUT/<quarter>/``.

    Parameters
    ----------
    source : folder, ``.duckdb`` file or ``postgresql://`` URL; None = sample company.
    quarter : e.g. ``2025Q4``; None = latest complete quarter on or before as_of.
    as_of : ISO date of the extraction; None = stated by the source, else today.
    out : reports folder; default ``config.REPORTS_DIR``.
    lang : report language, ``en`` or ``zh``.
    timeout : seconds a single notebook cell may run before the run fails.
    progress : log one INFO line per notebook (else DEBUG).
    notebooks_dir : where the notebooks are (default ``config.NOTEBOOKS_DIR``).
    params : extra notebook parameters (each must be declared by a notebook).
    pseudonymise : replace rep and customer ids in every output by keyed HMACs
        (key from ``KPISAT_PSEUDONYM_KEY``, never written anywhere).

    Returns
    -------
    Path of the published ``index.html``.

    Raises
    ------
    ParameterError, InputError, SourceError : before any kernel starts.
    NotebookError : naming the notebook and failing cell; the run is kept under
        ``OUT/.failed/`` and the previous ``OUT/<quarter>/`` is untouched.
    """
    from .prepare import prepare, run_environment

    started = utc_now()
    if lang not in LANGS:
        raise ParameterError(f"lang {lang!r} is not supported; choose one of {', '.join(LANGS)}")
    if not timeout or timeout <= 0:
        raise ParameterError(f"timeout must be a positive number of seconds, not {timeout!r}")
    notebooks = discover_notebooks(notebooks_dir)
    extra = dict(params or {})
    takes = check_parameters(notebooks, extra)
    src = source_parameter(source)
    prepared = prepare(src or None, quarter, as_of, fresh=True, pseudonymise=pseudonymise)
    out = Path(out or config.REPORTS_DIR).resolve()
    run_id = datetime.now(tz=timezone.utc).strftime("%Y%m%dT%H%M%SZ") + f"-{os.getpid()}"
    staging = out / ".staging" / f"{prepared.quarter}-{run_id}"
    staging.mkdir(parents=True)
    base = {"source": src, "quarter": prepared.quarter, "as_of": prepared.as_of,
            "run_dir": str(staging), "lang": lang}
    manifest = new_manifest(
        parameters={**{k: v for k, v in base.items() if k != "run_dir"},
                    "timeout": timeout, "pseudonymised": pseudonymise, **extra},
        fingerprint=prepared.fingerprint, started=started,
        source_description=prepared.source_description,
        notebooks=[nb.stem for nb in notebooks])
    write_manifest(staging, manifest)
    merge_fragments(staging, quarter=prepared.quarter, as_of=prepared.as_of)
    try:
        for i, nb in enumerate(notebooks):
            entry = manifest["notebooks"][i]
            seconds = _run_one(nb, staging, {**base, **takes[nb]}, timeout, entry,
                               position=f"[{i + 1}/{len(notebooks)}]", progress=progress,
                               env=run_environment(prepared, src))
            entry.update(status="ok", seconds=round(seconds, 1))
            merge_fragments(staging, quarter=prepared.quarter, as_of=prepared.as_of)
            write_manifest(staging, manifest)
            export_html(staging / nb.name)
    except NotebookError as e:
        manifest.update(status="failed", finished=utc_now())
        write_manifest(staging, manifest)
        failed = _keep_failed(staging, out, prepared.quarter, run_id)
        raise NotebookError(f"{e}; the failed run is kept in {failed}") from None
    except KeyboardInterrupt as e:  # Ctrl-C in a notebook or between notebooks
        what = str(e) or "interrupted"
        manifest.update(status="interrupted", finished=utc_now())
        for entry in manifest["notebooks"]:
            if entry["status"] == "running":
                entry["status"] = "interrupted"
        with contextlib.suppress(OSError):
            write_manifest(staging, manifest)
        failed = _keep_failed(staging, out, prepared.quarter, run_id)
        raise RunInterrupted(f"{what}; the failed run is kept in {failed}") from None
    manifest.update(status="ok", finished=utc_now())
    write_manifest(staging, manifest)
    final = publish(staging, out / prepared.quarter)
    _update_archive(out, lang)
    index = final / "index.html"
    if not index.exists():
        log.warning("the run wrote no index.html (is 90_quarterly_report among the notebooks?)")
    return index


def _run_one(nb: Path, staging: Path, parameters: dict, timeout: float, entry: dict, *,
             position: str, progress: bool, env: dict[str, str]) -> float:
    """Execute one notebook into ``staging``; return its seconds.

    Raises
    ------
    NotebookError : a cell raised, the kernel died or a cell timed out; the executed
        notebook (as far as it got, failing cell marked) is saved in ``staging``.
    RunInterrupted : Ctrl-C; the kernel is killed and the notebook saved likewise.
    """
    import papermill
    from nbclient.exceptions import CellTimeoutError, DeadKernelError
    from papermill.exceptions import PapermillExecutionError

    level = logging.INFO if progress else logging.DEBUG
    target = staging / nb.name
    watch = _KernelWatch()
    t0 = time.perf_counter()
    log.log(level, "%s %s ...", position, nb.stem)
    entry["status"] = "running"

    def execute() -> None:
        papermill.execute_notebook(
            str(nb), str(target), parameters=parameters, kernel_name="python3",
            progress_bar=False, log_output=False, cwd=str(staging),
            execution_timeout=timeout, request_save_on_cell_execute=False,
            engine_name=_engine_name(),
            on_failure=lambda executed, exc: _save_failed(executed, target, exc, watch, timeout),
            kernel_manager_class=_logging_kernel_manager(
                staging / LOG_DIR / f"{nb.stem}.kernel.log", watch))

    def failed(status: str = "failed") -> None:
        seconds = time.perf_counter() - t0
        entry.update(status=status, seconds=round(seconds, 1))
        log.log(level, "%s %s %s (%.1f s)", position, nb.stem, status, seconds)

    try:
        with kernel_environment(nb.stem, env):
            _in_worker(execute, watch, name=f"kpisat-{nb.stem}")
    except KeyboardInterrupt:
        failed("interrupted")
        raise RunInterrupted(f"interrupted in notebook {nb.stem}{_failing_cell(target)}") from None
    except PapermillExecutionError as e:
        failed()
        first = next((ln for ln in str(e.source).splitlines() if ln.strip()), "")
        raise NotebookError(
            f"notebook {nb.stem} failed at cell {e.cell_index + 1} ({first.strip()!r}): "
            f"{e.ename}: {_last_line(e.evalue)}") from None
    except DeadKernelError:
        failed()
        raise NotebookError(
            f"notebook {nb.stem}: kernel died{_failing_cell(target)} (killed, or out of "
            f"memory?); its output is in {LOG_DIR}/{nb.stem}.kernel.log") from None
    except CellTimeoutError:
        failed()
        raise NotebookError(
            f"notebook {nb.stem}: timed out after {timeout:g} s{_failing_cell(target)}; "
            "allow more with --timeout SECONDS") from None
    except Exception as e:  # kernel that cannot start, and anything else: named the same way
        failed()
        raise NotebookError(f"notebook {nb.stem} failed{_failing_cell(target)}: "
                            f"{type(e).__name__}: {_last_line(str(e))}") from None
    seconds = time.perf_counter() - t0
    log.log(level, "%s %s ok (%.1f s)", position, nb.stem, seconds)
    return seconds


class _KernelWatch:
    """The kernels one notebook's execution started, so Ctrl-C can stop them."""

    def __init__(self) -> None:
        self.groups: list[int] = []  # process groups (each kernel leads its own session)
        self.cancelled = threading.Event()

    def launched(self, provisioner: Any) -> None:
        pid = getattr(provisioner, "pgid", None) or getattr(provisioner, "pid", None)
        if pid:
            self.groups.append(int(pid))
        if self.cancelled.is_set():  # Ctrl-C came while the kernel was starting
            self.kill()

    def kill(self) -> None:
        own = os.getpgid(0)
        for group in self.groups:
            if group != own:
                with contextlib.suppress(OSError):
                    os.killpg(group, signal.SIGKILL)

    def stop(self, done: threading.Event) -> None:
        """Kill the kernels until the worker (which then saves the notebook) is ``done``."""
        self.cancelled.set()
        deadline = time.monotonic() + INTERRUPT_GRACE
        while not done.is_set() and time.monotonic() < deadline:
            self.kill()
            done.wait(0.1)
        if not done.is_set():
            log.warning("the notebook did not stop within %.0f s of Ctrl-C", INTERRUPT_GRACE)


def _in_worker(fn: Any, watch: _KernelWatch, *, name: str) -> None:
    """Run ``fn()`` in a worker thread; re-raise its exception here.

    Signals reach only the main thread, so Ctrl-C interrupts the wait below instead
    of papermill's event loop (where nbclient would swallow it, shut the kernel down
    and leave tasks behind). On Ctrl-C the kernel is killed, the worker is given
    :data:`INTERRUPT_GRACE` seconds to save the notebook, and KeyboardInterrupt goes on.
    """
    import asyncio

    outcome: dict[str, BaseException] = {}
    done = threading.Event()  # not Thread.join: an interrupted join marks the thread
    # stopped while it still runs (CPython < 3.13, gh-90882)

    def work() -> None:
        try:
            fn()
        except BaseException as e:  # noqa: BLE001 - handed to the main thread
            outcome["error"] = e
        finally:  # the thread's own event loop (jupyter_core made one): release it
            with contextlib.suppress(Exception):
                loop = asyncio.get_event_loop_policy().get_event_loop()
                if not loop.is_running():
                    loop.close()
            done.set()

    threading.Thread(target=work, name=name, daemon=True).start()
    try:
        while not done.wait(0.2):
            pass
    except KeyboardInterrupt:
        watch.stop(done)
        raise
    if "error" in outcome:
        raise outcome.pop("error")


_ENGINE = "kpisat"
_engine_registered = False


def _engine_name() -> str:
    """Papermill's nbclient engine, saving the executed notebook however execution ends.

    Papermill itself saves it only when a cell raises; a dead kernel, a timeout or an
    interruption would leave nothing to debug. ``on_failure(nb, exc)`` gets the
    notebook as far as it got.
    """
    from papermill.engines import NBClientEngine, papermill_engines

    class KeepingEngine(NBClientEngine):
        @classmethod
        def execute_notebook(cls, nb, kernel_name, on_failure=None, **kwargs):
            try:
                return super().execute_notebook(nb, kernel_name, **kwargs)
            except BaseException as e:
                if on_failure is not None:
                    try:
                        on_failure(nb, e)
                    except Exception as save_error:  # noqa: BLE001 - keep the real error
                        log.warning("could not save the failed notebook: %s", save_error)
                raise

    global _engine_registered
    if not _engine_registered:
        papermill_engines.register(_ENGINE, KeepingEngine)
        _engine_registered = True
    return _ENGINE


def _save_failed(nb: Any, target: Path, exc: BaseException, watch: _KernelWatch,
                 timeout: float) -> None:
    """Save a notebook whose execution stopped, marking the cell that was running."""
    import nbformat
    from nbclient.exceptions import CellTimeoutError, DeadKernelError

    if watch.cancelled.is_set():
        ename, evalue = "KeyboardInterrupt", "the run was interrupted (Ctrl-C) in this cell"
    elif isinstance(exc, DeadKernelError):
        ename, evalue = "DeadKernelError", "the kernel died while this cell ran"
    elif isinstance(exc, CellTimeoutError):
        ename, evalue = "CellTimeoutError", f"the cell ran longer than {timeout:g} s"
    else:
        ename, evalue = type(exc).__name__, _last_line(str(exc))
    started = [c for c in nb.cells
               if c.get("metadata", {}).get("papermill", {}).get("status") not in (None, "pending")]
    if started and not any(c.metadata.papermill.get("status") == "failed" for c in started):
        cell = started[-1]
        cell.metadata.papermill.update(status="failed", exception=True)
        if cell.cell_type == "code":
            cell.outputs.append(nbformat.v4.new_output(
                "error", ename=ename, evalue=evalue, traceback=[f"{ename}: {evalue}"]))
        nb.metadata.setdefault("papermill", {})["exception"] = True
    target.write_text(nbformat.writes(nb), encoding="utf-8")


def _last_line(text: str) -> str:
    lines = [ln.strip() for ln in str(text).strip().splitlines() if ln.strip()]
    return lines[-1] if lines else ""


def _failing_cell(executed: Path) -> str:
    """`` at cell N ('first line')`` for the cell papermill marked running/failed."""
    try:
        import nbformat
        nb = nbformat.read(executed, as_version=4)
    except Exception:  # noqa: BLE001 - no executed notebook, nothing to point at
        return ""
    for i, cell in enumerate(nb.cells):
        status = cell.get("metadata", {}).get("papermill", {}).get("status")
        if status in ("running", "failed"):
            first = next((ln for ln in cell.source.splitlines() if ln.strip()), "")
            return f" at cell {i + 1} ({first.strip()!r})"
    return ""


@contextlib.contextmanager
def kernel_environment(notebook: str, extra: dict[str, str] | None = None) -> Iterator[None]:
    """Environment a kernel inherits while ``notebook`` runs (restored afterwards).

    Pins ``PYTHONHASHSEED`` and the Matplotlib backend, names the notebook for
    findings fragments, hands on the run's prepared inputs (``extra``), and puts the
    project root on ``PYTHONPATH`` so the kernel imports this checkout's ``analysis``.
    """
    root = str(config.PROJECT_ROOT)
    path = os.environ.get("PYTHONPATH", "")
    updates = {**KERNEL_ENV, **(extra or {}), WRITER_ENV: notebook,
               "PYTHONPATH": root + (os.pathsep + path if path else "")}
    saved = {k: os.environ.get(k) for k in updates}
    os.environ.update(updates)
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def _logging_kernel_manager(log_path: Path, watch: _KernelWatch | None = None) -> type:
    """A kernel manager class whose kernel writes its own stdout/stderr to ``log_path``.

    The kernel process's chatter (transport warnings, shutdown messages) belongs in
    the run folder for debugging, not in the user's terminal. Each kernel started is
    recorded in ``watch`` (so Ctrl-C can kill it).
    """
    from jupyter_client.manager import AsyncKernelManager

    async def _async_launch_kernel(self, kernel_cmd, **kw):
        log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(log_path, "ab") as sink:  # the child keeps its own copy of the handle
            kw.setdefault("stdout", sink)
            kw.setdefault("stderr", sink)
            if watch is not None and watch.cancelled.is_set():
                raise RuntimeError("the run was interrupted before the kernel started")
            try:
                return await AsyncKernelManager._async_launch_kernel(self, kernel_cmd, **kw)
            finally:
                if watch is not None:
                    watch.launched(self.provisioner)

    return type("LoggingKernelManager", (AsyncKernelManager,),
                {"_async_launch_kernel": _async_launch_kernel})


# ---------------------------------------------------------------- outputs
def export_html(executed: Path) -> Path:
    """Export an executed notebook to a self-contained HTML file beside it."""
    import nbformat
    from nbconvert import HTMLExporter

    nb = nbformat.read(executed, as_version=4)
    exporter = HTMLExporter(template_name="lab")
    body, _ = exporter.from_notebook_node(nb, resources={"metadata": {"name": executed.stem}})
    target = executed.with_suffix(".html")
    target.write_text(body, encoding="utf-8")
    return target


def publish(staging: Path, final: Path) -> Path:
    """Rename ``staging`` to ``final``; the previous ``final`` is removed only afterwards."""
    aside = None
    if final.exists():
        aside = final.with_name(f".old-{final.name}-{os.getpid()}-{time.time_ns()}")
        os.rename(final, aside)
    try:
        os.rename(staging, final)
    except OSError:
        if aside is not None:
            os.rename(aside, final)
        raise
    if aside is not None:
        shutil.rmtree(aside, ignore_errors=True)
    _remove_if_empty(staging.parent)
    log.info("published %s", final)
    return final


def _update_archive(out: Path, lang: str) -> None:
    """Refresh ``OUT/index.html`` (every published quarter); a failure only warns."""
    try:
        from .archive import update_archive

        update_archive(out, lang=lang)
    except Exception as e:  # noqa: BLE001 - the quarter is published; the list is a nicety
        log.warning("could not update the reports index %s: %s", out / "index.html", e)


def _keep_failed(staging: Path, out: Path, quarter: str, run_id: str) -> Path:
    target = out / ".failed" / f"{quarter}-{run_id}"
    target.parent.mkdir(parents=True, exist_ok=True)
    os.rename(staging, target)
    _remove_if_empty(staging.parent)
    log.info("kept the failed run in %s", target)
    return target


def _remove_if_empty(folder: Path) -> None:
    with contextlib.suppress(OSError):
        folder.rmdir()
