"""The one command-line convention of every package (`python -m edge|cloud|export|simulator`).

Every parser is a `CliParser`: `--help` shows each option's default, and a usage mistake is one
line on stderr, `error: <what is wrong>; see `<prog> --help``, with exit code 2.

Exit codes, the same in every package:
  0  EXIT_OK       the command did what it was asked.
  1  EXIT_FAILURE  the command line was well formed but the run failed: an input file missing or
                   malformed, no broker answering, nothing fits, a runtime failure. `fail(msg)`.
  2  EXIT_USAGE    the command line itself is wrong: an unknown flag, a missing required flag, a
                   value out of range, flags that contradict each other. argparse (through
                   `CliParser.error`, helped by the value types below) or `usage(msg)`.
  The test: 2 when the command line alone shows the mistake; 1 once a file, the broker or the data
  had to be consulted (a path that is missing or of the wrong kind, a split the data cannot give).
Messages go to stderr, start with `error: ` and name the fix. Routine progress is logged at
INFO under the `dmskd` logger; `configure_logging` sets that level (default INFO, `--log-level`).

This module is part of `edge`: standard library and `edge` only, so every package may use it.
"""

from __future__ import annotations

import argparse
import logging
import math
import re
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, NoReturn

from edge.broker_address import parse_broker_url

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_USAGE = 2
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")
LOG_FORMAT = "%(asctime)s %(name)s %(levelname)s %(message)s"
SEED_MAX = 2**32 - 1
NAME_PATTERN = r"[A-Za-z0-9][A-Za-z0-9_.\-]*"  # a fleet, device or shard name: one MQTT topic level, an ACL user


class DefaultsHelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Appends `(default: X)` to options that take a value and have a default; not to on/off flags."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        if action.required or action.default is None or action.nargs == 0:
            return action.help
        return super()._get_help_string(action)


class CliParser(argparse.ArgumentParser):
    """argparse with defaults in `--help` and one-line usage errors (exit code 2); subparsers alike."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("formatter_class", DefaultsHelpFormatter)
        super().__init__(*args, **kwargs)

    def error(self, message: str) -> NoReturn:
        """Print `error: <message>; see `<prog> --help`` to stderr and exit 2."""
        self.exit(EXIT_USAGE, f"error: {message}; see `{self.prog} --help`\n")


def fail(message: str) -> int:
    """Report a failed run (`error: <message>` on stderr) and return EXIT_FAILURE (1)."""
    print(f"error: {message}", file=sys.stderr)
    return EXIT_FAILURE


def usage(message: str) -> int:
    """Report a wrong command line found after parsing (`error: <message>` on stderr); return EXIT_USAGE (2)."""
    print(f"error: {message}", file=sys.stderr)
    return EXIT_USAGE


def add_log_level(parser: argparse.ArgumentParser) -> None:
    """Add `--log-level` (default INFO) to a verb's parser."""
    parser.add_argument("--log-level", choices=LOG_LEVELS, default="INFO", type=str.upper,
                        help="level of the dmskd loggers; routine round progress is INFO")


def configure_logging(level: str = "INFO") -> None:
    """Log to stderr: the `dmskd` loggers at `level`, third-party libraries at WARNING."""
    logging.basicConfig(level=logging.WARNING, format=LOG_FORMAT)
    logging.getLogger("dmskd").setLevel(level)


def positive_int(text: str) -> int:
    """argparse type: an integer >= 1."""
    value = _int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {text}")
    return value


def seed_int(text: str) -> int:
    """argparse type: a random seed, an integer in 0..2**32 - 1 (what numpy and TensorFlow accept)."""
    value = _int(text)
    if not 0 <= value <= SEED_MAX:
        raise argparse.ArgumentTypeError(f"must be an integer in 0..{SEED_MAX}, got {text}")
    return value


def positive_float(text: str) -> float:
    """argparse type: a finite number > 0."""
    value = _float(text)
    if not (value > 0 and math.isfinite(value)):
        raise argparse.ArgumentTypeError(f"must be positive and finite, got {text}")
    return value


def non_negative_float(text: str) -> float:
    """argparse type: a finite number >= 0."""
    value = _float(text)
    if not (value >= 0 and math.isfinite(value)):
        raise argparse.ArgumentTypeError(f"must be >= 0 and finite, got {text}")
    return value


def probability(text: str) -> float:
    """argparse type: a number strictly between 0 and 1 (a DP delta)."""
    value = _float(text)
    if not 0 < value < 1:
        raise argparse.ArgumentTypeError(f"must be between 0 and 1 (exclusive), got {text}")
    return value


def float_between(low: float, high: float) -> Callable[[str], float]:
    """argparse type factory: a number in [low, high]."""

    def parse(text: str) -> float:
        value = _float(text)
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"must be between {low:g} and {high:g}, got {text}")
        return value

    parse.__name__ = f"number in [{low:g}, {high:g}]"
    return parse


def positive_int_list(text: str) -> list[int]:
    """argparse type: comma-separated integers >= 1, such as `10,100,1000`."""
    try:
        values = [int(part) for part in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers such as 10,100,1000, "
                                         f"got {text!r}") from None
    if min(values) < 1:
        raise argparse.ArgumentTypeError(f"every value must be at least 1, got {text!r}")
    return values


def topic_name(text: str) -> str:
    """argparse type: a fleet or device name, which becomes one level of the MQTT topics dmskd/<fleet>/..."""
    if not re.fullmatch(NAME_PATTERN, text):
        raise argparse.ArgumentTypeError(f"{text!r} must be letters, digits, '-', '_' or '.', starting with a letter "
                                         f"or digit (it names MQTT topics)")
    return text


def output_path_problem(path: Path, flag: str, directory: bool) -> str | None:
    """Why `path` cannot be written as the directory (or file) `flag` names, or None: the path itself or a
    parent of it is of the wrong kind. Checked before a run spends minutes on a result it cannot write."""
    path = Path(path)
    if path.exists():
        if directory and not path.is_dir():
            return f"{flag} {path} is a file; pass a directory"
        if not directory and path.is_dir():
            return f"{flag} {path} is a directory; pass a file path"
        return None
    for parent in path.parents:
        if parent.exists():
            if not parent.is_dir():
                return f"{flag} {path}: {parent} is a file, not a directory; pass a path outside it"
            return None
    return None


def broker_address(text: str) -> str:
    """argparse type: a broker address `host:port` or `mqtt://host:port`, checked and returned as typed."""
    try:
        parse_broker_url(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return text


def _int(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None


def _float(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
