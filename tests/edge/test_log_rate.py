"""A flood of one complaint costs a handful of log lines, each saying how many came before it."""

from __future__ import annotations

from edge.log_rate import LogBudget, worth_logging


def test_a_flood_of_a_million_of_one_reason_gets_15_log_lines() -> None:
    assert sum(worth_logging(n) for n in range(1, 1_000_001)) == 15
    assert [n for n in range(1, 1_001) if worth_logging(n)] == [*range(1, 11), 100, 1000]


def test_a_budget_counts_each_kind_of_complaint_on_its_own() -> None:
    budget = LogBudget()
    logged = [budget.allows("refused") for _ in range(100)]
    assert sum(logged) == 11 and budget.allows("ignored") and budget.counts == {"refused": 100, "ignored": 1}
