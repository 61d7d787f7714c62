"""Robust statistics for benchmarks: medians, quartiles and ratios.

Why medians and not means: timings on a shared machine have a long right
tail (another tenant's burst, a page-fault storm, the kernel cleaning up a
network namespace). One slow trial drags the mean; the median and the
quartiles barely move. So the spread is given as the interquartile range
(p25-p75) and the median absolute deviation (MAD), robust in the same way.

This module is pure arithmetic over lists of numbers, so tests can check it
on known data exactly.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

from labsupport.kernel.errors import LabError


def percentile(values: Sequence[float], q: float) -> float:
    """The ``q``-th percentile (0-100), interpolating linearly between closest ranks.

    The same rule as numpy's default and ``statistics.quantiles(method="inclusive")``,
    written out because the latter refuses a single value before Python 3.13.
    """
    if not values:
        raise LabError("There are no samples to summarise: run at least one round.")
    if not 0 <= q <= 100:
        raise LabError(f"A percentile must lie between 0 and 100, not {q}.")
    ordered = sorted(values)
    position = (len(ordered) - 1) * q / 100
    low = math.floor(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def median(values: Sequence[float]) -> float:
    return percentile(values, 50)


@dataclass(frozen=True)
class Summary:
    """One peer's samples in seven numbers."""

    n: int
    median: float
    p25: float
    p75: float
    mad: float  # median of |x - median|: half the samples lie within median +- MAD
    min: float
    max: float

    @property
    def iqr(self) -> float:
        return self.p75 - self.p25


def summarize(values: Sequence[float]) -> Summary:
    middle = median(values)
    return Summary(
        n=len(values), median=middle, p25=percentile(values, 25), p75=percentile(values, 75),
        mad=median([abs(v - middle) for v in values]), min=min(values), max=max(values))


@dataclass(frozen=True)
class Ratio:
    """How many times ``peer`` costs its ``baseline``: the ratio of their medians.

    The quartiles come from the per-round ratios. Every round runs every
    peer once, so round ``i`` of one peer and round ``i`` of another met the
    same moment of the machine's noise: pairing them shows how steady the
    ratio is, which two separate spreads cannot.
    """

    value: float
    p25: float
    p75: float


def ratio(samples: Sequence[float], baseline: Sequence[float]) -> Ratio:
    """``median(samples) / median(baseline)``, with the quartiles of the per-round ratios."""
    if len(samples) != len(baseline):
        raise LabError(f"Ratios pair rounds, but one peer has {len(samples)} samples "
                       f"and its baseline {len(baseline)}.")
    if median(baseline) <= 0 or min(baseline) <= 0:
        raise LabError("A ratio needs a baseline measured above zero in every round.")
    per_round = [s / b for s, b in zip(samples, baseline)]
    return Ratio(median(samples) / median(baseline), percentile(per_round, 25),
                 percentile(per_round, 75))
