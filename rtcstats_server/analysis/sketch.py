"""A streaming quantile sketch: p95 of a series without keeping the series.

Values are counted in logarithmic buckets, each ``(1 + a) / (1 - a)`` times wider
than the previous one, so any quantile comes back within relative error ``a`` of a
true sample, whatever the order or number of samples. Memory is one counter per
bucket in use, bounded by the value range (RTTs from 0.1 ms to 100 s at 1% need
under 700), never by the number of samples; ``max_buckets`` caps it for hostile
input by merging the lowest buckets. Deterministic, unlike a random reservoir, so
summaries of the same dump are always equal.
"""

from __future__ import annotations

import math


class QuantileSketch:
    __slots__ = ("_buckets", "_gamma_log", "_zeros", "count", "max_buckets", "maximum", "total")

    def __init__(self, relative_error: float = 0.01, max_buckets: int = 2048) -> None:
        gamma = (1 + relative_error) / (1 - relative_error)
        self._gamma_log = math.log(gamma)
        self._buckets: dict[int, int] = {}
        self._zeros = 0
        self.max_buckets = max_buckets
        self.count = 0
        self.total = 0.0
        self.maximum = -math.inf

    def add(self, value: float) -> None:
        """Record one sample; negatives count as zero (none of our series is negative)."""
        if not math.isfinite(value):
            return
        self.count += 1
        self.total += value
        if value > self.maximum:
            self.maximum = value
        if value <= 0:
            self._zeros += 1
            return
        key = math.ceil(math.log(value) / self._gamma_log)
        self._buckets[key] = self._buckets.get(key, 0) + 1
        if len(self._buckets) > self.max_buckets:
            low = sorted(self._buckets)[:2]
            self._buckets[low[1]] += self._buckets.pop(low[0])

    @property
    def mean(self) -> float | None:
        return self.total / self.count if self.count else None

    def quantile(self, q: float) -> float | None:
        """The value below which a fraction ``q`` of the samples lie (nearest rank)."""
        if not self.count:
            return None
        rank = max(1, math.ceil(q * self.count))
        seen = self._zeros
        if rank <= seen:
            return 0.0
        for key in sorted(self._buckets):
            seen += self._buckets[key]
            if seen >= rank:
                # The bucket (gamma^(k-1), gamma^k] is represented by its middle.
                upper = math.exp(key * self._gamma_log)
                lower = math.exp((key - 1) * self._gamma_log)
                return min(2 * upper * lower / (upper + lower), self.maximum)
        return self.maximum
