"""Flash and RAM of the WHOLE Cortex-M4F firmware image per shard of a teacher, against the `mcu` device
classes of a fleet file (fits / no (flash) / no (RAM)).

    python -m simulator teacher --out /tmp/teacher --epochs 5   # the default teacher, if you have none
    python scripts/firmware_image_sizes.py --teacher /tmp/teacher [--fleet examples/fleet.toml]

One image per shard (target dmskd_m4f_image of firmware_stubs/CMakeLists.txt, cross-built with
firmware_stubs/cmake/cortex-m4f.cmake, -Os): the core with Monocypher's Ed25519, the device loop (device.c,
cohort_notice.c, outbox.c, trainer_tflm.c), the TFLM glue, runtime, shard and train step, port_freertos.c
over FreeRTOS-Kernel V11.1.0 (ARM_CM4F, static allocation, no heap) and coreMQTT v2.3.1, the size-only HAL
(size_hal.c: not a board) and image_main.c (one static 8 KiB task). arm-none-eabi-size reads its sections:
flash = code (.text etc.) + .rodata + .data's initialisers + the vector table; RAM = .data + .bss (arenas, weights, the
device loop's buffers, the task stack and the kernel's idle task: everything is static).
Needs TFLM_DIR (FLATBUFFERS_DIR, RUY_DIR), FREERTOS_KERNEL_DIR and COREMQTT_DIR (defaults /opt/...) and
Monocypher (scripts/fetch_monocypher.sh; default firmware_stubs/build/monocypher).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # this checkout's export/, not an installed one
sys.path.insert(0, str(REPO / "scripts"))
from firmware_tflm_sizes import (  # noqa: E402
    CODE_SECTIONS,
    RAM_SECTIONS,
    cmake,
    export_size_configs,
    mcu_classes,
    sections,
    verdict,
)

FIRMWARE = REPO / "firmware_stubs"
TOOLCHAIN = FIRMWARE / "cmake" / "cortex-m4f.cmake"
DEFAULTS = {"TFLM_DIR": "/opt/tflite-micro", "FLATBUFFERS_DIR": "/opt/flatbuffers", "RUY_DIR": "/opt/ruy",
            "FREERTOS_KERNEL_DIR": "/opt/freertos-kernel", "COREMQTT_DIR": "/opt/coremqtt",
            "MONOCYPHER_DIR": str(FIRMWARE / "build" / "monocypher")}
MARKERS = {"TFLM_DIR": "tensorflow/lite/micro/micro_interpreter.h", "FLATBUFFERS_DIR": "include/flatbuffers",
           "RUY_DIR": "ruy/profiler", "FREERTOS_KERNEL_DIR": "portable/GCC/ARM_CM4F/port.c",
           "COREMQTT_DIR": "source/core_mqtt.c", "MONOCYPHER_DIR": "monocypher.c"}
# The meter-plus limits the image's device loop is compiled with (port/freertos/CMakeLists.txt's
# DMSKD_METER_PLUS_LIMITS): the digits student (64-64-10: 4,810 weights), a fleet chunk limit of 4 KiB,
# 2 reassembly slots (the model and the step; one-chunk messages take none), logits of 256 samples x 10 classes.
LIMITS = {"DMSKD_MAX_PARAMS": 5120, "DMSKD_MAX_CHUNK_BYTES": 4096, "DMSKD_REASSEMBLY_SLOTS": 2,
          "DMSKD_MAX_LOGITS": 2560}


def source_trees() -> dict[str, str] | str:
    """The trees to build with, or why one is absent (naming its variable and the fix)."""
    trees = {var: os.environ.get(var) or default for var, default in DEFAULTS.items()}
    for var, marker in MARKERS.items():
        if not Path(trees[var], marker).exists():
            return (f"{var}={trees[var]} holds no {marker}: set {var} to the checkout firmware_stubs/README.md "
                    "section 5 names (FreeRTOS-Kernel V11.1.0, coreMQTT v2.3.1, TFLite-Micro, Monocypher)")
    return trees


def build_image(config: Path, build: Path, trees: dict[str, str], limits: dict[str, int]) -> Path:
    """Configure and build dmskd_m4f_image against one exported device configuration; the ELF's path."""
    cmake(["-S", str(FIRMWARE), "-B", str(build), f"-DCMAKE_TOOLCHAIN_FILE={TOOLCHAIN}",
           "-DCMAKE_BUILD_TYPE=MinSizeRel", f"-DDMSKD_DEVICE_CONFIG={config}",
           "-DDMSKD_DEVICE_LIMITS=" + ";".join(f"{k}={v}" for k, v in limits.items()),
           *(f"-D{var}={path}" for var, path in trees.items())])
    cmake(["--build", str(build), "--parallel", str(os.cpu_count() or 2), "--target", "dmskd_m4f_image"])
    return build / "port" / "freertos" / "dmskd_m4f_image.elf"


def image_sizes(elf: Path) -> dict[str, int]:
    """text (code), rodata, data, bss, flash and RAM of an image."""
    s = sections(elf)
    text = sum(s.get(name, 0) for name in CODE_SECTIONS)
    return {"text": text, "rodata": s.get(".rodata", 0), "data": s.get(".data", 0), "bss": s.get(".bss", 0),
            "flash": text + s.get(".rodata", 0) + s.get(".data", 0) + s.get(".isr_vector", 0),
            "ram": sum(s.get(name, 0) for name in RAM_SECTIONS)}


