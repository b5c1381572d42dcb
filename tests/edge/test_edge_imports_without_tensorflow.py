"""edge/ must run on a device that has no TensorFlow (DESIGN.md §2)."""

from __future__ import annotations

import pkgutil
import subprocess
import sys
from pathlib import Path

import edge

REPO = Path(__file__).resolve().parents[2]
# cryptography (Ed25519 signatures, edge.signed_artifact) loads its cffi backend
ALLOWED_THIRD_PARTY = {"numpy", "paho", "safetensors", "ai_edge_litert", "tflite_runtime",
                       "cryptography", "_cffi_backend", "cffi"}


def _is_install_machinery(module: str) -> bool:
    """setuptools' distutils shim and the finder `pip install -e .` adds: not code the edge imports."""
    return module == "_distutils_hack" or module.startswith("__editable__")


def test_every_edge_module_imports_where_tensorflow_cannot_be_imported():
    modules = sorted(f"edge.{m.name}" for m in pkgutil.iter_modules(edge.__path__))
    code = (
        "import sys\n"
        "sys.modules['tensorflow'] = None  # any 'import tensorflow' now raises ImportError\n"
        f"for name in {modules!r}:\n"
        "    __import__(name)\n"
        "import edge.litert; edge.litert.interpreter_class()  # the device interpreter loads too\n"
        "try:\n"
        "    import tensorflow\n"
        "    raise SystemExit('tensorflow was importable')\n"
        "except ImportError:\n"
        "    pass\n"
        "top = {n.split('.')[0] for n, m in sys.modules.items() if m is not None and getattr(m, '__file__', None)\n"
        "       and 'site-packages' in (m.__file__ or '')}\n"
        "print(' '.join(sorted(top)))\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert len(modules) >= 8
    third_party = set(proc.stdout.split())
    assert {m for m in third_party if not _is_install_machinery(m)} <= ALLOWED_THIRD_PARTY, third_party
    assert "tensorflow" not in third_party


def test_edge_requirements_hold_only_what_a_device_needs():
    lines = [line.split("==")[0].strip() for line in (REPO / "requirements-edge.txt").read_text().splitlines()
             if line.strip() and not line.startswith("#")]
    assert sorted(lines) == ["ai-edge-litert", "cryptography", "numpy", "paho-mqtt", "safetensors"]
