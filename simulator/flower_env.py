"""bench-scale's setup step: a separate Python 3.11 venv holding Flower's simulation engine and the edge stack.

Flower (and Ray) never enter requirements.txt or the project's venv: `ensure_flower_env` creates
`.venv-flower` (or the given directory) with `python3.11 -m venv` and installs requirements-flower.txt
(flwr[simulation] and ray pinned, plus requirements-edge.txt) with that venv's pip, once; a venv that already
imports the pinned flwr is used as it is. The Flower side imports the project from the repository through
PYTHONPATH (simulator/flower_side.py needs edge/ and numpy only).
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

REQUIREMENTS = "requirements-flower.txt"


class FlowerSetupError(RuntimeError):
    """The Flower venv could not be made; the message says why and what to do."""


def pinned_flwr(requirements: Path) -> str:
    """The flwr version requirements-flower.txt pins (flwr[simulation]==X)."""
    match = re.search(r"^flwr(?:\[[^\]]*\])?==([\w.]+)", requirements.read_text(), re.MULTILINE)
    if match is None:
        raise FlowerSetupError(f"{requirements} pins no flwr version (expected a line flwr[simulation]==X)")
    return match.group(1)


def venv_python(venv: Path) -> Path:
    return venv / "bin" / "python"


def installed_flwr(venv: Path) -> str | None:
    """The flwr version the venv imports, or None (no venv, or no flwr, ray or LiteRT in it)."""
    python = venv_python(venv)
    if not python.exists():
        return None
    probe = subprocess.run([str(python), "-c", "import ray, ai_edge_litert, flwr; print(flwr.__version__)"],
                           capture_output=True, text=True)
    return probe.stdout.strip() if probe.returncode == 0 else None


def python311() -> str:
    """An interpreter for the venv: python3.11 on PATH, else this one if it is 3.11; FlowerSetupError names the fix."""
    found = shutil.which("python3.11")
    if found:
        return found
    if sys.version_info[:2] == (3, 11):
        return sys.executable
    raise FlowerSetupError("the Flower side needs Python 3.11 (python3.11 is not on PATH); install it, or pass "
                           "--flower-sizes none to skip the Flower comparison")


def ensure_flower_env(venv: Path, repo: Path, log_path: Path,
                      status: Callable[[str], None] = print) -> Path:
    """The venv's python, after creating and installing it if it lacks the pinned flwr (its pip log in log_path)."""
    requirements = repo / REQUIREMENTS
    if not requirements.exists():
        raise FlowerSetupError(f"{requirements} missing: run bench-scale from the repository root")
    wanted = pinned_flwr(requirements)
    if installed_flwr(venv) == wanted:
        return venv_python(venv)
    status(f"setting up {venv} (Python 3.11, flwr[simulation]=={wanted}, the edge stack; pip log in {log_path})")
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "w", encoding="utf-8") as log:
        steps = ([python311(), "-m", "venv", str(venv)],
                 [str(venv_python(venv)), "-m", "pip", "install", "-r", str(requirements)])
        for step in steps:
            if subprocess.run(step, stdout=log, stderr=subprocess.STDOUT, cwd=repo).returncode != 0:
                raise FlowerSetupError(f"`{' '.join(step)}` failed; see {log_path} (delete {venv} to start over)")
    found = installed_flwr(venv)
    if found != wanted:
        raise FlowerSetupError(f"{venv} imports flwr {found}, not {wanted}; see {log_path} (delete {venv} to start "
                               f"over)")
    return venv_python(venv)
