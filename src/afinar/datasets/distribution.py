"""A per-example quantity's distribution (token counts, messages), kept in bounded memory.

``Distribution`` counts values instead of keeping them: one counter per distinct integer below
``EXACT_BELOW`` (65,536) and, above that, one counter per log-spaced bucket of relative width
2^-7 (under 0.8 %). Memory is therefore bounded by the number of buckets (at most 65,536 exact
ones, in practice a few hundred to a few thousand), not by the number of examples.

Precision: ``count``, ``min``, ``max`` and ``mean`` are always exact. The percentiles interpolate
linearly between order statistics, like numpy's default, and are *exact* while every value is
below 65,536 (so for any context length up to 64k tokens); an order statistic that falls in a
log bucket is taken as the bucket's midpoint (clamped to the observed min/max), within 0.4 % of
the true value. Histograms with edges below 65,536 are exact.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence

from afinar.datasets.report import HISTOGRAM_EDGES, HistogramBucket, Stats

EXACT_BELOW = 1 << 16
_MANTISSA_BITS = 7  # log buckets: 2^7 per power of two above EXACT_BELOW


def _bucket(value: int) -> int:
    """The counter key of ``value``: itself when exact, else a negative key naming its log bucket."""
    if value < EXACT_BELOW:
        return value
    shift = value.bit_length() - 1 - _MANTISSA_BITS
    return -((value >> shift) << shift) - 1  # bucket low edge, encoded negative


def _bucket_range(key: int) -> tuple[int, int]:
    """[low, high) of the values that map to ``key``."""
    if key >= 0:
        return key, key + 1
    low = -key - 1
    shift = low.bit_length() - 1 - _MANTISSA_BITS
    return low, low + (1 << shift)


class Distribution:
    """Streaming count/min/max/mean/percentiles/histogram of non-negative integers."""

    def __init__(self) -> None:
        self.count = 0
        self.total = 0
        self.min: int | None = None
        self.max: int | None = None
        self._counts: dict[int, int] = {}

    def add(self, value: int) -> None:
        if value < 0:
            raise ValueError(f"Distribution counts non-negative integers, got {value}")
        self.count += 1
        self.total += value
        if self.min is None or value < self.min:
            self.min = value
        if self.max is None or value > self.max:
            self.max = value
        key = value if value < EXACT_BELOW else _bucket(value)
        counts = self._counts
        counts[key] = counts.get(key, 0) + 1

    def extend(self, values: Iterable[int]) -> Distribution:
        for v in values:
            self.add(v)
        return self

    @property
    def n_buckets(self) -> int:
        return len(self._counts)

    def _sorted_buckets(self) -> list[tuple[int, int, int]]:
        """(low, high, count) in ascending order."""
        out = [(*_bucket_range(key), c) for key, c in self._counts.items()]
        out.sort()
        return out

    def _order_statistics(self, ranks: Sequence[int]) -> list[float]:
        """The values at the given 0-based ranks (ascending ranks) of the sorted data."""
        assert self.min is not None and self.max is not None
        out: list[float] = []
        buckets = self._sorted_buckets()
        seen = 0
        i = 0
        for rank in ranks:
            while seen + buckets[i][2] <= rank:
                seen += buckets[i][2]
                i += 1
            low, high, _ = buckets[i]
            value = float(low) if high == low + 1 else (low + high - 1) / 2
            out.append(min(max(value, float(self.min)), float(self.max)))
        return out

    def percentile(self, q: float) -> float:
        """numpy-style linear interpolation (exact below ``EXACT_BELOW``, see the module docstring)."""
        if not self.count:
            raise ValueError("percentile of no values")
        pos = (self.count - 1) * q / 100.0
        lo = math.floor(pos)
        hi = min(lo + 1, self.count - 1)
        a, b = self._order_statistics([lo, hi])
        return float(a + (b - a) * (pos - lo))

    def stats(self) -> Stats | None:
        if not self.count or self.min is None or self.max is None:
            return None
        return Stats(
            count=self.count,
            min=self.min,
            max=self.max,
            mean=self.total / self.count,
            p10=self.percentile(10),
            p90=self.percentile(90),
        )

    def histogram(self, edges: Sequence[int] = HISTOGRAM_EDGES) -> tuple[HistogramBucket, ...]:
        """Counts per ``[edge_i, edge_i+1)``; exact for edges below ``EXACT_BELOW``."""
        counts = [0] * (len(edges) + 1)
        for low, _high, c in self._sorted_buckets():
            i = 0
            while i < len(edges) and low >= edges[i]:
                i += 1
            counts[i] += c
        lows = (0, *edges)
        highs: tuple[int | None, ...] = (*edges, None)
        return tuple(HistogramBucket(lo, hi, c) for lo, hi, c in zip(lows, highs, counts, strict=True))
