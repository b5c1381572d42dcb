"""`python -m cloud <verb>`: the cloud side's command line.

  plan      plan a teacher shard for every device of a fleet file, print the plan, write plan.json
  profile   per-prefix FLOPs, params, bytes and TFLite-Micro arena (estimate vs measured)
  aggregate run the aggregator service for a fleet bundle over a broker

Each verb lives in its own module: `add_parser(sub)` registers it with `set_defaults(run=run)`;
add new verbs the same way and list the module in VERBS.
"""

from __future__ import annotations

import argparse
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

VERBS = ("cloud.plan_command", "cloud.profile_command", "cloud.aggregate_command")


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage mistake is one line naming the fix (exit code 2)."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(2, f"error: {message}; see `{self.prog} --help`\n")


def build_parser() -> argparse.ArgumentParser:
    import importlib

    p = _Parser(prog="python -m cloud", description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="verb", required=True, parser_class=_Parser)
    for name in VERBS:
        importlib.import_module(name).add_parser(sub)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return args.run(args)


if __name__ == "__main__":
    sys.exit(main())
