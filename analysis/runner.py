"""Run the quarterly notebooks with papermill and publish the run folder atomically.

``run()`` checks every notebook's parameters cell against what it will inject, then
prepares the inputs once, in a child process (so a bad input or parameter is reported
before any kernel starts, the notebooks load the prepared cache, and this process
stays small while the kernels run; meanwhile it imports what executing needs),
executes the notebooks in a private staging folder ``OUT/.staging/<quarter>-<run
id>/``, merges the findings fragments after each one, exports the executed notebooks
to HTML, writes ``manifest.json`` and finally renames the staging folder to
``OUT/<quarter>/``. A failed run is moved to ``OUT/.failed/`` for debugging and the
previously published quarter is left as it was.

Notebooks that declare themselves independent (``kpisat: {independent: true}`` in
their metadata: they read only the prepared inputs) run up to ``jobs`` at a time;
a notebook that names the notebooks whose findings it reads (``kpisat: {reads:
[...]}``, like the trade-offs) waits for those only; any other notebook (like the
report) waits for every notebook before it and runs alone.
Findings are merged in notebook order whatever order notebooks finish in, so the
published run does not depend on ``jobs``. Notebooks start in order of how many
notebooks wait for them (those the trade-offs read first), then of their prefix. While
a core is free, the kernel of the next notebook is started ahead and imports that
notebook's modules. A notebook's kernel is killed once its last output is in.

Faults and how they are reported (one line each, naming the notebook and the cell;
the executed notebook, as far as it got, is kept in the failed run with the failing
cell marked): an exception in a cell, a kernel that dies (killed, out of memory), a
cell running longer than ``timeout`` (each a :class:`NotebookError`), and Ctrl-C or
SIGTERM (:class:`RunInterrupted`, a ``KeyboardInterrupt``). Papermill runs in worker
threads so that signals always reach the runner, which then kills the kernels, waits
for the workers to save the notebooks, and moves the staging folder aside.

Only this module touches papermill.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import queue
import shutil
import signal
import sys
import threading
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterator

from . import config
from .errors import NotebookError, ParameterError
from .findings import WRITER_ENV, merge_fragments, new_manifest, utc_now, write_manifest

log = logging.getLogger(__name__)

# nbformat (papermill, nbconvert) validates with jsonschema, whose format checkers import
# rfc3987_syntax when it is installed; that builds a Lark grammar at import time: about
# 1.3 s of CPU before a run can start, for IRI formats notebook validation never checks.
# Marking it missing makes jsonschema skip those two checkers.
if "jsonschema._format" not in sys.modules:
    sys.modules.setdefault("rfc3987_syntax", None)  # type: ignore[arg-type]

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
#: Most notebooks run at once (one per core): what the sample's kernels can use.
MAX_JOBS = 2
#: Key in a notebook's ``kpisat`` metadata declaring it reads only the prepared inputs.
INDEPENDENT_KEY = "independent"
#: Key in a notebook's ``kpisat`` metadata listing the notebooks whose findings it reads.
READS_KEY = "reads"
#: Seconds to wait for a finished cell's last output. papermill raises a
#: CellTimeoutError after nbclient's default 4 s, which a loaded machine (two kernels
#: beside pytest -n 2) exceeded: a 60 s run was reported "timed out after 600 s".
IOPUB_TIMEOUT = 60
#: Exit codes of a run stopped by Ctrl-C (SIGINT) and by SIGTERM (128 + signal number).
EXIT_INTERRUPTED, EXIT_TERMINATED = 130, 128 + signal.SIGTERM


class RunInterrupted(KeyboardInterrupt):
    """Ctrl-C (SIGINT) or SIGTERM during a run: names the notebook and cell and where
    the run is kept.

    A ``KeyboardInterrupt``, so callers that stop on Ctrl-C keep doing so; the CLI
    prints its message and exits with ``exit_code`` (130 for Ctrl-C, 143 for SIGTERM).
    """

    def __init__(self, message: str = "", *, exit_code: int = EXIT_INTERRUPTED) -> None:
        super().__init__(message)
        self.exit_code = exit_code


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
def default_jobs() -> int:
    """How many notebooks run at once by default: one per core, at most :data:`MAX_JOBS`."""
    return max(1, min(MAX_JOBS, os.cpu_count() or 1))


def _kpisat_metadata(notebook: Path) -> dict:
    import json

    try:
        meta = json.loads(notebook.read_text(encoding="utf-8")).get("metadata", {})
    except (OSError, ValueError):
        return {}
    return meta.get("kpisat") or {}


def is_independent(notebook: Path) -> bool:
    """Whether a notebook declares ``kpisat: {independent: true}`` in its metadata.

    An independent notebook reads only the prepared inputs (never what other notebooks
    of the run wrote), so it may run beside other independent notebooks. Any other
    notebook waits for the notebooks whose findings it reads (:func:`reads_findings_of`),
    and every notebook after it waits for it.
    """
    return bool(_kpisat_metadata(notebook).get(INDEPENDENT_KEY, False))


def reads_findings_of(notebook: Path, notebooks: list[Path]) -> list[int] | None:
    """Positions in ``notebooks`` of the notebooks whose findings ``notebook`` reads.

    From ``kpisat: {reads: [<notebook names>]}`` in its metadata; None when it names
    none (it then reads the findings of every notebook before it).

    Raises
    ------
    ParameterError : a named notebook is not among those that run before it.
    """
    names = _kpisat_metadata(notebook).get(READS_KEY)
    if names is None:
        return None
    before = [nb.stem for nb in notebooks[:notebooks.index(notebook)]]
    unknown = [n for n in names if n not in before]
    if unknown:
        raise ParameterError(f"notebook {notebook.name} reads the findings of "
                             f"{', '.join(unknown)}, which do not run before it; fix "
                             f"'{READS_KEY}' in its header (notebooks before it: "
                             f"{', '.join(before) or 'none'})")
    return sorted(before.index(n) for n in names)


def run(source: str | None = None, quarter: str | None = None, as_of: str | None = None,
        out: str | Path | None = None, lang: str = "en", timeout: float = 600,
        progress: bool = True, *, notebooks_dir: str | Path | None = None,
        params: dict[str, Any] | None = None, pseudonymise: bool = False,
        jobs: int | None = None) -> Path:
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
    jobs : how many independent notebooks (:func:`is_independent`) run at once;
        default :func:`default_jobs`. The published output does not depend on it.

    Returns
    -------
    Path of the published ``index.html``.

    Raises
    ------
    ParameterError, InputError, SourceError : before any kernel starts.
    NotebookError : naming the notebook and failing cell; the run is kept under
        ``OUT/.failed/`` and the previous ``OUT/<quarter>/`` is untouched.
    RunInterrupted : Ctrl-C or SIGTERM; the run is kept under ``OUT/.failed/`` likewise.
    """
    from .prepare import prepare_in_child, run_environment

    started = utc_now()
    if lang not in LANGS:
        raise ParameterError(f"lang {lang!r} is not supported; choose one of {', '.join(LANGS)}")
    if not timeout or timeout <= 0:
        raise ParameterError(f"timeout must be a positive number of seconds, not {timeout!r}")
    jobs = default_jobs() if jobs is None else jobs
    if not isinstance(jobs, int) or jobs < 1:
        raise ParameterError(f"jobs must be a whole number of at least 1, not {jobs!r}")
    notebooks = discover_notebooks(notebooks_dir)
    extra = dict(params or {})
    takes = check_parameters(notebooks, extra)
    reads = {nb: reads_findings_of(nb, notebooks) for nb in notebooks}
    src = source_parameter(source)
    # prepared in a child process, so this one stays small while the kernels run (they
    # read the prepared cache); meanwhile this one imports what executing needs
    try:
        with _terminate_as_interrupt():
            prepared = prepare_in_child(src or None, quarter, as_of, fresh=True,
                                        pseudonymise=pseudonymise, poll=_while_preparing)
    except KeyboardInterrupt as e:  # Ctrl-C or SIGTERM: the child stopped, nothing cached
        raise RunInterrupted("interrupted while preparing the inputs; nothing was run",
                             exit_code=getattr(e, "exit_code", EXIT_INTERRUPTED)) from None
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

    def merged() -> None:
        merge_fragments(staging, quarter=prepared.quarter, as_of=prepared.as_of)
        write_manifest(staging, manifest)

    merge_fragments(staging, quarter=prepared.quarter, as_of=prepared.as_of)
    env = run_environment(prepared, src)
    plan = [_Job(i, nb, manifest["notebooks"][i], {**base, **takes[nb]}, is_independent(nb),
                 position=f"[{i + 1}/{len(notebooks)}]",
                 reads=reads[nb]) for i, nb in enumerate(notebooks)]
    try:
        with _terminate_as_interrupt():
            _execute(plan, staging, timeout, jobs=jobs, progress=progress, env=env,
                     after_each=merged)
    except NotebookError as e:
        manifest.update(status="failed", finished=utc_now())
        write_manifest(staging, manifest)
        failed = _keep_failed(staging, out, prepared.quarter, run_id)
        raise NotebookError(f"{e}; the failed run is kept in {failed}") from None
    except KeyboardInterrupt as e:  # Ctrl-C or SIGTERM in a notebook or between notebooks
        what = str(e) or "interrupted"
        manifest.update(status="interrupted", finished=utc_now())
        for entry in manifest["notebooks"]:
            if entry["status"] == "running":
                entry["status"] = "interrupted"
        with contextlib.suppress(OSError):
            write_manifest(staging, manifest)
        failed = _keep_failed(staging, out, prepared.quarter, run_id)
        raise RunInterrupted(f"{what}; the failed run is kept in {failed}",
                             exit_code=getattr(e, "exit_code", EXIT_INTERRUPTED)) from None
    manifest.update(status="ok", finished=utc_now())
    write_manifest(staging, manifest)
    final = publish(staging, out / prepared.quarter)
    _update_archive(out, lang)
    index = final / "index.html"
    if not index.exists():
        log.warning("the run wrote no index.html (is 90_quarterly_report among the notebooks?)")
    return index


