"""What validating a training file found: problems, counts and per-example statistics.

Pure data (frozen dataclasses) plus the small statistics helpers that fill them. Every type has
``to_dict()`` returning plain JSON-serialisable values, so a report can be stored next to the
file, returned by an API extension or printed by the CLI.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

# Upper edges (exclusive) of the per-example token histogram; the last bucket is open-ended.
HISTOGRAM_EDGES: tuple[int, ...] = (128, 512, 2048, 8192, 32768)

FILE_LEVEL = 0  # ``Problem.example`` for a problem about the whole file, not one line


@dataclass(frozen=True)
class Problem:
    """One error or warning. ``example`` is the 1-based line number (0: the whole file)."""

    example: int
    message_index: int | None  # 1-based index into the example's messages, where one applies
    code: str
    message: str  # full sentence with its locator, e.g. "Example 4, message 2: ..."

    def to_dict(self) -> dict[str, Any]:
        return {
            "example": self.example,
            "message_index": self.message_index,
            "code": self.code,
            "message": self.message,
        }


@dataclass(frozen=True)
class Stats:
    """Distribution of one per-example quantity (percentiles interpolate linearly, like numpy)."""

    count: int
    min: int
    max: int
    mean: float
    p10: float
    p90: float

    @classmethod
    def of(cls, values: Sequence[int] | Iterable[int]) -> Stats | None:
        data = sorted(values)
        if not data:
            return None
        return cls(
            count=len(data),
            min=data[0],
            max=data[-1],
            mean=sum(data) / len(data),
            p10=percentile(data, 10),
            p90=percentile(data, 90),
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "count": self.count,
            "min": self.min,
            "max": self.max,
            "mean": self.mean,
            "p10": self.p10,
            "p90": self.p90,
        }


@dataclass(frozen=True)
class HistogramBucket:
    """Examples whose token count ``n`` satisfies ``low <= n < high`` (``high`` None: no bound)."""

    low: int
    high: int | None
    count: int

    def to_dict(self) -> dict[str, Any]:
        return {"low": self.low, "high": self.high, "count": self.count}


def percentile(sorted_values: Sequence[int], q: float) -> float:
    """The q-th percentile of already sorted values, with numpy's default linear interpolation."""
    if not sorted_values:
        raise ValueError("percentile of no values")
    pos = (len(sorted_values) - 1) * q / 100.0
    lo = math.floor(pos)
    hi = min(lo + 1, len(sorted_values) - 1)
    frac = pos - lo
    return float(sorted_values[lo] + (sorted_values[hi] - sorted_values[lo]) * frac)


def histogram(values: Iterable[int], edges: Sequence[int] = HISTOGRAM_EDGES) -> tuple[HistogramBucket, ...]:
    counts = [0] * (len(edges) + 1)
    for v in values:
        i = 0
        while i < len(edges) and v >= edges[i]:
            i += 1
        counts[i] += 1
    lows = (0, *edges)
    highs: tuple[int | None, ...] = (*edges, None)
    return tuple(HistogramBucket(lo, hi, c) for lo, hi, c in zip(lows, highs, counts, strict=True))


@dataclass(frozen=True)
class ValidationReport:
    """The result of ``validate_file``.

    ``errors``/``warnings`` keep at most ``max_problems`` entries each, in file order;
    ``n_errors_total``/``n_warnings_total`` and ``error_counts``/``warning_counts`` (per code)
    count all of them. Token fields are None unless a tokenizer was given; they cover the examples
    without errors (``n_tokenized`` of them). ``total_tokens`` is before truncation,
    ``billable_tokens_per_epoch`` after truncation to ``context_length`` and ``trained_tokens``
    is the assistant (weight 1) tokens that survive truncation.
    """

    method: str
    format: str  # "chat" | "preference" | "unknown"
    n_examples: int  # non-blank lines
    errors: tuple[Problem, ...]
    warnings: tuple[Problem, ...]
    n_errors_total: int
    n_warnings_total: int
    error_counts: Mapping[str, int] = field(default_factory=dict)
    warning_counts: Mapping[str, int] = field(default_factory=dict)
    messages_per_example: Stats | None = None
    context_length: int | None = None
    n_tokenized: int | None = None
    total_tokens: int | None = None
    trained_tokens: int | None = None
    billable_tokens_per_epoch: int | None = None
    n_truncated: int | None = None
    truncated_tokens: int | None = None
    tokens_per_example: Stats | None = None
    trained_tokens_per_example: Stats | None = None
    token_histogram: tuple[HistogramBucket, ...] = ()

    @property
    def ok(self) -> bool:
        return self.n_errors_total == 0

    @property
    def has_token_counts(self) -> bool:
        return self.total_tokens is not None

    def to_dict(self) -> dict[str, Any]:
        return {
            "method": self.method,
            "format": self.format,
            "n_examples": self.n_examples,
            "errors": [p.to_dict() for p in self.errors],
            "warnings": [p.to_dict() for p in self.warnings],
            "n_errors_total": self.n_errors_total,
            "n_warnings_total": self.n_warnings_total,
            "error_counts": dict(self.error_counts),
            "warning_counts": dict(self.warning_counts),
            "messages_per_example": _opt(self.messages_per_example),
            "context_length": self.context_length,
            "n_tokenized": self.n_tokenized,
            "total_tokens": self.total_tokens,
            "trained_tokens": self.trained_tokens,
            "billable_tokens_per_epoch": self.billable_tokens_per_epoch,
            "n_truncated": self.n_truncated,
            "truncated_tokens": self.truncated_tokens,
            "tokens_per_example": _opt(self.tokens_per_example),
            "trained_tokens_per_example": _opt(self.trained_tokens_per_example),
            "token_histogram": [b.to_dict() for b in self.token_histogram],
        }


def _opt(stats: Stats | None) -> dict[str, Any] | None:
    return stats.to_dict() if stats is not None else None
