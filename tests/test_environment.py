"""environment.yml (conda users) pins exactly what pyproject.toml + constraints.txt pin."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
_REQ = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)(\[[^\]]+\])?")


def _norm(name: str) -> str:
    """PEP 503 normalised project name."""
    return re.sub(r"[-_.]+", "-", name).lower()


def _pyproject_requirements() -> dict[str, str]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    reqs = project["dependencies"] + [r for extra in project.get("optional-dependencies", {})
                                      .values() for r in extra]
    return {_norm(_REQ.match(r).group(1)): (_REQ.match(r).group(2) or "") for r in reqs}


def _constraints() -> dict[str, str]:
    pins = {}
    for line in (ROOT / "constraints.txt").read_text().splitlines():
        line = line.split("#")[0].strip()
        if line:
            name, version = line.split("==")
            pins[_norm(name)] = version.strip()
    return pins


def _environment() -> dict:
    return yaml.safe_load((ROOT / "environment.yml").read_text())


def _pip_section(env: dict) -> list[str]:
    return next(d["pip"] for d in env["dependencies"] if isinstance(d, dict) and "pip" in d)


def test_python_matches_pyproject():
    env = _environment()
    assert "python=3.11" in env["dependencies"]
    requires = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["requires-python"]
    assert ">=3.11" in requires and "<3.12" in requires


def test_pip_pins_are_pyproject_dependencies_at_constraint_versions():
    pins, wanted = _constraints(), _pyproject_requirements()
    listed = {}
    for entry in _pip_section(_environment()):
        if entry.startswith("-"):
            continue
        name, _, version = entry.partition("==")
        m = _REQ.match(name)
        listed[_norm(m.group(1))] = (m.group(2) or "", version)
    assert set(listed) == set(wanted), "environment.yml and pyproject list different packages"
    for name, (extras, version) in listed.items():
        assert extras == wanted[name], f"{name}: extras differ from pyproject"
        assert version == pins[name], f"{name}=={version} but constraints.txt pins {pins[name]}"


def test_transitive_pins_and_package_are_installed_too():
    pip = _pip_section(_environment())
    assert "-c constraints.txt" in pip
    assert any(e.startswith("-e .") for e in pip)


def test_every_direct_dependency_is_pinned_in_constraints():
    missing = sorted(set(_pyproject_requirements()) - set(_constraints()))
    assert not missing, f"not pinned in constraints.txt: {missing}"