def _while_preparing() -> None:
    """Polled while the inputs are prepared: warm up, and stop on Ctrl-C or SIGTERM."""
    _warm_up()
    _raise_if_stopped()


@functools.lru_cache(maxsize=1)
def _warm_up() -> None:
    """Import what executing and exporting the notebooks needs (once; called while the
    inputs are prepared in another process, so on two cores it costs the run no time)."""
    _engine_name()
    _html_exporter().template  # noqa: B018 - loads and compiles the templates
    from jupyter_client.manager import AsyncKernelManager  # noqa: F401


class _Terminated(KeyboardInterrupt):
    """SIGTERM, raised in the main thread like Ctrl-C's KeyboardInterrupt."""

    exit_code = EXIT_TERMINATED


#: Ctrl-C / SIGTERM seen during the run. The signal handler only records the stop; the
#: main loop raises it (:func:`_raise_if_stopped`, at least every 0.2 s). Raising inside
#: the handler would land in whatever the main thread was doing: an import (a
#: half-imported module), a finalizer (Python prints "Exception ignored" and a
#: traceback), or library code that swallows it.
_STOPS: list[KeyboardInterrupt] = []


@contextlib.contextmanager
def _terminate_as_interrupt() -> Iterator[None]:
    """Within the block, SIGTERM stops the run as Ctrl-C does (main thread only), and
    both are remembered until the run has stopped."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def stop(signum: int, frame: Any) -> None:
        _STOPS.append(_Terminated() if signum == signal.SIGTERM else KeyboardInterrupt())

    _STOPS.clear()
    previous = {sig: signal.signal(sig, stop) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        _STOPS.clear()


def _raise_if_stopped() -> None:
    """Raise the stop a signal asked for, if library code swallowed it."""
    if _STOPS:
        raise _STOPS[-1]


class _Job:
    """One notebook of the run: what it needs, and how its execution went."""

    def __init__(self, index: int, nb: Path, entry: dict, parameters: dict,
                 independent: bool, *, position: str, reads: list[int] | None = None) -> None:
        self.index, self.nb, self.entry, self.parameters = index, nb, entry, parameters
        self.independent, self.position, self.reads = independent, position, reads
        self.watch = _KernelWatch()
        self.go = threading.Event()  # its turn has come (set at once unless started ahead)
        self.done = threading.Event()
        self.error: BaseException | None = None
        self.t0 = 0.0
        self.target: Path | None = None

    @property
    def seconds(self) -> float:
        return time.perf_counter() - self.t0


def _depends_on(job: _Job, plan: list[_Job]) -> list[int]:
    """Positions of the notebooks ``job`` waits for (see :func:`_execute`)."""
    before = plan[:job.index]
    if job.reads is not None and not job.independent:
        return list(job.reads)
    if not job.independent:
        return [j.index for j in before]
    return [j.index for j in before if not j.independent]


def _ready(job: _Job, plan: list[_Job], finished: set[int]) -> bool:
    """Whether ``job`` may start: every notebook it depends on has finished."""
    return all(i in finished for i in _depends_on(job, plan))


def _run_order(plan: list[_Job]) -> list[_Job]:
    """The order notebooks start in: those with the longest chain of notebooks waiting
    for them first (the notebooks the trade-offs read before the others), then by prefix.

    A notebook always comes after those it depends on (each has a longer chain).
    """
    waiting: dict[int, list[int]] = {j.index: [] for j in plan}
    for job in plan:
        for i in _depends_on(job, plan):
            waiting[i].append(job.index)
    depth: dict[int, int] = {}
    for job in reversed(plan):  # dependents come later in the plan
        depth[job.index] = 1 + max((depth[k] for k in waiting[job.index]), default=0)
    return sorted(plan, key=lambda j: (-depth[j.index], j.index))


def _execute(plan: list[_Job], staging: Path, timeout: float, *, jobs: int, progress: bool,
             env: dict[str, str], after_each: Any) -> None:
    """Execute the notebooks of ``plan`` into ``staging``, up to ``jobs`` at once.

    Independent notebooks (:func:`is_independent`) run beside each other; a notebook
    naming what it reads (``job.reads``) waits for those; any other notebook runs after
    every notebook before it (:func:`_ready`). Notebooks start in :func:`_run_order`:
    those others wait for (through the longest chain) first, so the trade-offs and the
    report are not left waiting at the end while a core idles.
    When a core is free but no notebook may start, the kernel of the next one is started
    ahead (at most one). ``after_each()`` runs after each notebook succeeds (merging the
    findings), then the notebooks that have become ready are started, then the
    finished notebook is exported to HTML (while the next kernels start; after a stop,
    what is left). After a failure nothing new starts; the notebooks still running are
    let finish, and the first failure (in notebook order) is raised.

    Raises
    ------
    NotebookError : a cell raised, a kernel died or a cell timed out.
    KeyboardInterrupt : Ctrl-C or SIGTERM; the running kernels are killed and their
        notebooks saved (as far as they got); names the notebooks and cells.
    """
    level = logging.INFO if progress else logging.DEBUG
    engine = _engine_name()
    finished: set[int] = set()
    pending = _run_order(plan)
    running: dict[int, _Job] = {}
    errors: dict[int, NotebookError] = {}
    unexported: list[_Job] = []  # succeeded, analyst report not written yet
    completed: queue.Queue[_Job] = queue.Queue()
    ahead: list[_Job] = []  # kernel started ahead of its notebook's turn (at most one)

    def start_ready() -> None:
        _raise_if_stopped()
        while pending and not errors and len(running) < jobs:
            job = next((j for j in pending if _ready(j, plan, finished)), None)
            if job is None:
                break
            pending.remove(job)
            running[job.index] = job
            if ahead and ahead[0] is job:
                ahead.clear()
            else:
                _start(job, staging, timeout, env, engine, completed)
            _go(job, level)
        if pending and not errors and not ahead and len(running) < jobs:
            # a core is free but no notebook may start: start the next one's kernel now
            ahead.append(pending[0])
            _start(pending[0], staging, timeout, env, engine, completed)

    try:
        while pending or running:
            start_ready()
            if not running:
                break
            job = _next_done(completed, running)
            del running[job.index]
            finished.add(job.index)
            error = _outcome(job, timeout, level)
            if error is not None:
                errors[job.index] = error
                continue
            after_each()
            unexported.append(job)
            start_ready()
            export_html(staging / job.nb.name)
            unexported.remove(job)
            _raise_if_stopped()
        _raise_if_stopped()
    except KeyboardInterrupt as e:
        _discard(ahead)
        stopped = _stop(list(running.values()), reason=e)
        for job in unexported:  # what ran before the stop is kept with its analyst report
            with contextlib.suppress(Exception):
                export_html(staging / job.nb.name)
        where = " and ".join(f"notebook {j.nb.stem}{_failing_cell(j.target)}" for j in stopped)
        what = "terminated (SIGTERM)" if isinstance(e, _Terminated) else "interrupted"
        for j in stopped:
            log.log(level, "%s %s interrupted (%.1f s)", j.position, j.nb.stem, j.seconds)
        interrupted = type(e)(f"{what} in {where}" if where else (str(e) or what))
        raise interrupted from None
    _discard(ahead)
    if errors:
        raise errors[min(errors)]


def _go(job: _Job, level: int) -> None:
    """Let a started notebook execute: its turn has come."""
    log.log(level, "%s %s ...", job.position, job.nb.stem)
    job.entry["status"] = "running"
    job.t0 = time.perf_counter()
    job.go.set()


def _discard(ahead: list[_Job]) -> None:
    """Stop a kernel started ahead for a notebook that will not run (failure, Ctrl-C)."""
    for job in ahead:
        job.watch.cancel("discarded")
        job.done.wait(INTERRUPT_GRACE)
    ahead.clear()


def _start(job: _Job, staging: Path, timeout: float, env: dict[str, str], engine: str,
           completed: queue.Queue) -> None:
    """Start a notebook's kernel in a worker thread, which executes it once ``job.go`` is
    set; ``completed`` gets the job when it is done.

    The kernel imports the modules the notebook imports (:func:`preload_lines`) while
    it waits, so a notebook started ahead of its turn loses no time to them. Papermill
    runs in the worker so that signals reach the main thread (papermill's own event
    loop would swallow Ctrl-C, shut the kernel down and leave tasks behind).
    """
    import papermill
    from jupyter_core.utils import run_sync

    job.target = target = staging / job.nb.name
    watch = job.watch
    kernel_env = {**KERNEL_ENV, **env, WRITER_ENV: job.nb.stem,
                  "PYTHONPATH": _python_path()}
    manager = _logging_kernel_manager(staging / LOG_DIR / f"{job.nb.stem}.kernel.log", watch,
                                      env=kernel_env, cwd=staging)

    def work() -> None:
        import asyncio

        km = None
        try:
            km = manager(kernel_name="python3")
            try:
                run_sync(km.start_kernel)(extra_arguments=preload_lines(job.nb))
            finally:
                while not job.go.wait(0.1) and not watch.cancelled.is_set():
                    pass
            if watch.cancelled.is_set() and not job.go.is_set():
                return
            # cwd None: papermill would chdir this whole process; the kernel has its own
            papermill.execute_notebook(
                str(job.nb), str(target), parameters=job.parameters, kernel_name="python3",
                progress_bar=False, log_output=False, cwd=None,
                execution_timeout=timeout, request_save_on_cell_execute=False,
                engine_name=engine, km=km,
                on_failure=lambda executed, exc: _save_failed(executed, target, exc, watch,
                                                              timeout))
        except BaseException as e:  # noqa: BLE001 - handed to the main thread
            job.error = e
        finally:
            if km is not None and (job.error is not None or not job.go.is_set()):
                with contextlib.suppress(Exception):  # the client did not shut it down
                    run_sync(km.shutdown_kernel)(now=True)
            # the thread's own event loop (jupyter_core made one): release it
            with contextlib.suppress(Exception):
                loop = asyncio.get_event_loop_policy().get_event_loop()
                if not loop.is_running():
                    loop.close()
            job.done.set()
            completed.put(job)

    threading.Thread(target=work, name=f"kpisat-{job.nb.stem}", daemon=True).start()


def preload_lines(notebook: Path) -> list[str]:
    """Kernel arguments importing, at start-up, the modules the notebook imports.

    Only modules named by the notebook's own top-level ``import`` statements, imported
    without binding any name (the notebook's namespace is as if nothing ran), so the
    notebook behaves exactly as it would in a fresh kernel. The attributes the notebook
    reads from this project's modules (``decision.tradeoff_analysis``) are looked up
    too: the packages import their modules on first use.
    """
    import ast
    import json

    try:
        cells = json.loads(notebook.read_text(encoding="utf-8")).get("cells", [])
    except (OSError, ValueError):
        return []
    own = __name__.split(".")[0]
    modules: list[str] = []
    bound: dict[str, str] = {}  # name in the notebook -> the project's module it names
    trees = []
    for cell in cells:
        if cell.get("cell_type") != "code":
            continue
        source = "".join(cell.get("source", ""))
        source = "\n".join(ln for ln in source.splitlines() if not ln.lstrip().startswith(("%", "!")))
        try:
            tree = ast.parse(source)
        except SyntaxError:
            continue
        trees.append(tree)
        for node in tree.body:
            if isinstance(node, ast.Import):
                modules += [a.name for a in node.names]
                bound.update({a.asname: a.name for a in node.names if a.asname})
            elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
                # `from package import module` names modules too (the rest are skipped)
                modules += [node.module] + [f"{node.module}.{a.name}" for a in node.names]
                bound.update({a.asname or a.name: f"{node.module}.{a.name}"
                              for a in node.names})
    modules = list(dict.fromkeys(modules))
    if not modules:
        return []
    attributes = list(dict.fromkeys(
        (bound[node.value.id], node.attr) for tree in trees for node in ast.walk(tree)
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name)
        and bound.get(node.value.id, "").startswith(own + ".")))
    code = ("def _kpisat_preload():\n    import importlib\n"
            f"    for module in {modules!r}:\n"
            "        try:\n            importlib.import_module(module)\n"
            "        except ImportError:\n            pass\n"
            f"    for module, name in {attributes!r}:\n"
            "        try:\n            getattr(importlib.import_module(module), name)\n"
            "        except (ImportError, AttributeError):\n            pass\n"
            "_kpisat_preload()\ndel _kpisat_preload")
    return ["--IPKernelApp.exec_lines=" + json.dumps([code])]


def _next_done(completed: queue.Queue, running: dict[int, _Job]) -> _Job:
    """The next running notebook to finish (short waits, so signals are handled)."""
    while True:
        _raise_if_stopped()
        try:
            job = completed.get(timeout=0.2)
        except queue.Empty:
            continue
        if job.index in running:  # not a kernel started ahead and discarded
            return job


def _outcome(job: _Job, timeout: float, level: int) -> NotebookError | None:
    """Record how a finished notebook went; its error as a one-line NotebookError."""
    from nbclient.exceptions import CellTimeoutError, DeadKernelError
    from papermill.exceptions import PapermillExecutionError

    seconds, e, stem = job.seconds, job.error, job.nb.stem
    status = "ok" if e is None else "failed"
    job.entry.update(status=status, seconds=round(seconds, 1))
    log.log(level, "%s %s %s (%.1f s)", job.position, stem, status, seconds)
    if e is None:
        return None
    if isinstance(e, PapermillExecutionError):
        first = next((ln for ln in str(e.source).splitlines() if ln.strip()), "")
        return NotebookError(
            f"notebook {stem} failed at cell {e.cell_index + 1} ({first.strip()!r}): "
            f"{e.ename}: {_last_line(e.evalue)}")
    where = _failing_cell(job.target)
    if isinstance(e, DeadKernelError):
        return NotebookError(
            f"notebook {stem}: kernel died{where} (killed, or out of memory?); its output "
            f"is in {LOG_DIR}/{stem}.kernel.log")
    if isinstance(e, CellTimeoutError):
        return NotebookError(f"notebook {stem}: timed out after {timeout:g} s{where}; "
                             "allow more with --timeout SECONDS")
    # a kernel that cannot start, and anything else: named the same way
    return NotebookError(f"notebook {stem} failed{where}: {type(e).__name__}: "
                         f"{_last_line(str(e))}")


def _stop(running: list[_Job], reason: BaseException) -> list[_Job]:
    """Kill the kernels of the running notebooks (Ctrl-C, SIGTERM); those it stopped.

    Each worker is given :data:`INTERRUPT_GRACE` seconds to save its notebook. A
    notebook that had finished by then keeps its own status.
    """
    how = ("terminated (SIGTERM)" if isinstance(reason, _Terminated)
           else "interrupted (Ctrl-C)")
    for job in running:
        job.watch.cancel(how)
    stopped = []
    for job in sorted(running, key=lambda j: j.index):
        if job.done.is_set() and job.error is None:
            job.entry.update(status="ok", seconds=round(job.seconds, 1))
            continue
        job.watch.stop(job.done)
        job.entry.update(status="interrupted", seconds=round(job.seconds, 1))
        stopped.append(job)
    return stopped


class _KernelWatch:
    """The kernels one notebook's execution started, so Ctrl-C can stop them."""

    def __init__(self) -> None:
        self.groups: list[int] = []  # process groups (each kernel leads its own session)
        self.cancelled = threading.Event()
        self.how = "interrupted (Ctrl-C)"

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

    def cancel(self, how: str) -> None:
        """Mark the run stopped (``how``: what stopped it) and kill the kernels."""
        self.how = how
        self.cancelled.set()
        self.kill()

    def stop(self, done: threading.Event) -> None:
        """Kill the kernels until the worker (which then saves the notebook) is ``done``."""
        self.cancelled.set()
        deadline = time.monotonic() + INTERRUPT_GRACE
        while not done.is_set() and time.monotonic() < deadline:
            self.kill()
            done.wait(0.1)
        if not done.is_set():
            log.warning("the notebook did not stop within %.0f s of being %s",
                        INTERRUPT_GRACE, self.how)


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
        def execute_managed_notebook(cls, nb_man, kernel_name, km=None, log_output=False,
                                     stdout_file=None, stderr_file=None, start_timeout=60,
                                     execution_timeout=None, **kwargs):
            """Papermill's, with a kernel started ahead: the client owns it and kills it
            once the last cell's output is in (a graceful shutdown waits seconds for the
            kernel to tear its interpreter down, which nothing of the run needs)."""
            from papermill.clientwrap import PapermillNotebookClient
            from papermill.engines import logger

            kwargs.pop("input_path", None)
            client = PapermillNotebookClient(
                nb_man, km=km, timeout=execution_timeout, startup_timeout=start_timeout,
                iopub_timeout=IOPUB_TIMEOUT, kernel_name=kernel_name, log=logger,
                shutdown_kernel="immediate",
                log_output=log_output,
                stdout_file=stdout_file, stderr_file=stderr_file, **kwargs)
            client.owns_km = True
            return client.execute()

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
        ename, evalue = "KeyboardInterrupt", f"the run was {watch.how} in this cell"
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


def _python_path() -> str:
    """``PYTHONPATH`` of a kernel: the project root first, so it imports this checkout."""
    path = os.environ.get("PYTHONPATH", "")
    return str(config.PROJECT_ROOT) + (os.pathsep + path if path else "")


def _logging_kernel_manager(log_path: Path, watch: _KernelWatch | None = None, *,
                            env: dict[str, str] | None = None,
                            cwd: Path | None = None) -> type:
    """A kernel manager class for one notebook's kernel.

    The kernel writes its own stdout/stderr to ``log_path`` (transport warnings and
    shutdown messages belong in the run folder for debugging, not in the user's
    terminal), inherits this process's environment updated with ``env`` (pinned
    ``PYTHONHASHSEED`` and Matplotlib backend, the notebook's name for findings
    fragments, the run's prepared inputs) and starts in ``cwd``. Both are given to the
    kernel process alone, never set in this process, so notebooks can run side by
    side. Each kernel started is recorded in ``watch`` (so Ctrl-C can kill it).
    """
    from jupyter_client.manager import AsyncKernelManager

    async def _async_launch_kernel(self, kernel_cmd, **kw):
        log_path.parent.mkdir(parents=True, exist_ok=True)
        if env:
            kw["env"] = {**(kw.get("env") or os.environ), **env}
        if cwd is not None:
            kw["cwd"] = str(cwd)
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

    nb = nbformat.read(executed, as_version=4)
    with _EXPORTER_LOCK:
        body, _ = _html_exporter().from_notebook_node(
            nb, resources={"metadata": {"name": executed.stem}})
    target = executed.with_suffix(".html")
    target.write_text(body, encoding="utf-8")
    return target


_EXPORTER_LOCK = threading.Lock()


@functools.lru_cache(maxsize=1)
def _html_exporter() -> Any:
    """One HTML exporter for every notebook: its templates are compiled once (a fresh
    exporter recompiles them, about a tenth of a second per notebook); its output is the
    same as a fresh one's."""
    from nbconvert import HTMLExporter

    return HTMLExporter(template_name="lab")


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
