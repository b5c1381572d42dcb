"""`python -m cloud <verb>`: the cloud side's command line.

  plan      plan a teacher shard for every device of a fleet file, print the plan, write plan.json
  profile   per-prefix FLOPs, params, bytes and TFLite-Micro arena (estimate vs measured)
  aggregate run the aggregator service for a fleet bundle over a broker
  aggregate-worker  one worker or gateway of a sharded aggregator (aggregate --coordinator-only)
  provision write a fleet's CA, device certificates, signing key, mosquitto config and ACL

Each verb lives in its own module: `add_parser(sub)` registers it with `set_defaults(run=run)`;
add new verbs the same way and list the module in VERBS. Conventions (defaults in --help, one-line
errors, exit 1 for a failed run and 2 for a wrong command line): edge/cli.py.
"""

from __future__ import annotations

import argparse
import os
import sys

from edge.cli import CliParser, add_log_level, configure_logging

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

VERBS = ("cloud.plan_command", "cloud.profile_command", "cloud.aggregate_command", "cloud.worker_command",
         "cloud.provision_command")


def build_parser() -> argparse.ArgumentParser:
    """The `python -m cloud` parser: every verb of VERBS, each with --log-level."""
    import importlib

    p = CliParser(prog="python -m cloud", description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="verb", required=True)
    for name in VERBS:
        importlib.import_module(name).add_parser(sub)
    for verb in sub.choices.values():
        add_log_level(verb)
    return p


def main(argv: list[str] | None = None) -> int:
    """Run the verb; exit codes as in edge.cli (0 done, 1 failed, 2 bad command line)."""
    args = build_parser().parse_args(argv)
    configure_logging(args.log_level)
    code: int = args.run(args)
    return code


if __name__ == "__main__":
    sys.exit(main())
