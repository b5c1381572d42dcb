"""The TFLite-Micro half of the firmware harness: export a device configuration with `python -m export`,
build firmware_stubs/tflm's host driver against it once per session, and run the driver.

TFLite-Micro and its third-party headers come from TFLM_DIR (default /opt/tflite-micro), FLATBUFFERS_DIR
(default /opt/flatbuffers) and RUY_DIR (default /opt/ruy), fetched as firmware_stubs/README.md shows; the
TFLM library build is cached in firmware_stubs/build/pytest-tflm-host (ignored by git; DMSKD_TFLM_BUILD overrides),
so only the first session pays for compiling TFLite-Micro."""

from __future__ import annotations

import functools
import json
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "scripts"))
import firmware_image_sizes as _image_sizes  # noqa: E402  (the size report: the meter-plus limits' Python copy)

GLUE_SOURCE = REPO / "firmware_stubs" / "tflm"
DEFAULT_BUILD = REPO / "firmware_stubs" / "build" / "pytest-tflm-host"
DEFAULTS = {"TFLM_DIR": Path("/opt/tflite-micro"), "FLATBUFFERS_DIR": Path("/opt/flatbuffers"),
            "RUY_DIR": Path("/opt/ruy")}
MARKERS = {"TFLM_DIR": "tensorflow/lite/micro/micro_interpreter.h",
           "FLATBUFFERS_DIR": "include/flatbuffers/flatbuffers.h", "RUY_DIR": "ruy/profiler/instrumentation.h"}
GEMMLOWP = Path("/usr/include/gemmlowp/fixedpoint/fixedpoint.h")
MCU_CLASS = "meter"
# The configuration the size report finds fitting meter-plus (scripts/firmware_image_sizes.py's defaults): its
# device loop's limits (port/freertos/CMakeLists.txt's DMSKD_METER_PLUS_LIMITS: 2 reassembly slots, 4 KiB chunks,
# logits of 256 samples), and the export: the digits student (64 hidden), arenas of the host's measurement + 5%
# (the QEMU run checks them on the M4F) and the fleet's 4 KiB chunk limit.
METER_PLUS_LIMITS: dict[str, int] = dict(_image_sizes.LIMITS)
METER_PLUS_EXPORT = ("--student-hidden", "64", "--arena-headroom", "0.05",
                     "--chunk-limit", str(METER_PLUS_LIMITS["DMSKD_MAX_CHUNK_BYTES"]))
# The first session compiles TFLite-Micro (about 30 files of kernels plus its runtime: several minutes
# on 2 busy cores); the tests that build it may take that long once, later sessions ~1 minute in all.
COLD_BUILD_SECONDS = 1800


def source_trees() -> dict[str, Path] | str:
    """The TFLM, flatbuffers and ruy trees to build with, or why they are absent (naming the variable)."""
    trees = {}
    for var, default in DEFAULTS.items():
        given = os.environ.get(var, "").strip()
        path = Path(given or default)
        if not (path / MARKERS[var]).is_file():
            where = f"{var}={path} holds" if given else f"{var} is unset and its default {path} holds"
            return (f"{where} no {MARKERS[var]}: set {var} to a checkout at the pinned commit "
                    f"(firmware_stubs/README.md)")
        trees[var] = path
    if not GEMMLOWP.is_file():
        return f"{GEMMLOWP} missing: apt-get install libgemmlowp-dev (TFLM_DIR builds need it)"
    if shutil.which("cmake") is None or shutil.which("c++") is None:
        return "cmake or c++ missing: apt-get install cmake g++ (TFLM_DIR builds need them)"
    return trees


@dataclass(frozen=True)
class TflmFirmware:
    """A device configuration from `python -m export` and the host driver built against it."""

    export_dir: Path
    config_dir: Path
    driver: Path

    @property
    def config(self) -> dict:
        return json.loads((self.config_dir / "config.json").read_text())


