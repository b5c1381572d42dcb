"""Flash and RAM of the firmware core on a Cortex-M4F: build the link test, then split its linker map by origin.

    python scripts/firmware_size.py [--build-dir firmware_stubs/build/m4f] [--monocypher DIR] [--json]

Builds firmware_stubs/ with firmware_stubs/cmake/cortex-m4f.cmake (arm-none-eabi-gcc, -Os, hard float) when the
link test (tools/m4f_link_test.c, which calls every entry point of the core) is not built yet, then reads its
linker map and prints text, rodata, data and bss per origin: the core itself, Monocypher's Ed25519 arithmetic,
the C library (newlib-nano, libm, libgcc) and the link test's own static buffers. Flash = text + rodata + data
(its initial values), RAM = data + bss; the core has no heap and no static buffers: every buffer is the caller's."""

from __future__ import annotations

import argparse
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SOURCE = REPO / "firmware_stubs"
TOOLCHAIN = SOURCE / "cmake" / "cortex-m4f.cmake"
ELF_NAME = "dmskd_core_m4f.elf"
MAP_NAME = "dmskd_core_m4f.map"
GROUPS = ("core", "monocypher", "libc", "link test")
KINDS = ("text", "rodata", "data", "bss")
# "<section> <address> <size> <file>", the name on its own line when it is long
MAP_ENTRY = re.compile(r"^ (\.[\w.$]+|COMMON)\s*\n?\s+0x([0-9a-f]+)\s+0x([0-9a-f]+)\s+(\S+)$", re.MULTILINE)


def build(build_dir: Path, monocypher: Path | None) -> Path:
    """Configure and build the Cortex-M4F tree (once); the path of the link test's ELF."""
    if shutil.which("arm-none-eabi-gcc") is None:
        raise SystemExit("error: arm-none-eabi-gcc not found; "
                         "apt-get install gcc-arm-none-eabi libnewlib-arm-none-eabi")
    configure = ["cmake", "-S", str(SOURCE), "-B", str(build_dir), f"-DCMAKE_TOOLCHAIN_FILE={TOOLCHAIN}",
                 "-DCMAKE_BUILD_TYPE=MinSizeRel", f"-DMONOCYPHER_DIR={monocypher or ''}"]
    targets = ["--target", "dmskd_core_m4f", "dmskd_core_selftest_m4f"]  # the other layers build their own images
    for step in (configure, ["cmake", "--build", str(build_dir), *targets, "--parallel", "2"]):
        done = subprocess.run(step, capture_output=True, text=True)
        if done.returncode != 0:
            raise SystemExit(f"error: {' '.join(step)} failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
    elf = next(build_dir.rglob(ELF_NAME), None)
    if elf is None:
        raise SystemExit(f"error: the build made no {ELF_NAME} under {build_dir}")
    return elf


def origin(path: str) -> str:
    """Which group an input file of the link belongs to."""
    if "libdmskd_core.a(monocypher" in path:
        return "monocypher"
    if "libdmskd_core.a(" in path:
        return "core"
    if "m4f_link_test" in path:
        return "link test"
    return "libc"


def kind(section: str) -> str | None:
    """text, rodata, data or bss for an output-relevant input section name (None for debug and the like)."""
    for prefix, name in ((".text", "text"), (".rodata", "rodata"), (".data", "data"), (".bss", "bss"),
                         ("COMMON", "bss"), (".isr_vector", "text")):
        if section.startswith(prefix):
            return name
    return None


def sizes(map_text: str) -> dict[str, dict[str, int]]:
    """Bytes per group and kind of every input section the linker kept (discarded ones sit above the memory map)."""
    kept = map_text[map_text.index("Linker script and memory map"):]
    table = {g: dict.fromkeys(KINDS, 0) for g in GROUPS}
    for section, address, size, path in MAP_ENTRY.findall(kept):
        k = kind(section)
        if k is not None and int(address, 16) != 0:
            table[origin(path)][k] += int(size, 16)
    return table


def report(table: dict[str, dict[str, int]]) -> dict[str, object]:
    """The table plus flash and RAM per group and for the core with its Ed25519 backend."""
    rows = {g: {**v, "flash": v["text"] + v["rodata"] + v["data"], "ram": v["data"] + v["bss"]}
            for g, v in table.items()}
    core = {k: rows["core"][k] + rows["monocypher"][k] for k in (*KINDS, "flash", "ram")}
    return {"groups": rows, "core_with_ed25519": core}


def stack_frames(build_dir: Path, map_text: str, top: int = 3) -> list[dict[str, object]]:
    """The largest stack frames of the core's functions kept in the image (gcc -fstack-usage, which
    core/CMakeLists.txt turns on), largest first."""
    kept = set(re.findall(r"^ \.text\.(\w+)", map_text[map_text.index("Linker script and memory map"):], re.MULTILINE))
    frames = []
    for su in (build_dir / "core").rglob("*.su"):
        for line in su.read_text().splitlines():
            where, size, _ = line.rsplit("\t", 2)
            function = where.rsplit(":", 1)[-1]
            if function in kept:
                frames.append({"function": function, "file": Path(where.split(":")[0]).name, "bytes": int(size)})
    return sorted(frames, key=lambda f: -int(f["bytes"]))[:top]  # type: ignore[call-overload]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--build-dir", type=Path, default=SOURCE / "build" / "m4f")
    parser.add_argument("--monocypher", type=Path, default=None,
                        help="folder with monocypher.c/.h (scripts/fetch_monocypher.sh); default: "
                             "firmware_stubs/build/monocypher if present, else no Ed25519 backend")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    args = parser.parse_args(argv)
    monocypher = args.monocypher
    if monocypher is None and (SOURCE / "build" / "monocypher" / "monocypher.c").exists():
        monocypher = SOURCE / "build" / "monocypher"
    elf = build(args.build_dir, monocypher)
    map_text = (elf.parent / MAP_NAME).read_text()
    result = report(sizes(map_text))
    result["elf"] = str(elf)
    result["largest_stack_frames"] = stack_frames(args.build_dir, map_text)
    result["ed25519"] = "monocypher" if monocypher else "none"
    if args.json:
        print(json.dumps(result, indent=2))
        return 0
    print(f"Cortex-M4F (-Os, fpv4-sp-d16 hard float, newlib-nano): {elf}")
    print(f"{'origin':<12}" + "".join(f"{k:>9}" for k in (*KINDS, "flash", "ram")))
    groups: dict[str, dict[str, int]] = result["groups"]  # type: ignore[assignment]
    for name, row in [*groups.items(), ("core+ed25519", result["core_with_ed25519"])]:
        print(f"{name:<12}" + "".join(f"{row[k]:>9}" for k in (*KINDS, "flash", "ram")))  # type: ignore[index]
    frames = ", ".join(f"{f['function']} {f['bytes']} B" for f in result["largest_stack_frames"])  # type: ignore
    print(f"largest stack frames of the core (one call deep; buffers are the caller's): {frames}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
