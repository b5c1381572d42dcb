"""The whole Cortex-M4F image (firmware_stubs/port/freertos: core, Monocypher, device loop, TFLM glue and
runtime, FreeRTOS, coreMQTT, the size-only HAL) links, and scripts/firmware_image_sizes.py's figures
agree with the ELF and with the fleet's mcu classes.

Needs arm-none-eabi-gcc, TFLM_DIR (FLATBUFFERS_DIR, RUY_DIR), FREERTOS_KERNEL_DIR, COREMQTT_DIR and
MONOCYPHER_DIR (defaults in the script); skips naming what is missing. The build is cached in
firmware_stubs/build/pytest-image-m4f (ignored by git): the first session compiles TFLite-Micro."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "scripts"))
import firmware_image_sizes as sizes  # noqa: E402
from firmware_tflm_sizes import write_plan  # noqa: E402

from .tflm_build import COLD_BUILD_SECONDS, METER_PLUS_EXPORT  # noqa: E402

BUILD = REPO / "firmware_stubs" / "build" / "pytest-image-m4f"
FLEET = REPO / "examples" / "fleet.toml"


@pytest.fixture(scope="session")
def image(tmp_path_factory, request) -> tuple[Path, dict]:
    """P1 of the default teacher exported for the digits student (64 hidden) and its whole image built."""
    missing = [tool for tool in ("arm-none-eabi-gcc", "arm-none-eabi-size", "cmake") if shutil.which(tool) is None]
    if missing:
        pytest.skip(f"{', '.join(missing)} missing: apt-get install gcc-arm-none-eabi libnewlib-arm-none-eabi cmake")
    trees = sizes.source_trees()
    if isinstance(trees, str):
        pytest.skip(trees)
    from export.__main__ import main as export_main

    default_teacher_dir = request.getfixturevalue("default_teacher_dir")  # trained only when it can build

    work = tmp_path_factory.mktemp("m4f_image")
    write_plan(work / "plan.json", default_teacher_dir, 1)
    assert export_main(["--plan", str(work / "plan.json"), "--out", str(work / "export"), "--qat", "never",
                        "--quiet", *METER_PLUS_EXPORT]) == 0
    config = work / "export" / "firmware" / "size-P1"
    return sizes.build_image(config, BUILD, trees, sizes.LIMITS), json.loads((config / "config.json").read_text())


def _symbols(elf: Path) -> set[str]:
    out = subprocess.run(["arm-none-eabi-nm", str(elf)], capture_output=True, text=True, check=True).stdout
    return {line.split()[-1] for line in out.splitlines() if line.strip()}


@pytest.mark.timeout(COLD_BUILD_SECONDS)  # the first session compiles TFLite-Micro for the M4F
def test_the_image_links_every_layer_of_the_firmware(image):
    elf, _ = image
    assert elf.is_file()
    kept = _symbols(elf)
    for symbol in ("dmskd_device_run", "dmskd_trainer_init", "dmskd_tflm_student_train_step",  # device + glue
                   "MQTT_Connect", "MQTT_ProcessLoop", "xTaskCreateStatic", "vPortSVCHandler",  # coreMQTT, kernel
                   "crypto_eddsa_check_equation", "dmskd_freertos_port", "board_net_connect", "board_trng_fill"):
        assert symbol in kept, f"{symbol} not in the image"
    assert not {"pvPortMalloc", "malloc_dummy"} & kept  # static allocation: no FreeRTOS heap linked


@pytest.mark.timeout(COLD_BUILD_SECONDS)  # the first session compiles TFLite-Micro for the M4F
def test_the_size_figures_add_up_and_hold_the_arenas_and_models(image):
    elf, cfg = image
    s = sizes.sections(elf)
    got = sizes.image_sizes(elf)
    assert got["flash"] == got["text"] + got["rodata"] + got["data"] + s.get(".isr_vector", 0)
    assert got["ram"] == got["data"] + got["bss"]
    assert got["rodata"] >= cfg["shard_model_bytes"] + cfg["student_model_bytes"]  # both models in flash
    weights = cfg["student_num_weights"] * 4
    # both arenas, the device's global and local weights and its reassembly slots (a full model each)
    slots = sizes.LIMITS["DMSKD_REASSEMBLY_SLOTS"]
    floor = cfg["shard_arena_bytes"] + cfg["student_arena_bytes"] + (2 + slots) * weights
    assert got["bss"] >= floor


@pytest.mark.timeout(COLD_BUILD_SECONDS)  # the first session compiles TFLite-Micro for the M4F
def test_the_verdicts_follow_the_figures_against_the_fleet_classes(image):
    elf, _ = image
    got = sizes.image_sizes(elf)
    classes = sizes.mcu_classes(FLEET)
    plus_flash, plus_ram = classes["meter-plus"]
    meter_flash, meter_ram = classes["meter"]
    assert plus_flash is not None and meter_ram is not None
    assert got["flash"] < plus_flash  # the whole image is well inside meter-plus's 1 MB of flash
    assert got["ram"] > meter_ram  # and far beyond a 32 KB meter's RAM
    assert sizes.verdict(got["flash"], got["ram"], meter_flash, meter_ram).startswith("no (")
    assert plus_ram is not None and got["ram"] <= plus_ram  # the meter-plus configuration fits its 256 KB
    assert sizes.verdict(got["flash"], got["ram"], plus_flash, plus_ram) == "fits"
