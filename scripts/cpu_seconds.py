"""Run a command and print the CPU seconds (user + system) it and its children used, beside the wall seconds.

A load-robust cost figure for A/B runs on a shared machine, where wall-clock rounds vary by 1.5x:
`python scripts/cpu_seconds.py -- python -m simulator run --devices 1000 --rounds 3 --broker mosquitto
--device-sampling pool --run-dir /tmp/ab` (remove the run dir between runs: a finished one is resumed).
"""

from __future__ import annotations

import resource
import subprocess
import sys
import time


def main(argv: list[str]) -> int:
    """Run argv (after an optional `--`); print `cpu=<s> wall=<s> rc=<code>`; exit with its exit code."""
    command = argv[1:] if argv[:1] == ["--"] else argv
    if not command:
        print("usage: python scripts/cpu_seconds.py -- COMMAND [ARGS...]", file=sys.stderr)
        return 2
    started = time.monotonic()
    rc = subprocess.run(command, stdout=subprocess.DEVNULL).returncode
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    print(f"cpu={usage.ru_utime + usage.ru_stime:.1f}s wall={time.monotonic() - started:.1f}s rc={rc}")
    return rc


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
