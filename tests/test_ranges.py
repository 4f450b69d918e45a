"""The sweeps' range grammar (README, `bench sweep`): every form, every error, and
properties over random input."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given, settings, strategies as st

from bench.ranges import (
    ACCEPTED_FORMS,
    MAX_VALUES,
    DurationError,
    RangeError,
    parse_choices,
    parse_duration,
    parse_range,
)

# Deterministic property tests: the same examples on every run and every machine.
props = settings(derandomize=True, max_examples=60, deadline=None)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("50..2000", [50, 100, 200, 500, 1000, 2000]),  # the default sweep's sizes
        ("1..8", [1, 2, 5]),
        ("1..10", [1, 2, 5, 10]),
        (
            "3..1000000",
            [
                5,
                10,
                20,
                50,
                100,
                200,
                500,
                1000,
                2000,
                5000,
                10**4,
                2 * 10**4,
                5 * 10**4,
                10**5,
                2 * 10**5,
                5 * 10**5,
                10**6,
            ],
        ),
    ],
)
def test_series_125(text: str, expected: list[int]) -> None:
    assert parse_range(text) == expected


def test_series_bounds_are_inclusive_and_not_added() -> None:
    assert parse_range("100..1000") == [100, 200, 500, 1000]
    assert parse_range("150..600") == [200, 500]  # bounds themselves are not in the series
    assert parse_range("5..5") == [5]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("100..1000:100", [100, 200, 300, 400, 500, 600, 700, 800, 900, 1000]),
        ("1..10:3", [1, 4, 7, 10]),
        ("1..9:3", [1, 4, 7]),  # upper bound included only when hit
        ("7..7:5", [7]),
        ("1..4:100", [1]),
    ],
)
def test_linear(text: str, expected: list[int]) -> None:
    assert parse_range(text) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("1..64:x2", [1, 2, 4, 8, 16, 32, 64]),
        ("1..100:X10", [1, 10, 100]),
        ("1..10:x1.5", [1, 2, 3, 5, 8]),  # 1, 1.5, 2.25, 3.375, 5.06, 7.59 rounded
        ("1..3:x1.1", [1, 2, 3]),  # rounding duplicates removed
        ("3..3:x2", [3]),
    ],
)
def test_geometric(text: str, expected: list[int]) -> None:
    assert parse_range(text) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("50,100,500", [50, 100, 500]),
        ("500, 50 ,100", [50, 100, 500]),
        ("4,4,4", [4]),
        ("1e3", [1000]),
        ("1,2,10..40:10", [1, 2, 10, 20, 30, 40]),
        ("10..40:10,1,2,20", [1, 2, 10, 20, 30, 40]),
        ("50..2000,750", [50, 100, 200, 500, 750, 1000, 2000]),
        ("1..64:x2,1..8", [1, 2, 4, 5, 8, 16, 32, 64]),
    ],
)
def test_lists_and_mixes_are_sorted_and_unique(text: str, expected: list[int]) -> None:
    assert parse_range(text) == expected


def test_integer_results_are_ints() -> None:
    assert all(type(v) is int for v in parse_range("1..64:x1.5,1e2"))


def test_float_ranges_are_exact() -> None:
    assert parse_range("0.1..0.5:0.1", integer=False, minimum=None) == [0.1, 0.2, 0.3, 0.4, 0.5]
    assert parse_range("0.05..2", integer=False, minimum=None) == [0.05, 0.1, 0.2, 0.5, 1, 2]
    assert parse_range("0.1..1:x2", integer=False, minimum=None) == [0.1, 0.2, 0.4, 0.8]
    assert parse_range("-2..2:2", integer=False, minimum=None) == [-2, 0, 2]
    assert all(type(v) is float for v in parse_range("1,2", integer=False))


def test_limit_is_inclusive() -> None:
    assert len(parse_range(f"1..{MAX_VALUES}:1")) == MAX_VALUES
    with pytest.raises(RangeError, match="more than the limit"):
        parse_range(f"1..{MAX_VALUES + 1}:1")


def test_limit_applies_to_the_union() -> None:
    with pytest.raises(RangeError, match="1001 values"):
        parse_range("1..1000:1,2000")


def test_the_briefs_example_message_verbatim() -> None:
    with pytest.raises(RangeError) as info:
        parse_range("0..10:0")
    assert str(info.value) == (
        "--batch-sizes: '0..10:0': step must be > 0; accepted forms: 50..2000 (1-2-5 series), "
        "100..1000:100 (linear), 1..64:x2 (geometric), 50,100,500 (list)"
    )
    assert isinstance(info.value, ValueError)
    assert (info.value.option, info.value.part) == ("--batch-sizes", "0..10:0")


@pytest.mark.parametrize(
    ("text", "part", "problem"),
    [
        ("", "", "no values given"),
        ("  ", "  ", "no values given"),
        ("1,,2", "1,,2", "empty item"),
        ("5,", "5,", "empty item"),
        ("10..1", "10..1", "empty range"),
        ("10..1:1", "10..1:1", "empty range"),
        ("10..1:x2", "10..1:x2", "empty range"),
        ("60..90", "60..90", "no 1-2-5 series value"),
        ("1..10:0", "1..10:0", "step must be > 0"),
        ("1..10:-2", "1..10:-2", "step must be > 0"),
        ("1..64:x1", "1..64:x1", "factor must be > 1"),
        ("1..64:x0.5", "1..64:x0.5", "factor must be > 1"),
        ("1..64:x", "1..64:x", "factor '' is not a number"),
        ("abc", "abc", "not a number"),
        ("1,two,3", "two", "not a number"),
        ("a..10", "a..10", "lower bound 'a' is not a number"),
        ("1..b", "1..b", "upper bound 'b' is not a number"),
        ("1..10:s", "1..10:s", "step 's' is not a number"),
        ("nan", "nan", "not a finite number"),
        ("1..inf", "1..inf", "not a finite number"),
        ("1.5", "1.5", "not an integer"),
        ("1..10:0.5", "1..10:0.5", "step '0.5' is not an integer"),
        ("..10", "..10", "exactly two bounds"),
        ("1..", "1..", "exactly two bounds"),
        ("1..2..3", "1..2..3", "exactly two bounds"),
        ("1...5", "1...5", "two dots"),
        ("0", "0", "below the minimum 1"),
        ("0..10:5", "0..10:5", "below the minimum 1"),
        ("5,-1..3:1", "-1..3:1", "below the minimum 1"),
        ("1..1000000:1", "1..1000000:1", "1000000 values"),
        ("1..10:x1.0000001", "1..10:x1.0000001", "more than the limit"),
    ],
)
def test_errors_name_option_part_and_forms(text: str, part: str, problem: str) -> None:
    with pytest.raises(RangeError) as info:
        parse_range(text, name="--workers")
    message = str(info.value)
    assert message.startswith(f"--workers: {part!r}: ")
    assert problem in message
    assert message.endswith(f"accepted forms: {ACCEPTED_FORMS}")


def test_series_needs_positive_bounds_without_minimum() -> None:
    with pytest.raises(RangeError, match="1-2-5 series needs a lower bound > 0"):
        parse_range("0..10", integer=False, minimum=None)
    with pytest.raises(RangeError, match="geometric range needs a lower bound > 0"):
        parse_range("0..10:x2", minimum=None)


def test_extreme_float_bounds_fail_cleanly() -> None:
    with pytest.raises(RangeError, match="more than the limit"):
        parse_range("1e-400..1e400", integer=False, minimum=None)
    with pytest.raises(RangeError, match="more than the limit"):
        parse_range("1e-400..1e400:x2", integer=False, minimum=None)


def test_custom_minimum() -> None:
    assert parse_range("0..2:1", minimum=0) == [0, 1, 2]
    with pytest.raises(RangeError, match=r"below the minimum 0\.5"):
        parse_range("0.25", integer=False, minimum=0.5)


# --------------------------------------------------------------------------- properties


def _assert_clean(values: list[int], low: int, high: int) -> None:
    assert values == sorted(set(values))
    assert all(low <= v <= high for v in values)
    assert 1 <= len(values) <= MAX_VALUES


@props
@given(st.integers(1, 10**6), st.integers(0, 10**6), st.integers(1, 10**6))
def test_linear_property(low: int, span: int, step: int) -> None:
    high = low + span
    try:
        values = parse_range(f"{low}..{high}:{step}")
    except RangeError as err:
        assert span // step + 1 > MAX_VALUES, err
        return
    _assert_clean(values, low, high)
    assert values[0] == low
    assert len(values) == span // step + 1
    assert all(b - a == step for a, b in itertools.pairwise(values))


@props
@given(st.integers(1, 10**6), st.integers(0, 10**6))
def test_series_property(low: int, span: int) -> None:
    high = low + span
    try:
        values = parse_range(f"{low}..{high}")
    except RangeError as err:
        assert "no 1-2-5 series value" in str(err)
        return
    _assert_clean(values, low, high)
    for v in values:
        digits = str(v).rstrip("0")
        assert digits in ("1", "2", "5")


@props
@given(
    st.integers(1, 10**4),
    st.integers(0, 10**6),
    st.floats(1.01, 10, allow_nan=False).map(lambda f: round(f, 3)),
)
def test_geometric_property(low: int, span: int, factor: float) -> None:
    high = low + span
    try:
        values = parse_range(f"{low}..{high}:x{factor}")
    except RangeError as err:
        assert "more than the limit" in str(err) or "factor must be > 1" in str(err)
        return
    _assert_clean(values, low, high)
    assert values[0] == low


@props
@given(st.lists(st.integers(1, 10**9), min_size=1, max_size=50))
def test_list_property(items: list[int]) -> None:
    values = parse_range(",".join(map(str, items)))
    assert values == sorted(set(items))


@props
@given(
    st.lists(
        st.sampled_from(["1..8", "50..2000", "10..40:10", "1..64:x2", "3", "7,9"]),
        min_size=1,
        max_size=6,
    )
)
def test_mixes_equal_union_of_parts(parts: list[str]) -> None:
    union: set[int] = set()
    for part in parts:
        union.update(parse_range(part))
    assert parse_range(",".join(parts)) == sorted(union)


@props
@given(st.text(max_size=20))
def test_arbitrary_text_never_crashes(text: str) -> None:
    try:
        values = parse_range(text)
    except RangeError:
        return
    assert values == sorted(set(values)) and values and min(values) >= 1


# --------------------------------------------------------------------------- choices


def test_choices() -> None:
    assert parse_choices("on,off", ["on", "off"], "--pooling") == ["on", "off"]
    assert parse_choices(" OFF , on,off", ["on", "off"], "--pooling") == ["off", "on"]
    modes = ["off", "thread", "process"]
    assert parse_choices("process", modes, "--pipeline") == ["process"]


@pytest.mark.parametrize(
    ("text", "part", "problem"),
    [
        ("on,maybe", "maybe", "unknown choice"),
        ("", "", "no values given"),
        ("on,,off", "on,,off", "empty item between commas"),
    ],
)
def test_choice_errors_list_allowed(text: str, part: str, problem: str) -> None:
    with pytest.raises(RangeError) as info:
        parse_choices(text, ["on", "off"], "--pooling")
    assert str(info.value) == f"--pooling: {part!r}: {problem}; allowed: on, off (comma-separated)"


def test_linear_series_for_small_integer_dimensions() -> None:
    assert parse_range("1..4", name="--workers", series="linear") == [1, 2, 3, 4]
    assert parse_range("1..4") == [1, 2]  # the 1-2-5 series, for batch sizes
    assert parse_range("1..3,8", name="--workers", series="linear") == [1, 2, 3, 8]
    assert parse_range("1..64:x2", series="linear") == [1, 2, 4, 8, 16, 32, 64]
    with pytest.raises(RangeError, match=r"accepted forms: 1\.\.4 \(every value\)"):
        parse_range("4..1", name="--workers", series="linear")
    with pytest.raises(ValueError, match="series"):
        parse_range("1..4", series="fibonacci")


@pytest.mark.parametrize(("text", "seconds"), [
    ("5m", 300.0), ("90s", 90.0), ("1h", 3600.0), ("2m30s", 150.0), ("300", 300.0),
    (" 1.5m ", 90.0), ("2M", 120.0),
])
def test_durations(text: str, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "0", "m", "5x", "5m5m", "-5s", "5 minutes"])
def test_bad_durations(text: str) -> None:
    with pytest.raises(DurationError, match=r"--budget: .* is not a duration > 0; use e\.g\."):
        parse_duration(text)
