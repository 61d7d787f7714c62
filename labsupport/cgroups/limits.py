"""Turn what a learner types - "512M", "20%", "8mbit" - into the numbers the kernel wants.

Each cgroup file wants its own unit: bytes for memory, microseconds of CPU
time per period for a quota, bytes per second for a disk, bits per second for
a link. The lab lets the learner write limits the way Docker's flags do and
converts here, in one place, so a typo gets one plain sentence ("'12 parsecs'
is not a size ...") before anything is written to the kernel.

Units follow the tools the learner will meet later: sizes and disk rates are
binary (``512M`` is 512 MiB, as in ``docker run --memory 512m``); link rates
are decimal bits (``8mbit`` is 8,000,000 bit/s, as in ``tc``).
"""
from __future__ import annotations

import re
from typing import Optional, Union

from labsupport.kernel.errors import LabError

Number = Union[int, float]

_BINARY = {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}
_DECIMAL_BITS = {"bit": 1, "kbit": 10 ** 3, "mbit": 10 ** 6, "gbit": 10 ** 9}
# A number, then an optional unit: "512M", "1.5 GiB", "64k", "10MB/s", "8mbit".
_AMOUNT = re.compile(r"^\s*(?P<num>[-+]?\d+(?:\.\d+)?)\s*(?P<unit>[a-z/]*)\s*$", re.IGNORECASE)

#: The words that lift a limit again, as the v2 files spell it.
UNLIMITED = ("max", "unlimited", "none")

#: cgroup v2's cpu.weight range; v1's cpu.shares is converted from it.
WEIGHT_MIN, WEIGHT_MAX, WEIGHT_DEFAULT = 1, 10000, 100


def _split(text: str, what: str, example: str) -> tuple[float, str]:
    """'512M' -> (512.0, 'm'); a clear sentence for anything else."""
    match = _AMOUNT.match(text)
    if not match:
        raise LabError(f"{text!r} is not {what}: write a number with an optional unit, e.g. {example}.")
    number = float(match.group("num"))
    if number < 0:
        raise LabError(f"{what.capitalize()} cannot be negative ({text!r}): give e.g. {example}.")
    return number, match.group("unit").lower()


def _is_unlimited(value: object) -> bool:
    return value is None or (isinstance(value, str) and value.strip().lower() in UNLIMITED)


def parse_size(value: Union[str, Number, None]) -> Optional[int]:
    """Bytes from '512M', '1.5G', '64k', '4096' or 4096; None for 'max' (no limit)."""
    if _is_unlimited(value):
        return None
    if isinstance(value, bool):
        raise LabError(f"{value!r} is not a size: give e.g. 512M.")
    number, unit = _split(str(value), "a size", "512M")
    unit = unit.removesuffix("ib").removesuffix("b")
    if unit not in _BINARY:
        raise LabError(f"{value!r} is not a size: the unit must be K, M, G or T (e.g. 512M).")
    size = int(number * _BINARY[unit])
    if size == 0:
        raise LabError(f"A size of {value!r} would allow nothing at all: give e.g. 512M.")
    return size


def parse_rate(value: Union[str, Number, None]) -> Optional[int]:
    """Bytes per second for a disk from '10M', '10MB/s', '512k'; None for 'max'."""
    if isinstance(value, str) and not _is_unlimited(value):
        value = re.sub(r"(?i)\s*(/s|ps)$", "", value.strip())
    try:
        return parse_size(value)
    except LabError:
        raise LabError(f"{value!r} is not a disk rate: write bytes per second with K, M or G, "
                       "e.g. 10M for 10 MiB/s.") from None


def parse_bitrate(value: Union[str, Number]) -> int:
    """Bits per second for a link, tc style: '8mbit', '800kbit', '1gbit', or a plain number."""
    if isinstance(value, bool) or _is_unlimited(value):
        raise LabError(f"{value!r} is not a link rate: give e.g. 8mbit.")
    number, unit = _split(str(value), "a link rate", "8mbit")
    unit = unit or "bit"
    if unit not in _DECIMAL_BITS:
        raise LabError(f"{value!r} is not a link rate: the unit must be bit, kbit, mbit or gbit "
                       "(e.g. 8mbit).")
    rate = int(number * _DECIMAL_BITS[unit])
    if rate < 8000:
        raise LabError(f"A link rate of {value!r} is too slow to measure: give at least 8kbit.")
    return rate


def parse_cpu(value: Union[str, Number, None]) -> Optional[float]:
    """Share of one core as a fraction: '20%' -> 0.2, 1.5 -> 1.5 cores; None for 'max'.

    A quota above 100% lets a group use several cores at once.
    """
    if _is_unlimited(value):
        return None
    if isinstance(value, bool):
        raise LabError(f"{value!r} is not a CPU share: give e.g. 20% or 0.5 (cores).")
    text = str(value).strip()
    percent = text.endswith("%")
    number, unit = _split(text.removesuffix("%"), "a CPU share", "20% or 0.5 (cores)")
    if unit not in ("", "core", "cores", "cpu", "cpus"):
        raise LabError(f"{value!r} is not a CPU share: give a percentage of one core (20%) "
                       "or a number of cores (0.5).")
    fraction = number / 100 if percent else number
    if fraction < 0.01:
        raise LabError(f"A CPU share of {value!r} is below 1% of a core, the least the "
                       "scheduler honours here: give e.g. 20%.")
    return fraction


def parse_weight(value: Union[str, Number]) -> int:
    """A relative CPU weight in cgroup v2's range 1..10000 (100 is the default)."""
    if isinstance(value, bool):
        raise LabError(f"{value!r} is not a CPU weight: give a whole number from 1 to 10000.")
    try:
        weight = int(str(value).strip())
    except ValueError:
        raise LabError(f"{value!r} is not a CPU weight: give a whole number from 1 to 10000 "
                       "(100 is the default).") from None
    if not WEIGHT_MIN <= weight <= WEIGHT_MAX:
        raise LabError(f"A CPU weight must lie between 1 and 10000 (100 is the default), "
                       f"not {weight}.")
    return weight


def parse_count(value: Union[str, int, None], what: str = "a process count") -> Optional[int]:
    """A positive whole number such as a pids maximum; None for 'max'."""
    if _is_unlimited(value):
        return None
    if isinstance(value, bool):
        raise LabError(f"{value!r} is not {what}: give a whole number such as 20.")
    try:
        count = int(str(value).strip())
    except ValueError:
        raise LabError(f"{value!r} is not {what}: give a whole number such as 20.") from None
    if count < 1:
        raise LabError(f"{what.capitalize()} must be at least 1, not {count}.")
    return count


def weight_to_shares(weight: int) -> int:
    """cgroup v1's cpu.shares for a v2 weight: 100 (v2's default) -> 1024 (v1's default)."""
    return max(2, round(weight * 1024 / WEIGHT_DEFAULT))


def shares_to_weight(shares: int) -> int:
    """cgroup v2's cpu.weight for v1 shares (2..262144 -> 1..10000): the formula runc and systemd use."""
    return max(1, min(10000, 1 + (shares - 2) * 9999 // 262142))


def human_size(size: Optional[int]) -> str:
    """4194304 -> '4.0 MiB'; None -> 'no limit'."""
    if size is None:
        return "no limit"
    for unit, factor in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if size >= factor:
            return f"{size / factor:.1f} {unit}"
    return f"{size} B"
