"""pyproject.toml agrees with the pinned requirement files, and its console scripts name real `main`s."""

from __future__ import annotations

import ast
import tomllib
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
PROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]


def pins(path: Path) -> set[str]:
    """The `name==version` lines of a requirements file."""
    lines = (line.split("#")[0].strip() for line in path.read_text().splitlines())
    return {line for line in lines if line}


def test_base_install_is_exactly_the_edge_requirements_and_has_no_tensorflow() -> None:
    edge = pins(REPO / "requirements-edge.txt")
    assert set(PROJECT["dependencies"]) == edge
    assert set(PROJECT["optional-dependencies"]["edge"]) == edge
    assert not any(p.startswith("tensorflow") for p in PROJECT["dependencies"])


def test_base_plus_cloud_and_dev_extras_is_exactly_requirements_txt() -> None:
    extras = PROJECT["optional-dependencies"]
    declared = [*PROJECT["dependencies"], *extras["cloud"], *extras["dev"]]
    assert len(declared) == len(set(declared))
    assert set(declared) == pins(REPO / "requirements.txt")
    assert extras["all"] == ["dmskd[cloud,dev]"]


def test_every_console_script_is_a_packages_main_function() -> None:
    scripts = PROJECT["scripts"]
    assert set(scripts) == {"dmskd-sim", "dmskd-cloud", "dmskd-edge", "dmskd-export"}
    for target in scripts.values():
        module, function = target.split(":")
        source = REPO / (module.replace(".", "/") + ".py")
        functions = {node.name for node in ast.parse(source.read_text()).body if isinstance(node, ast.FunctionDef)}
        assert function == "main" and function in functions, target
