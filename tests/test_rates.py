from __future__ import annotations

import pytest

from gatekeep import Rate, parse_rate, parse_rates


@pytest.mark.parametrize(
    ("spec", "limit", "period_us", "burst"),
    [
        ("100/minute", 100, 60_000_000, 100),
        ("10/second", 10, 1_000_000, 10),
        ("5/2s", 5, 2_000_000, 5),
        ("1000 per hour", 1000, 3_600_000_000, 1000),
        ("10/s burst 20", 10, 1_000_000, 20),
        ("10 / 1.5 seconds", 10, 1_500_000, 10),
        ("3 per 100ms", 3, 100_000, 3),
        ("7/DAY", 7, 86_400_000_000, 7),
        ("  2/m  ", 2, 60_000_000, 2),
    ],
)
def test_parse(spec, limit, period_us, burst):
    rate = parse_rate(spec)
    assert (rate.limit, rate.period_us, rate.burst) == (limit, period_us, burst)
    assert parse_rate(str(rate)) == rate  # str() round-trips


@pytest.mark.parametrize(
    "spec",
    [
        "",
        "10",
        "/s",
        "ten/second",
        "10/parsec",
        "0/s",
        "10/0s",
        "-1/s",
        "10/s burst 0",
        "10/s burst",
        "10/s burst -3",
        "1.5/s",
        "10/0.0001ms",
        "10/367d",
        "10/s 20",
    ],
)
def test_malformed_rates_raise_with_what_is_accepted(spec):
    with pytest.raises(ValueError, match="rate") as info:
        parse_rate(spec)
    assert spec.strip() == "" or repr(spec) in str(info.value) or "Rate" in str(info.value)


def test_error_message_says_what_is_accepted():
    with pytest.raises(ValueError, match=r"'100/minute'.*'10/second burst 20'"):
        parse_rate("100 a minute")


def test_non_string_is_a_type_error():
    with pytest.raises(TypeError):
        parse_rate(100)  # type: ignore[arg-type]


def test_rate_fields():
    rate = Rate(10, 1_000_000)
    assert rate.burst == 10 and not rate.has_burst
    assert rate.period == 1.0
    assert rate.interval_us == 100_000
    # the interval rounds up: refill never outruns the rate
    assert Rate(3, 1_000_000).interval_us == 333_334
    assert Rate.per_second(5, burst=8) == parse_rate("5/s burst 8")


def test_parse_rates_forms():
    assert parse_rates("10/s; 1000/h") == (parse_rate("10/s"), parse_rate("1000/h"))
    assert parse_rates("10/s, 1000/h") == parse_rates(["10/s", Rate(1000, 3_600_000_000)])
    assert parse_rates(Rate(1, 1000)) == (Rate(1, 1000),)
    with pytest.raises(ValueError, match="At least one"):
        parse_rates([])
    with pytest.raises(ValueError, match="Duplicate"):
        parse_rates("10/s; 10/second")
    with pytest.raises(TypeError):
        parse_rates(42)
