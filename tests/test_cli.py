"""The ``kpisat`` command line: helpful --help, one-line errors, right exit codes."""

from __future__ import annotations

import shutil

import pandas as pd
import pytest

from analysis import cli
from conftest import kpisat

COMMANDS = {
    "run": ["--source", "--quarter", "--as-of", "--out", "--lang", "--timeout", "--param",
            "--notebooks-dir", "--quiet", "--verbose", "--debug"],
    "validate": ["--source", "--as-of", "--quarantine"],
    "sample": ["--out", "--seed", "--scale"],
    "notebooks": ["--sync", "--check"],
}


def _one_error_line(result) -> str:
    """The single ``kpisat: error:`` line of a failed command (and no traceback)."""
    assert "Traceback" not in result.stderr, result.stderr
    errors = [ln for ln in result.stderr.splitlines() if ln.startswith("kpisat: error:")]
    assert len(errors) == 1, result.stderr
    return errors[0]


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_help_explains_every_option(command, capsys):
    with pytest.raises(SystemExit) as e:
        cli.main([command, "--help"])
    assert e.value.code == 0
    text = capsys.readouterr().out
    for option in COMMANDS[command]:
        assert option in text, f"{command} --help does not mention {option}"


def test_top_level_help_lists_commands(capsys):
    with pytest.raises(SystemExit):
        cli.main(["--help"])
    text = capsys.readouterr().out
    assert all(c in text for c in COMMANDS)


def test_bad_quarter_is_one_line(sample_dir):
    result = kpisat("run", "--source", str(sample_dir), "--quarter", "2025Q5")
    assert result.returncode == 2
    assert "2025Q5" in _one_error_line(result)


def test_quarter_after_as_of_is_one_line(sample_dir):
    result = kpisat("run", "--source", str(sample_dir), "--quarter", "2026Q1")
    assert result.returncode == 2
    line = _one_error_line(result)
    assert "2026Q1" in line and "2025-12-31" in line


def test_missing_source_folder_is_one_line(tmp_path):
    result = kpisat("validate", "--source", str(tmp_path / "nowhere"))
    assert result.returncode == 2
    assert "nowhere" in _one_error_line(result)


def test_missing_column_names_file_and_column(sample_dir, tmp_path):
    bad = tmp_path / "bad"
    shutil.copytree(sample_dir, bad)
    deals = pd.read_csv(bad / "deals.csv", dtype=str, keep_default_na=False)
    deals.drop(columns=["amount"]).to_csv(bad / "deals.csv", index=False)
    for command in (["validate"], ["run", "--out", str(tmp_path / "reports")]):
        result = kpisat(*command, "--source", str(bad))
        assert result.returncode == 2
        line = _one_error_line(result)
        assert "deals.csv" in line and "'amount'" in line
    assert not (tmp_path / "reports").exists() or not any((tmp_path / "reports").iterdir())


def test_bad_as_of_is_one_line(sample_dir):
    result = kpisat("validate", "--source", str(sample_dir), "--as-of", "31/12/2025")
    assert result.returncode == 2
    assert "31/12/2025" in _one_error_line(result)


def test_unknown_param_is_one_line(sample_dir, tmp_path):
    result = kpisat("run", "--source", str(sample_dir), "--out", str(tmp_path),
                    "-p", "quater=2025Q3")
    assert result.returncode == 2
    line = _one_error_line(result)
    assert "'quater'" in line and "quarter" in line


def test_jobs_below_one_is_one_line(sample_dir, tmp_path):
    result = kpisat("run", "--source", str(sample_dir), "--out", str(tmp_path), "--jobs", "0")
    assert result.returncode == 2
    assert "jobs must be a whole number of at least 1" in _one_error_line(result)
    assert not any(tmp_path.iterdir()), "nothing is written before the run can start"


def test_validate_prints_summary_and_writes_quarantine(sample_dir, tmp_path):
    target = tmp_path / "q" / "quarantine.csv"
    result = kpisat("validate", "--source", str(sample_dir), "--quarantine", str(target))
    assert result.returncode == 0, result.stderr
    assert "deals" in result.stdout and "quarantined" in result.stdout
    q = pd.read_csv(target)
    assert list(q.columns) == ["table", "row", "id", "column", "raw_value", "reason"]


def test_unexpected_error_suggests_debug(monkeypatch, capsys):
    def boom(args):
        raise RuntimeError("something odd\nsecond line")

    monkeypatch.setattr(cli, "cmd_validate", boom)
    assert cli.main(["validate"]) == 1
    err = capsys.readouterr().err
    assert "Traceback" not in err and "--debug" in err and "second line" not in err
    with pytest.raises(RuntimeError):
        cli.main(["validate", "--debug"])


def test_notebooks_check_passes_on_the_committed_notebooks():
    assert cli.main(["notebooks", "--check"]) == 0
