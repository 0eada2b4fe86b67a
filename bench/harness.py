"""What every benchmark script shares: the failure that voids a timing, its options' number
types, its report's table and verdicts, and its exit.

The scripts import this module as ``harness``, as they import ``processes``.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from typing import TypeVar

_Result = TypeVar("_Result")


class BenchmarkFailure(Exception):
    """An answer that is not the one expected: the timing would mean nothing."""


def positive(text: str) -> int:
    """A whole number above zero, its thousands set apart by commas or underscores or not."""
    value = int(text.replace(",", "").replace("_", ""))
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value} is not a positive number")
    return value


def positive_float(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"{value} is not a positive number")
    return value


def verdict(passed: bool) -> str:
    return "PASS" if passed else "MISS"


def table(rows: Sequence[tuple[str, str]]) -> str:
    """Names in a column as wide as the longest, each value two spaces after."""
    width = max(len(name) for name, _ in rows)
    return "\n".join(f"{name:<{width}}  {value}".rstrip() for name, value in rows)


def report_or_fail(
    script: str, measure: Callable[[], _Result], report: Callable[[_Result], str]
) -> int:
    """The exit code of `script`: 0 with the report of what `measure` measured printed; 1
    with the failure on stderr when an answer was not the one expected."""
    try:
        result = measure()
    except BenchmarkFailure as failure:
        print(f"{script}: FAILED: {failure}", file=sys.stderr)
        return 1
    print(report(result))
    return 0
