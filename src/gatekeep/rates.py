"""Rates: ``"100/minute"``, ``"10/second burst 20"``, ``"5/2s"``, ``"1000 per hour"``.

A :class:`Rate` is immutable and hashable; parsing is cached, so passing the same
string on every request costs a dictionary lookup.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from functools import lru_cache

__all__ = ["Rate", "parse_rate", "parse_rates"]

_UNITS_US: dict[str, int] = {}
for _names, _us in (
    (("us", "µs", "microsecond", "microseconds"), 1),
    (("ms", "msec", "millisecond", "milliseconds"), 1_000),
    (("s", "sec", "secs", "second", "seconds"), 1_000_000),
    (("m", "min", "mins", "minute", "minutes"), 60_000_000),
    (("h", "hr", "hrs", "hour", "hours"), 3_600_000_000),
    (("d", "day", "days"), 86_400_000_000),
    (("w", "week", "weeks"), 604_800_000_000),
):
    for _name in _names:
        _UNITS_US[_name] = _us

_RATE_RE = re.compile(
    r"""^\s*
    (?P<limit>\d+)\s*
    (?:/|\bper\b)\s*
    (?P<count>\d+(?:\.\d+)?)?\s*
    (?P<unit>[a-zµ]+)\s*
    (?:\bburst\b\s*(?P<burst>\d+))?
    \s*$""",
    re.VERBOSE | re.IGNORECASE,
)

_ACCEPTED = (
    "expected '<limit>/<period>' or '<limit> per <period>', optionally followed by "
    "'burst <n>', where <period> is a unit (ms, second, minute, hour, day, week; "
    "short forms s, m, h, d) optionally preceded by a count, e.g. '100/minute', "
    "'10/second burst 20', '5/2s', '1000 per hour'"
)

# The longest period a rate may have: keys must expire, and the arithmetic stays
# exact in 53-bit floats (Lua numbers) for any realistic limit.
_MAX_PERIOD_US = 366 * 86_400_000_000
_MAX_LIMIT = 1_000_000_000


@dataclass(frozen=True, slots=True)
class Rate:
    """``limit`` requests per ``period`` seconds, with an optional ``burst``.

    >>> Rate.parse("10/second burst 20")
    Rate('10/1s burst 20')

    ``burst`` is the capacity of the token bucket and GCRA (how many requests may
    arrive at once); it defaults to ``limit``. The window algorithms admit
    ``limit`` per window and reject an explicit burst.
    """

    limit: int
    period_us: int
    burst: int = 0
    #: Whole microseconds per token, rounded up: refill never exceeds the rate.
    interval_us: int = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if isinstance(self.limit, bool) or not isinstance(self.limit, int):
            raise TypeError(f"Rate limit must be an int, not {type(self.limit).__name__}")
        if not 1 <= self.limit <= _MAX_LIMIT:
            raise ValueError(f"Rate limit must be between 1 and {_MAX_LIMIT}, got {self.limit}")
        if not isinstance(self.period_us, int) or isinstance(self.period_us, bool):
            raise TypeError("Rate period_us must be an int (microseconds)")
        if not 1_000 <= self.period_us <= _MAX_PERIOD_US:
            raise ValueError(
                f"Rate period must be between 1 millisecond and 366 days, got {self.period_us} µs"
            )
        burst = self.burst or self.limit
        if isinstance(burst, bool) or not isinstance(burst, int) or not 1 <= burst <= _MAX_LIMIT:
            raise ValueError(f"Rate burst must be an int between 1 and {_MAX_LIMIT}, got {burst}")
        object.__setattr__(self, "burst", burst)
        object.__setattr__(self, "interval_us", math.ceil(self.period_us / self.limit))

    @classmethod
    def parse(cls, spec: str | Rate) -> Rate:
        """Parse a rate string; a ``Rate`` is returned as it is."""
        return parse_rate(spec)

    @classmethod
    def per_second(cls, limit: int, *, burst: int = 0) -> Rate:
        return cls(limit, 1_000_000, burst)

    @property
    def period(self) -> float:
        """The period in seconds."""
        return self.period_us / 1_000_000

    @property
    def has_burst(self) -> bool:
        return self.burst != self.limit

    def __str__(self) -> str:
        period = _format_period(self.period_us)
        text = f"{self.limit}/{period}"
        return f"{text} burst {self.burst}" if self.has_burst else text

    def __repr__(self) -> str:
        return f"Rate({str(self)!r})"


def _format_period(us: int) -> str:
    for unit, size in (
        ("d", 86_400_000_000),
        ("h", 3_600_000_000),
        ("m", 60_000_000),
        ("s", 1_000_000),
        ("ms", 1_000),
    ):
        if us % size == 0:
            return f"{us // size}{unit}"
    return f"{us}us"


@lru_cache(maxsize=1024)
def _parse_str(spec: str) -> Rate:
    match = _RATE_RE.match(spec)
    if match is None:
        raise ValueError(f"Malformed rate {spec!r}: {_ACCEPTED}")
    unit = match["unit"].lower()
    if unit not in _UNITS_US:
        raise ValueError(f"Malformed rate {spec!r}: unknown unit {match['unit']!r}; {_ACCEPTED}")
    count = float(match["count"]) if match["count"] else 1.0
    period_us = round(count * _UNITS_US[unit])
    if count <= 0 or period_us != count * _UNITS_US[unit]:
        raise ValueError(
            f"Malformed rate {spec!r}: the period must be a positive whole number of microseconds"
        )
    burst = int(match["burst"]) if match["burst"] else 0
    if match["burst"] and burst < 1:
        raise ValueError(f"Malformed rate {spec!r}: burst must be at least 1")
    try:
        return Rate(int(match["limit"]), period_us, burst)
    except ValueError as exc:
        raise ValueError(f"Malformed rate {spec!r}: {exc}") from None


def parse_rate(spec: str | Rate) -> Rate:
    """Parse one rate. Raises ``ValueError`` saying what is accepted."""
    if isinstance(spec, Rate):
        return spec
    if not isinstance(spec, str):
        raise TypeError(
            f"A rate is a string like '100/minute' or a Rate, not {type(spec).__name__}"
        )
    return _parse_str(spec)


def parse_rates(specs: str | Rate | object) -> tuple[Rate, ...]:
    """Parse one or several rates.

    Accepts a ``Rate``, a string (several separated by ``;`` or ``,``), or an
    iterable of either. Duplicates are rejected, an empty list too.
    """
    if isinstance(specs, Rate):
        return (specs,)
    if isinstance(specs, str):
        parts: list[str | Rate] = [p for p in re.split(r"[;,]", specs) if p.strip()]
    else:
        try:
            parts = list(specs)  # type: ignore[call-overload]
        except TypeError:
            raise TypeError(
                "limits must be a rate string, a Rate, or a list of them, "
                f"not {type(specs).__name__}"
            ) from None
    rates = tuple(parse_rate(p) for p in parts)
    if not rates:
        raise ValueError("At least one rate is needed, e.g. '100/minute'")
    if len(set(rates)) != len(rates):
        raise ValueError(f"Duplicate rates in {specs!r}")
    return rates
