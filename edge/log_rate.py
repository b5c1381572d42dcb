"""How often a repeated complaint is logged: a stranger's flood must not become a flood of log lines."""

from __future__ import annotations

from collections import Counter


def worth_logging(count: int) -> bool:
    """Whether the `count`-th occurrence of one complaint gets a log line: the first 10, then the 100th,
    1,000th, ...: a flood of a million costs 15 lines, each saying how many came before it."""
    if count <= 10:
        return True
    while count % 10 == 0:
        count //= 10
    return count == 1


class LogBudget:
    """Occurrences per complaint kind, and whether this one is worth a log line (`worth_logging`)."""

    def __init__(self) -> None:
        self.counts: Counter[str] = Counter()

    def allows(self, kind: str) -> bool:
        """Count one occurrence of `kind`; True if it should be logged."""
        self.counts[kind] += 1
        return worth_logging(self.counts[kind])
