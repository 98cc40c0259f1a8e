"""Shared fixtures: the sample company and one full ``kpisat run`` per test session.

The full run is the expensive part of the suite, so it happens once per session and
is shared by every test that needs it — also across pytest-xdist workers: the first
worker to ask runs it under a file lock in the session's shared temporary folder,
the others wait and reuse the result.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

PROJECT_ROOT = Path(__file__).resolve().parent.parent
if str(PROJECT_ROOT) not in sys.path:  # the package may not be pip-installed
    sys.path.insert(0, str(PROJECT_ROOT))

#: The quarter the session run analyses: complete in the sample (as of 2025-12-31) and
#: with a later quarter after it, so look-ahead tests have later data to remove.
SESSION_QUARTER = "2025Q3"


def kpisat(*args: str, cwd: Path | None = None, timeout: float = 900,
           env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """Run the ``kpisat`` CLI in a fresh interpreter (``python -m analysis.cli``)."""
    env = {**os.environ, "PYTHONPATH": str(PROJECT_ROOT), "PYTHONHASHSEED": "0", **(env or {})}
    return subprocess.run([sys.executable, "-m", "analysis.cli", *args], cwd=cwd or PROJECT_ROOT,
                          capture_output=True, text=True, timeout=timeout, env=env)


def tree_digest(folder: Path) -> dict[str, str]:
    """sha256 of every file under ``folder`` by relative path (to prove nothing changed)."""
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def _shared_root(tmp_path_factory) -> Path:
    """A folder shared by all xdist workers of this session (else the session's own)."""
    base = tmp_path_factory.getbasetemp()
    return base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base


class _Lock:
    def __init__(self, path: Path):
        self.path = path

    def __enter__(self):
        self.fh = open(self.path, "w")
        fcntl.flock(self.fh, fcntl.LOCK_EX)
        return self

    def __exit__(self, *exc):
        fcntl.flock(self.fh, fcntl.LOCK_UN)
        self.fh.close()


@pytest.fixture(scope="session")
def sample_dir(tmp_path_factory) -> Path:
    """The sample company's table folder: ``data/sample`` if present, else generated once."""
    committed = PROJECT_ROOT / "data" / "sample"
    if any(committed.glob("*.csv")):
        return committed
    root = _shared_root(tmp_path_factory)
    target = root / "sample"
    with _Lock(root / "sample.lock"):
        if not (target / "run.json").exists():
            from analysis.sample import generate
            generate(target)
    return target


@dataclass
class SampleRun:
    """One published ``kpisat run`` on the sample company."""

    out: Path  # the reports folder
    published: Path  # out/<quarter>
    result: subprocess.CompletedProcess
    seconds: float
    inputs_before: dict[str, str]
    inputs_after: dict[str, str]

    @property
    def findings_bytes(self) -> bytes:
        return (self.published / "findings.json").read_bytes()

    @property
    def findings(self) -> dict:
        return json.loads(self.findings_bytes)


@pytest.fixture(scope="session")
def sample_run(tmp_path_factory, sample_dir) -> SampleRun:
    """``kpisat run --source <sample> --quarter 2025Q3`` into a session folder, once."""
    root = _shared_root(tmp_path_factory)
    out = root / "reports"
    record = root / "sample_run.json"
    with _Lock(root / "sample_run.lock"):
        if not record.exists():
            before = tree_digest(sample_dir)
            t0 = time.perf_counter()
            result = kpisat("run", "--source", str(sample_dir), "--quarter", SESSION_QUARTER,
                            "--out", str(out))
            seconds = time.perf_counter() - t0
            record.write_text(json.dumps({
                "returncode": result.returncode, "stdout": result.stdout,
                "stderr": result.stderr, "seconds": seconds, "before": before,
                "after": tree_digest(sample_dir)}))
        data = json.loads(record.read_text())
    result = subprocess.CompletedProcess(["kpisat", "run"], data["returncode"], data["stdout"],
                                         data["stderr"])
    assert result.returncode == 0, f"sample run failed:\n{result.stderr[-4000:]}"
    return SampleRun(out=out, published=out / SESSION_QUARTER, result=result,
                     seconds=data["seconds"], inputs_before=data["before"],
                     inputs_after=data["after"])
