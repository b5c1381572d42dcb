"""The firmware harness: configure and build firmware_stubs/ once per session, find built binaries.

The build dir is cached (firmware_stubs/build/pytest-host, ignored by git; DMSKD_FIRMWARE_BUILD overrides)
so a second session rebuilds only what changed. TFLite-Micro comes from TFLM_DIR when set (or the default
checkout path DEFAULT_TFLM_DIR when it exists); tests that need it use the `tflm_dir` fixture, which skips
with a reason naming TFLM_DIR."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SOURCE = REPO / "firmware_stubs"
DEFAULT_BUILD = SOURCE / "build" / "pytest-host"
DEFAULT_TFLM_DIR = Path("/opt/tflite-micro")  # where firmware_stubs/README.md's fetch command puts the checkout


def tflm_checkout() -> Path | None:
    """The TFLite-Micro tree to build against: $TFLM_DIR, else DEFAULT_TFLM_DIR if it exists, else None."""
    configured = os.environ.get("TFLM_DIR", "").strip()
    if configured:
        path = Path(configured)
        if not (path / "tensorflow" / "lite" / "micro").is_dir():
            raise pytest.UsageError(f"TFLM_DIR={configured} is not a TFLite-Micro checkout (no tensorflow/lite/micro); "
                                    f"fix it or unset TFLM_DIR")
        return path
    return DEFAULT_TFLM_DIR if (DEFAULT_TFLM_DIR / "tensorflow" / "lite" / "micro").is_dir() else None


@dataclass(frozen=True)
class FirmwareBuild:
    """A configured and built firmware_stubs/ tree: its build dir and how to find a binary in it."""

    build_dir: Path
    tflm_dir: Path | None

    def binary(self, name: str) -> Path:
        """The built executable `name` (searched anywhere under the build dir); fails naming the target."""
        for candidate in sorted(self.build_dir.rglob(name)):
            if candidate.is_file() and os.access(candidate, os.X_OK) and "CMakeFiles" not in candidate.parts:
                return candidate
        raise FileNotFoundError(f"no built binary {name!r} under {self.build_dir}; is it a target of "
                                f"firmware_stubs/ (check `cmake --build {self.build_dir} --target {name}`)?")


def run_cmake(args: list[str], what: str) -> None:
    """Run cmake with args; fail the session with cmake's output when it fails."""
    done = subprocess.run(["cmake", *args], capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"{what} failed (cmake {' '.join(args)}):\n{done.stdout[-4000:]}\n{done.stderr[-4000:]}")


@pytest.fixture(scope="session")
def firmware_build() -> FirmwareBuild:
    """firmware_stubs/ configured (with TFLM_DIR when present) and built once for this session."""
    if shutil.which("cmake") is None:
        raise RuntimeError("cmake not found: install it (apt-get install cmake; .ci/run does)")
    build_dir = Path(os.environ.get("DMSKD_FIRMWARE_BUILD", str(DEFAULT_BUILD)))
    tflm = tflm_checkout()
    configure = ["-S", str(SOURCE), "-B", str(build_dir), "-DCMAKE_BUILD_TYPE=Release",
                 f"-DTFLM_DIR={tflm or ''}"]
    run_cmake(configure, "configuring firmware_stubs")
    run_cmake(["--build", str(build_dir), "--parallel", str(os.cpu_count() or 2)], "building firmware_stubs")
    return FirmwareBuild(build_dir, tflm)


@pytest.fixture(scope="session")
def tflm_dir(firmware_build: FirmwareBuild) -> Path:
    """The TFLite-Micro tree the firmware was built against; skips when there is none."""
    if firmware_build.tflm_dir is None:
        pytest.skip(f"TFLite-Micro not available: set TFLM_DIR to a checkout at the pinned commit "
                    f"(firmware_stubs/README.md), or put one at {DEFAULT_TFLM_DIR}")
    return firmware_build.tflm_dir


@pytest.fixture(scope="session")
def core_cli(firmware_build: FirmwareBuild) -> Path:
    """The core's test driver, dmskd_core_cli."""
    return firmware_build.binary("dmskd_core_cli")


@pytest.fixture(scope="session")
def monocypher_dir() -> Path:
    """Monocypher's C source, fetched once (scripts/fetch_monocypher.sh, pinned sdist); skips when unreachable."""
    target = SOURCE / "build" / "monocypher"
    done = subprocess.run(["bash", str(REPO / "scripts" / "fetch_monocypher.sh"), str(target)], capture_output=True,
                          text=True, env={**os.environ, "PYTHON": sys.executable})
    if done.returncode != 0:
        pytest.skip(f"Monocypher's source could not be fetched (the Ed25519 backend of MCU builds): {done.stderr}")
    return target


@pytest.fixture(scope="session")
def monocypher_cli(monocypher_dir: Path) -> Path:
    """dmskd_core_cli built with the Monocypher Ed25519 backend (what a Cortex-M4F runs), on the host."""
    build_dir = SOURCE / "build" / "pytest-host-monocypher"
    run_cmake(["-S", str(SOURCE), "-B", str(build_dir), "-DCMAKE_BUILD_TYPE=Release", "-DDMSKD_ED25519=monocypher",
               f"-DMONOCYPHER_DIR={monocypher_dir}", "-DTFLM_DIR="], "configuring the Monocypher host build")
    run_cmake(["--build", str(build_dir), "--target", "dmskd_core_cli", "--parallel", str(os.cpu_count() or 2)],
              "building dmskd_core_cli with Monocypher")
    return FirmwareBuild(build_dir, None).binary("dmskd_core_cli")


@pytest.fixture(scope="session")
def sanitized_cli() -> Path:
    """dmskd_core_cli built with AddressSanitizer and UBSan, aborting on the first finding (hostile-input tests)."""
    build_dir = SOURCE / "build" / "pytest-host-sanitized"
    flags = "-fsanitize=address,undefined -fno-sanitize-recover=all -fno-omit-frame-pointer -g -O1"
    run_cmake(["-S", str(SOURCE), "-B", str(build_dir), "-DCMAKE_BUILD_TYPE=Debug", f"-DCMAKE_C_FLAGS={flags}",
               "-DTFLM_DIR="], "configuring the sanitized host build")
    run_cmake(["--build", str(build_dir), "--target", "dmskd_core_cli", "--parallel", str(os.cpu_count() or 2)],
              "building the sanitized dmskd_core_cli")
    return FirmwareBuild(build_dir, None).binary("dmskd_core_cli")


@pytest.fixture(scope="session")
def m4f_report(monocypher_dir: Path) -> dict:
    """The Cortex-M4F build (cached under firmware_stubs/build/pytest-m4f) and its size report."""
    if shutil.which("arm-none-eabi-gcc") is None:
        pytest.skip("arm-none-eabi-gcc not installed (apt-get install gcc-arm-none-eabi libnewlib-arm-none-eabi; "
                    ".ci/run does)")
    monocypher = monocypher_dir
    done = subprocess.run([sys.executable, str(REPO / "scripts" / "firmware_size.py"), "--build-dir",
                           str(SOURCE / "build" / "pytest-m4f"), "--monocypher", str(monocypher), "--json"],
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)
