"""Preparing in a child process, and the one-table-at-a-time build of the prepared cache."""

from __future__ import annotations

import json
import os
import shutil
import signal
import threading
import time
from pathlib import Path

import pandas as pd
import pytest

from analysis import prepare as prep
from analysis.errors import InputError
from analysis.sources import open_source


def _same_folders(a: Path, b: Path) -> None:
    """Every Parquet table reads back equal (values and dtypes); the JSON files are equal."""
    files = sorted(p.relative_to(a) for p in a.rglob("*") if p.is_file())
    assert files == sorted(p.relative_to(b) for p in b.rglob("*") if p.is_file())
    for rel in files:
        if rel.suffix == ".parquet":
            pd.testing.assert_frame_equal(pd.read_parquet(a / rel), pd.read_parquet(b / rel),
                                          check_exact=True)
        else:
            assert json.loads((a / rel).read_text()) == json.loads((b / rel).read_text()), rel


def test_the_child_writes_what_prepare_writes(sample_dir, tmp_path, monkeypatch):
    """Same cache folder contents either way; the parent gets a lazy Prepared of it."""
    monkeypatch.setenv(prep.CACHE_ENV, str(tmp_path / "here"))
    here = prep.prepare(str(sample_dir), "2025Q4", "2025-12-31", fresh=True)
    monkeypatch.setenv(prep.CACHE_ENV, str(tmp_path / "child"))
    polled = []
    there = prep.prepare_in_child(str(sample_dir), "2025Q4", "2025-12-31", fresh=True,
                                  poll=lambda: polled.append(os.getpid()))
    assert there.location.parent == tmp_path / "child"
    assert there.source_description == here.source_description
    assert (there.quarter, there.as_of, there.fingerprint) == (here.quarter, here.as_of,
                                                               here.fingerprint)
    assert isinstance(there.tables, prep.LazyFrames)
    _same_folders(here.location, there.location)
    pd.testing.assert_frame_equal(there.validated.quarantine, here.validated.quarantine)
    assert set(polled) <= {os.getpid()}  # polled here, never in the child


def test_an_input_error_in_the_child_is_raised_here(sample_dir, tmp_path, monkeypatch):
    monkeypatch.setenv(prep.CACHE_ENV, str(tmp_path / "cache"))
    broken = shutil.copytree(sample_dir, tmp_path / "company")
    (broken / "deals.csv").unlink()
    with pytest.raises(InputError) as child_error:
        prep.prepare_in_child(str(broken), "2025Q4", "2025-12-31", fresh=True)
    with pytest.raises(InputError) as own_error:
        prep.prepare(str(broken), "2025Q4", "2025-12-31", fresh=True)
    assert str(child_error.value) == str(own_error.value)
    assert child_error.value.file == own_error.value.file


def test_a_stop_while_preparing_ends_the_child(sample_dir, tmp_path, monkeypatch):
    """What ``poll`` raises (the runner's Ctrl-C) stops the child and nothing is cached."""
    monkeypatch.setenv(prep.CACHE_ENV, str(tmp_path / "cache"))

    def stop() -> None:
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        prep.prepare_in_child(str(sample_dir), "2025Q4", "2025-12-31", fresh=True, poll=stop)
    cache = tmp_path / "cache"
    assert not cache.exists() or not any(p.name.endswith("-2025-12-31-" + prep.code_version()[:10])
                                         for p in cache.iterdir())


def _slow_build(raw, quarter, day, key, out) -> None:
    (out / "started").touch()
    time.sleep(60)


def test_a_child_stopped_while_writing_leaves_no_unfinished_folder(sample_dir, tmp_path,
                                                                   monkeypatch):
    cache = tmp_path / "cache"
    monkeypatch.setenv(prep.CACHE_ENV, str(cache))
    monkeypatch.setattr(prep, "_write_build", _slow_build)  # the forked child inherits it

    def stop() -> None:
        if any(cache.glob(".*/started")):
            raise KeyboardInterrupt

    t0 = time.monotonic()
    with pytest.raises(KeyboardInterrupt):
        prep.prepare_in_child(str(sample_dir), "2025Q4", "2025-12-31", fresh=True, poll=stop)
    assert time.monotonic() - t0 < 30
    assert not list(cache.glob(".*"))  # the child removed its unfinished folder


@pytest.mark.skipif(threading.current_thread() is not threading.main_thread(),
                    reason="signal handlers are installed in the main thread only")
def test_sigterm_while_preparing_stops_the_run_before_anything_runs(sample_dir, tmp_path,
                                                                    monkeypatch):
    from analysis import runner

    cache, out = tmp_path / "cache", tmp_path / "reports"
    monkeypatch.setenv(prep.CACHE_ENV, str(cache))
    monkeypatch.setattr(prep, "_write_build", _slow_build)

    def terminate_once_started() -> None:
        while not any(cache.glob(".*/started")):
            time.sleep(0.05)
        os.kill(os.getpid(), signal.SIGTERM)

    threading.Thread(target=terminate_once_started, daemon=True).start()
    with pytest.raises(runner.RunInterrupted, match="while preparing") as stopped:
        runner.run(str(sample_dir), "2025Q4", "2025-12-31", out=str(out))
    assert stopped.value.exit_code == runner.EXIT_TERMINATED
    assert not list(cache.glob(".*")) and not out.exists()


def test_build_without_a_folder_returns_the_tables_in_memory(sample_dir, tmp_path,
                                                             monkeypatch):
    """``_build`` without a folder (as the warehouse tests call it) equals the cache."""
    monkeypatch.setenv(prep.CACHE_ENV, str(tmp_path / "cache"))
    cached = prep.prepare(str(sample_dir), "2025Q4", "2025-12-31", fresh=True)
    built = prep._build(open_source(str(sample_dir)).read(), "2025Q4",
                        prep.parse_as_of("2025-12-31"))
    assert built.location is None and isinstance(built.tables, dict)
    assert list(built.tables) == list(cached.tables)
    assert list(built.derived) == list(cached.derived)
    for name in cached.tables:
        pd.testing.assert_frame_equal(built.tables[name], cached.tables[name], check_exact=True)
    for name in cached.derived:
        pd.testing.assert_frame_equal(built.derived[name], cached.derived[name],
                                      check_exact=True)
    assert built.validated.quality == cached.validated.quality


def test_derived_tables_from_parquet_files_equal_those_from_frames(tmp_path, monkeypatch):
    """DuckDB scanning the written tables gives what it gives from the frames."""
    from analysis.derived import build_all

    monkeypatch.setenv(prep.CACHE_ENV, str(tmp_path / "cache"))
    p = prep.prepare(None, "2025Q4", "2025-12-31", fresh=True)
    files = {name: p.location / "tables" / f"{name}.parquet" for name in p.tables}
    from_files = build_all(files, p.quarter)
    from_frames = build_all({name: p.tables[name] for name in p.tables}, p.quarter)
    assert list(from_files) == list(from_frames)
    for name, table in from_frames.items():
        pd.testing.assert_frame_equal(from_files[name], table, check_exact=True)