def ram_symbols(elf: Path, at_least: int = 1024) -> list[tuple[str, int]]:
    """The image's RAM objects of at_least bytes (.data/.bss symbols), largest first: where the RAM goes."""
    out = subprocess.run(["arm-none-eabi-nm", "-S", "--size-sort", "-r", str(elf)], capture_output=True, text=True,
                         check=True).stdout
    found = []
    for line in out.splitlines():
        parts = line.split()
        if len(parts) == 4 and parts[2] in "bBdD" and int(parts[1], 16) >= at_least:
            found.append((parts[3], int(parts[1], 16)))
    return found


def _limit(text: str) -> tuple[str, int]:
    """NAME=VALUE of --limit, NAME one of LIMITS."""
    name, _, value = text.partition("=")
    if name not in LIMITS or not value.isdigit():
        sys.exit(f"error: --limit {text}: expected NAME=INTEGER with NAME one of {', '.join(LIMITS)}")
    return name, int(value)


def main(argv: list[str] | None = None) -> int:
    """Export, cross-build and size the whole image of every shard; print the table and the verdicts."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--teacher", type=Path, required=True, help="teacher directory (python -m simulator teacher)")
    p.add_argument("--fleet", type=Path, default=REPO / "examples" / "fleet.toml", help="fleet file")
    p.add_argument("--work", type=Path, default=FIRMWARE / "build" / "image-sizes", help="plan and export")
    p.add_argument("--build", type=Path, default=FIRMWARE / "build" / "image-m4f", help="Cortex-M4F build dir")
    p.add_argument("--shards", nargs="+", default=None, help="only these shards (e.g. P1 P4); default all")
    p.add_argument("--student-hidden", type=int, nargs="+", default=[64], help="student hidden widths")
    p.add_argument("--student-batch", type=int, default=16, help="train-step batch")
    p.add_argument("--arena-headroom", type=float, default=0.05,
                   help="the exporter's arena headroom (0.05: the meter-plus configuration, run on QEMU by the tests; "
                        "python -m export's default is 0.25)")
    p.add_argument("--limit", action="append", default=[], metavar="NAME=VALUE",
                   help="override a device limit, e.g. DMSKD_REASSEMBLY_SLOTS=2 (defaults: "
                        + ", ".join(f"{k}={v}" for k, v in LIMITS.items()) + ")")
    p.add_argument("--json", action="store_true", help="print the rows as JSON instead of the table")
    args = p.parse_args(argv)
    trees = source_trees()
    if isinstance(trees, str):
        sys.exit(f"error: {trees}")
    limits = {**LIMITS, **dict(_limit(text) for text in args.limit)}
    exported = export_size_configs(args.teacher, args.work, [
        "--arena-headroom", str(args.arena_headroom), "--student-batch", str(args.student_batch),
        "--chunk-limit", str(limits["DMSKD_MAX_CHUNK_BYTES"]),
        "--student-hidden", *map(str, args.student_hidden)])
    if exported is None:
        return 1
    out, exits = exported
    rows: list[dict[str, Any]] = []
    for k in range(1, exits + 1):
        if args.shards and f"P{k}" not in args.shards:
            continue
        elf = build_image(out / "firmware" / f"size-P{k}", args.build, trees, limits)
        rows.append({"shard": f"P{k}", **image_sizes(elf), "ram_objects": dict(ram_symbols(elf))})
    classes = mcu_classes(args.fleet)
    for r in rows:
        r["classes"] = {name: verdict(r["flash"], r["ram"], *limit) for name, limit in classes.items()}
    (args.work / "image_sizes.json").write_text(json.dumps(rows, indent=2))
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    print("Whole Cortex-M4F image (arm-none-eabi-gcc -Os, hard float): core + Monocypher + device loop + TFLM "
          "glue/runtime/shard/train step + FreeRTOS V11.1.0 (static) + coreMQTT v2.3.1 + size-only HAL")
    print("device limits: " + ", ".join(f"{k}={v}" for k, v in limits.items()) +
          f"; student hidden {','.join(map(str, args.student_hidden))}, batch {args.student_batch}, "
          f"arena headroom {args.arena_headroom:g}")
    head = ("shard", "text", ".rodata", ".data", ".bss", "flash", "RAM")
    table = [head] + [(r["shard"], *(f"{r[c]:,}" for c in ("text", "rodata", "data", "bss", "flash", "ram")))
                      for r in rows]
    widths = [max(len(row[i]) for row in table) for i in range(len(head))]
    for row in table:
        print("  ".join(c.rjust(w) for c, w in zip(row, widths)))
    print("\nflash = text + .rodata + .data + .isr_vector; RAM = .data + .bss "
          "(all static: no heap, the task stack included)\n")
    last = rows[-1]
    print(f"RAM objects of {last['shard']} (>= 1 KiB): " +
          ", ".join(f"{n} {b:,}" for n, b in last["ram_objects"].items()) + "\n")
    for name, (flash_limit, ram_limit) in classes.items():
        budget = (f"flash {flash_limit / 1024:.0f} KB" if flash_limit else "flash -") + ", " + (
            f"RAM {ram_limit / 1024:.0f} KB" if ram_limit else "RAM -")
        print(f"{name} ({budget}): " + "; ".join(f"{r['shard']} {r['classes'][name]}" for r in rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
