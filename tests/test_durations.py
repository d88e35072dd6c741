"""Durations as operators write them."""

from __future__ import annotations

from datetime import timedelta

import pytest

from certman.durations import format_duration, parse_duration
from certman.errors import ValidationError


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("90d", timedelta(days=90)),
        ("12h", timedelta(hours=12)),
        ("30m", timedelta(minutes=30)),
        ("45s", timedelta(seconds=45)),
        ("2w", timedelta(weeks=2)),
        ("1d12h", timedelta(days=1, hours=12)),
        ("1w2d3h4m5s", timedelta(weeks=1, days=2, hours=3, minutes=4, seconds=5)),
    ],
)
def test_parse_duration_reads_every_unit(text: str, expected: timedelta) -> None:
    assert parse_duration(text) == expected


def test_parse_duration_ignores_case_and_surrounding_spaces() -> None:
    assert parse_duration(" 90D ") == timedelta(days=90)


@pytest.mark.parametrize("text", ["0d", "0s", "0h0m"])
def test_parse_duration_refuses_zero(text: str) -> None:
    with pytest.raises(ValidationError, match="longer than zero"):
        parse_duration(text, field="--validity")


def test_parse_duration_allows_zero_when_asked() -> None:
    assert parse_duration("0s", allow_zero=True) == timedelta(0)


@pytest.mark.parametrize("text", ["-5d", "-1h30m"])
def test_parse_duration_refuses_negative_durations(text: str) -> None:
    with pytest.raises(ValidationError, match="--validity must be longer than zero"):
        parse_duration(text, field="--validity")


@pytest.mark.parametrize("text", ["", "90", "d", "90 days", "1.5d", "90x", "P90D", "d90"])
def test_parse_duration_refuses_text_without_a_unit_and_names_the_field(text: str) -> None:
    with pytest.raises(ValidationError, match=r"--validity .* is not a duration") as info:
        parse_duration(text, field="--validity")
    assert "90d" in info.value.message  # says what to write instead


@pytest.mark.parametrize(
    ("delta", "text"),
    [
        (timedelta(days=90), "90d"),
        (timedelta(days=1, hours=12), "1d12h"),
        (timedelta(seconds=45), "45s"),
        (timedelta(hours=1, seconds=1), "1h1s"),
        (timedelta(0), "0s"),
        (timedelta(days=-2), "-2d"),
    ],
)
def test_format_duration_gives_the_shortest_exact_spelling(delta: timedelta, text: str) -> None:
    assert format_duration(delta) == text


@pytest.mark.parametrize("seconds", [1, 59, 61, 3600, 86399, 86400 * 397, 1234567])
def test_format_duration_round_trips_through_parse(seconds: int) -> None:
    delta = timedelta(seconds=seconds)
    assert parse_duration(format_duration(delta)) == delta


@pytest.mark.parametrize(
    "text", ["99999999999999999999d", "36526d", "5219w", "876601h", "9" * 5000 + "s"]
)
def test_parse_duration_refuses_more_than_a_century(text: str) -> None:
    with pytest.raises(ValidationError, match="longer than certman accepts") as info:
        parse_duration(text, field="--validity")
    assert "36525d" in info.value.message


def test_parse_duration_takes_a_century() -> None:
    assert parse_duration("36525d") == timedelta(days=36525)
    assert parse_duration("000000000000000000090d") == timedelta(days=90)


@pytest.mark.parametrize("text", ["\uff19\uff10d", "\u0669\u0660d", "9\uff10d", "90\uff44"])
def test_parse_duration_refuses_digits_that_are_not_ascii(text: str) -> None:
    with pytest.raises(ValidationError, match="is not a duration"):
        parse_duration(text, field="--validity")
