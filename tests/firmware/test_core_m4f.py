"""The core is portable and fits a meter: it calls nothing of an OS and no allocator (checked on the host
library's symbols, always), and for a Cortex-M4F (arm-none-eabi-gcc, skipped without it) it links into a
bare-metal image whose core, Ed25519 included, fits in 64 KiB of flash with no RAM of its own."""

from __future__ import annotations

import subprocess
from pathlib import Path

from .conftest import FirmwareBuild

# What the core may call: the freestanding-friendly part of the C library, libm, libsodium's verify (host
# backend), Monocypher's EdDSA check, and the compiler's runtime helpers. Nothing that allocates or does I/O.
ALLOWED = {"memchr", "memcmp", "memcpy", "memmove", "memset", "strchr", "strcmp", "strlen", "strpbrk", "strspn",
           "strtod", "strtol", "strtoll", "atoi", "snprintf", "exp", "floor", "log1p", "sqrt",
           "crypto_sign_ed25519_verify_detached", "crypto_eddsa_check_equation", "crypto_eddsa_reduce",
           "__stack_chk_fail", "__isoc23_strtol", "__isoc23_strtoll"}
FORBIDDEN_EXAMPLES = ("malloc", "calloc", "realloc", "free", "fopen", "open", "read", "write", "time", "getrandom")


def external_symbols(nm: str, library: Path) -> set[str]:
    """Symbols the library's objects use but do not define among themselves."""
    def listing(flag: str) -> set[str]:
        out = subprocess.run([nm, flag, str(library)], capture_output=True, text=True, check=True).stdout
        return {line.split()[-1] for line in out.splitlines() if line.strip() and not line.endswith(":")}

    defined = {line.split()[-1] for line in subprocess.run([nm, "--defined-only", str(library)], capture_output=True,
                                                            text=True, check=True).stdout.splitlines()
               if len(line.split()) == 3}
    return listing("-u") - defined


def test_the_core_calls_no_allocator_and_no_os(firmware_build: FirmwareBuild) -> None:
    library = next(firmware_build.build_dir.rglob("libdmskd_core.a"))
    used = external_symbols("nm", library)
    assert used, "nm listed nothing: the check would prove nothing"
    assert not used & set(FORBIDDEN_EXAMPLES)
    assert used <= ALLOWED, sorted(used - ALLOWED)


def test_the_core_links_for_a_cortex_m4f_and_fits_64_kib_of_flash(m4f_report: dict) -> None:
    assert Path(m4f_report["elf"]).is_file() and m4f_report["ed25519"] == "monocypher"
    core = m4f_report["core_with_ed25519"]
    assert 10_000 < core["flash"] < 64 * 1024, core  # more than nothing: the whole core was kept by the link
    assert core["ram"] == 0  # no static state: every buffer is the caller's
    monocypher = m4f_report["groups"]["monocypher"]
    assert monocypher["text"] > 1000  # the Ed25519 check is in the image, not dropped
    frames = m4f_report["largest_stack_frames"]
    assert frames and frames[0]["bytes"] < 2048, frames  # no function of the core needs 2 KiB of stack


def test_the_m4f_objects_are_hard_float_thumb(m4f_report: dict) -> None:
    out = subprocess.run(["arm-none-eabi-readelf", "-A", m4f_report["elf"]], capture_output=True, text=True,
                         check=True).stdout
    assert "Tag_CPU_arch: v7E-M" in out and "Tag_THUMB_ISA_use: Thumb-2" in out, out
    assert "Tag_ABI_VFP_args: VFP registers" in out and "Tag_ABI_HardFP_use: SP only" in out, out
