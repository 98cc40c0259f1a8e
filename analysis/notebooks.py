"""The notebooks' py:percent sources and their generated ``.ipynb`` twins.

``notebooks/NN_name.py`` (jupytext py:percent) is the source of truth: it diffs and
reviews like code. ``notebooks/NN_name.ipynb`` is generated from it, without outputs
or execution counts, with the ``python3`` kernelspec and stable cell ids, and
committed so JupyterLab opens it with a double-click (and papermill executes it).
"""

from __future__ import annotations

import logging
from pathlib import Path

log = logging.getLogger(__name__)

SOURCE_GLOB = "[0-9][0-9]_*.py"
KERNELSPEC = {"display_name": "Python 3 (ipykernel)", "language": "python", "name": "python3"}
#: Pairing metadata: the jupytext extension in JupyterLab keeps both files in step.
FORMATS = "ipynb,py:percent"


def sources(notebooks_dir: str | Path | None = None) -> list[Path]:
    """The py:percent notebook sources, sorted by name."""
    from . import config

    return sorted(Path(notebooks_dir or config.NOTEBOOKS_DIR).glob(SOURCE_GLOB))


def generate(py_path: str | Path) -> str:
    """The ``.ipynb`` text generated from one py:percent source.

    Parameters
    ----------
    py_path : a ``notebooks/NN_name.py`` file.

    Returns
    -------
    JSON text of the notebook: no outputs, no execution counts, kernelspec
    ``python3``, cell ids ``<stem>-<index>`` (stable across regenerations), and the
    ``kpisat`` metadata of the source's header, if any (a notebook reading only the
    prepared inputs says ``independent: true`` there, so the runner may run it beside
    others).
    """
    import jupytext
    import nbformat

    py_path = Path(py_path)
    nb = jupytext.read(py_path, fmt="py:percent")
    kpisat = nb.metadata.get("kpisat")
    nb.metadata = {
        "jupytext": {"formats": FORMATS},
        "kernelspec": dict(KERNELSPEC),
        "language_info": {"name": "python"},
    }
    if kpisat:  # the runner's scheduling hints (analysis.runner.is_independent)
        nb.metadata["kpisat"] = kpisat
    for i, cell in enumerate(nb.cells):
        cell["id"] = f"c{i:02d}"
        if cell.cell_type == "code":
            cell["outputs"] = []
            cell["execution_count"] = None
    nb.nbformat, nb.nbformat_minor = 4, 5
    nbformat.validate(nb)
    return nbformat.writes(nb, version=4) + "\n"


def ipynb_path(py_path: Path) -> Path:
    """The generated twin of a source."""
    return py_path.with_suffix(".ipynb")


def sync(notebooks_dir: str | Path | None = None) -> list[Path]:
    """Regenerate every ``.ipynb`` whose text differs from its source; return them."""
    written = []
    for py in sources(notebooks_dir):
        target, text = ipynb_path(py), generate(py)
        if not target.exists() or target.read_text(encoding="utf-8") != text:
            target.write_text(text, encoding="utf-8")
            written.append(target)
            log.debug("wrote %s", target)
    return written


def check(notebooks_dir: str | Path | None = None) -> list[Path]:
    """The ``.ipynb`` files that are missing or differ from what their source generates.

    Also lists notebooks without a source (an ``.ipynb`` nobody can regenerate).
    """
    from . import config

    stale = [ipynb_path(py) for py in sources(notebooks_dir)
             if not ipynb_path(py).exists()
             or ipynb_path(py).read_text(encoding="utf-8") != generate(py)]
    folder = Path(notebooks_dir or config.NOTEBOOKS_DIR)
    orphans = [nb for nb in sorted(folder.glob("[0-9][0-9]_*.ipynb"))
               if not nb.with_suffix(".py").exists()]
    return stale + orphans