def build_driver(config_dir: Path, trees: dict[str, Path], build_dir: Path | None = None) -> Path:
    """Configure and build firmware_stubs/tflm with -DDMSKD_DEVICE_CONFIG=config_dir; the driver's path."""
    build = build_dir or Path(os.environ.get("DMSKD_TFLM_BUILD", str(DEFAULT_BUILD)))
    configure = ["cmake", "-S", str(GLUE_SOURCE), "-B", str(build), "-DCMAKE_BUILD_TYPE=Release",
                 f"-DDMSKD_DEVICE_CONFIG={config_dir}", *(f"-D{var}={path}" for var, path in trees.items())]
    for cmd in (configure, ["cmake", "--build", str(build), "--parallel", str(os.cpu_count() or 2)]):
        done = subprocess.run(cmd, capture_output=True, text=True)
        if done.returncode != 0:
            raise RuntimeError(f"{' '.join(cmd)} failed:\n{done.stdout[-4000:]}\n{done.stderr[-4000:]}")
    return build / "dmskd_tflm_driver"


def run_driver(driver: Path, *args: str | Path, check: bool = True) -> subprocess.CompletedProcess:
    """Run the driver; with check, fail with its stderr unless it exits 0."""
    done = subprocess.run([str(driver), *map(str, args)], capture_output=True, text=True, timeout=300)
    if check and done.returncode != 0:
        raise AssertionError(f"dmskd_tflm_driver {' '.join(map(str, args))} exited {done.returncode}: {done.stderr}")
    return done


def write_mcu_plan(path: Path, teacher_dir: Path, k: int = 1) -> Path:
    """A plan.json in the planner's schema: one mcu class of two meters on shard P<k>."""
    sid = f"P{k}"
    devices = [{"device_id": f"m{i}", "shard_id": sid, "k": k, "target": "mcu", "class": MCU_CLASS}
               for i in range(2)]
    plan = {"teacher_dir": str(teacher_dir), "fleet": "test fleet", "shards": {sid: {"k": k, "targets": ["mcu"]}},
            "devices": devices}
    path.write_text(json.dumps(plan))
    return path


@functools.cache
def exported_firmware(workdir: Path, teacher_dir: Path, fleet_key: Path | None) -> Path:
    """`python -m export` of write_mcu_plan into workdir/export (once per process); the export directory."""
    from export.__main__ import main

    out = workdir / "export"
    argv = ["--plan", str(write_mcu_plan(workdir / "plan.json", teacher_dir)), "--out", str(out), "--qat", "never",
            *METER_PLUS_EXPORT, "--quiet"]
    if fleet_key is not None:
        argv += ["--fleet-key", str(fleet_key)]
    if main(argv) != 0:
        raise RuntimeError(f"python -m export {' '.join(argv)} failed")
    return out


@functools.cache
def fleet_key(base: Path) -> tuple[Path, bytes]:
    """A fleet-signing.pub (PEM) under base and its 32 raw bytes (a fixed test key)."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    key = Ed25519PrivateKey.from_private_bytes(bytes(range(32))).public_key()
    path = base / "fleet-signing.pub"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(key.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))
    return path, key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


@functools.cache
def tflm_firmware(base: Path, teacher_dir: Path) -> TflmFirmware | str:
    """Export (once per process) the default teacher's P1 for a `meter` class and build the driver on it;
    or why TFLite-Micro is absent (a skip reason naming TFLM_DIR)."""
    trees = source_trees()
    if isinstance(trees, str):
        return trees
    out = exported_firmware(base, teacher_dir, fleet_key(base)[0])
    config = out / "firmware" / MCU_CLASS
    return TflmFirmware(out, config, build_driver(config, trees))


def firmware_or_skip(tmp_path_factory, teacher_dir: Path) -> TflmFirmware:
    """tflm_firmware for a session fixture: skips (naming TFLM_DIR) when TFLite-Micro is absent."""
    import pytest

    got = tflm_firmware(tmp_path_factory.getbasetemp() / "tflm_firmware", teacher_dir)
    if isinstance(got, str):
        pytest.skip(got)
    return got


def int8_inputs(x: np.ndarray, scale: float, zero_point: int) -> np.ndarray:
    """Float samples quantised as the shard's int8 input (round half away from zero, as the glue)."""
    q = np.sign(x / scale) * np.floor(np.abs(x / scale) + 0.5) + zero_point
    return np.clip(q, -128, 127).astype(np.int8)
