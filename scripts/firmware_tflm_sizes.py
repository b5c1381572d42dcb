"""Flash and RAM of the TFLite-Micro firmware per shard of a teacher, on Cortex-M4F, against the
`mcu` device classes of a fleet file (which fit, which do not).

    python -m simulator teacher --out /tmp/teacher          # the default teacher, if you have none
    python scripts/firmware_tflm_sizes.py --teacher /tmp/teacher [--fleet examples/fleet.toml]

For every prefix P1..Pn: `python -m export` writes the shard's firmware configuration (int8 shard,
the student's functional train step, measured arenas), firmware_stubs/tflm is cross-built with
arm-none-eabi-gcc (firmware_stubs/cmake/cortex-m4f.cmake: -Os, Cortex-M4F hard float, newlib-nano with
float printf as the core needs) into the size probe image (TFLM runtime + glue + shard
+ train step + both arenas as static buffers) and arm-none-eabi-size reads its sections:
flash = text (.text, .init, .fini, unwind tables, init arrays) + .rodata (the two models) + .data's
initialisers; RAM = .data + .bss: both arenas, the float weight buffer and one batch, all static.
Needs TFLM_DIR (and FLATBUFFERS_DIR, RUY_DIR; defaults /opt/...), as firmware_stubs/README.md.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # this checkout's export/, not an installed one
GLUE = REPO / "firmware_stubs" / "tflm"
TOOLCHAIN = REPO / "firmware_stubs" / "cmake" / "cortex-m4f.cmake"  # the firmware's (core's) toolchain file
# Code in flash (.text and its start-up/unwind companions); RAM is everything the image reserves in RAM.
CODE_SECTIONS = (".init", ".text", ".fini", ".ARM.exidx", ".eh_frame", ".init_array", ".fini_array")
RAM_SECTIONS = (".data", ".bss", ".noinit", ".persistent")
DEFAULTS = {"TFLM_DIR": "/opt/tflite-micro", "FLATBUFFERS_DIR": "/opt/flatbuffers", "RUY_DIR": "/opt/ruy"}


def sections(elf: Path) -> dict[str, int]:
    """Section sizes of an ELF (arm-none-eabi-size -A)."""
    out = subprocess.run(["arm-none-eabi-size", "-A", str(elf)], capture_output=True, text=True, check=True).stdout
    sizes: dict[str, int] = {}
    for line in out.splitlines():
        parts = line.split()
        if len(parts) >= 2 and parts[0].startswith(".") and parts[1].isdigit():
            sizes[parts[0]] = int(parts[1])
    return sizes


def write_plan(path: Path, teacher: Path, exits: int) -> None:
    """One mcu class per shard (size-P1..size-Pn), so the exporter writes a configuration for each."""
    shards = {f"P{k}": {"k": k, "targets": ["mcu"]} for k in range(1, exits + 1)}
    devices = [{"device_id": f"probe{k}", "shard_id": f"P{k}", "k": k, "target": "mcu", "class": f"size-P{k}"}
               for k in range(1, exits + 1)]
    path.write_text(json.dumps({"teacher_dir": str(teacher), "fleet": "size-report", "shards": shards,
                                "devices": devices}))


def verdict(flash: int, ram: int, flash_limit: int | None, ram_limit: int | None) -> str:
    """fits, or no (flash) / no (RAM) / no (flash+RAM)."""
    short = [what for what, used, limit in (("flash", flash, flash_limit), ("RAM", ram, ram_limit))
             if limit is not None and used > limit]
    return "fits" if not short else f"no ({'+'.join(short)})"


def mcu_classes(fleet_path: Path) -> dict[str, tuple[int | None, int | None]]:
    """Each mcu class of a fleet file: (flash bytes, RAM bytes)."""
    from cloud.fleet_file import load_fleet_file

    classes: dict[str, tuple[int | None, int | None]] = {}
    for d in load_fleet_file(fleet_path).devices:
        if d.target == "mcu":
            classes.setdefault(d.device_class or d.device_id, (d.flash_bytes, d.arena_bytes))
    return classes


def export_size_configs(teacher: Path, work: Path, flags: list[str]) -> tuple[Path, int] | None:
    """Export one mcu configuration per shard of `teacher` into work/export (write_plan's classes size-P<k>);
    (the export directory, the number of shards), or None if the exporter failed."""
    from export.__main__ import main as export_main
    from export.teacher_dir import load_teacher_dir

    exits = load_teacher_dir(teacher).num_exits
    work.mkdir(parents=True, exist_ok=True)
    plan = work / "plan.json"
    write_plan(plan, teacher, exits)
    out = work / "export"
    if export_main(["--plan", str(plan), "--out", str(out), "--qat", "never", "--quiet", *flags]) != 0:
        return None
    return out, exits


def cmake(args: list[str]) -> None:
    done = subprocess.run(["cmake", *args], capture_output=True, text=True)
    if done.returncode != 0:
        sys.exit(f"error: cmake {' '.join(args)} failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")


def main(argv: list[str] | None = None) -> int:
    """Export, cross-build and size every shard; print the table against the fleet's mcu classes."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--teacher", type=Path, required=True, help="teacher directory (python -m simulator teacher)")
    p.add_argument("--fleet", type=Path, default=REPO / "examples" / "fleet.toml", help="fleet file")
    p.add_argument("--work", type=Path, default=REPO / "firmware_stubs" / "build" / "sizes",
                   help="work directory for the plan and the export (default: %(default)s)")
    p.add_argument("--build", type=Path, default=REPO / "firmware_stubs" / "build" / "tflm-m4f",
                   help="Cortex-M4F build directory, kept between runs (default: %(default)s)")
    p.add_argument("--student-hidden", type=int, nargs="+", default=[64], help="student hidden widths")
    p.add_argument("--student-batch", type=int, default=16, help="train-step batch")
    args = p.parse_args(argv)
    trees = {var: os.environ.get(var) or default for var, default in DEFAULTS.items()}
    if not Path(trees["TFLM_DIR"], "tensorflow/lite/micro").is_dir():
        sys.exit(f"error: TFLM_DIR={trees['TFLM_DIR']} is not a TFLite-Micro checkout; see firmware_stubs/README.md")
    exported = export_size_configs(args.teacher, args.work, ["--student-batch", str(args.student_batch),
                                                             "--student-hidden", *map(str, args.student_hidden)])
    if exported is None:
        return 1
    out, exits = exported
    toolchain = TOOLCHAIN
    build = args.build
    rows = []
    for k in range(1, exits + 1):
        config = out / "firmware" / f"size-P{k}"
        cmake(["-S", str(GLUE), "-B", str(build), f"-DCMAKE_TOOLCHAIN_FILE={toolchain}",
               "-DCMAKE_BUILD_TYPE=MinSizeRel", f"-DDMSKD_DEVICE_CONFIG={config}",
               *(f"-D{var}={path}" for var, path in trees.items())])
        cmake(["--build", str(build), "--parallel", str(os.cpu_count() or 2), "--target", "dmskd_tflm_size_probe"])
        s = sections(build / "dmskd_tflm_size_probe.elf")
        cfg = json.loads((config / "config.json").read_text())
        arenas = cfg["shard_arena_bytes"] + cfg["student_arena_bytes"]
        text = sum(s.get(name, 0) for name in CODE_SECTIONS)
        flash = text + s.get(".rodata", 0) + s.get(".data", 0)
        ram = sum(s.get(name, 0) for name in RAM_SECTIONS)
        rows.append((f"P{k}", text, s.get(".rodata", 0), s.get(".data", 0), s.get(".bss", 0),
                     cfg["shard_model_bytes"], cfg["student_model_bytes"], cfg["shard_arena_bytes"],
                     cfg["student_arena_bytes"], arenas, flash, ram))
    classes = mcu_classes(args.fleet)
    head = ("shard", "text", ".rodata", ".data", ".bss", "shard B", "step B", "shard arena", "step arena",
            "flash", "RAM")
    table = [head] + [tuple(f"{v:,}" if isinstance(v, int) else v for v in (r[:5] + r[5:9] + r[10:]))
                      for r in rows]
    widths = [max(len(str(r[i])) for r in table) for i in range(len(head))]
    print(f"Cortex-M4F (arm-none-eabi-gcc -Os, hard float), TFLite-Micro reference kernels; student "
          f"hidden {','.join(map(str, args.student_hidden))}, batch {args.student_batch}:")
    for r in table:
        print("  ".join(str(c).rjust(w) for c, w in zip(r, widths)))
    print("\nflash = text + .rodata + .data; RAM = .data + .bss (both arenas, the weights and one batch, static)\n")
    for name, (flash_limit, ram_limit) in classes.items():
        verdicts = [f"{r[0]} {verdict(r[10], r[11], flash_limit, ram_limit)}" for r in rows]
        limits = (f"flash {flash_limit / 1024:.0f} KB" if flash_limit else "flash -") + ", " + (
            f"RAM {ram_limit / 1024:.0f} KB" if ram_limit else "RAM -")
        print(f"{name} ({limits}): " + "; ".join(verdicts))
    (args.work / "sizes.json").write_text(json.dumps([dict(zip(("shard", "text", "rodata", "data", "bss",
        "shard_model", "step_model", "shard_arena", "step_arena", "arenas", "flash", "ram"), r)) for r in rows],
        indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
