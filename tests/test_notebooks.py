"""Every notebook: generated from its py:percent source, thin, parameterised, executed.

Notebooks are found by glob, so a new notebook is tested without editing a list. The
execution test reuses the session's full ``kpisat run`` (conftest.py).
"""

from __future__ import annotations

import ast
import json

import nbformat
import papermill
import pytest
from IPython.core.inputtransformer2 import TransformerManager

from analysis import config, notebooks, runner

SOURCES = notebooks.sources()
IPYNBS = runner.discover_notebooks()
IDS = [p.stem for p in SOURCES]


def test_every_notebook_has_a_source_and_vice_versa():
    assert SOURCES, "no notebooks/NN_*.py"
    assert [p.stem for p in SOURCES] == [p.stem for p in IPYNBS]
    assert notebooks.check() == []


@pytest.mark.parametrize("py", SOURCES, ids=IDS)
def test_ipynb_is_generated_from_its_source(py):
    ipynb = notebooks.ipynb_path(py)
    assert ipynb.read_text(encoding="utf-8") == notebooks.generate(py), (
        f"{ipynb.name} is out of date: run `kpisat notebooks --sync`")
    nb = nbformat.read(ipynb, as_version=4)
    assert nb.metadata["kernelspec"]["name"] == "python3"
    for cell in nb.cells:
        if cell.cell_type == "code":
            assert cell.outputs == [] and cell.execution_count is None


@pytest.mark.parametrize("ipynb", IPYNBS, ids=IDS)
def test_parameters_cell_is_typed_literals_with_comments(ipynb):
    nb = nbformat.read(ipynb, as_version=4)
    tagged = [c for c in nb.cells if "parameters" in c.metadata.get("tags", [])]
    assert len(tagged) == 1, "exactly one cell tagged 'parameters'"
    declared = papermill.inspect_notebook(str(ipynb))
    assert list(declared) == list(runner.STANDARD_PARAMETERS)
    for name, p in declared.items():
        assert p["inferred_type_name"] in ("str", "int", "float", "bool"), name
        assert p["help"], f"parameter {name} has no comment"
    for node in ast.parse(tagged[0].source).body:
        assert isinstance(node, ast.AnnAssign), "only annotated assignments"
        assert isinstance(node.value, ast.Constant), "literal defaults only (derive later)"


@pytest.mark.parametrize("ipynb", IPYNBS, ids=IDS)
def test_notebooks_are_thin(ipynb):
    nb = nbformat.read(ipynb, as_version=4)
    code = "\n".join(c.source for c in nb.cells if c.cell_type == "code")
    python = TransformerManager().transform_cell(code)  # %magics become Python calls
    for node in ast.walk(ast.parse(python)):
        assert not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)), (
            f"{ipynb.name} defines {node.name}: move it into the analysis package")
    assert any(c.cell_type == "markdown" for c in nb.cells), "no narrative"


@pytest.mark.parametrize("ipynb", IPYNBS, ids=IDS)
def test_notebook_executes_in_a_full_run(sample_run, ipynb):
    executed = sample_run.published / ipynb.name
    assert executed.is_file(), f"{ipynb.name} was not executed by kpisat run"
    nb = nbformat.read(executed, as_version=4)
    for cell in nb.cells:
        if cell.cell_type == "code":
            assert cell.metadata.get("papermill", {}).get("status") == "completed"
            assert not [o for o in cell.get("outputs", []) if o.get("output_type") == "error"]
    assert (sample_run.published / f"{ipynb.stem}.html").is_file()
    manifest = json.loads((sample_run.published / "manifest.json").read_text())
    status = {n["name"]: n["status"] for n in manifest["notebooks"]}
    assert status[ipynb.stem] == "ok"


def test_notebooks_dir_is_the_configured_one():
    assert all(p.parent == config.NOTEBOOKS_DIR for p in IPYNBS)
